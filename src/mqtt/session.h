/* The MQTT session machinery both MQTT engines share (not installed): the
 * libmosquitto engine (mqttc.c: the builtin broker backend and the worker
 * client) and Paho's (the iotcore backend).
 *
 * - The outbox: every accepted message, in order, kept until the broker
 *   acknowledges it (QoS 1) or it is written (QoS 0), at most max_queued
 *   of them (more: WB_ERR_BUSY). An engine hands messages to its library
 *   in order, as its window allows, and gives them again after a reconnect
 *   when its library does not.
 * - The subscriptions, renewed after every connection.
 * - Reconnect backoff, with jitter.
 * - The counters of wb_broker_stats.
 *
 * Not thread-safe by itself: the engine calls everything with its own lock
 * held. Nothing here calls out or blocks. */
#ifndef WB_MQTT_SESSION_H
#define WB_MQTT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workerbus/workerbus.h"

/* One message of the outbox; topic and payload live in data[]. */
typedef struct wb__outmsg {
    struct wb__outmsg *next;
    char *topic;
    void *payload;
    size_t len;
    int qos;
    uint64_t seq; /* the outbox is in seq order */
    unsigned gen; /* counts the handings: an answer to an older one is known */
    bool handed;  /* given to the library, not yet acknowledged */
    int mid;      /* the library's id of the current handing, if it has one */
    char data[];
} wb__outmsg;

typedef struct wb__sub {
    struct wb__sub *next;
    char *filter;
    int qos;
} wb__sub;

typedef struct wb__session {
    wb__outmsg *head, *tail;
    wb__outmsg *cursor; /* every message before it is handed; NULL: from head */
    size_t queued, handed, max_queued;
    uint64_t next_seq;
    wb__sub *subs;
    unsigned attempt, backoff_min_ms, backoff_max_ms;
    uint64_t next_attempt_ms;
    bool ever_connected;
    uint64_t published, acknowledged, reconnects;
} wb__session;

void wb__session_init(wb__session *s, size_t max_queued, unsigned backoff_min_ms,
                      unsigned backoff_max_ms);
/* Frees the outbox and the subscriptions. */
void wb__session_free(wb__session *s);

/* ---- the outbox ---- */

/* Copies the message to the end of the outbox and counts it as published.
 * Returns WB_OK, WB_ERR_BUSY (max_queued are waiting; detail says so, with
 * peer, e.g. "IoT Core") or WB_ERR_NO_MEMORY. *out (may be NULL) receives
 * the entry. */
wb_err wb__session_enqueue(wb__session *s, const char *topic, const void *payload, size_t len,
                           int qos, const char *peer, wb__outmsg **out, char **detail);
/* The oldest message not handed yet, or NULL. */
wb__outmsg *wb__session_next(wb__session *s);
/* m is given to the library now (its gen counts this handing). */
void wb__session_handed(wb__session *s, wb__outmsg *m);
/* The handing gen of message seq failed: it goes again, unless it was
 * acknowledged or handed anew meanwhile. */
void wb__session_unhand(wb__session *s, uint64_t seq, unsigned gen);
/* After a reconnect whose library kept nothing: every message goes again. */
void wb__session_rehand_all(wb__session *s);
/* The message of this seq, or of this library id among the handed ones; NULL
 * if gone. */
wb__outmsg *wb__session_find_seq(const wb__session *s, uint64_t seq);
wb__outmsg *wb__session_find_mid(const wb__session *s, int mid);
/* m is done: acknowledged (or QoS 0 written) when delivered, else dropped
 * (refused by the library for good). Frees it. */
void wb__session_done(wb__session *s, wb__outmsg *m, bool delivered);
/* Drops every message of the outbox (the handle is going away); returns how
 * many were not acknowledged. */
size_t wb__session_clear_outbox(wb__session *s);

/* ---- subscriptions ---- */

/* Records a subscription (replacing one of the same filter); WB_ERR_NO_MEMORY. */
wb_err wb__session_sub_add(wb__session *s, const char *filter, int qos);
void wb__session_sub_remove(wb__session *s, const char *filter);
/* Copies of the subscriptions, to renew them without the lock: *n of them,
 * freed with wb__session_subs_free(). On a shortage of memory, the ones
 * that could be copied (a log line says so). */
size_t wb__session_subs_copy(const wb__session *s, char ***filters, int **qos,
                             const char *component);
void wb__session_subs_free(char **filters, int *qos, size_t n);

/* ---- reconnects ---- */

/* A connection attempt failed or a connection was lost: the delay before
 * the next attempt (min doubling to max, jittered), also kept as
 * next_attempt_ms. */
unsigned wb__session_backoff(wb__session *s);
/* A connection is up: the backoff starts over; returns true when it is a
 * reconnection (counted). */
bool wb__session_connected(wb__session *s);

/* The counters, as the broker interface gives them (connected is the
 * engine's). */
void wb__session_stats(const wb__session *s, wb_broker_stats *out);

#endif
