/* The PostgreSQL message queue: SQS semantics on two tables.
 *
 * - Every operation is one statement (one round trip), prepared once per
 *   connection; batches travel as arrays (unnest).
 * - Receive claims with FOR UPDATE SKIP LOCKED and, in the same statement,
 *   moves messages received max_receive_count times into the dead-letter
 *   queue. A FIFO receive takes only the oldest message of each group, so a
 *   group's order holds whatever the number of consumers.
 * - Long polls sleep on the connection's socket: a trigger NOTIFYs
 *   workerbus_queue with the queue's name on insert and when an update makes
 *   a message visible; the sleep also ends when the next delayed or in-flight
 *   message of the queue becomes visible. No polling loop.
 * - Concurrent single sends to standard queues are coalesced: one caller
 *   inserts everything pending in one transaction while the others wait, and
 *   each returns once its own row is committed (group commit).
 * - An operation makes one attempt. A lost connection (the database
 *   restarted) is reported as retryable, and the queue core retries it with
 *   backoff for up to wb_queue_opts.retry_limit_ms; a retried send may
 *   duplicate a message (at-least-once), never lose one.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue_backend.h"
#include "listen.h"
#include "pg.h"
#include "wb_internal.h"

#define POOL_MAX          32
#define COALESCE_MAX_ROWS 500
#define HOUSEKEEPING_MS   60000u
#define CHANNEL           "workerbus_queue"
/* The handle VACUUMs the messages table itself after this many deletes,
 * at most once a second and spending at most a tenth of the time between
 * two runs in them (vacuum_due()). */
#define VACUUM_AFTER_ROWS 2000u
#define VACUUM_MIN_GAP_MS 1000u
#define VACUUM_TIME_SHARE 10u

typedef struct pgconn {
    PGconn *c;
    bool ready;  /* statements prepared */
    bool custom; /* plan_cache_mode set to force_custom_plan (statements[].replan);
                    else the session's default */
    /* while a receive holds it: its connect and statements end when
     * *stop_gen moves from stop_at (a wake-up: the drain stops); NULL
     * otherwise */
    const _Atomic unsigned *stop_gen;
    unsigned stop_at;
    /* a handle of one attempt (WB_QUEUE_NO_RETRY): when its statement's
     * connect and answer must be over (wb__now_ms()); 0: no bound */
    uint64_t deadline_ms;
    struct pgconn *next;
} pgconn;

typedef struct pending {
    wb_logical_queue lq;
    const wb_queue_entry *e;
    size_t n;
    char (*ids)[WB_QUEUE_ID_MAX + 1];
    wb_err err;
    char *detail;
    bool done;
    struct pending *next;
} pending;

typedef struct pgq {
    char *url;
    wb_queue_opts opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pgconn *idle;
    unsigned total;
    /* group commit of single sends */
    pthread_mutex_t co_lock;
    pthread_cond_t co_cond;
    pending *head, *tail;
    bool leader;
    _Atomic uint64_t next_housekeeping;
    /* the drain's own VACUUM of the messages table (vacuum_due()) */
    atomic_uint_fast64_t deleted_since_vacuum;
    _Atomic uint64_t next_vacuum;
    /* wb__queue_ops.wake: long polls begun before a wake-up end */
    atomic_uint wake_gen;
    /* The long polls' wake-ups, from the process's listener (on_notify()):
     * each notification for a queue gives that queue a token and wakes one
     * of its waiters, so that one message wakes one claim, not one a
     * thread. */
    pthread_mutex_t n_lock;
    pthread_cond_t n_cond[WB_LQ__COUNT];
    uint64_t notified[WB_LQ__COUNT]; /* notifications so far */
    uint64_t tokens[WB_LQ__COUNT];   /* wake-ups no waiter has taken yet */
    /* notified[] read before the last claim that came back short; until
     * it moves, a claim would find nothing new (messages that become
     * visible again are found by the long polls' timer); UINT64_MAX: no */
    uint64_t drained_at[WB_LQ__COUNT];
    /* the mean gap between notifications (ms, moving average) and the
     * last one's time: a receive lingers only when others are likely to
     * come within its linger */
    double gap_ms[WB_LQ__COUNT];
    uint64_t last_notified_ms[WB_LQ__COUNT];
    /* when the last claim of a queue began, and the claims spaced by the
     * linger wait on spaced[] for a batch's worth of notifications */
    uint64_t last_claim_ms[WB_LQ__COUNT];
    pthread_cond_t spaced[WB_LQ__COUNT];
    /* the process's listener (src/pg/listen.h), subscribed to by the
     * first long poll under lock (whose callbacks never take it) */
    wb__pg_sub *sub;
    bool sub_failed;
    bool listener_ok, listen_failed; /* n_lock */
} pgq;

/* A long poll with nothing to claim sleeps at most this long before it
 * claims again and asks when the next message becomes visible: at a steady
 * load the notifications come first. Also the longest sleep while the
 * listener is down. */
#define QUIET_CHECK_MS 1000

/* How long a drain's deletes may wait for its next claim to carry them
 * (receive_loop()). */
#define ACK_DEFER_MS 50

/* Per-queue settings (facts.md): visibility 300 s (iot 45, webhooks 600);
 * retention 4 days (cronjobs 1 h); dead-letter queues do not redrive. */
static unsigned default_visibility(wb_logical_queue lq)
{
    return lq == WB_LQ_IOT ? 45 : lq == WB_LQ_WEBHOOKS ? 600 : 300;
}
static unsigned retention_s(wb_logical_queue lq)
{
    return lq == WB_LQ_CRONJOBS ? 3600 : 345600;
}
static bool is_dlq(wb_logical_queue lq)
{
    return lq == WB_LQ_DLQ || lq == WB_LQ_DLQ_FIFO;
}

/* ---- statements ---------------------------------------------------------- */

enum {
    ST_SEND,
    ST_SEND1,
    ST_SEND_FIFO,
    ST_CLAIM,
    ST_CLAIM_FIFO,
    ST_DELETE,
    ST_DELETE_CLAIM,
    ST_VISIBILITY,
    ST_COUNTS,
    ST_NEXT_VISIBLE,
    ST_HOUSEKEEPING,
    ST__COUNT
};

/* Claims, deletes and visibility changes commit without waiting for the
 * WAL flush (synchronous_commit off for that statement's transaction only):
 * a PostgreSQL crash can lose the last few of them, which at-least-once
 * delivery allows (the message is delivered again). Sends always wait: a
 * sent message is on disk. set_config(..., true) lasts until the commit. */
#define ASYNC_COMMIT " (SELECT set_config('synchronous_commit', 'off', true)) = 'off'"

/* Waiters LISTEN on CHANNEL; the payload is the queue's name. The
 * statements that make a message visible now, or move its next wake-up
 * (every insert, a delayed one too; a visibility set to 0; a redrive
 * into a dead-letter queue) notify, per row in their RETURNING:
 * PostgreSQL sends one notification per channel and payload per
 * transaction, at its commit. */
#define NOTIFY_QUEUE "pg_notify('" CHANNEL "', queue)"

/* The second half of both claims: $3 visibility s, $4 max receives, $5
 * dead-letter queue; a row received $4 times moves there instead. */
#define CLAIM_UPDATE                                                                               \
    " UPDATE message_queue_messages m SET"                                                         \
    "   queue = CASE WHEN m.receive_count >= $4 THEN $5 ELSE m.queue END,"                         \
    "   visible_at = CASE WHEN m.receive_count >= $4 THEN now()"                                   \
    "     ELSE now() + make_interval(secs => $3) END,"                                             \
    "   receive_count = CASE WHEN m.receive_count >= $4 THEN m.receive_count"                      \
    "     ELSE m.receive_count + 1 END,"                                                           \
    "   receipt = (random() * 9007199254740991)::bigint"                                           \
    " WHERE m.id = ANY (ARRAY(SELECT id FROM c))"                                                  \
    " RETURNING m.id, m.queue = $1, m.receipt, m.body, m.receive_count,"                           \
    "   (extract(epoch FROM m.sent_at) * 1000)::bigint, m.group_id,"                               \
    "   (SELECT pg_notify('" CHANNEL "', $5) WHERE m.queue <> $1)"

/* The first half of a claim: $1 queue, $2 max. */
#define CLAIM_SELECT                                                                               \
    "c AS (SELECT id FROM message_queue_messages WHERE queue = $1"                                 \
    "   AND" ASYNC_COMMIT " AND visible_at <= now() AND expires_at > now()"                        \
    "   ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"

/* A delete by receipts, $1 the queue, IDS and TOKS the receipts' halves as
 * arrays: by primary key only, whatever the planner thinks of the queue's
 * size; the queue and the receipts are checked on the rows found, in an
 * expression no index can serve. */
#define DELETE_RECEIPTS(IDS, TOKS)                                                                 \
    "DELETE FROM message_queue_messages m WHERE m.id = ANY (" IDS "::bigint[]) AND" ASYNC_COMMIT   \
    " AND (m.queue = $1 AND (m.id, m.receipt) IN"                                                  \
    " (SELECT * FROM unnest(" IDS "::bigint[], " TOKS "::bigint[]))) IS TRUE"                      \
    " RETURNING m.id"

/* Every statement is prepared once per connection: parsing and analyzing
 * the claims' SQL at every run cost more than planning it (pgbench, one
 * client, an empty queue: a claim 240 µs unprepared, 140 prepared with a
 * fresh plan, 70 with a generic one). Statements whose best plan depends on the
 * table's size (replan) still get a fresh plan at every run, for the table
 * as it is then: their connection runs with plan_cache_mode set to
 * force_custom_plan. Otherwise a prepared statement switches to a generic
 * plan after five runs, and on an idle queue that plan is made for an
 * empty table and stays when a backlog of 100 000 arrives, until something
 * invalidates it: measured, 360 messages/s drained instead of 36 000, and
 * a generic delete-with-claim made on an empty table finds its rows by id
 * through the claim index, a scan of the whole index. Sends, whose plan is
 * the same at any size, keep the generic plan: a fresh plan at every run
 * cost a send 20-30 µs more. A pooled connection is switched between the
 * two modes by a SET (and back by a RESET, to the database's default) when
 * it must be; acquire() prefers one already in the mode wanted. */
static const struct {
    const char *name;
    const char *sql;
    bool replan;
} statements[ST__COUNT] = {
    [ST_SEND] = {"wb_send",
                 "INSERT INTO message_queue_messages (queue, body, visible_at, expires_at)"
                 " SELECT q, b, now() + make_interval(secs => d), now() + make_interval(secs => r)"
                 " FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) WITH ORDINALITY"
                 " AS t(q, b, d, r, ord) ORDER BY ord RETURNING id, " NOTIFY_QUEUE},
    /* one message: $1 queue, $2 body, $3 delay s, $4 retention s */
    [ST_SEND1] = {"wb_send1",
                  "INSERT INTO message_queue_messages (queue, body, visible_at, expires_at)"
                  " VALUES ($1, $2, now() + make_interval(secs => $3::int),"
                  " now() + make_interval(secs => $4::int)) RETURNING id, " NOTIFY_QUEUE},
    /* $1 queue, $2 bodies, $3 groups, $4 dedup ids, $5 retention: one row
     * per entry, in order, with the id of the message sent or of the one
     * that made it a duplicate in the last 5 minutes, and whether it is new. */
    [ST_SEND_FIFO] =
        {"wb_send_fifo",
         "WITH t AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
         "   AS t(b, g, dd, ord)),"
         " d AS (INSERT INTO message_queue_deduplications AS x"
         "   (queue, group_id, dedup_id, message_id, expires_at)"
         "   SELECT $1, g, dd, nextval(pg_get_serial_sequence('message_queue_messages', 'id')),"
         "   now() + interval '5 minutes' FROM t ORDER BY ord"
         "   ON CONFLICT (queue, group_id, dedup_id) DO UPDATE SET message_id ="
         "   EXCLUDED.message_id, expires_at = EXCLUDED.expires_at WHERE x.expires_at <= now()"
         "   RETURNING group_id, dedup_id, message_id),"
         " ins AS (INSERT INTO message_queue_messages (id, queue, body, group_id, dedup_id,"
         "   expires_at) SELECT d.message_id, $1, t.b, t.g, t.dd, now() +"
         "   make_interval(secs => $5) FROM t JOIN d ON d.group_id = t.g AND d.dedup_id = t.dd"
         "   ORDER BY t.ord RETURNING id, " NOTIFY_QUEUE ")"
         " SELECT coalesce(d.message_id, x.message_id), d.message_id IS NOT NULL FROM t"
         " LEFT JOIN d ON d.group_id = t.g AND d.dedup_id = t.dd"
         " LEFT JOIN message_queue_deduplications x ON x.queue = $1 AND x.group_id = t.g"
         "   AND x.dedup_id = t.dd ORDER BY t.ord"},
    /* $1 queue, $2 max */
    [ST_CLAIM] = {"wb_claim", "WITH " CLAIM_SELECT CLAIM_UPDATE, true},
    /* Only the oldest message of each group is eligible: the heads of the
     * groups, found by skipping through the groups index one group at a
     * time (a few index probes per group, not a pass over every queued
     * message), then those visible now, oldest first. */
    [ST_CLAIM_FIFO] = {"wb_claim_fifo",
                       "WITH RECURSIVE h AS ((SELECT group_id, id FROM message_queue_messages"
                       "   WHERE queue = $1 AND group_id IS NOT NULL ORDER BY group_id, id LIMIT 1)"
                       " UNION ALL SELECT n.group_id, n.id FROM h, LATERAL (SELECT group_id, id"
                       "   FROM message_queue_messages WHERE queue = $1 AND group_id IS NOT NULL"
                       "   AND group_id > h.group_id ORDER BY group_id, id LIMIT 1) n),"
                       " c AS (SELECT m.id FROM message_queue_messages m"
                       "   WHERE m.id = ANY (ARRAY(SELECT id FROM h)) AND" ASYNC_COMMIT
                       "   AND m.visible_at <= now() AND m.expires_at > now()"
                       "   ORDER BY m.id LIMIT $2 FOR UPDATE SKIP LOCKED)" CLAIM_UPDATE,
                       true},
    /* $2 ids, $3 tokens */
    [ST_DELETE] = {"wb_delete", DELETE_RECEIPTS("$2", "$3"), true},
    /* The drain's deletes of what it handled and its next claim, one
     * transaction: $1-$5 as the claim, $6 ids, $7 tokens. The rows deleted
     * are in flight, so the claim cannot see them; a data-modifying WITH
     * runs to its end whether or not the query reads it. */
    [ST_DELETE_CLAIM] = {"wb_delete_claim",
                         "WITH d AS (" DELETE_RECEIPTS("$6", "$7") "), " CLAIM_SELECT CLAIM_UPDATE,
                         true},
    /* visibility 0 makes the message visible now: that wakes waiters */
    [ST_VISIBILITY] = {"wb_visibility",
                       "UPDATE message_queue_messages SET visible_at = now() +"
                       " make_interval(secs => $4) WHERE queue = $1 AND" ASYNC_COMMIT
                       " AND id = $2 AND receipt = $3"
                       " AND visible_at > now() AND receive_count > 0 RETURNING id,"
                       " (SELECT pg_notify('" CHANNEL "', $1) WHERE $4 = 0)"},
    [ST_COUNTS] = {"wb_counts",
                   "SELECT count(*) FILTER (WHERE visible_at <= now()),"
                   " count(*) FILTER (WHERE visible_at > now() AND receive_count > 0),"
                   " count(*) FILTER (WHERE visible_at > now() AND receive_count = 0)"
                   " FROM message_queue_messages WHERE queue = $1 AND expires_at > now()"},
    [ST_NEXT_VISIBLE] = {"wb_next_visible",
                         "SELECT ceil(extract(epoch FROM min(visible_at) - now()) * 1000)::bigint"
                         " FROM message_queue_messages WHERE queue = $1 AND visible_at > now()",
                         true},
    [ST_HOUSEKEEPING] = {"wb_housekeeping",
                         "WITH a AS (DELETE FROM message_queue_messages WHERE expires_at <= now()"
                         " RETURNING 1), b AS (DELETE FROM message_queue_deduplications WHERE"
                         " expires_at <= now() RETURNING 1)"
                         " SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)",
                         true},
};

/* Declared for the benchmarks in bench/hooks.h, not in a header of the
 * backend: the SQL of a statement by name, and whether it is planned afresh
 * at every run (force_custom_plan), for bench-queue's baseline and the
 * plans test. */
const char *wb__pg_statement(const char *name);
bool wb__pg_statement_replanned(const char *name);
bool wb__pg_statement_replanned(const char *name)
{
    for (int i = 0; i < ST__COUNT; i++) {
        if (strcmp(statements[i].name, name) == 0)
            return statements[i].replan;
    }
    return false;
}

const char *wb__pg_statement(const char *name)
{
    for (int i = 0; i < ST__COUNT; i++) {
        if (strcmp(statements[i].name, name) == 0)
            return statements[i].sql;
    }
    return NULL;
}

/* For the plans test (declared there): how many generic and custom plans
 * the handle's idle pooled connections made for the statement name, from
 * their sessions' pg_prepared_statements. priv is the handle's backend
 * state (wb__queue_priv()). Returns false when a connection could not
 * tell. */
bool wb__pg_plan_counts(void *priv, const char *name, long *generic, long *custom);
bool wb__pg_plan_counts(void *priv, const char *name, long *generic, long *custom)
{
    pgq *q = priv;
    bool ok = true;
    *generic = *custom = 0;
    pthread_mutex_lock(&q->lock);
    for (pgconn *pc = q->idle; pc; pc = pc->next) {
        if (!pc->c || !pc->ready)
            continue;
        const char *vals[] = {name};
        PGresult *r = PQexecParams(pc->c,
                                   "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                   " WHERE name = $1",
                                   1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            *generic += atol(PQgetvalue(r, 0, 0));
            *custom += atol(PQgetvalue(r, 0, 1));
        } else {
            ok = false;
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* ---- errors ----------------------------------------------------------- */

/* ---- connections ------------------------------------------------------- */

static bool prepare_all(pgconn *pc, char **detail)
{
    pc->custom = false; /* a new session: plan_cache_mode is its default */
    for (int i = 0; i < ST__COUNT; i++) {
        PGresult *r = PQprepare(pc->c, statements[i].name, statements[i].sql, 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            *detail = wb__pg_describe(pc->c, r, statements[i].name);
        PQclear(r);
        if (!ok)
            return false;
    }
    pc->ready = true;
    return true;
}

/* The longest a handle of one attempt (the plugin's topic rule, on
 * Mosquitto's only thread) waits for the database, connect and statement
 * together: a database that stops answering (a frozen host) holds the
 * broker's thread that long, then the plugin's pause begins, instead of
 * holding it until the kernel gives the connection up. */
#define ONE_ATTEMPT_MS 3000u

static bool past_deadline(const pgconn *pc)
{
    return pc->deadline_ms && wb__now_ms() >= pc->deadline_ms;
}

/* Whether pc's wait for the database ends now: its receive was woken to
 * stop, or its one attempt's time is over. */
static bool wait_ends(void *ctx)
{
    const pgconn *pc = ctx;
    return (pc->stop_gen && atomic_load(pc->stop_gen) != pc->stop_at) || past_deadline(pc);
}

/* Why a wait for the database ended (wait_ends()), for *detail. */
static char *why_ended(const pgconn *pc, const char *what)
{
    return past_deadline(pc)
               ? wb__asprintf("PostgreSQL, %s: no answer within %u ms, the one attempt's time "
                              "(WB_QUEUE_NO_RETRY); the connection is closed",
                              what, ONE_ATTEMPT_MS)
               : wb__asprintf("PostgreSQL, %s: left unanswered, ended by a stop "
                              "(wb_drain_stop())",
                              what);
}

/* Makes pc usable: (re)connects and prepares. A receive's connect ends at
 * a wake-up, and one attempt's at its deadline, even while the database
 * does not answer. */
static bool conn_ready(pgq *q, pgconn *pc, char **detail)
{
    if (pc->c && PQstatus(pc->c) == CONNECTION_OK && pc->ready)
        return true;
    if (pc->c)
        PQfinish(pc->c);
    pc->ready = false;
    bool bounded = pc->stop_gen || pc->deadline_ms;
    pc->c = wb__pg_connect_stoppable(q->url, "workerbus", "queue", -1, bounded ? wait_ends : NULL,
                                     pc, detail);
    if (!pc->c && !*detail)
        *detail = why_ended(pc, "connecting");
    return pc->c && prepare_all(pc, detail);
}

/* A pooled connection for statement st: an idle one in st's planning mode
 * if there is one, else any idle one, else a new one while the pool has
 * room; else waits. */
static pgconn *acquire(pgq *q, int st)
{
    pthread_mutex_lock(&q->lock);
    for (;;) {
        if (q->idle) {
            pgconn **at = &q->idle;
            while (*at && (*at)->custom != statements[st].replan)
                at = &(*at)->next;
            if (!*at)
                at = &q->idle;
            pgconn *pc = *at;
            *at = pc->next;
            pthread_mutex_unlock(&q->lock);
            return pc;
        }
        if (q->total < POOL_MAX) {
            q->total++;
            pthread_mutex_unlock(&q->lock);
            pgconn *pc = calloc(1, sizeof *pc);
            if (!pc) {
                pthread_mutex_lock(&q->lock);
                q->total--;
                pthread_mutex_unlock(&q->lock);
            }
            return pc;
        }
        pthread_cond_wait(&q->cond, &q->lock);
    }
}

/* acquire() for a receive begun at wake generation gen. */
static pgconn *acquire_receiving(pgq *q, int st, unsigned gen)
{
    pgconn *pc = acquire(q, st);
    if (pc) {
        pc->stop_gen = &q->wake_gen;
        pc->stop_at = gen;
    }
    return pc;
}

static void release(pgq *q, pgconn *pc)
{
    if (!pc)
        return;
    pc->stop_gen = NULL;
    pthread_mutex_lock(&q->lock);
    pc->next = q->idle;
    q->idle = pc;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

/* Runs a prepared statement once. A pooled connection found broken (the
 * server restarted since its last use) is replaced at once and the
 * statement run on the new one: that is not a retry, as the database never
 * saw the statement. Returns a result of the expected status, or NULL with
 * *detail and *err set: wb__retryable(WB_ERR_CONNECTION_LOST) when the
 * failure is transient (the core retries it), else WB_ERR_BACKEND. */
static PGresult *run(pgq *q, pgconn *pc, int st, int n, const char *const *vals,
                     ExecStatusType want, wb_err *err, char **detail)
{
    pc->deadline_ms =
        q->opts.retry_limit_ms == WB_QUEUE_NO_RETRY ? wb__now_ms() + ONE_ATTEMPT_MS : 0;
    for (int pass = 0;; pass++) {
        char *d = NULL;
        bool transient = true;
        bool was_open = pc->c && pc->ready;
        if (conn_ready(q, pc, &d)) {
            PGresult *r = NULL;
            if (pc->custom != statements[st].replan) {
                r = PQexec(pc->c, statements[st].replan ? "SET plan_cache_mode = force_custom_plan"
                                                        : "RESET plan_cache_mode");
                if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                    pc->custom = statements[st].replan;
                    PQclear(r);
                    r = NULL;
                }
            }
            if (!r && (pc->stop_gen || pc->deadline_ms)) {
                /* a receive's statement, or one attempt's: a stop or the
                 * deadline does not wait for a database that stopped
                 * answering; the connection, mid-statement, goes */
                bool stopped = false;
                r = wb__pg_exec_prepared_stoppable(pc->c, statements[st].name, n, vals, NULL, NULL,
                                                   0, wait_ends, pc, &stopped);
                if (stopped) {
                    *detail = why_ended(pc, statements[st].name);
                    PQfinish(pc->c);
                    pc->c = NULL;
                    pc->ready = false;
                    *err = wb__retryable(WB_ERR_CONNECTION_LOST);
                    return NULL;
                }
            } else if (!r) {
                r = PQexecPrepared(pc->c, statements[st].name, n, vals, NULL, NULL, 0);
            }
            if (PQresultStatus(r) == want)
                return r;
            transient = wb__pg_is_transient(pc->c, r);
            d = wb__pg_describe(pc->c, r, statements[st].name);
            PQclear(r);
            if (transient && pc->c && PQstatus(pc->c) != CONNECTION_OK)
                pc->ready = false;
        }
        if (pass == 0 && transient && was_open && !pc->ready) {
            free(d);
            continue;
        }
        *err = transient ? wb__retryable(WB_ERR_CONNECTION_LOST) : WB_ERR_BACKEND;
        *detail = d;
        return NULL;
    }
}

/* ---- array literals ---------------------------------------------------- */

static void array_elem(wb__buf *b, const char *s, size_t n, bool first)
{
    if (!first)
        wb__buf_putc(b, ',');
    if (!s) {
        wb__buf_puts(b, "NULL");
        return;
    }
    wb__buf_putc(b, '"');
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            wb__buf_append(b, s + from, i - from);
            wb__buf_putc(b, '\\');
            from = i;
        }
    }
    wb__buf_append(b, s + from, n - from);
    wb__buf_putc(b, '"');
}

static void array_uint(wb__buf *b, uint64_t v, bool first)
{
    wb__buf_printf(b, "%s%" PRIu64, first ? "" : ",", v);
}

/* ---- send ---------------------------------------------------------------- */

/* One message of a standard queue: the single-row statement (the arrays
 * of the batch statement cost a topic rule's insert a tenth more). */
static wb_err insert_one(pgq *q, pending *p, char **detail)
{
    const char *name = wb_logical_queue_name(p->lq);
    char *body = wb__strndup(p->e[0].body, p->e[0].body_len);
    char delay[16], keep[16];
    snprintf(delay, sizeof delay, "%u", p->e[0].delay_s);
    snprintf(keep, sizeof keep, "%u", retention_s(p->lq));
    const char *vals[] = {name, body, delay, keep};
    pgconn *pc = body ? acquire(q, ST_SEND1) : NULL;
    wb_err err = WB_ERR_NO_MEMORY;
    PGresult *r = pc ? run(q, pc, ST_SEND1, 4, vals, PGRES_TUPLES_OK, &err, detail) : NULL;
    if (r && PQntuples(r) != 1) {
        err = WB_ERR_BACKEND;
        *detail = wb__asprintf("PostgreSQL returned %d ids for 1 message", PQntuples(r));
    } else if (r) {
        err = WB_OK;
        snprintf(p->ids[0], WB_QUEUE_ID_MAX + 1, "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    release(q, pc);
    free(body);
    return err;
}

/* Inserts the entries of every pending request of the list (standard
 * queues) in one statement. */
static wb_err insert_standard(pgq *q, pending *list, char **detail)
{
    if (!list->next && list->n == 1)
        return insert_one(q, list, detail);
    wb__buf qs = WB__BUF_INIT, bs = WB__BUF_INIT, ds = WB__BUF_INIT, rs = WB__BUF_INIT;
    wb__buf_putc(&qs, '{');
    wb__buf_putc(&bs, '{');
    wb__buf_putc(&ds, '{');
    wb__buf_putc(&rs, '{');
    bool first = true;
    size_t rows = 0;
    for (pending *p = list; p; p = p->next) {
        const char *name = wb_logical_queue_name(p->lq);
        for (size_t i = 0; i < p->n; i++, rows++) {
            array_elem(&qs, name, strlen(name), first);
            array_elem(&bs, p->e[i].body, p->e[i].body_len, first);
            array_uint(&ds, p->e[i].delay_s, first);
            array_uint(&rs, retention_s(p->lq), first);
            first = false;
        }
    }
    wb__buf_putc(&qs, '}');
    wb__buf_putc(&bs, '}');
    wb__buf_putc(&ds, '}');
    wb__buf_putc(&rs, '}');
    wb_err err = WB_OK;
    if (qs.failed || bs.failed || ds.failed || rs.failed) {
        err = WB_ERR_NO_MEMORY;
    } else {
        const char *vals[] = {qs.data, bs.data, ds.data, rs.data};
        pgconn *pc = acquire(q, ST_SEND);
        PGresult *r = pc ? run(q, pc, ST_SEND, 4, vals, PGRES_TUPLES_OK, &err, detail) : NULL;
        if (!pc)
            err = WB_ERR_NO_MEMORY;
        if (r && (size_t)PQntuples(r) != rows) {
            err = WB_ERR_BACKEND;
            *detail =
                wb__asprintf("PostgreSQL returned %d ids for %zu messages", PQntuples(r), rows);
        } else if (r) {
            int row = 0;
            for (pending *p = list; p; p = p->next) {
                for (size_t i = 0; i < p->n; i++, row++)
                    snprintf(p->ids[i], WB_QUEUE_ID_MAX + 1, "%s", PQgetvalue(r, row, 0));
            }
        }
        PQclear(r);
        release(q, pc);
    }
    wb__buf_free(&qs);
    wb__buf_free(&bs);
    wb__buf_free(&ds);
    wb__buf_free(&rs);
    return err;
}

/* Group commit: joins the list of pending sends; whoever finds no insert
 * running takes the whole list (up to COALESCE_MAX_ROWS rows) and inserts it
 * in one transaction. */
static wb_err send_coalesced(pgq *q, pending *me, char **detail)
{
    pthread_mutex_lock(&q->co_lock);
    if (q->tail)
        q->tail->next = me;
    else
        q->head = me;
    q->tail = me;
    while (!me->done) {
        if (q->leader) {
            pthread_cond_wait(&q->co_cond, &q->co_lock);
            continue;
        }
        q->leader = true;
        pending *batch = q->head, *last = q->head;
        size_t rows = last->n;
        while (last->next && rows + last->next->n <= COALESCE_MAX_ROWS) {
            last = last->next;
            rows += last->n;
        }
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&q->co_lock);

        char *d = NULL;
        wb_err err = insert_standard(q, batch, &d);

        pthread_mutex_lock(&q->co_lock);
        for (pending *p = batch; p; p = p->next) {
            p->err = err;
            p->detail = d && p != batch ? wb__strdup(d) : NULL;
            p->done = true;
        }
        batch->detail = d;
        q->leader = false;
        pthread_cond_broadcast(&q->co_cond);
    }
    pthread_mutex_unlock(&q->co_lock);
    *detail = me->detail;
    return me->err;
}

static wb_err send_fifo(pgq *q, wb_logical_queue lq, const wb_queue_entry *e, size_t n,
                        char (*ids)[WB_QUEUE_ID_MAX + 1], char **detail)
{
    /* An entry repeating an earlier one of the batch (group and
     * deduplication id) is that one's duplicate: send each key once. */
    size_t first_of[WB_QUEUE_BATCH_MAX];
    wb__buf bs = WB__BUF_INIT, gs = WB__BUF_INIT, ds = WB__BUF_INIT;
    wb__buf_putc(&bs, '{');
    wb__buf_putc(&gs, '{');
    wb__buf_putc(&ds, '{');
    size_t sent = 0;
    size_t row_of[WB_QUEUE_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        first_of[i] = i;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(e[i].group_id, e[j].group_id) == 0 &&
                strcmp(e[i].dedup_id, e[j].dedup_id) == 0) {
                first_of[i] = j;
                break;
            }
        }
        if (first_of[i] != i)
            continue;
        row_of[i] = sent;
        array_elem(&bs, e[i].body, e[i].body_len, sent == 0);
        array_elem(&gs, e[i].group_id, strlen(e[i].group_id), sent == 0);
        array_elem(&ds, e[i].dedup_id, strlen(e[i].dedup_id), sent == 0);
        sent++;
    }
    wb__buf_putc(&bs, '}');
    wb__buf_putc(&gs, '}');
    wb__buf_putc(&ds, '}');
    char ret[16];
    snprintf(ret, sizeof ret, "%u", retention_s(lq));
    wb_err err = WB_OK;
    if (bs.failed || gs.failed || ds.failed) {
        err = WB_ERR_NO_MEMORY;
    } else {
        const char *vals[] = {wb_logical_queue_name(lq), bs.data, gs.data, ds.data, ret};
        pgconn *pc = acquire(q, ST_SEND_FIFO);
        PGresult *r = pc ? run(q, pc, ST_SEND_FIFO, 5, vals, PGRES_TUPLES_OK, &err, detail) : NULL;
        if (!pc)
            err = WB_ERR_NO_MEMORY;
        if (r && (size_t)PQntuples(r) != sent) {
            err = WB_ERR_BACKEND;
            *detail =
                wb__asprintf("PostgreSQL returned %d rows for %zu messages", PQntuples(r), sent);
        } else if (r) {
            for (size_t i = 0; i < n; i++)
                snprintf(ids[i], WB_QUEUE_ID_MAX + 1, "%s",
                         PQgetvalue(r, (int)row_of[first_of[i]], 0));
        }
        PQclear(r);
        release(q, pc);
    }
    wb__buf_free(&bs);
    wb__buf_free(&gs);
    wb__buf_free(&ds);
    return err;
}

static wb_err pg_send_batch(void *priv, wb_logical_queue lq, const wb_queue_entry *entries,
                            size_t n, char (*ids)[WB_QUEUE_ID_MAX + 1], wb_err *results,
                            char **detail)
{
    pgq *q = priv;
    wb_err err;
    if (wb_logical_queue_is_fifo(lq)) {
        err = send_fifo(q, lq, entries, n, ids, detail);
    } else {
        pending me = {.lq = lq, .e = entries, .n = n, .ids = ids};
        err = send_coalesced(q, &me, detail);
    }
    /* One statement: every entry shares its fate. */
    for (size_t i = 0; i < n; i++)
        results[i] = wb__err_code(err);
    return err;
}

/* ---- receive ------------------------------------------------------------- */

static void housekeeping(pgq *q, pgconn *pc)
{
    uint64_t now = wb__now_ms(), due = atomic_load(&q->next_housekeeping);
    if (now < due ||
        !atomic_compare_exchange_strong(&q->next_housekeeping, &due, now + HOUSEKEEPING_MS))
        return;
    wb_err err;
    char *d = NULL;
    PGresult *r = run(q, pc, ST_HOUSEKEEPING, 0, NULL, PGRES_TUPLES_OK, &err, &d);
    if (!r) {
        wb__log(WB_LOG_WARN, "queue", "removing expired messages: %s", d ? d : "");
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0) {
        wb__log(WB_LOG_INFO, "queue", "removed %s messages past their retention period",
                PQgetvalue(r, 0, 0));
    }
    free(d);
    PQclear(r);
}

/* ---- deletes: receipts, the VACUUM they call for -------------------------- */

/* Every message leaves two dead row versions in the claim index: the one
 * its claim replaced (at its first visible_at) and the one its delete
 * removed (at the end of its visibility timeout, which the claims' range
 * reaches once that time has passed). Autovacuum looks at a table at most
 * once a minute (autovacuum_naptime), and until then each claim steps over
 * every dead entry of the range: measured at 1000 msg/s, a claim's
 * execution took 780 us, against 100 us right after a VACUUM. So the handle
 * runs VACUUM itself after VACUUM_AFTER_ROWS deletes, at most once every
 * VACUUM_MIN_GAP_MS and never more than 1/VACUUM_TIME_SHARE of the time
 * (a VACUUM of a table with a large backlog takes longer, and is run less
 * often). SKIP_LOCKED: when autovacuum or another replica's handle is at
 * it, this one passes. VACUUM needs PostgreSQL 12 for its options, and
 * ownership of the table, which the role that ran the migrations has; a
 * role that does not own it gets a warning from the server and nothing
 * done, as with older servers, where the handle leaves it to autovacuum. */
static void vacuum_due(pgq *q, pgconn *pc, uint64_t deleted)
{
    if (atomic_fetch_add(&q->deleted_since_vacuum, deleted) + deleted < VACUUM_AFTER_ROWS)
        return;
    uint64_t now = wb__now_ms(), due = atomic_load(&q->next_vacuum);
    if (now < due || !atomic_compare_exchange_strong(&q->next_vacuum, &due, UINT64_MAX))
        return; /* not yet, or another thread runs it */
    atomic_store(&q->deleted_since_vacuum, 0);
    uint64_t took = 0;
    if (pc->c && PQserverVersion(pc->c) >= 120000) {
        PGresult *r =
            PQexec(pc->c, "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) message_queue_messages");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            wb__log(WB_LOG_DEBUG, "queue", "VACUUM of message_queue_messages: %s",
                    PQresultErrorMessage(r));
        PQclear(r);
        took = wb__now_ms() - now;
    }
    uint64_t gap = took * VACUUM_TIME_SHARE;
    atomic_store(&q->next_vacuum,
                 wb__now_ms() + (gap > VACUUM_MIN_GAP_MS ? gap : VACUUM_MIN_GAP_MS));
}

/* "<id>.<token>", both decimal. */
static bool parse_receipt(const char *r, uint64_t *id, uint64_t *tok)
{
    char *end;
    errno = 0;
    if (*r < '0' || *r > '9')
        return false;
    *id = strtoull(r, &end, 10);
    if (errno || *end != '.' || end[1] < '0' || end[1] > '9')
        return false;
    *tok = strtoull(end + 1, &end, 10);
    return !errno && *end == '\0';
}

/* The receipts as two array literals (ids, tokens) of the well-formed
 * ones, whose results are WB_OK; the others' are WB_ERR_INVALID_ARGUMENT,
 * and so is the return, with *detail naming the first. */
static wb_err receipt_arrays(const char *const *receipts, size_t n, wb_err *results, wb__buf *ids,
                             wb__buf *toks, size_t *good, char **detail)
{
    wb__buf_putc(ids, '{');
    wb__buf_putc(toks, '{');
    *good = 0;
    wb_err first_bad = WB_OK;
    for (size_t i = 0; i < n; i++) {
        uint64_t id, tok;
        if (!parse_receipt(receipts[i], &id, &tok)) {
            results[i] = WB_ERR_INVALID_ARGUMENT;
            if (!first_bad) {
                first_bad = WB_ERR_INVALID_ARGUMENT;
                *detail = wb__asprintf("receipt %zu is not a PostgreSQL queue receipt "
                                       "(<id>.<token>, as wb_queue_receive() gives)",
                                       i);
            }
            continue;
        }
        results[i] = WB_OK;
        array_uint(ids, id, *good == 0);
        array_uint(toks, tok, *good == 0);
        ++*good;
    }
    wb__buf_putc(ids, '}');
    wb__buf_putc(toks, '}');
    return first_bad;
}

/* Deletes to make (pg_delete_batch(), pg_delete_receive()): the receipts
 * as two array literals, done once they are deleted. */
typedef struct acks {
    wb__buf ids, toks;
    size_t good;     /* well-formed receipts */
    wb_err *results; /* the caller's, one per receipt */
    size_t n;
    bool pending;
} acks;

/* A failure of the deletes: every well-formed receipt's result. */
static void acks_failed(acks *a, wb_err err)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->results[i] == WB_OK)
            a->results[i] = err;
}

/* The well-formed receipts of n into a (a->pending when there is any);
 * results[] as receipt_arrays() leaves them. WB_ERR_NO_MEMORY, or what
 * receipt_arrays() returns. */
static wb_err acks_make(acks *a, const char *const *receipts, size_t n, wb_err *results,
                        char **detail)
{
    *a = (acks){.ids = WB__BUF_INIT, .toks = WB__BUF_INIT, .results = results, .n = n};
    wb_err bad = receipt_arrays(receipts, n, results, &a->ids, &a->toks, &a->good, detail);
    if (a->ids.failed || a->toks.failed) {
        acks_failed(a, WB_ERR_NO_MEMORY);
        return WB_ERR_NO_MEMORY;
    }
    a->pending = a->good > 0;
    return bad;
}

static void acks_free(acks *a)
{
    wb__buf_free(&a->ids);
    wb__buf_free(&a->toks);
}

/* The deletes alone (a receive about to wait long, or a delete batch). */
static wb_err delete_acks(pgq *q, pgconn *pc, wb_logical_queue lq, acks *a, char **detail)
{
    const char *vals[] = {wb_logical_queue_name(lq), a->ids.data, a->toks.data};
    wb_err err = WB_OK;
    PGresult *r = run(q, pc, ST_DELETE, 3, vals, PGRES_TUPLES_OK, &err, detail);
    if (!r)
        return err;
    a->pending = false;
    vacuum_due(q, pc, (uint64_t)PQntuples(r));
    PQclear(r);
    return WB_OK;
}

/* Claims up to max messages; with deletes pending (a), deletes them in the
 * same transaction. */
static wb_err claim(pgq *q, pgconn *pc, wb_logical_queue lq, unsigned max, unsigned vis, acks *a,
                    wb_queue_message **out, size_t *n, char **detail)
{
    char smax[16], svis[16], smaxrc[16];
    snprintf(smax, sizeof smax, "%u", max);
    snprintf(svis, sizeof svis, "%u", vis);
    snprintf(smaxrc, sizeof smaxrc, "%u", is_dlq(lq) ? 2147483647u : q->opts.max_receive_count);
    bool fifo = wb_logical_queue_is_fifo(lq);
    const char *dead = wb_logical_queue_name(fifo ? WB_LQ_DLQ_FIFO : WB_LQ_DLQ);
    bool acking = a && a->pending && !fifo;
    const char *vals[] = {
        wb_logical_queue_name(lq),   smax, svis, smaxrc, dead, acking ? a->ids.data : NULL,
        acking ? a->toks.data : NULL};
    wb_err err = WB_OK;
    int st = acking ? ST_DELETE_CLAIM : fifo ? ST_CLAIM_FIFO : ST_CLAIM;
    if (a && a->pending && !acking && (err = delete_acks(q, pc, lq, a, detail)) != WB_OK)
        return err;
    PGresult *r = run(q, pc, st, acking ? 7 : 5, vals, PGRES_TUPLES_OK, &err, detail);
    if (!r)
        return err;
    if (acking) {
        a->pending = false;
        vacuum_due(q, pc, a->good); /* the deletes' count is not returned: at most this */
    }
    int rows = PQntuples(r);
    wb_queue_message *m = rows ? calloc((size_t)rows, sizeof *m) : NULL;
    size_t k = 0, moved = 0;
    for (int i = 0; i < rows && m; i++) {
        if (strcmp(PQgetvalue(r, i, 1), "t") != 0) {
            moved++;
            continue;
        }
        wb_queue_message *x = &m[k++];
        x->id = wb__strdup(PQgetvalue(r, i, 0));
        x->receipt = wb__asprintf("%s.%s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 2));
        x->body_len = (size_t)PQgetlength(r, i, 3);
        x->body = wb__strndup(PQgetvalue(r, i, 3), x->body_len);
        x->receive_count = (unsigned)strtoul(PQgetvalue(r, i, 4), NULL, 10);
        x->sent_ms = strtoull(PQgetvalue(r, i, 5), NULL, 10);
        x->group_id = PQgetisnull(r, i, 6) ? NULL : wb__strdup(PQgetvalue(r, i, 6));
        if (!x->id || !x->receipt || !x->body || (!PQgetisnull(r, i, 6) && !x->group_id)) {
            err = WB_ERR_NO_MEMORY;
            break;
        }
    }
    PQclear(r);
    if (moved)
        wb__log(WB_LOG_WARN, "queue",
                "%zu message(s) of %s received %u times moved to %s (the dead-letter queue)", moved,
                wb_logical_queue_name(lq), q->opts.max_receive_count, dead);
    if ((rows && !m) || err) {
        wb_queue_messages_free(m, k);
        *detail = wb__strdup("out of memory reading received messages");
        return WB_ERR_NO_MEMORY;
    }
    if (k == 0) {
        free(m);
        m = NULL;
    }
    *out = m;
    *n = k;
    return WB_OK;
}

/* Milliseconds until the next message of the queue becomes visible, or -1. */
static long long next_visible_ms(pgq *q, pgconn *pc, const char *name)
{
    wb_err err;
    char *d = NULL;
    const char *vals[] = {name};
    PGresult *r = run(q, pc, ST_NEXT_VISIBLE, 1, vals, PGRES_TUPLES_OK, &err, &d);
    free(d);
    long long ms = -1;
    if (r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        ms = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return ms < 0 ? (r ? -1 : 1000) : ms;
}

/* ---- the listener --------------------------------------------------------- */

static int lq_of(const char *name)
{
    for (int i = 0; i < WB_LQ__COUNT; i++)
        if (strcmp(name, wb_logical_queue_name((wb_logical_queue)i)) == 0)
            return i;
    return -1;
}

/* Lock held: every queue's waiters look again (a notification may have been
 * missed, or the handle is waking its long polls). */
static void wake_all_locked(pgq *q)
{
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        q->notified[i]++;
        q->tokens[i]++;
        pthread_cond_broadcast(&q->n_cond[i]);
        pthread_cond_broadcast(&q->spaced[i]);
    }
}

/* The process's listener (src/pg/listen.h) hands over a notification: the
 * payload is a queue's name. */
static void on_notify(void *ctx, const char *channel, const char *payload)
{
    (void)channel;
    pgq *q = ctx;
    int i = lq_of(payload);
    if (i < 0)
        return;
    pthread_mutex_lock(&q->n_lock);
    uint64_t t = wb__now_ms();
    double gap = q->last_notified_ms[i] ? (double)(t - q->last_notified_ms[i]) : 1e6;
    q->gap_ms[i] = q->gap_ms[i] * 0.875 + (gap > 1e6 ? 1e6 : gap) * 0.125;
    q->last_notified_ms[i] = t;
    q->notified[i]++;
    q->tokens[i]++;
    pthread_cond_signal(&q->n_cond[i]); /* one waiter a notification */
    if (q->drained_at[i] != UINT64_MAX && q->notified[i] - q->drained_at[i] >= WB_QUEUE_BATCH_MAX)
        pthread_cond_broadcast(&q->spaced[i]); /* a batch is waiting */
    pthread_mutex_unlock(&q->n_lock);
}

/* Heard again (what was sent while nobody listened is looked for), or
 * lost: long polls wake on their timer until it is back. */
static void on_listen_state(void *ctx, bool heard, const char *why)
{
    pgq *q = ctx; /* told once per change */
    pthread_mutex_lock(&q->n_lock);
    bool failed_before = q->listen_failed;
    q->listener_ok = heard;
    q->listen_failed = !heard;
    wake_all_locked(q);
    pthread_mutex_unlock(&q->n_lock);
    if (!heard)
        wb__log(WB_LOG_WARN, "queue",
                "cannot listen for new messages (%s): long polls wake on their timer, once a "
                "second, until it is back",
                why ? why : "PostgreSQL");
    else if (heard && failed_before)
        wb__log(WB_LOG_INFO, "queue", "listening for new messages again");
}

/* Subscribes to the process's listener once. Not under n_lock: the
 * listener calls back under its own lock and then takes n_lock. */
static void listener_start(pgq *q)
{
    pthread_mutex_lock(&q->lock);
    if (!q->sub && !q->sub_failed) {
        static const wb__pg_sub_ops ops = {.notify = on_notify, .state = on_listen_state};
        const char *channels[] = {CHANNEL};
        q->sub = wb__pg_subscribe(q->url, channels, 1, &ops, q);
        if (!q->sub) {
            q->sub_failed = true;
            wb__log(WB_LOG_WARN, "queue",
                    "cannot start the listener: long polls wake on their timer");
        }
    }
    pthread_mutex_unlock(&q->lock);
}

/* The claims of a queue by this handle's long polls begin at least
 * receive_linger_ms apart while messages come more often than that and
 * fewer than a batch wait: the receive that would claim sooner waits for
 * the rest of the linger, so that at a steady load the polls take turns
 * with batches instead of claiming one message each as soon as it comes.
 * Returns the notifications counted before the claim. */
static uint64_t space_claims(pgq *q, wb_logical_queue lq, unsigned max, unsigned gen)
{
    unsigned linger = q->opts.receive_linger_ms;
    pthread_mutex_lock(&q->n_lock);
    uint64_t until = q->last_claim_ms[lq] + linger;
    for (;;) {
        uint64_t t = wb__now_ms();
        if (t >= until || q->gap_ms[lq] >= (double)linger || q->drained_at[lq] == UINT64_MAX ||
            q->notified[lq] - q->drained_at[lq] >= max || atomic_load(&q->wake_gen) != gen)
            break;
        wb__cond_wait_ms(&q->spaced[lq], &q->n_lock, (unsigned)(until - t));
    }
    q->last_claim_ms[lq] = wb__now_ms();
    uint64_t seen = q->notified[lq];
    pthread_mutex_unlock(&q->n_lock);
    return seen;
}

/* A long poll (pg_receive()), deleting a's receipts first when given:
 * in the transaction of its first claim, or alone before it waits; while
 * messages come often (less than ACK_DEFER_MS apart), the deletes wait up
 * to that long for the claim that the next message's notification brings,
 * so that a steady stream costs the drain one transaction per batch. */
static wb_err receive_loop(pgq *q, wb_logical_queue lq, unsigned max, unsigned wait_s,
                           int visibility_s, acks *a, wb_queue_message **out, size_t *n,
                           char **detail)
{
    const char *name = wb_logical_queue_name(lq);
    unsigned vis = visibility_s < 0 ? default_visibility(lq) : (unsigned)visibility_s;
    uint64_t deadline = wb__now_ms() + (uint64_t)wait_s * 1000u;
    unsigned gen = atomic_load(&q->wake_gen);
    /* FIFO queues claim every time: a group frees up on a delete, which
     * notifies nobody */
    bool may_skip = wait_s && !wb_logical_queue_is_fifo(lq);
    if (wait_s)
        listener_start(q);
    pthread_mutex_lock(&q->n_lock);
    uint64_t seen = q->notified[lq];
    /* nothing arrived since the last claim came back short: wait first */
    bool skip = may_skip && q->listener_ok && q->drained_at[lq] == seen && q->tokens[lq] == 0;
    pthread_mutex_unlock(&q->n_lock);
    *out = NULL;
    *n = 0;
    pgconn *pc = acquire_receiving(q, ST_CLAIM, gen);
    if (!pc) {
        if (a && a->pending)
            acks_failed(a, WB_ERR_NO_MEMORY);
        return WB_ERR_NO_MEMORY;
    }
    housekeeping(q, pc);
    wb_err err = WB_OK;
    bool quiet = false;
    for (;;) {
        if (!skip && may_skip && q->opts.receive_linger_ms)
            seen = space_claims(q, lq, max, gen);
        if (!skip) {
            err = claim(q, pc, lq, max, vis, a, out, n, detail);
            if (err)
                break;
            pthread_mutex_lock(&q->n_lock);
            if (*n < max) {
                /* all notified before seen is claimed: only later ones count */
                q->drained_at[lq] = seen;
                q->tokens[lq] = q->notified[lq] - seen;
            } else {
                /* a full batch: more may wait, for another waiter */
                q->drained_at[lq] = UINT64_MAX;
                q->tokens[lq]++;
                pthread_cond_signal(&q->n_cond[lq]);
            }
            pthread_mutex_unlock(&q->n_lock);
            if (*n > 0)
                break;
        }
        skip = false;
        uint64_t now = wb__now_ms();
        if (now >= deadline || atomic_load(&q->wake_gen) != gen)
            break;
        long long wake = (long long)(deadline - now);
        pthread_mutex_lock(&q->n_lock);
        bool listening = q->listener_ok;
        bool often = q->gap_ms[lq] < (double)ACK_DEFER_MS;
        pthread_mutex_unlock(&q->n_lock);
        if (!quiet || !listening) {
            if (wake > QUIET_CHECK_MS)
                wake = QUIET_CHECK_MS;
        } else {
            long long next = next_visible_ms(q, pc, name);
            if (next >= 0 && next < wake)
                wake = next;
        }
        /* deletes held for the next claim wait only so long */
        bool capped = false;
        if (a && a->pending) {
            if (!often || !listening) {
                if ((err = delete_acks(q, pc, lq, a, detail)) != WB_OK)
                    break;
            } else if (wake > ACK_DEFER_MS) {
                wake = ACK_DEFER_MS;
                capped = true;
            }
        }
        /* the connection goes back to the pool while this poll sleeps */
        release(q, pc);
        pc = NULL;
        uint64_t until = wb__now_ms() + (uint64_t)(wake < 0 ? 0 : wake);
        bool woke = false;
        pthread_mutex_lock(&q->n_lock);
        for (;;) {
            if (q->tokens[lq] > 0) {
                q->tokens[lq]--;
                woke = true;
                break;
            }
            uint64_t t = wb__now_ms();
            if (t >= until || atomic_load(&q->wake_gen) != gen)
                break;
            wb__cond_wait_ms(&q->n_cond[lq], &q->n_lock, (unsigned)(until - t));
        }
        /* Linger: woken by a message after the queue was drained, wait a
         * little more for others to arrive (their tokens are this claim's),
         * so that one claim and one delete take several; only when messages
         * come more often than the linger (else it would add its latency
         * for nothing) */
        if (woke && q->opts.receive_linger_ms && q->drained_at[lq] != UINT64_MAX &&
            q->gap_ms[lq] < (double)q->opts.receive_linger_ms) {
            uint64_t end = wb__now_ms() + q->opts.receive_linger_ms;
            for (;;) {
                q->tokens[lq] = 0;
                uint64_t t = wb__now_ms();
                if (t >= end || q->notified[lq] - q->drained_at[lq] >= max ||
                    atomic_load(&q->wake_gen) != gen)
                    break;
                wb__cond_wait_ms(&q->n_cond[lq], &q->n_lock, (unsigned)(end - t));
            }
        }
        seen = q->notified[lq];
        pthread_mutex_unlock(&q->n_lock);
        bool was_quiet = quiet;
        quiet = !woke;
        pc = acquire_receiving(q, ST_CLAIM, gen);
        if (!pc) {
            if (a && a->pending)
                acks_failed(a, WB_ERR_NO_MEMORY);
            return WB_ERR_NO_MEMORY;
        }
        if (!woke && a && a->pending) {
            /* no message came while the deletes waited: they go alone, and
             * the poll waits on as it would have */
            if ((err = delete_acks(q, pc, lq, a, detail)) != WB_OK)
                break;
            if (capped) {
                skip = true;
                quiet = was_quiet;
            }
        }
    }
    /* a poll that ended without a claim (its time ran out, a wake-up) */
    if (!err && a && a->pending)
        err = delete_acks(q, pc, lq, a, detail);
    if (err && a && a->pending)
        acks_failed(a, err);
    release(q, pc);
    return err;
}

static wb_err pg_receive(void *priv, wb_logical_queue lq, unsigned max, unsigned wait_s,
                         int visibility_s, wb_queue_message **out, size_t *n, char **detail)
{
    return receive_loop(priv, lq, max, wait_s, visibility_s, NULL, out, n, detail);
}

/* ---- delete, visibility, counts ------------------------------------------ */

static wb_err pg_delete_batch(void *priv, wb_logical_queue lq, const char *const *receipts,
                              size_t n, wb_err *results, char **detail)
{
    pgq *q = priv;
    acks a;
    wb_err bad = acks_make(&a, receipts, n, results, detail);
    wb_err err = bad == WB_ERR_NO_MEMORY ? bad : WB_OK;
    if (!err && a.pending) {
        pgconn *pc = acquire(q, ST_DELETE);
        char *d = NULL;
        err = pc ? delete_acks(q, pc, lq, &a, &d) : WB_ERR_NO_MEMORY;
        release(q, pc);
        if (err) {
            acks_failed(&a, err);
            free(*detail);
            *detail = d;
        }
    }
    /* A receipt that matches nothing (deleted already, or the message was
     * received again since) succeeds without deleting, as with SQS. */
    acks_free(&a);
    return err ? err : bad;
}

static wb_err pg_delete_receive(void *priv, wb_logical_queue lq, const char *const *receipts,
                                size_t nr, wb_err *results, unsigned max, unsigned wait_s,
                                int visibility_s, wb_queue_message **out, size_t *n, char **detail)
{
    acks a;
    char *bad = NULL; /* a malformed receipt fails its own entry only */
    wb_err err = acks_make(&a, receipts, nr, results, &bad);
    free(bad);
    if (err != WB_ERR_NO_MEMORY)
        err = receive_loop(priv, lq, max, wait_s, visibility_s, &a, out, n, detail);
    acks_free(&a);
    return err;
}

static wb_err pg_change_visibility(void *priv, wb_logical_queue lq, const char *receipt,
                                   unsigned visibility_s, char **detail)
{
    pgq *q = priv;
    uint64_t id, tok;
    if (!parse_receipt(receipt, &id, &tok)) {
        *detail = wb__strdup("not a PostgreSQL queue receipt (<id>.<token>, as "
                             "wb_queue_receive() gives)");
        return WB_ERR_INVALID_ARGUMENT;
    }
    char sid[24], stok[24], svis[16];
    snprintf(sid, sizeof sid, "%" PRIu64, id);
    snprintf(stok, sizeof stok, "%" PRIu64, tok);
    snprintf(svis, sizeof svis, "%u", visibility_s);
    const char *vals[] = {wb_logical_queue_name(lq), sid, stok, svis};
    pgconn *pc = acquire(q, ST_VISIBILITY);
    if (!pc)
        return WB_ERR_NO_MEMORY;
    wb_err err = WB_OK;
    PGresult *r = run(q, pc, ST_VISIBILITY, 4, vals, PGRES_TUPLES_OK, &err, detail);
    if (r && PQntuples(r) == 0) {
        err = WB_ERR_NOT_FOUND;
        *detail = wb__asprintf("message %s of %s is not in flight with this receipt: its "
                               "visibility timeout ran out, or it was deleted or received again",
                               sid, wb_logical_queue_name(lq));
    }
    PQclear(r);
    release(q, pc);
    return err;
}

static wb_err pg_counts(void *priv, wb_logical_queue lq, wb_queue_counts *out, char **detail)
{
    pgq *q = priv;
    const char *vals[] = {wb_logical_queue_name(lq)};
    pgconn *pc = acquire(q, ST_COUNTS);
    if (!pc)
        return WB_ERR_NO_MEMORY;
    wb_err err = WB_OK;
    PGresult *r = run(q, pc, ST_COUNTS, 1, vals, PGRES_TUPLES_OK, &err, detail);
    if (r) {
        out->visible = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        out->in_flight = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        out->delayed = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
    }
    PQclear(r);
    release(q, pc);
    return err;
}

/* ---- open, migrations, close ------------------------------------------- */

/* Stops the listener and frees what the long polls wait on. */
static void destroy_waits(pgq *q)
{
    wb__pg_unsubscribe(q->sub);
    q->sub = NULL;
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        pthread_cond_destroy(&q->n_cond[i]);
        pthread_cond_destroy(&q->spaced[i]);
    }
    pthread_mutex_destroy(&q->n_lock);
}

static wb_err pg_open(void *priv, const wb_config *cfg, const wb_queue_opts *opts, char **detail)
{
    pgq *q = priv;
    const char *url = wb_config_database_url(cfg);
    if (!url || !*url) {
        *detail = wb__strdup("DATABASE_URL is not set; the postgres queue needs it");
        return WB_ERR_CONFIG;
    }
    q->url = wb__strdup(url);
    if (!q->url)
        return WB_ERR_NO_MEMORY;
    q->opts = *opts;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    pthread_mutex_init(&q->co_lock, NULL);
    pthread_cond_init(&q->co_cond, NULL);
    atomic_store(&q->next_housekeeping, 0);
    atomic_store(&q->deleted_since_vacuum, 0);
    atomic_store(&q->next_vacuum, 0);
    pthread_mutex_init(&q->n_lock, NULL);
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        pthread_cond_init(&q->n_cond[i], NULL);
        pthread_cond_init(&q->spaced[i], NULL);
        q->drained_at[i] = UINT64_MAX;
        q->gap_ms[i] = 1e6; /* no messages yet: no linger */
    }

    char *d = NULL;
    PGconn *c = wb__pg_connect(url, "workerbus", "queue", &d);
    wb_err err = WB_OK;
    if (!c) {
        /* The message names DATABASE_URL without its password. */
        wb__buf b = WB__BUF_INIT;
        wb__buf_puts(&b, "DATABASE_URL (");
        wb__redact_conninfo(&b, url, strlen(url));
        wb__buf_puts(&b, "): ");
        wb__buf_puts(&b, d ? d : "");
        free(d);
        *detail = wb__buf_take(&b);
        err = WB_ERR_CONNECTION_LOST;
    } else {
        err = wb__pg_migrate(c, "queue", NULL, NULL, detail);
        /* Keep the connection: the first operation will use it. */
        pgconn *pc = calloc(1, sizeof *pc);
        if (!err && pc) {
            pc->c = c;
            if (prepare_all(pc, detail)) {
                q->idle = pc;
                q->total = 1;
                return WB_OK;
            }
            err = WB_ERR_BACKEND;
        }
        free(pc);
        PQfinish(c);
        if (!err)
            err = WB_ERR_NO_MEMORY;
    }
    destroy_waits(q);
    free(q->url);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->co_lock);
    pthread_cond_destroy(&q->co_cond);
    return err;
}

static void pg_close(void *priv)
{
    pgq *q = priv;
    while (q->idle) {
        pgconn *pc = q->idle;
        q->idle = pc->next;
        if (pc->c)
            PQfinish(pc->c);
        free(pc);
    }
    destroy_waits(q);
    free(q->url);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->co_lock);
    pthread_cond_destroy(&q->co_cond);
}

static void pg_wake(void *priv)
{
    pgq *q = priv;
    atomic_fetch_add(&q->wake_gen, 1);
    pthread_mutex_lock(&q->n_lock);
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        pthread_cond_broadcast(&q->n_cond[i]);
        pthread_cond_broadcast(&q->spaced[i]);
    }
    pthread_mutex_unlock(&q->n_lock);
}

const wb__queue_ops wb__postgres_queue_ops = {
    .version = WB__QUEUE_OPS_VERSION,
    .name = "postgres",
    .priv_size = sizeof(pgq),
    .open = pg_open,
    .send_batch = pg_send_batch,
    .receive = pg_receive,
    .delete_batch = pg_delete_batch,
    .change_visibility = pg_change_visibility,
    .counts = pg_counts,
    .close = pg_close,
    .wake = pg_wake,
    .delete_receive = pg_delete_receive,
};
