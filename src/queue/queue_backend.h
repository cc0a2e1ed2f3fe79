/* The message-queue operations table (not installed). The core
 * (src/queue/queue.c) checks every argument against SQS's limits, fills a
 * FIFO entry's deduplication id and owns the retries; a backend translates
 * and classifies its errors. */
#ifndef WB_QUEUE_BACKEND_H
#define WB_QUEUE_BACKEND_H

#include "workerbus/queue.h"

#define WB__QUEUE_OPS_VERSION 1

/* The contract of each operation: the thread that calls it, whether it
 * blocks, the codes it returns and who owns what. Common to all:
 * - Every operation may be called from any thread, concurrently with the
 *   others on the same handle (a backend keeps a pool of connections or
 *   handles), except open and close, which bracket the handle's life.
 * - priv is the backend's state, allocated (zeroed, priv_size bytes) and
 *   freed by the core.
 * - The core has checked every argument against SQS's limits (sizes,
 *   characters, batch sizes, visibility, FIFO group and deduplication ids,
 *   which it fills in) before a call.
 * - One attempt: an operation never sleeps to retry or loops over
 *   attempts. A failure worth retrying (a lost or refused connection, a
 *   timeout, throttling, a server error) is returned as wb__retryable(code),
 *   and the core retries it for up to wb_queue_opts.retry_limit_ms. A
 *   pooled connection found broken may be replaced once within an attempt.
 * - *detail, when an operation fails, is a heap string the core takes over
 *   (it may stay NULL); per-entry results are plain codes. */
typedef struct wb__queue_ops {
    unsigned version; /* WB__QUEUE_OPS_VERSION */
    const char *name; /* matches wb_queue_type_name() */
    size_t priv_size;

    /* ---- all mandatory ---- */

    /* The caller's thread (wb_queue_open()), once. cfg outlives the handle;
     * opts is the core's copy, defaults applied. May connect (and migrate a
     * schema); blocks for that. Returns WB_OK, WB_ERR_CONFIG (a setting it
     * needs is missing), WB_ERR_CONNECTION_LOST, WB_ERR_AUTH_REFUSED,
     * WB_ERR_BACKEND, WB_ERR_NO_MEMORY. Opening makes one attempt whatever
     * the retry limit. On failure close() is not called: open frees what it
     * made. */
    wb_err (*open)(void *priv, const wb_config *cfg, const wb_queue_opts *opts, char **detail);
    /* Any thread; blocks for one round trip. Stores n (1-10) entries (the
     * caller's, read only) and writes each one's message id into ids[i] and
     * its result into results[i]. Returns WB_OK when the request was made
     * (some entries may still have failed: see results), or the code of a
     * failure of the whole batch: WB_ERR_CONNECTION_LOST, WB_ERR_BUSY,
     * WB_ERR_NOT_FOUND (no such queue), WB_ERR_AUTH_REFUSED, WB_ERR_TOO_LARGE,
     * WB_ERR_INVALID_ARGUMENT, WB_ERR_BACKEND, WB_ERR_NO_MEMORY. A send
     * retried after a failure may store a message twice (at least once). */
    wb_err (*send_batch)(void *priv, wb_logical_queue lq, const wb_queue_entry *entries, size_t n,
                         char (*ids)[WB_QUEUE_ID_MAX + 1], wb_err *results, char **detail);
    /* Any thread; blocks up to wait_s seconds (a long poll) for a message,
     * then one round trip. Receives up to max messages, making them invisible
     * for visibility_s (-1: the queue's default); *out (heap, freed by the
     * caller with wb_queue_messages_free()) and *n. A message received
     * max_receive_count times goes to the queue's dead-letter queue instead.
     * Returns WB_OK (also with *n == 0 when the wait ended empty), or a
     * failure code as send_batch's. */
    wb_err (*receive)(void *priv, wb_logical_queue lq, unsigned max, unsigned wait_s,
                      int visibility_s, wb_queue_message **out, size_t *n, char **detail);
    /* Any thread; one round trip. Deletes n received messages by receipt
     * (the caller's); results[i] is WB_OK, or WB_ERR_NOT_FOUND for a receipt
     * that no longer holds the message. Returns as send_batch. */
    wb_err (*delete_batch)(void *priv, wb_logical_queue lq, const char *const *receipts, size_t n,
                           wb_err *results, char **detail);
    /* Any thread; one round trip. Makes a received message visible again
     * after visibility_s. Returns WB_OK, WB_ERR_NOT_FOUND (the receipt no
     * longer holds it), or a failure code as send_batch's. */
    wb_err (*change_visibility)(void *priv, wb_logical_queue lq, const char *receipt,
                                unsigned visibility_s, char **detail);
    /* Any thread; one round trip. Fills *out (zeroed by the core): visible,
     * in flight and delayed messages (SQS's are approximate). Returns as
     * change_visibility. */
    wb_err (*counts)(void *priv, wb_logical_queue lq, wb_queue_counts *out, char **detail);
    /* The caller's thread, last, with no operation running. Frees what the
     * backend holds but priv itself; closes its connections. Never fails. */
    void (*close)(void *priv);

    /* ---- optional ---- */

    /* Any thread; never blocks. Every receive of this handle waiting in a
     * long poll that began before the call ends within about a second,
     * answering WB_OK with no message. NULL: long polls run their course. */
    void (*wake)(void *priv);
    /* As delete_batch of nr receipts (nr >= 1) followed by receive, with
     * the results of both, for a consumer that deletes what it handled and
     * receives again at once (the drain): the backend may delete in the
     * same transaction as its next claim, and may hold the deletes while the
     * long poll waits, for a short time (a message's visibility timeout is
     * far longer). *results are the deletes' (WB_OK also for a receipt
     * that no longer holds its message). A failure fails both: the core
     * retries both, deleting again being harmless. NULL: the core calls
     * delete_batch, then receive. */
    wb_err (*delete_receive)(void *priv, wb_logical_queue lq, const char *const *receipts,
                             size_t nr, wb_err *results, unsigned max, unsigned wait_s,
                             int visibility_s, wb_queue_message **out, size_t *n, char **detail);
} wb__queue_ops;

/* wb_queue_delete_batch() with every result set: a receipt the batch's
 * failure left untouched gets the failure's code. */
wb_err wb__queue_delete_each(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                             size_t n, wb_err *results);

/* The handle's backend state (its priv), for tests that look inside a
 * backend. */
void *wb__queue_priv(const wb_queue *q);

/* wb_queue_delete_batch() of the receipts, then wb_queue_receive(), in one
 * call that a backend may serve with fewer transactions (delete_receive
 * above). The same checks, codes and retries as those two; on a failure
 * *out is empty and results[] hold the deletes' codes (the failure's when
 * they did not happen). */
wb_err wb__queue_delete_receive(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                                size_t nr, wb_err *results, unsigned max, unsigned wait_s,
                                int visibility_s, wb_queue_message **out, size_t *n);

/* Ends the long polls of q now waiting (wake above); the drain calls it when
 * it stops. Any thread; never blocks. */
void wb__queue_wake(wb_queue *q);

wb_err wb__queue_ops_check(const wb__queue_ops *ops, char **detail);
/* Tests: replaces the backend of a queue type (NULL restores it). */
wb_err wb__queue_set_backend(wb_queue_type type, const wb__queue_ops *ops);

#endif
