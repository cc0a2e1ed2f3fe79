/* The bundled broker's persistence against its tail latency.
 *
 * Mosquitto 2.0 saves its whole in-memory state (every session, its
 * subscriptions and queued messages) to its persistence file on its one
 * thread, every autosave_interval seconds and at exit; nothing else runs
 * meanwhile. With thousands of persistent sessions each save is a stall
 * that every client's PUBACK waits behind.
 *
 * Two bundled brokers on the harness's PKI, in the same run: one saving
 * every 5 s (what the bundled configuration did for every deployment, and
 * still does without PostgreSQL), one with the default of a replica (with
 * PostgreSQL: saved at exit only; the outbox holds what waits for workers).
 * Each gets S persistent worker sessions (connected, subscribed, gone with
 * a queued message each), then one worker publishes QoS 1 at a steady rate
 * for 20 s and times each PUBACK: p50, p99, p99.9, max. The broker's
 * resident memory grown by the sessions, per session, with it.
 *
 * Usage: bench-autosave [sessions] (default 10000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_pg.h"
#include "envtext.h"
#include "workerbus/workerbus.h"

static const char *prog = "bench-autosave";
static wb_harness *h;

static void die(const char *what, const char *why)
{
    wbb_die_down(prog, h, what, why);
}

typedef struct figures {
    double p50, p99, p999, max;
    unsigned over_20ms;
    double kib_per_session; /* the broker's resident memory per session */
} figures;

/* One broker: S sessions left behind, then the timed publishes. */
static figures measure(const char *env, unsigned port, unsigned autosave_s, const char *name,
                       unsigned sessions)
{
    char ep[80], run[300], id[64], endpoint[64];
    snprintf(ep, sizeof ep, "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u", port);
    snprintf(run, sizeof run, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/%s", wb_harness_dir(h), name);
    snprintf(id, sizeof id, "MQTT_BROKER_BUILTIN_REPLICA_ID=bench-%s", name);
    snprintf(endpoint, sizeof endpoint, "tls://127.0.0.1:%u", port);
    const char *over[] = {ep, run, id, NULL};
    char *problems = NULL;
    wb_config *cfg = wbt_config_of(env, over, &problems);
    if (!cfg)
        die("configuration", problems);
    wb_bundled_opts bo = WB_BUNDLED_OPTS_INIT;
    bo.no_topic_rule = true; /* the broker's own work, not the database's */
    bo.autosave_interval_s = autosave_s;
    wb_bundled *b = NULL;
    char *d = NULL;
    if (wb_bundled_start(cfg, &bo, &b, &d))
        die("broker", d);
    /* the sessions: each subscribes (on connect), leaves, and gets one
     * message queued while it is away */
    wb_broker *srv = NULL;
    if (wb_broker_open(cfg, NULL, &srv) || wb_broker_connect(srv, 30000))
        die("server", wb_broker_last_error(srv));
    double rss0 = wbb_rss_kib(wb_bundled_pid(b));
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < sessions; i++) {
        wb_worker *w = wbb_harness_worker(prog, h, endpoint, false);
        char who[WB_ULID_STR_SIZE];
        const char *topic = wb_worker_readonly_topic(w);
        snprintf(who, sizeof who, "%s", strrchr(topic, '/') + 1);
        wb_worker_disconnect(w, 5000);
        wb_worker_close(w);
        if (wb_broker_publish_to_worker(srv, wb_harness_pool(h), who, "queued", 6, 1))
            die("publish", wb_broker_last_error(srv));
    }
    if (wb_broker_flush(srv, 60000))
        die("flush", wb_broker_last_error(srv));
    double per_session = (wbb_rss_kib(wb_bundled_pid(b)) - rss0) / sessions;
    fprintf(stderr, "%s: %s: %u sessions in %.1f s\n", prog, name, sessions,
            (wbb_now_ms() - t0) / 1e3);
    /* 20 s at 200 msg/s: four saves at 5 s */
    wb_worker *p = wbb_harness_worker(prog, h, endpoint, true);
    enum { N = 4000 };
    static double lat[N];
    double start = wbb_now_ms();
    for (unsigned i = 0; i < N; i++) {
        double due = start + i * 5.0, t = wbb_now_ms();
        if (t < due)
            usleep((useconds_t)((due - t) * 1000));
        t = wbb_now_ms();
        if (wb_worker_publish(p, "probe", 5, 1) || wb_worker_flush(p, 30000))
            die("probe", wb_worker_last_error(p));
        lat[i] = wbb_now_ms() - t;
    }
    wb_worker_close(p);
    wb_broker_close(srv);
    wb_bundled_stop(b);
    wb_config_free(cfg);
    qsort(lat, N, sizeof lat[0], wbb_cmp_double);
    figures f = {lat[N / 2], lat[N * 99 / 100], lat[N * 999 / 1000], lat[N - 1], 0, per_session};
    for (unsigned i = 0; i < N; i++)
        f.over_20ms += lat[i] > 20.0;
    return f;
}

int main(int argc, char **argv)
{
    unsigned sessions = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
    if (sessions < 1 || sessions > 50000)
        die("usage", "bench-autosave [sessions 1-50000]");
    h = wbb_harness_start(prog, WB_BENCH_SERVICES_SCRIPT);
    const char *env = wb_harness_env(h, WB_BROKER_BUILTIN);
    unsigned port = 30000u + (unsigned)getpid() % 20000u;
    figures every5 = measure(env, port, 5, "autosave-5s", sessions);
    figures at_exit = measure(env, port + 1, 0, "at-exit", sessions);
    printf("| persistence (%u persistent sessions, QoS 1 publish to PUBACK, 200 msg/s for 20 s) "
           "| p50 ms | p99 ms | p99.9 ms | max ms | PUBACKs over 20 ms | broker RSS per session "
           "KiB |\n"
           "|---|---|---|---|---|---|---|\n",
           sessions);
    printf("| saved every 5 s (without PostgreSQL) | %.2f | %.2f | %.2f | %.2f | %u | %.1f |\n",
           every5.p50, every5.p99, every5.p999, every5.max, every5.over_20ms,
           every5.kib_per_session);
    printf(
        "| saved at exit (a replica: with PostgreSQL) | %.2f | %.2f | %.2f | %.2f | %u | %.1f |\n",
        at_exit.p50, at_exit.p99, at_exit.p999, at_exit.max, at_exit.over_20ms,
        at_exit.kib_per_session);
    wb_harness_down(h);
    return 0;
}
