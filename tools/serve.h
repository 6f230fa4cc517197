/*
 * serve.h - `deeplab serve`: the model behind an HTTP API (remove.bg's and rembg's) and a web
 * editor, in one process. The parts:
 *
 *   cmd_serve.c      the command line, start-up, signals, the drain on SIGTERM
 *   serve_http.c     HTTP (libmicrohttpd): bodies (its post processor for forms), limits,
 *                    routes, API keys, CORS, static files, the access log
 *   serve_api.c      the API's fields (remove.bg's, rembg's, the sessions') into a
 *                    dl_cutout_request, and the answers (images, JSON, errors as remove.bg gives them)
 *   serve_work.c     the work: a bounded queue, decoding, batches for the network, cut-outs
 *   serve_sessions.c editing sessions: photo and logits kept, LRU within a memory budget, TTL
 *   serve_fetch.c    image_url with libcurl, private addresses refused after resolution
 *   serve_metrics.c  counters and histograms for /metrics (Prometheus text)
 *
 *     client --HTTP--> serve_http --api_request--> serve_work: prep (fetch, decode, resize)
 *                         ^                          -> model thread (batches of one size)
 *                         +---- reply (resume) <---- -> finish (cut-out, encode) or a session
 */
#ifndef DL_SERVE_H
#define DL_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "deeplab.h"

/* ------------------------------------------------------------------ options (cmd_serve.c) */

typedef struct serve_opts {
    const char *host;
    int port;
    const char *weights;
    dl_device device;
    int threads, size, reference;  /* the network: CPU threads, input size as rmbg's --size */
    int max_batch, batch_wait_ms;  /* photos of one size that wait together run as one batch */
    int queue, client_queue;       /* jobs admitted at most (503 past it); per client address (429) */
    int workers;                   /* threads that decode, cut out and encode */
    int http_threads;
    int64_t max_body;              /* bytes of a request body (413) */
    int max_connections, per_ip_connections;
    int header_timeout, upload_timeout, idle_timeout; /* seconds */
    const char *api_key_file, *cors, *access_log;
    int allow_url_fetch;
    const char *fetch_allow;       /* comma-separated CIDRs that image_url may reach although private */
    int64_t fetch_max_bytes;
    int fetch_timeout, fetch_max_redirects;
    double max_megapixels;         /* size=full/auto: photos are scaled down to this */
    int64_t session_memory;        /* bytes of photos and logits kept for editing */
    int session_ttl;               /* seconds since last use */
    const char *session_prefix;    /* the first hex digits of every session id (a replica's route) */
    int verbose;
} serve_opts;

/* ------------------------------------------------------------------ replies */

/* What a request is answered with (serve_http.c turns it into an HTTP response). */
typedef struct serve_reply {
    int status;
    const char *type;   /* Content-Type */
    uint8_t *body;      /* malloc'ed, size bytes */
    size_t size;
    char headers[1024]; /* extra header lines, "Name: value\n" each */
    int retry_after;    /* seconds, for 503 and 429 */
} serve_reply;

void reply_free(serve_reply *r);
/* Adds a header line to r. */
void reply_header(serve_reply *r, const char *name, const char *fmt, ...) DL_PRINTF(3, 4);
/* A JSON body (copied) with status. */
void reply_json(serve_reply *r, int status, const char *json);

/* ------------------------------------------------------------------ the API (serve_api.c) */

typedef enum api_endpoint {
    API_REMOVEBG,    /* POST /v1.0/removebg: remove.bg's */
    API_REMBG,       /* POST /api/remove (and GET with ?url=): rembg's server */
    API_SESSION_NEW, /* POST /v1/sessions */
    API_RENDER       /* POST /v1/sessions/ID/render */
} api_endpoint;

/* The limits the fields are checked against. */
typedef struct api_limits {
    double max_megapixels;
    int allow_url_fetch;
    int64_t max_field;  /* bytes of one field */
} api_limits;

/* A picture that came with the request, decoded later by a worker. */
typedef struct api_blob {
    uint8_t *data;
    size_t size;
    char *url;          /* or where to fetch it (--allow-url-fetch) */
} api_blob;

enum { BLOB_IMAGE, BLOB_BG, BLOB_KEEP, BLOB_ERASE, BLOB_COUNT };

typedef struct api_request {
    api_endpoint endpoint;
    api_limits lim;
    dl_cutout_request cut;
    api_blob blobs[BLOB_COUNT]; /* image, bg_image, keep_mask, erase_mask */
    int sources;                /* image_file, image_file_b64, image_url given */
    dl_file_format file_format; /* remove.bg's format: AUTO, PNG, JPEG, ZIP */
    int json;                   /* answer {"data": {"result_b64": ...}} (Accept: application/json) */
    int matte;                  /* channels=matte: the alpha as a PNG's alpha channel over black */
    int preview;                /* render: the longer side of a preview (0: full size) */
    char type[24];              /* remove.bg's type, "" for auto */
    /* the first error: status, remove.bg's code, a title and one line of detail */
    int status;
    char code[40], title[80], detail[600];
} api_request;

void api_init(api_request *a, api_endpoint e, const api_limits *lim);
void api_free(api_request *a);
/* One field of a form (value: len bytes, not NUL-terminated; file: it came as a file part).
 * Returns 0, or -1 with the error recorded (the first one is kept). */
int api_field(api_request *a, const char *name, const char *value, size_t len, int file);
/* A JSON object body: every member as a field. */
int api_json(api_request *a, const char *body, size_t len);
/* After the last field: the checks that need all of them (exactly one image source, ...). */
int api_finish(api_request *a);
/* Records an error (status, remove.bg's code, detail) unless one is recorded; returns -1. */
int api_error(api_request *a, int status, const char *code, const char *fmt, ...) DL_PRINTF(4, 5);
/* The error as the endpoint gives it: remove.bg's {"errors": [...]}, rembg's {"detail": ...}. */
void api_error_reply(const api_request *a, serve_reply *r);
/* An error reply from scratch (no request yet: 403, 404, 413, 415, 503 ...). */
void api_error_for(api_endpoint e, int status, const char *code, const char *detail, serve_reply *r);

/* The type remove.bg would name for the class with the largest share at network resolution
 * ("person", "animal", "car", "transportation", "product"; "other"), and that class. */
const char *api_detected_type(const float *logits, int C, int h, int w, int *cls);
/* The answer for a cut-out: the image in the asked format with remove.bg's headers, or JSON. */
void api_cutout_reply(const api_request *a, const dl_cutout *cut, const char *type, serve_reply *r);

/* base64 (RFC 4648, the standard alphabet; decoding also skips whitespace and a data: URL's
 * prefix). decode returns -1 on a bad character. */
char *base64_encode(const uint8_t *data, size_t n, size_t *out_len);
int base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len);

/* ------------------------------------------------------------------ sessions (serve_sessions.c) */

typedef struct session {
    char id[33];             /* 128 random bits in hex */
    dl_image photo;          /* the photo as the session was made (scaled to its size) */
    float *logits;           /* C x net_h x net_w */
    int C, net_w, net_h;
    const char *type;        /* what the model found (api_detected_type), for X-Type */
    dl_image preview;        /* the last preview's photo (scaled), kept for the next edit */
    float *prob;             /* the last render's class mass at network resolution ... */
    uint8_t prob_classes[256]; /* ... for these classes (prob_all: every class but background) */
    int prob_all;
    pthread_mutex_t preview_lock; /* the fields above: one render of a session at a time */
    size_t bytes;
    double last_used;
    int refs;                /* requests using it; freed when 0 after eviction */
    int evicted;
    struct session *prev, *next; /* LRU order, most recent first */
} session;

typedef struct session_store session_store;

/* prefix: NULL, or up to 8 lowercase hex digits that begin every id (the rest stays random: at
 * least 96 bits), so that a load balancer can send a session's requests to the replica holding it. */
session_store *sessions_create(int64_t budget, int ttl, const char *prefix);
void sessions_free(session_store *st);
/* Adds s (taking it over; its id is made here), evicting the least recently used sessions past
 * the budget. A session larger than the whole budget is refused (-1). */
int sessions_add(session_store *st, session *s);
/* The session with the id, referenced (sessions_release it), its last use now. NULL: *gone is
 * 1 when it existed and was evicted or expired (410), 0 when it never did (404). */
session *sessions_get(session_store *st, const char *id, int *gone);
void sessions_release(session_store *st, session *s);
int sessions_delete(session_store *st, const char *id);
void sessions_expire(session_store *st); /* drops the ones idle past the TTL */
void sessions_stats(session_store *st, int *count, size_t *bytes, long *evicted);
void session_free(session *s);

/* ------------------------------------------------------------------ URL fetching (serve_fetch.c) */

typedef struct fetch_limits {
    int64_t max_bytes;
    int timeout_ms, max_redirects;
    const char *allow;  /* CIDRs reachable although private (tests, internal image stores) */
} fetch_limits;

/* GETs url (http or https) into *data. Refused: other schemes, addresses that are loopback,
 * private, link-local, multicast or otherwise not public (checked on every connection, after
 * name resolution, redirects included) unless in allow, bodies over max_bytes. Returns 0, or
 * -1 with one line in err. */
int fetch_url(const char *url, const fetch_limits *lim, uint8_t **data, size_t *size, char *err, size_t errlen);
/* 1 if a textual IPv4/IPv6 address may be fetched from (public, or inside allow). */
int fetch_address_allowed(const char *addr, const char *allow);

/* ------------------------------------------------------------------ metrics (serve_metrics.c) */

void metrics_request(const char *route, int status, double seconds);
void metrics_batch(int n);
void metrics_dropped(void);
/* The Prometheus text exposition of everything, plus the gauges given. */
char *metrics_text(int sessions, size_t session_bytes, long sessions_evicted, int queue_depth, int ready,
                   size_t *len);

/* ------------------------------------------------------------------ work (serve_work.c) */

typedef struct serve_work serve_work;
typedef struct job job;

/* Starts the model thread (which loads the model) and the workers. */
serve_work *work_start(const serve_opts *o, session_store *st);
/* 1 once the model is loaded; -1 when loading failed (its status in *status). */
int work_ready(serve_work *w, int *status);
/* The model's class count (after work_ready). */
int work_classes(serve_work *w);
/* Queues the request (taken over) for the connection whose socket is fd; done(ctx, reply) is
 * called once, from a worker, with the answer (or NULL when the client went away and the work
 * was dropped). 0, or the reply to give now (503 queue full, 429 client over its share) in r. */
int work_submit(serve_work *w, api_request *a, session *s, int fd, const char *client,
                void (*done)(void *ctx, serve_reply *r), void *ctx, serve_reply *r);
int work_depth(serve_work *w); /* jobs admitted and not finished */
void work_stop(serve_work *w); /* after the last job: stops and joins the threads */

/* ------------------------------------------------------------------ HTTP (serve_http.c) */

typedef struct serve_http serve_http;

/* Starts serving on the listening socket fd. NULL after printing why. */
serve_http *http_start(const serve_opts *o, int fd, serve_work *w, session_store *st, const char **keys, int nkeys);
/* Stops accepting connections; new requests on open ones get 503 (draining). */
void http_drain(serve_http *h);
int http_busy(serve_http *h); /* requests started and not yet answered in full */
void http_stop(serve_http *h);

/* The embedded files of web/ (tools/embed.sh). */
typedef struct web_asset {
    const char *path, *type;
    const unsigned char *data;
    size_t size;
} web_asset;
extern const web_asset web_assets[];
extern const int web_asset_count;

#endif
