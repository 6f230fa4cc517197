/*
 * serve_http.c - HTTP for `deeplab serve` (serve.h), with libmicrohttpd: its parser, its post
 * processor for multipart and urlencoded bodies, its connection limits. What is added here:
 *
 *   - routes: the editor's files, /healthz, /readyz, /metrics, the API (remove.bg's, rembg's,
 *     the sessions'); a wrong method is 405, an unknown path 404, always with a JSON body;
 *   - before a body is read: the API key (403), the draining or loading state (503), the
 *     declared length (413), the content type (415), the session (404, or 410 once evicted);
 *   - while it is read: its size and the upload deadline (the connection is closed: a chunked
 *     body has no length to refuse in advance);
 *   - a request whose body is complete is handed to the work queue and its connection
 *     suspended; the worker's answer resumes it. Nothing blocks libmicrohttpd's threads;
 *   - a watchdog closes connections that send their headers or body too slowly (an idle
 *     timeout alone lets a client that trickles a byte every few seconds hold a connection);
 *   - one access-log line per request, and its metrics, when it ends.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "serve.h"

/* A connection, for the watchdog: what it waits for and since when. */
typedef struct conn {
    int fd;
    enum { C_HEADERS, C_UPLOAD, C_BUSY, C_IDLE } phase; /* IDLE: kept alive, waiting for a request */
    double since;
    struct conn *prev, *next;
} conn;

enum route {
    R_NONE, R_STATIC, R_HEALTH, R_READY, R_METRICS, R_CLASSES, R_REMOVEBG, R_REMBG, R_SESSIONS, R_SESSION, R_RENDER,
    R_OPTIONS
};
static const char *const route_names[] = {"other",  "static", "healthz",  "readyz",  "metrics", "classes",
                                          "removebg", "rembg", "sessions", "session", "render", "options"};

typedef struct request {
    serve_http *h;
    struct MHD_Connection *c;
    double t0;
    char *uri;              /* as the request line gave it */
    const char *method;
    char version[16];
    enum route route;
    int started;            /* the access handler has seen it */
    enum { READING, WAITING, ANSWERED } state;
    api_request a;
    int have_api;
    session *sess;
    struct MHD_PostProcessor *pp;
    char *raw;              /* a JSON body */
    size_t raw_n, raw_cap;
    int64_t body_bytes;
    char field_name[64];    /* the form field being received */
    char *field;
    size_t field_n, field_cap;
    int field_file, in_field;
    serve_reply reply;      /* from the worker */
    int dropped;
    int status;
    size_t sent;
    char client[64];
    char agent[128];        /* User-Agent, for the log */
} request;

struct serve_http {
    const serve_opts *o;
    struct MHD_Daemon *d;
    int listen_fd, quiesced_fd;
    serve_work *w;
    session_store *st;
    const char **keys;
    int nkeys;
    api_limits lim;
    pthread_mutex_t lock;   /* the fields below */
    conn *conns;
    int busy;               /* requests started, not ended */
    int draining, stop_watchdog;
    pthread_t watchdog;
    FILE *log;
};

/* ------------------------------------------------------------------ answers */

static enum MHD_Result send_reply(request *q, serve_reply *r)
{
    const serve_opts *o = q->h->o;
    struct MHD_Response *resp = r->body ? MHD_create_response_from_buffer_with_free_callback(r->size, r->body, free)
                                        : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) free(r->body);
    r->body = NULL; /* the response frees it */
    if (!resp) return MHD_NO;
    if (r->type) MHD_add_response_header(resp, "Content-Type", r->type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (char *line = r->headers, *end; *line; line = end + 1) { /* "Name: value\n" */
        end = strchr(line, '\n');
        char *colon = strchr(line, ':');
        if (!end || !colon || colon > end) break;
        *colon = *end = 0;
        MHD_add_response_header(resp, line, colon + 2);
        *colon = ':', *end = '\n';
    }
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", s);
    }
    const char *origin = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Origin");
    if (o->cors && origin && (!strcmp(o->cors, "*") || !strcmp(o->cors, origin))) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", !strcmp(o->cors, "*") ? "*" : origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-Width, X-Height, X-Type, X-Foreground-Top, X-Foreground-Left, X-Foreground-Width, "
                                "X-Foreground-Height, X-Session-Id, Retry-After, Server-Timing");
    }
    pthread_mutex_lock(&q->h->lock);
    const int draining = q->h->draining;
    pthread_mutex_unlock(&q->h->lock);
    if (draining) MHD_add_response_header(resp, "Connection", "close");
    q->status = r->status;
    q->sent = r->size;
    q->state = ANSWERED;
    const enum MHD_Result ret = MHD_queue_response(q->c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(request *q, int status, const char *code, const char *detail, int retry_after)
{
    serve_reply r = {0};
    const api_endpoint e = q->route == R_REMBG ? API_REMBG : API_REMOVEBG;
    api_error_for(e, status, code, detail, &r);
    r.retry_after = retry_after;
    if (status == 405) {
        const int one = q->route == R_SESSION;
        reply_header(&r, "Allow", "%s", q->route <= R_CLASSES ? "GET, HEAD" : one ? "GET, DELETE" : "POST");
    }
    return send_reply(q, &r);
}

static enum MHD_Result send_text(request *q, int status, const char *type, const char *text)
{
    serve_reply r = {.status = status, .type = type};
    r.size = strlen(text);
    r.body = (uint8_t *)strdup(text);
    return send_reply(q, &r);
}

/* ------------------------------------------------------------------ routes */

static const web_asset *asset_of(const char *path)
{
    if (!strcmp(path, "/")) path = "/index.html";
    for (int i = 0; i < web_asset_count; i++)
        if (!strcmp(web_assets[i].path, path)) return &web_assets[i];
    return NULL;
}

/* The route of a path; *id gets a session's id (32 hex digits) from /v1/sessions/ID[/render]. */
static enum route route_of(const char *path, char id[33])
{
    id[0] = 0;
    if (asset_of(path)) return R_STATIC;
    if (!strcmp(path, "/healthz")) return R_HEALTH;
    if (!strcmp(path, "/readyz")) return R_READY;
    if (!strcmp(path, "/metrics")) return R_METRICS;
    if (!strcmp(path, "/v1/classes")) return R_CLASSES;
    if (!strcmp(path, "/v1.0/removebg")) return R_REMOVEBG;
    if (!strcmp(path, "/api/remove")) return R_REMBG;
    if (!strcmp(path, "/v1/sessions")) return R_SESSIONS;
    if (!strncmp(path, "/v1/sessions/", 13)) {
        const char *p = path + 13;
        const size_t n = strspn(p, "0123456789abcdef");
        if (n != 32) return R_NONE;
        memcpy(id, p, 32);
        id[32] = 0;
        if (!p[32]) return R_SESSION;
        if (!strcmp(p + 32, "/render")) return R_RENDER;
    }
    return R_NONE;
}

/* Constant-time comparison with every key: the time depends on the keys' lengths only. */
static int key_ok(serve_http *h, const char *given)
{
    if (!h->nkeys) return 1;
    if (!given) return 0;
    const size_t n = strlen(given);
    int ok = 0;
    for (int k = 0; k < h->nkeys; k++) {
        const size_t m = strlen(h->keys[k]);
        unsigned diff = (unsigned)(n != m);
        for (size_t i = 0; i < m; i++) diff |= (unsigned char)h->keys[k][i] ^ (unsigned char)(i < n ? given[i] : 0);
        ok |= diff == 0;
    }
    return ok;
}

static enum MHD_Result answer_get(request *q, const char *path, const char *id)
{
    serve_http *h = q->h;
    int status;
    const int ready = work_ready(h->w, &status);
    pthread_mutex_lock(&h->lock);
    const int draining = h->draining;
    pthread_mutex_unlock(&h->lock);
    switch (q->route) {
    case R_STATIC: {
        const web_asset *a = asset_of(path);
        struct MHD_Response *resp = MHD_create_response_from_buffer(a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", a->type);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'");
        q->status = 200, q->sent = a->size, q->state = ANSWERED;
        const enum MHD_Result ret = MHD_queue_response(q->c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    case R_HEALTH: return send_text(q, 200, "application/json", "{\"status\":\"ok\"}\n");
    case R_READY:
        if (ready == 1 && !draining) return send_text(q, 200, "application/json", "{\"ready\":true}\n");
        return send_text(q, 503, "application/json",
                         draining ? "{\"ready\":false,\"why\":\"draining\"}\n" : ready < 0 ? "{\"ready\":false,\"why\":\"model failed to load\"}\n"
                                  : "{\"ready\":false,\"why\":\"loading the model\"}\n");
    case R_METRICS: {
        int n;
        size_t bytes, len;
        long evicted;
        sessions_stats(h->st, &n, &bytes, &evicted);
        char *text = metrics_text(n, bytes, evicted, work_depth(h->w), ready == 1 && !draining, &len);
        serve_reply r = {.status = 200, .type = "text/plain; version=0.0.4; charset=utf-8", .body = (uint8_t *)text,
                         .size = len};
        return send_reply(q, &r);
    }
    case R_CLASSES: {
        if (ready != 1) return send_error(q, 503, "model_loading", "the model is loading", 2);
        char json[8192] = "{\"classes\":[";
        const int C = work_classes(h->w);
        for (int c = 0; c < C && strlen(json) < sizeof json - 64; c++) {
            char name[32];
            dl_class_label(c, C, name, sizeof name);
            snprintf(json + strlen(json), sizeof json - strlen(json), "%s{\"index\":%d,\"name\":\"%s\"}",
                     c ? "," : "", c, name);
        }
        strcat(json, "]}");
        return send_text(q, 200, "application/json", json);
    }
    case R_SESSION: {
        int gone;
        session *s = sessions_get(h->st, id, &gone);
        if (!s) return send_error(q, gone ? 410 : 404, gone ? "session_expired" : "session_not_found",
                                  gone ? "the session was evicted or expired: make a new one"
                                       : "no such session", 0);
        char json[512];
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"width\":%d,\"height\":%d,\"network\":{\"width\":%d,"
                 "\"height\":%d},\"expires_in\":%d}", s->id, s->photo.w, s->photo.h, s->net_w, s->net_h,
                 h->o->session_ttl);
        sessions_release(h->st, s);
        return send_text(q, 200, "application/json", json);
    }
    default: return send_error(q, 404, "not_found", "no such page (the API is described at /openapi.json)", 0);
    }
}

/* ------------------------------------------------------------------ bodies */

static void field_flush(request *q)
{
    if (!q->in_field) return;
    q->in_field = 0;
    api_field(&q->a, q->field_name, q->field ? q->field : "", q->field_n, q->field_file);
    q->field_n = 0;
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size)
{
    request *q = cls;
    (void)kind, (void)content_type, (void)transfer_encoding;
    if (off == 0) { /* a new field */
        field_flush(q);
        snprintf(q->field_name, sizeof q->field_name, "%s", key ? key : "");
        q->in_field = 1;
        q->field_file = filename != NULL;
    }
    if (q->field_n + size + 1 > q->field_cap) {
        size_t cap = q->field_cap ? q->field_cap : 4096;
        while (cap < q->field_n + size + 1) cap *= 2;
        char *grown = realloc(q->field, cap);
        if (!grown) return MHD_NO;
        q->field = grown, q->field_cap = cap;
    }
    memcpy(q->field + q->field_n, data, size);
    q->field_n += size;
    q->field[q->field_n] = 0;
    return MHD_YES;
}

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    request *q = cls;
    (void)kind;
    api_field(&q->a, key, value ? value : "", value ? strlen(value) : 0, 0);
    return MHD_YES;
}

static api_endpoint endpoint_of(enum route r)
{
    return r == R_REMBG ? API_REMBG : r == R_SESSIONS ? API_SESSION_NEW : r == R_RENDER ? API_RENDER : API_REMOVEBG;
}

/* The worker's answer (or NULL: the client went away): kept, and the connection resumed. */
static void on_done(void *ctx, serve_reply *r)
{
    request *q = ctx;
    if (r) q->reply = *r, memset(r, 0, sizeof *r);
    else q->dropped = 1;
    MHD_resume_connection(q->c); /* q belongs to libmicrohttpd's thread from here on */
}

static conn *conn_of(request *q)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_phase(request *q, int phase)
{
    conn *k = conn_of(q);
    pthread_mutex_lock(&q->h->lock);
    if (k) k->phase = phase, k->since = dl_now();
    pthread_mutex_unlock(&q->h->lock);
}

/* The checks made on the headers, before any body is read; MHD_YES to read the body. */
static enum MHD_Result begin(request *q, const char *path)
{
    serve_http *h = q->h;
    char id[33];
    q->route = route_of(path, id);
    const char *agent = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "User-Agent");
    snprintf(q->agent, sizeof q->agent, "%s", agent ? agent : "-");
    const int get = !strcmp(q->method, "GET") || !strcmp(q->method, "HEAD");
    const int post = !strcmp(q->method, "POST");
    if (!strcmp(q->method, "OPTIONS") && h->o->cors) { /* a CORS preflight */
        q->route = R_OPTIONS;
        serve_reply r = {.status = 204};
        reply_header(&r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        reply_header(&r, "Access-Control-Allow-Headers", "Content-Type, Accept, X-Api-Key");
        reply_header(&r, "Access-Control-Max-Age", "600");
        return send_reply(q, &r);
    }
    if (q->route == R_NONE) return send_error(q, 404, "not_found", "no such page (the API is described at /openapi.json)", 0);
    const int open = q->route == R_STATIC || q->route == R_HEALTH || q->route == R_READY;
    if (!open && !key_ok(h, MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "X-Api-Key")))
        return send_error(q, 403, "auth_failed", "a valid X-Api-Key header is needed", 0);
    const int api_post = post && (q->route == R_REMOVEBG || q->route == R_REMBG || q->route == R_SESSIONS ||
                                  q->route == R_RENDER);
    const int rembg_get = get && q->route == R_REMBG;
    if (q->route == R_SESSION && !strcmp(q->method, "DELETE")) {
        int gone;
        session *s = sessions_get(h->st, id, &gone);
        if (s) sessions_release(h->st, s), sessions_delete(h->st, id);
        if (!s) return send_error(q, gone ? 410 : 404, gone ? "session_expired" : "session_not_found",
                                  gone ? "the session was evicted or expired" : "no such session", 0);
        serve_reply r = {.status = 204};
        return send_reply(q, &r);
    }
    if (get && !rembg_get && q->route <= R_CLASSES) return answer_get(q, path, id);
    if (get && q->route == R_SESSION) return answer_get(q, path, id);
    if (!api_post && !rembg_get) return send_error(q, 405, "method_not_allowed", "this method is not allowed here", 0);

    /* the API: is there a model, room, a body we take? */
    int status;
    const int ready = work_ready(h->w, &status);
    pthread_mutex_lock(&h->lock);
    const int draining = h->draining;
    pthread_mutex_unlock(&h->lock);
    if (draining) return send_error(q, 503, "shutting_down", "the server is shutting down", 5);
    if (ready != 1)
        return send_error(q, 503, "model_loading", ready < 0 ? "the model failed to load" : "the model is loading", 5);
    const char *length = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Content-Length");
    if (length && strtoll(length, NULL, 10) > h->o->max_body) {
        char detail[128];
        snprintf(detail, sizeof detail, "the body is %s bytes, more than the limit of %lld (--max-body)", length,
                 (long long)h->o->max_body);
        return send_error(q, 413, "file_too_large", detail, 0);
    }
    api_init(&q->a, endpoint_of(q->route), &h->lim);
    q->have_api = 1;
    const char *accept = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Accept");
    q->a.json = accept && strstr(accept, "application/json") && q->route == R_REMOVEBG;
    if (q->route == R_RENDER) {
        int gone;
        q->sess = sessions_get(h->st, id, &gone);
        if (!q->sess)
            return send_error(q, gone ? 410 : 404, gone ? "session_expired" : "session_not_found",
                              gone ? "the session was evicted or expired: make a new one" : "no such session", 0);
    }
    if (q->route == R_REMBG) MHD_get_connection_values(q->c, MHD_GET_ARGUMENT_KIND, on_query_arg, q);
    if (rembg_get) return MHD_YES;
    const char *type = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Content-Type");
    if (type && !strncasecmp(type, "application/json", 16)) return set_phase(q, C_UPLOAD), MHD_YES;
    if (type && (!strncasecmp(type, "multipart/form-data", 19) ||
                 !strncasecmp(type, "application/x-www-form-urlencoded", 33))) {
        q->pp = MHD_create_post_processor(q->c, 64 * 1024, on_form_field, q);
        if (!q->pp) return send_error(q, 400, "invalid_parameter", "a multipart body without a (valid) boundary", 0);
        return set_phase(q, C_UPLOAD), MHD_YES;
    }
    if (!type && (!length || !strcmp(length, "0"))) return MHD_YES; /* no body: no fields */
    return send_error(q, 415, "unsupported_media_type",
                      "send multipart/form-data, application/x-www-form-urlencoded or application/json", 0);
}

/* The body's next bytes. libmicrohttpd lets an answer be queued only before the body or after
 * it: a body over the limit or past its deadline (a chunked one: a declared length was refused
 * before) closes the connection; a malformed one is read to its end, then answered 400. */
static enum MHD_Result take_body(request *q, const char *data, size_t n)
{
    serve_http *h = q->h;
    q->body_bytes += (int64_t)n;
    if (q->body_bytes > h->o->max_body) {
        q->status = 413; /* for the log: the connection is closed, there is no answer */
        return MHD_NO;
    }
    if (h->o->upload_timeout > 0 && dl_now() - q->t0 > h->o->upload_timeout) {
        q->status = 408;
        return MHD_NO;
    }
    if (q->a.status) return MHD_YES; /* an error already: the rest is read and dropped */
    if (q->pp) {
        if (MHD_post_process(q->pp, data, n) != MHD_YES)
            api_error(&q->a, 400, "invalid_parameter", "a malformed form body");
        return MHD_YES;
    }
    if (q->raw_n + n + 1 > q->raw_cap) {
        size_t cap = q->raw_cap ? q->raw_cap : 65536;
        while (cap < q->raw_n + n + 1) cap *= 2;
        char *grown = realloc(q->raw, cap);
        if (!grown) {
            api_error(&q->a, 503, "out_of_memory", "out of memory for the body");
            return MHD_YES;
        }
        q->raw = grown, q->raw_cap = cap;
    }
    memcpy(q->raw + q->raw_n, data, n);
    q->raw_n += n;
    return MHD_YES;
}

/* The body is complete: the fields checked, the work queued, the connection suspended. */
static enum MHD_Result submit(request *q)
{
    serve_http *h = q->h;
    if (q->pp) {
        const enum MHD_Result whole = MHD_destroy_post_processor(q->pp);
        q->pp = NULL;
        field_flush(q);
        if (whole != MHD_YES && !q->a.status) api_error(&q->a, 400, "invalid_parameter", "a malformed or truncated form body");
    } else if (q->raw) {
        api_json(&q->a, q->raw, q->raw_n);
        free(q->raw);
        q->raw = NULL;
    }
    if (api_finish(&q->a)) {
        serve_reply r = {0};
        api_error_reply(&q->a, &r);
        return send_reply(q, &r);
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(q->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    serve_reply r = {0};
    set_phase(q, C_BUSY);
    q->state = WAITING;
    session *s = q->sess;
    q->sess = NULL; /* the job holds it now */
    MHD_suspend_connection(q->c); /* before the job can end and resume it */
    if (work_submit(h->w, &q->a, s, ci ? ci->connect_fd : -1, q->client, on_done, q, &r)) {
        MHD_resume_connection(q->c);
        if (s) sessions_release(h->st, s);
        q->reply = r;
        return MHD_YES; /* answered when libmicrohttpd calls back */
    }
    q->have_api = 0; /* the job has it */
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **req_cls)
{
    (void)cls;
    request *q = *req_cls;
    if (!q) return MHD_NO; /* the URI callback makes one for every request */
    if (!q->started) {
        q->started = 1;
        q->c = c;
        q->method = method;
        snprintf(q->version, sizeof q->version, "%s", version ? version : "");
        return begin(q, url);
    }
    if (q->state == ANSWERED) { /* answered before the body (an error): nothing more to do */
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->state == WAITING) { /* resumed: the worker's answer */
        if (q->dropped) return MHD_NO;
        return send_reply(q, &q->reply);
    }
    if (*upload_size) {
        const enum MHD_Result ret = take_body(q, upload_data, *upload_size);
        *upload_size = 0;
        return ret;
    }
    return submit(q);
}

/* ------------------------------------------------------------------ lifecycle callbacks */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    serve_http *h = cls;
    request *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->h = h;
    q->c = c;
    q->t0 = dl_now();
    q->uri = strdup(uri ? uri : "");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, q->client, sizeof q->client);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, q->client, sizeof q->client);
    else snprintf(q->client, sizeof q->client, "-");
    pthread_mutex_lock(&h->lock);
    h->busy++;
    pthread_mutex_unlock(&h->lock);
    set_phase(q, C_HEADERS); /* the deadline for the headers runs from the request line */
    return q;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    serve_http *h = cls;
    request *q = *req_cls;
    (void)c;
    if (!q) return;
    *req_cls = NULL;
    const double seconds = dl_now() - q->t0;
    const int status = q->status ? q->status : 0;
    static const char *const why[] = {"", " (error)", " (timeout)", " (shutdown)", " (read error)", " (client gone)"};
    char when[64];
    const time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S %z", localtime_r(&now, &tm));
    pthread_mutex_lock(&h->lock);
    if (h->log) {
        fprintf(h->log, "%s - - [%s] \"%s %s%s%s\" %d %zu %.3f \"%s\"%s%s\n", q->client, when,
                q->method ? q->method : "-", q->uri, q->version[0] ? " " : "", q->version, status, status ? q->sent : 0, seconds, q->agent[0] ? q->agent : "-",
                (unsigned)toe < 6 ? why[toe] : "", q->dropped ? " (dropped: client gone)" : "");
        fflush(h->log);
    }
    h->busy--;
    pthread_mutex_unlock(&h->lock);
    metrics_request(route_names[q->route], status, seconds);
    if (q->pp) MHD_destroy_post_processor(q->pp);
    if (q->have_api) api_free(&q->a);
    if (q->sess) sessions_release(h->st, q->sess);
    reply_free(&q->reply);
    free(q->raw);
    free(q->field);
    free(q->uri);
    free(q);
    /* the connection, kept alive, waits for its next request (--idle-timeout) */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn *k = ci ? ci->socket_context : NULL;
    pthread_mutex_lock(&h->lock);
    if (k) k->phase = C_IDLE, k->since = dl_now();
    pthread_mutex_unlock(&h->lock);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    serve_http *h = cls;
    pthread_mutex_lock(&h->lock);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn *k = calloc(1, sizeof *k);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (k) {
            k->fd = ci ? ci->connect_fd : -1;
            k->phase = C_HEADERS;
            k->since = dl_now();
            k->next = h->conns;
            if (h->conns) h->conns->prev = k;
            h->conns = k;
        }
        *socket_context = k;
    } else if (*socket_context) { /* closed: before libmicrohttpd closes the socket */
        conn *k = *socket_context;
        if (k->prev) k->prev->next = k->next;
        else h->conns = k->next;
        if (k->next) k->next->prev = k->prev;
        free(k);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&h->lock);
}

/* Closes the connections past their deadline: a new one's headers within --header-timeout, a
 * body within --upload-timeout, a kept-alive one's next request within --idle-timeout, however
 * slowly the bytes trickle in (libmicrohttpd's own timeout only sees silence); expires sessions. */
static void *watchdog(void *arg)
{
    serve_http *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        const int stop = h->stop_watchdog;
        const double now = dl_now();
        for (conn *k = h->conns; k && !stop; k = k->next) {
            const int limit = k->phase == C_HEADERS ? h->o->header_timeout : k->phase == C_UPLOAD ? h->o->upload_timeout
                              : k->phase == C_IDLE ? h->o->idle_timeout : 0;
            if (limit > 0 && now - k->since > limit && k->fd >= 0) {
                shutdown(k->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
                k->since = now + 3600;      /* once */
            }
        }
        pthread_mutex_unlock(&h->lock);
        if (stop) break;
        sessions_expire(h->st);
        usleep(250 * 1000);
    }
    return NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    serve_http *h = cls;
    if (!h->o->verbose) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    cli_say("serve: http: %s", line);
}

serve_http *http_start(const serve_opts *o, int fd, serve_work *w, session_store *st, const char **keys, int nkeys)
{
    serve_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->o = o, h->w = w, h->st = st, h->keys = keys, h->nkeys = nkeys, h->listen_fd = fd, h->quiesced_fd = -1;
    h->lim = (api_limits){.max_megapixels = o->max_megapixels, .allow_url_fetch = o->allow_url_fetch,
                          .max_field = o->max_body};
    pthread_mutex_init(&h->lock, NULL);
    if (!o->access_log || !strcmp(o->access_log, "-")) h->log = stderr;
    else if (strcmp(o->access_log, "none") && !(h->log = fopen(o->access_log, "a"))) {
        cli_error(DL_ECANTCREATE, "serve: --access-log %s: cannot open", o->access_log);
        free(h);
        return NULL;
    }
    /* poll(), not epoll: with epoll and a thread pool, MHD_quiesce_daemon (the drain on SIGTERM)
     * races a worker thread removing the listening socket from its epoll set, and the loser's
     * epoll_ctl failure is a libmicrohttpd panic ("Failed to remove listen FD from epoll set",
     * abort; seen in libmicrohttpd 0.9.75 when tests/test_replicas.py stopped a replica that
     * nginx held kept-alive connections to). Quiescing a poll() daemon wakes each worker through
     * its inter-thread channel instead. At a few hundred connections poll costs nothing more. */
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, h,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o->http_threads > 0 ? o->http_threads : 1),
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->per_ip_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->idle_timeout,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                            MHD_OPTION_END);
    if (!h->d) {
        cli_error(DL_EINTERNAL, "serve: libmicrohttpd did not start");
        if (h->log && h->log != stderr) fclose(h->log);
        free(h);
        return NULL;
    }
    pthread_create(&h->watchdog, NULL, watchdog, h);
    return h;
}

void http_drain(serve_http *h)
{
    pthread_mutex_lock(&h->lock);
    h->draining = 1;
    pthread_mutex_unlock(&h->lock);
    h->quiesced_fd = MHD_quiesce_daemon(h->d); /* no new connections; closed after the daemon stops */
}

int http_busy(serve_http *h)
{
    pthread_mutex_lock(&h->lock);
    const int n = h->busy;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void http_stop(serve_http *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->stop_watchdog = 1;
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->watchdog, NULL);
    MHD_stop_daemon(h->d);
    if (h->quiesced_fd >= 0) close(h->quiesced_fd); /* not before: a thread of the daemon may still use it */
    if (h->log && h->log != stderr) fclose(h->log);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
