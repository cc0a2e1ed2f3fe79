/* End to end, on the harness (PostgreSQL, the SQS stand-in, the IoT Core
 * stand-in, the bundled broker, simulated workers): both directions in both
 * modes with every message accounted for, the same envelopes whichever
 * broker carried them, and a server killed with SIGKILL mid-flow losing
 * nothing the broker acknowledged. */
#define _GNU_SOURCE /* asprintf */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workerbus/workerbus.h"

#define NWORKERS 4
#define MESSAGES 25 /* per worker, each way */

static wb_harness *h;

static void up(unsigned workers, unsigned heartbeat_ms)
{
    wb_harness_opts o = WB_HARNESS_OPTS_INIT;
    o.workers = workers;
    o.heartbeat_ms = heartbeat_ms;
    static char script[512];
    snprintf(script, sizeof script, "%s/scripts/services", getenv("WB_SOURCE_ROOT"));
    o.services_script = script;
    char *d = NULL;
    wb_err err = wb_harness_up(&o, &h, &d);
    cr_assert_eq(err, WB_OK, "harness: %s: %s", wb_err_name(err), d ? d : "");
}

static void down(void)
{
    cr_assert_eq(wb_harness_down(h), WB_OK);
    h = NULL;
}

/* ---- both directions ------------------------------------------------------- */

typedef struct seen {
    pthread_mutex_t lock;
    char **items; /* "<pool> <worker> <payload>": the envelope without its timestamp */
    size_t n, cap;
    uint64_t first_ts, last_ts;
} seen;

static wb_err collect(void *ctx, const wb_worker_message *m)
{
    seen *s = ctx;
    char *item = NULL;
    int len =
        asprintf(&item, "%s %s %s", m->envelope->pool, m->envelope->worker, m->envelope->payload);
    if (len < 0)
        return WB_ERR_NO_MEMORY;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->items = realloc(s->items, s->cap * sizeof *s->items);
    }
    s->items[s->n++] = item;
    if (!s->first_ts || m->envelope->timestamp_ms < s->first_ts)
        s->first_ts = m->envelope->timestamp_ms;
    if (m->envelope->timestamp_ms > s->last_ts)
        s->last_ts = m->envelope->timestamp_ms;
    pthread_mutex_unlock(&s->lock);
    return WB_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t count(seen *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* A drain of cfg's iot queue (opened into *q) handing every message to
 * collect(), into *s. */
static wb_drain *start_collecting(const wb_config *cfg, seen *s, wb_queue **q)
{
    cr_assert_eq(wb_queue_open(cfg, NULL, q), WB_OK, "%s", wb_queue_last_error(NULL));
    wb_drain_opts dopts = WB_DRAIN_OPTS_INIT;
    dopts.wait_s = 1;
    wb_drain *d = NULL;
    cr_assert_eq(wb_drain_start(*q, &dopts, collect, s, &d), WB_OK);
    return d;
}

/* Sorts the items and frees the repeated ones; returns how many distinct
 * items remain at the front. s->n stays the number collected. */
static size_t sort_distinct(seen *s)
{
    qsort(s->items, s->n, sizeof *s->items, cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i && !strcmp(s->items[i], s->items[distinct - 1])) {
            free(s->items[i]);
            continue;
        }
        s->items[distinct++] = s->items[i];
    }
    return distinct;
}

/* The server sends MESSAGES to each worker; every worker answers each with
 * an echo, which reaches the server through the iot queue. Returns the
 * distinct envelopes, sorted, in *out. */
static size_t round_trip(wb_broker_type type, char ***out)
{
    wb_config *cfg = wb_harness_config(h, type);
    cr_assert_not_null(cfg, "the harness's %s environment does not load",
                       wb_broker_type_name(type));
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(cfg, NULL, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 15000), WB_OK, "%s", wb_broker_last_error(br));
    wb_queue *q = NULL;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    wb_drain *d = start_collecting(cfg, &s, &q);
    wb_harness_stats before;
    wb_harness_stats_get(h, &before);

    for (unsigned i = 0; i < MESSAGES; i++) {
        for (unsigned w = 0; w < NWORKERS; w++) {
            char p[160];
            int n = snprintf(p, sizeof p, "{\"n\":%u,\"to\":\"%s\"}", i, wb_harness_worker(h, w));
            cr_assert_eq(wb_broker_publish_to_worker(br, wb_harness_pool(h),
                                                     wb_harness_worker(h, w), p, (size_t)n, 1),
                         WB_OK, "%s", wb_broker_last_error(br));
        }
    }
    cr_assert_eq(wb_broker_flush(br, 60000), WB_OK, "%s", wb_broker_last_error(br));
    const size_t want = NWORKERS * MESSAGES;
    for (int waited = 0; count(&s) < want && waited < 600; waited++)
        usleep(100000);
    wb_harness_stats after;
    wb_harness_stats_get(h, &after);
    wb_drain_stop(d);
    wb_drain_stats ds;
    wb_drain_stats_get(d, &ds);
    wb_drain_free(d);

    /* every echo, once or more; duplicates counted */
    size_t distinct = sort_distinct(&s);
    cr_log_info("%s: the server sent %zu, workers received %llu and echoed %llu; the handler got "
                "%zu (%zu distinct, %zu duplicates); drain: received %llu, delivered %llu, "
                "failed %llu",
                wb_broker_type_name(type), want,
                (unsigned long long)(after.received - before.received),
                (unsigned long long)(after.echoed - before.echoed), s.n, distinct, s.n - distinct,
                (unsigned long long)ds.received, (unsigned long long)ds.delivered,
                (unsigned long long)ds.failed);
    cr_assert_eq(after.received - before.received, want, "workers got %llu of %zu",
                 (unsigned long long)(after.received - before.received), want);
    cr_assert_eq(distinct, want, "the server handled %zu distinct echoes of %zu", distinct, want);
    /* each expected echo is there */
    for (unsigned w = 0; w < NWORKERS; w++) {
        for (unsigned i = 0; i < MESSAGES; i++) {
            char key[256];
            snprintf(key, sizeof key, "%s %s {\"kind\":\"echo\",\"of\":{\"n\":%u,\"to\":\"%s\"}}",
                     wb_harness_pool(h), wb_harness_worker(h, w), i, wb_harness_worker(h, w));
            const char *k = key;
            cr_assert_not_null(bsearch(&k, s.items, distinct, sizeof *s.items, cmp_str),
                               "missing: %s", key);
        }
    }
    wb_queue_close(q);
    wb_broker_close(br);
    wb_config_free(cfg);
    *out = s.items;
    return distinct;
}

Test(e2e, both_directions_in_both_modes_with_the_same_envelopes, .timeout = 300)
{
    up(NWORKERS, 0);
    char **a = NULL, **b = NULL;
    size_t na = round_trip(WB_BROKER_BUILTIN, &a);
    size_t nb = round_trip(WB_BROKER_IOTCORE, &b);
    /* the envelopes, apart from the timestamp, are the same whichever broker
     * carried them */
    cr_assert_eq(na, nb);
    for (size_t i = 0; i < na; i++)
        cr_assert_str_eq(a[i], b[i]);
    for (size_t i = 0; i < na; i++) {
        free(a[i]);
        free(b[i]);
    }
    free(a);
    free(b);
    down();
}

/* ---- the server killed mid-flow ----------------------------------------------- */

static pid_t serve(const char *out_path)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const char *env = wb_harness_env(h, WB_BROKER_BUILTIN);
        for (const char *l = env; *l;) {
            const char *e = strchr(l, '\n');
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)(e ? e - l : (long)strlen(l)), l);
            char *eq = strchr(line, '=');
            if (eq) {
                *eq = '\0';
                setenv(line, eq + 1, 1);
            }
            if (!e)
                break;
            l = e + 1;
        }
        FILE *f = fopen(out_path, "a");
        dup2(fileno(f), 1);
        execl(getenv("WB_CLI"), "workerbus", "serve", "--no-bundled", "--visibility", "3", "--wait",
              "1", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static uint64_t queue_left(const wb_config *cfg)
{
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &c), WB_OK);
    wb_queue_close(q);
    return c.visible + c.in_flight + c.delayed;
}

Test(e2e, a_server_killed_with_sigkill_loses_nothing_the_broker_acknowledged, .timeout = 300)
{
    up(3, 20); /* heartbeats every 20 ms from each worker */
    char out[256];
    snprintf(out, sizeof out, "%s/served.jsonl", wb_harness_dir(h));
    pid_t s = serve(out);
    sleep(2);
    cr_assert_eq(kill(s, SIGKILL), 0);
    waitpid(s, NULL, 0);
    sleep(1); /* the workers go on; the broker acknowledges into the queue */
    s = serve(out);
    sleep(2);
    wb_harness_heartbeats(h, false);
    cr_assert_eq(wb_harness_flush(h, 30000), WB_OK, "the brokers did not acknowledge everything");
    wb_config *cfg = wb_harness_config(h, WB_BROKER_BUILTIN);
    /* what the killed server had received comes back after its visibility */
    for (int waited = 0; queue_left(cfg) > 0 && waited < 300; waited++)
        usleep(100000);
    cr_assert_eq(queue_left(cfg), 0, "the iot queue did not drain");
    kill(s, SIGTERM);
    int st = 0;
    waitpid(s, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "serve did not stop cleanly (%d)", st);
    wb_config_free(cfg);

    wb_harness_stats hs;
    wb_harness_stats_get(h, &hs);
    /* each broker got as many heartbeats: half of them went to this one */
    uint64_t sent = hs.heartbeats / 2;
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char line[2048];
    size_t lines = 0, distinct = 0;
    static bool got[3][100000];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        cr_assert_not_null(j, "not a JSON line: %s", line);
        const char *w = json_string_value(json_object_get(j, "worker"));
        json_int_t seq = json_integer_value(json_object_get(json_object_get(j, "payload"), "seq"));
        int wi = -1;
        for (int i = 0; i < 3; i++)
            if (w && !strcmp(w, wb_harness_worker(h, (unsigned)i)))
                wi = i;
        cr_assert(wi >= 0 && seq >= 0 && seq < 100000, "%s", line);
        if (!got[wi][seq]) {
            got[wi][seq] = true;
            distinct++;
        }
        lines++;
        json_decref(j);
    }
    fclose(f);
    cr_log_info("SIGKILL: the workers sent %llu heartbeats to the bundled broker, all "
                "acknowledged; the server printed %zu lines, %zu distinct, %zu duplicates",
                (unsigned long long)sent, lines, distinct, lines - distinct);
    cr_assert_eq(distinct, sent, "acknowledged %llu, handled %zu distinct",
                 (unsigned long long)sent, distinct);
    down();
}

/* ---- the queue stopped for a while ------------------------------------------------ */

static void services(const char *what)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/scripts/services' %s --dir '%s' 2>/dev/null",
             getenv("WB_SOURCE_ROOT"), what, wb_harness_services_dir(h));
    cr_assert_eq(system(cmd), 0, "scripts/services %s failed", what);
}

Test(e2e, while_the_queue_is_stopped_worker_messages_wait_and_arrive_after, .timeout = 300)
{
    up(3, 20);
    wb_config *cfg = wb_harness_config(h, WB_BROKER_BUILTIN);
    wb_queue *q = NULL;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    wb_drain *d = start_collecting(cfg, &s, &q);
    sleep(1);
    services("suspend postgres");
    sleep(3); /* the workers keep publishing; the broker does not acknowledge */
    wb_harness_stats mid;
    wb_harness_stats_get(h, &mid);
    services("resume postgres");
    sleep(1);
    wb_harness_heartbeats(h, false);
    cr_assert_eq(wb_harness_flush(h, 60000), WB_OK, "the workers' messages were not acknowledged");
    wb_harness_stats hs;
    wb_harness_stats_get(h, &hs);
    uint64_t sent = hs.heartbeats / 2;
    for (int waited = 0; count(&s) < sent && waited < 600; waited++)
        usleep(100000);
    wb_drain_free(d);
    size_t distinct = sort_distinct(&s);
    for (size_t i = 0; i < distinct; i++)
        free(s.items[i]);
    free(s.items);
    cr_log_info("queue stopped 3 s: %llu heartbeats to the bundled broker, %zu handled (%zu "
                "distinct)",
                (unsigned long long)sent, s.n, distinct);
    cr_assert_eq(distinct, sent);
    wb_queue_close(q);
    wb_config_free(cfg);
    down();
}
