/*
 * serve_work.c - the work behind the API (serve.h): one model thread and a few workers.
 *
 *   submit -> [prep] worker: fetch URLs, decode, scale to the size asked, preprocess
 *          -> [model queue] model thread: waiting photos of the same network size run as one
 *             batch (up to --max-batch, waiting --batch-wait-ms for more), logits per photo
 *          -> [finish] worker: the cut-out and its encoding (or the session is stored)
 *   render -> [finish] worker: the cut-out from a session's logits; no network
 *
 * Admission is bounded: at most --queue jobs are admitted and unanswered (the next gets 503 with
 * Retry-After), and with --client-queue at most that many per client address (429). Before each
 * stage the client's socket is looked at: a client that has closed its connection has its work
 * dropped, not run. Workers take finishing work before new photos, so that what is started ends
 * first and memory stays at a few photos per worker.
 */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "clock.h"
#include "serve.h"

enum stage { PREP, FINISH, RENDER, SESSION };

struct job {
    api_request a;
    session *sess;
    int fd;
    char client[64];
    void (*done)(void *ctx, serve_reply *r);
    void *ctx;
    enum stage stage;
    dl_image photo;
    float *input, *logits;
    int net_w, net_h;
    /* where its time went, for the Server-Timing header: admitted at t_admit (dl_now), then ms of
     * decoding and preprocessing, of the forward pass (of its whole batch of `batch` photos) */
    double t_admit, ms_prep, ms_network;
    int batch;
    struct job *next;
};

typedef struct job_queue {
    job *head, *tail;
    int n;
} job_queue;

struct serve_work {
    const serve_opts *o;
    session_store *st;
    fetch_limits flim;
    pthread_mutex_t lock;
    pthread_cond_t work_cv, model_cv;
    job_queue finish, prep, waiting; /* workers take finish before prep; waiting: for the network */
    int depth;
    struct client_count {
        char addr[64];
        int n;
    } *clients;
    int nclients;
    int stopping;
    double job_seconds; /* a running mean of one photo's time, for Retry-After */
    pthread_t model_thread, *workers;
    int nworkers;
    dl_model *model;
    int ready, load_status, C;
};

static void push(job_queue *q, job *j)
{
    j->next = NULL;
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    q->n++;
}

static job *pop(job_queue *q)
{
    job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        q->n--;
    }
    return j;
}

/* 1 if the client has closed its side (the request is read whole, so anything but a clean
 * "nothing to read yet" is the end of it). */
static int client_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    char c;
    return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static struct client_count *client_of(serve_work *w, const char *addr)
{
    for (int i = 0; i < w->nclients; i++)
        if (!strcmp(w->clients[i].addr, addr)) return &w->clients[i];
    return NULL;
}

/* The job's end: its answer (NULL: dropped) to the connection, then it is gone. */
static void job_end(serve_work *w, job *j, serve_reply *r)
{
    if (!r) metrics_dropped();
    j->done(j->ctx, r); /* the connection takes the reply's body */
    if (j->sess) sessions_release(w->st, j->sess);
    api_free(&j->a);
    dl_image_free(&j->photo);
    free(j->input);
    free(j->logits);
    pthread_mutex_lock(&w->lock);
    w->depth--;
    struct client_count *c = client_of(w, j->client);
    if (c && --c->n == 0) *c = w->clients[--w->nclients];
    pthread_mutex_unlock(&w->lock);
    free(j);
}

static void job_error(serve_work *w, job *j)
{
    serve_reply r = {0};
    api_error_reply(&j->a, &r);
    job_end(w, j, &r);
}

static void job_drop_if_gone(serve_work *w, job **j)
{
    if (*j && client_gone((*j)->fd)) {
        job_end(w, *j, NULL);
        *j = NULL;
    }
}

/* ------------------------------------------------------------------ stages */

/* A picture of the request: fetched if it is a URL, decoded. name: the field, for messages. */
static int decode_blob(serve_work *w, job *j, int which, const char *name, dl_image *img)
{
    api_blob *b = &j->a.blobs[which];
    char err[512];
    if (b->url) {
        if (fetch_url(b->url, &w->flim, &b->data, &b->size, err, sizeof err))
            return api_error(&j->a, 400, "url_download_failed", "%s: %s", name, err);
    }
    if (!b->data) return 0;
    const dl_status s = dl_image_decode(name, b->data, b->size, img);
    free(b->data);
    b->data = NULL;
    if (s == DL_OK) return 1;
    if (s == DL_EDATA && dl_image_too_large()) return api_error(&j->a, 400, "resolution_too_high", "%s", dl_last_error());
    if (s == DL_ENOMEM) return api_error(&j->a, 503, "out_of_memory", "%s", dl_last_error());
    return api_error(&j->a, 400, "invalid_file_type", "%s", dl_last_error());
}

/* The pictures besides the photo: background, keep and erase masks. */
static int decode_pictures(serve_work *w, job *j)
{
    static const struct {
        int blob;
        const char *name, *key;
    } pics[] = {{BLOB_BG, "bg_image", "bg-image"}, {BLOB_KEEP, "keep_mask", "keep-mask"},
                {BLOB_ERASE, "erase_mask", "erase-mask"}};
    for (int k = 0; k < 3; k++) {
        dl_image img;
        const int got = decode_blob(w, j, pics[k].blob, pics[k].name, &img);
        if (got < 0) return -1;
        if (got) dl_cutout_request_set_image(&j->a.cut, pics[k].key, &img);
    }
    return 0;
}

static void stage_prep(serve_work *w, job *j)
{
    const double t0 = dl_now();
    dl_image img;
    const int got = decode_blob(w, j, BLOB_IMAGE, j->a.endpoint == API_REMBG ? "file" : "image_file", &img);
    if (got <= 0) {
        if (got == 0) api_error(&j->a, 400, "missing_source", "no image given");
        job_error(w, j);
        return;
    }
    j->photo = img;
    dl_status s = dl_image_fit_pixels(&j->photo, (int64_t)(j->a.cut.megapixels * 1e6));
    if (s == DL_OK) s = dl_preprocess(&j->photo, w->o->size, &j->input, &j->net_w, &j->net_h);
    if (s != DL_OK) {
        api_error(&j->a, s == DL_EDATA ? 400 : 503, s == DL_EDATA ? "resolution_too_high" : "out_of_memory", "%s",
                  dl_last_error());
        job_error(w, j);
        return;
    }
    if (j->a.endpoint != API_SESSION_NEW && decode_pictures(w, j)) {
        job_error(w, j);
        return;
    }
    j->ms_prep = 1e3 * (dl_now() - t0);
    pthread_mutex_lock(&w->lock);
    push(&w->waiting, j);
    pthread_cond_signal(&w->model_cv);
    pthread_mutex_unlock(&w->lock);
}

/* Server-Timing: the work's parts in ms (what a browser's devtools draw), and "queue": the rest of
 * the time since the job was admitted (waiting for a worker or the network, a batch forming). */
static void timing_header(const job *j, serve_reply *r, double ms_cutout)
{
    const double total = 1e3 * (dl_now() - j->t_admit), rest = total - j->ms_prep - j->ms_network - ms_cutout;
    if (j->batch)
        reply_header(r, "Server-Timing", "prep;dur=%.1f, network;dur=%.1f;desc=\"batch of %d\", cutout;dur=%.1f, "
                     "queue;dur=%.1f", j->ms_prep, j->ms_network, j->batch, ms_cutout, rest > 0 ? rest : 0.0);
    else
        reply_header(r, "Server-Timing", "cutout;dur=%.1f, queue;dur=%.1f", ms_cutout, rest > 0 ? rest : 0.0);
}

static void cutout_reply(serve_work *w, job *j, dl_refiner **refiner, const dl_image *photo, const float *logits,
                         int C, int net_h, int net_w, int ref_w, int ref_h, const char *type, const float *prob)
{
    const double t0 = dl_now();
    dl_cutout_options co = dl_cutout_request_options(&j->a.cut);
    co.ref_w = ref_w, co.ref_h = ref_h;
    co.class_prob = prob;
    dl_status s = DL_OK;
    if (co.refine && !*refiner) s = dl_refiner_create(dl_model_info_of(w->model).device, refiner);
    if (s == DL_OK) s = dl_cutout_request_check_classes(&j->a.cut, C, "classes");
    dl_cutout cut = {0};
    if (s == DL_OK) s = dl_cutout_make(photo, logits, C, net_h, net_w, &co, *refiner, &cut);
    if (s != DL_OK) {
        api_error(&j->a, s == DL_EUSAGE ? 400 : 503, s == DL_EUSAGE ? "invalid_parameter" : "out_of_memory", "%s",
                  dl_last_error());
        job_error(w, j);
        return;
    }
    if (j->a.endpoint == API_REMOVEBG && cut.subject_pixels == 0) {
        dl_cutout_free(&cut);
        api_error(&j->a, 400, "unknown_foreground", "nothing of the kept classes found (no pixel is 50%% opaque)");
        job_error(w, j);
        return;
    }
    serve_reply r = {0};
    api_cutout_reply(&j->a, &cut, type, &r);
    dl_cutout_free(&cut);
    timing_header(j, &r, 1e3 * (dl_now() - t0));
    job_end(w, j, &r);
}

static void stage_finish(serve_work *w, job *j, dl_refiner **refiner)
{
    int cls;
    const char *type = j->a.type[0] ? j->a.type : api_detected_type(j->logits, w->C, j->net_h, j->net_w, &cls);
    cutout_reply(w, j, refiner, &j->photo, j->logits, w->C, j->net_h, j->net_w, 0, 0, type, NULL);
}

/* A new session: the photo and logits are kept; the answer says what the model found. */
static void stage_session(serve_work *w, job *j)
{
    session *s = calloc(1, sizeof *s);
    if (!s) {
        api_error(&j->a, 503, "out_of_memory", "out of memory for a session");
        job_error(w, j);
        return;
    }
    s->photo = j->photo;
    s->logits = j->logits;
    s->C = w->C, s->net_w = j->net_w, s->net_h = j->net_h;
    memset(&j->photo, 0, sizeof j->photo);
    j->logits = NULL;
    s->bytes = (size_t)s->photo.w * s->photo.h * 3 + sizeof(float) * (size_t)s->C * s->net_w * s->net_h;
    /* the classes found, largest share first (arg-max at network resolution) */
    const size_t hw = (size_t)s->net_w * s->net_h;
    double share[256] = {0};
    for (size_t i = 0; i < hw; i++) {
        int best = 0;
        for (int c = 1; c < s->C; c++)
            if (s->logits[c * hw + i] > s->logits[best * hw + i]) best = c;
        share[best] += 1.0 / (double)hw;
    }
    int cls;
    const char *type = s->type = api_detected_type(s->logits, s->C, s->net_h, s->net_w, &cls);
    const int W = s->photo.w, H = s->photo.h, nw = s->net_w, nh = s->net_h, C = s->C;
    if (sessions_add(w->st, s)) {
        session_free(s);
        api_error(&j->a, 503, "out_of_memory", "the photo does not fit in the sessions' memory budget (--session-memory)");
        job_error(w, j);
        return;
    }
    /* s may be evicted from here on: only its id is used */
    char *json = malloc(16384);
    if (!json) {
        api_error(&j->a, 503, "out_of_memory", "out of memory");
        job_error(w, j);
        return;
    }
    int k = snprintf(json, 16384, "{\"id\":\"%s\",\"width\":%d,\"height\":%d,\"network\":{\"width\":%d,\"height\":%d},"
                     "\"type\":\"%s\",\"expires_in\":%d,\"classes\":[", s->id, W, H, nw, nh, type, w->o->session_ttl);
    int order[256];
    const int m = dl_classes_by_share(share, C, order);
    for (int i = 0; i < m && k < 16000; i++) {
        char name[32];
        dl_class_label(order[i], C, name, sizeof name);
        k += snprintf(json + k, 16384 - (size_t)k, "%s{\"index\":%d,\"name\":\"%s\",\"share\":%.5f}", i ? "," : "",
                      order[i], name, share[order[i]]);
    }
    snprintf(json + k, 16384 - (size_t)k, "]}");
    serve_reply r = {.status = 201, .type = "application/json", .body = (uint8_t *)json, .size = strlen(json)};
    reply_header(&r, "X-Session-Id", "%s", s->id);
    reply_header(&r, "Location", "/v1/sessions/%s", s->id);
    timing_header(j, &r, 0.0);
    job_end(w, j, &r);
}

/* A render of a session: the cut-out from its logits, of the photo or of a preview of it. */
static void stage_render(serve_work *w, job *j, dl_refiner **refiner)
{
    session *s = j->sess;
    if (decode_pictures(w, j)) {
        job_error(w, j);
        return;
    }
    const int W = s->photo.w, H = s->photo.h, longer = W > H ? W : H;
    const char *type = j->a.type[0] ? j->a.type : s->type;
    pthread_mutex_lock(&s->preview_lock); /* one render of a session at a time: they share its caches */
    /* the class mass at network resolution: kept from the last render when the classes are the same */
    const dl_cutout_request *cr = &j->a.cut;
    const size_t hw = (size_t)s->net_w * s->net_h;
    if (!s->prob || s->prob_all != !cr->have_classes ||
        (cr->have_classes && memcmp(s->prob_classes, cr->classes, sizeof s->prob_classes))) {
        if (!s->prob) s->prob = malloc(sizeof(float) * hw);
        if (s->prob) dl_class_prob(s->logits, s->C, s->net_h, s->net_w, cr->have_classes ? cr->classes : NULL, s->prob);
        s->prob_all = !cr->have_classes;
        memcpy(s->prob_classes, cr->classes, sizeof s->prob_classes);
    }
    const dl_image *photo = &s->photo;
    int ref_w = 0, ref_h = 0;
    if (j->a.preview > 0 && j->a.preview < longer) {
        const double f = (double)j->a.preview / longer;
        int pw = (int)lrint(W * f), ph = (int)lrint(H * f);
        pw = pw < 1 ? 1 : pw, ph = ph < 1 ? 1 : ph;
        if (s->preview.w != pw || s->preview.h != ph) {
            dl_image_free(&s->preview);
            dl_image p = {pw, ph, 3, malloc((size_t)pw * ph * 3)};
            if (p.px && dl_resize_bilinear_u8(&s->photo, &p) == DL_OK) s->preview = p;
            else free(p.px);
        }
        if (s->preview.px) photo = &s->preview, ref_w = W, ref_h = H;
    }
    cutout_reply(w, j, refiner, photo, s->logits, s->C, s->net_h, s->net_w, ref_w, ref_h, type, s->prob);
    pthread_mutex_unlock(&s->preview_lock);
}

static void *worker_main(void *arg)
{
    serve_work *w = arg;
    dl_refiner *refiner = NULL;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->finish.n && !w->prep.n && !w->stopping) pthread_cond_wait(&w->work_cv, &w->lock);
        job *j = w->finish.n ? pop(&w->finish) : pop(&w->prep);
        pthread_mutex_unlock(&w->lock);
        if (!j) break; /* stopping, nothing left */
        job_drop_if_gone(w, &j);
        if (!j) continue;
        switch (j->stage) {
        case PREP: stage_prep(w, j); break;
        case FINISH: stage_finish(w, j, &refiner); break;
        case SESSION: stage_session(w, j); break;
        case RENDER: stage_render(w, j, &refiner); break;
        }
    }
    dl_refiner_free(refiner);
    return NULL;
}

/* ------------------------------------------------------------------ the model thread */

/* Runs batch[0..n) (one network size) and hands each photo on with its logits. */
static void run_batch(serve_work *w, job **batch, int n)
{
    const int C = w->C, nw = batch[0]->net_w, nh = batch[0]->net_h;
    const size_t in_n = (size_t)3 * nh * nw, out_n = (size_t)C * nh * nw;
    float *x = batch[0]->input, *y = NULL;
    dl_status s = DL_OK;
    for (int i = 0; i < n && s == DL_OK; i++)
        if (!(batch[i]->logits = malloc(sizeof(float) * out_n))) s = dl_fail(DL_ENOMEM, "out of memory for logits");
    if (s == DL_OK && n > 1) {
        x = malloc(sizeof(float) * in_n * n);
        y = malloc(sizeof(float) * out_n * n);
        if (!x || !y) s = dl_fail(DL_ENOMEM, "out of memory for a batch of %d", n);
        for (int i = 0; s == DL_OK && i < n; i++) memcpy(x + in_n * i, batch[i]->input, sizeof(float) * in_n);
    }
    const double t0 = dl_now();
    if (s == DL_OK) s = dl_forward(w->model, x, n, nh, nw, n > 1 ? y : batch[0]->logits);
    const double t = (dl_now() - t0) / n;
    for (int i = 0; i < n; i++) batch[i]->ms_network = 1e3 * t * n, batch[i]->batch = n;
    for (int i = 0; s == DL_OK && n > 1 && i < n; i++) memcpy(batch[i]->logits, y + out_n * i, sizeof(float) * out_n);
    if (n > 1) free(x), free(y);
    metrics_batch(n);
    pthread_mutex_lock(&w->lock);
    w->job_seconds = w->job_seconds > 0 ? 0.8 * w->job_seconds + 0.2 * t : t;
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < n; i++) {
        job *j = batch[i];
        free(j->input);
        j->input = NULL;
        if (s != DL_OK) {
            api_error(&j->a, s == DL_ENOMEM ? 503 : 500, s == DL_ENOMEM ? "out_of_memory" : "internal_error", "%s",
                      dl_last_error());
            job_error(w, j);
            continue;
        }
        j->stage = j->a.endpoint == API_SESSION_NEW ? SESSION : FINISH;
        pthread_mutex_lock(&w->lock);
        push(&w->finish, j);
        pthread_cond_signal(&w->work_cv);
        pthread_mutex_unlock(&w->lock);
    }
}

static void *model_main(void *arg)
{
    serve_work *w = arg;
    const serve_opts *o = w->o;
    dl_options mo = {.device = o->device, .threads = o->threads, .reference = o->reference};
    dl_model *m = NULL;
    const double t0 = dl_now();
    int rc = cli_load_model(o->weights, &mo, &m);
    pthread_mutex_lock(&w->lock);
    w->model = m;
    w->load_status = rc;
    w->ready = rc ? -1 : 1;
    if (m) w->C = dl_model_info_of(m).num_classes;
    pthread_mutex_unlock(&w->lock);
    if (rc) return NULL;
    const dl_model_info info = dl_model_info_of(m);
    cli_say("serve: model DeepLabV3-ResNet%d, %d classes, on %s%s%s, loaded in %.1f s: ready", info.depth,
            info.num_classes, info.device == DL_DEVICE_CUDA ? "the GPU" : "the CPU (",
            info.device == DL_DEVICE_CUDA ? "" : info.path, info.device == DL_DEVICE_CUDA ? "" : ")", dl_now() - t0);
    const int max_batch = o->max_batch > 0 ? o->max_batch : 1;
    job **batch = calloc((size_t)max_batch, sizeof *batch);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->waiting.n && !w->stopping) pthread_cond_wait(&w->model_cv, &w->lock);
        if (!w->waiting.n) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        /* this photo and those of its size waiting with it, a while for more if asked */
        const double deadline = dl_now() + o->batch_wait_ms / 1000.0;
        int n;
        for (;;) {
            n = 0;
            for (job *j = w->waiting.head; j && n < max_batch; j = j->next)
                if (j->net_w == w->waiting.head->net_w && j->net_h == w->waiting.head->net_h) n++;
            if (n >= max_batch || o->batch_wait_ms <= 0 || w->stopping || dl_now() >= deadline) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            const double wait = deadline - dl_now();
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - floor(wait)) * 1e9);
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&w->model_cv, &w->lock, &ts);
        }
        const int bw = w->waiting.head->net_w, bh = w->waiting.head->net_h;
        int k = 0;
        job **link = &w->waiting.head, *last = NULL;
        while (*link && k < n) {
            job *j = *link;
            if (j->net_w == bw && j->net_h == bh) {
                *link = j->next;
                w->waiting.n--;
                batch[k++] = j;
            } else {
                last = j;
                link = &j->next;
            }
        }
        w->waiting.tail = last;
        for (job *j = *link; j; j = j->next) w->waiting.tail = j;
        pthread_mutex_unlock(&w->lock);
        int live = 0; /* photos whose clients went away are not run */
        for (int i = 0; i < k; i++) {
            job_drop_if_gone(w, &batch[i]);
            if (batch[i]) batch[live++] = batch[i];
        }
        if (live) run_batch(w, batch, live);
    }
    free(batch);
    return NULL;
}

/* ------------------------------------------------------------------ the interface */

serve_work *work_start(const serve_opts *o, session_store *st)
{
    serve_work *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->o = o;
    w->st = st;
    w->flim = (fetch_limits){o->fetch_max_bytes, o->fetch_timeout * 1000, o->fetch_max_redirects, o->fetch_allow};
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work_cv, NULL);
    pthread_cond_init(&w->model_cv, NULL);
    w->clients = calloc((size_t)(o->queue > 0 ? o->queue : 1), sizeof *w->clients);
    w->nworkers = o->workers > 0 ? o->workers : 1;
    w->workers = calloc((size_t)w->nworkers, sizeof *w->workers);
    if (!w->clients || !w->workers) {
        free(w->clients), free(w->workers), free(w);
        return NULL;
    }
    pthread_create(&w->model_thread, NULL, model_main, w);
    for (int i = 0; i < w->nworkers; i++) pthread_create(&w->workers[i], NULL, worker_main, w);
    return w;
}

int work_ready(serve_work *w, int *status)
{
    pthread_mutex_lock(&w->lock);
    const int r = w->ready;
    *status = w->load_status;
    pthread_mutex_unlock(&w->lock);
    return r;
}

int work_classes(serve_work *w) { return w->C; }

int work_depth(serve_work *w)
{
    pthread_mutex_lock(&w->lock);
    const int d = w->depth;
    pthread_mutex_unlock(&w->lock);
    return d;
}

int work_submit(serve_work *w, api_request *a, session *s, int fd, const char *client,
                void (*done)(void *ctx, serve_reply *r), void *ctx, serve_reply *r)
{
    job *j = calloc(1, sizeof *j);
    if (!j) {
        api_error_for(a->endpoint, 503, "out_of_memory", "out of memory", r);
        r->retry_after = 1;
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    struct client_count *c = client_of(w, client);
    const int per_client = c ? c->n : 0;
    /* a guess of the wait for a free place: the queue's work spread over its stages */
    int retry = (int)ceil(w->depth * (w->job_seconds > 0 ? w->job_seconds : 1.0) / 2);
    retry = retry < 1 ? 1 : retry > 60 ? 60 : retry;
    if (w->depth >= w->o->queue || (w->o->client_queue > 0 && per_client >= w->o->client_queue)) {
        const int full = w->depth >= w->o->queue;
        pthread_mutex_unlock(&w->lock);
        free(j);
        char detail[160];
        if (full) snprintf(detail, sizeof detail, "the server is busy: %d requests queued (--queue); retry later",
                           w->o->queue);
        else snprintf(detail, sizeof detail, "%d requests of yours are queued (--client-queue); retry later",
                      per_client);
        api_error_for(a->endpoint, full ? 503 : 429, full ? "server_busy" : "rate_limit_exceeded", detail, r);
        r->retry_after = retry;
        return -1;
    }
    w->depth++;
    if (!c) {
        c = &w->clients[w->nclients++];
        snprintf(c->addr, sizeof c->addr, "%s", client);
    }
    c->n++;
    j->a = *a;
    memset(a, 0, sizeof *a);
    j->sess = s;
    j->fd = fd;
    snprintf(j->client, sizeof j->client, "%s", client);
    j->done = done;
    j->ctx = ctx;
    j->t_admit = dl_now();
    j->stage = s ? RENDER : PREP;
    push(s ? &w->finish : &w->prep, j);
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

void work_stop(serve_work *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->work_cv);
    pthread_cond_broadcast(&w->model_cv);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->model_thread, NULL);
    for (int i = 0; i < w->nworkers; i++) pthread_join(w->workers[i], NULL);
    if (w->model) dl_model_free(w->model);
    free(w->clients);
    free(w->workers);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->model_cv);
    free(w);
}
