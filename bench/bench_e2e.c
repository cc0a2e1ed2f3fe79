/* Worker to handler, end to end, on the harness: a worker publishes (QoS 1),
 * the broker's topic rule writes the envelope into the iot queue, the
 * server's drain hands it to a handler. Messages per second (first publish
 * to last handled) and p50/p99 latency (publish to handler), with 1 and 100
 * workers:
 *  - builtin + PostgreSQL, against the raw ceilings measured in the same
 *    run: the same Mosquitto with no topic rule (publish to PUBACK, the same
 *    worker clients) and single-row INSERTs through libpq on one connection
 *    (the topic rule runs on Mosquitto's one thread: one commit a message);
 *  - the IoT Core stand-in + the SQS stand-in (no raw ceiling: the SQS
 *    stand-in's own speed would be what is measured).
 *
 * With a commit delay (µs), PostgreSQL waits that long before each commit's
 * WAL flush (commit_delay, commit_siblings 0): the whole run, raw INSERT
 * included, then stands for a slower disk; only the builtin rows are run.
 *
 * A steady load (100 and 1000 msg/s from 20 workers for 10 s, paced), with
 * the drain's receives lingering 0 ms and serve's default
 * (WB_QUEUE_LINGER_DEFAULT_MS; WB_BENCH_LINGER_MS: another), gives p50, p99
 * and p99.9, and PostgreSQL's transactions per message (all the database's,
 * from pg_stat_database).
 *
 * Usage: bench-e2e [messages] [rounds] [commit delay µs] [steady]
 * ("steady": the steady loads only; prints Markdown rows) */
#include <dirent.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_pg.h"
#include "envtext.h"
#include "workerbus/workerbus.h"

static const char *prog = "bench-e2e";
static wb_harness *h;

static void die(const char *what, const char *why)
{
    wbb_die_down(prog, h, what, why);
}

/* ---- the handler ---------------------------------------------------------------- */

typedef struct sink {
    pthread_mutex_t lock;
    double *lat;
    size_t n, cap;
    double last_ms;
} sink;

static sink S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static wb_err handler(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    double t = wbb_now_ms();
    const char *p = strstr(m->envelope->payload, "\"t\":");
    double sent = p ? atof(p + 4) : t;
    pthread_mutex_lock(&S.lock);
    if (S.n < S.cap)
        S.lat[S.n++] = t - sent;
    S.last_ms = t;
    pthread_mutex_unlock(&S.lock);
    return WB_OK;
}

/* Waits until the handler has n messages; exits after 300 s. */
/* Empties the latency sink, with room for cap samples. */
static void sink_reset(size_t cap)
{
    pthread_mutex_lock(&S.lock);
    free(S.lat);
    S.cap = cap;
    S.lat = calloc(S.cap, sizeof *S.lat);
    S.n = 0;
    pthread_mutex_unlock(&S.lock);
}

static void wait_handled(size_t n)
{
    for (int waited = 0;; waited++) {
        pthread_mutex_lock(&S.lock);
        size_t got = S.n;
        pthread_mutex_unlock(&S.lock);
        if (got >= n)
            return;
        if (waited > 3000)
            die("drain", "the handler did not get every message in 300 s");
        usleep(100000);
    }
}

/* ---- workers ---------------------------------------------------------------- */

static wb_worker **open_workers(unsigned k, const char *endpoint)
{
    wb_worker **w = calloc(k, sizeof *w);
    for (unsigned i = 0; i < k; i++)
        w[i] = wbb_harness_worker(prog, h, endpoint, true);
    return w;
}

static void close_workers(wb_worker **w, unsigned k)
{
    for (unsigned i = 0; i < k; i++)
        wb_worker_close(w[i]);
    free(w);
}

/* A publishing thread: its share of the messages, round robin over its
 * workers. */
typedef struct group {
    wb_worker **w;
    unsigned k, n;
} group;

static void *group_main(void *arg)
{
    group *g = arg;
    for (unsigned i = 0; i < g->n; i++) {
        char p[96];
        int len = snprintf(p, sizeof p, "{\"i\":%u,\"t\":%.3f}", i, wbb_now_ms());
        while (wb_worker_publish(g->w[i % g->k], p, (size_t)len, 1) == WB_ERR_BUSY)
            usleep(1000);
    }
    return NULL;
}

typedef struct result {
    double rate, p50, p99;
} result;

/* k workers on endpoint publish n messages; through_queue: until the
 * handler has them all (cfg: the server's configuration), else until the
 * broker acknowledged them all. */
static result run(const wb_config *cfg, const char *endpoint, unsigned k, unsigned n,
                  bool through_queue)
{
    wb_worker **w = open_workers(k, endpoint);
    wb_queue *q = NULL;
    wb_drain *d = NULL;
    if (through_queue) {
        if (wb_queue_open(cfg, NULL, &q))
            die("queue", wb_queue_last_error(NULL));
        wb_drain_opts o = WB_DRAIN_OPTS_INIT;
        o.threads = 1; /* one receiver: batches of 10 form under load */
        o.wait_s = 1;
        if (wb_drain_start(q, &o, handler, NULL, &d))
            die("drain", NULL);
    }
    sink_reset((size_t)n * 2);
    unsigned threads = k < 4 ? k : 4;
    pthread_t t[4];
    group g[4];
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < threads; i++) {
        unsigned from = i * k / threads, to = (i + 1) * k / threads;
        g[i] = (group){w + from, to - from, n / threads + (i < n % threads)};
        pthread_create(&t[i], NULL, group_main, &g[i]);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < k; i++)
        if (wb_worker_flush(w[i], 300000))
            die("flush", wb_worker_last_error(w[i]));
    double t_ack = wbb_now_ms();
    result r = {0};
    if (!through_queue) {
        r.rate = n / ((t_ack - t0) / 1000.0);
    } else {
        wait_handled(n);
        pthread_mutex_lock(&S.lock);
        r.rate = n / ((S.last_ms - t0) / 1000.0);
        qsort(S.lat, S.n, sizeof *S.lat, wbb_cmp_double);
        r.p50 = S.lat[S.n / 2];
        r.p99 = S.lat[(size_t)((double)(S.n - 1) * 0.99)];
        pthread_mutex_unlock(&S.lock);
        wb_drain_free(d);
        wb_queue_close(q);
    }
    close_workers(w, k);
    return r;
}

typedef struct steady_result {
    double p50, p99, p999, xact_per_msg;
    double pg_us, broker_us; /* CPU per message */
} steady_result;

/* k workers send rate messages a second in all for secs seconds, paced;
 * the drain (serve's defaults: 2 threads, 5 s long polls) handles them.
 * Latency percentiles, and PostgreSQL transactions per message (every
 * backend of the database: the topic rule's inserts, the drain's claims,
 * next-visible queries and deletes, the statistics' own). */
static steady_result steady(const wb_config *cfg, const char *url, const char *endpoint, unsigned k,
                            unsigned rate, unsigned secs, unsigned linger_ms)
{
    wb_worker **w = open_workers(k, endpoint);
    wb_queue *q = NULL;
    wb_drain *d = NULL;
    wb_queue_opts qo = WB_QUEUE_OPTS_INIT;
    qo.receive_linger_ms = linger_ms;
    if (wb_queue_open(cfg, &qo, &q))
        die("queue", wb_queue_last_error(NULL));
    unsigned n = rate * secs;
    sink_reset((size_t)n * 2);
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    const char *th = getenv("WB_BENCH_DRAIN_THREADS"); /* to compare, e.g. 1 */
    if (th)
        o.threads = (unsigned)atoi(th);
    if (wb_drain_start(q, &o, handler, NULL, &d))
        die("drain", NULL);
    sleep(2); /* the drain's first polls, then quiet */
    double x0 = wbb_pg_xacts(prog, h, url);
    int broker = wb_harness_broker_pid(h, WB_BROKER_BUILTIN);
    double pg0 = wbb_pg_cpu_ms(prog, h), br0 = wbb_proc_cpu_ms(broker, NULL);
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < n; i++) {
        double due = t0 + (double)i * 1000.0 / rate;
        double wait = due - wbb_now_ms();
        if (wait > 0)
            usleep((useconds_t)(wait * 1000.0));
        char p[96];
        int len = snprintf(p, sizeof p, "{\"i\":%u,\"t\":%.3f}", i, wbb_now_ms());
        while (wb_worker_publish(w[i % k], p, (size_t)len, 1) == WB_ERR_BUSY)
            usleep(1000);
    }
    wait_handled(n);
    double pg1 = wbb_pg_cpu_ms(prog, h), br1 = wbb_proc_cpu_ms(broker, NULL);
    /* the listening connection's backend counts a transaction for each
     * read of notifications, and an idle backend reports its counts late:
     * its end (the last handle closed) reports them */
    wb_drain_free(d);
    wb_queue_close(q);
    sleep(2); /* the other backends' statistics reach the database */
    double x1 = wbb_pg_xacts(prog, h, url);
    steady_result r = {0};
    r.pg_us = (pg1 - pg0) * 1000.0 / n;
    r.broker_us = (br1 - br0) * 1000.0 / n;
    pthread_mutex_lock(&S.lock);
    qsort(S.lat, S.n, sizeof *S.lat, wbb_cmp_double);
    r.p50 = S.lat[S.n / 2];
    r.p99 = S.lat[(size_t)((double)(S.n - 1) * 0.99)];
    r.p999 = S.lat[(size_t)((double)(S.n - 1) * 0.999)];
    pthread_mutex_unlock(&S.lock);
    /* the drain's idle polls during the two quiet seconds count too: a
     * steady load of their order is what it is measured against */
    r.xact_per_msg = (x1 - x0) / n;
    close_workers(w, k);
    return r;
}

/* ---- raw ceilings ------------------------------------------------------------------ */

/* n envelopes sent one by one with wb_queue_send() into the iot queue: the
 * topic rule's own write, without Mosquitto. Then the queue is emptied. */
static double queue_send(const wb_config *cfg, const char *url, unsigned n)
{
    wb_queue *q = NULL;
    if (wb_queue_open(cfg, NULL, &q))
        die("queue", wb_queue_last_error(NULL));
    const char *body = "eyJpIjoxMjM0LCJ0IjoxNzk1MzQ2MTE5MTc1LjEyMywidGltZXN0YW1wIjoxNzk1MzQ2MTE5M"
                       "Tc1LCJ3b3JrZXJfcG9vbF91bGlkIjoiMDFNODFGRjhGUUE5WjQ4WjVDMDJWQkNBMEoiLCJ3b3"
                       "JrZXJfdWxpZCI6IjAxTTgxRkY4RlFHV0Y1Rlk2VkM3WUowUzFIIn0=";
    wb_queue_entry e = {.body = body, .body_len = strlen(body)};
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < n; i++)
        if (wb_queue_send(q, WB_LQ_IOT, &e, NULL))
            die("queue send", wb_queue_last_error(q));
    double rate = n / ((wbb_now_ms() - t0) / 1000.0);
    wb_queue_close(q);
    wbb_pg_empty_queues(prog, h, url);
    return rate;
}

/* Every WAL flush at commit waits delay_us first, as on a slower disk. */
static void slow_commits(const char *url, int delay_us)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        die("libpq", PQerrorMessage(c));
    char delay[64];
    snprintf(delay, sizeof delay, "ALTER SYSTEM SET commit_delay = %d", delay_us);
    const char *sql[] = {delay, "ALTER SYSTEM SET commit_siblings = 0", "SELECT pg_reload_conf()"};
    for (size_t i = 0; i < 3; i++) {
        PGresult *r = PQexec(c, sql[i]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
            die("commit delay", PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    usleep(500000); /* the backends read the configuration again */
}

#define env_value wbt_env_value

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 3000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    int delay_us = argc > 3 ? atoi(argv[3]) : 0;
    /* "steady": only the steady loads (their transactions per message) */
    bool only_steady = argc > 4 && strcmp(argv[4], "steady") == 0;
    if (n < 100 || rounds < 1 || rounds > 20)
        die("usage", "bench-e2e [messages >= 100] [rounds 1-20] [commit delay 0-100000 us]");
    if (delay_us < 0 || delay_us > 100000) {
        char why[96];
        snprintf(why, sizeof why, "the commit delay '%s' is out of range: give 0-100000 (us)",
                 argv[3]);
        die("usage", why);
    }
    h = wbb_harness_start(prog, WB_BENCH_SERVICES_SCRIPT);
    char *d = NULL;
    wb_config *bcfg = wb_harness_config(h, WB_BROKER_BUILTIN);
    wb_config *icfg = wb_harness_config(h, WB_BROKER_IOTCORE);
    if (!bcfg || !icfg)
        die("harness", "its environments do not load");
    char bep[64], iep[64];
    snprintf(bep, sizeof bep, "%s", wb_config_broker_endpoint(bcfg));
    snprintf(iep, sizeof iep, "tls://%s", wb_config_get(icfg, "MQTT_BROKER_IOTCORE_CONNECT_TO"));
    const char *db = env_value(wb_harness_env(h, WB_BROKER_BUILTIN), "DATABASE_URL");
    char dburl[1024];
    snprintf(dburl, sizeof dburl, "%s", db);

    /* the same Mosquitto with no topic rule: the MQTT path's ceiling */
    char raw_ep[80], raw_run[300];
    unsigned raw_port = 30000u + (unsigned)getpid() % 20000u;
    snprintf(raw_ep, sizeof raw_ep, "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u", raw_port);
    snprintf(raw_run, sizeof raw_run, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/raw-broker",
             wb_harness_dir(h));
    /* a replica of its own: its plugin's presence records are not the
     * harness broker's */
    const char *over[] = {raw_ep, raw_run, "MQTT_BROKER_BUILTIN_REPLICA_ID=bench-raw", NULL};
    char *env_copy = strdup(wb_harness_env(h, WB_BROKER_BUILTIN));
    const char *lines[32];
    size_t nl = 0;
    for (char *l = strtok(env_copy, "\n"); l && nl < 31; l = strtok(NULL, "\n"))
        lines[nl++] = l;
    lines[nl] = NULL;
    wb_config_load_opts lo = WB_CONFIG_LOAD_OPTS_INIT;
    lo.env = lines;
    lo.overrides = over;
    wb_config *rcfg = NULL;
    if (wb_config_load(&lo, &rcfg, NULL))
        die("raw broker", "configuration");
    wb_bundled_opts bo = WB_BUNDLED_OPTS_INIT;
    bo.no_topic_rule = true;
    wb_bundled *raw = NULL;
    if (wb_bundled_start(rcfg, &bo, &raw, &d))
        die("raw broker", d);
    char rep[64];
    snprintf(rep, sizeof rep, "tls://127.0.0.1:%u", raw_port);

    static const unsigned ks[] = {1, 100};
    if (delay_us)
        slow_commits(dburl, delay_us);
    printf("| path (median of %d rounds, %u messages%s) | workers | msg/s | p50 ms | p99 ms | "
           "ratio |\n",
           rounds, n, delay_us ? ", commits delayed" : "");
    printf("|---|---|---|---|---|---|\n");
    fflush(stdout);
    /* rounds alternate the raw INSERT and workerbus, so that both see the
     * same disk: this VM's fsync rate moves by 2x within minutes */
    for (size_t ki = 0; ki < 2 && !only_steady; ki++) {
        unsigned k = ks[ki];
        double mq[20], ins[20], snd[20], rule[20], bw[20], b50[20], b99[20];
        double r_snd[20], r_rule[20], r_e2e[20];
        for (int r = 0; r < rounds; r++) {
            mq[r] = run(NULL, rep, k, n, false).rate;
            ins[r] = wbb_pg_raw_insert(prog, h, dburl, n);
            snd[r] = queue_send(bcfg, dburl, n);
            rule[r] = run(NULL, bep, k, n, false).rate; /* no consumer */
            wbb_pg_empty_queues(prog, h, dburl);
            result b = run(bcfg, bep, k, n, true);
            bw[r] = b.rate;
            b50[r] = b.p50;
            b99[r] = b.p99;
            r_snd[r] = snd[r] / ins[r];
            r_rule[r] = rule[r] / ins[r];
            r_e2e[r] = b.rate / ins[r];
        }
        double m = wbb_median(mq, rounds), b = wbb_median(bw, rounds);
        printf("| raw: single-row INSERT through libpq, 1 connection | - | %.0f | | | |\n",
               wbb_median(ins, rounds));
        printf("| raw: Mosquitto QoS 1, publish to PUBACK, no topic rule | %u | %.0f | | | |\n", k,
               m);
        printf("| part: wb_queue_send() into the iot queue, 1 connection, no Mosquitto | - | %.0f "
               "| | | %.0f%% of raw INSERT |\n",
               wbb_median(snd, rounds), 100.0 * wbb_median(r_snd, rounds));
        printf("| part: the topic rule alone, publish to PUBACK, no consumer | %u | %.0f | | | "
               "%.0f%% of raw INSERT |\n",
               k, wbb_median(rule, rounds), 100.0 * wbb_median(r_rule, rounds));
        printf("| workerbus builtin + PostgreSQL: worker to handler | %u | %.0f | %.1f | %.1f | "
               "%.0f%% of raw INSERT (median of the rounds' ratios), %.0f%% of raw Mosquitto |\n",
               k, b, wbb_median(b50, rounds), wbb_median(b99, rounds),
               100.0 * wbb_median(r_e2e, rounds), 100.0 * b / m);
        fflush(stdout);
    }
    /* a steady load, as workers' heartbeats are: transactions per message */
    if (!delay_us) {
        static const unsigned rates[] = {100, 1000};
        /* the drain's receive linger (wb_queue_opts.receive_linger_ms): none,
         * and serve's default (WB_BENCH_LINGER_MS: another) */
        const char *le = getenv("WB_BENCH_LINGER_MS");
        const unsigned lingers[] = {0, le ? (unsigned)atoi(le) : WB_QUEUE_LINGER_DEFAULT_MS};
        /* PostgreSQL's CPU for a plain single-row INSERT, the same server */
        double ins_us[20];
        for (int r = 0; r < rounds; r++) {
            double c0 = wbb_pg_cpu_ms(prog, h);
            wbb_pg_raw_insert(prog, h, dburl, 10000);
            ins_us[r] = (wbb_pg_cpu_ms(prog, h) - c0) * 1000.0 / 10000;
        }
        double ins = wbb_median(ins_us, rounds);
        if (ins <= 0)
            wbb_die_down(prog, h, "the plain INSERT",
                         "PostgreSQL's CPU did not grow over 10 000 inserts: no baseline");
        printf("\n| steady load, builtin + PostgreSQL (20 workers, %d s, median of %d rounds) | "
               "receive linger | p50 ms | p99 ms | p99.9 ms | PostgreSQL transactions per "
               "message | PostgreSQL CPU µs per message (x plain INSERT) | broker CPU µs per "
               "message |\n"
               "|---|---|---|---|---|---|---|---|\n",
               10, rounds);
        for (size_t ri = 0; ri < 2; ri++) {
            for (size_t li = 0; li < 2; li++) {
                double a[20], b[20], c[20], x[20], pg[20], br[20];
                for (int r = 0; r < rounds; r++) {
                    wbb_pg_empty_queues(prog, h, dburl);
                    steady_result sr = steady(bcfg, dburl, bep, 20, rates[ri], 10, lingers[li]);
                    a[r] = sr.p50, b[r] = sr.p99, c[r] = sr.p999, x[r] = sr.xact_per_msg;
                    pg[r] = sr.pg_us, br[r] = sr.broker_us;
                }
                double mpg = wbb_median(pg, rounds);
                printf("| %u msg/s | %u ms | %.1f | %.1f | %.1f | %.2f | %.0f (%.1fx) | %.0f |\n",
                       rates[ri], lingers[li], wbb_median(a, rounds), wbb_median(b, rounds),
                       wbb_median(c, rounds), wbb_median(x, rounds), mpg, mpg / ins,
                       wbb_median(br, rounds));
                fflush(stdout);
            }
        }
        /* the opt-in mode: a broker of its own whose PUBACK does not wait
         * for the queue (MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received) */
        char ack_ep[80], ack_run[300], ack_url[64];
        snprintf(ack_ep, sizeof ack_ep, "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u", raw_port + 1);
        snprintf(ack_run, sizeof ack_run, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/ack-broker",
                 wb_harness_dir(h));
        snprintf(ack_url, sizeof ack_url, "tls://127.0.0.1:%u", raw_port + 1);
        const char *ack_over[] = {ack_ep, ack_run, "MQTT_BROKER_BUILTIN_REPLICA_ID=bench-ack",
                                  "MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received", NULL};
        char *problems = NULL;
        wb_config *acfg = wbt_config_of(wb_harness_env(h, WB_BROKER_BUILTIN), ack_over, &problems);
        if (!acfg)
            die("ack-received broker", problems);
        wb_bundled *ackb = NULL;
        if (wb_bundled_start(acfg, NULL, &ackb, &d))
            die("ack-received broker", d);
        for (size_t ri = 0; ri < 2; ri++) {
            double a[20], b[20], c[20], x[20], pg[20];
            for (int r = 0; r < rounds; r++) {
                wbb_pg_empty_queues(prog, h, dburl);
                steady_result sr = steady(acfg, dburl, ack_url, 20, rates[ri], 10, lingers[1]);
                a[r] = sr.p50, b[r] = sr.p99, c[r] = sr.p999, x[r] = sr.xact_per_msg;
                pg[r] = sr.pg_us;
            }
            double mpg = wbb_median(pg, rounds);
            printf("| %u msg/s, PUBACK before the queue (TOPIC_RULE_ACK=received) | %u ms | %.1f | "
                   "%.1f | %.1f | %.2f | %.0f (%.1fx) | (harness broker idle) |\n",
                   rates[ri], lingers[1], wbb_median(a, rounds), wbb_median(b, rounds),
                   wbb_median(c, rounds), wbb_median(x, rounds), mpg, mpg / ins);
            fflush(stdout);
        }
        wb_bundled_stop(ackb);
        wb_config_free(acfg);
        printf("| plain single-row INSERT, one connection (10000) | | | | | 1.00 | %.0f (1.0x) | "
               "|\n",
               ins);
        fflush(stdout);
    }
    unsigned ni = n / 3;
    for (size_t ki = 0; ki < 2 && !delay_us && !only_steady; ki++) {
        unsigned k = ks[ki];
        double iw[20], i50[20], i99[20];
        for (int r = 0; r < rounds; r++) {
            result x = run(icfg, iep, k, ni, true);
            iw[r] = x.rate;
            i50[r] = x.p50;
            i99[r] = x.p99;
        }
        printf("| workerbus IoT Core stand-in + SQS stand-in (%u messages) | %u | %.0f | %.1f | "
               "%.1f | |\n",
               ni, k, wbb_median(iw, rounds), wbb_median(i50, rounds), wbb_median(i99, rounds));
        fflush(stdout);
    }
    wb_bundled_stop(raw);
    wb_config_free(rcfg);
    free(env_copy);
    wb_config_free(bcfg);
    wb_config_free(icfg);
    free(S.lat);
    wb_harness_down(h);
    return 0;
}
