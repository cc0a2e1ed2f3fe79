/* The broker operations table: what a backend provides (not installed).
 *
 * The core (src/broker/broker.c) checks arguments and limits, counts, logs and
 * keeps the last error; a backend translates calls for its library and
 * classifies its errors. Every operation may set *detail (heap memory, taken
 * over by the core) when it fails. */
#ifndef WB_BROKER_BACKEND_H
#define WB_BROKER_BACKEND_H

#include "workerbus/broker.h"

#define WB__BROKER_OPS_VERSION 1

/* How long the core retries a publish that a backend marked retryable. */
#define WB__PUBLISH_RETRY_MS 10000u

/* capability bits */
#define WB__BROKER_CAP_QOS1               (1u << 0)
#define WB__BROKER_CAP_SUBSCRIBE          (1u << 1)
#define WB__BROKER_CAP_PERSISTENT_SESSION (1u << 2)

typedef struct wb__broker_core wb__broker_core;

/* The contract of each operation: the thread that calls it, whether it
 * blocks, the codes it returns and who owns what. Common to all:
 * - priv is the backend's state, allocated (zeroed, priv_size bytes) and
 *   freed by the core; the backend frees what it put in it in close().
 * - *detail, when an operation fails, is a heap string the core takes over
 *   (it may stay NULL); on success it is left alone.
 * - A failure worth retrying (5xx, throttling, no answer) is returned as
 *   wb__retryable(code); only publish is ever retried, by the core.
 * - The core has checked every argument and limit before a call: topics
 *   are valid, qos is 0 or 1 and within caps, payloads within max_payload.
 * - "any thread" includes the backend's own callback thread unless the
 *   core refuses the call there (wb_broker_subscribe, unsubscribe, flush
 *   and disconnect return WB_ERR_STATE on it, using in_callback). */
typedef struct wb__broker_ops {
    unsigned version; /* WB__BROKER_OPS_VERSION */
    const char *name; /* matches wb_broker_type_name() */
    unsigned caps;
    size_t priv_size;     /* the core allocates (zeroed) and frees this much */
    size_t max_payload;   /* bytes; the core refuses more with WB_ERR_TOO_LARGE */
    size_t max_topic;     /* bytes */
    unsigned max_slashes; /* in a topic; 0: no limit */
    /* without subscribe: why, and what to do instead (NULL: a plain refusal) */
    const char *why_no_subscribe;

    /* A backend with one table per transport sets only version, name and
     * this: the core calls it once in wb_broker_open() (the caller's thread,
     * never blocks) and uses the table it returns, which must not be NULL
     * and has no variant of its own. */
    const struct wb__broker_ops *(*variant)(const wb_config *cfg);

    /* ---- mandatory ---- */

    /* The caller's thread (wb_broker_open()), once. Reads what it needs of
     * cfg (which outlives the handle) and opts (the core's copy, defaults
     * applied, valid until close); keeps core for wb__broker_deliver() and
     * wb__broker_connection(). Starts no connection; may start helper
     * threads or sockets of its own. Blocks only on local work.
     * Returns WB_OK, WB_ERR_INVALID_ARGUMENT (an option outside the broker's
     * limits), WB_ERR_NO_MEMORY, WB_ERR_IO or WB_ERR_BACKEND. On failure the
     * core calls close(), which must accept whatever open left behind. */
    wb_err (*open)(void *priv, const wb_config *cfg, const wb_broker_opts *opts,
                   wb__broker_core *core, char **detail);
    /* The caller's thread. Starts the connection (and the I/O thread, which
     * keeps reconnecting with backoff from then on) and blocks until it is up
     * or timeout_ms passes. Returns WB_OK; WB_ERR_TIMEOUT (not up yet: it
     * keeps trying, detail says why); WB_ERR_AUTH_REFUSED (the broker refused
     * the credentials: no retry); WB_ERR_STATE (already closing);
     * WB_ERR_NO_MEMORY; WB_ERR_BACKEND. */
    wb_err (*connect)(void *priv, unsigned timeout_ms, char **detail);
    /* Any thread, after connect. Copies topic and payload before it returns
     * (they stay the caller's). MQTT backends queue the message in their
     * outbox and return at once; a synchronous transport makes one request
     * and blocks for its answer. Returns WB_OK (accepted: QoS 1 is delivered
     * at least once); WB_ERR_BUSY (the outbox holds max_queued messages);
     * WB_ERR_CONNECTION_LOST (QoS 0 while disconnected); WB_ERR_STATE (not
     * connected yet, or closing); WB_ERR_NOT_SUPPORTED; WB_ERR_AUTH_REFUSED,
     * WB_ERR_TOO_LARGE, WB_ERR_INVALID_ARGUMENT (refused by the broker);
     * WB_ERR_NO_MEMORY; WB_ERR_BACKEND. */
    wb_err (*publish)(void *priv, const char *topic, const void *payload, size_t len, int qos,
                      char **detail);
    /* The caller's thread, not the callback thread. Waits up to timeout_ms
     * for the outbox to be acknowledged, then disconnects and stops the I/O
     * thread; no callback runs after it returns. Returns WB_OK, or
     * WB_ERR_TIMEOUT (messages were still unacknowledged: they are dropped,
     * detail says how many). Calling it twice is harmless. */
    wb_err (*disconnect)(void *priv, unsigned timeout_ms, char **detail);
    /* The caller's thread (wb_broker_close()), last; also after an open that
     * failed part way. Ends a connection still up without waiting for the
     * outbox, stops the backend's threads and frees everything it holds but
     * priv itself. Never fails. */
    void (*close)(void *priv);

    /* ---- optional: NULL means "not supported" and the core answers ---- */

    /* The caller's thread, not the callback thread, after connect. Sends a
     * SUBSCRIBE and blocks until the broker answers or timeout_ms passes; the
     * subscription is renewed after every reconnect. filter is copied.
     * Returns WB_OK; WB_ERR_AUTH_REFUSED (the broker refused it);
     * WB_ERR_TIMEOUT; WB_ERR_STATE (not connected); WB_ERR_NO_MEMORY. */
    wb_err (*subscribe)(void *priv, const char *filter, int qos, unsigned timeout_ms,
                        char **detail);
    /* As subscribe, for UNSUBSCRIBE; the filter is no longer renewed. */
    wb_err (*unsubscribe)(void *priv, const char *filter, unsigned timeout_ms, char **detail);
    /* The caller's thread, not the callback thread. Blocks until every
     * accepted QoS 1 message is acknowledged or timeout_ms passes. Returns
     * WB_OK, WB_ERR_TIMEOUT (detail: how many are left) or WB_ERR_STATE. */
    wb_err (*flush)(void *priv, unsigned timeout_ms, char **detail);
    /* Any thread; never blocks for long. Fills *out (zeroed by the core). */
    void (*stats)(void *priv, wb_broker_stats *out);
    /* Any thread; never blocks. True when the caller is on the backend's
     * callback thread (where on_message and on_connection run). */
    bool (*in_callback)(void *priv);
    /* Any thread; never blocks. Fills *out (zeroed by the core) and returns
     * true when this handle is a replica among others; false otherwise. */
    bool (*replica_stats)(void *priv, wb_broker_replica_stats *out);
} wb__broker_ops;

/* Backends call these from their I/O (callback) thread: a message that
 * arrived (msg and what it points to are valid during the call only), and a
 * change of the connection (reason: why it went down, or NULL). */
void wb__broker_deliver(wb__broker_core *core, const wb_message *msg);
void wb__broker_connection(wb__broker_core *core, bool connected, const char *reason);

/* Checks an operations table: version, name, mandatory operations. */
wb_err wb__broker_ops_check(const wb__broker_ops *ops, char **detail);
/* Tests: replaces the backend of a broker type (NULL restores it). */
wb_err wb__broker_set_backend(wb_broker_type type, const wb__broker_ops *ops);
/* The handle's backend state (its priv), for tests that look inside a
 * backend. */
void *wb__broker_priv(const wb_broker *b);

#endif
