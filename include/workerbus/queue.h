/**
 * @file queue.h
 * The message-queue interface: the eight logical queues of config.h, with
 * SQS semantics whatever the backend (SQS or PostgreSQL).
 *
 * Semantics: at-least-once delivery; a received message is invisible for its
 * visibility timeout and comes back if not deleted in time; each receive
 * counts, and after the maximum receive count (3 by default) a message goes
 * to `dlq` (`dlq.fifo` for FIFO queues); FIFO queues keep order within a
 * message group and drop a message whose deduplication id was seen in the
 * last 5 minutes.
 *
 * Limits are checked here, before anything is sent, with an error naming the
 * limit: bodies of 1 byte to 256 KiB (raise up to 1 MiB with
 * wb_queue_opts.max_body_bytes) in the characters SQS allows (#x9, #xA, #xD,
 * #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF, as UTF-8); batches of 1-10
 * entries and 256 KiB; delays of 0-900 s (none per message on FIFO queues);
 * receives of 1-10 messages, long polls of 0-20 s, visibility 0-43200 s;
 * message group ids on FIFO queues only (required there), 1-128 printable
 * ASCII characters; deduplication ids likewise (a FIFO message without one
 * is deduplicated by the SHA-256 of its body).
 *
 * Threading: every call may be made from any number of threads at once on
 * one handle, except wb_queue_close(). Ownership: bodies are copied; what
 * wb_queue_receive() returns belongs to the caller (wb_queue_messages_free()).
 *
 * Backends: PostgreSQL (backends/postgres) and SQS (backends/sqs).
 */
#ifndef WORKERBUS_QUEUE_H
#define WORKERBUS_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** SQS's default and largest body sizes, and its batch and time limits. */
#define WB_QUEUE_BODY_DEFAULT_MAX (256u * 1024u)
#define WB_QUEUE_BODY_LIMIT       (1024u * 1024u)
#define WB_QUEUE_BATCH_MAX        10u
#define WB_QUEUE_DELAY_MAX_S      900u
#define WB_QUEUE_WAIT_MAX_S       20u
#define WB_QUEUE_VISIBILITY_MAX_S 43200u
#define WB_QUEUE_ID_MAX           128u

typedef struct wb_queue wb_queue;

/** Options of wb_queue_open(). Initialize with ::WB_QUEUE_OPTS_INIT. */
typedef struct wb_queue_opts {
    unsigned int version;           /**< ::WB_QUEUE_OPTS_VERSION */
    size_t max_body_bytes;          /**< 0: 256 KiB; at most 1 MiB */
    unsigned int max_receive_count; /**< receives before the dead-letter queue; 0: 3 */
    /** How long one operation keeps retrying transient failures (a lost
     *  connection, a timeout, throttling, a server error) before it fails,
     *  with backoff and jitter (50 ms doubling to 2 s), the same for every
     *  backend; 0: ::WB_QUEUE_RETRY_DEFAULT_MS; ::WB_QUEUE_NO_RETRY: one
     *  attempt that never sleeps (a pooled PostgreSQL connection found
     *  broken is replaced at once, as part of that attempt; on PostgreSQL
     *  the attempt, connect included, gives up after 3 s without an answer,
     *  closing its connection). Opening makes one attempt whatever this
     *  says. Version 2. */
    unsigned int retry_limit_ms;
    /** PostgreSQL: a long poll woken by a new message waits up to this many
     *  ms more (less when its batch fills first) before it claims, so that
     *  at a steady load one claim and one delete serve several messages:
     *  fewer transactions per message, for up to this much latency. Only a
     *  poll that found the queue drained waits; a backlog is claimed at once.
     *  It also spaces the handle's claims of a queue by this much while
     *  messages come that often and fewer than a batch wait.
     *  0 (the default): no wait; at most ::WB_QUEUE_LINGER_MAX_MS. Other
     *  backends ignore it. Version 3. */
    unsigned int receive_linger_ms;
} wb_queue_opts;

/** The largest wb_queue_opts.receive_linger_ms. */
#define WB_QUEUE_LINGER_MAX_MS 1000u

/** The receive linger `workerbus serve` drains with by default. */
#define WB_QUEUE_LINGER_DEFAULT_MS 5u

/** wb_queue_opts.retry_limit_ms when it is 0: 60 s. */
#define WB_QUEUE_RETRY_DEFAULT_MS 60000u

/** wb_queue_opts.retry_limit_ms for callers that must never wait on a retry
 *  (e.g. a broker's only thread): a transient failure is returned at once. */
#define WB_QUEUE_NO_RETRY 0xFFFFFFFFu

#define WB_QUEUE_OPTS_VERSION 3
/* clang-format off */
#define WB_QUEUE_OPTS_INIT {WB_QUEUE_OPTS_VERSION, 0, 0, 0, 0}
/* clang-format on */

/** One message to send. */
typedef struct wb_queue_entry {
    const void *body;
    size_t body_len;
    unsigned int delay_s; /**< 0-900; 0 on FIFO queues */
    const char *group_id; /**< FIFO queues: required; standard queues: NULL */
    const char *dedup_id; /**< FIFO queues: optional; standard queues: NULL */
} wb_queue_entry;

/** A received message; every field belongs to the array it came in. */
typedef struct wb_queue_message {
    char *id;
    char *receipt; /**< for delete and change-visibility */
    void *body;    /**< NUL-terminated too, for convenience */
    size_t body_len;
    unsigned int receive_count;
    uint64_t sent_ms; /**< when it was first sent, Unix milliseconds */
    char *group_id;   /**< FIFO queues, else NULL */
} wb_queue_message;

/** Messages waiting in a queue. */
typedef struct wb_queue_counts {
    uint64_t visible;   /**< can be received now */
    uint64_t in_flight; /**< received and not deleted, invisible */
    uint64_t delayed;   /**< sent with a delay not yet over */
} wb_queue_counts;

/**
 * Opens the configured message queue.
 * @param opts NULL: the defaults of ::WB_QUEUE_OPTS_INIT.
 * @return ::WB_OK; ::WB_ERR_CONFIG (postgres with iotcore: IoT Core can
 *         deliver worker messages only to SQS); ::WB_ERR_INVALID_ARGUMENT
 *         (opts); ::WB_ERR_NOT_BUILT_IN; a backend error.
 */
WB_API wb_err wb_queue_open(const wb_config *config, const wb_queue_opts *opts, wb_queue **out);

/** Sends one message. id, if not NULL, receives its id (at most
 *  WB_QUEUE_ID_MAX + 1 bytes with the NUL).
 *
 *  Blocking, for every operation of a handle: one round trip to PostgreSQL
 *  or SQS, and, after a failure worth retrying, more with backoff for up to
 *  wb_queue_opts.retry_limit_ms (60 s by default). Any number of threads may
 *  call them on one handle at once. */
WB_API wb_err wb_queue_send(wb_queue *queue, wb_logical_queue lq, const wb_queue_entry *entry,
                            char id[WB_QUEUE_ID_MAX + 1]);

/** Sends 1-10 messages in one request; results[i] says how entry i fared.
 *  @return ::WB_OK when every entry was sent, else the first failure. */
WB_API wb_err wb_queue_send_batch(wb_queue *queue, wb_logical_queue lq,
                                  const wb_queue_entry *entries, size_t n, wb_err *results);

/**
 * Receives up to max (1-10) messages, waiting up to wait_s (0-20) for the
 * first (a long poll: it blocks that long on an empty queue, unless a drain
 * on the same handle stops); visibility_s is the visibility timeout
 * (0-43200), or -1 for the queue's own. *out is NULL and *n 0 when none
 * came.
 */
WB_API wb_err wb_queue_receive(wb_queue *queue, wb_logical_queue lq, unsigned int max,
                               unsigned int wait_s, int visibility_s, wb_queue_message **out,
                               size_t *n);

/** Frees what wb_queue_receive() returned; NULL is ignored. */
WB_API void wb_queue_messages_free(wb_queue_message *msgs, size_t n);

WB_API wb_err wb_queue_delete(wb_queue *queue, wb_logical_queue lq, const char *receipt);
/** Deletes 1-10 messages in one request; results as in wb_queue_send_batch(). */
WB_API wb_err wb_queue_delete_batch(wb_queue *queue, wb_logical_queue lq,
                                    const char *const *receipts, size_t n, wb_err *results);
WB_API wb_err wb_queue_change_visibility(wb_queue *queue, wb_logical_queue lq, const char *receipt,
                                         unsigned int visibility_s);
WB_API wb_err wb_queue_counts_get(wb_queue *queue, wb_logical_queue lq, wb_queue_counts *out);
/** As wb_broker_last_error(). */
WB_API const char *wb_queue_last_error(const wb_queue *queue);
/** The backend's name: "sqs" or "postgres". */
WB_API const char *wb_queue_backend(const wb_queue *queue);
/** Closes the handle's connections and frees it; no call may be running on
 *  it. NULL is ignored. */
WB_API void wb_queue_close(wb_queue *queue);

#ifdef __cplusplus
}
#endif
#endif
