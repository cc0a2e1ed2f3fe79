#define _GNU_SOURCE /* pthread_tryjoin_np */
/* Draining the iot queue through a handler (drain.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue_backend.h"
#include "wb_internal.h"

#define MAX_THREADS 64

struct wb_drain {
    wb_queue *q;
    wb_drain_opts o;
    wb_worker_message_fn fn;
    void *ctx;
    pthread_t threads[MAX_THREADS];
    unsigned started;
    atomic_bool stop;
    atomic_uint_fast64_t received, delivered, failed, redriven, extended, queue_errors;
};

/* Per receiving thread: extends the visibility of the batch being handled
 * while its handlers run, every half visibility timeout. */
typedef struct keeper {
    wb_drain *d;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const wb_queue_message *msgs; /* the batch being handled, or NULL */
    size_t n, next;               /* msgs[next..n) still need their visibility */
    unsigned gen;                 /* which batch */
    bool quit;
} keeper;

static void *keeper_main(void *arg)
{
    keeper *k = arg;
    unsigned every_ms = k->d->o.visibility_s * 1000u / 2u;
    pthread_mutex_lock(&k->lock);
    while (!k->quit) {
        if (!k->msgs) {
            pthread_cond_wait(&k->cond, &k->lock);
            continue;
        }
        unsigned gen = k->gen;
        uint64_t until = wb__now_ms() + every_ms;
        while (!k->quit && k->msgs && k->gen == gen && wb__now_ms() < until)
            wb__cond_wait_ms(&k->cond, &k->lock, (unsigned)(until - wb__now_ms()) + 1);
        if (k->quit || !k->msgs || k->gen != gen)
            continue;
        /* the handlers of this batch still run: extend what is left of it */
        for (size_t i = k->next; i < k->n; i++) {
            const char *receipt = k->msgs[i].receipt;
            pthread_mutex_unlock(&k->lock);
            wb_err err =
                wb_queue_change_visibility(k->d->q, WB_LQ_IOT, receipt, k->d->o.visibility_s);
            pthread_mutex_lock(&k->lock);
            if (err == WB_OK)
                atomic_fetch_add(&k->d->extended, 1);
            else
                wb__log(WB_LOG_WARN, "drain", "cannot extend a message's visibility: %s",
                        wb_queue_last_error(k->d->q));
            if (k->gen != gen)
                break;
        }
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Hands one message to the handler: true when it may be deleted. */
static bool handle(wb_drain *d, const wb_queue_message *m)
{
    atomic_fetch_add(&d->received, 1);
    wb_envelope env = WB_ENVELOPE_INIT;
    char *detail = NULL;
    wb_err err = wb_envelope_decode(m->body, m->body_len, &env, &detail);
    if (err) {
        wb__log(WB_LOG_WARN, "drain",
                "message %s of the iot queue is not a worker message envelope (%s); left for "
                "the dead-letter queue (receive %u of %u)",
                m->id, detail ? detail : wb_strerror(err), m->receive_count,
                d->o.max_receive_count);
        free(detail);
    } else {
        wb_worker_message wm = {&env, m->id, m->receive_count};
        err = d->fn(d->ctx, &wm);
        wb_envelope_clear(&env);
    }
    if (!err)
        return true;
    atomic_fetch_add(&d->failed, 1);
    if (m->receive_count >= d->o.max_receive_count) {
        atomic_fetch_add(&d->redriven, 1);
        wb__log(WB_LOG_WARN, "drain",
                "message %s failed on its last attempt (%u); the queue moves it to dlq", m->id,
                m->receive_count);
    }
    return false;
}

/* Hands a received batch to the handler; done[] gets the receipts of the
 * messages handled, which the next receive deletes. Returns their number. */
static size_t handle_batch(wb_drain *d, keeper *k, const wb_queue_message *msgs, size_t n,
                           const char **done)
{
    pthread_mutex_lock(&k->lock);
    k->msgs = msgs;
    k->n = n;
    k->next = 0;
    k->gen++;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    size_t ndone = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = handle(d, &msgs[i]);
        pthread_mutex_lock(&k->lock);
        k->next = i + 1;
        pthread_mutex_unlock(&k->lock);
        if (ok)
            done[ndone++] = msgs[i].receipt;
    }
    pthread_mutex_lock(&k->lock);
    k->msgs = NULL;
    k->gen++;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    return ndone;
}

/* Counts the deletes of handled messages; any left undeleted is seen
 * again: at least once. */
static void count_deletes(wb_drain *d, const wb_err *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (res[i] == WB_OK) {
            atomic_fetch_add(&d->delivered, 1);
        } else {
            atomic_fetch_add(&d->queue_errors, 1);
            wb__log(WB_LOG_WARN, "drain", "a handled message was not deleted: %s",
                    wb_strerror(res[i]));
        }
    }
}

static void *drain_main(void *arg)
{
    wb_drain *d = arg;
    keeper k = {.d = d};
    pthread_mutex_init(&k.lock, NULL);
    pthread_cond_init(&k.cond, NULL);
    bool keeping = pthread_create(&k.thread, NULL, keeper_main, &k) == 0;
    if (!keeping)
        wb__log(WB_LOG_WARN, "drain",
                "no thread to extend visibility: long handlers may see "
                "their message twice");
    unsigned backoff = 0;
    /* The handled messages of the last batch: the next receive deletes
     * them, in the transaction of its claim where the queue can */
    wb_queue_message *held = NULL;
    size_t nheld = 0, ndone = 0;
    const char *done[WB_QUEUE_BATCH_MAX];
    wb_err res[WB_QUEUE_BATCH_MAX];
    while (!atomic_load(&d->stop)) {
        wb_queue_message *msgs = NULL;
        size_t n = 0;
        wb_err err =
            ndone ? wb__queue_delete_receive(d->q, WB_LQ_IOT, done, ndone, res, WB_QUEUE_BATCH_MAX,
                                             d->o.wait_s, (int)d->o.visibility_s, &msgs, &n)
                  : wb_queue_receive(d->q, WB_LQ_IOT, WB_QUEUE_BATCH_MAX, d->o.wait_s,
                                     (int)d->o.visibility_s, &msgs, &n);
        if (ndone)
            count_deletes(d, res, ndone);
        ndone = 0;
        wb_queue_messages_free(held, nheld);
        held = NULL;
        nheld = 0;
        if (err && atomic_load(&d->stop))
            break; /* the stop ended the receive's retries: not an error of the queue */
        if (err) {
            atomic_fetch_add(&d->queue_errors, 1);
            unsigned ms = wb__backoff_ms(backoff++, 100, 5000);
            wb__log(WB_LOG_WARN, "drain", "receiving from the iot queue: %s; again in %u ms",
                    wb_queue_last_error(d->q), ms);
            for (unsigned slept = 0; slept < ms && !atomic_load(&d->stop); slept += 50) {
                struct timespec ts = {0, 50000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        backoff = 0;
        if (n)
            ndone = handle_batch(d, &k, msgs, n, done);
        held = msgs;
        nheld = n;
    }
    if (ndone) {
        wb__queue_delete_each(d->q, WB_LQ_IOT, done, ndone, res);
        count_deletes(d, res, ndone);
    }
    wb_queue_messages_free(held, nheld);
    if (keeping) {
        pthread_mutex_lock(&k.lock);
        k.quit = true;
        pthread_cond_signal(&k.cond);
        pthread_mutex_unlock(&k.lock);
        pthread_join(k.thread, NULL);
    }
    pthread_mutex_destroy(&k.lock);
    pthread_cond_destroy(&k.cond);
    return NULL;
}

WB_API wb_err wb_drain_start(wb_queue *q, const wb_drain_opts *opts, wb_worker_message_fn fn,
                             void *ctx, wb_drain **out)
{
    if (!q || !fn || !out || (opts && opts->version != WB_DRAIN_OPTS_VERSION))
        return WB_ERR_INVALID_ARGUMENT;
    *out = NULL;
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    if (opts)
        o = *opts;
    if (!o.threads)
        o.threads = 2;
    if (!o.visibility_s)
        o.visibility_s = 45;
    if (!o.wait_s)
        o.wait_s = WB_QUEUE_WAIT_MAX_S;
    if (!o.max_receive_count)
        o.max_receive_count = 3;
    if (o.threads > MAX_THREADS || o.wait_s > WB_QUEUE_WAIT_MAX_S || o.visibility_s < 2 ||
        o.visibility_s > WB_QUEUE_VISIBILITY_MAX_S)
        return WB_ERR_INVALID_ARGUMENT;
    wb_drain *d = calloc(1, sizeof *d);
    if (!d)
        return WB_ERR_NO_MEMORY;
    d->q = q;
    d->o = o;
    d->fn = fn;
    d->ctx = ctx;
    for (; d->started < o.threads; d->started++) {
        if (pthread_create(&d->threads[d->started], NULL, drain_main, d) != 0) {
            wb_drain_free(d);
            return WB_ERR_NO_MEMORY;
        }
    }
    *out = d;
    return WB_OK;
}

WB_API void wb_drain_stats_get(wb_drain *d, wb_drain_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!d)
        return;
    out->received = atomic_load(&d->received);
    out->delivered = atomic_load(&d->delivered);
    out->failed = atomic_load(&d->failed);
    out->redriven = atomic_load(&d->redriven);
    out->extended = atomic_load(&d->extended);
    out->queue_errors = atomic_load(&d->queue_errors);
}

WB_API void wb_drain_stop(wb_drain *d)
{
    if (!d)
        return;
    atomic_store(&d->stop, true);
    /* a thread in a long poll is woken; one that was about to begin one
     * when the flag was set is woken again on the next round */
    for (unsigned i = 0; i < d->started; i++) {
        while (pthread_tryjoin_np(d->threads[i], NULL) == EBUSY) {
            wb__queue_wake(d->q);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    d->started = 0;
}

WB_API void wb_drain_free(wb_drain *d)
{
    wb_drain_stop(d);
    free(d);
}
