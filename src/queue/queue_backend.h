/* The message-queue operations table (not installed). The core
 * (src/queue.c) checks every argument against SQS's limits and fills a FIFO
 * entry's deduplication id before a backend sees it; a backend translates
 * and classifies its errors. Operations may set *detail (heap, taken over). */
#ifndef WB_QUEUE_BACKEND_H
#define WB_QUEUE_BACKEND_H

#include "workerbus/queue.h"

#define WB__QUEUE_OPS_VERSION 1

typedef struct wb__queue_ops {
    unsigned version;
    const char *name; /* matches wb_queue_type_name() */
    size_t priv_size;

    /* all mandatory */
    wb_err (*open)(void *priv, const wb_config *cfg, const wb_queue_opts *opts, char **detail);
    wb_err (*send_batch)(void *priv, wb_logical_queue lq, const wb_queue_entry *entries, size_t n,
                         char (*ids)[WB_QUEUE_ID_MAX + 1], wb_err *results, char **detail);
    wb_err (*receive)(void *priv, wb_logical_queue lq, unsigned max, unsigned wait_s,
                      int visibility_s, wb_queue_message **out, size_t *n, char **detail);
    wb_err (*delete_batch)(void *priv, wb_logical_queue lq, const char *const *receipts, size_t n,
                           wb_err *results, char **detail);
    wb_err (*change_visibility)(void *priv, wb_logical_queue lq, const char *receipt,
                                unsigned visibility_s, char **detail);
    wb_err (*counts)(void *priv, wb_logical_queue lq, wb_queue_counts *out, char **detail);
    void (*close)(void *priv);
} wb__queue_ops;

wb_err wb__queue_ops_check(const wb__queue_ops *ops, char **detail);
/* Tests: replaces the backend of a queue type (NULL restores it). */
wb_err wb__queue_set_backend(wb_queue_type type, const wb__queue_ops *ops);

#endif
