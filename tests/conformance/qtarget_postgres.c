/* The queue conformance suite's PostgreSQL target: a throwaway PostgreSQL 15
 * cluster made by scripts/services (initdb as postgres, a free loopback
 * port, fsync and synchronous_commit on). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "freeze.h"
#include "helpers.h"
#include "listen.h"
#include "queue_target.h"

static wb_config *pg_config(const char *const *over)
{
    static char url[512];
    snprintf(url, sizeof url, "DATABASE_URL=%s", wbt_qenv("DATABASE_URL"));
    const char *all[16] = {url, "MESSAGE_QUEUE_TYPE=postgres"};
    size_t n = 2;
    for (size_t i = 0; over && over[i] && n < 15; i++)
        all[n++] = over[i];
    all[n] = NULL;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wbt_load(wbt_base_builtin, all, &cfg, &rep);
    if (err)
        wbt_dump(rep);
    wb_config_report_free(rep);
    cr_assert_eq(err, WB_OK, "the postgres configuration does not load");
    return cfg;
}

static void pg_purge(void)
{
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    /* The tables exist once any queue was opened; open one first. */
    PGresult *r = PQexec(c, "DO $$ BEGIN IF to_regclass('message_queue_messages') IS NOT NULL "
                            "THEN TRUNCATE message_queue_messages, "
                            "message_queue_deduplications; END IF; END $$");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static bool pg_restart(void)
{
    return wbt_services("restart", "postgres");
}

static bool pg_outage(bool down)
{
    return wbt_services(down ? "suspend" : "resume", "postgres");
}

/* The SQL of the backend's statements, and whether it plans one at every
 * run rather than preparing it (declared for the benchmarks in
 * bench/hooks.h). */
const char *wb__pg_statement(const char *name);
bool wb__pg_statement_replanned(const char *name);
/* How many generic and custom plans the handle's pooled connections made
 * for a statement (backends/postgres/pgqueue.c), and the handle's backend
 * state (src/queue/queue_backend.h). */
bool wb__pg_plan_counts(void *priv, const char *name, long *generic, long *custom);
void *wb__queue_priv(const wb_queue *q);
/* The drain's delete-then-receive (src/queue/queue_backend.h). */
wb_err wb__queue_delete_receive(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                                size_t nr, wb_err *results, unsigned max, unsigned wait_s,
                                int visibility_s, wb_queue_message **out, size_t *n);

static PGresult *must(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    cr_assert_eq(PQresultStatus(r), want, "%s: %s", what, PQerrorMessage(c));
    return r;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PQclear(must(c, PQexec(c, sql), PGRES_COMMAND_OK, sql));
}

/* The statements of the hot path, with arguments valid on an empty table. */
static const struct {
    const char *name, *idle_args;
} hot[] = {
    {"wb_claim", "'iot', 10, 30, 5, 'dlq'"},
    {"wb_claim_fifo", "'async-jobs.fifo', 10, 30, 5, 'dlq.fifo'"},
    {"wb_delete", "'iot', '{1}', '{1}'"},
    {"wb_delete_claim", "'iot', 10, 30, 5, 'dlq', '{1}', '{1}'"},
    {"wb_visibility", "'iot', 1, 1, 0"},
    {"wb_next_visible", "'iot'"},
};

/* Runs the statement NAME with ARGS under EXPLAIN ANALYZE in a transaction
 * rolled back, planned as the backend has it planned (a statement it runs
 * unprepared gets a fresh plan: force_custom_plan stands for that); asserts that no step of the
 * plan handled more than MAX rows (rows times loops: no scan, join or sort over the backlog) and
 * returns the plan's text. */
static char *plan_within(PGconn *c, const char *name, const char *args, long max)
{
    char buf[512];
    exec_ok(c, "BEGIN");
    exec_ok(c, wb__pg_statement_replanned(name) ? "SET LOCAL plan_cache_mode = force_custom_plan"
                                                : "SET LOCAL plan_cache_mode = auto");
    snprintf(buf, sizeof buf,
             "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE %s(%s)", name, args);
    PGresult *r = must(c, PQexec(c, buf), PGRES_TUPLES_OK, buf);
    size_t len = 0, cap = 1;
    for (int i = 0; i < PQntuples(r); i++)
        cap += strlen(PQgetvalue(r, i, 0)) + 1;
    char *text = calloc(1, cap);
    cr_assert_not_null(text);
    for (int i = 0; i < PQntuples(r); i++)
        len += (size_t)sprintf(text + len, "%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    exec_ok(c, "ROLLBACK");
    for (const char *at = text; (at = strstr(at, "actual rows=")) != NULL; at++) {
        long rows = 0, loops = 1;
        sscanf(at, "actual rows=%ld loops=%ld", &rows, &loops);
        cr_assert_leq(rows * loops, max,
                      "%s: a step of the plan handled %ld rows (%ld loops), more than %ld:\n%s",
                      name, rows * loops, loops, max, text);
    }
    return text;
}

/* The statements prepared and run on an idle, empty queue, as a server's
 * are between bursts: then a backlog arrives that the planner has not seen
 * (autovacuum off for the test, so nothing analyzes it). Every statement of
 * the hot path, planned as the backend plans it, still reads only the rows
 * it returns. */
Test(postgres_plans, stay_small_when_a_backlog_arrives_on_an_idle_queue, .timeout = 120)
{
    wb_config *cfg = pg_config(NULL);
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK);
    pg_purge();
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    exec_ok(c, "ALTER TABLE message_queue_messages SET (autovacuum_enabled = off)");
    exec_ok(c, "VACUUM ANALYZE message_queue_messages");
    char buf[8192];
    for (size_t i = 0; i < sizeof hot / sizeof hot[0]; i++) {
        snprintf(buf, sizeof buf, "PREPARE %s AS %s", hot[i].name, wb__pg_statement(hot[i].name));
        exec_ok(c, buf);
        /* more runs than PostgreSQL makes custom plans before it weighs a
         * generic one */
        snprintf(buf, sizeof buf, "EXECUTE %s(%s)", hot[i].name, hot[i].idle_args);
        for (int k = 0; k < 8; k++)
            PQclear(must(c, PQexec(c, buf), PGRES_TUPLES_OK, buf));
    }
    /* 40 000 visible messages on iot and as many in 40 groups of the FIFO
     * queue; three of iot's are in flight with known receipts. */
    exec_ok(c, "INSERT INTO message_queue_messages (queue, body, group_id, expires_at)"
               " SELECT CASE WHEN g % 2 = 0 THEN 'iot' ELSE 'async-jobs.fifo' END, 'body',"
               " CASE WHEN g % 2 = 0 THEN NULL ELSE 'group-' || (g / 2) % 40 END,"
               " now() + interval '1 day' FROM generate_series(1, 80000) g");
    exec_ok(c, "UPDATE message_queue_messages SET receipt = id, receive_count = 1,"
               " visible_at = now() + interval '1 minute' WHERE id IN (SELECT id FROM"
               " message_queue_messages WHERE queue = 'iot' ORDER BY id LIMIT 3)");
    PGresult *r =
        must(c,
             PQexec(c, "SELECT array_agg(id ORDER BY id)::text FROM message_queue_messages"
                       " WHERE receipt IS NOT NULL"),
             PGRES_TUPLES_OK, "in flight");
    char held[256], args[640];
    snprintf(held, sizeof held, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    free(plan_within(c, "wb_claim", hot[0].idle_args, 100));
    /* one probe per group for the heads, then the heads themselves */
    free(plan_within(c, "wb_claim_fifo", hot[1].idle_args, 100));
    snprintf(args, sizeof args, "'iot', '%s', '%s'", held, held);
    char *del = plan_within(c, "wb_delete", args, 100);
    cr_assert_not_null(strstr(del, "Delete on message_queue_messages m (actual rows=3"),
                       "the delete did not delete the 3 messages in flight:\n%s", del);
    free(del);
    /* the drain's deletes with its next claim: the same two plans in one */
    snprintf(args, sizeof args, "'iot', 10, 30, 5, 'dlq', '%s', '%s'", held, held);
    del = plan_within(c, "wb_delete_claim", args, 100);
    cr_assert_not_null(strstr(del, "Delete on message_queue_messages m_1 (actual rows=3"),
                       "the delete with the claim did not delete the 3 messages in flight:\n%s",
                       del);
    free(del);
    char first[32];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(held + 1, ",}"), held + 1);
    snprintf(args, sizeof args, "'iot', %s, %s, 0", first, first);
    free(plan_within(c, "wb_visibility", args, 100));
    free(plan_within(c, "wb_next_visible", hot[5].idle_args, 100));

    exec_ok(c, "ALTER TABLE message_queue_messages RESET (autovacuum_enabled)");
    PQfinish(c);
    pg_purge();
    wb_queue_close(q);
    wb_config_free(cfg);
}

/* A long poll of up to 5 s on iot, on a thread; with receipts (nr > 0),
 * the drain's delete-then-receive. */
typedef struct long_poll {
    wb_queue *q;
    const char *receipts[10];
    size_t nr;
    wb_err results[10];
    wb_queue_message *m;
    size_t n;
    wb_err err;
} long_poll;

static void *receive_once(void *arg)
{
    long_poll *p = arg;
    p->err = p->nr ? wb__queue_delete_receive(p->q, WB_LQ_IOT, p->receipts, p->nr, p->results, 10,
                                              5, 30, &p->m, &p->n)
                   : wb_queue_receive(p->q, WB_LQ_IOT, 10, 5, 30, &p->m, &p->n);
    return NULL;
}

/* Deletes and frees what a long poll received. */
static void delete_all(long_poll *p)
{
    for (size_t i = 0; i < p->n; i++)
        cr_assert_eq(wb_queue_delete(p->q, WB_LQ_IOT, p->m[i].receipt), WB_OK, "%s",
                     wb_queue_last_error(p->q));
    wb_queue_messages_free(p->m, p->n);
    p->m = NULL;
}

static void send_iot(wb_queue *q, const char *body)
{
    wb_queue_entry e = {.body = body, .body_len = strlen(body)};
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_OK, "%s", wb_queue_last_error(q));
}

/* The handle plans the statements that must stay fast at any size afresh
 * at every run, and lets a send keep its generic plan: on one pooled
 * connection taking turns between them, as a server's do. */
Test(postgres_plans, claims_and_deletes_are_planned_at_every_run, .timeout = 60)
{
    wb_config *cfg = pg_config(NULL);
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK, "%s", wb_queue_last_error(NULL));
    pg_purge();
    const int runs = 12; /* more than PostgreSQL's five custom plans before a generic one */
    for (int i = 0; i < runs; i++) {
        send_iot(q, "planned");
        wb_queue_message *m = NULL;
        size_t n = 0;
        cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 0, 30, &m, &n), WB_OK, "%s",
                     wb_queue_last_error(q));
        cr_assert_eq(n, 1);
        cr_assert_eq(wb_queue_delete(q, WB_LQ_IOT, m[0].receipt), WB_OK, "%s",
                     wb_queue_last_error(q));
        wb_queue_messages_free(m, n);
    }
    const struct {
        const char *name;
        bool fresh;
    } want[] = {{"wb_claim", true}, {"wb_delete", true}, {"wb_send1", false}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        long generic = -1, custom = -1;
        cr_assert(wb__pg_plan_counts(wb__queue_priv(q), want[i].name, &generic, &custom),
                  "%s: pg_prepared_statements did not answer", want[i].name);
        cr_log_info("%s: %ld generic plans, %ld custom plans", want[i].name, generic, custom);
        cr_assert_eq(generic + custom >= runs, true, "%s ran %ld times, not %d", want[i].name,
                     generic + custom, runs);
        if (want[i].fresh)
            cr_assert_eq(generic, 0, "%s used a generic plan %ld times of %d", want[i].name,
                         generic, runs);
        else
            cr_assert_gt(generic, 0, "%s never used its generic plan in %d runs", want[i].name,
                         runs);
    }
    wb_queue_close(q);
    wb_config_free(cfg);
}

static void drain_all(wb_queue *q, size_t want)
{
    for (size_t got = 0; got < want;) {
        wb_queue_message *m = NULL;
        size_t n = 0;
        cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 2, 30, &m, &n), WB_OK);
        cr_assert_gt(n, 0, "%zu of %zu messages came", got, want);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(wb_queue_delete(q, WB_LQ_IOT, m[i].receipt), WB_OK);
        wb_queue_messages_free(m, n);
        got += n;
    }
}

/* A queue handle with the given linger (0: none) on emptied tables. */
static wb_queue *open_purged(wb_config **cfg, unsigned linger_ms)
{
    *cfg = pg_config(NULL);
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.receive_linger_ms = linger_ms;
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(*cfg, &o, &q), WB_OK, "%s", wb_queue_last_error(NULL));
    pg_purge();
    return q;
}

/* A long poll (which starts the listener) while n messages come 2 ms
 * apart, then all of them deleted: the handle has seen messages come
 * often (its moving average of the gaps starts at 1000 s and loses an
 * eighth of its distance a message: under 100 ms after 70). */
static void warm_up(wb_queue *q, int n)
{
    long_poll warm = {.q = q};
    pthread_t t;
    pthread_create(&t, NULL, receive_once, &warm);
    usleep(200000);
    for (int i = 0; i < n; i++) {
        send_iot(q, "warm-up");
        usleep(2000);
    }
    pthread_join(t, NULL);
    cr_assert_eq(warm.err, WB_OK);
    size_t got = warm.n;
    delete_all(&warm);
    drain_all(q, (size_t)n - got);
}

/* One long poll on a drained queue, woken by the first of 5 messages sent
 * 20 ms apart: what it returns with the given linger, after a warm-up that
 * showed messages coming more often than that. */
static size_t burst_in_one_receive(unsigned linger_ms)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, linger_ms);
    warm_up(q, 60);
    pthread_t t;
    /* an empty claim: the queue is drained, the next receive waits first */
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 0, 30, &m, &n), WB_OK);
    cr_assert_eq(n, 0);
    long_poll p = {.q = q};
    pthread_create(&t, NULL, receive_once, &p);
    usleep(100000);
    for (int i = 0; i < 5; i++) {
        send_iot(q, "burst");
        usleep(20000);
    }
    pthread_join(t, NULL);
    cr_assert_eq(p.err, WB_OK, "%s", wb_queue_last_error(q));
    size_t got = p.n;
    delete_all(&p);
    drain_all(q, 5 - got);
    wb_queue_close(q);
    wb_config_free(cfg);
    return got;
}

/* wb_queue_opts.receive_linger_ms: at a steady flow, one claim takes what
 * arrives within the linger; without it, the first message alone. */
Test(postgres_linger, a_woken_receive_waits_for_the_messages_that_follow, .timeout = 60)
{
    size_t with = burst_in_one_receive(400);
    cr_assert_eq(with, 5, "a receive lingering 400 ms took %zu of 5 messages sent over 80 ms",
                 with);
    size_t without = burst_in_one_receive(0);
    cr_assert_lt(without, 5, "without a linger a receive took all %zu messages of the burst",
                 without);
}

/* The linger also spaces claims: a receive that begins with a message
 * already notified, within the linger of the handle's last claim, waits
 * out the rest of it and takes what came meanwhile; it would otherwise
 * claim that one message at once. */
Test(postgres_linger, claims_are_spaced_by_the_linger, .timeout = 60)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 300);
    warm_up(q, 100);
    send_iot(q, "a");
    drain_all(q, 1); /* the last claim: "a" */
    send_iot(q, "b");
    usleep(50000); /* notified before the next receive begins */
    long_poll p = {.q = q};
    pthread_t t;
    pthread_create(&t, NULL, receive_once, &p);
    usleep(20000);
    send_iot(q, "c");
    usleep(20000);
    send_iot(q, "d");
    pthread_join(t, NULL);
    cr_assert_eq(p.err, WB_OK, "%s", wb_queue_last_error(q));
    size_t got = p.n;
    delete_all(&p);
    cr_assert_eq(got, 3,
                 "a receive begun 50 ms after the last claim, with a 300 ms linger, took "
                 "%zu of the 3 messages that came within 90 ms",
                 got);
    wb_queue_close(q);
    wb_config_free(cfg);
}

static uint64_t counts_in_flight(wb_queue *q)
{
    wb_queue_counts k;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &k), WB_OK, "%s", wb_queue_last_error(q));
    return k.in_flight;
}

/* The drain deletes what it handled with its next receive: in the claim's
 * transaction when there is something to claim, and never held through a
 * long wait. */
Test(postgres_acks, the_deletes_of_handled_messages_travel_with_the_next_claim, .timeout = 60)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 0);
    for (int i = 0; i < 3; i++)
        send_iot(q, "first");
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 0, 30, &m, &n), WB_OK);
    cr_assert_eq(n, 3);
    send_iot(q, "second");
    send_iot(q, "second");
    /* three good receipts and a malformed one: the three deleted, the
     * malformed one refused on its own, the two new messages claimed */
    const char *rc[4] = {m[0].receipt, "not-a-receipt", m[1].receipt, m[2].receipt};
    wb_err res[4];
    wb_queue_message *m2 = NULL;
    size_t n2 = 0;
    cr_assert_eq(wb__queue_delete_receive(q, WB_LQ_IOT, rc, 4, res, 10, 0, 30, &m2, &n2), WB_OK,
                 "%s", wb_queue_last_error(q));
    cr_assert_eq(res[0], WB_OK);
    cr_assert_eq(res[1], WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(res[2], WB_OK);
    cr_assert_eq(res[3], WB_OK);
    cr_assert_eq(n2, 2, "the claim with the deletes took %zu of 2 new messages", n2);
    for (size_t i = 0; i < n2; i++)
        cr_assert_str_eq(m2[i].body, "second");
    cr_assert_eq(counts_in_flight(q), 2, "the 3 handled messages were not deleted");
    /* deleting again what is gone succeeds, as with wb_queue_delete_batch() */
    const char *again[1] = {m[0].receipt};
    wb_queue_message *m3 = NULL;
    size_t n3 = 0;
    cr_assert_eq(wb__queue_delete_receive(q, WB_LQ_IOT, again, 1, res, 10, 0, 30, &m3, &n3), WB_OK);
    cr_assert_eq(res[0], WB_OK);
    cr_assert_eq(n3, 0);
    wb_queue_messages_free(m, n);

    /* messages now come often (2 ms apart), so deletes may wait for the
     * claim of the next one; none comes: they go alone, soon, and the poll
     * waits on */
    warm_up(q, 100);
    pthread_t t;
    long_poll p = {.q = q, .nr = n2};
    for (size_t i = 0; i < n2; i++)
        p.receipts[i] = m2[i].receipt;
    pthread_create(&t, NULL, receive_once, &p);
    usleep(400000);
    cr_assert_eq(counts_in_flight(q), 0,
                 "400 ms into a long poll, the deletes it carries have not happened");
    send_iot(q, "third");
    pthread_join(t, NULL);
    cr_assert_eq(p.err, WB_OK, "%s", wb_queue_last_error(q));
    cr_assert_eq(p.n, 1, "the long poll returned %zu messages, not the one sent", p.n);
    cr_assert_str_eq(p.m[0].body, "third");
    cr_assert_eq(p.results[0], WB_OK);
    cr_assert_eq(p.results[1], WB_OK);
    cr_assert_eq(wb_queue_delete(q, WB_LQ_IOT, p.m[0].receipt), WB_OK);
    wb_queue_messages_free(p.m, p.n);
    wb_queue_messages_free(m2, n2);
    wb_queue_close(q);
    wb_config_free(cfg);
}

static long long vacuum_count(PGconn *c)
{
    PGresult *r = must(c,
                       PQexec(c, "SELECT vacuum_count FROM pg_stat_user_tables"
                                 " WHERE relname = 'message_queue_messages'"),
                       PGRES_TUPLES_OK, "vacuum_count");
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* Each message leaves dead entries in the claim index that every claim
 * steps over until a VACUUM; autovacuum comes at most once a minute, so
 * the handle vacuums the table itself after a few thousand deletes. */
Test(postgres_vacuum, the_handle_vacuums_the_table_after_its_deletes, .timeout = 120)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 0);
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    long long before = vacuum_count(c);
    wb_queue_entry e[10];
    for (int i = 0; i < 10; i++)
        e[i] = (wb_queue_entry){.body = "vacuum", .body_len = 6};
    for (int i = 0; i < 220; i++)
        cr_assert_eq(wb_queue_send_batch(q, WB_LQ_IOT, e, 10, NULL), WB_OK, "%s",
                     wb_queue_last_error(q));
    drain_all(q, 2200);
    long long after = vacuum_count(c);
    for (int waited = 0; after == before && waited < 50; waited++) {
        usleep(100000);
        after = vacuum_count(c);
    }
    cr_assert_gt(after, before, "2200 deletes and no VACUUM of message_queue_messages");
    PQfinish(c);
    wb_queue_close(q);
    wb_config_free(cfg);
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct lq_poll {
    wb_queue *q;
    wb_logical_queue lq;
    size_t n;
    char body[32];
    uint64_t returned_at;
} lq_poll;

static void *poll_lq(void *arg)
{
    lq_poll *p = arg;
    wb_queue_message *m = NULL;
    cr_assert_eq(wb_queue_receive(p->q, p->lq, 1, 5, 600, &m, &p->n), WB_OK);
    p->returned_at = ms_now();
    if (p->n)
        snprintf(p->body, sizeof p->body, "%.*s", (int)m[0].body_len, (const char *)m[0].body);
    wb_queue_messages_free(m, p->n);
    return NULL;
}

/* A long poll asleep on a queue, and then, from another handle, `make`
 * makes a message of it visible now: the poll returns it at once, woken
 * by the statement's own notification, not by its one-second timer. */
static void wakes_on(wb_queue *q, wb_logical_queue lq, const char *body,
                     void (*make)(wb_queue *, void *), void *arg)
{
    lq_poll p = {.q = q, .lq = lq};
    pthread_t t;
    pthread_create(&t, NULL, poll_lq, &p);
    usleep(200000);
    wb_config *cfg2 = pg_config(NULL);
    wb_queue *other = NULL;
    cr_assert_eq(wb_queue_open(cfg2, NULL, &other), WB_OK, "%s", wb_queue_last_error(NULL));
    uint64_t at = ms_now();
    make(other, arg);
    pthread_join(t, NULL);
    cr_assert_eq(p.n, 1, "the long poll on %s got nothing", wb_logical_queue_name(lq));
    cr_assert_str_eq(p.body, body);
    cr_assert_lt(p.returned_at - at, 500,
                 "the long poll on %s returned %llu ms later: its timer, not a notification",
                 wb_logical_queue_name(lq), (unsigned long long)(p.returned_at - at));
    wb_queue_close(other);
    wb_config_free(cfg2);
}

static void release_now(wb_queue *q, void *receipt)
{
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_ASYNC_JOBS, receipt, 0), WB_OK, "%s",
                 wb_queue_last_error(q));
}

static void fourth_receive(wb_queue *q, void *unused)
{
    (void)unused;
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_ASYNC_JOBS, 1, 0, 0, &m, &n), WB_OK);
    cr_assert_eq(n, 0, "received a 4th time");
}

/* The statements that make a message visible now notify: a visibility set
 * to 0, and a claim that moves a message into the dead-letter queue. */
Test(postgres_wakeups, visibility_0_and_a_redrive_wake_the_long_polls, .timeout = 60)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 0);
    wb_queue_entry e = {.body = "release", .body_len = 7};
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS, &e, NULL), WB_OK);
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_ASYNC_JOBS, 1, 0, 600, &m, &n), WB_OK);
    cr_assert_eq(n, 1);
    wakes_on(q, WB_LQ_ASYNC_JOBS, "release", release_now, m[0].receipt);
    wb_queue_messages_free(m, n);
    /* a new message received three times (visibility 0: visible again at
     * once); the fourth receive moves it */
    e = (wb_queue_entry){.body = "poison", .body_len = 6};
    pg_purge();
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS, &e, NULL), WB_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(wb_queue_receive(q, WB_LQ_ASYNC_JOBS, 1, 2, 0, &m, &n), WB_OK);
        cr_assert_eq(n, 1, "receive %d", i + 1);
        wb_queue_messages_free(m, n);
    }
    wakes_on(q, WB_LQ_DLQ, "poison", fourth_receive, NULL);
    wb_queue_close(q);
    wb_config_free(cfg);
}

/* PostgreSQL wakes every listening connection of a database on every
 * notification: two handles of one process, each with a long poll
 * waiting, listen on one connection, and both are woken through it. */
Test(postgres_listen, the_handles_of_a_process_share_one_listening_connection, .timeout = 60)
{
    wb_config *cfg = NULL;
    wb_queue *q1 = open_purged(&cfg, 0);
    wb_queue *q2 = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &q2), WB_OK, "%s", wb_queue_last_error(NULL));
    long_poll p1 = {.q = q1}, p2 = {.q = q2};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, receive_once, &p1);
    pthread_create(&t2, NULL, receive_once, &p2);
    usleep(500000);
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = must(c,
                       PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                 " current_database() AND query LIKE 'LISTEN%'"),
                       PGRES_TUPLES_OK, "listening connections");
    int listening = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    cr_assert_eq(listening, 1, "%d connections listen for two handles of one process", listening);
    send_iot(q1, "one");
    send_iot(q1, "two");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(p1.n + p2.n, 2, "the two long polls got %zu and %zu of 2 messages", p1.n, p2.n);
    delete_all(&p1);
    delete_all(&p2);
    wb_queue_close(q2);
    wb_queue_close(q1);
    wb_config_free(cfg);
}

static void count_heard(void *ctx, bool heard, const char *why)
{
    (void)why;
    if (heard)
        atomic_fetch_add((atomic_int *)ctx, 1);
}

static void ignore_notify(void *ctx, const char *channel, const char *payload)
{
    (void)ctx, (void)channel, (void)payload;
}

/* A database that takes the connection and never answers (a host behind
 * a firewall that drops, a hung server): the listener waits up to the
 * connect timeout (10 s) for it, and its last unsubscribe (a queue handle
 * closed, a server stopping) ends that wait instead of sitting it out. */
Test(postgres_listen, a_stop_ends_a_connect_the_database_does_not_answer, .timeout = 60)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 4), 0); /* never accepted: the kernel completes the handshake */
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[128];
    snprintf(url, sizeof url, "postgresql://workerbus@127.0.0.1:%u/workerbus", ntohs(a.sin_port));

    atomic_int heard = 0;
    const wb__pg_sub_ops ops = {.notify = ignore_notify, .state = count_heard};
    const char *channels[] = {"workerbus_test"};
    wb__pg_sub *s = wb__pg_subscribe(url, channels, 1, &ops, &heard);
    cr_assert_not_null(s);
    usleep(500000); /* the listener is connecting now, waiting for an answer */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    wb__pg_unsubscribe(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long took = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_log_info("the last unsubscribe took %ld ms", took);
    cr_assert_lt(took, 3000, "the last unsubscribe took %ld ms: it sat out the connect timeout",
                 took);
    cr_assert_eq(atomic_load(&heard), 0, "a database that never answered was heard");
    close(fd);
}

static int postmaster_pid(void)
{
    char pidfile[512];
    snprintf(pidfile, sizeof pidfile, "%s/pg/postmaster.pid", wbt_qenv("WBT_SERVICES_DIR"));
    FILE *f = fopen(pidfile, "r");
    cr_assert_not_null(f, "no %s", pidfile);
    int pid = 0;
    cr_assert_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    return pid;
}

static wb_err handle_nothing(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    (void)m;
    return WB_OK;
}

/* A database host that stops answering (a frozen VM, packets dropped): the
 * postmaster is stopped, so a new connection is accepted by the kernel and
 * never answered, and the drain's connections are ended, so its receives
 * connect again. wb_drain_stop() then does not wait out their connect
 * timeout (10 s). */
Test(postgres_listen, a_drain_stop_ends_connects_the_database_does_not_answer, .timeout = 90)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 0);
    wb_drain *d = wbt_drain_long_polls(q, handle_nothing, NULL);
    usleep(500000);
    int postmaster = postmaster_pid();
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    cr_assert_eq(kill(postmaster, SIGSTOP), 0);
    PGresult *r = PQexec(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = 'workerbus' AND pid <> pg_backend_pid()");
    bool ended = PQresultStatus(r) == PGRES_TUPLES_OK && atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    /* the long polls, no longer woken, claim again within their 1 s check
     * and find their connection gone: they are connecting now */
    usleep(2500000);
    uint64_t t0 = ms_now();
    wb_drain_stop(d);
    uint64_t took = ms_now() - t0;
    kill(postmaster, SIGCONT);
    PQfinish(c);
    wb_drain_free(d);
    wb_queue_close(q);
    wb_config_free(cfg);
    cr_assert(ended, "no connection of the drain was ended");
    cr_log_info("wb_drain_stop() took %llu ms while the database did not answer",
                (unsigned long long)took);
    cr_assert_lt(took, 5000, "wb_drain_stop() took %llu ms: it sat out the connect timeout",
                 (unsigned long long)took);
}

/* The whole database host stops answering, statements under way included
 * (every process of the cluster stopped): wb_drain_stop() does not wait for
 * a receive's statement, which would wait for as long as the kernel keeps
 * the connection (minutes). The cluster is continued after 8 s whatever
 * happens, so that a drain stop that waits fails the test instead of
 * hanging it. */
Test(postgres_listen, a_drain_stop_ends_statements_the_database_does_not_answer, .timeout = 90)
{
    wb_config *cfg = NULL;
    wb_queue *q = open_purged(&cfg, 0);
    wb_drain *d = wbt_drain_long_polls(q, handle_nothing, NULL);
    usleep(300000);
    char pidfile[512];
    snprintf(pidfile, sizeof pidfile, "%s/pg/postmaster.pid", wbt_qenv("WBT_SERVICES_DIR"));
    wbt_frozen fz;
    cr_assert(wbt_freeze(&fz, pidfile, 8000), "cannot stop the cluster of %s", pidfile);
    /* the long polls claim again within their 1 s check: that statement
     * is waiting for its answer now */
    usleep(2500000);
    uint64_t t0 = ms_now();
    wb_drain_stop(d);
    uint64_t took = ms_now() - t0;
    wbt_thaw(&fz);
    wb_drain_free(d);
    wb_queue_close(q);
    wb_config_free(cfg);
    cr_log_info("wb_drain_stop() took %llu ms with %zu processes of the cluster stopped",
                (unsigned long long)took, fz.n);
    cr_assert_lt(took, 4000, "wb_drain_stop() took %llu ms: it waited for a statement",
                 (unsigned long long)took);
}

const wbt_qtarget wbt_qtarget_impl = {
    .name = "postgres",
    .config = pg_config,
    .purge = pg_purge,
    .restart = pg_restart,
    .outage = pg_outage,
    .aws_cli = false,
};
