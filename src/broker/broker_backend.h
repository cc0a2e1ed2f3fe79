/* The broker operations table: what a backend provides (not installed).
 *
 * The core (src/broker.c) checks arguments and limits, counts, logs and
 * keeps the last error; a backend translates calls for its library and
 * classifies its errors. Every operation may set *detail (heap memory, taken
 * over by the core) when it fails. */
#ifndef WB_BROKER_BACKEND_H
#define WB_BROKER_BACKEND_H

#include "workerbus/broker.h"

#define WB__BROKER_OPS_VERSION 1

/* capability bits */
#define WB__BROKER_CAP_QOS1               (1u << 0)
#define WB__BROKER_CAP_SUBSCRIBE          (1u << 1)
#define WB__BROKER_CAP_PERSISTENT_SESSION (1u << 2)

typedef struct wb__broker_core wb__broker_core;

typedef struct wb__broker_ops {
    unsigned version; /* WB__BROKER_OPS_VERSION */
    const char *name; /* matches wb_broker_type_name() */
    unsigned caps;
    size_t priv_size;     /* the core allocates (zeroed) and frees this much */
    size_t max_payload;   /* bytes; the core refuses more with WB_ERR_TOO_LARGE */
    size_t max_topic;     /* bytes */
    unsigned max_slashes; /* in a topic; 0: no limit */

    /* mandatory */
    wb_err (*open)(void *priv, const wb_config *cfg, const wb_broker_opts *opts,
                   wb__broker_core *core, char **detail);
    wb_err (*connect)(void *priv, unsigned timeout_ms, char **detail);
    wb_err (*publish)(void *priv, const char *topic, const void *payload, size_t len, int qos,
                      char **detail);
    wb_err (*disconnect)(void *priv, unsigned timeout_ms, char **detail);
    void (*close)(void *priv);

    /* optional: NULL means "not supported" and the core answers */
    wb_err (*subscribe)(void *priv, const char *filter, int qos, unsigned timeout_ms,
                        char **detail);
    wb_err (*unsubscribe)(void *priv, const char *filter, unsigned timeout_ms, char **detail);
    wb_err (*flush)(void *priv, unsigned timeout_ms, char **detail);
    void (*stats)(void *priv, wb_broker_stats *out);
    /* true when the caller is on the backend's callback thread */
    bool (*in_callback)(void *priv);
} wb__broker_ops;

/* Backends call these from their I/O thread. */
void wb__broker_deliver(wb__broker_core *core, const wb_message *msg);
void wb__broker_connection(wb__broker_core *core, bool connected, const char *reason);

/* Checks an operations table: version, name, mandatory operations. */
wb_err wb__broker_ops_check(const wb__broker_ops *ops, char **detail);
/* Tests: replaces the backend of a broker type (NULL restores it). */
wb_err wb__broker_set_backend(wb_broker_type type, const wb__broker_ops *ops);

#endif
