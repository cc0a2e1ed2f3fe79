/* The HTTP endpoint of `workerbus serve`, on libmicrohttpd's own thread:
 *   /healthz  liveness: 200 while the process serves requests;
 *   /readyz   readiness: 200 when the broker is connected and the queue
 *             answers (checked at most every 2 s), else 503 with why;
 *   /metrics  Prometheus text exposition (version 0.0.4). */
#define _GNU_SOURCE
#include "http_endpoint.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double wb_cli_latency_bounds[WB_CLI_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0};

void wb_cli_latency_add(wb_cli_latency *l, double seconds)
{
    size_t i = 0;
    while (i < WB_CLI_LATENCY_BUCKETS && seconds > wb_cli_latency_bounds[i])
        i++;
    atomic_fetch_add(&l->bucket[i], 1);
    atomic_fetch_add(&l->count, 1);
    atomic_fetch_add(&l->sum_us, (uint64_t)(seconds * 1e6));
}

struct wb_cli_http {
    struct MHD_Daemon *mhd;
    wb_cli_http_source src;
    pthread_mutex_t lock; /* the cached readiness */
    time_t ready_at;
    bool queue_ok;
    char why[256];
};

/* A growable text. */
typedef struct text {
    char *s;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !t->failed; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap : 4096) * 2 + (size_t)n;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->failed = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The queue answers: a count of the iot queue, at most every 2 s. */
static bool queue_reachable(wb_cli_http *h, char *why, size_t n)
{
    pthread_mutex_lock(&h->lock);
    time_t now = time(NULL);
    if (now - h->ready_at >= 2) {
        wb_queue_counts c;
        h->queue_ok = wb_queue_counts_get(h->src.probe, WB_LQ_IOT, &c) == WB_OK;
        snprintf(h->why, sizeof h->why, "%s", h->queue_ok ? "" : wb_queue_last_error(h->src.probe));
        h->ready_at = now;
    }
    bool ok = h->queue_ok;
    snprintf(why, n, "%s", h->why);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

static void metrics(wb_cli_http *h, text *t)
{
    wb_broker_stats b = {0};
    wb_broker_stats_get(h->src.broker, &b);
    wb_drain_stats d = {0};
    wb_drain_stats_get(h->src.drain, &d);
    family(t, "workerbus_info", "gauge", "The broker and queue this serve uses.");
    put(t, "workerbus_info{version=\"%s\",broker=\"%s\",queue=\"%s\"} 1\n", wb_version(),
        h->src.broker_type, h->src.queue_type);
    family(t, "workerbus_broker_connected", "gauge", "1 while connected to the broker.");
    put(t, "workerbus_broker_connected %d\n", b.connected ? 1 : 0);
    static const struct {
        const char *name, *help;
        size_t off;
    } bc[] = {
        {"workerbus_broker_published_total", "Messages accepted by publish.",
         offsetof(wb_broker_stats, published)},
        {"workerbus_broker_acknowledged_total", "QoS 1 acknowledged by the broker, QoS 0 sent.",
         offsetof(wb_broker_stats, acknowledged)},
        {"workerbus_broker_received_total", "Messages delivered to the server.",
         offsetof(wb_broker_stats, received)},
        {"workerbus_broker_reconnects_total", "Connections made again after a loss.",
         offsetof(wb_broker_stats, reconnects)},
        {"workerbus_broker_refused_total", "Publish calls refused.",
         offsetof(wb_broker_stats, refused)},
    };
    for (size_t i = 0; i < sizeof bc / sizeof bc[0]; i++) {
        family(t, bc[i].name, "counter", bc[i].help);
        put(t, "%s %llu\n", bc[i].name,
            (unsigned long long)*(const uint64_t *)((const char *)&b + bc[i].off));
    }
    family(t, "workerbus_broker_queued", "gauge", "Accepted and not yet acknowledged.");
    put(t, "workerbus_broker_queued %zu\n", b.queued);
    static const struct {
        const char *name, *help;
        size_t off;
    } dc[] = {
        {"workerbus_drain_received_total", "Messages taken from the iot queue.",
         offsetof(wb_drain_stats, received)},
        {"workerbus_drain_delivered_total", "Handled and deleted.",
         offsetof(wb_drain_stats, delivered)},
        {"workerbus_drain_failed_total", "Handler failures and bodies that are not envelopes.",
         offsetof(wb_drain_stats, failed)},
        {"workerbus_drain_redriven_total", "Failures on the last attempt, bound for the dlq.",
         offsetof(wb_drain_stats, redriven)},
        {"workerbus_drain_visibility_extended_total", "Visibility extensions while a handler ran.",
         offsetof(wb_drain_stats, extended)},
        {"workerbus_drain_queue_errors_total", "Receive and delete calls that failed.",
         offsetof(wb_drain_stats, queue_errors)},
    };
    for (size_t i = 0; i < sizeof dc / sizeof dc[0]; i++) {
        family(t, dc[i].name, "counter", dc[i].help);
        put(t, "%s %llu\n", dc[i].name,
            (unsigned long long)*(const uint64_t *)((const char *)&d + dc[i].off));
    }
    wb_broker_replica_stats rs;
    if (wb_broker_replica_stats_get(h->src.broker, &rs) == WB_OK) {
        static const struct {
            const char *name, *help;
            size_t off;
        } rc[] = {
            {"workerbus_replica_local_total", "Published to a worker connected to this replica.",
             offsetof(wb_broker_replica_stats, local)},
            {"workerbus_replica_routed_total", "Put in the outbox for a worker of another replica.",
             offsetof(wb_broker_replica_stats, routed)},
            {"workerbus_replica_pending_total", "Put in the outbox for a worker connected nowhere.",
             offsetof(wb_broker_replica_stats, pending)},
            {"workerbus_replica_delivered_total",
             "Outbox messages this replica's broker acknowledged.",
             offsetof(wb_broker_replica_stats, delivered)},
            {"workerbus_replica_expired_total", "Outbox messages this replica removed, expired.",
             offsetof(wb_broker_replica_stats, expired)},
            {"workerbus_replica_taken_over_total",
             "Outbox messages delivered after another replica's claim lapsed.",
             offsetof(wb_broker_replica_stats, taken_over)},
            {"workerbus_replica_outbox_full_total", "Publishes refused: the outbox was full.",
             offsetof(wb_broker_replica_stats, outbox_full)},
            {"workerbus_replica_database_failures_total",
             "Routing calls and passes that PostgreSQL failed.",
             offsetof(wb_broker_replica_stats, db_failures)},
        };
        for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
            family(t, rc[i].name, "counter", rc[i].help);
            put(t, "%s %llu\n", rc[i].name,
                (unsigned long long)*(const uint64_t *)((const char *)&rs + rc[i].off));
        }
        family(t, "workerbus_replica_outbox_messages", "gauge",
               "Messages in the outbox, all workers, at the last heartbeat.");
        put(t, "workerbus_replica_outbox_messages %llu\n", (unsigned long long)rs.outbox_size);
        family(t, "workerbus_replicas_alive", "gauge",
               "Replicas whose heartbeat is within the timeout, this one included.");
        put(t, "workerbus_replicas_alive %u\n", rs.replicas);
        family(t, "workerbus_replica_registered", "gauge",
               "1 while this replica's heartbeat reaches the database.");
        put(t, "workerbus_replica_registered %d\n", rs.registered ? 1 : 0);
    }
    family(t, "workerbus_queue_messages", "gauge",
           "Messages per logical queue and state (SQS: approximate).");
    unsigned reachable = 1;
    for (int q = 0; q < WB_LQ__COUNT; q++) {
        wb_queue_counts c;
        if (wb_queue_counts_get(h->src.probe, (wb_logical_queue)q, &c) != WB_OK) {
            reachable = 0;
            continue;
        }
        const char *name = wb_logical_queue_name((wb_logical_queue)q);
        put(t, "workerbus_queue_messages{queue=\"%s\",state=\"visible\"} %llu\n", name,
            (unsigned long long)c.visible);
        put(t, "workerbus_queue_messages{queue=\"%s\",state=\"in_flight\"} %llu\n", name,
            (unsigned long long)c.in_flight);
        put(t, "workerbus_queue_messages{queue=\"%s\",state=\"delayed\"} %llu\n", name,
            (unsigned long long)c.delayed);
    }
    family(t, "workerbus_queue_reachable", "gauge", "1 when every queue answered this scrape.");
    put(t, "workerbus_queue_reachable %u\n", reachable);
    family(t, "workerbus_handler_duration_seconds", "histogram",
           "Time from a worker message's receipt to its handler's return.");
    const wb_cli_latency *l = h->src.latency;
    uint64_t cum = 0;
    for (int i = 0; i < WB_CLI_LATENCY_BUCKETS; i++) {
        cum += atomic_load(&l->bucket[i]);
        put(t, "workerbus_handler_duration_seconds_bucket{le=\"%g\"} %llu\n",
            wb_cli_latency_bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load(&l->bucket[WB_CLI_LATENCY_BUCKETS]);
    put(t, "workerbus_handler_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
        (unsigned long long)cum);
    put(t, "workerbus_handler_duration_seconds_sum %.6f\n", (double)atomic_load(&l->sum_us) / 1e6);
    put(t, "workerbus_handler_duration_seconds_count %llu\n",
        (unsigned long long)atomic_load(&l->count));
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
                              const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version, (void)upload_data, (void)con_cls;
    wb_cli_http *h = cls;
    if (*upload_data_size) { /* a body: not for us */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char m[] = "only GET and HEAD\n";
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", m, sizeof m - 1);
    }
    if (strcmp(url, "/healthz") == 0) {
        static const char ok[] = "ok\n";
        return answer(c, MHD_HTTP_OK, "text/plain", ok, sizeof ok - 1);
    }
    if (strcmp(url, "/readyz") == 0) {
        wb_broker_stats b = {0};
        wb_broker_stats_get(h->src.broker, &b);
        char why[256];
        bool q = queue_reachable(h, why, sizeof why);
        /* a replica is ready when its heartbeat reaches the database too:
         * else the other replicas treat its workers as connected nowhere */
        wb_broker_replica_stats rs;
        bool replica = wb_broker_replica_stats_get(h->src.broker, &rs) == WB_OK;
        bool r = !replica || rs.registered;
        char body[700];
        int n = snprintf(body, sizeof body, "%s\nbroker (%s): %s\nqueue (%s): %s%s%s\n%s%s",
                         b.connected && q && r ? "ready" : "not ready", h->src.broker_type,
                         b.connected ? "connected" : "not connected", h->src.queue_type,
                         q ? "answers" : "does not answer", q ? "" : ": ", q ? "" : why,
                         !replica        ? ""
                         : rs.registered ? "replica: registered, heartbeat reaches the database"
                                         : "replica: the heartbeat does not reach the database",
                         replica ? "\n" : "");
        return answer(c, b.connected && q && r ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                      "text/plain", body, n > 0 ? (size_t)n : 0);
    }
    if (strcmp(url, "/metrics") == 0) {
        text t = {0};
        metrics(h, &t);
        enum MHD_Result r =
            t.failed
                ? answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n", 14)
                : answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", t.s, t.len);
        free(t.s);
        return r;
    }
    static const char nf[] = "not found: /healthz, /readyz or /metrics\n";
    return answer(c, MHD_HTTP_NOT_FOUND, "text/plain", nf, sizeof nf - 1);
}

int wb_cli_http_start(const char *listen, const wb_cli_http_source *src, wb_cli_http **out)
{
    *out = NULL;
    char host[64];
    unsigned port = 0;
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    char *end = NULL;
    unsigned long p = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || hl == 0 || hl >= sizeof host || !end || *end || colon[1] < '0' ||
        colon[1] > '9' || p < 1 || p > 65535) {
        fprintf(stderr,
                "workerbus: serve: --http '%s': expected ADDRESS:PORT with a numeric address, "
                "e.g. 127.0.0.1:9360 or [::1]:9360, port 1-65535\n",
                listen);
        return 64;
    }
    port = (unsigned)p;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    const struct sockaddr *sa = NULL;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &v6.sin6_addr) == 1) {
            sa = (const struct sockaddr *)&v6;
            flags |= MHD_USE_IPv6;
        }
    } else if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
        sa = (const struct sockaddr *)&v4;
    }
    if (!sa) {
        fprintf(stderr,
                "workerbus: serve: --http '%s': '%s' is not a numeric IPv4 address or a "
                "bracketed IPv6 one\n",
                listen, host);
        return 64;
    }
    wb_cli_http *h = calloc(1, sizeof *h);
    if (!h)
        return 70;
    h->src = *src;
    pthread_mutex_init(&h->lock, NULL);
    h->ready_at = 0;
    h->mhd =
        MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (!h->mhd) {
        fprintf(stderr,
                "workerbus: serve: --http %s: cannot listen there (in use, or not an "
                "address of this machine)\n",
                listen);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return 69;
    }
    *out = h;
    return 0;
}

void wb_cli_http_stop(wb_cli_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->mhd);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
