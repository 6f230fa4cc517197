/*
 * test_safetensors.c - dl_st_open on valid and broken files built here, dl_st_write round trips,
 * and the half/bfloat16 conversions against independent references.
 *
 * Files go to $TEST_TMP. Each rejected file must fail with DL_EDATA and a message that names the
 * file and says what is wrong (checked by a keyword). Prints every failure; exits 1 if any.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weights.h"

static int failures;
static char tmpdir[4096];

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            failures++;                                    \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

static const char *tmp_path(const char *name)
{
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
}

/* Data section bytes: a recognisable pattern. */
static uint8_t pattern(size_t i) { return (uint8_t)(i * 7 + 3); }

/* Writes u64 len | header | data_bytes of pattern, with the length field given explicitly. */
static const char *make_raw(const char *name, uint64_t len_field, const char *header, size_t hlen, size_t data_bytes)
{
    const char *path = tmp_path(name);
    size_t n = 8 + hlen + data_bytes;
    uint8_t *buf = malloc(n);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len_field >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < data_bytes; i++) buf[8 + hlen + i] = pattern(i);
    write_bytes(path, buf, n);
    free(buf);
    return path;
}

static const char *make_st(const char *name, const char *header, size_t data_bytes)
{
    return make_raw(name, strlen(header), header, strlen(header), data_bytes);
}

/* ------------------------------------------------------------------ valid files */

static void test_valid(void)
{
    /* Entries not in offset order, __metadata__ in the middle, I64/BOOL/U8, a 0-d tensor,
     * a tensor with a 0 dimension, names that need JSON escapes, and trailing spaces. */
    const char *hdr =
        "{\"z.last\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},\n"
        " \"__metadata__\": {\"format\": \"pt\", \"note\": \"x\"},\n"
        " \"a.scalar\" : {\"shape\":[],\"dtype\":\"I64\",\"data_offsets\":[16,24]},\n"
        " \"m.bool\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[27,30]},\n"
        " \"m.u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[24,27]},\n"
        " \"e.empty\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[30,30]},\n"
        " \"q\\\"\\u00e9\\ud83d\\ude00\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[30,32]}}      ";
    const char *path = make_st("valid.safetensors", hdr, 32);
    dl_st_file *f;
    dl_status s = dl_st_open(path, &f);
    CHECK(s == DL_OK, "valid file refused: %s", dl_last_error());
    if (s) return;
    CHECK(dl_st_count(f) == 6, "count %d, expected 6", dl_st_count(f));
    CHECK(!strcmp(dl_st_path(f), path), "path");
    const char *order[] = {"z.last", "a.scalar", "m.u8", "m.bool", "e.empty", "q\"\xc3\xa9\xf0\x9f\x98\x80"};
    const size_t begin[] = {0, 16, 24, 27, 30, 30};
    for (int i = 0; i < 6; i++) {
        const dl_tensor_ref *t = dl_st_tensor(f, i);
        CHECK(!strcmp(t->name, order[i]), "tensor %d is %s, expected %s (offset order)", i, t->name, order[i]);
        CHECK(dl_st_find(f, order[i]) == t, "find %s", order[i]);
        size_t off = (size_t)((const uint8_t *)t->data - (const uint8_t *)dl_st_tensor(f, 0)->data);
        CHECK(off == begin[i], "%s at data offset %zu, expected %zu", t->name, off, begin[i]);
        for (size_t k = 0; k < t->nbytes; k++)
            CHECK(((const uint8_t *)t->data)[k] == pattern(begin[i] + k), "%s byte %zu", t->name, k);
    }
    const dl_tensor_ref *sc = dl_st_find(f, "a.scalar");
    CHECK(sc && sc->ndim == 0 && dl_tensor_numel(sc) == 1 && sc->nbytes == 8 && sc->dtype == DL_I64, "0-d tensor");
    const dl_tensor_ref *em = dl_st_find(f, "e.empty");
    CHECK(em && em->ndim == 2 && em->shape[1] == 5 && dl_tensor_numel(em) == 0 && em->nbytes == 0, "empty tensor");
    CHECK(dl_st_find(f, "missing") == NULL && dl_st_find(f, "z") == NULL, "find of a missing name");
    CHECK(dl_st_tensor(f, -1) == NULL && dl_st_tensor(f, 6) == NULL, "tensor index out of range");
    dl_st_close(f);

    /* No tensors at all; and every dtype. */
    s = dl_st_open(make_st("empty-header.safetensors", "{}", 0), &f);
    CHECK(s == DL_OK && dl_st_count(f) == 0, "{} refused: %s", dl_last_error());
    if (!s) dl_st_close(f);
    char all[4096] = "{", *p = all + 1;
    size_t off = 0;
    for (int t = 0; t < DL_DTYPE_COUNT; t++) {
        size_t sz = dl_dtype_size((dl_dtype)t);
        p += sprintf(p, "%s\"t%d\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[%zu,%zu]}", t ? "," : "", t,
                     dl_dtype_name((dl_dtype)t), off, off + 3 * sz);
        off += 3 * sz;
    }
    strcpy(p, "}");
    s = dl_st_open(make_st("all-dtypes.safetensors", all, off), &f);
    CHECK(s == DL_OK && dl_st_count(f) == DL_DTYPE_COUNT, "all dtypes refused: %s", dl_last_error());
    if (!s) dl_st_close(f);
}

/* ------------------------------------------------------------------ invalid files */

static void expect_bad(const char *what, const char *path, const char *keyword)
{
    dl_st_file *f = NULL;
    int before = failures;
    dl_status s = dl_st_open(path, &f);
    const char *msg = dl_last_error();
    CHECK(s == DL_EDATA, "%s: status %d, expected DL_EDATA (%s)", what, s, msg);
    CHECK(f == NULL, "%s: handle returned on failure", what);
    CHECK(strstr(msg, path) == msg, "%s: message does not start with the path: %s", what, msg);
    CHECK(strstr(msg, keyword) != NULL, "%s: message lacks \"%s\": %s", what, keyword, msg);
    CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line", what);
    if (failures == before) printf("ok    %-34s %s\n", what, msg);
    if (f) dl_st_close(f);
}

/* A header entry: T("a", "F32", "[2]", 0, 8). */
#define T(name, dtype, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

/* Headers that must be refused, each with data_bytes of data after it. */
static const struct {
    const char *what, *header;
    size_t data_bytes;
    const char *keyword; /* expected in the message */
} bad_headers[] = {
    {"non-UTF-8 header", "{\"a\xff\":" "{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "UTF-8"},
    {"overlong UTF-8", "{\"\xc0\xaf\":1}", 0, "UTF-8"},
    {"non-JSON header", "hello world", 0, "invalid JSON"},
    {"header not an object", "[1,2]", 0, "not a JSON object"},
    {"overlapping offsets", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}", 12, "overlap"},
    {"gap between offsets", "{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[1]", 12, 16) "}", 16, "gap"},
    {"size not shape x dtype", "{" T("a", "F32", "[3]", 0, 8) "}", 8, "span"},
    {"shape product overflow", "{" T("a", "F32", "[4294967296,4294967296]", 0, 8) "}", 8, "overflow"},
    {"byte size overflow", "{" T("a", "F64", "[2305843009213693952,2]", 0, 8) "}", 8, "overflow"},
    {"trailing bytes", "{" T("a", "F32", "[2]", 0, 8) "}", 12, "trailing"},
    {"duplicate names", "{" T("a", "F32", "[1]", 0, 4) "," T("a", "F32", "[1]", 4, 8) "}", 8, "duplicate"},
    {"a newline in a name", "{" T("a\\nb", "F32", "[1]", 0, 4) "," T("a\\nb", "F32", "[1]", 4, 8) "}", 8, "a?b"},
    {"unknown dtype", "{" T("a", "F31", "[2]", 0, 8) "}", 8, "unknown dtype"},
    {"negative dimension", "{" T("a", "F32", "[-2]", 0, 8) "}", 8, "negative"},
    {"offsets out of order", "{" T("a", "F32", "[0]", 8, 0) "}", 8, "out of order"},
    {"offsets past the data", "{" T("a", "F32", "[2]", 8, 16) "}", 8, "past the data"},
    {"float dimension", "{" T("a", "F32", "[2.0]", 0, 8) "}", 8, "integers"},
    {"9 dimensions", "{" T("a", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 8, "dimensions"},
    {"missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing"},
    {"unexpected field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"x\":1}}", 4, "unexpected"},
    {"field given twice", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\","
                          "\"shape\":[],\"data_offsets\":[0,4]}}", 4, "twice"},
    {"entry not an object", "{\"a\":[1]}", 0, "not an object"},
    {"metadata value not a string", "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__"},
    {"NUL in a name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "NUL"},
    {"trailing comma", "{" T("a", "F32", "[2]", 0, 8) ",}", 8, "invalid JSON"},
    {"data after the object", "{} {}", 0, "invalid JSON"},
    {"lone surrogate escape", "{\"\\ud800\":1}", 0, "surrogate"},
    {"raw control character", "{\"a\tb\":1}", 0, "control"},
    {"unterminated string", "{\"abc", 0, "unterminated"},
    {"leading zero", "{" T("a", "F32", "[02]", 0, 8) "}", 8, "invalid JSON"},
    {"data_offsets with 3 numbers", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4,
     "data_offsets"},
};

static void test_invalid(void)
{
    const char *ok = "{" T("a", "F32", "[2]", 0, 8) "}";
    size_t n = strlen(ok);
    expect_bad("header length 2^64-1", make_raw("b1", UINT64_MAX, ok, n, 8), "header length");
    expect_bad("header length past the end", make_raw("b2", n + 9, ok, n, 8), "past the end");
    expect_bad("header length over 100 MB", make_raw("b3", 100000001, "{}", 2, 0), "limit");
    expect_bad("header length 0", make_raw("b4", 0, "", 0, 0), "invalid JSON");
    write_bytes(tmp_path("b5"), "", 0);
    expect_bad("empty file", tmp_path("b5"), "too short");
    write_bytes(tmp_path("b6"), "\x10\0\0\0\0\0\0", 7);
    expect_bad("7-byte file", tmp_path("b6"), "too short");
    expect_bad("NUL byte padding", make_raw("b7", 3, "{}\0", 3, 0), "invalid JSON");
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    expect_bad("nested too deeply", make_raw("b8", 300, deep, 300, 0), "deeply");
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        expect_bad(bad_headers[i].what, make_st(name, bad_headers[i].header, bad_headers[i].data_bytes),
                   bad_headers[i].keyword);
    }
}

/* ------------------------------------------------------------------ writing */

static void test_write(void)
{
    float w[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    uint16_t h[3] = {0x3c00, 0x8001, 0x7c00};
    int64_t i64 = -42;
    uint8_t flags[2] = {1, 0};
    dl_tensor_ref t[5] = {
        {.name = "z.w", .dtype = DL_F32, .ndim = 2, .shape = {2, 3}, .data = w, .nbytes = sizeof w},
        {.name = "a\"b\\c\n\xc3\xa9", .dtype = DL_F16, .ndim = 1, .shape = {3}, .data = h, .nbytes = sizeof h},
        {.name = "m.count", .dtype = DL_I64, .ndim = 0, .data = &i64, .nbytes = 8},
        {.name = "m.empty", .dtype = DL_F32, .ndim = 3, .shape = {2, 0, 4}, .data = NULL, .nbytes = 0},
        {.name = "b.flags", .dtype = DL_BOOL, .ndim = 1, .shape = {2}, .data = flags, .nbytes = 2},
    };
    const char *path = tmp_path("written.safetensors");
    dl_status s = dl_st_write(path, t, 5);
    CHECK(s == DL_OK, "dl_st_write: %s", dl_last_error());
    dl_st_file *f;
    if (s || (s = dl_st_open(path, &f)) != DL_OK) {
        CHECK(0, "written file does not open: %s", dl_last_error());
        return;
    }
    CHECK(dl_st_count(f) == 5, "round trip count %d", dl_st_count(f));
    for (int i = 0; i < 5; i++) {
        const dl_tensor_ref *g = dl_st_find(f, t[i].name);
        CHECK(g != NULL, "round trip lost %s", t[i].name);
        if (!g) continue;
        CHECK(g->dtype == t[i].dtype && g->ndim == t[i].ndim && g->nbytes == t[i].nbytes,
              "round trip %s: dtype/shape", t[i].name);
        CHECK(!memcmp(g->shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim), "round trip %s: shape", t[i].name);
        CHECK(!t[i].nbytes || !memcmp(g->data, t[i].data, t[i].nbytes), "round trip %s: data", t[i].name);
    }
    /* Data laid out in name order: the first tensor in offset order is the smallest name. */
    CHECK(!strcmp(dl_st_tensor(f, 0)->name, "a\"b\\c\n\xc3\xa9"), "data not in name order");
    dl_st_close(f);

    FILE *fp = fopen(path, "rb");
    char head[64] = {0};
    uint64_t hlen = 0;
    if (fp) {
        uint8_t len8[8];
        CHECK(fread(len8, 1, 8, fp) == 8 && fread(head, 1, 32, fp) == 32, "short file");
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
        fclose(fp);
    }
    CHECK(hlen % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)hlen);
    CHECK(!strncmp(head, "{\"__metadata__\":{\"format\":\"pt\"}", 31),
          "header does not start with __metadata__: %.32s", head);

    /* Refusals leave an existing file untouched and no temporary file behind. */
    dl_tensor_ref dup[2] = {t[0], t[0]};
    s = dl_st_write(path, dup, 2);
    CHECK(s == DL_EDATA && strstr(dl_last_error(), "duplicate"), "duplicate names: %d %s", s, dl_last_error());
    s = dl_st_open(path, &f);
    CHECK(s == DL_OK && dl_st_count(f) == 5, "failed write changed the existing file");
    if (!s) dl_st_close(f);
    dl_tensor_ref bad = t[0];
    bad.nbytes = 20;
    CHECK(dl_st_write(tmp_path("never.safetensors"), &bad, 1) != DL_OK, "inconsistent nbytes written");
    CHECK(access(tmp_path("never.safetensors"), F_OK) != 0, "file left after a failed write");
    s = dl_st_write(tmp_path("no-tensors.safetensors"), NULL, 0);
    CHECK(s == DL_OK, "writing no tensors: %s", dl_last_error());
}

/* ------------------------------------------------------------------ conversions */

/* The value of half h by arithmetic on its fields. */
static double ref_half(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

/* The nearest half to x (ties to even) by searching the table of finite halves. */
static uint16_t ref_round(float x)
{
    if (isnan(x)) return 0x7e00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7bff; /* largest h with ref_half(h) <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ref_half((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    double below = ref_half((uint16_t)lo), above = lo == 0x7bff ? 65536.0 : ref_half((uint16_t)(lo + 1));
    if (a - below < above - a || (a - below == above - a && !(lo & 1))) return sign | (uint16_t)lo;
    return sign | (uint16_t)(lo + 1);
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_f16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) { /* decoding, exhaustively */
        float got = dl_f16_to_f32((uint16_t)h);
        double want = ref_half((uint16_t)h);
        int same_sign = !signbit(got) == !(h & 0x8000);
        int ok = isnan(want) ? isnan(got) && (bits(got) >> 13 & 0x3ff) == (h & 0x3ff) && same_sign /* payload */
                             : (double)got == want && same_sign;
        if (!ok && bad++ < 5) CHECK(0, "f16 0x%04x -> %g, expected %g", h, got, want);
        uint16_t back = dl_f32_to_f16(got); /* and back */
        int back_ok = isnan(want) ? (back & 0x7c00) == 0x7c00 && (back & 0x3ff) : back == h;
        if (!back_ok && bad++ < 5) CHECK(0, "f16 0x%04x round trip gave 0x%04x", h, back);
    }
    CHECK(bad == 0, "%d half values decode or round-trip wrongly", bad);

    /* Encoding: every midpoint between neighbouring halves and the floats beside it, then random
     * bit patterns, against the table search. */
    int tested = 0;
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float mid = (float)((ref_half((uint16_t)h) + ref_half((uint16_t)(h + 1))) / 2);
        float xs[3] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 6; k++, tested++) {
            float x = k < 3 ? xs[k] : -xs[k - 3];
            uint16_t got = dl_f32_to_f16(x), want = ref_round(x);
            if (got != want && bad++ < 5) CHECK(0, "f32 %.9g -> 0x%04x, expected 0x%04x", x, got, want);
        }
    }
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2000000; i++, tested++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float x = from_bits((uint32_t)(state >> 32));
        uint16_t got = dl_f32_to_f16(x), want = ref_round(x);
        if (isnan(x)) continue;
        if (got != want && bad++ < 5) CHECK(0, "f32 %.9g (0x%08x) -> 0x%04x, expected 0x%04x", x, bits(x), got, want);
    }
    CHECK(bad == 0, "%d of %d float -> half conversions wrong", bad, tested);

    const struct { float x; uint16_t h; } known[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65519.99f, 0x7bff}, {65520.0f, 0x7c00},
        {1e9f, 0x7c00}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000}, {0x1.8p-25f, 0x0001}, {0x1p-14f, 0x0400},
        {0x1.ff8p-15f, 0x03ff}, {0x1.ffcp-15f, 0x0400}, {1 + 0x1p-11f, 0x3c00}, {1 + 0x3p-11f, 0x3c02},
        {-0.0f, 0x8000}, {0.1f, 0x2e66},
        {INFINITY, 0x7c00}, {-INFINITY, 0xfc00}, {1e-9f, 0x0000}, {-1e-9f, 0x8000}, {0x1.ffep-15f, 0x0400},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        CHECK(dl_f32_to_f16(known[i].x) == known[i].h, "f32 %a -> 0x%04x, expected 0x%04x", known[i].x,
              dl_f32_to_f16(known[i].x), known[i].h);
    CHECK(dl_f32_to_f16(NAN) == 0x7e00, "NaN -> 0x%04x", dl_f32_to_f16(NAN));

    for (uint32_t b = 0; b < 65536; b++)
        if (bits(dl_bf16_to_f32((uint16_t)b)) != b << 16) {
            CHECK(0, "bf16 0x%04x decodes wrongly", b);
            break;
        }
}

static void test_dtypes(void)
{
    for (int t = 0; t < DL_DTYPE_COUNT; t++) {
        dl_dtype back;
        CHECK(dl_dtype_from_name(dl_dtype_name((dl_dtype)t), &back) == 0 && back == (dl_dtype)t, "dtype %d name", t);
        CHECK(dl_dtype_size((dl_dtype)t) > 0, "dtype %d size", t);
    }
    dl_dtype d;
    CHECK(dl_dtype_from_name("f32", &d) == -1 && dl_dtype_from_name("", &d) == -1, "unknown dtype names accepted");
    CHECK(dl_dtype_size(DL_BF16) == 2 && dl_dtype_size(DL_F64) == 8 && dl_dtype_size(DL_BOOL) == 1, "dtype sizes");

    /* dl_tensor_to_f32 from unaligned data of each float type. */
    uint8_t buf[1 + 3 * 8];
    float out[3];
    double d64[3] = {1.5, -1e-40, 3e38};
    memcpy(buf + 1, d64, sizeof d64);
    dl_tensor_ref t = {.name = "t", .dtype = DL_F64, .ndim = 1, .shape = {3}, .data = buf + 1, .nbytes = 24};
    CHECK(dl_tensor_to_f32(&t, out) == 0 && out[0] == 1.5f && out[1] == (float)-1e-40 && out[2] == 3e38f,
          "F64 -> F32");
    uint16_t f16[3] = {0x3c00, 0xc000, 0x0001};
    memcpy(buf + 1, f16, sizeof f16);
    t.dtype = DL_F16;
    t.nbytes = 6;
    CHECK(dl_tensor_to_f32(&t, out) == 0 && out[0] == 1 && out[1] == -2 && out[2] == 0x1p-24f, "F16 -> F32");
    uint16_t b16[3] = {0x3f80, 0xc040, 0x0001};
    memcpy(buf + 1, b16, sizeof b16);
    t.dtype = DL_BF16;
    CHECK(dl_tensor_to_f32(&t, out) == 0 && out[0] == 1 && out[1] == -3 && out[2] == from_bits(0x10000),
          "BF16 -> F32");
    float f32[3] = {1, 2, 3};
    memcpy(buf + 1, f32, sizeof f32);
    t.dtype = DL_F32;
    t.nbytes = 12;
    CHECK(dl_tensor_to_f32(&t, out) == 0 && out[2] == 3, "F32 -> F32");
    t.dtype = DL_I64;
    t.nbytes = 24;
    CHECK(dl_tensor_to_f32(&t, out) == -1, "I64 -> F32 should be refused");
}

int main(void)
{
    const char *env = getenv("TEST_TMP");
    if (env && *env) snprintf(tmpdir, sizeof tmpdir, "%s", env);
    else {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
        if (!mkdtemp(tmpdir)) {
            printf("FAIL: cannot make a temporary folder\n");
            return 1;
        }
    }
    test_dtypes();
    test_f16();
    test_valid();
    test_invalid();
    test_write();
    if (failures) {
        printf("----\n%d checks failed\n", failures);
        return 1;
    }
    printf("----\nall checks passed\n");
    return 0;
}
