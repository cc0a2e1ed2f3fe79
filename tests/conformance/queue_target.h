/* What the queue conformance suite needs from a backend's environment. The
 * servers run for the whole suite (tests/conformance/with-services.sh starts
 * them and exports their environment); tests run one at a time and purge
 * the queues first. */
#ifndef WBT_QUEUE_TARGET_H
#define WBT_QUEUE_TARGET_H

#include <stdbool.h>

#include "workerbus/workerbus.h"

typedef struct wbt_qtarget {
    const char *name; /* "postgres", "sqs" */
    /* a configuration for this backend, from the services' environment;
     * over: extra "KEY=VALUE" overrides (NULL-terminated, may be NULL) */
    wb_config *(*config)(const char *const *over);
    /* empties every logical queue */
    void (*purge)(void);
    /* restarts the server in the middle of a run; NULL when not possible */
    bool (*restart)(void);
    /* stops the server (down) or starts it again on the same address */
    bool (*outage)(bool down);
    /* the aws CLI can reach this backend (SQS) */
    bool aws_cli;
    /* Where the server behind the target departs from SQS's documented
     * behaviour (a stand-in's bug): the test of that behaviour is skipped
     * with this reason, never counted as passed. NULL: conforming. */
    const char *deviates_long_poll;      /* returns as soon as one message is there */
    const char *deviates_fifo_in_flight; /* a group waits while a message is in flight */
    const char *deviates_visibility_0;   /* visibility 0 releases at once */
} wbt_qtarget;

extern const wbt_qtarget wbt_qtarget_impl;

/* The services' environment variable, or a failed assertion. */
const char *wbt_qenv(const char *name);
/* A drain of q with 2 threads whose long polls last 20 s, handling with fn. */
wb_drain *wbt_drain_long_polls(wb_queue *queue, wb_worker_message_fn fn, void *ctx);
/* `scripts/services CMD WHAT` on the suite's services; true when it exits 0. */
bool wbt_services(const char *cmd, const char *what);

#endif
