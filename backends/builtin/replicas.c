/* The builtin broker's replicas (replicas.h). */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "listen.h"
#include "pg.h"
#include "replicas.h"
#include "wb_internal.h"

#define CHANNEL       "workerbus_outbox"
#define PRESENCE      "workerbus_presence"
#define CACHE_BUCKETS 4096u
#define BATCH         200u   /* outbox rows claimed by one pass */
#define LEASE_S       30u    /* how long a claim holds before another may take it */
#define FLUSH_MS      10000u /* how long a pass waits for its broker's acknowledgements */
#define GONE_FACTOR   20u    /* presence of a replica silent this many timeouts is deleted */
#define RETRY_MIN_MS  250u
#define RETRY_MAX_MS  5000u

/* The workers this replica may publish to without asking the database: its
 * own, with nothing waiting for them in the outbox, as the database said at
 * the last publish. An entry goes when the worker's presence changes
 * anywhere (NOTIFY workerbus_presence) or a message for it is put in the
 * outbox (NOTIFY workerbus_outbox); all go while those notifications may be
 * missed (the listening connection is down). */
typedef struct cached {
    char key[2 * WB_ULID_STR_SIZE];
    struct cached *next;
} cached;

struct bltn_replicas {
    char *url, *id, *host, *broker;
    unsigned timeout_s, expiry_s, max_per_worker, max_total, beat_ms;
    /* the publishing threads' connection */
    pthread_mutex_t route_lock;
    PGconn *route;
    /* the thread: heartbeat, housekeeping, delivery */
    pthread_t thread;
    bool started;
    int wake_fd;
    atomic_bool stop;
    wb__mqttc *router;
    atomic_uint_fast64_t local, routed, pending, delivered, expired, taken_over, outbox_full,
        db_failures, outbox_size;
    atomic_uint replicas;
    unsigned size_class; /* the thread's: the tables' sizes at the last ANALYZE */
    atomic_bool registered;
    atomic_uint_fast64_t cache_hits;
    pthread_mutex_t cache_lock;
    bool cache_ok;    /* presence is heard: entries are kept up to date */
    atomic_bool want; /* a notification: messages wait for this replica */
    cached *cache[CACHE_BUCKETS];
    /* per bucket, bumped by every drop: a publish that read the database
     * before a drop of its bucket does not put what it read */
    uint64_t cache_gen[CACHE_BUCKETS];
};

/* ---- the cache of local workers ------------------------------------------- */

static unsigned cache_hash(const char *key)
{
    unsigned h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % CACHE_BUCKETS;
}

static void cache_key(char key[2 * WB_ULID_STR_SIZE], const char *pool, const char *worker)
{
    snprintf(key, 2 * WB_ULID_STR_SIZE, "%s/%s", pool, worker);
}

static bool cache_has(bltn_replicas *r, const char *key)
{
    pthread_mutex_lock(&r->cache_lock);
    bool found = false;
    for (cached *c = r->cache_ok ? r->cache[cache_hash(key)] : NULL; c && !found; c = c->next)
        found = strcmp(c->key, key) == 0;
    pthread_mutex_unlock(&r->cache_lock);
    return found;
}

static uint64_t cache_gen(bltn_replicas *r, const char *key)
{
    pthread_mutex_lock(&r->cache_lock);
    uint64_t g = r->cache_gen[cache_hash(key)];
    pthread_mutex_unlock(&r->cache_lock);
    return g;
}

/* Puts key unless its bucket changed since gen was read. */
static void cache_put(bltn_replicas *r, const char *key, uint64_t gen)
{
    pthread_mutex_lock(&r->cache_lock);
    unsigned b = cache_hash(key);
    bool found = false;
    for (cached *c = r->cache[b]; c && !found; c = c->next)
        found = strcmp(c->key, key) == 0;
    cached *c = r->cache_ok && !found && r->cache_gen[b] == gen ? calloc(1, sizeof *c) : NULL;
    if (c) {
        snprintf(c->key, sizeof c->key, "%s", key);
        c->next = r->cache[b];
        r->cache[b] = c;
    }
    pthread_mutex_unlock(&r->cache_lock);
}

static void cache_drop(bltn_replicas *r, const char *key)
{
    pthread_mutex_lock(&r->cache_lock);
    r->cache_gen[cache_hash(key)]++;
    for (cached **c = &r->cache[cache_hash(key)]; *c; c = &(*c)->next) {
        if (strcmp((*c)->key, key) == 0) {
            cached *gone = *c;
            *c = gone->next;
            free(gone);
            break;
        }
    }
    pthread_mutex_unlock(&r->cache_lock);
}

/* Empties the cache; ok: whether it may fill again. */
static void cache_reset(bltn_replicas *r, bool ok)
{
    pthread_mutex_lock(&r->cache_lock);
    for (unsigned b = 0; b < CACHE_BUCKETS; b++)
        for (r->cache_gen[b]++; r->cache[b];) {
            cached *c = r->cache[b];
            r->cache[b] = c->next;
            free(c);
        }
    r->cache_ok = ok;
    pthread_mutex_unlock(&r->cache_lock);
}

/* ---- statements ---------------------------------------------------------- */

static const char SQL_REGISTER[] =
    "INSERT INTO workerbus_replicas (id, host, pid, broker) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
    "  broker = EXCLUDED.broker, started_at = now(), heartbeat_at = now()";
static const char SQL_BEAT[] =
    "INSERT INTO workerbus_replicas (id, host, pid, broker) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), pid = EXCLUDED.pid";
/* $1 timeout (s), $2 gone factor: expired rows, presence of long-gone
 * replicas, replicas silent for a week; then the outbox's size, the
 * replicas alive and the presence's size */
static const char SQL_HOUSEKEEPING[] =
    "WITH exp AS (DELETE FROM workerbus_outbox WHERE id IN (SELECT id FROM workerbus_outbox"
    "   WHERE expires_at <= now() ORDER BY expires_at LIMIT 10000) RETURNING 1),"
    " gone AS (DELETE FROM workerbus_presence WHERE replica IN (SELECT id FROM"
    "   workerbus_replicas WHERE heartbeat_at < now() - $1::integer * $2::integer * interval '1 "
    "second')"
    "   RETURNING 1),"
    " old AS (DELETE FROM workerbus_replicas WHERE heartbeat_at < now() - interval '7 days'"
    "   RETURNING 1)"
    " SELECT (SELECT count(*) FROM exp), (SELECT count(*) FROM workerbus_outbox),"
    "  (SELECT count(*) FROM workerbus_replicas WHERE heartbeat_at > now() - $1::integer *"
    "   interval '1 second'),"
    "  (SELECT count(*) FROM workerbus_presence)";
/* $1 pool, $2 worker, $3 timeout (s), $4 topic, $5 payload, $6 qos, $7 this
 * replica, $8 expiry (s), $9 the bound per worker. Inserts unless the worker
 * is this replica's with nothing waiting; wakes the holder. Returns the
 * holder (NULL: connected nowhere), what waited, the new row's id (NULL: not
 * inserted). */
static const char SQL_ROUTE[] =
    "WITH pr AS (SELECT p.replica FROM workerbus_presence p JOIN workerbus_replicas r"
    "   ON r.id = p.replica WHERE p.pool = $1 AND p.worker = $2"
    "   AND r.heartbeat_at > now() - $3::integer * interval '1 second'),"
    " pend AS (SELECT count(*) AS n FROM (SELECT 1 FROM workerbus_outbox"
    "   WHERE pool = $1 AND worker = $2 LIMIT $9::integer) s),"
    " ins AS (INSERT INTO workerbus_outbox (pool, worker, topic, payload, qos, sender, expires_at)"
    "   SELECT $1, $2, $4, $5, $6, $7, now() + $8::integer * interval '1 second'"
    "   WHERE NOT (coalesce((SELECT replica FROM pr) = $7, false) AND (SELECT n FROM pend) = 0)"
    "   AND (SELECT n FROM pend) < $9::integer RETURNING id)"
    " SELECT (SELECT replica FROM pr), (SELECT n FROM pend), (SELECT id FROM ins),"
    "  (SELECT count(pg_notify('" CHANNEL "', pr.replica || ' ' || $1::text || '/' ||"
    "   $2::text)) FROM pr, ins)";
/* $1 this replica, $2 batch, $3 lease (s): the next rows of the workers this
 * replica holds, in order; a worker whose earlier row another replica still
 * holds a claim on waits for it. */
static const char SQL_CLAIM[] =
    "WITH c AS (SELECT o.id, o.claimed_by AS prev FROM workerbus_outbox o"
    "   JOIN workerbus_presence p ON p.pool = o.pool AND p.worker = o.worker"
    "   WHERE p.replica = $1 AND o.expires_at > now()"
    "   AND (o.claimed_until IS NULL OR o.claimed_until < now())"
    "   AND NOT EXISTS (SELECT 1 FROM workerbus_outbox e WHERE e.pool = o.pool"
    "    AND e.worker = o.worker AND e.id < o.id AND e.claimed_until >= now()"
    "    AND e.claimed_by <> $1)"
    "   ORDER BY o.id LIMIT $2::integer FOR UPDATE OF o SKIP LOCKED)"
    " UPDATE workerbus_outbox o SET claimed_by = $1,"
    "  claimed_until = now() + $3::integer * interval '1 second' FROM c WHERE o.id = c.id"
    " RETURNING o.id, o.topic, o.payload, o.qos, coalesce(c.prev, '')";
static const char SQL_DELETE[] = "DELETE FROM workerbus_outbox WHERE id = ANY ($1::bigint[])";
static const char SQL_RELEASE[] = "UPDATE workerbus_outbox SET claimed_by = NULL,"
                                  " claimed_until = NULL WHERE id = ANY ($1::bigint[])";

/* Every statement is prepared on each connection, and PostgreSQL keeps a
 * generic plan of it after five runs: planning the claim and the route at
 * every run took most of PostgreSQL's CPU in bench-replicas (1 018 ms of
 * planning against 320 of execution for 3 151 claims; 623 against 156 for
 * 2 999 routes), and throughput with 3 replicas went from 1 450 to 3 115
 * messages a second without it. A generic plan is made for the tables as
 * they were, though: one made while the outbox was empty reads the whole
 * outbox to count a worker's waiting rows (20 ms a route at 300 000 rows,
 * against 0.2 ms), and a plan made again for statistics taken while it
 * was nearly empty does the same. So when the heartbeat finds the outbox's
 * or the presence's rows (which it counts) changed by a factor of 4, it
 * analyzes both tables; that makes every connection plan its statements again, for
 * the tables as they are (autovacuum would, after 20 000 changes and within
 * its nap of up to a minute). */
enum stmt {
    ST_REGISTER,
    ST_BEAT,
    ST_HOUSEKEEPING,
    ST_ROUTE,
    ST_CLAIM,
    ST_DELETE,
    ST_RELEASE,
    ST__N
};
static const struct {
    const char *name, *sql;
} stmts[ST__N] = {
    [ST_REGISTER] = {"wb_replica_register", SQL_REGISTER},
    [ST_BEAT] = {"wb_replica_beat", SQL_BEAT},
    [ST_HOUSEKEEPING] = {"wb_replica_housekeeping", SQL_HOUSEKEEPING},
    [ST_ROUTE] = {"wb_outbox_route", SQL_ROUTE},
    [ST_CLAIM] = {"wb_outbox_claim", SQL_CLAIM},
    [ST_DELETE] = {"wb_outbox_delete", SQL_DELETE},
    [ST_RELEASE] = {"wb_outbox_release", SQL_RELEASE},
};

static bool prepare(PGconn *c, char **detail)
{
    for (int i = 0; i < ST__N; i++) {
        PGresult *res = PQprepare(c, stmts[i].name, stmts[i].sql, 0, NULL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            *detail = wb__pg_describe(c, res, stmts[i].name);
        PQclear(res);
        if (!ok)
            return false;
    }
    return true;
}

/* A number of rows, in classes a factor of 4 apart. */
static unsigned size_class(uint64_t rows)
{
    unsigned c = 0;
    for (; rows >= 4; rows /= 4)
        c++;
    return c;
}

static bool closing(void *ctx)
{
    return atomic_load(&((bltn_replicas *)ctx)->stop);
}

/* A statement of the thread's; a close does not wait for a database that
 * stopped answering it (NULL then, the connection mid-statement: the
 * thread ends and closes it). */
static PGresult *exec(bltn_replicas *r, PGconn *c, enum stmt st, int n, const char *const *vals,
                      int binary)
{
    bool stopped;
    return wb__pg_exec_prepared_stoppable(c, stmts[st].name, n, vals, NULL, NULL, binary, closing,
                                          r, &stopped);
}

/* A failure worth a warning: not one that a close made. */
static void warn_failure(bltn_replicas *r, PGconn *c, const PGresult *res, const char *what)
{
    if (closing(r))
        return;
    char *d = wb__pg_describe(c, res, what);
    wb__log(WB_LOG_WARN, "replicas", "%s", d ? d : what);
    free(d);
    atomic_fetch_add(&r->db_failures, 1);
}

static bool ok_result(PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

/* Runs a statement whose result is not needed; false (logged) on failure. */
static bool run(bltn_replicas *r, PGconn *c, enum stmt st, int n, const char *const *vals,
                const char *what)
{
    PGresult *res = exec(r, c, st, n, vals, 0);
    bool ok = ok_result(res);
    if (!ok)
        warn_failure(r, c, res, what);
    PQclear(res);
    return ok;
}

static bool register_replica(bltn_replicas *r, PGconn *c, enum stmt st)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    const char *vals[] = {r->id, r->host, pid, r->broker};
    return run(r, c, st, 4, vals, st == ST_REGISTER ? "registering the replica" : "heartbeat");
}

/* A connection with the statements prepared (the schema must exist). A
 * close ends its connect (NULL, no detail); wake_fd: the thread's, whose
 * wake-ups it consumes, or -1. */
static PGconn *open_db(bltn_replicas *r, int wake_fd, char **detail)
{
    PGconn *c = wb__pg_connect_stoppable(r->url, "workerbus-replica", "replicas", wake_fd, closing,
                                         r, detail);
    if (c && !prepare(c, detail)) {
        PQfinish(c);
        c = NULL;
    }
    return c;
}

/* ---- notifications (the process's listener, src/pg/listen.h) ---------------- */

static void wake_thread(bltn_replicas *r)
{
    uint64_t one = 1;
    if (write(r->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        wb__log(WB_LOG_DEBUG, "replicas", "wake: %s", strerror(errno));
}

static void on_notify(void *ctx, const char *channel, const char *payload)
{
    bltn_replicas *r = ctx;
    if (strcmp(channel, PRESENCE) == 0) {
        cache_drop(r, payload);
        return;
    }
    /* "<replica> <pool>/<worker>": messages wait for it */
    const char *sp = strchr(payload, ' ');
    if (!sp)
        return;
    cache_drop(r, sp + 1);
    size_t idl = strlen(r->id);
    if ((size_t)(sp - payload) == idl && strncmp(payload, r->id, idl) == 0) {
        atomic_store(&r->want, true);
        wake_thread(r);
    }
}

/* Heard again: what was missed meanwhile is forgotten, and the outbox is
 * read; lost: no worker is taken as local without asking the database. */
static void on_listen_state(void *ctx, bool heard, const char *why)
{
    bltn_replicas *r = ctx;
    (void)why;
    cache_reset(r, heard);
    if (heard) {
        atomic_store(&r->want, true);
        wake_thread(r);
    }
}

/* ---- routing (publishing threads) ---------------------------------------- */

wb_err bltn_replicas_route(bltn_replicas *r, const char *topic, const char *pool,
                           const char *worker, const void *payload, size_t len, int qos,
                           bool *local, char **detail)
{
    *local = false;
    if (atomic_load(&r->outbox_size) >= r->max_total) {
        atomic_fetch_add(&r->outbox_full, 1);
        *detail = wb__asprintf("the outbox holds %llu messages, MQTT_BROKER_BUILTIN_OUTBOX_MAX "
                               "(%u): workers are not taking their messages; they wait until "
                               "workers connect or expire",
                               (unsigned long long)atomic_load(&r->outbox_size), r->max_total);
        return WB_ERR_BUSY;
    }
    char key[2 * WB_ULID_STR_SIZE];
    cache_key(key, pool, worker);
    if (cache_has(r, key)) {
        *local = true;
        atomic_fetch_add(&r->local, 1);
        atomic_fetch_add(&r->cache_hits, 1);
        return WB_OK;
    }
    uint64_t gen = cache_gen(r, key);
    char timeout[16], qs[4], expiry[16], maxw[16];
    snprintf(timeout, sizeof timeout, "%u", r->timeout_s);
    snprintf(qs, sizeof qs, "%d", qos);
    snprintf(expiry, sizeof expiry, "%u", r->expiry_s);
    snprintf(maxw, sizeof maxw, "%u", r->max_per_worker);
    const char *vals[9] = {pool, worker, timeout, topic, payload, qs, r->id, expiry, maxw};
    int lens[9] = {0, 0, 0, 0, (int)len, 0, 0, 0, 0};
    int fmts[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    if (len == 0)
        vals[4] = "";
    pthread_mutex_lock(&r->route_lock);
    wb_err err = WB_OK;
    if (!r->route || PQstatus(r->route) != CONNECTION_OK) {
        if (r->route)
            PQfinish(r->route);
        char *d = NULL;
        r->route = open_db(r, -1, &d);
        if (!r->route) {
            pthread_mutex_unlock(&r->route_lock);
            atomic_fetch_add(&r->db_failures, 1);
            *detail = wb__asprintf("routing to worker %s: %s", worker, d ? d : "PostgreSQL");
            free(d);
            return wb__retryable(WB_ERR_CONNECTION_LOST);
        }
    }
    PGresult *res = PQexecPrepared(r->route, stmts[ST_ROUTE].name, 9, vals, lens, fmts, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        bool transient = wb__pg_is_transient(r->route, res);
        *detail = wb__pg_describe(r->route, res, "routing a message to a worker");
        PQclear(res);
        if (transient) {
            PQfinish(r->route);
            r->route = NULL;
        }
        pthread_mutex_unlock(&r->route_lock);
        atomic_fetch_add(&r->db_failures, 1);
        return transient ? wb__retryable(WB_ERR_CONNECTION_LOST) : WB_ERR_BACKEND;
    }
    bool nowhere = PQgetisnull(res, 0, 0);
    bool mine = !nowhere && strcmp(PQgetvalue(res, 0, 0), r->id) == 0;
    unsigned long long waiting = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    bool inserted = !PQgetisnull(res, 0, 2);
    PQclear(res);
    pthread_mutex_unlock(&r->route_lock);
    if (inserted) {
        atomic_fetch_add(nowhere ? &r->pending : &r->routed, 1);
        atomic_fetch_add(&r->outbox_size, 1);
    } else if (mine && waiting == 0) {
        *local = true;
        atomic_fetch_add(&r->local, 1);
        cache_put(r, key, gen);
    } else {
        atomic_fetch_add(&r->outbox_full, 1);
        *detail = wb__asprintf("the outbox holds %llu messages for worker %s (pool %s), its "
                               "limit (MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER is %u): the "
                               "worker is not taking its messages; they wait until it connects "
                               "or expire",
                               waiting, worker, pool, r->max_per_worker);
        err = WB_ERR_BUSY;
    }
    return err;
}

/* ---- the thread ------------------------------------------------------------ */

static uint64_t be64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static int cmp_rows(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "{1,2,3}" of ids[from..to) */
static char *id_array(const uint64_t *ids, size_t n, size_t stride)
{
    wb__buf b = WB__BUF_INIT;
    wb__buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++)
        wb__buf_printf(&b, "%s%llu", i ? "," : "", (unsigned long long)ids[i * stride]);
    wb__buf_putc(&b, '}');
    return wb__buf_take(&b);
}

/* One delivery pass: claims, publishes, waits for the acknowledgements,
 * deletes. Returns how many rows it claimed, or -1 when the database failed. */
static int deliver(bltn_replicas *r, PGconn *c)
{
    wb__mqttc_stats st;
    wb__mqttc_stats_get(r->router, &st);
    if (!st.connected)
        return 0;
    char batch[16], lease[16];
    snprintf(batch, sizeof batch, "%u", BATCH);
    snprintf(lease, sizeof lease, "%u", LEASE_S);
    const char *vals[] = {r->id, batch, lease};
    PGresult *res = exec(r, c, ST_CLAIM, 3, vals, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        warn_failure(r, c, res, "claiming outbox messages");
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return 0;
    }
    /* rows in id order: (id, row index) pairs */
    uint64_t *order = calloc((size_t)n * 2, sizeof *order);
    if (!order) {
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        order[2 * i] = be64(PQgetvalue(res, i, 0));
        order[2 * i + 1] = (uint64_t)i;
    }
    qsort(order, (size_t)n, 2 * sizeof *order, cmp_rows);
    int sent = 0;
    uint64_t taken = 0;
    for (; sent < n; sent++) {
        int i = (int)order[2 * sent + 1];
        char topic[1024];
        int tl = PQgetlength(res, i, 1);
        if (tl <= 0 || (size_t)tl >= sizeof topic)
            break;
        memcpy(topic, PQgetvalue(res, i, 1), (size_t)tl);
        topic[tl] = '\0';
        int qos = (int)(int16_t)be16toh(*(const uint16_t *)(const void *)PQgetvalue(res, i, 3));
        char *d = NULL;
        if (wb__mqttc_publish(r->router, topic, PQgetvalue(res, i, 2),
                              (size_t)PQgetlength(res, i, 2), qos, &d) != WB_OK) {
            wb__log(WB_LOG_DEBUG, "replicas", "delivery stops for now: %s", d ? d : "");
            free(d);
            break;
        }
        const char *prev = PQgetvalue(res, i, 4);
        if (*prev && strcmp(prev, r->id) != 0)
            taken++;
    }
    PQclear(res);
    bool acked = false;
    if (sent) {
        char *d = NULL;
        acked = wb__mqttc_flush(r->router, FLUSH_MS, &d) == WB_OK;
        if (!acked) {
            wb__log(WB_LOG_WARN, "replicas",
                    "the broker did not acknowledge %d routed message(s) (%s); they are sent "
                    "again once their claim lapses",
                    sent, d ? d : "");
        }
        free(d);
    }
    bool ok = true;
    if (acked) {
        char *ids = id_array(order, (size_t)sent, 2);
        const char *v[] = {ids};
        ok = ids && run(r, c, ST_DELETE, 1, v, "deleting delivered outbox messages");
        free(ids);
        if (ok) {
            atomic_fetch_add(&r->delivered, (uint64_t)sent);
            atomic_fetch_add(&r->taken_over, taken);
            uint64_t size = atomic_load(&r->outbox_size);
            atomic_store(&r->outbox_size, size > (uint64_t)sent ? size - (uint64_t)sent : 0);
        }
    }
    if (ok && sent < n) {
        char *ids = id_array(order + 2 * sent, (size_t)(n - sent), 2);
        const char *v[] = {ids};
        ok = ids && run(r, c, ST_RELEASE, 1, v, "releasing outbox messages");
        free(ids);
    }
    free(order);
    return ok ? (sent < n ? 0 : n) : -1;
}

/* ANALYZE of the outbox and the presence, for plans that fit them (see
 * stmts[]). It waits at most 200 ms for its lock (a VACUUM holds it: an
 * autovacuum is cancelled by the wait, an operator's is not), so that the
 * heartbeat is never held; a failure is tried again at the next beat. */
static bool analyze(bltn_replicas *r, PGconn *c)
{
    char *d = NULL;
    bool ok = wb__pg_exec(c, "BEGIN", "analyzing", &d) == WB_OK;
    ok = ok && wb__pg_exec(c, "SET LOCAL lock_timeout = 200", "analyzing", &d) == WB_OK;
    ok = ok && wb__pg_exec(c, "ANALYZE workerbus_outbox, workerbus_presence",
                           "analyzing the outbox and the presence", &d) == WB_OK;
    char *end = NULL;
    if (wb__pg_exec(c, ok ? "COMMIT" : "ROLLBACK", "analyzing", &end) != WB_OK)
        ok = false;
    if (!ok && !closing(r))
        wb__log(WB_LOG_DEBUG, "replicas", "%s; again at the next heartbeat",
                d     ? d
                : end ? end
                      : "ANALYZE");
    free(d);
    free(end);
    return ok;
}

static bool beat(bltn_replicas *r, PGconn *c)
{
    if (!register_replica(r, c, ST_BEAT))
        return false;
    atomic_store(&r->registered, true);
    char t[16], g[16];
    snprintf(t, sizeof t, "%u", r->timeout_s);
    snprintf(g, sizeof g, "%u", GONE_FACTOR);
    const char *vals[] = {t, g};
    PGresult *res = exec(r, c, ST_HOUSEKEEPING, 2, vals, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    if (ok) {
        uint64_t expired = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        uint64_t size = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        atomic_fetch_add(&r->expired, expired);
        atomic_store(&r->outbox_size, size > expired ? size - expired : 0);
        atomic_store(&r->replicas, (unsigned)strtoul(PQgetvalue(res, 0, 2), NULL, 10));
        uint64_t presence = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
        unsigned cls = size_class(size) * 64u + size_class(presence);
        if (cls != r->size_class && analyze(r, c)) {
            r->size_class = cls;
            wb__log(WB_LOG_DEBUG, "replicas",
                    "analyzed for new plans: the outbox holds %llu rows, the presence %llu",
                    (unsigned long long)size, (unsigned long long)presence);
        }
        if (expired)
            wb__log(WB_LOG_WARN, "replicas",
                    "%llu outbox message(s) expired unsent after "
                    "MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY (%u s): their workers did not connect",
                    (unsigned long long)expired, r->expiry_s);
    } else {
        warn_failure(r, c, res, "outbox housekeeping");
    }
    PQclear(res);
    return ok;
}

static void *replica_main(void *arg)
{
    bltn_replicas *r = arg;
    static const wb__pg_sub_ops ops = {.notify = on_notify, .state = on_listen_state};
    const char *channels[] = {CHANNEL, PRESENCE};
    wb__pg_sub *sub = wb__pg_subscribe(r->url, channels, 2, &ops, r);
    if (!sub)
        wb__log(WB_LOG_WARN, "replicas",
                "cannot listen for the outbox and presence: deliveries wait for the "
                "heartbeat, and every message asks the database where its worker is");
    PGconn *c = NULL;
    unsigned failures = 0;
    uint64_t next_beat = 0, outage_start = 0;
    bool want = true;
    while (!atomic_load(&r->stop)) {
        unsigned wait_ms;
        if (!c) {
            char *d = NULL;
            c = open_db(r, r->wake_fd, &d);
            if (!c && atomic_load(&r->stop)) {
                free(d);
                break; /* a close ended the connect */
            }
            if (!c) {
                atomic_store(&r->registered, false);
                if (failures++ == 0) {
                    outage_start = wb__now_ms();
                    wb__log(WB_LOG_WARN, "replicas",
                            "the database is lost (%s): no heartbeat, no routing until it is "
                            "back",
                            d ? d : "PostgreSQL");
                }
                free(d);
                wait_ms = wb__backoff_ms(failures, RETRY_MIN_MS, RETRY_MAX_MS);
                goto sleep;
            }
            if (failures)
                wb__log(WB_LOG_INFO, "replicas", "the database is back after %llu ms",
                        (unsigned long long)(wb__now_ms() - outage_start));
            failures = 0;
            next_beat = 0;
            want = true;
        }
        uint64_t now = wb__now_ms();
        bool ok = true;
        if (now >= next_beat) {
            ok = beat(r, c);
            next_beat = now + r->beat_ms;
            want = true;
        }
        if (atomic_exchange(&r->want, false))
            want = true;
        if (ok && want) {
            int n = deliver(r, c);
            ok = n >= 0;
            want = n == (int)BATCH;
        }
        if (!ok && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
            continue;
        }
        now = wb__now_ms();
        wait_ms = want ? 0 : next_beat > now ? (unsigned)(next_beat - now) : 0;
    sleep:;
        struct pollfd p[2] = {{.fd = r->wake_fd, .events = POLLIN},
                              {.fd = c ? PQsocket(c) : -1, .events = POLLIN}};
        int rc = poll(p, c ? 2 : 1, (int)wait_ms);
        if (rc > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(r->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                wb__log(WB_LOG_DEBUG, "replicas", "wake: %s", strerror(errno));
        }
        if (c && !PQconsumeInput(c)) {
            PQfinish(c);
            c = NULL;
        }
    }
    if (c)
        PQfinish(c);
    wb__pg_unsubscribe(sub);
    return NULL;
}

/* ---- open, start, close ----------------------------------------------------- */

wb_err bltn_replicas_open(const wb__builtin_view *v, const wb__mqttc_opts *router,
                          bltn_replicas **out, char **detail)
{
    bltn_replicas *r = calloc(1, sizeof *r);
    if (!r)
        return WB_ERR_NO_MEMORY;
    r->wake_fd = -1;
    pthread_mutex_init(&r->route_lock, NULL);
    pthread_mutex_init(&r->cache_lock, NULL);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    r->url = wb__strdup(v->database_url);
    r->id = wb__strdup(v->replica_id);
    r->host = wb__strdup(host);
    r->broker = wb__asprintf("%s:%u", v->listen_host, v->listen_port);
    r->timeout_s = v->replica_timeout_s;
    r->expiry_s = v->outbox_expiry_s;
    r->max_per_worker = v->outbox_max_per_worker;
    r->max_total = v->outbox_max;
    r->beat_ms = r->timeout_s * 1000u / 3u;
    if (r->beat_ms > 5000u)
        r->beat_ms = 5000u;
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    wb_err err =
        r->url && r->id && r->host && r->broker && r->wake_fd >= 0 ? WB_OK : WB_ERR_NO_MEMORY;
    PGconn *c = NULL;
    if (!err) {
        char *d = NULL;
        c = wb__pg_connect(r->url, "workerbus-replica", "replicas", &d);
        if (!c) {
            wb__buf b = WB__BUF_INIT;
            wb__buf_puts(&b, "the replicas' database, DATABASE_URL (");
            wb__redact_conninfo(&b, r->url, strlen(r->url));
            wb__buf_puts(&b, "): ");
            wb__buf_puts(&b, d ? d : "");
            free(d);
            *detail = wb__buf_take(&b);
            err = WB_ERR_CONNECTION_LOST;
        }
    }
    if (!err)
        err = wb__pg_migrate(c, "replicas", NULL, NULL, detail);
    if (!err && !prepare(c, detail))
        err = WB_ERR_BACKEND;
    if (!err && !register_replica(r, c, ST_REGISTER)) {
        *detail = wb__asprintf("cannot register replica %s in the database", r->id);
        err = WB_ERR_BACKEND;
    }
    if (c)
        PQfinish(c);
    if (!err) {
        wb__mqttc_opts o = *router;
        char *cid = wb__asprintf("%s-router", router->client_id);
        o.client_id = cid;
        o.clean_session = true;
        o.on_message = NULL;
        o.on_connection = NULL;
        o.component = "replicas";
        err = cid ? wb__mqttc_new(&o, &r->router, detail) : WB_ERR_NO_MEMORY;
        free(cid);
    }
    if (err) {
        bltn_replicas_close(r);
        return err;
    }
    atomic_store(&r->registered, true);
    wb__log(WB_LOG_INFO, "replicas",
            "replica %s registered (broker %s; heartbeat every %u ms, gone after %u s)", r->id,
            r->broker, r->beat_ms, r->timeout_s);
    *out = r;
    return WB_OK;
}

wb_err bltn_replicas_start(bltn_replicas *r, unsigned timeout_ms, char **detail)
{
    if (r->started)
        return WB_OK;
    wb_err err = wb__mqttc_connect(r->router, timeout_ms, detail);
    /* a timeout leaves it trying: deliveries wait for it */
    if (err && err != WB_ERR_TIMEOUT)
        return err;
    if (pthread_create(&r->thread, NULL, replica_main, r) != 0)
        return WB_ERR_NO_MEMORY;
    r->started = true;
    return WB_OK;
}

char *bltn_replicas_route_query(bltn_replicas *r, const char *sql)
{
    pthread_mutex_lock(&r->route_lock);
    PGresult *res = r->route && PQstatus(r->route) == CONNECTION_OK ? PQexec(r->route, sql) : NULL;
    char *text = NULL;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
        wb__buf b = WB__BUF_INIT;
        for (int i = 0; i < PQntuples(res); i++)
            for (int j = 0; j < PQnfields(res); j++)
                wb__buf_printf(&b, "%s%s", PQgetvalue(res, i, j),
                               j + 1 < PQnfields(res) ? " " : "\n");
        text = wb__buf_take(&b);
    }
    PQclear(res);
    pthread_mutex_unlock(&r->route_lock);
    return text;
}

void bltn_replicas_stats(bltn_replicas *r, wb_broker_replica_stats *out)
{
    out->local = atomic_load(&r->local);
    out->routed = atomic_load(&r->routed);
    out->pending = atomic_load(&r->pending);
    out->delivered = atomic_load(&r->delivered);
    out->expired = atomic_load(&r->expired);
    out->taken_over = atomic_load(&r->taken_over);
    out->outbox_full = atomic_load(&r->outbox_full);
    out->db_failures = atomic_load(&r->db_failures);
    out->outbox_size = atomic_load(&r->outbox_size);
    out->replicas = atomic_load(&r->replicas);
    out->registered = atomic_load(&r->registered);
}

void bltn_replicas_close(bltn_replicas *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    if (r->started) {
        wake_thread(r);
        pthread_join(r->thread, NULL);
    }
    if (r->router) {
        char *d = NULL;
        wb__mqttc_disconnect(r->router, 1000, &d);
        free(d);
        wb__mqttc_free(r->router);
    }
    if (r->route)
        PQfinish(r->route);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    pthread_mutex_destroy(&r->route_lock);
    cache_reset(r, false);
    pthread_mutex_destroy(&r->cache_lock);
    free(r->url);
    free(r->id);
    free(r->host);
    free(r->broker);
    free(r);
}
