/* The topic rule's writer for MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received:
 * Mosquitto's thread hands each envelope over and acknowledges at once; this
 * thread writes them into the iot queue in batches, in order, retrying while
 * the queue fails. What it holds when the broker dies is lost: that is the
 * mode's loss window (docs/builtin-broker.md). */
#include "writer.h"

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

typedef struct item {
    struct item *next;
    size_t len;
    char body[];
} item;

struct bltn_writer {
    const wb_config *cfg;
    wb_queue *q; /* the writer thread's own handle */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    item *head, *tail;
    size_t count, bytes;
    bool stop;
    uint64_t deadline_ms; /* once stopping: the last moment to write */
    uint64_t written, failures;
};

/* What the writer holds at most: past either, messages are refused (not
 * acknowledged: the worker sends them again). */
#define WRITER_MAX_MESSAGES 100000u
#define WRITER_MAX_BYTES    (64u * 1024u * 1024u)
#define RETRY_MIN_MS        100u
#define RETRY_MAX_MS        5000u

static bool open_queue(bltn_writer *w)
{
    if (w->q)
        return true;
    if (wb_queue_open(w->cfg, NULL, &w->q) == WB_OK)
        return true;
    w->q = NULL;
    return false;
}

static void *writer_main(void *arg)
{
    bltn_writer *w = arg;
    unsigned failures = 0;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->head || (w->stop && wb__now_ms() >= w->deadline_ms))
            break;
        /* a batch, in order; the items stay queued until written */
        item *batch[WB_QUEUE_BATCH_MAX];
        size_t n = 0;
        for (item *it = w->head; it && n < WB_QUEUE_BATCH_MAX; it = it->next)
            batch[n++] = it;
        pthread_mutex_unlock(&w->lock);
        wb_queue_entry e[WB_QUEUE_BATCH_MAX];
        for (size_t i = 0; i < n; i++)
            e[i] = (wb_queue_entry){.body = batch[i]->body, .body_len = batch[i]->len};
        wb_err err = open_queue(w) ? wb_queue_send_batch(w->q, WB_LQ_IOT, e, n, NULL)
                                   : WB_ERR_CONNECTION_LOST;
        pthread_mutex_lock(&w->lock);
        if (!err) {
            if (failures)
                mosquitto_log_printf(MOSQ_LOG_NOTICE,
                                     "workerbus: topic rule: the iot queue takes messages again; "
                                     "%zu acknowledged messages wait to be written",
                                     w->count - n);
            failures = 0;
            for (size_t i = 0; i < n; i++) {
                item *it = w->head;
                w->head = it->next;
                w->count--;
                w->bytes -= it->len;
                free(it);
            }
            if (!w->head)
                w->tail = NULL;
            w->written += n;
            continue;
        }
        w->failures++;
        if (failures++ == 0)
            mosquitto_log_printf(MOSQ_LOG_WARNING,
                                 "Warning: workerbus: topic rule: cannot write acknowledged "
                                 "messages to the iot queue (%s): %zu wait, retrying",
                                 w->q ? wb_queue_last_error(w->q) : "the queue cannot be opened",
                                 w->count);
        uint64_t wait = wb__backoff_ms(failures, RETRY_MIN_MS, RETRY_MAX_MS);
        if (w->stop && wb__now_ms() + wait > w->deadline_ms)
            break;
        wb__cond_wait_ms(&w->cond, &w->lock, (unsigned)wait);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

bltn_writer *bltn_writer_start(const wb_config *queue_cfg)
{
    bltn_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->cfg = queue_cfg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w);
        return NULL;
    }
    return w;
}

bool bltn_writer_push(bltn_writer *w, const char *body, size_t len, char **why)
{
    pthread_mutex_lock(&w->lock);
    bool full = w->count >= WRITER_MAX_MESSAGES || w->bytes + len > WRITER_MAX_BYTES;
    size_t count = w->count, bytes = w->bytes;
    pthread_mutex_unlock(&w->lock);
    if (full) {
        *why = wb__asprintf("%zu acknowledged messages (%zu bytes) already wait to be written to "
                            "the iot queue, the most the topic rule holds (%u, %u bytes)",
                            count, bytes, WRITER_MAX_MESSAGES, WRITER_MAX_BYTES);
        return false;
    }
    item *it = malloc(sizeof *it + len);
    if (!it) {
        *why = wb__strdup("out of memory");
        return false;
    }
    it->next = NULL;
    it->len = len;
    memcpy(it->body, body, len);
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    w->count++;
    w->bytes += len;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return true;
}

void bltn_writer_stop(bltn_writer *w, unsigned flush_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    w->deadline_ms = wb__now_ms() + flush_ms;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    if (w->count)
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "Error: workerbus: topic rule: %zu acknowledged messages could not "
                             "be written to the iot queue within %u ms of the stop: lost",
                             w->count, flush_ms);
    for (item *it = w->head; it;) {
        item *next = it->next;
        free(it);
        it = next;
    }
    wb_queue_close(w->q);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}
