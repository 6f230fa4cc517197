/*
 * serve_sessions.c - editing sessions (serve.h): the photo and the network's logits, kept so that
 * a render with other classes, points, strokes or backgrounds runs only the cut-out, not the
 * network. Held in a memory budget, least recently used first out, and dropped after ttl seconds
 * unused. An id is 128 random bits (96 after a replica's --session-prefix of 8 digits at most), so
 * a guessed or stale id never finds another's photo; the ids
 * of the last sessions evicted or expired are remembered, so that they answer 410 (gone) rather
 * than 404. A session in use by a request when it is evicted is freed when that request ends.
 *
 * The store is a list in LRU order behind one lock; lookups are linear (a budget of gigabytes
 * holds tens to thousands of sessions, a few microseconds to walk).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "serve.h"

#define GONE_IDS 4096

struct session_store {
    pthread_mutex_t lock;
    session *head, *tail; /* most recently used first */
    int count;
    size_t bytes, budget;
    int ttl;
    char prefix[9];
    long evicted;
    char gone[GONE_IDS][33]; /* a ring of ids evicted or expired */
    int gone_next;
};

session_store *sessions_create(int64_t budget, int ttl, const char *prefix)
{
    session_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    snprintf(st->prefix, sizeof st->prefix, "%s", prefix ? prefix : "");
    pthread_mutex_init(&st->lock, NULL);
    st->budget = budget > 0 ? (size_t)budget : 0;
    st->ttl = ttl;
    return st;
}

void session_free(session *s)
{
    if (!s) return;
    dl_image_free(&s->photo);
    dl_image_free(&s->preview);
    free(s->logits);
    free(s->prob);
    pthread_mutex_destroy(&s->preview_lock);
    free(s);
}

static void unlink_session(session_store *st, session *s)
{
    if (s->prev) s->prev->next = s->next;
    else st->head = s->next;
    if (s->next) s->next->prev = s->prev;
    else st->tail = s->prev;
    s->prev = s->next = NULL;
    st->count--;
    st->bytes -= s->bytes;
}

static void push_front(session_store *st, session *s)
{
    s->prev = NULL;
    s->next = st->head;
    if (st->head) st->head->prev = s;
    st->head = s;
    if (!st->tail) st->tail = s;
    st->count++;
    st->bytes += s->bytes;
}

/* Out of the store (lock held): remembered as gone, freed now or by its last user. */
static void evict(session_store *st, session *s)
{
    unlink_session(st, s);
    memcpy(st->gone[st->gone_next], s->id, sizeof s->id);
    st->gone_next = (st->gone_next + 1) % GONE_IDS;
    st->evicted++;
    s->evicted = 1;
    if (s->refs == 0) session_free(s);
}

void sessions_free(session_store *st)
{
    if (!st) return;
    for (session *s = st->head, *next; s; s = next) {
        next = s->next;
        session_free(s); /* no request is left when the store goes */
    }
    pthread_mutex_destroy(&st->lock);
    free(st);
}

int sessions_add(session_store *st, session *s)
{
    uint8_t r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return -1;
    for (int i = 0; i < 16; i++) snprintf(s->id + 2 * i, 3, "%02x", r[i]);
    memcpy(s->id, st->prefix, strlen(st->prefix)); /* a replica's route, then >= 96 random bits */
    pthread_mutex_init(&s->preview_lock, NULL);
    s->last_used = dl_now();
    pthread_mutex_lock(&st->lock);
    if (s->bytes > st->budget) {
        pthread_mutex_unlock(&st->lock);
        return -1;
    }
    while (st->tail && st->bytes + s->bytes > st->budget) evict(st, st->tail);
    push_front(st, s);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

session *sessions_get(session_store *st, const char *id, int *gone)
{
    *gone = 0;
    pthread_mutex_lock(&st->lock);
    session *s = st->head;
    while (s && strcmp(s->id, id)) s = s->next;
    if (s && st->ttl > 0 && dl_now() - s->last_used > st->ttl) { /* expired, not yet swept */
        evict(st, s);
        s = NULL;
    }
    if (s) {
        unlink_session(st, s);
        push_front(st, s);
        s->refs++;
        s->last_used = dl_now();
    } else {
        for (int i = 0; i < GONE_IDS && !*gone; i++) *gone = !strcmp(st->gone[i], id);
    }
    pthread_mutex_unlock(&st->lock);
    return s;
}

void sessions_release(session_store *st, session *s)
{
    if (!s) return;
    pthread_mutex_lock(&st->lock);
    const int free_it = --s->refs == 0 && s->evicted;
    if (!s->evicted) s->last_used = dl_now();
    pthread_mutex_unlock(&st->lock);
    if (free_it) session_free(s);
}

int sessions_delete(session_store *st, const char *id)
{
    pthread_mutex_lock(&st->lock);
    session *s = st->head;
    while (s && strcmp(s->id, id)) s = s->next;
    if (s) evict(st, s);
    pthread_mutex_unlock(&st->lock);
    return s ? 0 : -1;
}

void sessions_expire(session_store *st)
{
    if (st->ttl <= 0) return;
    const double now = dl_now();
    pthread_mutex_lock(&st->lock);
    while (st->tail && now - st->tail->last_used > st->ttl) evict(st, st->tail);
    pthread_mutex_unlock(&st->lock);
}

void sessions_stats(session_store *st, int *count, size_t *bytes, long *evicted)
{
    pthread_mutex_lock(&st->lock);
    *count = st->count;
    *bytes = st->bytes;
    *evicted = st->evicted;
    pthread_mutex_unlock(&st->lock);
}
