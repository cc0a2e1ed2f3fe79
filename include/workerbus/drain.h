/**
 * @file drain.h
 * The server's side of worker messages: drains the iot queue through a
 * handler.
 *
 * Threads (opts.threads) long-poll the iot queue. Each message is decoded
 * (envelope.h) and handed to the handler. While the handler runs, the
 * message's visibility is extended, so a slow handler does not see its
 * message delivered twice. When the handler returns ::WB_OK the message is
 * deleted. When it fails, the message stays; it comes back after its
 * visibility timeout, and after the queue's maximum receive count (3) the
 * queue moves it to the dead-letter queue (dlq). A body that is not an
 * envelope is never handed to the handler and takes that same road to the
 * dlq, where it can be looked at.
 *
 * Delivery is at least once: a handler may see a message again (after a
 * crash, or a PUBACK lost on the worker's side). Use the envelope's fields
 * and the worker's own identifiers to make handling idempotent.
 */
#ifndef WORKERBUS_DRAIN_H
#define WORKERBUS_DRAIN_H

#include <stdint.h>

#include "common.h"
#include "envelope.h"
#include "error.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wb_drain wb_drain;

/** One worker message, as the handler sees it. Valid during the call. */
typedef struct wb_worker_message {
    const wb_envelope *envelope; /**< pool, worker, timestamp, payload */
    const char *id;              /**< the queue message's id */
    unsigned int receive_count;  /**< 1 the first time */
} wb_worker_message;

/** Handles one message: ::WB_OK deletes it; anything else leaves it for a
 *  later attempt (the dead-letter queue after the last). Called on one of
 *  the drain's threads; several at once when opts.threads > 1. */
typedef wb_err (*wb_worker_message_fn)(void *ctx, const wb_worker_message *msg);

/** Options of wb_drain_start(). Initialize with ::WB_DRAIN_OPTS_INIT. */
typedef struct wb_drain_opts {
    unsigned int version;      /**< ::WB_DRAIN_OPTS_VERSION */
    unsigned int threads;      /**< receiving threads; 0: 2; at most 64 */
    unsigned int visibility_s; /**< visibility of a message while handled; 0: 45 */
    unsigned int wait_s;       /**< long poll; 0: 20 */
    /** Receive count after which a failed message goes to the dlq (the
     *  queue's, for the redriven counter); 0: 3. */
    unsigned int max_receive_count;
} wb_drain_opts;

#define WB_DRAIN_OPTS_VERSION 1
/* clang-format off */
#define WB_DRAIN_OPTS_INIT {WB_DRAIN_OPTS_VERSION, 0, 0, 0, 0}
/* clang-format on */

/** Counters of a drain. */
typedef struct wb_drain_stats {
    uint64_t received;     /**< messages taken from the queue */
    uint64_t delivered;    /**< handled with ::WB_OK and deleted */
    uint64_t failed;       /**< handler failures and bodies that are not envelopes */
    uint64_t redriven;     /**< failures on the last attempt: on their way to the dlq */
    uint64_t extended;     /**< visibility extensions while a handler ran */
    uint64_t queue_errors; /**< receive/delete calls that failed (retried) */
} wb_drain_stats;

/**
 * Starts draining the iot queue of q (which must outlive the drain).
 * @param opts NULL: the defaults of ::WB_DRAIN_OPTS_INIT.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT; ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_drain_start(wb_queue *q, const wb_drain_opts *opts, wb_worker_message_fn fn,
                             void *ctx, wb_drain **out);

/** The counters so far; thread-safe. */
WB_API void wb_drain_stats_get(wb_drain *d, wb_drain_stats *out);

/** Stops receiving, and waits for running handlers to return (and their
 *  messages to be deleted or left). Long polls under way are ended, not
 *  waited for: without a handler running, it returns within about a second
 *  (PostgreSQL: at once; SQS: when curl next checks, about once a second),
 *  whatever wait_s. So are the retries of a receive during an outage of
 *  the queue (wb_queue_opts.retry_limit_ms), within 50 ms, and
 *  (PostgreSQL) a connect or a receive's statement that the database does
 *  not answer (that connection is closed). Other long polls on the same
 *  queue handle that began before the call may end early too, empty. The
 *  counters stay readable. NULL is ignored. */
WB_API void wb_drain_stop(wb_drain *d);

/** Stops the drain if it runs, and frees it. NULL is ignored. */
WB_API void wb_drain_free(wb_drain *d);

#ifdef __cplusplus
}
#endif
#endif
