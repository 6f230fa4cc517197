/*
 * pickle.c - a pickle interpreter that can read PyTorch state dicts and nothing that runs code.
 *
 * A pickle is a program for a stack machine (Python's Lib/pickletools.py documents every
 * opcode). torch.save writes protocol 2; this reader accepts the opcodes of protocols 2 to 4
 * that plain data needs: constants, strings, tuples, lists, dicts, the memo (a table of values
 * that lets a value appear twice), MARK (a stack position that TUPLE, APPENDS, SETITEMS and DICT
 * collect up to) and the four object opcodes:
 *   GLOBAL / STACK_GLOBAL  push a named Python object: only the allow-list below is accepted,
 *                          anything else (os.system, builtins.eval, ...) stops the load;
 *   REDUCE / NEWOBJ        "call" an allow-listed global: the call is never made, the value it
 *                          would return is built here (OrderedDict() -> an empty dict,
 *                          _rebuild_tensor_v2(...) -> a tensor record);
 *   BUILD                  set an object's state: accepted only on dicts (OrderedDict's
 *                          _metadata) and ignored;
 *   BINPERSID              a persistent id: torch's reference to a storage kept outside the pickle.
 * Every other opcode (INST, OBJ, EXT*, PUT/GET in text form, ...) is refused.
 *
 * Limits are checked before anything is allocated: pickle size, memo index, stack depth,
 * number of values and container items. Lengths are checked against the bytes left.
 */
#include "pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define PICKLE_MAX_BYTES ((size_t)1 << 30) /* 1 GiB; these three can be changed: dl_set_pickle_limits */
#define PICKLE_MAX_MEMO ((size_t)16 << 20)
#define PICKLE_MAX_STACK ((size_t)1 << 20)
#define PICKLE_MAX_VALUES ((size_t)16 << 20)
#define PICKLE_MAX_ITEMS ((size_t)64 << 20) /* elements of all containers together */
#define ARENA_BLOCK 1024

static size_t max_bytes = PICKLE_MAX_BYTES, max_memo = PICKLE_MAX_MEMO, max_stack = PICKLE_MAX_STACK;

void dl_set_pickle_limits(size_t bytes, size_t memo, size_t stack)
{
    max_bytes = bytes ? bytes : PICKLE_MAX_BYTES;
    max_memo = memo ? memo : PICKLE_MAX_MEMO;
    max_stack = stack ? stack : PICKLE_MAX_STACK;
}

typedef struct unpickler {
    dl_pv_arena *arena;
    const uint8_t *p;
    size_t n, pos, op_pos; /* op_pos: where the current opcode starts, for messages */
    dl_pv **stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack positions of the MARKs still open */
    size_t nmarks, marks_cap;
    dl_pv **memo;
    size_t memo_cap, memo_count;
    size_t items;
    int ran_out; /* an argument ran past the end of the (possibly size-limited) buffer */
    dl_status err; /* set by helpers that return NULL */
} unpickler;

static dl_status bad(unpickler *u, const char *fmt, ...) DL_PRINTF(2, 3);

static dl_status bad(unpickler *u, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return u->err = dl_fail(DL_EDATA, "%s (opcode at byte %zu)", msg, u->op_pos);
}

static dl_status no_memory(unpickler *u)
{
    return u->err = dl_fail(DL_ENOMEM, "out of memory reading a pickle");
}

/* ------------------------------------------------------------------ values */

static dl_pv *new_value(unpickler *u, dl_pv_type type)
{
    dl_pv_arena *a = u->arena;
    if (a->count >= PICKLE_MAX_VALUES) {
        bad(u, "more than %zu values", PICKLE_MAX_VALUES);
        return NULL;
    }
    size_t b = a->count / ARENA_BLOCK;
    if (b == a->nblocks) {
        dl_pv **blocks = realloc(a->blocks, (b + 1) * sizeof *blocks);
        if (blocks) a->blocks = blocks;
        if (!blocks || !(blocks[b] = calloc(ARENA_BLOCK, sizeof(dl_pv)))) {
            no_memory(u);
            return NULL;
        }
        a->nblocks++;
    }
    dl_pv *v = &a->blocks[b][a->count++ % ARENA_BLOCK];
    v->type = type;
    return v;
}

dl_pv *dl_pv_arena_at(const dl_pv_arena *a, size_t i)
{
    return &a->blocks[i / ARENA_BLOCK][i % ARENA_BLOCK];
}

void dl_pv_arena_free(dl_pv_arena *a)
{
    for (size_t i = 0; i < a->count; i++) {
        dl_pv *v = dl_pv_arena_at(a, i);
        switch (v->type) {
        case DL_PV_STR: case DL_PV_BYTES: case DL_PV_LONG: free(v->s.p); break;
        case DL_PV_TUPLE: case DL_PV_LIST: case DL_PV_DICT: free(v->seq.items); break;
        case DL_PV_STORAGE: free(v->storage); break;
        case DL_PV_TENSOR: free(v->tensor); break;
        default: break;
        }
    }
    for (size_t b = 0; b < a->nblocks; b++) free(a->blocks[b]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

/* Appends n items to a tuple, list or dict. */
static dl_status seq_add(unpickler *u, dl_pv *c, dl_pv *const *items, size_t n)
{
    if (n == 0) return DL_OK;
    if (n > PICKLE_MAX_ITEMS - u->items) return bad(u, "more than %zu container items", PICKLE_MAX_ITEMS);
    if (c->seq.cap - c->seq.n < n) {
        size_t cap = c->seq.cap ? c->seq.cap : 4;
        while (cap - c->seq.n < n) cap *= 2;
        dl_pv **p = realloc(c->seq.items, cap * sizeof *p);
        if (!p) return no_memory(u);
        c->seq.items = p;
        c->seq.cap = cap;
    }
    memcpy(c->seq.items + c->seq.n, items, n * sizeof *items);
    c->seq.n += n;
    u->items += n;
    return DL_OK;
}

const char *dl_pv_type_name(const dl_pv *v)
{
    static const char *names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "tuple",
                                  "list", "dict", "global", "storage", "tensor"};
    return names[v->type];
}

int dl_pv_is_str(const dl_pv *v, const char *s)
{
    return v->type == DL_PV_STR && v->s.len == strlen(s) && !memcmp(v->s.p, s, v->s.len);
}

const dl_pv *dl_pv_dict_get(const dl_pv *d, const char *key)
{
    const dl_pv *found = NULL; /* the last one wins, as in Python */
    for (size_t i = 0; d->type == DL_PV_DICT && i + 1 < d->seq.n; i += 2)
        if (dl_pv_is_str(d->seq.items[i], key)) found = d->seq.items[i + 1];
    return found;
}

/* ------------------------------------------------------------------ stack and memo */

static size_t mark_base(const unpickler *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static dl_status push(unpickler *u, dl_pv *v)
{
    if (!v) return u->err;
    if (u->sp == u->stack_cap) {
        if (u->sp >= max_stack) return bad(u, "stack deeper than the limit of %zu values", max_stack);
        size_t cap = u->stack_cap ? u->stack_cap * 2 : 64;
        if (cap > max_stack) cap = max_stack;
        dl_pv **s = realloc(u->stack, cap * sizeof *s);
        if (!s) return no_memory(u);
        u->stack = s;
        u->stack_cap = cap;
    }
    u->stack[u->sp++] = v;
    return DL_OK;
}

/* Pops a value pushed since the last MARK (NULL and an error if there is none). */
static dl_pv *pop(unpickler *u)
{
    if (u->sp <= mark_base(u)) {
        bad(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static dl_pv *top(unpickler *u)
{
    if (u->sp <= mark_base(u)) {
        bad(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

static dl_status push_mark(unpickler *u)
{
    if (u->nmarks == u->marks_cap) {
        if (u->nmarks >= max_stack) return bad(u, "more open MARKs than the stack limit of %zu", max_stack);
        size_t cap = u->marks_cap ? u->marks_cap * 2 : 16;
        if (cap > max_stack) cap = max_stack;
        size_t *m = realloc(u->marks, cap * sizeof *m);
        if (!m) return no_memory(u);
        u->marks = m;
        u->marks_cap = cap;
    }
    u->marks[u->nmarks++] = u->sp;
    return DL_OK;
}

/* Closes the last MARK: the values since it are stack[*start .. sp). */
static dl_status pop_mark(unpickler *u, size_t *start)
{
    *start = u->sp;
    if (!u->nmarks) return bad(u, "no MARK to close");
    *start = u->marks[--u->nmarks];
    return DL_OK;
}

static dl_status memo_put(unpickler *u, size_t idx)
{
    dl_pv *v = top(u);
    if (!v) return u->err;
    /* A pickler numbers memo entries 0, 1, 2, ... and each BINPUT takes 2 bytes or more, so no
     * real index reaches the pickle's size: that bound keeps the table small for tiny inputs. */
    if (idx >= max_memo) return bad(u, "memo index %zu over the limit of %zu entries", idx, max_memo);
    if (idx > u->n) return bad(u, "memo index %zu out of range", idx);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        dl_pv **m = realloc(u->memo, cap * sizeof *m);
        if (!m) return no_memory(u);
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    u->memo_count += !u->memo[idx];
    u->memo[idx] = v;
    return DL_OK;
}

static dl_status memo_get(unpickler *u, size_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx]) return bad(u, "memo index %zu not defined", idx);
    return push(u, u->memo[idx]);
}

/* ------------------------------------------------------------------ reading arguments */

/* The next k bytes of the pickle (NULL and an error if it ends first). */
static const uint8_t *take(unpickler *u, uint64_t k)
{
    if (k > u->n - u->pos) {
        u->ran_out = 1;
        bad(u, "truncated: %llu bytes needed, %zu left", (unsigned long long)k, u->n - u->pos);
        return NULL;
    }
    const uint8_t *p = u->p + u->pos;
    u->pos += (size_t)k;
    return p;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Reads an n-byte little-endian unsigned argument into *v. */
static dl_status arg_uint(unpickler *u, int n, uint64_t *v)
{
    *v = 0;
    const uint8_t *p = take(u, (uint64_t)n);
    if (!p) return u->err;
    *v = le(p, n);
    return DL_OK;
}

static dl_status push_int(unpickler *u, int64_t i)
{
    dl_pv *v = new_value(u, DL_PV_INT);
    if (v) v->i = i;
    return push(u, v);
}

/* LONG1: a little-endian two's complement integer of n bytes (0 bytes is 0). Up to 8 bytes it
 * becomes an INT; longer ones (the legacy format's 80-bit magic number) keep their bytes. */
static dl_status op_long1(unpickler *u)
{
    uint64_t n;
    const uint8_t *p;
    if (arg_uint(u, 1, &n) || !(p = take(u, n))) return u->err;
    if (n <= 8) {
        uint64_t x = n ? le(p, (int)n) : 0;
        if (n && n < 8 && (p[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return push_int(u, (int64_t)x);
    }
    dl_pv *v = new_value(u, DL_PV_LONG);
    if (!v) return u->err;
    if (!(v->s.p = malloc(n))) return no_memory(u);
    memcpy(v->s.p, p, n);
    v->s.len = n;
    return push(u, v);
}

static dl_status op_binfloat(unpickler *u)
{
    const uint8_t *p = take(u, 8);
    if (!p) return u->err;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | p[i]; /* big-endian, unlike everything else */
    dl_pv *v = new_value(u, DL_PV_FLOAT);
    if (v) memcpy(&v->f, &bits, 8);
    return push(u, v);
}

/* A string or bytes value whose length is an lenbytes-byte little-endian argument. */
static dl_status op_string(unpickler *u, dl_pv_type type, int lenbytes, int is_signed)
{
    uint64_t len;
    if (arg_uint(u, lenbytes, &len)) return u->err;
    if (is_signed && (len & 0x80000000u)) return bad(u, "negative string length");
    const uint8_t *p = take(u, len); /* checked against the bytes left before allocating */
    if (!p) return u->err;
    dl_pv *v = new_value(u, type);
    if (!v) return u->err;
    if (!(v->s.p = malloc((size_t)len + 1))) return no_memory(u);
    memcpy(v->s.p, p, (size_t)len);
    v->s.p[len] = 0;
    v->s.len = (size_t)len;
    return push(u, v);
}

/* ------------------------------------------------------------------ containers */

static dl_status push_seq(unpickler *u, dl_pv_type type, dl_pv *const *items, size_t n)
{
    dl_pv *v = new_value(u, type);
    if (!v || seq_add(u, v, items, n)) return u->err;
    return push(u, v);
}

/* TUPLE1, TUPLE2, TUPLE3: the top n values. */
static dl_status op_tuple_n(unpickler *u, size_t n)
{
    if (u->sp - mark_base(u) < n) return bad(u, "stack underflow");
    u->sp -= n;
    return push_seq(u, DL_PV_TUPLE, u->stack + u->sp, n);
}

/* TUPLE and DICT: the values since the last MARK. */
static dl_status op_from_mark(unpickler *u, dl_pv_type type)
{
    size_t start;
    if (pop_mark(u, &start)) return u->err;
    size_t n = u->sp - start;
    if (type == DL_PV_DICT && n % 2) return bad(u, "DICT with an odd number of values");
    u->sp = start;
    return push_seq(u, type, n ? u->stack + start : NULL, n); /* the stack may not exist yet */
}

/* APPEND(S) and SETITEM(S): add the values since the last MARK (or the top 1 or 2) to the
 * container below them, which must be of the given type. */
static dl_status op_add(unpickler *u, dl_pv_type type, int marked, size_t unit)
{
    size_t start = u->sp;
    if (marked) {
        if (pop_mark(u, &start)) return u->err;
    } else {
        if (u->sp - mark_base(u) < unit) return bad(u, "stack underflow");
        start = u->sp - unit;
    }
    size_t n = u->sp - start;
    if (start <= mark_base(u)) return bad(u, "stack underflow");
    dl_pv *c = u->stack[start - 1];
    if (c->type != type)
        return bad(u, "%s on a %s", type == DL_PV_LIST ? "APPEND" : "SETITEM", dl_pv_type_name(c));
    if (n % unit) return bad(u, "SETITEMS with an odd number of values");
    u->sp = start;
    return seq_add(u, c, u->stack + start, n);
}

/* ------------------------------------------------------------------ globals */

static const struct {
    const char *module, *name;
    dl_pv_global kind;
    dl_dtype dtype;
} allowed[] = {
    {"collections", "OrderedDict", DL_G_ORDERED_DICT, DL_U8},
    {"torch._utils", "_rebuild_tensor", DL_G_REBUILD_TENSOR, DL_U8},
    {"torch._utils", "_rebuild_tensor_v2", DL_G_REBUILD_TENSOR_V2, DL_U8},
    {"torch._utils", "_rebuild_parameter", DL_G_REBUILD_PARAMETER, DL_U8},
    {"torch._utils", "_rebuild_parameter_with_state", DL_G_REBUILD_PARAMETER_STATE, DL_U8},
    {"torch", "FloatStorage", DL_G_STORAGE, DL_F32},
    {"torch", "HalfStorage", DL_G_STORAGE, DL_F16},
    {"torch", "BFloat16Storage", DL_G_STORAGE, DL_BF16},
    {"torch", "DoubleStorage", DL_G_STORAGE, DL_F64},
    {"torch", "LongStorage", DL_G_STORAGE, DL_I64},
    {"torch", "IntStorage", DL_G_STORAGE, DL_I32},
    {"torch", "ShortStorage", DL_G_STORAGE, DL_I16},
    {"torch", "CharStorage", DL_G_STORAGE, DL_I8},
    {"torch", "ByteStorage", DL_G_STORAGE, DL_U8},
    {"torch", "BoolStorage", DL_G_STORAGE, DL_BOOL},
    {"torch", "UntypedStorage", DL_G_STORAGE, DL_U8},
    {"torch.storage", "UntypedStorage", DL_G_STORAGE, DL_U8},
};

/* Looks module.name up in the allow-list. Storages saved from a GPU are named torch.cuda.*Storage
 * in legacy files; their bytes are the same, so they are read as the CPU types. */
static dl_status push_global(unpickler *u, const char *module, size_t mlen, const char *name, size_t nlen)
{
    int cuda = mlen == 10 && !memcmp(module, "torch.cuda", 10);
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        const char *m = cuda && allowed[i].kind == DL_G_STORAGE && !strcmp(allowed[i].module, "torch")
                            ? "torch.cuda" : allowed[i].module;
        if (strlen(m) == mlen && !memcmp(m, module, mlen) && strlen(allowed[i].name) == nlen &&
            !memcmp(allowed[i].name, name, nlen)) {
            dl_pv *v = new_value(u, DL_PV_GLOBAL);
            if (v) {
                v->g.kind = allowed[i].kind;
                v->g.dtype = allowed[i].dtype;
            }
            return push(u, v);
        }
    }
    char shown[160];
    snprintf(shown, sizeof shown, "%.*s.%.*s", (int)(mlen < 70 ? mlen : 70), module,
             (int)(nlen < 70 ? nlen : 70), name);
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return u->err = dl_fail(DL_EDATA, "refused global %s: not on the allow-list of a state dict reader "
                                      "(OrderedDict, tensors, storages); nothing was executed", shown);
}

/* GLOBAL: "module\nname\n" as text. */
static dl_status op_global(unpickler *u)
{
    const char *line[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *start = u->p + u->pos, *nl = memchr(start, '\n', u->n - u->pos);
        if (!nl) {
            u->ran_out = 1;
            return bad(u, "truncated GLOBAL");
        }
        line[k] = (const char *)start;
        len[k] = (size_t)(nl - start);
        u->pos += len[k] + 1;
    }
    return push_global(u, line[0], len[0], line[1], len[1]);
}

/* STACK_GLOBAL: module and name are the two strings on top of the stack. */
static dl_status op_stack_global(unpickler *u)
{
    dl_pv *name = pop(u), *module = name ? pop(u) : NULL;
    if (!module) return u->err;
    if (name->type != DL_PV_STR || module->type != DL_PV_STR) return bad(u, "STACK_GLOBAL needs two strings");
    return push_global(u, module->s.p, module->s.len, name->s.p, name->s.len);
}

/* ------------------------------------------------------------------ tensors and storages */

static int is_int(const dl_pv *v, int64_t lo, int64_t *out)
{
    if (v->type != DL_PV_INT || v->i < lo) return 0;
    *out = v->i;
    return 1;
}

/* size or stride: a tuple of at most DL_MAX_DIMS integers >= 0. */
static dl_status int_tuple(unpickler *u, const dl_pv *t, const char *what, int *ndim, int64_t *out)
{
    if (t->type != DL_PV_TUPLE) return bad(u, "tensor %s is a %s, expected a tuple", what, dl_pv_type_name(t));
    if (t->seq.n > DL_MAX_DIMS)
        return bad(u, "tensor has %zu dimensions, at most %d are supported", t->seq.n, DL_MAX_DIMS);
    for (size_t i = 0; i < t->seq.n; i++) {
        const dl_pv *d = t->seq.items[i];
        if (d->type == DL_PV_INT && d->i < 0)
            return bad(u, "negative tensor %s %lld is not supported", what, (long long)d->i);
        if (!is_int(d, 0, &out[i])) return bad(u, "tensor %s holds a %s", what, dl_pv_type_name(d));
    }
    *ndim = (int)t->seq.n;
    return DL_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, ...) -> a tensor record. Whether the
 * elements lie inside the storage is checked when the data is copied (checkpoint.c). */
static dl_status make_tensor(unpickler *u, dl_pv *const *a)
{
    if (a[0]->type != DL_PV_STORAGE)
        return bad(u, "tensor built from a %s, expected a storage", dl_pv_type_name(a[0]));
    dl_pv_tensor t = {.storage = a[0]};
    int nstride;
    if (!is_int(a[1], 0, &t.offset)) return bad(u, "tensor storage offset is not an integer >= 0");
    if (int_tuple(u, a[2], "size", &t.ndim, t.shape) || int_tuple(u, a[3], "stride", &nstride, t.stride))
        return u->err;
    if (nstride != t.ndim) return bad(u, "tensor has %d sizes but %d strides", t.ndim, nstride);
    dl_pv *v = new_value(u, DL_PV_TENSOR);
    if (!v) return u->err;
    if (!(v->tensor = malloc(sizeof t))) return no_memory(u);
    *v->tensor = t;
    return push(u, v);
}

/* REDUCE and NEWOBJ: builds what the allow-listed callable would return for args. */
static dl_status op_reduce(unpickler *u)
{
    dl_pv *args = pop(u), *f = args ? pop(u) : NULL;
    if (!f) return u->err;
    if (f->type != DL_PV_GLOBAL) return bad(u, "REDUCE on a %s", dl_pv_type_name(f));
    if (args->type != DL_PV_TUPLE) return bad(u, "REDUCE arguments are a %s", dl_pv_type_name(args));
    size_t n = args->seq.n;
    dl_pv *const *a = args->seq.items;
    switch (f->g.kind) {
    case DL_G_ORDERED_DICT:
        if (n != 0) return bad(u, "OrderedDict with arguments is not supported");
        return push(u, new_value(u, DL_PV_DICT));
    case DL_G_REBUILD_TENSOR:
        if (n != 4) return bad(u, "_rebuild_tensor takes 4 arguments, got %zu", n);
        return make_tensor(u, a);
    case DL_G_REBUILD_TENSOR_V2:
        if (n != 6 && n != 7) return bad(u, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", n);
        return make_tensor(u, a);
    case DL_G_REBUILD_PARAMETER:
    case DL_G_REBUILD_PARAMETER_STATE:
        if (n != (f->g.kind == DL_G_REBUILD_PARAMETER ? 3u : 4u) || a[0]->type != DL_PV_TENSOR)
            return bad(u, "unexpected arguments to _rebuild_parameter");
        return push(u, a[0]); /* a Parameter is its tensor here */
    case DL_G_STORAGE:
        break;
    }
    return bad(u, "a storage type cannot be called");
}

/* BINPERSID: the persistent id tuple (see pickle.h) becomes a storage record. */
static dl_status op_persid(unpickler *u)
{
    dl_pv *pid = pop(u);
    if (!pid) return u->err;
    dl_pv *const *a = pid->seq.items;
    size_t n = pid->type == DL_PV_TUPLE ? pid->seq.n : 0;
    dl_pv_storage st = {0};
    if ((n != 5 && n != 6) || !dl_pv_is_str(a[0], "storage"))
        return bad(u, "unsupported persistent id (a %s), expected ('storage', ...)", dl_pv_type_name(pid));
    if (a[1]->type != DL_PV_GLOBAL || a[1]->g.kind != DL_G_STORAGE || a[2]->type != DL_PV_STR ||
        a[3]->type != DL_PV_STR || !is_int(a[4], 0, &st.numel))
        return bad(u, "malformed storage persistent id");
    st.dtype = a[1]->g.dtype;
    st.key = a[2]->s.p;
    if (n == 6 && a[5]->type != DL_PV_NONE) { /* legacy view: (view_key, offset, numel) */
        dl_pv *const *w = a[5]->seq.items;
        if (a[5]->type != DL_PV_TUPLE || a[5]->seq.n != 3 || w[0]->type != DL_PV_STR ||
            !is_int(w[1], 0, &st.view_offset) || !is_int(w[2], 0, &st.view_numel) ||
            st.view_offset > st.numel || st.view_numel > st.numel - st.view_offset)
            return bad(u, "malformed or out-of-range storage view");
        st.is_view = 1;
    }
    dl_pv *v = new_value(u, DL_PV_STORAGE);
    if (!v) return u->err;
    if (!(v->storage = malloc(sizeof st))) return no_memory(u);
    *v->storage = st;
    return push(u, v);
}

/* BUILD: sets the state of the object below it. Only dicts (an OrderedDict's _metadata) are
 * accepted; the state is dropped. */
static dl_status op_build(unpickler *u)
{
    dl_pv *state = pop(u), *obj = state ? top(u) : NULL;
    if (!obj) return u->err;
    if (obj->type != DL_PV_DICT) return bad(u, "BUILD on a %s is not supported", dl_pv_type_name(obj));
    return DL_OK;
}

/* ------------------------------------------------------------------ the interpreter */

static dl_status push_const(unpickler *u, dl_pv_type type, int64_t i)
{
    dl_pv *v = new_value(u, type);
    if (v) v->i = i;
    return push(u, v);
}

/* Runs one opcode; sets *result at STOP. */
static dl_status step(unpickler *u, dl_pv **result)
{
    uint64_t x;
    size_t start;
    dl_pv *v;
    u->op_pos = u->pos;
    const uint8_t *opp = take(u, 1);
    if (!opp) return u->err;
    uint8_t op = *opp;
    switch (op) {
    case 0x80: /* PROTO */
        if (arg_uint(u, 1, &x)) return u->err;
        return x <= 5 ? DL_OK : bad(u, "pickle protocol %llu is not supported", (unsigned long long)x);
    case 0x95: /* FRAME: a length hint for buffered readers; the opcodes simply follow */
        if (arg_uint(u, 8, &x)) return u->err;
        return x <= u->n - u->pos ? DL_OK : bad(u, "truncated frame");
    case '.': /* STOP */
        if (!(*result = pop(u))) return u->err;
        return DL_OK;
    case '(': return push_mark(u);
    case '0': /* POP: a value, or an empty MARK */
        if (u->sp > mark_base(u)) u->sp--;
        else if (u->nmarks) u->nmarks--;
        else return bad(u, "stack underflow");
        return DL_OK;
    case '1': /* POP_MARK */
        if (pop_mark(u, &start)) return u->err;
        u->sp = start;
        return DL_OK;
    case '2': return (v = top(u)) ? push(u, v) : u->err; /* DUP */
    case 'N': return push(u, new_value(u, DL_PV_NONE));
    case 0x88: return push_const(u, DL_PV_BOOL, 1); /* NEWTRUE */
    case 0x89: return push_const(u, DL_PV_BOOL, 0); /* NEWFALSE */
    case 'J': return arg_uint(u, 4, &x) ? u->err : push_int(u, (int32_t)(uint32_t)x); /* BININT */
    case 'K': return arg_uint(u, 1, &x) ? u->err : push_int(u, (int64_t)x);            /* BININT1 */
    case 'M': return arg_uint(u, 2, &x) ? u->err : push_int(u, (int64_t)x);            /* BININT2 */
    case 0x8a: return op_long1(u);
    case 'G': return op_binfloat(u);
    case 'X': return op_string(u, DL_PV_STR, 4, 0);   /* BINUNICODE */
    case 0x8c: return op_string(u, DL_PV_STR, 1, 0);  /* SHORT_BINUNICODE */
    case 0x8d: return op_string(u, DL_PV_STR, 8, 0);  /* BINUNICODE8 */
    case 'T': return op_string(u, DL_PV_STR, 4, 1);   /* BINSTRING (Python 2 str) */
    case 'U': return op_string(u, DL_PV_STR, 1, 0);   /* SHORT_BINSTRING */
    case 'B': return op_string(u, DL_PV_BYTES, 4, 0); /* BINBYTES */
    case 'C': return op_string(u, DL_PV_BYTES, 1, 0); /* SHORT_BINBYTES */
    case 0x8e: return op_string(u, DL_PV_BYTES, 8, 0); /* BINBYTES8 */
    case ')': return push_seq(u, DL_PV_TUPLE, NULL, 0);
    case 't': return op_from_mark(u, DL_PV_TUPLE);
    case 0x85: return op_tuple_n(u, 1);
    case 0x86: return op_tuple_n(u, 2);
    case 0x87: return op_tuple_n(u, 3);
    case ']': return push_seq(u, DL_PV_LIST, NULL, 0);
    case 'a': return op_add(u, DL_PV_LIST, 0, 1); /* APPEND */
    case 'e': return op_add(u, DL_PV_LIST, 1, 1); /* APPENDS */
    case '}': return push_seq(u, DL_PV_DICT, NULL, 0);
    case 'd': return op_from_mark(u, DL_PV_DICT);
    case 's': return op_add(u, DL_PV_DICT, 0, 2); /* SETITEM */
    case 'u': return op_add(u, DL_PV_DICT, 1, 2); /* SETITEMS */
    case 'q': return arg_uint(u, 1, &x) ? u->err : memo_put(u, (size_t)x); /* BINPUT */
    case 'r': return arg_uint(u, 4, &x) ? u->err : memo_put(u, (size_t)x); /* LONG_BINPUT */
    case 0x94: return memo_put(u, u->memo_count);                        /* MEMOIZE */
    case 'h': return arg_uint(u, 1, &x) ? u->err : memo_get(u, (size_t)x); /* BINGET */
    case 'j': return arg_uint(u, 4, &x) ? u->err : memo_get(u, (size_t)x); /* LONG_BINGET */
    case 'c': return op_global(u);
    case 0x93: return op_stack_global(u);
    case 'R': /* REDUCE */
    case 0x81: return op_reduce(u); /* NEWOBJ: cls.__new__(cls, *args), the same for the allow-list */
    case 'b': return op_build(u);
    case 'Q': return op_persid(u);
    default:
        if (op >= 0x20 && op < 0x7f) return bad(u, "unsupported opcode 0x%02x ('%c')", op, op);
        return bad(u, "unsupported opcode 0x%02x", op);
    }
}

dl_status dl_pickle_load(dl_pv_arena *a, const uint8_t *buf, size_t size, size_t *used, dl_pv **out)
{
    unpickler u = {.arena = a, .p = buf, .n = size < max_bytes ? size : max_bytes};
    dl_pv *result = NULL;
    dl_status s = DL_OK;
    while (!result && !(s = step(&u, &result))) {}
    if (s && u.ran_out && u.n < size)
        s = dl_fail(DL_EDATA, "pickle larger than the limit of %zu bytes", max_bytes);
    free(u.stack);
    free(u.marks);
    free(u.memo);
    *out = s ? NULL : result;
    *used = u.pos;
    return s;
}
