/* Which replica's broker holds each worker's connection, recorded in
 * PostgreSQL (workerbus_presence) for the other replicas, for the bundled
 * broker's plugin.
 *
 * A worker is present once its connection is subscribed: at the SUBSCRIBE of
 * its own topic, or, for a persistent session that came back with its
 * subscription, at the first tick after its CONNECT. Only then can a message
 * routed to this replica reach it. Each connection has an epoch (wall-clock
 * microseconds of its CONNECT, made unique within this broker); a record is
 * replaced only by a newer epoch, so when a worker reconnects through
 * another replica the newer connection wins, whatever order the replicas'
 * writes reach the database in. The record is removed when that connection
 * ends (only if it is still that connection's).
 *
 * The writes are made by a thread of their own, in order, never on
 * Mosquitto's thread. When the database is lost they wait; once it is back,
 * the thread removes every record of this replica and writes those of the
 * connections it holds again. A write that makes a worker present here
 * wakes this replica's server (NOTIFY workerbus_outbox, payload the replica
 * id) when messages wait for the worker in the outbox.
 *
 * The functions other than open and close are called on Mosquitto's thread
 * only. */
#ifndef BLTN_PRESENCE_H
#define BLTN_PRESENCE_H

#include <stdint.h>

typedef struct bltn_presence bltn_presence;

/* Starts the writer for replica (its id) on database url. Returns NULL with
 * *detail (heap) when out of memory; the database itself may be down. */
bltn_presence *bltn_presence_open(const char *url, const char *replica, char **detail);
/* Removes this replica's records (a clean stop), stops the thread, frees. */
void bltn_presence_close(bltn_presence *pr);

/* A connection (holder) of worker (canonical ULIDs) of pool was accepted:
 * remembered, not yet present. */
void bltn_presence_connected(bltn_presence *pr, const char *pool, const char *worker,
                             const void *holder);
/* holder subscribed to its worker's own topic: present from now on. */
void bltn_presence_subscribed(bltn_presence *pr, const char *worker, const void *holder);
/* holder's connection ended. */
void bltn_presence_ended(bltn_presence *pr, const char *worker, const void *holder);
/* Calls ready(holder) for each connection not yet present; those for which
 * it returns nonzero (subscribed already) become present. */
void bltn_presence_check(bltn_presence *pr, int (*ready)(const void *holder));

/* Counters, for the log. */
typedef struct bltn_presence_stats {
    uint64_t recorded, removed, failed;
    uint64_t held; /* connections known now */
} bltn_presence_stats;
void bltn_presence_stats_get(bltn_presence *pr, bltn_presence_stats *out);

#endif
