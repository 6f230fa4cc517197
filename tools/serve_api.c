/*
 * serve_api.c - the API's fields into a cut-out request, and its answers (serve.h).
 *
 * Every field of remove.bg's POST /v1.0/removebg, rembg's POST /api/remove and the editing
 * sessions is looked up in one table. A field either names the cut-out request key it sets
 * (dl_cutout_request_set, the same call rmbg's options make, so that the API's cut-out is rmbg's)
 * or has a handler that translates it first (remove.bg's size, type, channels, crop ...). Unknown
 * fields, fields of another endpoint and values deeplab cannot honour (shadows) are refused,
 * never ignored. Errors are kept as remove.bg gives them: a status, a code, a title, a detail.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "json.h"
#include "serve.h"

/* ------------------------------------------------------------------ replies */

void reply_free(serve_reply *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

void reply_header(serve_reply *r, const char *name, const char *fmt, ...)
{
    size_t k = strlen(r->headers);
    if (k + strlen(name) + 4 >= sizeof r->headers) return;
    k += (size_t)snprintf(r->headers + k, sizeof r->headers - k, "%s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->headers + k, sizeof r->headers - k, fmt, ap);
    va_end(ap);
    k = strlen(r->headers);
    if (k + 1 < sizeof r->headers) r->headers[k] = '\n', r->headers[k + 1] = 0;
}

void reply_json(serve_reply *r, int status, const char *json)
{
    r->status = status;
    r->type = "application/json";
    r->size = strlen(json);
    r->body = (uint8_t *)strdup(json);
    if (!r->body) r->size = 0;
}

/* ------------------------------------------------------------------ errors */

static const char *title_of(int status, const char *code)
{
    if (!strcmp(code, "missing_source")) return "No image given";
    if (!strcmp(code, "multiple_sources")) return "Multiple image sources given";
    if (!strcmp(code, "invalid_file_type")) return "Invalid file type";
    if (!strcmp(code, "resolution_too_high")) return "Input image has a resolution that is too high to process";
    if (!strcmp(code, "unknown_foreground")) return "Could not identify foreground in image";
    if (!strcmp(code, "unknown_parameter")) return "Unknown parameter";
    if (!strcmp(code, "unsupported_parameter")) return "Parameter not supported";
    switch (status) {
    case 400: return "Invalid parameter";
    case 403: return "Authentication failed";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 410: return "Gone";
    case 413: return "File too large";
    case 415: return "Unsupported media type";
    case 429: return "Rate limit exceeded";
    case 503: return "Service unavailable";
    default: return "Internal error";
    }
}

int api_error(api_request *a, int status, const char *code, const char *fmt, ...)
{
    if (a->status) return -1;
    a->status = status;
    snprintf(a->code, sizeof a->code, "%s", code);
    snprintf(a->title, sizeof a->title, "%s", title_of(status, code));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->detail, sizeof a->detail, fmt, ap);
    va_end(ap);
    for (char *p = a->detail; *p; p++) /* one line, whatever the client's names and values hold */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return -1;
}

void api_error_for(api_endpoint e, int status, const char *code, const char *detail, serve_reply *r)
{
    char body[1024] = "";
    if (e == API_REMBG) { /* FastAPI's shape, as rembg's server answers */
        strcat(body, "{\"detail\":");
        json_string(body, sizeof body, detail);
        strcat(body, "}");
    } else {
        strcat(body, "{\"errors\":[{\"title\":");
        json_string(body, sizeof body, title_of(status, code));
        strcat(body, ",\"code\":");
        json_string(body, sizeof body, code);
        strcat(body, ",\"detail\":");
        json_string(body, sizeof body, detail);
        strcat(body, "}]}");
    }
    reply_json(r, status, body);
}

void api_error_reply(const api_request *a, serve_reply *r)
{
    api_error_for(a->endpoint, a->status ? a->status : 500, a->status ? a->code : "internal_error",
                  a->status ? a->detail : "internal error", r);
}

/* ------------------------------------------------------------------ base64 */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const uint8_t *data, size_t n, size_t *out_len)
{
    const size_t len = (n + 2) / 3 * 4;
    char *s = malloc(len + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < n ? (uint32_t)data[i + 1] << 8 : 0) |
                           (i + 2 < n ? data[i + 2] : 0);
        *p++ = b64[v >> 18 & 63];
        *p++ = b64[v >> 12 & 63];
        *p++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *p++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *p = 0;
    *out_len = len;
    return s;
}

int base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
    /* a data: URL ("data:image/png;base64,...") as browsers make them */
    if (n > 5 && !strncmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', n);
        if (!comma) return -1;
        n -= (size_t)(comma + 1 - s), s = comma + 1;
    }
    uint8_t *d = malloc(n / 4 * 3 + 3);
    if (!d) return -1;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (isspace(c)) continue;
        if (c == '=') {
            pad++;
            continue;
        }
        const char *q = c ? strchr(b64, c) : NULL;
        int v = q ? (int)(q - b64) : c == '-' ? 62 : c == '_' ? 63 : -1; /* the URL alphabet too */
        if (v < 0 || pad) {
            free(d);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if ((bits += 6) >= 8) d[k++] = (uint8_t)(acc >> (bits -= 8));
    }
    if (pad > 2) {
        free(d);
        return -1;
    }
    *out = d;
    *out_len = k;
    return 0;
}

/* ------------------------------------------------------------------ the fields */

enum { RB = 1 << API_REMOVEBG, RG = 1 << API_REMBG, SN = 1 << API_SESSION_NEW, RD = 1 << API_RENDER };

typedef int (*field_fn)(api_request *a, const char *name, const char *v, size_t len, int file);

/* Sets a cut-out request key; a bad value is a 400 naming the field. */
static int set_key(api_request *a, const char *key, const char *name, const char *v)
{
    if (dl_cutout_request_set(&a->cut, key, v, name) != DL_OK)
        return api_error(a, 400, "invalid_parameter", "%s", dl_last_error());
    return 0;
}

static int is(const char *v, const char *word) { return !strcasecmp(v, word); }

static int blob_set(api_request *a, int which, const char *v, size_t len)
{
    api_blob *b = &a->blobs[which];
    free(b->data), free(b->url);
    b->url = NULL;
    b->data = malloc(len ? len : 1);
    if (!b->data) return api_error(a, 500, "internal_error", "out of memory");
    memcpy(b->data, v, len);
    b->size = len;
    return 0;
}

static int blob_b64(api_request *a, int which, const char *name, const char *v, size_t len)
{
    api_blob *b = &a->blobs[which];
    free(b->data), free(b->url);
    b->data = NULL, b->url = NULL;
    if (base64_decode(v, len, &b->data, &b->size))
        return api_error(a, 400, "invalid_parameter", "%s: not base64", name);
    return 0;
}

static int blob_url(api_request *a, int which, const char *name, const char *v)
{
    if (!a->lim.allow_url_fetch)
        return api_error(a, 400, "unsupported_parameter",
                         "%s: this server does not fetch URLs (start it with --allow-url-fetch); send the file", name);
    api_blob *b = &a->blobs[which];
    free(b->data), free(b->url);
    b->data = NULL;
    b->url = strdup(v);
    return b->url ? 0 : api_error(a, 500, "internal_error", "out of memory");
}

static int f_image(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)file;
    a->sources++;
    if (!strcmp(name, "image_file_b64")) return blob_b64(a, BLOB_IMAGE, name, v, len);
    if (!strcmp(name, "image_url") || !strcmp(name, "url")) return blob_url(a, BLOB_IMAGE, name, v);
    return blob_set(a, BLOB_IMAGE, v, len); /* image_file, rembg's file */
}

static int f_picture(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)file;
    const int which = !strncmp(name, "bg_", 3) ? BLOB_BG : !strncmp(name, "keep", 4) ? BLOB_KEEP : BLOB_ERASE;
    if (strstr(name, "_url")) return blob_url(a, which, name, v);
    if (strstr(name, "_b64")) return blob_b64(a, which, name, v, len);
    return blob_set(a, which, v, len);
}

/* remove.bg's size: the output's resolution at most; full/4k/auto up to the server's limit. */
static int f_size(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    double mp;
    if (is(v, "preview") || is(v, "small") || is(v, "regular")) mp = 0.25;
    else if (is(v, "medium")) mp = 1.5;
    else if (is(v, "hd")) mp = 4;
    else if (is(v, "full") || is(v, "4k") || is(v, "auto") || is(v, "50MP")) mp = a->lim.max_megapixels;
    else
        return api_error(a, 400, "invalid_parameter", "%s takes preview, small, regular (0.25 megapixels), medium (1.5), "
                         "hd (4), full, 4k or auto (the photo's size, up to %g megapixels), not '%s'",
                         name, a->lim.max_megapixels, v);
    a->cut.megapixels = mp < a->lim.max_megapixels ? mp : a->lim.max_megapixels;
    return 0;
}

/* remove.bg's types as sets of the PASCAL VOC classes the model knows. */
static const struct {
    const char *type, *classes;
} types[] = {
    {"person", "person"},
    {"animal", "bird,cat,cow,dog,horse,sheep"},
    {"car", "car"},
    {"transportation", "aeroplane,bicycle,boat,bus,car,motorbike,train"},
    {"product", "bottle,chair,diningtable,pottedplant,sofa,tvmonitor"},
};

static int f_type(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "auto")) {
        a->type[0] = 0;
        return 0;
    }
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        if (is(v, types[k].type)) {
            snprintf(a->type, sizeof a->type, "%s", types[k].type);
            return set_key(a, "classes", name, types[k].classes);
        }
    return api_error(a, 400, "unsupported_parameter",
                     "%s '%s': the model knows the 20 PASCAL VOC classes; types are auto, person, animal, car, "
                     "transportation and product (or give classes=person,dog)", name, v);
}

static int f_type_level(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "none") || is(v, "1") || is(v, "latest")) return 0;
    return api_error(a, 400, "unsupported_parameter", "%s '%s': deeplab names one level of types (none, 1 or latest)",
                     name, v);
}

static int f_format(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "auto")) a->file_format = DL_FORMAT_AUTO;
    else if (is(v, "png")) a->file_format = DL_FORMAT_PNG;
    else if (is(v, "jpg") || is(v, "jpeg")) a->file_format = DL_FORMAT_JPEG;
    else if (is(v, "zip")) a->file_format = DL_FORMAT_ZIP;
    else return api_error(a, 400, "invalid_parameter", "%s takes auto, png, jpg or zip, not '%s'", name, v);
    return 0;
}

/* channels: rgba, alpha (remove.bg's), what rmbg's --format has besides (overlay, labels), and
 * matte: the alpha in a PNG's alpha channel over black, which a browser lays over the photo it
 * has with one composite operation (the editor's previews: a quarter of rgba's bytes to encode). */
static int f_channels(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    a->matte = is(v, "matte");
    if (is(v, "alpha") || a->matte) return set_key(a, "format", name, "mask");
    if (is(v, "rgba") || is(v, "overlay") || is(v, "labels")) return set_key(a, "format", name, v);
    return api_error(a, 400, "invalid_parameter", "%s takes rgba, alpha, matte, overlay or labels, not '%s'", name, v);
}

static int f_flag(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    const char *key = !strcmp(name, "crop") ? "crop" : !strcmp(name, "largest") ? "largest" : "decontaminate";
    if (!(is(v, "true") || is(v, "false") || !strcmp(v, "1") || !strcmp(v, "0")))
        return api_error(a, 400, "invalid_parameter", "%s takes true or false, not '%s'", name, v);
    return set_key(a, key, name, is(v, "1") ? "true" : is(v, "0") ? "false" : v);
}

/* Things deeplab cannot do are refused unless they ask for nothing. */
static int f_shadow(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (!strcmp(name, "add_shadow") && (is(v, "false") || !strcmp(v, "0"))) return 0;
    return api_error(a, 400, "unsupported_parameter", "%s: deeplab does not add shadows", name);
}

static int f_semitransparency(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "true") || !strcmp(v, "1")) return 0; /* deeplab's edges are soft anyway */
    if (is(v, "false") || !strcmp(v, "0")) return set_key(a, "threshold", name, "0.5");
    return api_error(a, 400, "invalid_parameter", "%s takes true or false, not '%s'", name, v);
}

/* keep_at: X,Y, several separated by ';' (or repeated). */
static int f_keep_at(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)file;
    char *copy = strndup(v, len), *save = NULL;
    if (!copy) return api_error(a, 500, "internal_error", "out of memory");
    int rc = 0;
    for (char *p = strtok_r(copy, "; ", &save); p && !rc; p = strtok_r(NULL, "; ", &save))
        rc = set_key(a, "keep-at", name, p);
    free(copy);
    return rc;
}

static int f_preview(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < 0 || n > 65535)
        return api_error(a, 400, "invalid_parameter", "%s takes the longer side of the preview in pixels (0: full "
                         "size), not '%s'", name, v);
    a->preview = (int)n;
    return 0;
}

/* rembg's fields */
static int f_model(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (!*v || is(v, "u2net") || is(v, "deeplab")) return 0; /* rembg's default: the one model served */
    return api_error(a, 400, "unsupported_parameter", "%s '%s': this server has one model, DeepLabV3 (give u2net, "
                     "rembg's default, or leave it out)", name, v);
}

static int f_alpha_matting(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "true") || !strcmp(v, "1")) return set_key(a, "refine", name, "guided");
    if (is(v, "false") || !strcmp(v, "0")) return set_key(a, "refine", name, "none");
    return api_error(a, 400, "invalid_parameter", "%s takes true or false, not '%s'", name, v);
}

static int f_matting_value(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    const char *def = !strcmp(name, "af") ? "240" : "10"; /* rembg's defaults */
    if (!strcmp(v, def)) return 0;
    return api_error(a, 400, "unsupported_parameter", "%s: deeplab refines edges with a guided filter, not alpha "
                     "matting thresholds (use refine_radius, refine_eps)", name);
}

static int f_only_mask(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "true") || !strcmp(v, "1")) return set_key(a, "format", name, "mask");
    if (is(v, "false") || !strcmp(v, "0")) return 0;
    return api_error(a, 400, "invalid_parameter", "%s takes true or false, not '%s'", name, v);
}

static int f_post_process(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (is(v, "false") || !strcmp(v, "0")) return 0;
    return api_error(a, 400, "unsupported_parameter", "%s: deeplab has no mask post-processing; its edges are refined "
                     "(try threshold or largest)", name);
}

/* rembg's bgc: "R,G,B,A" in 0..255 */
static int f_bgc(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    int c[4];
    char tail;
    if (sscanf(v, "%d,%d,%d,%d%c", &c[0], &c[1], &c[2], &c[3], &tail) != 4 || c[0] < 0 || c[0] > 255 || c[1] < 0 ||
        c[1] > 255 || c[2] < 0 || c[2] > 255 || c[3] < 0 || c[3] > 255)
        return api_error(a, 400, "invalid_parameter", "%s takes R,G,B,A (0 to 255 each), not '%s'", name, v);
    char hex[16];
    snprintf(hex, sizeof hex, "%02x%02x%02x%02x", c[0], c[1], c[2], c[3]);
    return set_key(a, "bg-color", name, hex);
}

static int f_extras(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)len, (void)file;
    if (!*v || !strcmp(v, "{}")) return 0;
    return api_error(a, 400, "unsupported_parameter", "%s: deeplab takes no extra model parameters", name);
}

static int json_member(api_request *a, const char *name, const dl_json *v);

/* strokes in a form: the JSON array a JSON body would have */
static int f_strokes(api_request *a, const char *name, const char *v, size_t len, int file)
{
    (void)file;
    dl_json_doc doc;
    if (dl_json_parse(v, len, &doc) != DL_OK)
        return api_error(a, 400, "invalid_parameter", "%s: %s", name, dl_last_error());
    int rc = doc.root.type == DL_JSON_ARRAY ? json_member(a, name, &doc.root)
                                             : api_error(a, 400, "invalid_parameter", "%s takes a JSON array", name);
    dl_json_free(&doc);
    return rc;
}

static const struct field {
    const char *name;
    unsigned endpoints;
    const char *key; /* a cut-out request key, set with the value as it is ... */
    field_fn fn;     /* ... or a translation */
} fields[] = {
    /* the photo */
    {"image_file", RB | SN, NULL, f_image},
    {"image_file_b64", RB | SN, NULL, f_image},
    {"image_url", RB | SN, NULL, f_image},
    {"file", RG, NULL, f_image},
    {"url", RG, NULL, f_image},
    {"size", RB | SN, NULL, f_size},
    /* remove.bg's */
    {"type", RB | RD, NULL, f_type},
    {"type_level", RB, NULL, f_type_level},
    {"format", RB | RD, NULL, f_format},
    {"channels", RB | RD, NULL, f_channels},
    {"bg_color", RB | RD, "bg-color", NULL},
    {"bg_image_file", RB | RD, NULL, f_picture},
    {"bg_image_url", RB | RD, NULL, f_picture},
    {"crop", RB | RD, NULL, f_flag},
    {"crop_margin", RB | RD, "crop-margin", NULL},
    {"roi", RB | RD, "roi", NULL},
    {"scale", RB | RD, "scale", NULL},
    {"position", RB | RD, "position", NULL},
    {"add_shadow", RB, NULL, f_shadow},
    {"shadow_type", RB, NULL, f_shadow},
    {"shadow_opacity", RB, NULL, f_shadow},
    {"semitransparency", RB | RD, NULL, f_semitransparency},
    /* rembg's */
    {"model", RG, NULL, f_model},
    {"a", RG, NULL, f_alpha_matting},
    {"af", RG, NULL, f_matting_value},
    {"ab", RG, NULL, f_matting_value},
    {"ae", RG, NULL, f_matting_value},
    {"om", RG, NULL, f_only_mask},
    {"ppm", RG, NULL, f_post_process},
    {"bgc", RG, NULL, f_bgc},
    {"extras", RG, NULL, f_extras},
    /* deeplab's own, on every cut-out: rmbg's options by the same names */
    {"classes", RB | RG | RD, "classes", NULL},
    {"keep_at", RB | RG | RD, NULL, f_keep_at},
    {"largest", RB | RG | RD, NULL, f_flag},
    {"threshold", RB | RG | RD, "threshold", NULL},
    {"refine", RB | RG | RD, "refine", NULL},
    {"refine_radius", RB | RG | RD, "refine-radius", NULL},
    {"refine_eps", RB | RG | RD, "refine-eps", NULL},
    {"decontaminate", RB | RG | RD, NULL, f_flag},
    {"keep_mask_file", RB | RG | RD, NULL, f_picture},
    {"erase_mask_file", RB | RG | RD, NULL, f_picture},
    {"keep_mask_b64", RB | RG | RD, NULL, f_picture},
    {"erase_mask_b64", RB | RG | RD, NULL, f_picture},
    {"stroke", RB | RG | RD, "stroke", NULL},
    {"strokes", RB | RG | RD, NULL, f_strokes},
    {"jpeg_quality", RB | RG | RD, "jpeg-quality", NULL},
    {"preview", RD, NULL, f_preview},
};

static const char *endpoint_name(api_endpoint e)
{
    switch (e) {
    case API_REMOVEBG: return "POST /v1.0/removebg";
    case API_REMBG: return "/api/remove";
    case API_SESSION_NEW: return "POST /v1/sessions";
    default: return "POST /v1/sessions/ID/render";
    }
}

void api_init(api_request *a, api_endpoint e, const api_limits *lim)
{
    memset(a, 0, sizeof *a);
    a->endpoint = e;
    a->lim = *lim;
    dl_cutout_request_init(&a->cut);
    /* remove.bg's default size is preview; rembg and the sessions work at the photo's size */
    a->cut.megapixels = e == API_REMOVEBG ? fmin(0.25, lim->max_megapixels) : lim->max_megapixels;
    a->file_format = e == API_REMBG ? DL_FORMAT_PNG : DL_FORMAT_AUTO;
}

void api_free(api_request *a)
{
    for (int k = 0; k < BLOB_COUNT; k++) free(a->blobs[k].data), free(a->blobs[k].url);
    dl_cutout_request_free(&a->cut);
    memset(a, 0, sizeof *a);
}

int api_field(api_request *a, const char *name, const char *value, size_t len, int file)
{
    if (a->status) return -1;
    const struct field *f = NULL;
    for (size_t k = 0; !f && k < sizeof fields / sizeof fields[0]; k++)
        if (!strcmp(fields[k].name, name)) f = &fields[k];
    if (!f || !(f->endpoints & 1u << a->endpoint))
        return api_error(a, 400, "unknown_parameter", "'%s' is not a parameter of %s (see /openapi.json)", name,
                         endpoint_name(a->endpoint));
    if ((int64_t)len > a->lim.max_field) return api_error(a, 413, "file_too_large", "%s: too large", name);
    const int binary = f->fn == f_image || f->fn == f_picture;
    if (binary && (file || strstr(name, "_file") || !strcmp(name, "file")) && !strstr(name, "_b64"))
        return f->fn(a, name, value, len, file);
    /* a text value: NUL-terminated, no NUL inside */
    if (memchr(value, 0, len)) return api_error(a, 400, "invalid_parameter", "%s: a NUL byte in the value", name);
    char *v = strndup(value, len);
    if (!v) return api_error(a, 500, "internal_error", "out of memory");
    int rc = f->key ? set_key(a, f->key, name, v) : f->fn(a, name, v, len, file);
    free(v);
    return rc;
}

/* A JSON value as a field's text: strings as they are, numbers as written, booleans; arrays of
 * points (keep_at), of names (classes) and of strokes ({mode, radius, points}) as rmbg's text. */
static int json_member(api_request *a, const char *name, const dl_json *v)
{
    char buf[64];
    switch (v->type) {
    case DL_JSON_NULL: return 0; /* not given */
    case DL_JSON_TRUE: return api_field(a, name, "true", 4, 0);
    case DL_JSON_FALSE: return api_field(a, name, "false", 5, 0);
    case DL_JSON_NUMBER:
    case DL_JSON_STRING: return api_field(a, name, v->s, v->len, 0);
    case DL_JSON_OBJECT: break;
    case DL_JSON_ARRAY:
        if (!strcmp(name, "keep_at")) {
            for (size_t i = 0; i < v->len; i++) {
                const dl_json *p = &v->items[i];
                if (p->type == DL_JSON_STRING) {
                    if (api_field(a, name, p->s, p->len, 0)) return -1;
                    continue;
                }
                if (p->type != DL_JSON_ARRAY || p->len != 2 || p->items[0].type != DL_JSON_NUMBER ||
                    p->items[1].type != DL_JSON_NUMBER)
                    return api_error(a, 400, "invalid_parameter", "keep_at takes [[x, y], ...]");
                snprintf(buf, sizeof buf, "%s,%s", p->items[0].s, p->items[1].s);
                if (api_field(a, name, buf, strlen(buf), 0)) return -1;
            }
            return 0;
        }
        if (!strcmp(name, "classes")) {
            size_t n = 0;
            for (size_t i = 0; i < v->len; i++) n += v->items[i].len + 1;
            char *list = calloc(n + 1, 1);
            if (!list) return api_error(a, 500, "internal_error", "out of memory");
            for (size_t i = 0; i < v->len; i++) {
                const dl_json *c = &v->items[i];
                if (c->type != DL_JSON_STRING && c->type != DL_JSON_NUMBER) {
                    free(list);
                    return api_error(a, 400, "invalid_parameter", "classes takes a list of names or numbers");
                }
                if (i) strcat(list, ",");
                strcat(list, c->s);
            }
            int rc = api_field(a, name, list, strlen(list), 0);
            free(list);
            return rc;
        }
        if (!strcmp(name, "strokes")) {
            for (size_t i = 0; i < v->len; i++) {
                const dl_json *st = &v->items[i], *mode = NULL, *radius = NULL, *points = NULL;
                for (size_t k = 0; st->type == DL_JSON_OBJECT && k < st->len; k++) {
                    if (!strcmp(st->keys[k], "mode")) mode = &st->items[k];
                    else if (!strcmp(st->keys[k], "radius")) radius = &st->items[k];
                    else if (!strcmp(st->keys[k], "points")) points = &st->items[k];
                    else return api_error(a, 400, "invalid_parameter", "strokes: unknown member '%s'", st->keys[k]);
                }
                if (!mode || mode->type != DL_JSON_STRING || !radius || radius->type != DL_JSON_NUMBER || !points ||
                    points->type != DL_JSON_ARRAY || points->len < 1)
                    return api_error(a, 400, "invalid_parameter",
                                     "strokes takes [{\"mode\": \"keep\" or \"erase\", \"radius\": R, \"points\": "
                                     "[[x, y], ...]}, ...]");
                size_t cap = 64 + points->len * 48, k = 0;
                char *text = malloc(cap);
                if (!text) return api_error(a, 500, "internal_error", "out of memory");
                k += (size_t)snprintf(text, cap, "%s,%s", mode->s, radius->s);
                for (size_t p = 0; p < points->len; p++) {
                    const dl_json *pt = &points->items[p];
                    if (pt->type != DL_JSON_ARRAY || pt->len != 2 || pt->items[0].type != DL_JSON_NUMBER ||
                        pt->items[1].type != DL_JSON_NUMBER || strlen(pt->items[0].s) + strlen(pt->items[1].s) > 44) {
                        free(text);
                        return api_error(a, 400, "invalid_parameter", "strokes: points are [x, y] pairs of numbers");
                    }
                    k += (size_t)snprintf(text + k, cap - k, ",%s,%s", pt->items[0].s, pt->items[1].s);
                }
                int rc = api_field(a, "stroke", text, k, 0);
                free(text);
                if (rc) return -1;
            }
            return 0;
        }
        break;
    }
    return api_error(a, 400, "invalid_parameter", "%s takes a string, a number or true/false", name);
}

int api_json(api_request *a, const char *body, size_t len)
{
    dl_json_doc doc;
    if (dl_json_parse(body, len, &doc) != DL_OK)
        return api_error(a, 400, "invalid_parameter", "the JSON body: %s", dl_last_error());
    int rc = 0;
    if (doc.root.type != DL_JSON_OBJECT) rc = api_error(a, 400, "invalid_parameter", "the JSON body is not an object");
    for (size_t k = 0; !rc && k < doc.root.len; k++) rc = json_member(a, doc.root.keys[k], &doc.root.items[k]);
    dl_json_free(&doc);
    return rc;
}

int api_finish(api_request *a)
{
    if (a->status) return -1;
    const int needs_image = a->endpoint == API_REMOVEBG || a->endpoint == API_REMBG || a->endpoint == API_SESSION_NEW;
    if (needs_image && a->sources == 0)
        return api_error(a, 400, "missing_source",
                         a->endpoint == API_REMBG ? "no file given (file, or url with GET)"
                                                  : "no image given: image_file, image_file_b64 or image_url");
    if (needs_image && a->sources > 1)
        return api_error(a, 400, "multiple_sources", "give one of image_file, image_file_b64 and image_url");
    dl_cutout_options *c = &a->cut.cut;
    /* remove.bg's jpg has no transparency: over white unless a background is given */
    if (a->file_format == DL_FORMAT_JPEG && c->format == DL_CUTOUT_RGBA && c->background == DL_BG_NONE &&
        !a->blobs[BLOB_BG].data && !a->blobs[BLOB_BG].url)
        dl_cutout_request_set(&a->cut, "bg-color", "ffffff", "format");
    if (a->file_format == DL_FORMAT_JPEG && c->format == DL_CUTOUT_RGBA && c->background == DL_BG_COLOR &&
        c->bg_color[3] != 255)
        return api_error(a, 400, "invalid_parameter", "format=jpg has no transparency: give an opaque bg_color");
    if (a->file_format == DL_FORMAT_ZIP && c->format != DL_CUTOUT_RGBA)
        return api_error(a, 400, "invalid_parameter", "format=zip holds color.jpg and alpha.png: it needs channels=rgba");
    if (a->matte && a->file_format != DL_FORMAT_AUTO && a->file_format != DL_FORMAT_PNG)
        return api_error(a, 400, "invalid_parameter", "channels=matte is a PNG with an alpha channel: format png or auto");
    if (a->file_format == DL_FORMAT_JPEG && c->format == DL_CUTOUT_LABELS)
        return api_error(a, 400, "invalid_parameter", "channels=labels is a palette PNG: format png or auto");
    if ((c->scale > 0 || c->position) && c->format != DL_CUTOUT_RGBA && c->format != DL_CUTOUT_MASK)
        return api_error(a, 400, "invalid_parameter", "scale and position apply to channels rgba and alpha");
    return 0;
}

/* ------------------------------------------------------------------ answers */

const char *api_detected_type(const float *logits, int C, int h, int w, int *cls)
{
    const size_t hw = (size_t)h * w;
    size_t count[256] = {0};
    for (size_t i = 0; i < hw; i++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (logits[c * hw + i] > logits[best * hw + i]) best = c;
        count[best]++;
    }
    int top = 0; /* the class other than background with the most pixels */
    for (int c = 1; c < C; c++)
        if (count[c] > (top ? count[top] : 0)) top = c;
    *cls = top;
    if (C != 21 || top == 0) return "other";
    const char *name = dl_voc_class_name(top);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const char *p = strstr(types[k].classes, name);
        const size_t n = strlen(name);
        if (p && (p == types[k].classes || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return types[k].type;
    }
    return "other";
}

void api_cutout_reply(const api_request *a, const dl_cutout *cut, const char *type, serve_reply *r)
{
    uint8_t *bytes = NULL;
    size_t n = 0;
    dl_file_format f = a->file_format;
    if (f == DL_FORMAT_AUTO) f = !cut->indexed && cut->img.c == 3 ? DL_FORMAT_JPEG : DL_FORMAT_PNG;
    dl_status s;
    if (a->matte && cut->img.c == 1) { /* gray + alpha: black, the mask as its alpha */
        const size_t px = (size_t)cut->img.w * cut->img.h;
        dl_image ga = {cut->img.w, cut->img.h, 2, calloc(px, 2)};
        for (size_t i = 0; ga.px && i < px; i++) ga.px[2 * i + 1] = cut->img.px[i];
        s = ga.px ? dl_image_encode(&ga, DL_FORMAT_PNG, 0, &bytes, &n) : dl_fail(DL_ENOMEM, "out of memory");
        free(ga.px);
    } else {
        s = dl_cutout_encode(cut, f, a->cut.jpeg_quality, &bytes, &n);
    }
    if (s != DL_OK) {
        api_error_for(a->endpoint, 500, "internal_error", dl_last_error(), r);
        return;
    }
    const int fx = cut->box_x - cut->crop_x, fy = cut->box_y - cut->crop_y;
    r->status = 200;
    r->type = f == DL_FORMAT_JPEG ? "image/jpeg" : f == DL_FORMAT_ZIP ? "application/zip" : "image/png";
    reply_header(r, "X-Width", "%d", cut->img.w);
    reply_header(r, "X-Height", "%d", cut->img.h);
    reply_header(r, "X-Type", "%s", type);
    reply_header(r, "X-Foreground-Top", "%d", cut->box_w ? fy : 0);
    reply_header(r, "X-Foreground-Left", "%d", cut->box_w ? fx : 0);
    reply_header(r, "X-Foreground-Width", "%d", cut->box_w);
    reply_header(r, "X-Foreground-Height", "%d", cut->box_h);
    if (!a->json) {
        r->body = bytes;
        r->size = n;
        return;
    }
    size_t blen;
    char *b = base64_encode(bytes, n, &blen);
    free(bytes);
    char *json = b ? malloc(blen + 256) : NULL;
    if (!json) {
        free(b);
        reply_free(r);
        api_error_for(a->endpoint, 500, "internal_error", "out of memory", r);
        return;
    }
    const int k = snprintf(json, blen + 256, "{\"data\":{\"result_b64\":\"%s\",\"foreground_top\":%d,"
                           "\"foreground_left\":%d,\"foreground_width\":%d,\"foreground_height\":%d}}",
                           b, cut->box_w ? fy : 0, cut->box_w ? fx : 0, cut->box_w, cut->box_h);
    free(b);
    r->type = "application/json";
    r->body = (uint8_t *)json;
    r->size = (size_t)k;
}
