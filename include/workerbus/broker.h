/**
 * @file broker.h
 * The broker interface: the server's MQTT connection, whatever the broker
 * type. The backend (builtin or iotcore) is chosen at run time from the
 * configuration.
 *
 * Threading: after wb_broker_connect() returns, wb_broker_publish(),
 * wb_broker_publish_to_worker(), wb_broker_subscribe(),
 * wb_broker_unsubscribe(), wb_broker_flush(), wb_broker_stats() and
 * wb_broker_last_error() may be called from any number of threads at once.
 * wb_broker_connect(), wb_broker_disconnect() and wb_broker_close() must not
 * run concurrently with any other call on the same handle. Callbacks run on
 * the backend's I/O thread, one at a time; inside them you may publish, but
 * subscribe, unsubscribe, flush, disconnect and close return ::WB_ERR_STATE.
 *
 * Delivery: QoS 0 and 1 (QoS 2 is ::WB_ERR_NOT_SUPPORTED). A QoS 1 message
 * accepted by publish is kept, across reconnects, until the broker
 * acknowledges it: at least once, as long as the process lives. The payload
 * is always copied: the caller keeps ownership of what it passed, whatever
 * the return code.
 */
#ifndef WORKERBUS_BROKER_H
#define WORKERBUS_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A connection to the configured broker. */
typedef struct wb_broker wb_broker;

/** A message received on a subscription. Valid only during the callback. */
typedef struct wb_message {
    const char *topic;
    const void *payload;
    size_t payload_len;
    int qos;
    bool retained;
} wb_message;

/** Called on the I/O thread for each message received. */
typedef void (*wb_message_fn)(void *ctx, const wb_message *msg);
/** Called on the I/O thread when the connection goes up or down (reason NULL when up). */
typedef void (*wb_connection_fn)(void *ctx, bool connected, const char *reason);

/** Options of wb_broker_open(). Initialize with ::WB_BROKER_OPTS_INIT. */
typedef struct wb_broker_opts {
    unsigned int version; /**< ::WB_BROKER_OPTS_VERSION */
    /** MQTT client id; it names the persistent session. NULL:
     *  "workerbus-server". Two servers on one broker need distinct ids (a
     *  second connection with the same id evicts the first). */
    const char *client_id;
    wb_message_fn on_message;
    void *on_message_ctx;
    wb_connection_fn on_connection;
    void *on_connection_ctx;
    /** QoS 1 messages waiting for the broker, at most; then publish answers
     *  ::WB_ERR_BUSY. 0: 100000. */
    size_t max_queued;
    unsigned int keepalive_s;      /**< 0: 60 */
    unsigned int reconnect_min_ms; /**< first reconnect delay; 0: 100 */
    unsigned int reconnect_max_ms; /**< longest reconnect delay; 0: 30000 */
} wb_broker_opts;

#define WB_BROKER_OPTS_VERSION 1
/* clang-format off */
#define WB_BROKER_OPTS_INIT {WB_BROKER_OPTS_VERSION, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 0}
/* clang-format on */

/** Counters of a handle. */
typedef struct wb_broker_stats {
    uint64_t published;    /**< messages accepted by publish */
    uint64_t acknowledged; /**< QoS 1 acknowledged by the broker, QoS 0 sent */
    uint64_t received;     /**< messages delivered to on_message */
    uint64_t reconnects;   /**< connections made again after a loss */
    uint64_t refused;      /**< publish calls refused (bad argument, limit, state) */
    size_t queued;         /**< accepted and not yet acknowledged */
    bool connected;
} wb_broker_stats;

/**
 * Opens a handle for the configured broker type. Nothing is sent yet.
 * @param config must outlive the handle.
 * @param opts   NULL: the defaults of ::WB_BROKER_OPTS_INIT.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (NULL or bad opts);
 *         ::WB_ERR_NOT_BUILT_IN (that backend was left out of this build);
 *         ::WB_ERR_NO_MEMORY; a backend error (see wb_broker_last_error()
 *         with a NULL handle).
 */
WB_API wb_err wb_broker_open(const wb_config *config, const wb_broker_opts *opts, wb_broker **out);

/**
 * Connects, and keeps the connection up from then on (reconnecting with
 * exponential backoff and jitter, subscriptions renewed).
 * Blocks until the first connection is up, refused, or timeout_ms passes.
 * @return ::WB_OK; ::WB_ERR_AUTH_REFUSED (credentials refused: not retried);
 *         ::WB_ERR_TIMEOUT (no connection within timeout_ms); ::WB_ERR_STATE
 *         (already connected).
 */
WB_API wb_err wb_broker_connect(wb_broker *broker, unsigned int timeout_ms);

/**
 * Publishes a copy of payload to topic.
 * Blocking: over MQTT (builtin, iotcore mqtts/mqtts-alpn/wss) it queues the
 * copy and returns at once; over IoT Core's HTTPS API it makes the request
 * and waits for the answer, retrying a 5xx, a 429 or no answer for up to
 * 10 s. Callable from on_message.
 * @return ::WB_OK (QoS 1: kept until acknowledged); ::WB_ERR_INVALID_ARGUMENT
 *         (empty or wildcard topic, invalid UTF-8, NULL payload with a
 *         length); ::WB_ERR_NOT_SUPPORTED (QoS other than 0 and 1);
 *         ::WB_ERR_TOO_LARGE (payload or topic over the backend's limit);
 *         ::WB_ERR_BUSY (max_queued messages are waiting);
 *         ::WB_ERR_CONNECTION_LOST (QoS 0 while disconnected);
 *         ::WB_ERR_STATE (not connected yet, or disconnected).
 */
WB_API wb_err wb_broker_publish(wb_broker *broker, const char *topic, const void *payload,
                                size_t len, int qos);

/** Publishes to `<namespace>/readonly/<pool>/<worker>`; as wb_broker_publish(),
 *  plus ::WB_ERR_INVALID_ARGUMENT for a ULID that is not valid. */
WB_API wb_err wb_broker_publish_to_worker(wb_broker *broker, const char *pool, const char *worker,
                                          const void *payload, size_t len, int qos);

/**
 * Subscribes to a topic filter; messages go to on_message. The
 * subscription is renewed after every reconnect. When connected, waits up
 * to timeout_ms for the broker's answer; when not, records it.
 * @return ::WB_OK; ::WB_ERR_AUTH_REFUSED (the broker refused it);
 *         ::WB_ERR_TIMEOUT; ::WB_ERR_INVALID_ARGUMENT;
 *         ::WB_ERR_NOT_SUPPORTED (the backend cannot subscribe).
 */
WB_API wb_err wb_broker_subscribe(wb_broker *broker, const char *filter, int qos,
                                  unsigned int timeout_ms);

/** Ends a subscription. @return as wb_broker_subscribe(). */
WB_API wb_err wb_broker_unsubscribe(wb_broker *broker, const char *filter, unsigned int timeout_ms);

/**
 * Waits until every accepted message is acknowledged; blocks up to
 * timeout_ms.
 * @return ::WB_OK, or ::WB_ERR_TIMEOUT (the messages stay queued).
 */
WB_API wb_err wb_broker_flush(wb_broker *broker, unsigned int timeout_ms);

/**
 * Flushes for up to timeout_ms, then disconnects; blocks up to timeout_ms
 * and the few milliseconds a DISCONNECT takes. Messages still queued are
 * dropped (the return code says so).
 * @return ::WB_OK, or ::WB_ERR_TIMEOUT when messages were still queued.
 */
WB_API wb_err wb_broker_disconnect(wb_broker *broker, unsigned int timeout_ms);

/** Fills the handle's counters; never blocks. */
WB_API void wb_broker_stats_get(wb_broker *broker, wb_broker_stats *out);

/**
 * What one replica of the builtin broker did (MQTT_BROKER_TYPE=builtin with
 * DATABASE_URL set: replicas coordinate through PostgreSQL; see
 * docs/replicas.md). Counted by this handle since it was opened.
 */
typedef struct wb_broker_replica_stats {
    uint64_t local;       /**< published to a worker connected to this replica */
    uint64_t routed;      /**< put in the outbox for a worker of another replica */
    uint64_t pending;     /**< put in the outbox for a worker connected nowhere */
    uint64_t delivered;   /**< outbox messages this replica's broker acknowledged */
    uint64_t expired;     /**< outbox messages this replica removed unsent, expired */
    uint64_t taken_over;  /**< outbox messages delivered after another replica's claim lapsed */
    uint64_t outbox_full; /**< publishes refused: the outbox was full */
    uint64_t db_failures; /**< publishes and passes that PostgreSQL failed */
    uint64_t outbox_size; /**< messages in the outbox, all workers, at the last heartbeat */
    unsigned replicas;    /**< replicas alive at the last heartbeat, this one included */
    bool registered;      /**< this replica's heartbeat reaches the database */
} wb_broker_replica_stats;

/**
 * Fills *out for a builtin broker with replicas; never blocks.
 * @return ::WB_OK; ::WB_ERR_NOT_SUPPORTED (no replicas: iotcore, or builtin
 *         without DATABASE_URL); ::WB_ERR_INVALID_ARGUMENT (NULL).
 */
WB_API wb_err wb_broker_replica_stats_get(wb_broker *broker, wb_broker_replica_stats *out);

/**
 * The detail of the last failure seen by the calling thread on this handle,
 * or else the handle's last asynchronous problem (a lost connection, say);
 * "" when there is none. With a NULL handle: the calling thread's last
 * wb_broker_open() failure. Valid until the calling thread's next workerbus
 * call.
 */
WB_API const char *wb_broker_last_error(const wb_broker *broker);

/** The backend's name: "builtin" or "iotcore". */
WB_API const char *wb_broker_backend(const wb_broker *broker);

/** Disconnects (without waiting for the outbox) if needed, stops the
 *  handle's threads and frees it; NULL is ignored. Not from on_message. */
WB_API void wb_broker_close(wb_broker *broker);

#ifdef __cplusplus
}
#endif
#endif
