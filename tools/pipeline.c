/* pipeline.c - decoder threads, batched inference on the main thread, encoder threads. See
 * pipeline.h for the picture. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "pipeline.h"
#include "status.h"

/* One photo in flight. */
typedef struct item {
    int job;
    char info[PIPE_INFO_SIZE]; /* the job's report lines, while it is in flight */
    dl_image photo;
    float *input;   /* 1 x 3 x h x w, normalised (freed after the forward pass) */
    float *logits;  /* classes x h x w */
    int w, h, classes;
} item;

/* ------------------------------------------------------------------ bounded queue */

typedef struct queue {
    item **slot;
    int cap, head, count, closed;
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
} queue;

static int queue_init(queue *q, int cap)
{
    memset(q, 0, sizeof *q);
    q->slot = calloc((size_t)cap, sizeof *q->slot);
    q->cap = cap;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q->slot ? 0 : -1;
}

static void queue_destroy(queue *q)
{
    free(q->slot);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

/* Blocks while the queue is full. Returns -1 (and keeps it) if the queue was closed. */
static int queue_push(queue *q, item *it)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == q->cap && !q->closed) pthread_cond_wait(&q->not_full, &q->lock);
    int r = -1;
    if (!q->closed) {
        q->slot[(q->head + q->count++) % q->cap] = it;
        pthread_cond_signal(&q->not_empty);
        r = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

/* Blocks until an item is there; NULL once the queue is closed and empty. */
static item *queue_pop(queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->lock);
    item *it = NULL;
    if (q->count) {
        it = q->slot[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return it;
}

/* No more pushes: waiting poppers get the rest, then NULL; waiting pushers give up. */
static void queue_close(queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

/* ------------------------------------------------------------------ the run */

typedef struct run {
    const pipe_config *cfg;
    pipe_job *jobs;
    int njobs;
    dl_model *model;
    queue decoded, inferred;
    pthread_mutex_t lock; /* the fields below */
    int next_job, decoders_left, done, failed, stop;
    double decode_seconds, finish_seconds;
    /* Logits buffers come back from the encoders for the next photos: a fresh 40 MB malloc is a
     * fresh mmap, and faulting its pages in on the network's thread costs ~10 ms per photo. */
    struct spare {
        float *p;
        size_t n;
    } *spare;
    int nspare, spare_cap;
    float *batch_x, *batch_y; /* the batch's contiguous input and output (batch > 1), kept */
    size_t batch_x_n, batch_y_n;
    double t0; /* when the model was ready: times and rates are counted from there */
    double *started; /* per job: when a decoder took it */
} run;

/* A buffer of at least n floats: a returned one if any fits, else a new one. */
static float *take_buffer(run *r, size_t n)
{
    float *p = NULL;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->nspare; i++)
        if (r->spare[i].n >= n) {
            p = r->spare[i].p;
            r->spare[i] = r->spare[--r->nspare];
            break;
        }
    pthread_mutex_unlock(&r->lock);
    return p ? p : malloc(sizeof(float) * n);
}

static void give_buffer(run *r, float *p, size_t n)
{
    pthread_mutex_lock(&r->lock);
    if (p && r->nspare < r->spare_cap) r->spare[r->nspare++] = (struct spare){p, n}, p = NULL;
    pthread_mutex_unlock(&r->lock);
    free(p);
}

static void item_free(item *it)
{
    if (!it) return;
    dl_image_free(&it->photo);
    free(it->input);
    free(it->logits);
    free(it);
}

/* Records the end of a job (status DL_OK or a failure with its message) and reports it, with
 * the lines finish() left in info (NULL: none). */
static void job_done(run *r, int j, dl_status status, const char *error, char *info)
{
    static char none[1];
    pthread_mutex_lock(&r->lock);
    pipe_job *job = &r->jobs[j];
    job->status = status;
    job->error = status != DL_OK ? error : NULL;
    job->info = info ? info : none;
    job->seconds = dl_now() - (r->started[j] > r->t0 ? r->started[j] : r->t0);
    if (status == DL_OK) r->done++;
    else r->failed++;
    if (r->cfg->progress && !r->stop)
        r->cfg->progress(r->cfg->ctx, job, r->done, r->failed, r->njobs, dl_now() - r->t0);
    job->error = NULL, job->info = NULL; /* the texts were the caller's, for the report */
    pthread_mutex_unlock(&r->lock);
}

/* Linux gives each thread its own nice value (setpriority on the thread id). */
static void lower_priority(const pipe_config *cfg)
{
#ifdef __linux__
    if (cfg->background_io) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
#else
    (void)cfg;
#endif
}

static void *decoder(void *arg)
{
    run *r = arg;
    lower_priority(r->cfg);
    for (;;) {
        pthread_mutex_lock(&r->lock);
        const int j = r->stop ? r->njobs : r->next_job++;
        if (j < r->njobs) r->started[j] = dl_now();
        pthread_mutex_unlock(&r->lock);
        if (j >= r->njobs) break;
        const double t0 = dl_now();
        item *it = calloc(1, sizeof *it);
        dl_status s = it ? dl_image_read(r->jobs[j].input, &it->photo) : DL_ENOMEM;
        if (!it) dl_fail(s, "out of memory");
        if (s == DL_OK) s = dl_image_fit_pixels(&it->photo, r->cfg->fit_pixels);
        if (s == DL_OK) s = dl_preprocess(&it->photo, r->cfg->size, &it->input, &it->w, &it->h);
        pthread_mutex_lock(&r->lock);
        r->decode_seconds += dl_now() - t0;
        pthread_mutex_unlock(&r->lock);
        if (s == DL_OK) {
            it->job = j;
            if (queue_push(&r->decoded, it) == 0) continue;
            item_free(it); /* the run was stopped: nothing more to report */
            continue;
        }
        job_done(r, j, s, dl_last_error(), NULL);
        item_free(it);
    }
    pthread_mutex_lock(&r->lock);
    const int last = --r->decoders_left == 0;
    pthread_mutex_unlock(&r->lock);
    if (last) queue_close(&r->decoded);
    return NULL;
}

typedef struct encoder_arg {
    run *r;
    int worker;
} encoder_arg;

static void *encoder(void *arg)
{
    const encoder_arg *e = arg;
    run *r = e->r;
    lower_priority(r->cfg);
    item *it;
    while ((it = queue_pop(&r->inferred))) {
        pipe_job *job = &r->jobs[it->job];
        const double t0 = dl_now();
        it->info[0] = 0;
        job->info = it->info; /* this job is this thread's alone until job_done */
        dl_status s = r->cfg->finish(r->cfg->ctx, e->worker, r->model, job, &it->photo, it->logits, it->classes,
                                     it->h, it->w);
        give_buffer(r, it->logits, (size_t)it->classes * it->h * it->w);
        it->logits = NULL;
        pthread_mutex_lock(&r->lock);
        r->finish_seconds += dl_now() - t0;
        pthread_mutex_unlock(&r->lock);
        job_done(r, it->job, s, dl_last_error(), it->info);
        item_free(it);
    }
    return NULL;
}

/* Runs one batch (items of the same size) through the network and hands the items on. */
static void infer(run *r, item **batch, int n, pipe_stats *stats)
{
    const dl_model_info info = dl_model_info_of(r->model);
    const int C = info.num_classes, w = batch[0]->w, h = batch[0]->h;
    const size_t in_n = (size_t)3 * h * w, out_n = (size_t)C * h * w;
    float *x = batch[0]->input, *y = NULL;
    dl_status s = DL_OK;
    for (int i = 0; i < n && s == DL_OK; i++)
        if (!(batch[i]->logits = take_buffer(r, out_n)))
            s = dl_fail(DL_ENOMEM, "%s: out of memory for the logits of a %dx%d input", r->jobs[batch[i]->job].input,
                        w, h);
    if (s == DL_OK && n > 1) { /* one contiguous tensor for the batch, kept for the next batches */
        if (r->batch_x_n < in_n * n) {
            free(r->batch_x);
            r->batch_x_n = (r->batch_x = malloc(sizeof(float) * in_n * n)) ? in_n * n : 0;
        }
        if (r->batch_y_n < out_n * n) {
            free(r->batch_y);
            r->batch_y_n = (r->batch_y = malloc(sizeof(float) * out_n * n)) ? out_n * n : 0;
        }
        x = r->batch_x;
        y = r->batch_y;
        if (!x || !y) s = dl_fail(DL_ENOMEM, "out of memory for a batch of %d inputs of %dx%d", n, w, h);
        for (int i = 0; s == DL_OK && i < n; i++) memcpy(x + in_n * i, batch[i]->input, sizeof(float) * in_n);
    }
    if (s == DL_OK) {
        const double t0 = dl_now();
        s = dl_forward(r->model, x, n, h, w, n > 1 ? y : batch[0]->logits);
        stats->forward_seconds += dl_now() - t0;
        stats->forwards++;
    }
    for (int i = 0; s == DL_OK && n > 1 && i < n; i++)
        memcpy(batch[i]->logits, y + out_n * i, sizeof(float) * out_n);
    char error[512];
    snprintf(error, sizeof error, "%s", dl_last_error());
    for (int i = 0; i < n; i++) {
        item *it = batch[i];
        free(it->input);
        it->input = NULL;
        it->classes = C;
        if (s == DL_OK && queue_push(&r->inferred, it) == 0) continue;
        /* a failed forward pass fails its photos; name the photo in the message */
        char msg[700];
        if (s != DL_OK) snprintf(msg, sizeof msg, "%s: %s", r->jobs[it->job].input, error);
        else snprintf(msg, sizeof msg, "%s: not processed (the run was stopped)", r->jobs[it->job].input);
        job_done(r, it->job, s != DL_OK ? s : DL_EINTERNAL, msg, NULL);
        item_free(it);
    }
}

int pipe_run(const pipe_config *cfg, pipe_job *jobs, int njobs, pipe_stats *stats)
{
    memset(stats, 0, sizeof *stats);
#ifdef M_MMAP_THRESHOLD
    /* Every photo allocates and frees the same few buffers of megabytes (pixels, maps, outputs).
     * glibc serves blocks that large with mmap and gives them back with munmap, so each photo
     * would fault all its pages in again (~40 MB a 1080p photo, tens of ms of CPU); kept in the
     * heap they are reused. The memory stays with the process until it ends. */
    if (njobs > 1) {
        mallopt(M_MMAP_THRESHOLD, 256 << 20);
        mallopt(M_TRIM_THRESHOLD, 512 << 20);
    }
#endif
    run r = {.cfg = cfg, .jobs = jobs, .njobs = njobs, .decoders_left = cfg->decoders};
    const int batch = cfg->batch > 0 ? cfg->batch : 1;
    r.started = calloc((size_t)njobs + 1, sizeof *r.started);
    item **held = calloc((size_t)batch, sizeof *held);
    pthread_t *threads = calloc((size_t)(cfg->decoders + cfg->encoders), sizeof *threads);
    encoder_arg *eargs = calloc((size_t)cfg->encoders, sizeof *eargs);
    /* buffers in flight: the inferred queue, one per encoder, one batch */
    r.spare_cap = 2 * cfg->encoders + 2 * batch + 2;
    r.spare = calloc((size_t)r.spare_cap, sizeof *r.spare);
    if (!r.started || !held || !threads || !eargs || !r.spare || queue_init(&r.decoded, 2 * batch + cfg->decoders) ||
        queue_init(&r.inferred, cfg->encoders + 1)) {
        return cli_error(DL_ENOMEM, "out of memory starting the pipeline");
    }
    pthread_mutex_init(&r.lock, NULL);
    for (int j = 0; j < njobs; j++) jobs[j].status = DL_OK, jobs[j].error = NULL, jobs[j].info = NULL;

    /* The model loads while the first photos are decoded. A single photo is decoded first, on
     * this thread, so that its errors come before those of the weights, as they always have. */
    r.t0 = dl_now();
    const double t_start = r.t0;
    int nthreads = 0;
    if (njobs == 1) {
        r.decoders_left = 1;
        pipe_config plain = *cfg;
        plain.background_io = 0; /* this thread runs the network next */
        r.cfg = &plain;
        decoder(&r);
        r.cfg = cfg;
    } else {
        for (int i = 0; i < cfg->decoders; i++) pthread_create(&threads[nthreads++], NULL, decoder, &r);
    }
    int rc = 0;
    if (njobs > 1 || r.failed == 0) {
        const double t0 = dl_now();
        rc = cfg->load(cfg->ctx, &r.model);
        stats->load_seconds = dl_now() - t0;
    }
    pthread_mutex_lock(&r.lock);
    r.t0 = dl_now();
    pthread_mutex_unlock(&r.lock);
    if (rc) { /* no model: stop the decoders and drop what they made */
        pthread_mutex_lock(&r.lock);
        r.stop = 1;
        pthread_mutex_unlock(&r.lock);
        queue_close(&r.decoded);
    } else if (!(njobs == 1 && r.failed)) {
        for (int i = 0; i < cfg->encoders; i++) {
            eargs[i] = (encoder_arg){&r, i};
            pthread_create(&threads[nthreads++], NULL, encoder, &eargs[i]);
        }
        /* batches: photos in arrival order; a photo of another size starts the next batch */
        item *next = queue_pop(&r.decoded);
        while (next) {
            int n = 0;
            held[n++] = next;
            next = NULL;
            while (n < batch && (next = queue_pop(&r.decoded)) && next->w == held[0]->w && next->h == held[0]->h) {
                held[n++] = next;
                next = NULL;
            }
            infer(&r, held, n, stats);
            if (!next) next = queue_pop(&r.decoded);
        }
        queue_close(&r.inferred);
    }
    for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
    item *it;
    while ((it = queue_pop(&r.decoded))) item_free(it); /* left after a failed load */
    stats->seconds = dl_now() - t_start - stats->load_seconds;
    stats->decode_seconds = r.decode_seconds;
    stats->finish_seconds = r.finish_seconds;
    stats->done = r.done;
    stats->failed = r.failed;
    if (!rc)
        for (int j = 0; j < njobs; j++)
            if (jobs[j].status != DL_OK) {
                rc = jobs[j].status;
                break;
            }
    queue_destroy(&r.decoded);
    queue_destroy(&r.inferred);
    pthread_mutex_destroy(&r.lock);
    for (int i = 0; i < r.nspare; i++) free(r.spare[i].p);
    free(r.spare), free(r.batch_x), free(r.batch_y);
    free(r.started), free(held), free(threads), free(eargs);
    return rc;
}
