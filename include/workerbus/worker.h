/**
 * @file worker.h
 * The worker side: a client that connects to the broker as one worker of a
 * pool, receives its readonly messages and publishes on its writeonly
 * topic. Used by tests, the harness and `workerbus worker`; real workers may
 * be written in anything that speaks MQTT.
 *
 * Threading and ownership as in broker.h: publish, flush and stats from any
 * thread; callbacks on the client's I/O thread; payloads copied.
 */
#ifndef WORKERBUS_WORKER_H
#define WORKERBUS_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "broker.h"
#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wb_worker wb_worker;

/** Options of wb_worker_open(). Initialize with ::WB_WORKER_OPTS_INIT. */
typedef struct wb_worker_opts {
    unsigned int version; /**< ::WB_WORKER_OPTS_VERSION */
    /** The broker endpoint: "host:port" (plain) or "tls://host:port". */
    const char *endpoint;
    /** Dial this "host:port" instead of the endpoint's (tests, the harness);
     *  TLS then verifies the broker's certificate chain but not its name. */
    const char *connect_to;
    const char *ns;                             /**< topic namespace; NULL: "spacelift" */
    const char *pool;                           /**< the pool's ULID */
    const char *worker;                         /**< this worker's ULID (its MQTT client id) */
    const char *ca_file, *cert_file, *key_file; /**< TLS: the CA, the pool's certificate and key */
    const char *token; /**< plain listeners: the pool's token (wb_pki_token()) */
    wb_message_fn on_message;
    void *on_message_ctx;
    wb_connection_fn on_connection;
    void *on_connection_ctx;
    unsigned int keepalive_s; /**< 0: 60 */
    /** Start with a clean session instead of the persistent one. */
    bool clean_session;
    size_t max_queued; /**< 0: 100000 */
} wb_worker_opts;

#define WB_WORKER_OPTS_VERSION 1
/* clang-format off */
#define WB_WORKER_OPTS_INIT {WB_WORKER_OPTS_VERSION, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                             NULL, NULL, NULL, NULL, NULL, NULL, 0, false, 0}
/* clang-format on */

/**
 * Checks the options and makes the client; nothing is sent yet.
 * @param opts   required (the worker's identity is in it); NULL gives
 *               ::WB_ERR_INVALID_ARGUMENT.
 * @param detail on failure, what is wrong (wb_free()); may be NULL.
 * @return ::WB_OK, ::WB_ERR_INVALID_ARGUMENT, ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_worker_open(const wb_worker_opts *opts, wb_worker **out, char **detail);
/** Connects and subscribes (QoS 1) to the worker's readonly topic.
 *  @return as wb_broker_connect(), or the subscription's refusal. */
WB_API wb_err wb_worker_connect(wb_worker *worker, unsigned int timeout_ms);
/** Publishes a copy of payload to the worker's writeonly topic; as wb_broker_publish(). */
WB_API wb_err wb_worker_publish(wb_worker *worker, const void *payload, size_t len, int qos);
/** Publishes to any topic (tests use it to show what the broker refuses). */
WB_API wb_err wb_worker_publish_topic(wb_worker *worker, const char *topic, const void *payload,
                                      size_t len, int qos);
/** Subscribes to another filter (tests use it to show what the broker refuses). */
WB_API wb_err wb_worker_subscribe(wb_worker *worker, const char *filter, int qos,
                                  unsigned int timeout_ms);
WB_API wb_err wb_worker_flush(wb_worker *worker, unsigned int timeout_ms);
WB_API wb_err wb_worker_disconnect(wb_worker *worker, unsigned int timeout_ms);
WB_API void wb_worker_stats_get(wb_worker *worker, wb_broker_stats *out);
/** As wb_broker_last_error(). */
WB_API const char *wb_worker_last_error(const wb_worker *worker);
/** The worker's readonly and writeonly topics. */
WB_API const char *wb_worker_readonly_topic(const wb_worker *worker);
WB_API const char *wb_worker_writeonly_topic(const wb_worker *worker);
WB_API void wb_worker_close(wb_worker *worker);

#ifdef __cplusplus
}
#endif
#endif
