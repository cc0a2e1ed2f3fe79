/* Which pool each worker id belongs to, for the bundled broker's plugin.
 *
 * A worker id (the ULID a worker connects with as its MQTT client id) is
 * bound to the pool whose certificate first connected with it. While the
 * binding lives, a connection with another pool's certificate and that id
 * is refused at CONNECT, before Mosquitto takes any session over. A binding
 * lives while a connection holds it and for a set time after the worker was
 * last connected (the broker's persistent_client_expiration, 7 days: no
 * session of the worker can outlive it).
 *
 * Bindings are kept in memory and appended to a text file in the broker's
 * persistence directory ("WORKER POOL SECONDS" lines), read back when the
 * broker starts and rewritten without stale lines when it grows. The file
 * is flushed to disk at most once a second and when the broker stops.
 *
 * Not thread-safe: Mosquitto calls its plugins on its one thread. */
#ifndef BLTN_IDENTITIES_H
#define BLTN_IDENTITIES_H

#include <stdbool.h>
#include <stdint.h>

#include "workerbus/topic.h"

typedef struct bltn_ids bltn_ids;

/* How long a binding outlives its worker's last connection. */
#define BLTN_IDS_EXPIRY_S (7u * 24u * 3600u)

/* Opens the table, reading path if it exists (path NULL: memory only).
 * Returns NULL with *detail (heap) when the file cannot be read or made. */
bltn_ids *bltn_ids_open(const char *path, uint32_t expiry_s, char **detail);
/* Flushes the file and frees everything; NULL is ignored. */
void bltn_ids_close(bltn_ids *t);

/* A connection `holder` of pool (canonical ULIDs) wants worker id worker.
 * Returns true and binds (holder takes the binding over) when the id is
 * free or already the pool's; false when it is bound to another pool,
 * whose ULID is copied to other_pool. now_s: wall-clock seconds. */
bool bltn_ids_claim(bltn_ids *t, const char *worker, const char *pool, const void *holder,
                    int64_t now_s, char other_pool[WB_ULID_STR_SIZE]);
/* holder's connection with worker id worker ended. */
void bltn_ids_release(bltn_ids *t, const char *worker, const void *holder, int64_t now_s);
/* Writes what is pending to the disk (called once a second). */
void bltn_ids_sync(bltn_ids *t);
/* Live bindings (for the log). */
size_t bltn_ids_count(const bltn_ids *t);

#endif
