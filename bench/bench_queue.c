/* The PostgreSQL queue against raw SQL, in the same run, on the same server
 * (fsync and synchronous_commit on), alternating which goes first.
 *
 * The raw baseline runs the very statements the backend runs (the
 * INSERT ... unnest, the SKIP LOCKED claim, the DELETE by primary key), as
 * the backend runs them (prepared; the claim and the delete planned afresh
 * at every run), through plain libpq: one connection per thread, no pool,
 * no coalescing, no retries. workerbus runs through wb_queue_* with one
 * handle shared by all threads, as a server would.
 *
 * A second baseline is a minimal SKIP LOCKED queue: the simplest correct SQL
 * for the same core semantics (a visibility timeout, a receive count,
 * claims that never hand one message to two consumers, deletes by id) in a
 * table of its own, without what workerbus adds (message groups,
 * deduplication, redrive to a dead-letter queue, expiry, wake-up
 * triggers). The first ratio shows the wrapper's cost; the second what the
 * whole design costs against the simplest queue that works.
 *
 * Each measure runs for a fixed time and counts messages; the table gives
 * the median of the rounds.
 *
 * The backlog case then drains 100 000 messages that arrived after the
 * table was analyzed empty and the consumers' connections had claimed from
 * it (their prepared claims then run a generic plan made for an empty
 * table; autovacuum is off for the run, so nothing replans them), with 4
 * consumers taking batches of 10: the rate of each round and the spread
 * between the rounds (stable plans keep it small). The minimal queue
 * cannot take that case (its claim, UPDATE ... WHERE id IN (SELECT ...
 * LIMIT n FOR UPDATE SKIP LOCKED), turns into a scan of the backlog per
 * row and ran over 10 minutes without finishing), so its column is its
 * best case: the backlog analyzed before the drain, custom plans.
 *
 * Usage: bench-queue DATABASE_URL [seconds per measure] [rounds] [filter]
 * (filter: run only the measures whose label contains it) */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "bench_minq.h"
#include "hooks.h"
#include "workerbus/workerbus.h"

static const char *db_url;
static double seconds = 3.0;
static wb_queue *wq;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-queue: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

/* A statement of the backend's, run as the backend runs it: prepared, and
 * those it plans at every run with plan_cache_mode force_custom_plan on
 * their connection. */
static PGresult *raw_run(PGconn *c, const char *name, int n, const char *const *vals)
{
    static _Thread_local const PGconn *custom_on; /* this thread's connection, when custom */
    bool custom = wb__pg_statement_replanned(name);
    if (custom != (custom_on == c)) {
        PGresult *r =
            PQexec(c, custom ? "SET plan_cache_mode = force_custom_plan" : "RESET plan_cache_mode");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("plan_cache_mode", PQerrorMessage(c));
        PQclear(r);
        custom_on = custom ? c : NULL;
    }
    return PQexecPrepared(c, name, n, vals, NULL, NULL, 0);
}

static PGconn *raw_connect(void)
{
    PGconn *c = PQconnectdb(db_url);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    const char *names[] = {"wb_send", "wb_claim", "wb_delete"};
    for (size_t i = 0; i < 3; i++) {
        PGresult *r = PQprepare(c, names[i], wb__pg_statement(names[i]), 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("prepare", PQerrorMessage(c));
        PQclear(r);
    }
    const char *err = wbb_minq_prepare(c);
    if (err)
        die("prepare", err);
    return c;
}

static void raw_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die(sql, PQerrorMessage(c));
    PQclear(r);
}

/* Array literals of n rows of the benchmark's message. */
static void send_arrays(unsigned n, char *q, char *b, char *d, char *r, size_t cap)
{
    size_t lq = 0, lb = 0, ld = 0, lr = 0;
    for (unsigned i = 0; i < n; i++) {
        const char *sep = i ? "," : "{";
        lq += (size_t)snprintf(q + lq, cap - lq, "%s\"async-jobs\"", sep);
        lb += (size_t)snprintf(b + lb, cap - lb, "%s\"{\\\"job\\\":%u}\"", sep, i);
        ld += (size_t)snprintf(d + ld, cap - ld, "%s0", sep);
        lr += (size_t)snprintf(r + lr, cap - lr, "%s345600", sep);
    }
    snprintf(q + lq, cap - lq, "}");
    snprintf(b + lb, cap - lb, "}");
    snprintf(d + ld, cap - ld, "}");
    snprintf(r + lr, cap - lr, "}");
}

static void raw_send(PGconn *c, unsigned n)
{
    static _Thread_local char q[8192], b[8192], d[4096], r[4096];
    static _Thread_local unsigned made;
    if (made != n) {
        send_arrays(n, q, b, d, r, sizeof q < sizeof d ? sizeof q : sizeof d);
        made = n;
    }
    const char *vals[] = {q, b, d, r};
    PGresult *res = PQexecPrepared(c, "wb_send", 4, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (unsigned)PQntuples(res) != n)
        die("raw send", PQerrorMessage(c));
    PQclear(res);
}

/* Claims up to n and deletes them; returns how many. */
static unsigned raw_claim_delete(PGconn *c, unsigned n)
{
    char sn[16];
    snprintf(sn, sizeof sn, "%u", n);
    const char *vals[] = {"async-jobs", sn, "300", "3", "dlq"};
    PGresult *r = raw_run(c, "wb_claim", 5, vals);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("raw claim", PQerrorMessage(c));
    int rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        return 0;
    }
    char ids[512] = "{", toks[512] = "{";
    size_t li = 1, lt = 1;
    for (int i = 0; i < rows; i++) {
        li +=
            (size_t)snprintf(ids + li, sizeof ids - li, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
        lt += (size_t)snprintf(toks + lt, sizeof toks - lt, "%s%s", i ? "," : "",
                               PQgetvalue(r, i, 2));
    }
    snprintf(ids + li, sizeof ids - li, "}");
    snprintf(toks + lt, sizeof toks - lt, "}");
    PQclear(r);
    const char *dv[] = {"async-jobs", ids, toks};
    r = raw_run(c, "wb_delete", 3, dv);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("raw delete", PQerrorMessage(c));
    PQclear(r);
    return (unsigned)rows;
}

/* The minimal queue: n bodies in one INSERT. */
static void min_send(PGconn *c, unsigned n)
{
    static _Thread_local char b[8192];
    static _Thread_local unsigned made;
    if (made != n) {
        size_t l = 0;
        for (unsigned i = 0; i < n; i++)
            l += (size_t)snprintf(b + l, sizeof b - l, "%s\"{\\\"job\\\":%u}\"", i ? "," : "{", i);
        snprintf(b + l, sizeof b - l, "}");
        made = n;
    }
    const char *vals[] = {"async-jobs", b};
    PGresult *res = PQexecPrepared(c, "min_send", 2, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die("minimal send", PQerrorMessage(c));
    PQclear(res);
}

static unsigned min_claim_delete(PGconn *c, unsigned n)
{
    const char *err = NULL;
    int got = wbb_minq_claim_delete(c, "async-jobs", n, NULL, NULL, &err);
    if (got < 0)
        die("minimal claim and delete", err);
    return (unsigned)got;
}

static void wb_send_n(unsigned n)
{
    wb_queue_entry e[10];
    char bodies[10][32];
    for (unsigned i = 0; i < n; i++) {
        snprintf(bodies[i], sizeof bodies[i], "{\"job\":%u}", i);
        e[i] = (wb_queue_entry){.body = bodies[i], .body_len = strlen(bodies[i])};
    }
    wb_err err = n == 1 ? wb_queue_send(wq, WB_LQ_ASYNC_JOBS, e, NULL)
                        : wb_queue_send_batch(wq, WB_LQ_ASYNC_JOBS, e, n, NULL);
    if (err)
        die("workerbus send", wb_queue_last_error(wq));
}

static unsigned wb_claim_delete(unsigned n)
{
    wb_queue_message *m = NULL;
    size_t got = 0;
    if (wb_queue_receive(wq, WB_LQ_ASYNC_JOBS, n, 0, 300, &m, &got))
        die("workerbus receive", wb_queue_last_error(wq));
    if (!got)
        return 0;
    const char *r[10];
    for (size_t i = 0; i < got; i++)
        r[i] = m[i].receipt;
    if (wb_queue_delete_batch(wq, WB_LQ_ASYNC_JOBS, r, got, NULL))
        die("workerbus delete", wb_queue_last_error(wq));
    wb_queue_messages_free(m, got);
    return (unsigned)got;
}

/* ---- a measure: T threads doing one kind of operation for `seconds` ------- */

typedef enum { SEND, CLAIM } op_kind;

typedef enum { WORKERBUS, RAW, MINIMAL } who_kind;

typedef struct job {
    who_kind who;
    op_kind kind;
    unsigned batch;
    _Atomic double until;
    bool drain; /* until the queue is empty, not for a time */
    atomic_uint_fast64_t *count;
    pthread_barrier_t *ready;  /* connections are made before the clock starts */
    pthread_barrier_t *warmed; /* drain: claims ran on the empty queue first */
} job;

static void *worker(void *arg)
{
    job *j = arg;
    PGconn *c = j->who != WORKERBUS ? raw_connect() : NULL;
    if (j->warmed) {
        /* a server idling on an empty queue: its connections' prepared
         * claims settle on a generic plan made for an empty table */
        for (unsigned i = 0; i < 30; i++)
            if (j->who == MINIMAL ? min_claim_delete(c, j->batch) : wb_claim_delete(j->batch))
                die("backlog", "the queue is not empty before the backlog");
        pthread_barrier_wait(j->warmed);
    }
    pthread_barrier_wait(j->ready);
    uint64_t n = 0;
    while (now_s() < atomic_load(&j->until)) {
        unsigned k;
        if (j->kind == SEND) {
            if (j->who == RAW)
                raw_send(c, j->batch);
            else if (j->who == MINIMAL)
                min_send(c, j->batch);
            else
                wb_send_n(j->batch);
            k = j->batch;
        } else {
            k = j->who == RAW       ? raw_claim_delete(c, j->batch)
                : j->who == MINIMAL ? min_claim_delete(c, j->batch)
                                    : wb_claim_delete(j->batch);
            if (!k && j->drain)
                break;
            if (!k)
                die("claim", "the queue ran dry: preload more messages");
        }
        n += k;
    }
    atomic_fetch_add(j->count, n);
    if (c)
        PQfinish(c);
    return NULL;
}

static PGconn *admin;

static void reset_queue(void)
{
    raw_exec(admin, "TRUNCATE message_queue_messages, message_queue_deduplications");
    raw_exec(admin, "TRUNCATE bench_minq");
}

/* Enough messages for a claim measure: rate guess x seconds x 2. */
static void preload(unsigned messages, who_kind who, bool analyze)
{
    bool minimal = who == MINIMAL;
    if (minimal) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "INSERT INTO bench_minq (queue, body) SELECT 'async-jobs', '{\"job\":' || g || "
                 "'}' FROM generate_series(1, %u) g",
                 messages);
        raw_exec(admin, sql);
        if (analyze)
            raw_exec(admin, "VACUUM ANALYZE bench_minq");
        return;
    }
    char *q = malloc(1 << 20), *b = malloc(1 << 20), *d = malloc(1 << 20), *r = malloc(1 << 20);
    unsigned chunk = 2000;
    send_arrays(chunk, q, b, d, r, 1 << 20);
    const char *vals[] = {q, b, d, r};
    for (unsigned done = 0; done < messages; done += chunk) {
        PGresult *res = PQexecPrepared(admin, "wb_send", 4, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die("preload", PQerrorMessage(admin));
        PQclear(res);
    }
    if (analyze)
        raw_exec(admin, "VACUUM ANALYZE message_queue_messages");
    free(q);
    free(b);
    free(d);
    free(r);
}

static double measure(who_kind who, op_kind kind, unsigned batch, unsigned threads)
{
    reset_queue();
    if (kind == CLAIM)
        preload(batch == 1 ? 40000 : 160000, who, true);
    atomic_uint_fast64_t count = 0;
    pthread_t t[32];
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, threads + 1);
    job j = {who, kind, batch, 0, false, &count, &ready, NULL};
    atomic_store(&j.until, now_s() + 3600);
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, &j);
    pthread_barrier_wait(&ready);
    double start = now_s();
    atomic_store(&j.until, start + seconds);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&ready);
    return (double)atomic_load(&count) / (now_s() - start);
}

/* The backlog case: BACKLOG messages arrive after the planner saw the
 * table empty, then 4 consumers drain them in batches of 10; messages/s. */
#define BACKLOG 100000u

static double drain_backlog(who_kind who)
{
    const char *table = who == MINIMAL ? "bench_minq" : "message_queue_messages";
    char sql[160];
    reset_queue();
    snprintf(sql, sizeof sql, "ALTER TABLE %s SET (autovacuum_enabled = off)", table);
    raw_exec(admin, sql);
    snprintf(sql, sizeof sql, "VACUUM ANALYZE %s", table);
    raw_exec(admin, sql);
    bool worst = who != MINIMAL;
    atomic_uint_fast64_t count = 0;
    pthread_t t[4];
    pthread_barrier_t ready, warmed;
    pthread_barrier_init(&ready, NULL, 5);
    pthread_barrier_init(&warmed, NULL, 5);
    job j = {who, CLAIM, 10, 0, true, &count, &ready, worst ? &warmed : NULL};
    atomic_store(&j.until, now_s() + 3600);
    if (!worst)
        preload(BACKLOG, who, true);
    for (unsigned i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, &j);
    if (worst) {
        pthread_barrier_wait(&warmed);
        preload(BACKLOG, who, false);
    }
    pthread_barrier_wait(&ready);
    double start = now_s();
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    double rate = (double)atomic_load(&count) / (now_s() - start);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&warmed);
    if (atomic_load(&count) != BACKLOG)
        die("backlog", "the drain did not take every message of the backlog");
    snprintf(sql, sizeof sql, "ALTER TABLE %s RESET (autovacuum_enabled)", table);
    raw_exec(admin, sql);
    return rate;
}

static void backlog_table(unsigned rounds)
{
    double w[15], m[15];
    for (unsigned k = 0; k < rounds; k++) {
        if (k % 2) {
            m[k] = drain_backlog(MINIMAL);
            w[k] = drain_backlog(WORKERBUS);
        } else {
            w[k] = drain_backlog(WORKERBUS);
            m[k] = drain_backlog(MINIMAL);
        }
        fprintf(stderr, "bench-queue: backlog round %u: workerbus %.0f, minimal %.0f\n", k + 1,
                w[k], m[k]);
    }
    printf("| backlog of %u messages, analyzed empty, 4 consumers, batches of 10"
           " (messages/s) | workerbus | minimal SKIP LOCKED queue, backlog analyzed"
           " | workerbus / minimal |\n"
           "|---|---|---|---|\n",
           BACKLOG);
    double wmin = w[0], wmax = w[0];
    for (unsigned k = 0; k < rounds; k++) {
        printf("| round %u | %.0f | %.0f | %.1f%% |\n", k + 1, w[k], m[k], 100.0 * w[k] / m[k]);
        wmin = w[k] < wmin ? w[k] : wmin;
        wmax = w[k] > wmax ? w[k] : wmax;
    }
    printf("| spread of workerbus's rounds ((max - min) / max) | %.1f%% | | |\n",
           100.0 * (wmax - wmin) / wmax);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage", "bench-queue DATABASE_URL [seconds] [rounds]");
    db_url = argv[1];
    if (argc > 2)
        seconds = atof(argv[2]);
    unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 3;
    if (rounds < 1 || rounds > 15 || seconds <= 0)
        die("usage", "seconds > 0, rounds 1-15");

    /* a builtin+postgres configuration needs a PKI to validate */
    wbb_env env;
    wbb_env_make(&env, "wbbenchq");
    wb_config *cfg = wbb_config(&env, "tls://127.0.0.1:8883", db_url);
    if (wb_queue_open(cfg, NULL, &wq))
        die("open", wb_queue_last_error(NULL));
    {
        PGconn *c = PQconnectdb(db_url); /* the minimal queue's table, before the statements */
        raw_exec(c, WBB_MINQ_TABLE);
        PQfinish(c);
    }
    admin = raw_connect();
    PGresult *sr = PQexec(admin, "SELECT current_setting('fsync'), "
                                 "current_setting('synchronous_commit'), version()");
    fprintf(stderr, "bench-queue: fsync=%s synchronous_commit=%s, %.40s\n", PQgetvalue(sr, 0, 0),
            PQgetvalue(sr, 0, 1), PQgetvalue(sr, 0, 2));
    PQclear(sr);

    static const struct {
        const char *label;
        op_kind kind;
        unsigned batch, threads, raw_threads;
    } rows[] = {
        {"send, single, 1 thread", SEND, 1, 1, 1},
        {"send, batches of 10, 1 thread", SEND, 10, 1, 1},
        {"claim+delete, single, 1 consumer", CLAIM, 1, 1, 1},
        {"claim+delete, batches of 10, 1 consumer", CLAIM, 10, 1, 1},
        {"claim+delete, single, 4 consumers", CLAIM, 1, 4, 4},
        {"claim+delete, batches of 10, 4 consumers", CLAIM, 10, 4, 4},
        {"send, single, 4 threads (raw: 4 connections)", SEND, 1, 4, 4},
        {"send, single, 16 threads (raw: 16 connections)", SEND, 1, 16, 16},
        {"send, single, 16 threads vs raw single-row on 1 connection", SEND, 1, 16, 1},
    };
    const char *filter = argc > 4 ? argv[4] : NULL;
    bool header = false;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (filter && !strstr(rows[i].label, filter))
            continue;
        if (!header)
            printf("| measure (messages/s, median of %u rounds of %.0f s) | workerbus | raw SQL "
                   "| minimal SKIP LOCKED queue | workerbus / raw SQL | workerbus / minimal |\n"
                   "|---|---|---|---|---|---|\n",
                   rounds, seconds);
        header = true;
        double w[15], r[15], m[15];
        for (unsigned k = 0; k < rounds; k++) {
            /* the order turns with the rounds */
            for (unsigned o = 0; o < 3; o++) {
                unsigned who = (o + k) % 3;
                if (who == 0)
                    w[k] = measure(WORKERBUS, rows[i].kind, rows[i].batch, rows[i].threads);
                else if (who == 1)
                    r[k] = measure(RAW, rows[i].kind, rows[i].batch, rows[i].raw_threads);
                else
                    m[k] = measure(MINIMAL, rows[i].kind, rows[i].batch, rows[i].raw_threads);
            }
            fprintf(stderr, "bench-queue: %s round %u: workerbus %.0f, raw %.0f, minimal %.0f\n",
                    rows[i].label, k + 1, w[k], r[k], m[k]);
        }
        double mw = wbb_median(w, rounds), mr = wbb_median(r, rounds), mm = wbb_median(m, rounds);
        printf("| %s | %.0f | %.0f | %.0f | %.1f%% | %.1f%% |\n", rows[i].label, mw, mr, mm,
               100.0 * mw / mr, 100.0 * mw / mm);
        fflush(stdout);
    }
    if (!filter || strstr("backlog", filter)) {
        if (header)
            printf("\n");
        backlog_table(rounds);
    }
    raw_exec(admin, "DROP TABLE bench_minq");
    wb_queue_close(wq);
    wb_config_free(cfg);
    PQfinish(admin);
    wbb_env_remove(&env);
    return 0;
}
