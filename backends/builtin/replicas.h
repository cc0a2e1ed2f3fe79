/* The builtin broker's side of replicas: one server process and its bundled
 * broker among any number, coordinating through PostgreSQL only (not
 * installed; see docs/replicas.md).
 *
 * - Registration and heartbeat: workerbus_replicas holds this replica's id;
 *   a thread beats every third of the timeout. A replica whose beat is
 *   older than the timeout is gone: its workers' presence no longer counts.
 * - Routing: a message for a worker goes straight to the own broker when the
 *   worker's presence (recorded by the plugin of the broker that holds its
 *   connection) is this replica and nothing waits for it in the outbox;
 *   otherwise into workerbus_outbox, in one statement that also wakes the
 *   holding replica (NOTIFY workerbus_outbox, payload its id).
 * - Delivery: the thread claims the outbox rows of the workers this replica
 *   holds, in order, publishes them on a connection of its own to the own
 *   broker, waits for the broker's acknowledgements and deletes them.
 * - Housekeeping, on every beat: expired rows deleted, presence of replicas
 *   long gone deleted, the outbox's size counted for its bound. */
#ifndef BLTN_REPLICAS_H
#define BLTN_REPLICAS_H

#include <stdbool.h>

#include "config_views.h"
#include "mqttc.h"
#include "workerbus/broker.h"

typedef struct bltn_replicas bltn_replicas;

/* Opens the database (migrating it), registers the replica and starts the
 * thread; router is the options of the delivery connection to the own
 * broker (copied). Errors: WB_ERR_CONNECTION_LOST (the database cannot be
 * reached, detail says why without secrets), WB_ERR_STATE (a newer schema),
 * WB_ERR_NO_MEMORY, WB_ERR_BACKEND. */
wb_err bltn_replicas_open(const wb__builtin_view *v, const wb__mqttc_opts *router,
                          bltn_replicas **out, char **detail);

/* Connects the delivery connection (waiting up to timeout_ms; it keeps
 * trying after a timeout) and starts the thread. */
wb_err bltn_replicas_start(bltn_replicas *r, unsigned timeout_ms, char **detail);

/* Where a message for the worker of topic (<ns>/readonly/<pool>/<worker>)
 * goes. WB_OK with *local true: publish it on the own broker now; with
 * *local false: it is in the outbox. WB_ERR_BUSY: the outbox is full for
 * that worker or in all (detail names the limit). A retryable
 * WB_ERR_CONNECTION_LOST: the database failed. One statement, on the
 * caller's thread; calls are serialized on one connection. */
wb_err bltn_replicas_route(bltn_replicas *r, const char *topic, const char *pool,
                           const char *worker, const void *payload, size_t len, int qos,
                           bool *local, char **detail);

void bltn_replicas_stats(bltn_replicas *r, wb_broker_replica_stats *out);

/* Tests: the rows of sql (no parameters) run on the publishing threads'
 * connection, where the route is prepared: one line a row, its columns
 * separated by spaces (heap). NULL when that connection is not open or the
 * query failed. */
char *bltn_replicas_route_query(bltn_replicas *r, const char *sql);

/* Stops the thread and closes everything. The replica's row stays: its
 * heartbeat just stops, as when the process dies. */
void bltn_replicas_close(bltn_replicas *r);

#endif
