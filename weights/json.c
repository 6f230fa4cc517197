/*
 * json.c - strict JSON (RFC 8259): one value, no trailing commas, no comments, no NaN, strings
 * of valid UTF-8 with the standard escapes only, nesting at most JSON_MAX_DEPTH deep.
 *
 * Nodes and decoded strings are bump-allocated from an arena of chunks, so a document is freed
 * in one go. While an array or object is parsed its children collect in a temporary vector that
 * is copied into the arena at the closing bracket.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "status.h"

#define JSON_MAX_DEPTH 64
#define CHUNK_SIZE (64 * 1024)

/* ------------------------------------------------------------------ arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
} chunk;

static void *arena_alloc(void **arena, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    chunk *c = *arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_SIZE ? n : CHUNK_SIZE;
        chunk *nc = malloc(sizeof(chunk) + cap);
        if (!nc) return NULL;
        nc->used = 0;
        nc->cap = cap;
        /* A big allocation gets a chunk of its own behind the current one, which stays in use. */
        if (c && n > CHUNK_SIZE) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            *arena = nc;
        }
        c = nc;
    }
    void *p = c->mem + c->used;
    c->used += n;
    return p;
}

void dl_json_free(dl_json_doc *doc)
{
    for (chunk *c = doc->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    doc->arena = NULL;
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 if it is not well-formed. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;      /* no overlong forms */
        if (c == 0xed) hi = 0x9f;      /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;      /* nothing above U+10FFFF */
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

int dl_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* ------------------------------------------------------------------ parser */

typedef struct parser {
    const unsigned char *p;
    size_t n, pos;
    void *arena;
} parser;

static dl_status syntax(const parser *ps, const char *what)
{
    return dl_fail(DL_EDATA, "invalid JSON at byte %zu: %s", ps->pos, what);
}

static dl_status no_memory(void)
{
    return dl_fail(DL_ENOMEM, "out of memory parsing JSON");
}

static void skip_ws(parser *ps)
{
    while (ps->pos < ps->n) {
        unsigned char c = ps->p[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* \uXXXX at ps->pos (just after the backslash-u), a surrogate pair taking two escapes. */
static dl_status parse_u_escape(parser *ps, unsigned *cp)
{
    if (ps->n - ps->pos < 4 || hex4(ps->p + ps->pos, cp)) return syntax(ps, "bad \\u escape");
    ps->pos += 4;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return syntax(ps, "unpaired UTF-16 surrogate in \\u escape");
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        unsigned lo;
        if (ps->n - ps->pos < 6 || ps->p[ps->pos] != '\\' || ps->p[ps->pos + 1] != 'u' ||
            hex4(ps->p + ps->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
            return syntax(ps, "unpaired UTF-16 surrogate in \\u escape");
        ps->pos += 6;
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return DL_OK;
}

/* A string at ps->pos (on the opening quote): decoded into the arena. */
static dl_status parse_string(parser *ps, const char **out, size_t *out_len)
{
    ps->pos++;
    /* The decoded string is never longer than its source text: find the end, then decode. */
    size_t end = ps->pos;
    while (end < ps->n && ps->p[end] != '"') end += ps->p[end] == '\\' ? 2 : 1;
    if (end >= ps->n) return syntax(ps, "unterminated string");
    char *buf = arena_alloc(&ps->arena, end - ps->pos + 1), *o = buf;
    if (!buf) return no_memory();
    while (ps->p[ps->pos] != '"') {
        unsigned char c = ps->p[ps->pos];
        if (c < 0x20) return syntax(ps, "control character in string (must be escaped)");
        if (c >= 0x80) {
            size_t k = utf8_seq(ps->p + ps->pos, ps->n - ps->pos);
            if (!k) return syntax(ps, "invalid UTF-8 in string");
            memcpy(o, ps->p + ps->pos, k);
            o += k;
            ps->pos += k;
            continue;
        }
        ps->pos++;
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        c = ps->p[ps->pos++];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *hit = strchr(from, c);
        if (c == 'u') {
            unsigned cp = 0;
            dl_status s = parse_u_escape(ps, &cp);
            if (s) return s;
            o = put_utf8(o, cp);
        } else if (c && hit) {
            *o++ = to[hit - from];
        } else {
            ps->pos--;
            return syntax(ps, "unknown escape in string");
        }
    }
    ps->pos++; /* closing quote */
    *o = 0;
    *out = buf;
    *out_len = (size_t)(o - buf);
    return DL_OK;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?  Only integers fitting int64 keep their value. */
static dl_status parse_number(parser *ps, dl_json *v)
{
    const unsigned char *p = ps->p;
    size_t i = ps->pos, n = ps->n;
    int neg = p[i] == '-';
    if (neg) i++;
    if (i >= n || !is_digit(p[i])) return syntax(ps, "expected a digit");
    uint64_t mag = 0;
    int overflow = 0;
    if (p[i] == '0') i++;
    else
        for (; i < n && is_digit(p[i]); i++) {
            overflow |= __builtin_mul_overflow(mag, 10, &mag);
            overflow |= __builtin_add_overflow(mag, (uint64_t)(p[i] - '0'), &mag);
        }
    int is_int = 1;
    if (i < n && p[i] == '.') {
        is_int = 0;
        if (++i >= n || !is_digit(p[i])) return ps->pos = i, syntax(ps, "expected a digit after '.'");
        while (i < n && is_digit(p[i])) i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        is_int = 0;
        if (++i < n && (p[i] == '+' || p[i] == '-')) i++;
        if (i >= n || !is_digit(p[i])) return ps->pos = i, syntax(ps, "expected a digit in the exponent");
        while (i < n && is_digit(p[i])) i++;
    }
    char *text = arena_alloc(&ps->arena, i - ps->pos + 1);
    if (!text) return no_memory();
    memcpy(text, p + ps->pos, i - ps->pos);
    text[i - ps->pos] = 0;
    v->s = text;
    v->len = i - ps->pos;
    ps->pos = i;
    v->type = DL_JSON_NUMBER;
    if (is_int && !overflow && mag <= (uint64_t)INT64_MAX + (uint64_t)neg) {
        v->is_int = 1;
        v->i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    }
    return DL_OK;
}

static dl_status parse_value(parser *ps, dl_json *v, int depth);

/* A growable vector of children (and keys, for objects) while a container is being parsed. */
typedef struct kids {
    dl_json *items;
    const char **keys;
    size_t *key_lens;
    size_t n, cap;
} kids;

static int kids_grow(kids *k, int with_keys)
{
    if (k->n < k->cap) return 0;
    size_t cap = k->cap ? k->cap * 2 : 8;
    dl_json *items = realloc(k->items, cap * sizeof *items);
    if (items) k->items = items;
    if (!items) return -1;
    if (with_keys) {
        const char **keys = realloc(k->keys, cap * sizeof *keys);
        if (keys) k->keys = keys;
        size_t *lens = realloc(k->key_lens, cap * sizeof *lens);
        if (lens) k->key_lens = lens;
        if (!keys || !lens) return -1;
    }
    k->cap = cap;
    return 0;
}

/* Moves the collected children into the arena as v's items (and keys). */
static dl_status kids_finish(parser *ps, kids *k, dl_json *v)
{
    v->len = k->n;
    if (k->n) {
        v->items = arena_alloc(&ps->arena, k->n * sizeof *v->items);
        if (!v->items) return no_memory();
        memcpy(v->items, k->items, k->n * sizeof *v->items);
        if (v->type == DL_JSON_OBJECT) {
            v->keys = arena_alloc(&ps->arena, k->n * sizeof *v->keys);
            v->key_lens = arena_alloc(&ps->arena, k->n * sizeof *v->key_lens);
            if (!v->keys || !v->key_lens) return no_memory();
            memcpy(v->keys, k->keys, k->n * sizeof *v->keys);
            memcpy(v->key_lens, k->key_lens, k->n * sizeof *v->key_lens);
        }
    }
    return DL_OK;
}

/* An array or an object at ps->pos (on the opening bracket). */
static dl_status parse_container(parser *ps, dl_json *v, int depth)
{
    int is_obj = ps->p[ps->pos] == '{';
    unsigned char close = is_obj ? '}' : ']';
    v->type = is_obj ? DL_JSON_OBJECT : DL_JSON_ARRAY;
    if (depth >= JSON_MAX_DEPTH) return syntax(ps, "nested too deeply");
    ps->pos++;
    kids k = {0};
    dl_status s = DL_OK;
    skip_ws(ps);
    if (ps->pos < ps->n && ps->p[ps->pos] == close) {
        ps->pos++;
        return DL_OK;
    }
    for (;;) {
        if (kids_grow(&k, is_obj)) {
            s = no_memory();
            break;
        }
        dl_json *item = &k.items[k.n];
        memset(item, 0, sizeof *item);
        if (is_obj) {
            skip_ws(ps);
            if (ps->pos >= ps->n || ps->p[ps->pos] != '"') {
                s = syntax(ps, "expected a string key");
                break;
            }
            if ((s = parse_string(ps, &k.keys[k.n], &k.key_lens[k.n]))) break;
            skip_ws(ps);
            if (ps->pos >= ps->n || ps->p[ps->pos] != ':') {
                s = syntax(ps, "expected ':'");
                break;
            }
            ps->pos++;
        }
        if ((s = parse_value(ps, item, depth + 1))) break;
        k.n++;
        skip_ws(ps);
        if (ps->pos < ps->n && ps->p[ps->pos] == ',') {
            ps->pos++;
            continue;
        }
        if (ps->pos < ps->n && ps->p[ps->pos] == close) {
            ps->pos++;
            s = kids_finish(ps, &k, v);
            break;
        }
        s = syntax(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        break;
    }
    free(k.items);
    free(k.keys);
    free(k.key_lens);
    return s;
}

static int match_word(parser *ps, const char *w)
{
    size_t len = strlen(w);
    if (ps->n - ps->pos < len || memcmp(ps->p + ps->pos, w, len)) return 0;
    ps->pos += len;
    return 1;
}

static dl_status parse_value(parser *ps, dl_json *v, int depth)
{
    skip_ws(ps);
    if (ps->pos >= ps->n) return syntax(ps, "unexpected end, expected a value");
    unsigned char c = ps->p[ps->pos];
    if (c == '{' || c == '[') return parse_container(ps, v, depth);
    if (c == '"') {
        v->type = DL_JSON_STRING;
        return parse_string(ps, &v->s, &v->len);
    }
    if (c == '-' || is_digit(c)) return parse_number(ps, v);
    if (match_word(ps, "true")) v->type = DL_JSON_TRUE;
    else if (match_word(ps, "false")) v->type = DL_JSON_FALSE;
    else if (match_word(ps, "null")) v->type = DL_JSON_NULL;
    else return syntax(ps, "expected a value");
    return DL_OK;
}

dl_status dl_json_parse(const char *text, size_t len, dl_json_doc *doc)
{
    memset(doc, 0, sizeof *doc);
    parser ps = {(const unsigned char *)text, len, 0, NULL};
    dl_status s = parse_value(&ps, &doc->root, 0);
    if (!s) {
        skip_ws(&ps);
        if (ps.pos != ps.n) s = syntax(&ps, "unexpected data after the value");
    }
    doc->arena = ps.arena;
    if (s) dl_json_free(doc);
    return s;
}
