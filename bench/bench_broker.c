/* Server-to-worker messages through the built-in broker: workerbus's broker
 * interface against raw libmosquitto, on the same bundled Mosquitto, in the
 * same run, alternating rounds.
 *
 *  - throughput: N QoS 1 messages published as fast as the API takes them;
 *    time from the first publish to the last arrival at the worker.
 *  - latency: one message outstanding at a time (ping-pong), QoS 0 and 1;
 *    p50 and p99 of send-to-arrival.
 *
 * The worker is the same raw libmosquitto subscriber for both senders. TLS
 * with client certificates, as in production. The raw sender is written as a
 * careful user of libmosquitto writes a fast publisher: one thread that
 * publishes and runs the client's network loop itself (mosquitto_loop()
 * after each publish, without waiting), so that no lock is contended with a
 * loop thread of the library's.
 *
 * Usage: bench-broker [messages] [rounds]   (prints Markdown rows) */
#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "workerbus/workerbus.h"

#define POOL   "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define WORKER "01BX5ZZKBKACTAV9WEVGEMMVRZ"
#define TOPIC  "spacelift/readonly/" POOL "/" WORKER

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-broker: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

/* ---- the receiving worker ------------------------------------------------ */

static atomic_uint_fast64_t received;
static atomic_uint_fast64_t last_arrival_ns;
static atomic_uint_fast64_t last_latency_ns;

static void rx_message(struct mosquitto *m, void *o, const struct mosquitto_message *msg)
{
    (void)m, (void)o;
    uint64_t t = now_ns(), sent = 0;
    if (msg->payloadlen >= (int)sizeof sent)
        memcpy(&sent, msg->payload, sizeof sent);
    atomic_store(&last_latency_ns, t - sent);
    atomic_store(&last_arrival_ns, t);
    atomic_fetch_add(&received, 1);
}

static atomic_int rx_subscribed;
static void rx_subscribe(struct mosquitto *m, void *o, int mid, int n, const int *q)
{
    (void)m, (void)o, (void)mid, (void)n, (void)q;
    atomic_store(&rx_subscribed, 1);
}

static void rx_connect(struct mosquitto *m, void *o, int rc)
{
    (void)o;
    if (rc == 0)
        mosquitto_subscribe(m, NULL, TOPIC, 1);
}

/* ---- the raw sender ---------------------------------------------------- */

static atomic_uint_fast64_t raw_acked;
static atomic_int raw_connected;
static void raw_publish_cb(struct mosquitto *m, void *o, int mid)
{
    (void)m, (void)o, (void)mid;
    atomic_fetch_add(&raw_acked, 1);
}
static void raw_connect_cb(struct mosquitto *m, void *o, int rc)
{
    (void)m, (void)o;
    if (rc == 0)
        atomic_store(&raw_connected, 1);
}

static struct mosquitto *tls_client(const char *id, const char *pki, const char *crt,
                                    const char *key, unsigned port)
{
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    char ca[512];
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    if (!m || mosquitto_tls_set(m, ca, NULL, crt, key, NULL) != MOSQ_ERR_SUCCESS)
        die("libmosquitto", "client");
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(m, 100);
    (void)port;
    return m;
}

/* ---- measurements ------------------------------------------------------ */

typedef struct sender {
    const char *name;
    void (*publish)(void *ctx, const void *p, size_t n, int qos);
    void (*wait_acked)(void *ctx, uint64_t total);
    /* runs the sender's network loop once, without waiting; NULL: it has a
     * thread of its own */
    void (*pump)(void *ctx);
    void *ctx;
    uint64_t sent_total;
} sender;

static void wb_pub(void *ctx, const void *p, size_t n, int qos)
{
    wb_broker *b = ctx;
    wb_err err;
    while ((err = wb_broker_publish(b, TOPIC, p, n, qos)) == WB_ERR_BUSY)
        usleep(100);
    if (err)
        die("wb_broker_publish", wb_broker_last_error(b));
}

static void wb_wait(void *ctx, uint64_t total)
{
    (void)total;
    if (wb_broker_flush(ctx, 60000) != WB_OK)
        die("wb_broker_flush", wb_broker_last_error(ctx));
}

static void raw_pub(void *ctx, const void *p, size_t n, int qos)
{
    int rc = mosquitto_publish(ctx, NULL, TOPIC, (int)n, p, qos, false);
    if (rc != MOSQ_ERR_SUCCESS)
        die("mosquitto_publish", mosquitto_strerror(rc));
    /* the publish was written at once (no loop thread); read what came
     * back (PUBACKs) and send what waits for the in-flight window */
    rc = mosquitto_loop(ctx, 0, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        die("mosquitto_loop", mosquitto_strerror(rc));
}

static void raw_pump(void *ctx)
{
    int rc = mosquitto_loop(ctx, 0, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        die("mosquitto_loop", mosquitto_strerror(rc));
}

static void raw_wait(void *ctx, uint64_t total)
{
    while (atomic_load(&raw_acked) < total) {
        int rc = mosquitto_loop(ctx, 1, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            die("mosquitto_loop", mosquitto_strerror(rc));
    }
}

static void wait_received(sender *s, uint64_t target)
{
    uint64_t start = now_ns();
    while (atomic_load(&received) < target) {
        if (now_ns() - start > 120ull * 1000000000u)
            die("receive", "messages did not arrive within 120 s");
        if (s->pump)
            s->pump(s->ctx); /* what waits for the in-flight window goes out */
        else
            usleep(50);
    }
}

/* messages per second, QoS 1 */
static double throughput(sender *s, unsigned n)
{
    char payload[64] = {0};
    uint64_t base = atomic_load(&received);
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < n; i++) {
        uint64_t t = now_ns();
        memcpy(payload, &t, sizeof t);
        s->publish(s->ctx, payload, 16, 1);
    }
    s->sent_total += n;
    wait_received(s, base + n);
    s->wait_acked(s->ctx, s->sent_total);
    double secs = (double)(atomic_load(&last_arrival_ns) - t0) / 1e9;
    return n / secs;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* p50 and p99 in microseconds, one message in flight at a time */
static void latency(sender *s, unsigned n, int qos, double *p50, double *p99)
{
    uint64_t *lat = malloc(sizeof *lat * n);
    char payload[64] = {0};
    for (unsigned i = 0; i < n; i++) {
        uint64_t base = atomic_load(&received);
        uint64_t t = now_ns();
        memcpy(payload, &t, sizeof t);
        s->publish(s->ctx, payload, 16, qos);
        s->sent_total += qos == 1;
        wait_received(s, base + 1);
        lat[i] = atomic_load(&last_latency_ns);
    }
    if (qos == 1)
        s->wait_acked(s->ctx, s->sent_total);
    qsort(lat, n, sizeof *lat, cmp_u64);
    *p50 = (double)lat[n / 2] / 1000.0;
    *p99 = (double)lat[n * 99 / 100] / 1000.0;
    free(lat);
}

static unsigned free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &l))
        die("port", "no free port");
    close(s);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    unsigned lat_n = 2000;
    if (rounds < 1 || rounds > 20 || n < 100)
        die("usage", "bench-broker [messages >= 100] [rounds 1-20]");
    wb_log_set_level(WB_LOG_WARN);
    mosquitto_lib_init();

    wbb_env env;
    wbb_env_make(&env, "wbbench");
    const char *dir = env.dir, *pki = env.pki;
    char wkey[160], wcrt[160], skey[160], scrt[160];
    char *d = NULL;
    char *key = NULL, *csr = NULL, *crt = NULL, ca[160], cak[160];
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    snprintf(cak, sizeof cak, "%s/ca.key", pki);
    if (wb_pki_new_csr(WB_PKI_KEY_EC_P256, "pool", &key, &csr, &d) ||
        wb_pki_sign_csr(ca, cak, POOL, csr, strlen(csr), 0, &crt, &d))
        die("pki", d);
    snprintf(wkey, sizeof wkey, "%s/w.key", dir);
    snprintf(wcrt, sizeof wcrt, "%s/w.crt", dir);
    snprintf(skey, sizeof skey, "%s/server.key", pki);
    snprintf(scrt, sizeof scrt, "%s/server.crt", pki);
    FILE *f = fopen(wkey, "w");
    fputs(key, f);
    fclose(f);
    f = fopen(wcrt, "w");
    fputs(crt, f);
    fclose(f);

    unsigned port = free_port();
    char ep[64];
    snprintf(ep, sizeof ep, "tls://127.0.0.1:%u", port);
    wb_config *cfg = wbb_config(&env, ep, NULL);
    wb_bundled *broker = NULL;
    /* the MQTT path alone: bench-e2e measures the topic rule */
    wb_bundled_opts bo = WB_BUNDLED_OPTS_INIT;
    bo.no_topic_rule = true;
    if (wb_bundled_start(cfg, &bo, &broker, &d))
        die("bundled broker", d);

    /* the worker */
    struct mosquitto *rx = tls_client(WORKER, pki, wcrt, wkey, port);
    mosquitto_message_callback_set(rx, rx_message);
    mosquitto_connect_callback_set(rx, rx_connect);
    mosquitto_subscribe_callback_set(rx, rx_subscribe);
    if (mosquitto_connect(rx, "127.0.0.1", (int)port, 60) || mosquitto_loop_start(rx))
        die("worker", "connect");
    while (!atomic_load(&rx_subscribed))
        usleep(1000);

    /* workerbus */
    wb_broker *wb = NULL;
    if (wb_broker_open(cfg, NULL, &wb) || wb_broker_connect(wb, 10000))
        die("workerbus", wb_broker_last_error(wb));
    /* raw libmosquitto, with the server's certificate */
    struct mosquitto *raw = tls_client("raw-server", pki, scrt, skey, port);
    mosquitto_publish_callback_set(raw, raw_publish_cb);
    mosquitto_connect_callback_set(raw, raw_connect_cb);
    if (mosquitto_connect(raw, "127.0.0.1", (int)port, 60))
        die("raw", "connect");
    while (!atomic_load(&raw_connected))
        if (mosquitto_loop(raw, 100, 1) != MOSQ_ERR_SUCCESS)
            die("raw", "connect");

    sender sw = {"workerbus", wb_pub, wb_wait, NULL, wb, 0};
    sender sr = {"raw libmosquitto", raw_pub, raw_wait, raw_pump, raw, 0};
    double tw[20], tr[20], l0w[20], l0r[20], l1w[20], l1r[20], p99w[20], p99r[20], q0p99w[20],
        q0p99r[20];
    throughput(&sw, n / 10); /* warm-up */
    throughput(&sr, n / 10);
    for (int r = 0; r < rounds; r++) {
        bool wb_first = r % 2 == 0;
        sender *a = wb_first ? &sw : &sr, *b = wb_first ? &sr : &sw;
        double ta = throughput(a, n), tb = throughput(b, n);
        tw[r] = wb_first ? ta : tb;
        tr[r] = wb_first ? tb : ta;
        double x50, x99, y50, y99;
        latency(&sw, lat_n, 1, &x50, &x99);
        latency(&sr, lat_n, 1, &y50, &y99);
        l1w[r] = x50, p99w[r] = x99, l1r[r] = y50, p99r[r] = y99;
        latency(&sw, lat_n, 0, &x50, &x99);
        latency(&sr, lat_n, 0, &y50, &y99);
        l0w[r] = x50, q0p99w[r] = x99, l0r[r] = y50, q0p99r[r] = y99;
        fprintf(stderr,
                "round %d: throughput %.0f vs %.0f msg/s; QoS 1 p50 %.0f vs %.0f us; QoS 0 p50 "
                "%.0f vs %.0f us\n",
                r + 1, tw[r], tr[r], l1w[r], l1r[r], l0w[r], l0r[r]);
    }
    double mtw = wbb_median(tw, rounds), mtr = wbb_median(tr, rounds);
    printf("| measure (median of %d rounds) | workerbus | raw libmosquitto | workerbus / raw |\n",
           rounds);
    printf("|---|---|---|---|\n");
    printf("| throughput, QoS 1, %u messages of 16 bytes (msg/s) | %.0f | %.0f | %.1f%% |\n", n,
           mtw, mtr, 100.0 * mtw / mtr);
    double a50 = wbb_median(l1w, rounds), b50 = wbb_median(l1r, rounds);
    printf("| latency p50, QoS 1, one in flight (µs) | %.0f | %.0f | %.1f%% |\n", a50, b50,
           100.0 * a50 / b50);
    double a99 = wbb_median(p99w, rounds), b99 = wbb_median(p99r, rounds);
    printf("| latency p99, QoS 1, one in flight (µs) | %.0f | %.0f | %.1f%% |\n", a99, b99,
           100.0 * a99 / b99);
    a50 = wbb_median(l0w, rounds), b50 = wbb_median(l0r, rounds);
    printf("| latency p50, QoS 0, one in flight (µs) | %.0f | %.0f | %.1f%% |\n", a50, b50,
           100.0 * a50 / b50);
    a99 = wbb_median(q0p99w, rounds), b99 = wbb_median(q0p99r, rounds);
    printf("| latency p99, QoS 0, one in flight (µs) | %.0f | %.0f | %.1f%% |\n", a99, b99,
           100.0 * a99 / b99);

    mosquitto_disconnect(raw);
    mosquitto_destroy(raw);
    wb_broker_disconnect(wb, 1000);
    wb_broker_close(wb);
    mosquitto_disconnect(rx);
    mosquitto_loop_stop(rx, false);
    mosquitto_destroy(rx);
    wb_bundled_stop(broker);
    wb_config_free(cfg);
    wbb_env_remove(&env);
    return 0;
}
