/* Replicas of the builtin broker behind HAProxy, on the harness: three
 * `workerbus broker run` replicas (each a bundled broker, heartbeat and
 * outbox delivery) sharing one PostgreSQL, workers connecting through the
 * load balancer, and the test's own server on each replica. Every message
 * is counted in both directions, duplicates included; a replica is killed,
 * another frozen, a fourth added at run time. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "envtext.h"
#include "freeze.h"
#include "workerbus/workerbus.h"

#define NWORKERS  50
#define MAX_MSGS  4096 /* per worker */
#define TIMEOUT_S 3u   /* MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT of the replicas */
#define KEEPALIVE                                                                                  \
    5u /* the workers' (libmosquitto's least): a frozen broker is noticed in 1.5 times this */

/* inside the library (the static build): the builtin backend's state, and
 * a query on its replicas' routing connection (heap text, NULL: failed) */
void *wb__broker_priv(const wb_broker *b);
char *wb__bltn_route_query(void *priv, const char *sql);

static wb_harness *h;

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void up(unsigned replicas)
{
    wb_harness_opts o = WB_HARNESS_OPTS_INIT;
    o.replicas = replicas;
    o.replica_timeout_s = TIMEOUT_S;
    o.workerbus = getenv("WB_CLI");
    static char script[512];
    snprintf(script, sizeof script, "%s/scripts/services", getenv("WB_SOURCE_ROOT"));
    o.services_script = script;
    char *d = NULL;
    wb_err err = wb_harness_up(&o, &h, &d);
    cr_assert_eq(err, WB_OK, "harness: %s: %s", wb_err_name(err), d ? d : "");
}

/* A configuration from KEY=VALUE lines and overrides. */
static wb_config *config_of(const char *text, const char *const *over)
{
    char *problems = NULL;
    wb_config *cfg = wbt_config_of(text, over, &problems);
    cr_assert_not_null(cfg, "configuration refused: %s", problems ? problems : "");
    return cfg;
}

#define env_value wbt_env_value

static long long sql_count(const char *query)
{
    PGconn *c = PQconnectdb(env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, query);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", query, PQerrorMessage(c));
    long long n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* A server on replica i: its own wb_broker, client id of its own. */
typedef struct server {
    wb_config *cfg;
    wb_broker *b;
} server;

static void server_open(server *s, unsigned i, const char *const *over)
{
    s->cfg = config_of(wb_harness_replica_env(h, i), over);
    wb_broker_opts bo = WB_BROKER_OPTS_INIT;
    char id[64];
    snprintf(id, sizeof id, "test-server-%u", i + 1);
    bo.client_id = id;
    cr_assert_eq(wb_broker_open(s->cfg, &bo, &s->b), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(s->b, 20000), WB_OK, "%s", wb_broker_last_error(s->b));
}

static void server_close(server *s)
{
    if (s->b) {
        wb_broker_disconnect(s->b, 5000);
        wb_broker_close(s->b);
    }
    wb_config_free(s->cfg);
    memset(s, 0, sizeof *s);
}

/* A worker through the load balancer, keeping what it receives. */
typedef struct tworker {
    char id[WB_ULID_STR_SIZE];
    wb_worker *w;
    pthread_mutex_t lock;
    unsigned n;
    char *got[MAX_MSGS];
} tworker;

static tworker workers[NWORKERS + 20];

static void on_message(void *ctx, const wb_message *m)
{
    tworker *t = ctx;
    pthread_mutex_lock(&t->lock);
    if (t->n < MAX_MSGS)
        t->got[t->n++] = strndup(m->payload, m->payload_len);
    pthread_mutex_unlock(&t->lock);
}

/* A worker through the load balancer, or dialing replica `on` (1-based)
 * itself when on is not 0; connected when connect. */
static void worker_open_at(tworker *t, bool connect, unsigned on)
{
    if (!t->id[0]) {
        wb_ulid u;
        cr_assert_eq(wb_ulid_new(&u), WB_OK);
        wb_ulid_format(&u, t->id);
        pthread_mutex_init(&t->lock, NULL);
    }
    static char ca[512], crt[512], key[512], ep[128], to[64];
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", wb_harness_dir(h));
    snprintf(crt, sizeof crt, "%s/pool.crt", wb_harness_dir(h));
    snprintf(key, sizeof key, "%s/pool.key", wb_harness_dir(h));
    snprintf(ep, sizeof ep, "%s",
             env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "MQTT_BROKER_ENDPOINT"));
    if (on)
        snprintf(to, sizeof to, "%s",
                 env_value(wb_harness_replica_env(h, on - 1), "MQTT_BROKER_BUILTIN_LISTEN"));
    wb_worker_opts o = WB_WORKER_OPTS_INIT;
    o.endpoint = ep;
    o.connect_to = on ? to : NULL;
    o.pool = wb_harness_pool(h);
    o.worker = t->id;
    o.ca_file = ca;
    o.cert_file = crt;
    o.key_file = key;
    o.keepalive_s = KEEPALIVE;
    o.on_message = on_message;
    o.on_message_ctx = t;
    char *d = NULL;
    cr_assert_eq(wb_worker_open(&o, &t->w, &d), WB_OK, "%s", d ? d : "");
    if (connect)
        cr_assert_eq(wb_worker_connect(t->w, 20000), WB_OK, "%s", wb_worker_last_error(t->w));
}

static void worker_open(tworker *t, bool connect)
{
    worker_open_at(t, connect, 0);
}

static void workers_close(void)
{
    for (size_t i = 0; i < sizeof workers / sizeof workers[0]; i++) {
        tworker *t = &workers[i];
        if (t->w)
            wb_worker_close(t->w);
        for (unsigned k = 0; k < t->n; k++)
            free(t->got[k]);
        if (t->id[0])
            pthread_mutex_destroy(&t->lock);
        memset(t, 0, sizeof *t);
    }
}

/* Waits until n workers are present (subscribed somewhere, recorded). */
static void wait_present(long long n, const char *extra_where, unsigned timeout_ms)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM workerbus_presence p JOIN workerbus_replicas r ON r.id = "
             "p.replica WHERE r.heartbeat_at > now() - interval '%u seconds' %s",
             TIMEOUT_S, extra_where ? extra_where : "");
    uint64_t end = now_ms() + timeout_ms;
    long long got = 0;
    while ((got = sql_count(q)) < n && now_ms() < end)
        usleep(100000);
    cr_assert_geq(got, n, "%lld of %lld workers present after %u ms", got, n, timeout_ms);
}

/* How many of the messages tagged tag reached worker t, and how many of
 * those more than once. */
static void tally(tworker *t, const char *tag, unsigned *unique, unsigned *dups)
{
    *unique = *dups = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < t->n; i++) {
        if (!strstr(t->got[i], tag))
            continue;
        bool seen = false;
        for (unsigned j = 0; j < i && !seen; j++)
            seen = strcmp(t->got[i], t->got[j]) == 0;
        if (seen)
            (*dups)++;
        else
            (*unique)++;
    }
    pthread_mutex_unlock(&t->lock);
}

static void send_to(server *s, tworker *t, const char *tag, unsigned replica, unsigned n)
{
    char p[160];
    int len = snprintf(p, sizeof p, "{\"tag\":\"%s\",\"from\":%u,\"n\":%u}", tag, replica, n);
    wb_err err;
    /* a full MQTT outbox is the only acceptable refusal: wait and retry */
    while ((err = wb_broker_publish_to_worker(s->b, wb_harness_pool(h), t->id, p, (size_t)len,
                                              1)) == WB_ERR_BUSY)
        usleep(10000);
    cr_assert_eq(err, WB_OK, "publish to %s: %s", t->id, wb_broker_last_error(s->b));
}

/* Waits until every worker in [from, to) has want unique messages tagged tag. */
static bool wait_delivered(unsigned from, unsigned to, const char *tag, unsigned want,
                           unsigned timeout_ms, unsigned *total, unsigned *dups)
{
    uint64_t end = now_ms() + timeout_ms;
    for (;;) {
        bool all = true;
        *total = *dups = 0;
        for (unsigned i = from; i < to; i++) {
            unsigned u, d;
            tally(&workers[i], tag, &u, &d);
            *total += u;
            *dups += d;
            all = all && u >= want;
        }
        if (all || now_ms() > end)
            return all;
        usleep(50000);
    }
}

/* ---- worker to server: the iot queue, drained ------------------------------ */

typedef struct inbox {
    pthread_mutex_t lock;
    char **items;
    size_t n, cap;
} inbox;

static wb_err collect(void *ctx, const wb_worker_message *m)
{
    inbox *in = ctx;
    char *item = NULL;
    if (asprintf(&item, "%s %s", m->envelope->worker, m->envelope->payload) < 0)
        return WB_ERR_NO_MEMORY;
    pthread_mutex_lock(&in->lock);
    if (in->n == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 256;
        in->items = realloc(in->items, in->cap * sizeof *in->items);
    }
    in->items[in->n++] = item;
    pthread_mutex_unlock(&in->lock);
    return WB_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Unique items holding tag, and duplicates. */
static void inbox_tally(inbox *in, const char *tag, size_t *unique, size_t *dups)
{
    pthread_mutex_lock(&in->lock);
    qsort(in->items, in->n, sizeof *in->items, cmp_str);
    *unique = *dups = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (!strstr(in->items[i], tag))
            continue;
        if (i && !strcmp(in->items[i], in->items[i - 1]))
            (*dups)++;
        else
            (*unique)++;
    }
    pthread_mutex_unlock(&in->lock);
}

static void inbox_free(inbox *in)
{
    for (size_t i = 0; i < in->n; i++)
        free(in->items[i]);
    free(in->items);
}

typedef struct drainer {
    wb_queue *q;
    wb_drain *d;
    inbox in;
} drainer;

static void drain_start(drainer *dr, const wb_config *cfg)
{
    pthread_mutex_init(&dr->in.lock, NULL);
    cr_assert_eq(wb_queue_open(cfg, NULL, &dr->q), WB_OK);
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    o.wait_s = 1;
    cr_assert_eq(wb_drain_start(dr->q, &o, collect, &dr->in, &dr->d), WB_OK);
}

static void drain_stop(drainer *dr)
{
    wb_drain_stop(dr->d);
    wb_drain_free(dr->d);
    wb_queue_close(dr->q);
    inbox_free(&dr->in);
    pthread_mutex_destroy(&dr->in.lock);
}

static size_t wait_inbox(drainer *dr, const char *tag, size_t want, unsigned timeout_ms,
                         size_t *dups)
{
    uint64_t end = now_ms() + timeout_ms;
    size_t unique = 0;
    do {
        inbox_tally(&dr->in, tag, &unique, dups);
        if (unique >= want)
            break;
        usleep(50000);
    } while (now_ms() < end);
    return unique;
}

static void worker_send(tworker *t, const char *tag, unsigned n)
{
    char p[128];
    int len = snprintf(p, sizeof p, "{\"tag\":\"%s\",\"n\":%u}", tag, n);
    wb_err err;
    while ((err = wb_worker_publish(t->w, p, (size_t)len, 1)) == WB_ERR_BUSY)
        usleep(10000);
    cr_assert(err == WB_OK || err == WB_ERR_STATE, "worker publish: %s", wb_err_name(err));
}

/* ---- the tests -------------------------------------------------------------- */

Test(replicas, every_replica_reaches_every_worker_and_a_fourth_joins_at_run_time, .timeout = 240)
{
    up(3);
    for (unsigned i = 0; i < NWORKERS; i++)
        worker_open(&workers[i], true);
    wait_present(NWORKERS, NULL, 20000);
    /* the load balancer spread them */
    for (unsigned r = 1; r <= 3; r++) {
        char q[256];
        snprintf(q, sizeof q,
                 "SELECT count(*) FROM workerbus_presence WHERE replica = 'replica-%u'", r);
        long long n = sql_count(q);
        cr_log_info("replica-%u holds %lld workers", r, n);
        cr_assert_gt(n, 0, "replica-%u holds no worker", r);
    }
    server s[3];
    for (unsigned r = 0; r < 3; r++)
        server_open(&s[r], r, NULL);
    drainer dr = {0};
    drain_start(&dr, s[0].cfg);
    /* every replica's server to every worker, 5 rounds; every worker to
     * the server, 5 messages */
    for (unsigned n = 0; n < 5; n++) {
        for (unsigned r = 0; r < 3; r++)
            for (unsigned i = 0; i < NWORKERS; i++)
                send_to(&s[r], &workers[i], "all", r, n);
        for (unsigned i = 0; i < NWORKERS; i++)
            worker_send(&workers[i], "up", n);
    }
    unsigned total, dups;
    bool all = wait_delivered(0, NWORKERS, "\"all\"", 15, 30000, &total, &dups);
    size_t idups = 0;
    size_t iunique = wait_inbox(&dr, "\"up\"", NWORKERS * 5, 30000, &idups);
    cr_log_info("server to worker: %u of %u delivered, %u duplicate(s); worker to server: %zu of "
                "%u handled, %zu duplicate(s)",
                total, 3 * 5 * NWORKERS, dups, iunique, 5 * NWORKERS, idups);
    cr_assert(all, "server to worker: %u of %u delivered", total, 3 * 5 * NWORKERS);
    cr_assert_eq(iunique, 5 * NWORKERS);
    wb_broker_replica_stats st[3];
    uint64_t local = 0, routed = 0, delivered = 0;
    for (unsigned r = 0; r < 3; r++) {
        cr_assert_eq(wb_broker_replica_stats_get(s[r].b, &st[r]), WB_OK);
        local += st[r].local;
        routed += st[r].routed;
        delivered += st[r].delivered;
        cr_log_info("test-server-%u: local %llu, routed %llu, pending %llu, delivered %llu", r + 1,
                    (unsigned long long)st[r].local, (unsigned long long)st[r].routed,
                    (unsigned long long)st[r].pending, (unsigned long long)st[r].delivered);
        cr_assert_geq(st[r].replicas, 3);
    }
    cr_assert_eq(local + routed, 3 * 5 * NWORKERS, "every message was local or routed");
    cr_assert_gt(local, 0);
    cr_assert_gt(routed, 0);
    cr_assert_eq(sql_count("SELECT count(*) FROM workerbus_outbox"), 0, "the outbox emptied");

    /* a fourth replica at run time: the next workers go to it (it holds
     * the fewest connections), nothing else changes */
    char *d = NULL;
    cr_assert_eq(wb_harness_replica_add(h, &d), WB_OK, "%s", d ? d : "");
    cr_assert_eq(wb_harness_replicas(h), 4);
    usleep(1500000); /* HAProxy's first health check of it */
    for (unsigned i = NWORKERS; i < NWORKERS + 10; i++)
        worker_open(&workers[i], true);
    wait_present(NWORKERS + 10, NULL, 20000);
    long long on4 = sql_count("SELECT count(*) FROM workerbus_presence WHERE replica = "
                              "'replica-4'");
    cr_log_info("replica-4 took %lld of the 10 new workers", on4);
    cr_assert_gt(on4, 0);
    for (unsigned r = 0; r < 3; r++)
        for (unsigned i = NWORKERS; i < NWORKERS + 10; i++)
            send_to(&s[r], &workers[i], "new", r, 0);
    all = wait_delivered(NWORKERS, NWORKERS + 10, "\"new\"", 3, 30000, &total, &dups);
    cr_assert(all, "to the new workers: %u of 30 delivered", total);
    drain_stop(&dr);
    for (unsigned r = 0; r < 3; r++)
        server_close(&s[r]);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

/* Replica 2 killed after round 5 of 20: its server process (hard: and its
 * broker, at the same moment). Prints the figures of each direction. */
static void killed_replica(bool hard)
{
    up(3);
    for (unsigned i = 0; i < NWORKERS; i++)
        worker_open(&workers[i], true);
    wait_present(NWORKERS, NULL, 20000);
    long long on2 = sql_count("SELECT count(*) FROM workerbus_presence WHERE replica = "
                              "'replica-2'");
    cr_assert_gt(on2, 0);
    server s[3];
    for (unsigned r = 0; r < 3; r++)
        server_open(&s[r], r, NULL);
    drainer dr = {0};
    drain_start(&dr, s[0].cfg);
    /* 20 rounds, 100 ms apart, from replicas 1 and 3 and from every worker;
     * replica 2 (server and broker) is SIGKILLed after round 5 */
    const unsigned rounds = 20;
    uint64_t killed_at = 0;
    for (unsigned n = 0; n < rounds; n++) {
        if (n == 5) {
            int pid = wb_harness_replica_pid(h, 1), bpid = wb_harness_replica_broker_pid(h, 1);
            cr_assert_gt(pid, 0);
            cr_assert_gt(bpid, 0);
            /* the server process: its broker gets SIGTERM from the kernel
             * when it dies and stops as cleanly as it can */
            cr_assert_eq(kill(pid, SIGKILL), 0);
            if (hard)
                kill(bpid, SIGKILL); /* the whole pod at once: nothing is saved */
            killed_at = now_ms();
            server_close(&s[1]); /* the test's server of it goes too */
            for (int k = 0; k < 100 && kill(bpid, 0) == 0; k++)
                usleep(50000);
            cr_assert_neq(kill(bpid, 0), 0, "replica 2's broker outlived its server");
        }
        for (unsigned r = 0; r < 3; r += 2)
            for (unsigned i = 0; i < NWORKERS; i++)
                send_to(&s[r], &workers[i], "flow", r, n);
        for (unsigned i = 0; i < NWORKERS; i++)
            worker_send(&workers[i], "flow", n);
        usleep(100000);
    }
    /* every worker is connected again, through replicas 1 and 3 */
    uint64_t end = now_ms() + 30000;
    unsigned connected = 0;
    while (now_ms() < end) {
        connected = 0;
        for (unsigned i = 0; i < NWORKERS; i++) {
            wb_broker_stats st;
            wb_worker_stats_get(workers[i].w, &st);
            connected += st.connected;
        }
        if (connected == NWORKERS)
            break;
        usleep(100000);
    }
    uint64_t back_ms = now_ms() - killed_at;
    cr_assert_eq(connected, NWORKERS, "%u of %u workers reconnected", connected, NWORKERS);
    wait_present(NWORKERS, "AND p.replica <> 'replica-2'", 20000);
    cr_log_info("replica 2 (%lld workers) killed: all %u workers connected again within %llu ms",
                on2, NWORKERS, (unsigned long long)back_ms);
    /* after recovery, everything arrives */
    for (unsigned r = 0; r < 3; r += 2)
        for (unsigned i = 0; i < NWORKERS; i++)
            send_to(&s[r], &workers[i], "after", r, 0);
    unsigned total, dups;
    bool all = wait_delivered(0, NWORKERS, "\"after\"", 2, 30000, &total, &dups);
    cr_assert(all, "after the recovery: %u of %u delivered", total, 2 * NWORKERS);
    for (unsigned i = 0; i < NWORKERS; i++)
        wb_worker_flush(workers[i].w, 10000);
    /* the figures of the flow, each direction */
    all = wait_delivered(0, NWORKERS, "\"flow\"", 2 * rounds, 10000, &total, &dups);
    unsigned sent = 2 * rounds * NWORKERS;
    size_t idups = 0, iunique = wait_inbox(&dr, "\"flow\"", rounds * NWORKERS, 30000, &idups);
    printf("replica killed mid-flow (%s): server to worker: %u sent, %u delivered, %u lost, %u "
           "duplicate(s); worker to server: %u sent, %zu handled, %zu lost, %zu duplicate(s); "
           "workers back in %llu ms\n",
           hard ? "server and broker SIGKILLed"
                : "server SIGKILLed, its broker stopped by the kernel's SIGTERM",
           sent, total, sent - total, dups, rounds * NWORKERS, iunique,
           (size_t)rounds * NWORKERS - iunique, idups, (unsigned long long)back_ms);
    fflush(stdout);
    /* a worker's QoS 1 message is kept until acknowledged: none is lost */
    cr_assert_eq(iunique, rounds * NWORKERS, "worker to server: %zu of %u handled", iunique,
                 rounds * NWORKERS);
    drain_stop(&dr);
    server_close(&s[0]);
    server_close(&s[2]);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

Test(replicas, a_killed_server_s_workers_carry_on_through_the_others, .timeout = 240)
{
    killed_replica(false);
}

Test(replicas, a_killed_pod_s_workers_carry_on_through_the_others, .timeout = 240)
{
    killed_replica(true);
}

static char *route_query(server *s, const char *sql)
{
    char *text = wb__bltn_route_query(wb__broker_priv(s->b), sql);
    cr_assert_not_null(text, "the routing connection did not run: %s", sql);
    return text;
}

/* The route's plan for worker t's rows, as it is kept now. */
static char *route_plan(server *s, const tworker *t)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "EXPLAIN EXECUTE wb_outbox_route('%s', '%s', 3, 't', '\\x00', 1, 'replica-x', 3600, "
             "10000)",
             wb_harness_pool(h), t->id);
    return route_query(s, sql);
}

static void run_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* The route keeps a generic plan after five runs. One made while the
 * outbox was analyzed nearly empty reads all of it to count a worker's
 * rows; once the outbox grows (300 000 rows for other workers), a heartbeat
 * analyzes it, and the plan the route then keeps finds a worker's rows by
 * the index. While another session holds the lock that ANALYZE needs (a
 * VACUUM's), the heartbeats go on, and the ANALYZE comes after it. */
static void route_plans_follow_the_outbox(server *s, tworker *t)
{
    PGconn *c = PQconnectdb(env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    run_sql(c, "ANALYZE workerbus_outbox"); /* plans made from here see it nearly empty */
    for (unsigned n = 0; n < 6; n++)        /* five custom plans, then the kept one */
        send_to(s, t, "before", 1, n);
    char *before = route_plan(s, t);
    run_sql(c, "INSERT INTO workerbus_outbox (pool, worker, topic, payload, qos, sender,"
               " expires_at) SELECT 'other-pool', 'w' || (i % 1000), 't', '\\x00', 1, 'x',"
               " now() + interval '1 hour' FROM generate_series(1, 300000) i");
    PGconn *lock = PQconnectdb(env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL"));
    cr_assert_eq(PQstatus(lock), CONNECTION_OK, "%s", PQerrorMessage(lock));
    run_sql(lock, "BEGIN");
    run_sql(lock, "LOCK TABLE workerbus_outbox IN SHARE UPDATE EXCLUSIVE MODE");
    sleep(TIMEOUT_S); /* heartbeats, whose ANALYZE cannot have its lock */
    long long beating = sql_count("SELECT count(*) FROM workerbus_replicas WHERE id = 'replica-1'"
                                  " AND heartbeat_at > now() - interval '2 seconds'");
    run_sql(lock, "COMMIT");
    PQfinish(lock);
    cr_assert_eq(beating, 1, "replica-1's heartbeat stopped while its ANALYZE waited for a lock");
    sleep(TIMEOUT_S); /* a heartbeat or more, with the lock free */
    for (unsigned n = 0; n < 6; n++)
        send_to(s, t, "after", 1, n);
    char *after = route_plan(s, t);
    run_sql(c, "DELETE FROM workerbus_outbox WHERE pool = 'other-pool'");
    PQfinish(c);
    cr_log_info("the route's kept plan, the outbox nearly empty:\n%s\nafter it grew:\n%s", before,
                after);
    cr_assert_not_null(strstr(before, "Seq Scan on workerbus_outbox"),
                       "the plan kept for a nearly empty outbox does not read it all: the test "
                       "no longer shows what it is for:\n%s",
                       before);
    cr_assert_null(strstr(after, "Seq Scan on workerbus_outbox"),
                   "after the outbox grew, the route still reads all of it:\n%s", after);
    free(before);
    free(after);
}

Test(replicas, an_offline_worker_gets_its_waiting_messages_and_expired_ones_never, .timeout = 180)
{
    up(3);
    tworker *t = &workers[0];
    worker_open(t, false); /* its identity only: not connected */
    server s1 = {0}, s1_short = {0};
    server_open(&s1, 0, NULL);
    const char *short_expiry[] = {"MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY=1", NULL};
    server_open(&s1_short, 0, short_expiry);
    send_to(&s1_short, t, "old", 1, 0);
    for (unsigned n = 0; n < 10; n++)
        send_to(&s1, t, "wait", 1, n);
    wb_broker_replica_stats st;
    cr_assert_eq(wb_broker_replica_stats_get(s1.b, &st), WB_OK);
    cr_assert_eq(st.pending, 10, "a worker connected nowhere: its messages wait");
    cr_assert_eq(sql_count("SELECT count(*) FROM workerbus_outbox"), 11);
    /* the route keeps a generic plan, made for a nearly empty outbox; when
     * the outbox grows (300 000 rows for other workers), the next heartbeat
     * has the statements prepared again: the plan that the route then keeps
     * finds a worker's rows by the index instead of reading the outbox */
    route_plans_follow_the_outbox(&s1, t);
    sleep(2); /* "old" is past its expiry */
    cr_assert_eq(wb_worker_connect(t->w, 20000), WB_OK, "%s", wb_worker_last_error(t->w));
    unsigned total, dups;
    bool all = wait_delivered(0, 1, "\"wait\"", 10, 20000, &total, &dups);
    cr_assert(all, "%u of 10 waiting messages delivered", total);
    usleep(500000);
    unsigned old, old_dups;
    tally(t, "\"old\"", &old, &old_dups);
    cr_assert_eq(old, 0, "an expired message was delivered");
    /* in order */
    pthread_mutex_lock(&t->lock);
    unsigned next = 0;
    for (unsigned i = 0; i < t->n; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"n\":%u}", next);
        if (strstr(t->got[i], "\"wait\"") && strstr(t->got[i], want))
            next++;
        else if (strstr(t->got[i], "\"wait\""))
            cr_assert_fail("out of order: %s where n=%u was next", t->got[i], next);
    }
    pthread_mutex_unlock(&t->lock);
    cr_assert_eq(next, 10);
    /* the expired row is gone at the next heartbeat; the delivered ones too */
    uint64_t end = now_ms() + 10000;
    while (sql_count("SELECT count(*) FROM workerbus_outbox") && now_ms() < end)
        usleep(100000);
    cr_assert_eq(sql_count("SELECT count(*) FROM workerbus_outbox"), 0);
    /* the outbox is bounded per worker: the refusal names the limit */
    server s_small = {0};
    const char *small[] = {"MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER=3", NULL};
    server_open(&s_small, 1, small);
    tworker *t2 = &workers[1];
    worker_open(t2, false);
    for (unsigned n = 0; n < 3; n++)
        send_to(&s_small, t2, "bound", 2, n);
    wb_err err =
        wb_broker_publish_to_worker(s_small.b, wb_harness_pool(h), t2->id, "{\"x\":1}", 7, 1);
    cr_assert_eq(err, WB_ERR_BUSY, "a 4th message for a worker whose bound is 3: %s",
                 wb_err_name(err));
    const char *why = wb_broker_last_error(s_small.b);
    cr_assert(strstr(why, "MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER") && strstr(why, t2->id), "%s",
              why);
    cr_log_info("full: %s", why);
    server_close(&s_small);
    server_close(&s1);
    server_close(&s1_short);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

Test(replicas, a_frozen_replica_loses_its_workers_presence_and_gets_nothing, .timeout = 240)
{
    up(3);
    for (unsigned i = 0; i < 15; i++)
        worker_open(&workers[i], true);
    wait_present(15, NULL, 20000);
    server s1 = {0};
    server_open(&s1, 0, NULL);
    /* the workers replica 3 holds */
    PGconn *c = PQconnectdb(env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL"));
    PGresult *r = PQexec(c, "SELECT worker FROM workerbus_presence WHERE replica = 'replica-3'");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    int held = PQntuples(r);
    cr_assert_gt(held, 0);
    bool on3[15] = {false};
    for (int k = 0; k < held; k++)
        for (unsigned i = 0; i < 15; i++)
            if (!strcmp(PQgetvalue(r, k, 0), workers[i].id))
                on3[i] = true;
    PQclear(r);
    PQfinish(c);
    int pid = wb_harness_replica_pid(h, 2), bpid = wb_harness_replica_broker_pid(h, 2);
    cr_assert(pid > 0 && bpid > 0);
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    cr_assert_eq(kill(bpid, SIGSTOP), 0);
    /* past the timeout, its workers are connected nowhere as far as the
     * others know: their messages wait instead of going to it */
    sleep(TIMEOUT_S + 1);
    wb_broker_replica_stats before, after;
    wb_broker_replica_stats_get(s1.b, &before);
    for (unsigned i = 0; i < 15; i++)
        if (on3[i])
            send_to(&s1, &workers[i], "frozen", 1, 0);
    wb_broker_replica_stats_get(s1.b, &after);
    cr_assert_eq(after.routed, before.routed, "a message was routed to the frozen replica");
    cr_assert_eq(after.pending - before.pending, (uint64_t)held);
    /* its workers notice (keepalive), reconnect through the others and get
     * them there */
    unsigned total, dups;
    bool all = true;
    for (unsigned i = 0; i < 15; i++) {
        if (!on3[i])
            continue;
        unsigned t1, d1;
        all = all && wait_delivered(i, i + 1, "\"frozen\"", 1, 30000, &t1, &d1);
    }
    wait_delivered(0, 15, "\"frozen\"", 0, 0, &total, &dups);
    cr_log_info("frozen replica: %u of %d messages for its workers delivered elsewhere", total,
                held);
    cr_assert(all, "%u of %d messages for the frozen replica's workers delivered", total, held);
    kill(bpid, SIGCONT);
    kill(pid, SIGCONT);
    server_close(&s1);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

Test(replicas, a_worker_that_moves_is_followed_whatever_its_old_replica_knew, .timeout = 180)
{
    up(2);
    tworker *t = &workers[0];
    worker_open_at(t, true, 1);
    wait_present(1, "AND p.replica = 'replica-1'", 20000);
    server s1 = {0};
    server_open(&s1, 0, NULL);
    /* local to replica 1: straight to its broker, and remembered there */
    for (unsigned n = 0; n < 3; n++)
        send_to(&s1, t, "before", 1, n);
    unsigned total, dups;
    cr_assert(wait_delivered(0, 1, "\"before\"", 3, 20000, &total, &dups));
    wb_broker_replica_stats st;
    wb_broker_replica_stats_get(s1.b, &st);
    cr_assert_eq(st.local, 3);
    /* the worker moves to replica 2 (a new connection, a newer epoch) */
    wb_worker_disconnect(t->w, 2000);
    wb_worker_close(t->w);
    t->w = NULL;
    worker_open_at(t, true, 2);
    wait_present(1, "AND p.replica = 'replica-2'", 20000);
    usleep(200000); /* the change's notification reaches replica 1's server */
    for (unsigned n = 0; n < 5; n++)
        send_to(&s1, t, "after", 1, n);
    bool all = wait_delivered(0, 1, "\"after\"", 5, 20000, &total, &dups);
    wb_broker_replica_stats_get(s1.b, &st);
    cr_log_info("after the move: %u of 5 delivered, local %llu, routed %llu", total,
                (unsigned long long)st.local, (unsigned long long)st.routed);
    cr_assert(all, "after the move: %u of 5 delivered", total);
    cr_assert_eq(st.routed, 5, "replica 1 still took the worker for its own");
    server_close(&s1);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

Test(replicas, one_replica_keeps_what_waits_for_an_offline_worker_when_its_broker_is_killed,
     .timeout = 180)
{
    up(0); /* the bundled broker in this process, with PostgreSQL: one replica */
    server s = {0};
    s.cfg = wb_harness_config(h, WB_BROKER_BUILTIN);
    cr_assert_not_null(s.cfg);
    wb_broker_opts bo = WB_BROKER_OPTS_INIT;
    cr_assert_eq(wb_broker_open(s.cfg, &bo, &s.b), WB_OK);
    cr_assert_eq(wb_broker_connect(s.b, 20000), WB_OK, "%s", wb_broker_last_error(s.b));
    tworker *t = &workers[0];
    worker_open(t, true);
    wait_present(1, NULL, 20000);
    /* the worker goes away for a second; the server sends it 2000 */
    cr_assert_eq(wb_worker_disconnect(t->w, 2000), WB_OK);
    sleep(1);
    for (unsigned n = 0; n < 2000; n++)
        send_to(&s, t, "away", 0, n);
    cr_assert_eq(wb_broker_flush(s.b, 20000), WB_OK);
    /* the broker is killed; its supervisor starts it again */
    int pid = wb_harness_broker_pid(h, WB_BROKER_BUILTIN);
    cr_assert_gt(pid, 0);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    uint64_t end = now_ms() + 20000;
    while ((wb_harness_broker_pid(h, WB_BROKER_BUILTIN) == pid ||
            wb_harness_broker_pid(h, WB_BROKER_BUILTIN) <= 0) &&
           now_ms() < end)
        usleep(50000);
    cr_assert_neq(wb_harness_broker_pid(h, WB_BROKER_BUILTIN), pid, "the broker did not restart");
    /* the worker comes back and gets all of it, in order */
    cr_assert_eq(wb_worker_connect(t->w, 20000), WB_OK, "%s", wb_worker_last_error(t->w));
    unsigned total, dups;
    bool all = wait_delivered(0, 1, "\"away\"", 2000, 60000, &total, &dups);
    cr_log_info("a worker away while its broker was killed: %u of 2000 delivered, %u "
                "duplicate(s)",
                total, dups);
    cr_assert(all, "%u of 2000 delivered", total);
    pthread_mutex_lock(&t->lock);
    int last = -1;
    for (unsigned i = 0; i < t->n; i++) {
        const char *p = strstr(t->got[i], "\"n\":");
        int n = p ? atoi(p + 4) : -1;
        cr_assert(n > last || strstr(t->got[i], "\"away\"") == NULL, "out of order: %d after %d", n,
                  last);
        if (strstr(t->got[i], "\"away\""))
            last = n;
    }
    pthread_mutex_unlock(&t->lock);
    server_close(&s);
    workers_close();
    cr_assert_eq(wb_harness_down(h), WB_OK);
}

/* The database host stops answering (every process of the cluster
 * stopped) while the server's replica thread beats: closing the server
 * does not wait for that statement, which would wait for as long as the
 * kernel keeps the connection (minutes). The cluster is continued after
 * 8 s whatever happens, so that a close that waits fails the test. */
Test(replicas, a_close_does_not_wait_for_a_database_that_stopped_answering, .timeout = 120)
{
    up(1);
    server s = {0};
    server_open(&s, 0, NULL);
    /* its replica thread has its connection once it has beaten */
    long long before = sql_count("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                 " 'workerbus-replica'");
    uint64_t end = now_ms() + 10000;
    while (now_ms() < end && sql_count("SELECT count(*) FROM pg_stat_activity WHERE"
                                       " application_name = 'workerbus-replica'") < 2)
        usleep(100000);
    cr_assert_geq(sql_count("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'workerbus-replica'"),
                  2, "the server's replica thread did not connect (%lld before)", before);
    char pidfile[512];
    snprintf(pidfile, sizeof pidfile, "%s/services/pg/postmaster.pid", wb_harness_dir(h));
    wbt_frozen fz;
    cr_assert(wbt_freeze(&fz, pidfile, 8000), "cannot stop the cluster of %s", pidfile);
    /* a heartbeat every TIMEOUT_S / 3: one waits for its answer now */
    usleep(2500000);
    uint64_t t0 = now_ms();
    wb_broker_close(s.b);
    uint64_t took = now_ms() - t0;
    s.b = NULL;
    wbt_thaw(&fz);
    server_close(&s);
    cr_assert_eq(wb_harness_down(h), WB_OK);
    cr_log_info("wb_broker_close() took %llu ms with %zu processes of the cluster stopped",
                (unsigned long long)took, fz.n);
    cr_assert_lt(took, 4000, "wb_broker_close() took %llu ms: it waited for a statement",
                 (unsigned long long)took);
}
