/* workerbus demo: the README's main job. The whole builtin setup on
 * loopback (wb_harness: PostgreSQL, the bundled broker with its topic rule,
 * simulated workers) and a server exchanging messages with the workers both
 * ways, with a live one-screen summary, until Ctrl-C or --duration. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "workerbus/workerbus.h"

#define EX_UNAVAILABLE 69

static const char demo_usage[] =
    "Usage: workerbus demo [--workers N] [--rate MSGS] [--duration SECONDS] [--plain]\n"
    "                      [--replicas N]\n"
    "\n"
    "Brings up on loopback a PostgreSQL cluster, the bundled broker (its topic\n"
    "rule writing worker messages into PostgreSQL), a PKI and N simulated\n"
    "workers (1-1000, default 5), all under a temporary directory; then runs a\n"
    "server: it sends MSGS messages a second (0-10000, default 20) spread over\n"
    "the workers, each worker answers every message with an echo and sends a\n"
    "heartbeat every second, and the server drains those from the iot queue.\n"
    "A summary is redrawn every second (one line a second with --plain, or\n"
    "when the output is not a terminal). Ctrl-C, or the end of --duration\n"
    "(1-604800 seconds), stops everything and removes the directory.\n"
    "\n"
    "--replicas N (1-16) runs the bundled broker as N server replicas behind\n"
    "HAProxy (docs/replicas.md): the workers connect through it, the demo's\n"
    "server sits on replica 1, and what it sends to workers of the others goes\n"
    "through PostgreSQL; the summary then says how many were routed.\n"
    "\n"
    "Exit codes: 0 stopped cleanly with every sent message answered, 1 some\n"
    "answers missing, 64 usage, 69 something did not start.\n";

typedef struct demo {
    atomic_uint_fast64_t echoes, heartbeats, other;
    pthread_mutex_t lock;
    double lat[8192]; /* round-trip times of echoes, ms (a ring) */
    size_t nlat;
} demo;

static demo D = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static wb_err on_message(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    json_t *p = json_loads(m->envelope->payload, 0, NULL);
    const char *kind = json_string_value(json_object_get(p, "kind"));
    if (kind && !strcmp(kind, "echo")) {
        double sent = json_number_value(json_object_get(json_object_get(p, "of"), "sent_ms"));
        atomic_fetch_add(&D.echoes, 1);
        if (sent > 0) {
            pthread_mutex_lock(&D.lock);
            D.lat[D.nlat++ % (sizeof D.lat / sizeof D.lat[0])] = now_ms() - sent;
            pthread_mutex_unlock(&D.lock);
        }
    } else if (kind && !strcmp(kind, "heartbeat")) {
        atomic_fetch_add(&D.heartbeats, 1);
    } else {
        atomic_fetch_add(&D.other, 1);
    }
    json_decref(p);
    return WB_OK;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void percentiles(double *p50, double *p99)
{
    static double tmp[sizeof D.lat / sizeof D.lat[0]];
    pthread_mutex_lock(&D.lock);
    size_t n = D.nlat < sizeof D.lat / sizeof D.lat[0] ? D.nlat : sizeof D.lat / sizeof D.lat[0];
    memcpy(tmp, D.lat, n * sizeof *tmp);
    pthread_mutex_unlock(&D.lock);
    *p50 = *p99 = 0;
    if (!n)
        return;
    qsort(tmp, n, sizeof *tmp, cmp_d);
    *p50 = tmp[n / 2];
    *p99 = tmp[(size_t)((double)(n - 1) * 0.99)];
}

static void screen(bool live, double t, wb_harness *h, wb_broker *br, wb_drain *d, uint64_t sent,
                   unsigned workers, unsigned rate)
{
    wb_harness_stats hs;
    wb_harness_stats_get(h, &hs);
    wb_broker_stats bs;
    wb_broker_stats_get(br, &bs);
    wb_drain_stats ds;
    wb_drain_stats_get(d, &ds);
    double p50, p99;
    percentiles(&p50, &p99);
    uint64_t echoes = atomic_load(&D.echoes), beats = atomic_load(&D.heartbeats);
    if (!live) {
        printf("%6.0fs sent %llu acked %llu | workers got %llu, echoed %llu, heartbeats %llu | "
               "server drained %llu (echoes %llu, heartbeats %llu) | round trip p50 %.1f ms p99 "
               "%.1f ms\n",
               t, (unsigned long long)sent, (unsigned long long)bs.acknowledged,
               (unsigned long long)hs.received, (unsigned long long)hs.echoed,
               (unsigned long long)hs.heartbeats / 2, (unsigned long long)ds.delivered,
               (unsigned long long)echoes, (unsigned long long)beats, p50, p99);
        fflush(stdout);
        return;
    }
    printf("\033[H\033[2J");
    printf("workerbus demo: the built-in broker with PostgreSQL, on loopback    %.0f s\n\n", t);
    printf("  bundled broker   mosquitto pid %d, topic rule into PostgreSQL\n",
           wb_harness_broker_pid(h, WB_BROKER_BUILTIN));
    printf("  workers          %u simulated (%u connected), pool %s\n\n", workers,
           hs.connected > workers ? workers : hs.connected, wb_harness_pool(h));
    printf("  server -> workers (MQTT, QoS 1, %u/s)\n", rate);
    printf("    sent %-10llu acknowledged by the broker %-10llu received by workers %llu\n\n",
           (unsigned long long)sent, (unsigned long long)bs.acknowledged,
           (unsigned long long)hs.received);
    printf("  workers -> server (MQTT, topic rule, iot queue in PostgreSQL, drain)\n");
    printf("    echoes sent %-10llu heartbeats sent %llu\n", (unsigned long long)hs.echoed,
           (unsigned long long)hs.heartbeats / 2);
    printf("    drained %-10llu echoes %-10llu heartbeats %-10llu failed %llu\n\n",
           (unsigned long long)ds.delivered, (unsigned long long)echoes, (unsigned long long)beats,
           (unsigned long long)ds.failed);
    printf("  round trip server -> worker -> queue -> server: p50 %.1f ms, p99 %.1f ms\n\n", p50,
           p99);
    printf("  Ctrl-C stops everything cleanly.\n");
    fflush(stdout);
}

static int demo_run(int argc, char **argv)
{
    unsigned workers = 5, rate = 20, duration = 0, replicas = 0;
    bool plain = !isatty(1);
    static const wb_cli_opt opts[] = {
        {"workers", "N, 1 to 1000", 0},          {"rate", "MSGS a second, 0 to 10000", 0},
        {"duration", "SECONDS, 1 to 604800", 0}, {"plain", NULL, 0},
        {"replicas", "N, 1 to 16", 0},           {NULL, NULL, 0}};
    wb_cli_getopt g = {"demo", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "plain")) {
            plain = true;
        } else if (wb_cli_opt_is(&g, k, "workers")) {
            if (!wb_cli_parse_uint(v, 1, 1000, &workers))
                return wb_cli_usage_error("demo", "--workers takes 1 to 1000, not '%s'", v);
        } else if (wb_cli_opt_is(&g, k, "replicas")) {
            if (!wb_cli_parse_uint(v, 1, WB_HARNESS_MAX_REPLICAS, &replicas))
                return wb_cli_usage_error("demo", "--replicas takes 1 to %u, not '%s'",
                                          WB_HARNESS_MAX_REPLICAS, v);
        } else if (wb_cli_opt_is(&g, k, "rate")) {
            if (!wb_cli_parse_uint(v, 0, 10000, &rate))
                return wb_cli_usage_error("demo", "--rate takes 0 to 10000 a second, not '%s'", v);
        } else if (wb_cli_opt_is(&g, k, "duration")) {
            if (!wb_cli_parse_uint(v, 1, 86400 * 7, &duration))
                return wb_cli_usage_error("demo", "--duration takes 1 to 604800 seconds, not '%s'",
                                          v);
        }
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 0, &args, &nargs);
    if (bad)
        return bad;
    sigset_t sigs;
    wb_cli_block_signals(&sigs);
    wb_log_set_level(WB_LOG_ERROR);
    fprintf(stderr,
            "demo: starting PostgreSQL, the SQS and IoT Core stand-ins, %s and %u "
            "workers...\n",
            replicas ? "the replicas behind HAProxy" : "the bundled broker", workers);
    wb_harness_opts ho = WB_HARNESS_OPTS_INIT;
    ho.services_script = wb_cli_services_script();
    ho.workers = workers;
    ho.heartbeat_ms = 1000;
    ho.replicas = replicas;
    ho.workerbus = wb_cli_self_path(); /* the replicas run this very executable */
    wb_harness *h = NULL;
    char *detail = NULL;
    wb_err err = wb_harness_up(&ho, &h, &detail);
    if (err) {
        fprintf(stderr, "workerbus: demo: %s\n", detail ? detail : wb_strerror(err));
        wb_free(detail);
        return EX_UNAVAILABLE;
    }
    int code = WB_EXIT_OK;
    wb_config *cfg = wb_harness_config(h, WB_BROKER_BUILTIN);
    wb_broker *br = NULL;
    wb_queue *q = NULL;
    wb_drain *d = NULL;
    if (!cfg || wb_broker_open(cfg, NULL, &br) || wb_broker_connect(br, 15000)) {
        fprintf(stderr, "workerbus: demo: the server's connection: %s\n", wb_broker_last_error(br));
        code = EX_UNAVAILABLE;
        goto out;
    }
    wb_drain_opts dopts = WB_DRAIN_OPTS_INIT;
    dopts.wait_s = 1;
    if (wb_queue_open(cfg, NULL, &q) || wb_drain_start(q, &dopts, on_message, NULL, &d)) {
        fprintf(stderr, "workerbus: demo: the queue: %s\n", wb_queue_last_error(NULL));
        code = EX_UNAVAILABLE;
        goto out;
    }
    double start = now_ms(), next_screen = start, next_send = start;
    uint64_t sent = 0;
    int sig = 0;
    while (!sig) {
        double t = now_ms();
        if (duration && t - start >= duration * 1000.0)
            break;
        while (rate && next_send <= t) { /* rate messages a second, round robin */
            const char *w = wb_harness_worker(h, (unsigned)(sent % workers));
            char p[160];
            int n = snprintf(p, sizeof p, "{\"job\":%llu,\"sent_ms\":%.3f}",
                             (unsigned long long)sent, now_ms());
            if (wb_broker_publish_to_worker(br, wb_harness_pool(h), w, p, (size_t)n, 1) == WB_OK)
                sent++;
            next_send += 1000.0 / rate;
        }
        if (t >= next_screen) {
            screen(!plain, (t - start) / 1000.0, h, br, d, sent, workers, rate);
            next_screen += 1000.0;
        }
        sig = wb_cli_wait_signal(&sigs, 20);
    }
    fprintf(stderr, "\ndemo: %s: stopping; waiting for the last answers...\n",
            sig ? strsignal(sig) : "duration reached");
    wb_harness_heartbeats(h, false);
    wb_broker_flush(br, 10000);
    for (int i = 0; i < 100 && atomic_load(&D.echoes) < sent; i++)
        usleep(100000);
    screen(false, (now_ms() - start) / 1000.0, h, br, d, sent, workers, rate);
    uint64_t echoes = atomic_load(&D.echoes);
    wb_broker_replica_stats rs;
    if (replicas && wb_broker_replica_stats_get(br, &rs) == WB_OK)
        fprintf(stderr,
                "demo: %u replicas: %llu message(s) went straight to workers of replica 1, "
                "%llu were routed through PostgreSQL to the others\n",
                replicas, (unsigned long long)rs.local,
                (unsigned long long)(rs.routed + rs.pending));
    if (echoes < sent) {
        fprintf(stderr, "demo: %llu of %llu messages were not answered\n",
                (unsigned long long)(sent - echoes), (unsigned long long)sent);
        code = 1;
    } else {
        fprintf(stderr,
                "demo: every one of the %llu messages came back (%llu answers; more "
                "than sent means duplicates, which at-least-once allows)\n",
                (unsigned long long)sent, (unsigned long long)echoes);
    }
out:
    wb_drain_free(d);
    wb_queue_close(q);
    wb_broker_close(br);
    wb_config_free(cfg);
    /* the last line says "nothing left" only when it is so */
    char *dir = wb_harness_dir(h) ? strdup(wb_harness_dir(h)) : NULL;
    bool down = wb_harness_down(h) == WB_OK;
    struct stat st;
    bool gone = dir && stat(dir, &st) != 0 && errno == ENOENT;
    if (down && gone) {
        fprintf(stderr,
                "demo: stopped; nothing left running, and %s (its PKI and data) is "
                "removed\n",
                dir);
    } else {
        fprintf(stderr, "demo: stopped, but not cleanly: %s%s%s\n",
                down ? "" : "the harness did not stop cleanly (see above)",
                !down && !gone ? "; " : "",
                gone ? "" : "its directory is still there; remove it by hand");
        if (dir && !gone)
            fprintf(stderr, "demo: left behind: %s\n", dir);
        if (code == WB_EXIT_OK)
            code = WB_EXIT_SOFTWARE;
    }
    free(dir);
    return code;
}

const wb_cli_command wb_cli_demo = {
    .name = "demo",
    .summary = "the built-in broker, PostgreSQL and simulated workers at work, live",
    .usage = demo_usage,
    .run = demo_run,
};
