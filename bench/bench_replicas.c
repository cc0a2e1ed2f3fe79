/* Replicas of the builtin broker behind HAProxy (the harness), in one run:
 *  - server to worker latency, publish to the worker's receipt, one message
 *    at a time: to a worker of the server's own replica (local: the
 *    presence lookup, then the broker) and to a worker of another replica
 *    (routed: the outbox row, NOTIFY, the holder's claim, its broker, the
 *    delete), against the bundled broker without a database (the broker's
 *    own path, no lookup);
 *  - server to worker throughput with 1 and 3 replicas (a server on each
 *    replica sending to every worker at once), against the broker without
 *    a database;
 *  - worker to handler throughput with 1 and 3 replicas (every broker's
 *    topic rule commits into the shared iot queue, the server drains it),
 *    against raw single-row INSERTs through libpq on one connection and on
 *    three at once, on the same PostgreSQL in the same run.
 * Medians of the rounds; Markdown rows.
 *
 * Usage: bench-replicas [messages] [rounds] */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "envtext.h"
#include "workerbus/workerbus.h"

#define WORKERS 30
#define MAX_R   3

static const char *prog = "bench-replicas";
static wb_harness *h;

static void die(const char *what, const char *why)
{
    wbb_die_down(prog, h, what, why);
}

#define env_value wbt_env_value

static wb_config *config_of(const char *text)
{
    char *problems = NULL;
    wb_config *cfg = wbt_config_of(text, NULL, &problems);
    if (!cfg)
        die("config", problems);
    return cfg;
}

/* ---- workers that count and time what they receive ---------------------------- */

typedef struct bworker {
    char id[WB_ULID_STR_SIZE];
    wb_worker *w;
} bworker;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t got;
    double last_ms, sent_ms;
} R = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void on_message(void *ctx, const wb_message *m)
{
    (void)ctx;
    (void)m;
    pthread_mutex_lock(&R.lock);
    R.got++;
    R.last_ms = wbb_now_ms();
    pthread_cond_broadcast(&R.cond);
    pthread_mutex_unlock(&R.lock);
}

static void open_workers(bworker *w, unsigned k, const char *endpoint, const char *pool,
                         const char *dir)
{
    char ca[300], crt[300], key[300];
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", dir);
    snprintf(crt, sizeof crt, "%s/pool.crt", dir);
    snprintf(key, sizeof key, "%s/pool.key", dir);
    for (unsigned i = 0; i < k; i++) {
        wb_ulid u;
        wb_ulid_new(&u);
        wb_ulid_format(&u, w[i].id);
        wb_worker_opts o = WB_WORKER_OPTS_INIT;
        o.endpoint = endpoint;
        o.pool = pool;
        o.worker = w[i].id;
        o.ca_file = ca;
        o.cert_file = crt;
        o.key_file = key;
        o.clean_session = true;
        o.on_message = on_message;
        char *d = NULL;
        if (wb_worker_open(&o, &w[i].w, &d) || wb_worker_connect(w[i].w, 30000))
            die("worker", d ? d : wb_worker_last_error(w[i].w));
    }
}

static void close_workers(bworker *w, unsigned k)
{
    for (unsigned i = 0; i < k; i++)
        wb_worker_close(w[i].w);
}

static uint64_t got(void)
{
    pthread_mutex_lock(&R.lock);
    uint64_t n = R.got;
    pthread_mutex_unlock(&R.lock);
    return n;
}

/* Waits until `want` messages in all were received; false after 120 s. */
static bool wait_got(uint64_t want)
{
    pthread_mutex_lock(&R.lock);
    double end = wbb_now_ms() + 120000;
    while (R.got < want && wbb_now_ms() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&R.cond, &R.lock, &ts);
    }
    bool ok = R.got >= want;
    pthread_mutex_unlock(&R.lock);
    return ok;
}

static void publish(wb_broker *b, const char *pool, const char *worker, unsigned i)
{
    char p[64];
    int len = snprintf(p, sizeof p, "{\"i\":%u}", i);
    wb_err err;
    while ((err = wb_broker_publish_to_worker(b, pool, worker, p, (size_t)len, 1)) == WB_ERR_BUSY)
        usleep(200);
    if (err)
        die("publish", wb_broker_last_error(b));
}

/* n messages one at a time to worker, each waited for: the latencies. */
static void latencies(wb_broker *b, const char *pool, const char *worker, unsigned n, double *p50,
                      double *p99)
{
    double *lat = calloc(n, sizeof *lat);
    for (unsigned i = 0; i < n; i++) {
        uint64_t before = got();
        double t0 = wbb_now_ms();
        publish(b, pool, worker, i);
        if (!wait_got(before + 1))
            die("latency", "a message did not arrive in 120 s");
        lat[i] = wbb_now_ms() - t0;
    }
    qsort(lat, n, sizeof *lat, wbb_cmp_double);
    *p50 = lat[n / 2];
    *p99 = lat[(size_t)((double)(n - 1) * 0.99)];
    free(lat);
}

/* ---- throughput: senders on threads --------------------------------------------- */

typedef struct sender {
    wb_broker *b;
    const char *pool;
    bworker *w;
    unsigned k, n;
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;
    for (unsigned i = 0; i < s->n; i++)
        publish(s->b, s->pool, s->w[i % s->k].id, i);
    return NULL;
}

/* Each broker of b[0..nb) sends n/nb messages round robin over the workers,
 * at once; messages a second until all arrived. */
static double s2w_rate(wb_broker **b, unsigned nb, const char *pool, bworker *w, unsigned k,
                       unsigned n)
{
    uint64_t base = got();
    pthread_t t[MAX_R];
    sender s[MAX_R];
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < nb; i++) {
        s[i] = (sender){b[i], pool, w, k, n / nb};
        pthread_create(&t[i], NULL, sender_main, &s[i]);
    }
    for (unsigned i = 0; i < nb; i++)
        pthread_join(t[i], NULL);
    if (!wait_got(base + (n / nb) * nb))
        die("server to worker", "not every message arrived in 120 s");
    return (double)((n / nb) * nb) / ((R.last_ms - t0) / 1000.0);
}

/* ---- worker to handler ---------------------------------------------------------- */

static atomic_uint_fast64_t handled;
static double handled_last;

static wb_err handler(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    (void)m;
    atomic_fetch_add(&handled, 1);
    handled_last = wbb_now_ms();
    return WB_OK;
}

typedef struct pub {
    bworker *w;
    unsigned k, n;
} pub;

static void *pub_main(void *arg)
{
    pub *p = arg;
    for (unsigned i = 0; i < p->n; i++) {
        char m[64];
        int len = snprintf(m, sizeof m, "{\"i\":%u}", i);
        while (wb_worker_publish(p->w[i % p->k].w, m, (size_t)len, 1) == WB_ERR_BUSY)
            usleep(500);
    }
    return NULL;
}

/* k workers publish n messages (4 threads); a drain on cfg handles them;
 * messages a second from the first publish to the last handled. */
static double w2h_rate(const wb_config *cfg, bworker *w, unsigned k, unsigned n)
{
    wb_queue *q = NULL;
    wb_drain *d = NULL;
    if (wb_queue_open(cfg, NULL, &q))
        die("queue", wb_queue_last_error(NULL));
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    o.wait_s = 1;
    atomic_store(&handled, 0);
    if (wb_drain_start(q, &o, handler, NULL, &d))
        die("drain", NULL);
    pthread_t t[4];
    pub p[4];
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < 4; i++) {
        unsigned from = i * k / 4, to = (i + 1) * k / 4;
        p[i] = (pub){w + from, to - from, n / 4};
        pthread_create(&t[i], NULL, pub_main, &p[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int waited = 0; atomic_load(&handled) < (n / 4) * 4; waited++) {
        if (waited > 3000)
            die("worker to handler", "not every message was handled in 300 s");
        usleep(100000);
    }
    double rate = (double)((n / 4) * 4) / ((handled_last - t0) / 1000.0);
    wb_drain_stop(d);
    wb_drain_free(d);
    wb_queue_close(q);
    return rate;
}

/* Raw single-row INSERTs (the envelope's size) on `conns` connections at once. */
typedef struct raw_job {
    const char *url;
    unsigned n;
} raw_job;

static void *raw_main(void *arg)
{
    raw_job *j = arg;
    PGconn *c = PQconnectdb(j->url);
    if (PQstatus(c) != CONNECTION_OK)
        die("libpq", PQerrorMessage(c));
    PGresult *r = PQprepare(c, "ins", "INSERT INTO bench_raw (body) VALUES ($1)", 1, NULL);
    PQclear(r);
    const char *body = "eyJpIjoxMjM0LCJ0IjoxNzk1MzQ2MTE5MTc1LjEyMywidGltZXN0YW1wIjoxNzk1MzQ2MTE5M"
                       "Tc1LCJ3b3JrZXJfcG9vbF91bGlkIjoiMDFNODFGRjhGUUE5WjQ4WjVDMDJWQkNBMEoiLCJ3b3"
                       "JrZXJfdWxpZCI6IjAxTTgxRkY4RlFHV0Y1Rlk2VkM3WUowUzFIIn0=";
    for (unsigned i = 0; i < j->n; i++) {
        r = PQexecPrepared(c, "ins", 1, &body, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("insert", PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return NULL;
}

static double raw_insert(const char *url, unsigned n, unsigned conns)
{
    PGconn *c = PQconnectdb(url);
    PQclear(PQexec(c, "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, "
                      "body text NOT NULL, sent_at timestamptz NOT NULL DEFAULT now())"));
    pthread_t t[MAX_R];
    raw_job j[MAX_R];
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < conns; i++) {
        j[i] = (raw_job){url, n / conns};
        pthread_create(&t[i], NULL, raw_main, &j[i]);
    }
    for (unsigned i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    double rate = (double)((n / conns) * conns) / ((wbb_now_ms() - t0) / 1000.0);
    PQclear(PQexec(c, "DROP TABLE bench_raw"));
    PQfinish(c);
    return rate;
}

/* ---- the harness with N replicas -------------------------------------------------- */

static void up(unsigned replicas)
{
    wb_harness_opts ho = WB_HARNESS_OPTS_INIT;
    ho.services_script = WB_BENCH_SERVICES_SCRIPT;
    ho.workerbus = WB_BENCH_CLI;
    ho.replicas = replicas;
    char *d = NULL;
    if (wb_harness_up(&ho, &h, &d))
        die("harness", d);
}

static wb_broker *server_on(unsigned i, wb_config **cfg)
{
    *cfg = config_of(wb_harness_replica_env(h, i));
    wb_broker_opts bo = WB_BROKER_OPTS_INIT;
    char id[32];
    snprintf(id, sizeof id, "bench-server-%u", i + 1);
    bo.client_id = id;
    wb_broker *b = NULL;
    if (wb_broker_open(*cfg, &bo, &b) || wb_broker_connect(b, 30000))
        die("server", wb_broker_last_error(b));
    return b;
}

/* A worker of replica `want` (1-based) if local, else of another one. */
static const char *worker_where(bworker *w, unsigned k, const char *url, bool local)
{
    PGconn *c = PQconnectdb(url);
    for (unsigned i = 0; i < k; i++) {
        const char *v[] = {w[i].id};
        PGresult *r = PQexecParams(c, "SELECT replica FROM workerbus_presence WHERE worker = $1", 1,
                                   NULL, v, NULL, NULL, 0);
        bool one = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "replica-1");
        PQclear(r);
        if (one == local) {
            PQfinish(c);
            return w[i].id;
        }
    }
    PQfinish(c);
    die("presence", local ? "no worker on replica 1" : "no worker elsewhere");
    return NULL;
}

static void wait_present(const char *url, unsigned k)
{
    PGconn *c = PQconnectdb(url);
    for (int i = 0; i < 300; i++) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM workerbus_presence");
        unsigned n = (unsigned)atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (n >= k)
            break;
        usleep(100000);
    }
    PQfinish(c);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 3000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (n < 300 || rounds < 1 || rounds > 20)
        die("usage", "bench-replicas [messages >= 300] [rounds 1-20]");
    wb_log_set_level(WB_LOG_ERROR);
    unsigned nlat = n / 3 < 1000 ? n / 3 : 1000;
    double lat[3][2][20] = {{{0}}}; /* no db, local, routed x p50, p99 */
    double s2w[3][20] = {{0}};      /* no db, 1 replica, 3 replicas */
    double w2h[2][20] = {{0}};      /* 1, 3 replicas */
    double raw[2][20] = {{0}};      /* 1 connection, 3 */

    /* the bundled broker without a database: the broker's own path */
    wbb_env env;
    wbb_env_make(&env, "bench-replicas-nodb");
    char ep[64];
    unsigned port = 30000u + (unsigned)getpid() % 20000u;
    snprintf(ep, sizeof ep, "tls://127.0.0.1:%u", port);
    wb_config *ncfg = wbb_config(&env, ep, NULL);
    wb_bundled *nb = NULL;
    char *d = NULL;
    if (wb_bundled_start(ncfg, NULL, &nb, &d))
        die("bundled broker", d);
    {
        /* the environment's own pool certificate, signed like the harness's */
        char pool[WB_ULID_STR_SIZE], ca[300], cak[300], kp[300], cp[300];
        wb_ulid u;
        wb_ulid_new(&u);
        wb_ulid_format(&u, pool);
        char *key = NULL, *csr = NULL, *crt = NULL;
        snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
        snprintf(cak, sizeof cak, "%s/ca.key", env.pki);
        if (wb_pki_new_csr(WB_PKI_KEY_EC_P256, pool, &key, &csr, &d) ||
            wb_pki_sign_csr(ca, cak, pool, csr, strlen(csr), 0, &crt, &d))
            die("pki", d);
        snprintf(kp, sizeof kp, "%s/pool.key", env.dir);
        snprintf(cp, sizeof cp, "%s/pool.crt", env.dir);
        FILE *f = fopen(kp, "w");
        fputs(key, f);
        fclose(f);
        f = fopen(cp, "w");
        fputs(crt, f);
        fclose(f);
        wb_free(key);
        wb_free(csr);
        wb_free(crt);
        bworker w[WORKERS];
        open_workers(w, WORKERS, ep, pool, env.dir);
        wb_broker *b = NULL;
        if (wb_broker_open(ncfg, NULL, &b) || wb_broker_connect(b, 30000))
            die("server", wb_broker_last_error(b));
        for (int r = 0; r < rounds; r++) {
            latencies(b, pool, w[0].id, nlat, &lat[0][0][r], &lat[0][1][r]);
            s2w[0][r] = s2w_rate(&b, 1, pool, w, WORKERS, n);
        }
        wb_broker_close(b);
        close_workers(w, WORKERS);
    }
    wb_bundled_stop(nb);
    wb_config_free(ncfg);
    wbb_env_remove(&env);

    /* 1 replica, then 3 */
    for (unsigned nr = 1; nr <= 3; nr += 2) {
        up(nr);
        const char *url = env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL");
        char dburl[1024], lb[128];
        snprintf(dburl, sizeof dburl, "%s", url);
        snprintf(lb, sizeof lb, "%s",
                 env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "MQTT_BROKER_ENDPOINT"));
        bworker w[WORKERS];
        open_workers(w, WORKERS, lb, wb_harness_pool(h), wb_harness_dir(h));
        wait_present(dburl, WORKERS);
        wb_config *cfg[MAX_R];
        wb_broker *b[MAX_R];
        for (unsigned i = 0; i < nr; i++)
            b[i] = server_on(i, &cfg[i]);
        const char *mine = nr == 3 ? worker_where(w, WORKERS, dburl, true) : NULL;
        const char *other = nr == 3 ? worker_where(w, WORKERS, dburl, false) : NULL;
        for (int r = 0; r < rounds; r++) {
            if (nr == 3) {
                latencies(b[0], wb_harness_pool(h), mine, nlat, &lat[1][0][r], &lat[1][1][r]);
                latencies(b[0], wb_harness_pool(h), other, nlat, &lat[2][0][r], &lat[2][1][r]);
            }
            s2w[nr == 1 ? 1 : 2][r] = s2w_rate(b, nr, wb_harness_pool(h), w, WORKERS, n);
            w2h[nr == 1 ? 0 : 1][r] = w2h_rate(cfg[0], w, WORKERS, n);
            if (nr == 3) {
                raw[0][r] = raw_insert(dburl, n, 1);
                raw[1][r] = raw_insert(dburl, n, 3);
            }
        }
        for (unsigned i = 0; i < nr; i++) {
            wb_broker_close(b[i]);
            wb_config_free(cfg[i]);
        }
        close_workers(w, WORKERS);
        wb_harness_down(h);
        h = NULL;
    }

    printf("%u workers through HAProxy; %u messages a measure, %d rounds (medians)\n\n", WORKERS, n,
           rounds);
    printf("| server to worker, one at a time | p50 ms | p99 ms |\n|---|---|---|\n");
    const char *ln[] = {"bundled broker without a database (raw: the broker's own path)",
                        "3 replicas, a worker of the server's replica (local)",
                        "3 replicas, a worker of another replica (routed)"};
    for (int i = 0; i < 3; i++)
        printf("| %s | %.2f | %.2f |\n", ln[i], wbb_median(lat[i][0], (size_t)rounds),
               wbb_median(lat[i][1], (size_t)rounds));
    double s0 = wbb_median(s2w[0], (size_t)rounds), s1 = wbb_median(s2w[1], (size_t)rounds),
           s3 = wbb_median(s2w[2], (size_t)rounds);
    printf("\n| server to worker throughput | msg/s | of raw |\n|---|---|---|\n");
    printf("| bundled broker without a database (raw), 1 server | %.0f | |\n", s0);
    printf("| 1 replica, 1 server | %.0f | %.0f%% |\n", s1, 100 * s1 / s0);
    printf("| 3 replicas, a server on each, all sending at once | %.0f | %.0f%% |\n", s3,
           100 * s3 / s0);
    double r1 = wbb_median(raw[0], (size_t)rounds), r3 = wbb_median(raw[1], (size_t)rounds),
           w1 = wbb_median(w2h[0], (size_t)rounds), w3 = wbb_median(w2h[1], (size_t)rounds);
    printf("\n| worker to handler throughput | msg/s | of raw INSERT (1 conn.) | of raw INSERT (3 "
           "conn.) |\n|---|---|---|---|\n");
    printf("| raw: single-row INSERT through libpq, 1 connection | %.0f | | |\n", r1);
    printf("| raw: single-row INSERT through libpq, 3 connections at once | %.0f | | |\n", r3);
    printf("| 1 replica (one broker's topic rule) | %.0f | %.0f%% | %.0f%% |\n", w1, 100 * w1 / r1,
           100 * w1 / r3);
    printf("| 3 replicas (three topic rules committing at once) | %.0f | %.0f%% | %.0f%% |\n", w3,
           100 * w3 / r1, 100 * w3 / r3);
    printf("\nThe builtin end-to-end path with 3 brokers %s 70%% of raw single-row INSERT "
           "(%.0f%%; one broker: %.0f%%).\n",
           w3 >= 0.7 * r1 ? "passes" : "does not reach", 100 * w3 / r1, 100 * w1 / r1);
    return 0;
}
