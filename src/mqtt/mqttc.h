/* An MQTT 3.1.1 client on libmosquitto with its own I/O thread, a bounded
 * QoS 1 outbox, reconnects with backoff and jitter, and re-subscription.
 * Used by the builtin broker backend (the server's side) and by the worker
 * client. Not installed. */
#ifndef WB_MQTTC_H
#define WB_MQTTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workerbus/workerbus.h"

typedef struct wb__mqttc wb__mqttc;

typedef void (*wb__mqttc_message_fn)(void *ctx, const char *topic, const void *payload, size_t len,
                                     int qos, bool retained);
typedef void (*wb__mqttc_connection_fn)(void *ctx, bool connected, const char *reason);

typedef struct wb__mqttc_opts {
    const char *connect_host; /* where to connect (a connect-to override may differ ...) */
    const char *tls_name;     /* ... from the name the broker's certificate must carry;
                                 NULL: verify the chain only */
    unsigned port;
    bool tls;
    const char *cafile, *certfile, *keyfile;
    const char *username, *password; /* plain listeners */
    const char *client_id;
    bool clean_session;
    unsigned keepalive_s;
    unsigned reconnect_min_ms, reconnect_max_ms;
    size_t max_queued; /* QoS 1 messages not yet acknowledged, at most */
    wb__mqttc_message_fn on_message;
    wb__mqttc_connection_fn on_connection;
    void *ctx;
    const char *component; /* for log lines */
} wb__mqttc_opts;

typedef struct wb__mqttc_stats {
    uint64_t published;    /* handed to publish and accepted */
    uint64_t acknowledged; /* QoS 1 PUBACKs, and QoS 0 messages written */
    uint64_t received;
    uint64_t reconnects;
    size_t queued; /* accepted, not yet acknowledged */
    bool connected;
} wb__mqttc_stats;

/* Copies the options. */
wb_err wb__mqttc_new(const wb__mqttc_opts *o, wb__mqttc **out, char **detail);
/* Starts the I/O thread; waits for the first connection. On timeout or a
 * refusal the thread stops and the error is returned (detail set). */
wb_err wb__mqttc_connect(wb__mqttc *c, unsigned timeout_ms, char **detail);
/* Copies topic and payload into the outbox. QoS 1: kept until acknowledged,
 * across reconnects. QoS 0: only while connected. */
wb_err wb__mqttc_publish(wb__mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                         char **detail);
/* Records the subscription (made again after every reconnect); when
 * connected, waits for the broker's answer. */
wb_err wb__mqttc_subscribe(wb__mqttc *c, const char *filter, int qos, unsigned timeout_ms,
                           char **detail);
wb_err wb__mqttc_unsubscribe(wb__mqttc *c, const char *filter, unsigned timeout_ms, char **detail);
/* Waits until the outbox is empty. */
wb_err wb__mqttc_flush(wb__mqttc *c, unsigned timeout_ms, char **detail);
/* Flushes (up to timeout_ms), says DISCONNECT and stops the thread. */
wb_err wb__mqttc_disconnect(wb__mqttc *c, unsigned timeout_ms, char **detail);
void wb__mqttc_stats_get(wb__mqttc *c, wb__mqttc_stats *out);
/* The same, as the broker interface's counters. */
void wb__mqttc_broker_stats(wb__mqttc *c, wb_broker_stats *out);
void wb__mqttc_free(wb__mqttc *c);
/* Whether the caller runs on the client's I/O thread (inside a callback). */
bool wb__mqttc_on_io_thread(const wb__mqttc *c);

#endif
