/* What the broker conformance suite needs from a backend's environment. */
#ifndef WBT_TARGET_H
#define WBT_TARGET_H

#include <stdbool.h>

#include "workerbus/workerbus.h"

#define WBT_CPOOL "01ARZ3NDEKTSV4RRFFQ69G5FAV"

typedef struct wbt_target {
    const char *name;
    /* brings the broker up (each test runs in its own process) */
    void (*setup)(void);
    void (*teardown)(void);
    const wb_config *(*config)(void);
    /* a new, unconnected worker of pool WBT_CPOOL */
    wb_worker *(*worker)(const char *worker_ulid, wb_message_fn fn, void *ctx);
    /* SIGKILLs the broker process and waits until it is gone; false if the
     * target cannot */
    bool (*kill_broker)(void);
    /* waits until the broker is back */
    bool (*broker_ready)(unsigned timeout_ms);
    /* how long the broker may take to save its sessions (0: never needed) */
    unsigned save_interval_ms;
    /* a filter the server may not subscribe to */
    const char *forbidden_filter;
    /* publishes per second the backend lets through on one connection (a
     * limit of the real service that the backend keeps by queueing); 0: none.
     * Volumes and waits of the suite scale with it. */
    unsigned publish_rate;
} wbt_target;

extern const wbt_target wbt_target_impl;

#endif
