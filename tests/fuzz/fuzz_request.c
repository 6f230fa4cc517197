/*
 * fuzz_request.c - the HTTP API's parameters (tools/serve_api.c): what a client of
 * `deeplab serve` controls besides the photo itself. The first byte picks the endpoint
 * (remove.bg's, rembg's, a new session, a render) and the second the body: fields
 * (NUL-separated name, value, name, value ...; a name starting with '@' is a file part) or
 * a JSON body. Then api_finish, and when the request is accepted the cut-out it describes is
 * made from a fixed 24 x 16 photo and fixed logits, so that every option reaches
 * dl_cutout_make (strokes, roi, scale, position, crop margins, previews, ...).
 *
 * Checks: no crash, leak or hang; a refused request has an HTTP status of the API's (400, 413
 * or 500 for memory), a code and a one-line detail, and its error body is JSON that parses; an
 * accepted one gives a cut-out or a documented status with a message, and its reply encodes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "serve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { W = 24, H = 16, C = 21 };

static void contract(const char *what, int ok, const api_request *a)
{
    if (ok) return;
    fprintf(stderr, "fuzz_request: %s (status %d, code \"%s\", detail \"%s\")\n", what, a->status, a->code, a->detail);
    abort();
}

/* The fixed photo and logits: a gradient and smooth class scores. */
static dl_image photo;
static float logits[C * H * W];
static dl_refiner *refiner;

static void setup(void)
{
    if (photo.px) return;
    photo = (dl_image){W, H, 3, malloc(W * H * 3)};
    for (int i = 0; i < W * H * 3; i++) photo.px[i] = (uint8_t)(i * 37 % 251);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < W * H; i++) logits[c * W * H + i] = (float)((c * 7 + i * (c + 3)) % 23) / 3.0f - 3.0f;
    if (dl_refiner_create(DL_DEVICE_CPU, &refiner) != DL_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 8192) return 0;
    setup();
    const api_endpoint e = (api_endpoint)(data[0] % 4);
    const api_limits lim = {.max_megapixels = 25, .allow_url_fetch = data[0] & 4, .max_field = 4096};
    api_request a;
    api_init(&a, e, &lim);
    const char *body = (const char *)data + 2;
    const size_t n = size - 2;
    if (data[1] & 1) {
        api_json(&a, body, n);
    } else { /* name \0 value \0 ... */
        char *copy = malloc(n + 1);
        memcpy(copy, body, n);
        copy[n] = 0;
        for (char *p = copy; p < copy + n;) {
            char *name = p, *value = name + strlen(name) + 1;
            if (value > copy + n) break;
            const size_t vlen = strlen(value);
            const int file = name[0] == '@';
            api_field(&a, name + file, value, vlen, file);
            p = value + vlen + 1;
        }
        free(copy);
    }
    const int refused = api_finish(&a) != 0;
    contract("refused without an error", !refused || a.status, &a);
    contract("accepted with an error", refused || !a.status, &a);
    if (refused) {
        const int known = a.status == 400 || a.status == 413 || a.status == 500;
        contract("an unexpected status", known && a.code[0] && a.detail[0] && !strchr(a.detail, '\n'), &a);
        serve_reply r = {0};
        api_error_reply(&a, &r);
        dl_json_doc doc;
        contract("the error body is not JSON", dl_json_parse((const char *)r.body, r.size, &doc) == DL_OK, &a);
        dl_json_free(&doc);
        reply_free(&r);
    } else {
        dl_cutout_options o = dl_cutout_request_options(&a.cut);
        if (e == API_RENDER && a.preview > 0) o.ref_w = W * 2, o.ref_h = H * 2; /* as if the photo were a preview */
        dl_cutout cut;
        const dl_status s = dl_cutout_make(&photo, logits, C, H, W, &o, refiner, &cut);
        if (s == DL_OK) {
            fuzz_touch(cut.img.px, (size_t)cut.img.w * cut.img.h * (size_t)cut.img.c);
            serve_reply r = {0};
            api_cutout_reply(&a, &cut, "other", &r);
            contract("the reply did not encode", r.status == 200 || r.status == 500, &a);
            reply_free(&r);
            dl_cutout_free(&cut);
        } else {
            const char *msg = dl_last_error();
            contract("a cut-out failed without a documented status",
                     (s == DL_EUSAGE || s == DL_ENOMEM) && msg[0] && !strchr(msg, '\n'), &a);
        }
    }
    api_free(&a);
    return 0;
}
