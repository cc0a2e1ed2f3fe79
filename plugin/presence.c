/* Presence records of the bundled broker's workers (presence.h). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg.h"
#include "presence.h"
#include "wb_internal.h"

#define BUCKETS      4096u
#define ID_SIZE      WB_ULID_STR_SIZE
#define RETRY_MIN_MS 250u
#define RETRY_MAX_MS 5000u
/* Changes written in one transaction at most: a reconnect storm's records
 * cost one commit (one WAL flush) per batch instead of one each. */
#define BATCH_MAX 100u

typedef struct conn {
    char worker[ID_SIZE], pool[ID_SIZE];
    const void *holder;
    int64_t epoch;
    bool present;
    struct conn *next;
} conn;

typedef struct op {
    bool up;
    char pool[ID_SIZE], worker[ID_SIZE];
    int64_t epoch;
    struct op *next;
} op;

struct bltn_presence {
    char *url, *replica;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;
    bool stop;
    conn *buckets[BUCKETS];
    size_t nconn, waiting; /* connections; those not present yet */
    op *head, *tail;
    int64_t last_epoch;
    uint64_t recorded, removed, failed;
};

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static conn **find(bltn_presence *pr, const char *worker)
{
    conn **c = &pr->buckets[hash(worker)];
    while (*c && strcmp((*c)->worker, worker) != 0)
        c = &(*c)->next;
    return c;
}

/* Lock held. */
static void push(bltn_presence *pr, bool up, const conn *c)
{
    op *o = calloc(1, sizeof *o);
    if (!o) {
        pr->failed++;
        return;
    }
    o->up = up;
    memcpy(o->pool, c->pool, ID_SIZE);
    memcpy(o->worker, c->worker, ID_SIZE);
    o->epoch = c->epoch;
    if (pr->tail)
        pr->tail->next = o;
    else
        pr->head = o;
    pr->tail = o;
    pthread_cond_signal(&pr->cond);
}

static int64_t next_epoch(bltn_presence *pr)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (us <= pr->last_epoch)
        us = pr->last_epoch + 1;
    pr->last_epoch = us;
    return us;
}

void bltn_presence_connected(bltn_presence *pr, const char *pool, const char *worker,
                             const void *holder)
{
    pthread_mutex_lock(&pr->lock);
    conn **slot = find(pr, worker), *c = *slot;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) {
            pr->failed++;
            pthread_mutex_unlock(&pr->lock);
            return;
        }
        snprintf(c->worker, ID_SIZE, "%s", worker);
        *slot = c;
        pr->nconn++;
    } else if (c->present) {
        /* the worker takes its own connection over here: the old record
         * goes now, the new one once this connection is subscribed */
        push(pr, false, c);
    } else {
        pr->waiting--;
    }
    snprintf(c->pool, ID_SIZE, "%s", pool);
    c->holder = holder;
    c->epoch = next_epoch(pr);
    c->present = false;
    pr->waiting++;
    pthread_mutex_unlock(&pr->lock);
}

/* Lock held. */
static void make_present(bltn_presence *pr, conn *c)
{
    if (c->present)
        return;
    c->present = true;
    pr->waiting--;
    push(pr, true, c);
}

void bltn_presence_subscribed(bltn_presence *pr, const char *worker, const void *holder)
{
    pthread_mutex_lock(&pr->lock);
    conn *c = *find(pr, worker);
    if (c && c->holder == holder)
        make_present(pr, c);
    pthread_mutex_unlock(&pr->lock);
}

void bltn_presence_ended(bltn_presence *pr, const char *worker, const void *holder)
{
    pthread_mutex_lock(&pr->lock);
    conn **slot = find(pr, worker), *c = *slot;
    if (c && c->holder == holder) {
        if (c->present)
            push(pr, false, c);
        else
            pr->waiting--;
        *slot = c->next;
        pr->nconn--;
        free(c);
    }
    pthread_mutex_unlock(&pr->lock);
}

void bltn_presence_check(bltn_presence *pr, int (*ready)(const void *holder))
{
    pthread_mutex_lock(&pr->lock);
    for (unsigned b = 0; pr->waiting && b < BUCKETS; b++)
        for (conn *c = pr->buckets[b]; c; c = c->next)
            if (!c->present && ready(c->holder))
                make_present(pr, c);
    pthread_mutex_unlock(&pr->lock);
}

void bltn_presence_stats_get(bltn_presence *pr, bltn_presence_stats *out)
{
    pthread_mutex_lock(&pr->lock);
    *out = (bltn_presence_stats){pr->recorded, pr->removed, pr->failed, pr->nconn};
    pthread_mutex_unlock(&pr->lock);
}

/* ---- the writer ----------------------------------------------------------- */

/* Every change of a worker's record is told to the replicas' servers
 * (NOTIFY workerbus_presence, "<pool>/<worker>"), which keep which of their
 * workers they may publish to without asking the database; and the
 * holder is woken (workerbus_outbox, "<replica> <pool>/<worker>") when
 * messages wait for the worker. */
static const char SQL_UP[] =
    "WITH up AS ("
    " INSERT INTO workerbus_presence AS p (pool, worker, replica, epoch) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (pool, worker) DO UPDATE SET replica = EXCLUDED.replica,"
    "  epoch = EXCLUDED.epoch, since = now() WHERE p.epoch < EXCLUDED.epoch"
    " RETURNING 1)"
    " SELECT pg_notify('workerbus_presence', $1::text || '/' || $2::text),"
    "  CASE WHEN EXISTS (SELECT 1 FROM workerbus_outbox o WHERE o.pool = $1 AND o.worker = $2)"
    "  THEN pg_notify('workerbus_outbox', $3::text || ' ' || $1::text || '/' || $2::text) END"
    " FROM up";
static const char SQL_DOWN[] =
    "WITH d AS (DELETE FROM workerbus_presence"
    " WHERE pool = $1 AND worker = $2 AND replica = $3 AND epoch = $4 RETURNING 1)"
    " SELECT pg_notify('workerbus_presence', $1::text || '/' || $2::text) FROM d";
static const char SQL_CLEAR[] =
    "WITH d AS (DELETE FROM workerbus_presence WHERE replica = $1 RETURNING pool, worker)"
    " SELECT count(pg_notify('workerbus_presence', pool || '/' || worker)) FROM d";

/* One statement; false when the connection should be dropped. *okp (may
 * be NULL) says whether it succeeded. */
static bool run(bltn_presence *pr, PGconn *c, const char *sql, int n, const char *pool,
                const char *worker, int64_t epoch, const char *what, bool *okp)
{
    char es[24];
    snprintf(es, sizeof es, "%lld", (long long)epoch);
    const char *vals[4];
    if (n == 1)
        vals[0] = pr->replica;
    else {
        vals[0] = pool;
        vals[1] = worker;
        vals[2] = pr->replica;
        vals[3] = es;
    }
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    bool keep = true;
    if (!ok) {
        char *d = wb__pg_describe(c, r, what);
        wb__log(WB_LOG_WARN, "presence", "%s", d ? d : what);
        free(d);
        keep = !wb__pg_is_transient(c, r);
    }
    PQclear(r);
    pthread_mutex_lock(&pr->lock);
    if (!ok)
        pr->failed++;
    pthread_mutex_unlock(&pr->lock);
    if (okp)
        *okp = ok;
    return keep;
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Writes a batch of changes (the lock not held), in one transaction when
 * there are several; false when the connection should be dropped: any
 * failure inside a transaction loses the batch, and the reconnection's
 * resync writes this replica's records again from what it holds. */
static bool write_batch(bltn_presence *pr, PGconn *c, op *batch, unsigned n)
{
    bool several = n > 1, ok = true;
    if (several && !exec_ok(c, "BEGIN"))
        return false;
    for (op *o = batch; o && ok; o = o->next) {
        bool keep = o->up ? run(pr, c, SQL_UP, 4, o->pool, o->worker, o->epoch,
                                "recording a worker's presence", &ok)
                          : run(pr, c, SQL_DOWN, 4, o->pool, o->worker, o->epoch,
                                "removing a worker's presence", &ok);
        if (!keep)
            return false;
        if (!ok && !several)
            return true; /* a statement of its own: the next goes on */
    }
    if (several && (!ok || !exec_ok(c, "COMMIT"))) {
        if (ok)
            wb__log(WB_LOG_WARN, "presence", "committing %u presence changes failed: %s", n,
                    PQerrorMessage(c));
        return false;
    }
    pthread_mutex_lock(&pr->lock);
    for (op *o = batch; o; o = o->next)
        if (o->up)
            pr->recorded++;
        else
            pr->removed++;
    pthread_mutex_unlock(&pr->lock);
    return true;
}

/* After a (re)connection: this replica's records are exactly its present
 * connections. Queued operations are dropped: the snapshot covers them. */
static bool resync(bltn_presence *pr, PGconn *c)
{
    pthread_mutex_lock(&pr->lock);
    while (pr->head) {
        op *o = pr->head;
        pr->head = o->next;
        free(o);
    }
    pr->tail = NULL;
    size_t n = 0, cap = pr->nconn;
    op *snap = cap ? calloc(cap, sizeof *snap) : NULL;
    for (unsigned b = 0; snap && b < BUCKETS; b++)
        for (conn *k = pr->buckets[b]; k; k = k->next)
            if (k->present && n < cap) {
                memcpy(snap[n].pool, k->pool, ID_SIZE);
                memcpy(snap[n].worker, k->worker, ID_SIZE);
                snap[n++].epoch = k->epoch;
            }
    pthread_mutex_unlock(&pr->lock);
    /* one transaction: the others never see this replica's records half
     * written, and thousands of them cost one commit */
    bool ok = exec_ok(c, "BEGIN");
    if (ok)
        run(pr, c, SQL_CLEAR, 1, NULL, NULL, 0, "clearing this replica's presence", &ok);
    for (size_t i = 0; ok && i < n; i++)
        run(pr, c, SQL_UP, 4, snap[i].pool, snap[i].worker, snap[i].epoch,
            "recording a worker's presence", &ok);
    ok = ok && exec_ok(c, "COMMIT");
    free(snap);
    if (ok)
        wb__log(WB_LOG_INFO, "presence", "replica %s holds %zu subscribed worker connection(s)",
                pr->replica, n);
    return ok;
}

static bool stopping(void *ctx)
{
    bltn_presence *pr = ctx;
    pthread_mutex_lock(&pr->lock);
    bool stop = pr->stop;
    pthread_mutex_unlock(&pr->lock);
    return stop;
}

static void *writer_main(void *arg)
{
    bltn_presence *pr = arg;
    PGconn *c = NULL;
    unsigned failures = 0;
    pthread_mutex_lock(&pr->lock);
    while (!pr->stop) {
        if (!c) {
            pthread_mutex_unlock(&pr->lock);
            char *d = NULL;
            /* a stop (Mosquitto ending) does not wait out a connect that
             * the database does not answer */
            c = wb__pg_connect_stoppable(pr->url, "workerbus-presence", "presence", -1, stopping,
                                         pr, &d);
            if (c && wb__pg_migrate(c, "presence", NULL, NULL, &d) != WB_OK) {
                PQfinish(c);
                c = NULL;
            }
            if (c && !resync(pr, c)) {
                PQfinish(c);
                c = NULL;
            }
            pthread_mutex_lock(&pr->lock);
            if (!c && pr->stop) {
                free(d);
                break;
            }
            if (!c) {
                if (failures++ == 0)
                    wb__log(WB_LOG_WARN, "presence",
                            "cannot record presence (%s); retrying, workers connected here "
                            "are routed to once it is back",
                            d ? d : "PostgreSQL");
                free(d);
                wb__cond_wait_ms(&pr->cond, &pr->lock,
                                 wb__backoff_ms(failures, RETRY_MIN_MS, RETRY_MAX_MS));
                continue;
            }
            if (failures)
                wb__log(WB_LOG_INFO, "presence", "recording presence again after %u attempt(s)",
                        failures);
            failures = 0;
            continue;
        }
        if (!pr->head) {
            pthread_cond_wait(&pr->cond, &pr->lock);
            continue;
        }
        /* the oldest changes, in their order */
        op *batch = pr->head, *last = batch;
        unsigned n = 1;
        while (last->next && n < BATCH_MAX) {
            last = last->next;
            n++;
        }
        pr->head = last->next;
        last->next = NULL;
        if (!pr->head)
            pr->tail = NULL;
        pthread_mutex_unlock(&pr->lock);
        bool keep = write_batch(pr, c, batch, n);
        while (batch) {
            op *o = batch;
            batch = o->next;
            free(o);
        }
        pthread_mutex_lock(&pr->lock);
        if (!keep) {
            PQfinish(c);
            c = NULL; /* the reconnection's resync covers what was lost */
        }
    }
    pthread_mutex_unlock(&pr->lock);
    if (c) {
        run(pr, c, SQL_CLEAR, 1, NULL, NULL, 0, "clearing this replica's presence", NULL);
        PQfinish(c);
    }
    return NULL;
}

bltn_presence *bltn_presence_open(const char *url, const char *replica, char **detail)
{
    bltn_presence *pr = calloc(1, sizeof *pr);
    if (!pr || !(pr->url = wb__strdup(url)) || !(pr->replica = wb__strdup(replica))) {
        if (pr) {
            free(pr->url);
            free(pr);
        }
        *detail = wb__strdup("out of memory");
        return NULL;
    }
    pthread_mutex_init(&pr->lock, NULL);
    pthread_cond_init(&pr->cond, NULL);
    if (pthread_create(&pr->thread, NULL, writer_main, pr) != 0) {
        *detail = wb__strdup("cannot start the presence thread");
        bltn_presence_close(pr);
        return NULL;
    }
    pr->started = true;
    return pr;
}

void bltn_presence_close(bltn_presence *pr)
{
    if (!pr)
        return;
    pthread_mutex_lock(&pr->lock);
    pr->stop = true;
    pthread_cond_broadcast(&pr->cond);
    pthread_mutex_unlock(&pr->lock);
    if (pr->started)
        pthread_join(pr->thread, NULL);
    while (pr->head) {
        op *o = pr->head;
        pr->head = o->next;
        free(o);
    }
    for (unsigned b = 0; b < BUCKETS; b++)
        while (pr->buckets[b]) {
            conn *k = pr->buckets[b];
            pr->buckets[b] = k->next;
            free(k);
        }
    pthread_mutex_destroy(&pr->lock);
    pthread_cond_destroy(&pr->cond);
    if (pr->url)
        free(pr->url);
    free(pr->replica);
    free(pr);
}
