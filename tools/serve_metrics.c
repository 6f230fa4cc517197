/*
 * serve_metrics.c - what GET /metrics reports, in Prometheus's text format (version 0.0.4):
 * requests by route and status, a latency histogram per route, batch sizes, work dropped because
 * the client went away, the queue, sessions and memory. One lock; updates are a few additions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define ROUTES 12
#define STATUSES 24

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define LATENCY_BUCKETS (int)(sizeof latency_bounds / sizeof latency_bounds[0])
static const int batch_bounds[] = {1, 2, 4, 8, 16, 32, 64};
#define BATCH_BUCKETS (int)(sizeof batch_bounds / sizeof batch_bounds[0])

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct route {
    char name[24];
    struct {
        int status;
        long count;
    } by_status[STATUSES];
    long buckets[LATENCY_BUCKETS + 1];
    double seconds_sum;
    long count;
} routes[ROUTES];
static int nroutes;
static long batch_buckets[BATCH_BUCKETS + 1], batches, batch_photos, dropped;

void metrics_request(const char *route, int status, double seconds)
{
    pthread_mutex_lock(&lock);
    int k = 0;
    while (k < nroutes && strcmp(routes[k].name, route)) k++;
    if (k == nroutes && nroutes < ROUTES) snprintf(routes[nroutes++].name, sizeof routes[0].name, "%s", route);
    if (k < nroutes) {
        struct route *r = &routes[k];
        int s = 0;
        while (s < STATUSES && r->by_status[s].count && r->by_status[s].status != status) s++;
        if (s < STATUSES) r->by_status[s].status = status, r->by_status[s].count++;
        int b = 0;
        while (b < LATENCY_BUCKETS && seconds > latency_bounds[b]) b++;
        r->buckets[b]++;
        r->seconds_sum += seconds;
        r->count++;
    }
    pthread_mutex_unlock(&lock);
}

void metrics_batch(int n)
{
    pthread_mutex_lock(&lock);
    int b = 0;
    while (b < BATCH_BUCKETS && n > batch_bounds[b]) b++;
    batch_buckets[b]++;
    batches++;
    batch_photos += n;
    pthread_mutex_unlock(&lock);
}

void metrics_dropped(void)
{
    pthread_mutex_lock(&lock);
    dropped++;
    pthread_mutex_unlock(&lock);
}

/* This process's resident memory (VmRSS), in bytes. */
static long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

/* printf onto a growing buffer */
typedef struct text {
    char *s;
    size_t n, cap;
} text;

static void add(text *t, const char *fmt, ...) DL_PRINTF(2, 3);
static void add(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int k = t->s ? vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        const size_t cap = t->cap ? 2 * t->cap : 8192;
        char *grown = realloc(t->s, cap);
        if (!grown) return;
        t->s = grown, t->cap = cap;
    }
}

char *metrics_text(int sessions, size_t session_bytes, long sessions_evicted, int queue_depth, int ready, size_t *len)
{
    text t = {0};
    pthread_mutex_lock(&lock);
    add(&t, "# HELP deeplab_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE deeplab_requests_total counter\n");
    for (int k = 0; k < nroutes; k++)
        for (int s = 0; s < STATUSES && routes[k].by_status[s].count; s++)
            add(&t, "deeplab_requests_total{route=\"%s\",status=\"%d\"} %ld\n", routes[k].name,
                routes[k].by_status[s].status, routes[k].by_status[s].count);
    add(&t, "# HELP deeplab_request_seconds Time from a request's headers to its answer's last byte.\n"
            "# TYPE deeplab_request_seconds histogram\n");
    for (int k = 0; k < nroutes; k++) {
        long cum = 0;
        for (int b = 0; b < LATENCY_BUCKETS; b++) {
            cum += routes[k].buckets[b];
            add(&t, "deeplab_request_seconds_bucket{route=\"%s\",le=\"%g\"} %ld\n", routes[k].name, latency_bounds[b], cum);
        }
        add(&t, "deeplab_request_seconds_bucket{route=\"%s\",le=\"+Inf\"} %ld\n", routes[k].name, routes[k].count);
        add(&t, "deeplab_request_seconds_sum{route=\"%s\"} %.6f\n", routes[k].name, routes[k].seconds_sum);
        add(&t, "deeplab_request_seconds_count{route=\"%s\"} %ld\n", routes[k].name, routes[k].count);
    }
    add(&t, "# HELP deeplab_batch_size Photos per forward pass of the network.\n# TYPE deeplab_batch_size histogram\n");
    long cum = 0;
    for (int b = 0; b < BATCH_BUCKETS; b++) {
        cum += batch_buckets[b];
        add(&t, "deeplab_batch_size_bucket{le=\"%d\"} %ld\n", batch_bounds[b], cum);
    }
    add(&t, "deeplab_batch_size_bucket{le=\"+Inf\"} %ld\ndeeplab_batch_size_sum %ld\ndeeplab_batch_size_count %ld\n",
        batches, batch_photos, batches);
    add(&t, "# HELP deeplab_dropped_total Queued work dropped because its client went away.\n"
            "# TYPE deeplab_dropped_total counter\ndeeplab_dropped_total %ld\n", dropped);
    pthread_mutex_unlock(&lock);
    add(&t, "# HELP deeplab_queue_depth Requests admitted and not yet answered (waiting or at work).\n"
            "# TYPE deeplab_queue_depth gauge\ndeeplab_queue_depth %d\n", queue_depth);
    add(&t, "# HELP deeplab_sessions Editing sessions held.\n# TYPE deeplab_sessions gauge\ndeeplab_sessions %d\n",
        sessions);
    add(&t, "# HELP deeplab_session_bytes Memory the sessions hold (photos and logits).\n"
            "# TYPE deeplab_session_bytes gauge\ndeeplab_session_bytes %zu\n", session_bytes);
    add(&t, "# HELP deeplab_sessions_evicted_total Sessions evicted for memory or expired.\n"
            "# TYPE deeplab_sessions_evicted_total counter\ndeeplab_sessions_evicted_total %ld\n", sessions_evicted);
    add(&t, "# HELP deeplab_ready 1 when the model is loaded and the server is not draining.\n"
            "# TYPE deeplab_ready gauge\ndeeplab_ready %d\n", ready);
    add(&t, "# HELP process_resident_memory_bytes Resident memory of the process.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n", resident_bytes());
    *len = t.n;
    return t.s;
}
