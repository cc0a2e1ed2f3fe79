/* Server publishes through the iotcore backend against raw Paho MQTTAsync,
 * on the same IoT Core stand-in (the bundled Mosquitto with mutual TLS and a
 * certificate for the endpoint's name), in the same run, alternating rounds.
 *
 *  - throughput: N QoS 1 messages of 64 bytes to a worker's topic, from the
 *    first publish to the last PUBACK. IoT Core's 100 msg/s rate is lifted
 *    on both sides (wb__iotcore_set_rates()) so that the backend's own cost
 *    shows; both keep IoT Core's window of 100 unacknowledged messages.
 *    The raw client is what a careful Paho user writes: sendMessage while
 *    fewer than 100 are in flight, on the same TLS settings.
 *  - at IoT Core's limits: the time the backend takes for M messages with
 *    the rate in force, against what 100 msg/s allows (100 at once, then
 *    100 a second).
 *
 * Usage: bench-iotcore [messages] [rounds]   (prints Markdown rows) */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "connect_to.h"
#include "hooks.h"
#include "workerbus/workerbus.h"
#include "sqs_urls.h"

#define ENDPOINT "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
#define TOPIC    "spacelift/readonly/01ARZ3NDEKTSV4RRFFQ69G5FAV/01BX5ZZKBKACTAV9WEVGEMMVRZ"
#define WINDOW   100u

static const char *prog = "bench-iotcore";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static wbb_env env;
static unsigned port;

static wb_config *iot_config(void)
{
    char crt[200], key[200], ca[200], to[96];
    snprintf(crt, sizeof crt, "MQTT_BROKER_IOTCORE_CERT_FILE=%s/server.crt", env.pki);
    snprintf(key, sizeof key, "MQTT_BROKER_IOTCORE_KEY_FILE=%s/server.key", env.pki);
    snprintf(ca, sizeof ca, "MQTT_BROKER_IOTCORE_CA_FILE=%s/ca.crt", env.pki);
    snprintf(to, sizeof to, "MQTT_BROKER_IOTCORE_CONNECT_TO=127.0.0.1:%u", port);
    const char *e[] = {"MQTT_BROKER_TYPE=iotcore",
                       "MQTT_BROKER_ENDPOINT=" ENDPOINT,
                       "MQTT_BROKER_IOTCORE_TRANSPORT=mqtts",
                       crt,
                       key,
                       ca,
                       to,
                       "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true",
                       WBT_UNREACHABLE_SQS_URLS,
                       NULL};
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = e;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    if (wb_config_load(&o, &cfg, &rep))
        wbb_die(prog, "iotcore configuration", wb_config_report_format(rep, WB_REPORT_PROBLEMS));
    wb_config_report_free(rep);
    return cfg;
}

/* ---- workerbus ----------------------------------------------------------- */

static double wb_round(wb_config *cfg, unsigned n)
{
    wb_broker *br = NULL;
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.client_id = "bench-workerbus";
    if (wb_broker_open(cfg, &o, &br) || wb_broker_connect(br, 10000))
        wbb_die(prog, "workerbus connect", wb_broker_last_error(br));
    char payload[64];
    memset(payload, 'x', sizeof payload);
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++)
        if (wb_broker_publish(br, TOPIC, payload, sizeof payload, 1))
            wbb_die(prog, "workerbus publish", wb_broker_last_error(br));
    if (wb_broker_flush(br, 600000))
        wbb_die(prog, "workerbus flush", wb_broker_last_error(br));
    double t = now_s() - t0;
    wb_broker_close(br);
    return t;
}

/* ---- raw Paho --------------------------------------------------------------- */

typedef struct raw {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned inflight;
    unsigned acked, failed;
    int connected; /* 1 up, -1 failed */
} raw;

static void raw_connected(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    raw *x = ctx;
    pthread_mutex_lock(&x->lock);
    x->connected = 1;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void raw_connect_failed(void *ctx, MQTTAsync_failureData *r)
{
    raw *x = ctx;
    fprintf(stderr, "%s: raw connect: %d %s\n", prog, r ? r->code : 0,
            r && r->message ? r->message : "");
    pthread_mutex_lock(&x->lock);
    x->connected = -1;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void raw_sent(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    raw *x = ctx;
    pthread_mutex_lock(&x->lock);
    x->inflight--;
    x->acked++;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void raw_send_failed(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    raw *x = ctx;
    pthread_mutex_lock(&x->lock);
    x->inflight--;
    x->failed++;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static wb__relay *raw_relay;

static double raw_round(unsigned n)
{
    raw x = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    char uri[160], ca[200], crt[200], key[200];
    snprintf(uri, sizeof uri, "ssl://%s:%u", ENDPOINT, port);
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    snprintf(crt, sizeof crt, "%s/server.crt", env.pki);
    snprintf(key, sizeof key, "%s/server.key", env.pki);
    MQTTAsync c;
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer;
    cro.maxBufferedMessages = (int)WINDOW * 2;
    cro.MQTTVersion = MQTTVERSION_3_1_1;
    if (MQTTAsync_createWithOptions(&c, uri, "bench-raw", MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &cro) != MQTTASYNC_SUCCESS)
        wbb_die(prog, "raw create", NULL);
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    ssl.trustStore = ca;
    ssl.keyStore = crt;
    ssl.privateKey = key;
    ssl.enableServerCertAuth = 1;
    ssl.verify = 1;
    ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    ssl.disableDefaultTrustStore = 1;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.keepAliveInterval = 60;
    co.cleansession = 1;
    co.maxInflight = (int)WINDOW;
    co.ssl = &ssl;
    co.httpsProxy = wb__relay_proxy(raw_relay);
    co.onSuccess = raw_connected;
    co.onFailure = raw_connect_failed;
    co.context = &x;
    if (MQTTAsync_connect(c, &co) != MQTTASYNC_SUCCESS)
        wbb_die(prog, "raw connect", NULL);
    pthread_mutex_lock(&x.lock);
    while (!x.connected)
        pthread_cond_wait(&x.cond, &x.lock);
    pthread_mutex_unlock(&x.lock);
    if (x.connected < 0)
        wbb_die(prog, "raw connect", "refused");
    char payload[64];
    memset(payload, 'x', sizeof payload);
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&x.lock);
        while (x.inflight >= WINDOW)
            pthread_cond_wait(&x.cond, &x.lock);
        x.inflight++;
        pthread_mutex_unlock(&x.lock);
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = raw_sent;
        ro.onFailure = raw_send_failed;
        ro.context = &x;
        MQTTAsync_message m = MQTTAsync_message_initializer;
        m.payload = payload;
        m.payloadlen = (int)sizeof payload;
        m.qos = 1;
        int rc = MQTTAsync_sendMessage(c, TOPIC, &m, &ro);
        if (rc != MQTTASYNC_SUCCESS) {
            fprintf(stderr, "%s: raw send: %d\n", prog, rc);
            exit(1);
        }
    }
    pthread_mutex_lock(&x.lock);
    while (x.acked + x.failed < n)
        pthread_cond_wait(&x.cond, &x.lock);
    pthread_mutex_unlock(&x.lock);
    double t = now_s() - t0;
    if (x.failed)
        wbb_die(prog, "raw", "messages failed");
    MQTTAsync_disconnectOptions dop = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(c, &dop);
    usleep(100000);
    MQTTAsync_destroy(&c);
    return t;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 20000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (n == 0 || rounds < 1 || rounds > 50)
        wbb_die(prog, "usage", "bench-iotcore [messages] [rounds]");
    wb_log_set_level(WB_LOG_ERROR);
    static const char *const hosts[] = {ENDPOINT, "127.0.0.1", NULL};
    wbb_env_make_hosts(&env, "wbbench-iot", hosts);
    char ep[64];
    port = 20000u + (unsigned)getpid() % 20000u;
    snprintf(ep, sizeof ep, "tls://127.0.0.1:%u", port);
    wb_config *bcfg = wbb_config(&env, ep, NULL);
    wb_bundled *stand_in = NULL;
    wb_bundled_opts bo = WB_BUNDLED_OPTS_INIT;
    bo.no_topic_rule = true;
    char *d = NULL;
    if (wb_bundled_start(bcfg, &bo, &stand_in, &d))
        wbb_die(prog, "the stand-in", d);
    /* the raw client reaches the stand-in as the backend does: through a
     * connect-to relay (an HTTP CONNECT proxy), TLS checking the name */
    if (wb__relay_start(ENDPOINT, "127.0.0.1", port, &raw_relay, &d))
        wbb_die(prog, "connect-to relay", d);
    wb_config *cfg = iot_config();

    /* throughput, IoT Core's rate lifted on both sides; window kept */
    wb__iotcore_set_rates(100000000u, 2000000000u);
    wb_round(cfg, n / 10); /* warm-up: TLS session, caches */
    raw_round(n / 10);
    double tw[50], tr[50];
    for (int r = 0; r < rounds; r++) {
        tw[r] = wb_round(cfg, n);
        tr[r] = raw_round(n);
    }
    double w = (double)n / wbb_median(tw, rounds), x = (double)n / wbb_median(tr, rounds);
    printf("| measure (median of %d rounds, %u messages of 64 bytes, QoS 1) | workerbus iotcore "
           "| raw Paho MQTTAsync | workerbus / raw |\n",
           rounds, n);
    printf("|---|---|---|---|\n");
    printf("| publish throughput, rate limit lifted, window 100 | %.0f msg/s | %.0f msg/s | "
           "%.1f%% |\n",
           w, x, 100.0 * w / x);

    /* at IoT Core's limits */
    wb__iotcore_set_rates(0, 0);
    unsigned m = 600;
    double t = wb_round(cfg, m);
    double allowed = (double)(m - 100) / 100.0;
    printf("| %u messages at IoT Core's 100 msg/s (100 at once, then 100/s) | %.2f s | %.2f s "
           "allowed | %.1f%% of the allowed rate |\n",
           m, t, allowed, 100.0 * allowed / t);

    wb_config_free(cfg);
    wb__relay_stop(raw_relay);
    wb_bundled_stop(stand_in);
    wb_config_free(bcfg);
    wbb_env_remove(&env);
    return 0;
}
