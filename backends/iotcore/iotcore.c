/* The iotcore broker backend: the server's connection to AWS IoT Core.
 *
 * Transports (MQTT_BROKER_IOTCORE_TRANSPORT):
 *  - mqtts, mqtts-alpn, wss: Paho MQTT C (MQTTAsync) over OpenSSL, TLS 1.2+,
 *    SNI and host-name verification on. wss signs its URL with SigV4
 *    (iotdevicegateway) again before every connection attempt.
 *  - https: the data-plane Publish API over libcurl, SigV4 (iotdata);
 *    publish only.
 *
 * IoT Core's limits (facts.md) are checked before anything is sent; its
 * per-connection rate (100 publishes/s) and in-flight limit (100) are met by
 * queueing here: Paho is never handed more than the window, so its command
 * buffer never reaches maxBufferedMessages (where MQTTAsync_sendMessage
 * fails with -12, connected or not). QoS 1 messages stay in the outbox until
 * IoT Core acknowledges them and are handed again after a reconnect; the
 * MQTT session is clean (see start_connect() for why).
 * Reconnects are ours (backoff with jitter), so that wss re-signs and so
 * that subscriptions are renewed in one place. */
#include <MQTTAsync.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws_creds.h"
#include "broker_backend.h"
#include "config_views.h"
#include "connect_to.h"
#include "http.h"
#include "iotsign.h"
#include "sigv4.h"
#include "wb_internal.h"

#define IOT_MAX_PAYLOAD   (128u * 1024u)
#define IOT_MAX_TOPIC     256u
#define IOT_MAX_SLASHES   7u
#define IOT_MAX_CLIENT_ID 128u
#define IOT_WINDOW        100u           /* IoT Core's unacknowledged in-flight limit */
#define IOT_RATE          100u           /* publishes per second per connection */
#define IOT_BYTE_RATE     (512u * 1024u) /* bytes per second per connection */
#define ALPN_MQTT         "\x0ex-amzn-mqtt-ca"

/* IoT Core's rates; changed only by benchmarks (wb__iotcore_set_rates()). */
static double iot_rate = IOT_RATE, iot_byte_rate = IOT_BYTE_RATE;

/* Declared for the benchmarks in bench/hooks.h, not in a header of the
 * backend. */
void wb__iotcore_set_rates(unsigned msgs_per_s, unsigned bytes_per_s);
void wb__iotcore_set_rates(unsigned msgs_per_s, unsigned bytes_per_s)
{
    iot_rate = msgs_per_s ? msgs_per_s : IOT_RATE;
    iot_byte_rate = bytes_per_s ? bytes_per_s : IOT_BYTE_RATE;
}

/* One allocation: topic and payload live in data[]. */
typedef struct outmsg {
    char *topic;
    void *payload;
    size_t len;
    int qos;
    uint64_t seq; /* the outbox is in seq order */
    unsigned gen; /* which handing is current */
    bool handed;  /* given to Paho, not yet acknowledged */
    struct outmsg *next;
    char data[];
} outmsg;

typedef struct sub {
    char *filter;
    int qos;
    struct sub *next;
} sub;

typedef struct iot {
    wb__broker_core *core;
    wb_iotcore_transport transport;
    char *endpoint, *region, *client_id;
    char *cert, *key, *ca;
    unsigned keepalive_s, rmin, rmax;
    size_t max_queued;
    wb__aws_provider *creds;

    /* https */
    pthread_mutex_t http_lock;
    wb__http *http;
    char *connect_to; /* curl's "host:port:to_host:to_port" */
    unsigned port;    /* the transport's port, in the URI */
    wb__relay *relay; /* MQTT with MQTT_BROKER_IOTCORE_CONNECT_TO */
    char *dial_host;  /* where TCP goes: the override's address, else the endpoint */
    unsigned dial_port;

    /* mqtt */
    MQTTAsync client;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_cond_t pump_cond; /* the pump waits on this one */
    pthread_t pump;
    bool pump_running, stop, want, connected, connecting, ever_connected, auth_refused;
    bool connect_issued; /* Paho owns reconnecting from then on */
    bool initial_failed; /* the first connect failed: issue it again */
    char *last_failure;
    char *tls_error; /* OpenSSL's last complaint */
    unsigned attempt;
    uint64_t next_attempt_ms;
    outmsg *head, *tail;
    size_t queued, handed;
    bool giving; /* a thread is handing picked messages to Paho (drain()) */
    uint64_t next_seq;
    double tokens, byte_tokens;
    uint64_t tokens_at_ms;
    sub *subs;
    /* a pending subscribe/unsubscribe answer */
    int op_state; /* 0 idle, 1 waiting, 2 ok, 3 refused */
    wb_broker_stats st;
} iot;

/* State changed: everyone who waits re-checks (the pump has its own
 * condition so that acknowledgements wake only it). Lock held. */
static void wake_all(iot *b)
{
    pthread_cond_broadcast(&b->cond);
    pthread_cond_broadcast(&b->pump_cond);
}

static bool mqtt(const iot *b)
{
    return b->transport != WB_IOT_HTTPS;
}

/* Set while this thread runs one of our Paho callbacks. Lock order: no Paho
 * call is ever made while b->lock is held (Paho may hold its own mutex while
 * it calls us). */
static _Thread_local const iot *in_cb;

/* ---- limits ------------------------------------------------------------------ */

/* IoT Core refuses a client id over 128 bytes and a keepalive outside
 * 30-1200 s; say so before connecting. */
static wb_err check_session_limits(const iot *b, char **detail)
{
    if (strlen(b->client_id) > IOT_MAX_CLIENT_ID) {
        *detail = wb__asprintf("the client id is %zu bytes; IoT Core takes at most %u",
                               strlen(b->client_id), IOT_MAX_CLIENT_ID);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (b->keepalive_s < 30 || b->keepalive_s > 1200) {
        *detail =
            wb__asprintf("a keepalive of %u s is outside IoT Core's 30-1200 s", b->keepalive_s);
        return WB_ERR_INVALID_ARGUMENT;
    }
    return WB_OK;
}

/* ---- the https transport ---------------------------------------------------- */

static wb_err https_publish(iot *b, const char *topic, const void *payload, size_t len, int qos,
                            char **detail)
{
    wb__aws_creds cr = {0};
    wb_err err = wb__aws_provider_get(b->creds, &cr, detail);
    wb__iot_publish_req req = {0};
    if (!err)
        err = wb__iot_publish_sign(b->endpoint, b->region, topic, qos, payload, len, &cr,
                                   time(NULL), &req, detail);
    wb__aws_creds_clear(&cr);
    if (err)
        return err;
    const char *hdrs[WB__ARRAY_LEN(req.headers) + 1] = {0};
    for (size_t i = 0; i < WB__ARRAY_LEN(req.headers); i++)
        hdrs[i] = req.headers[i];
    /* one attempt; the broker core retries what is marked retryable */
    wb__http_response resp;
    pthread_mutex_lock(&b->http_lock);
    err = wb__http_request_to(b->http, "POST", req.url, b->connect_to, b->ca, hdrs, payload, len,
                              5000, 15000, &resp, detail);
    bool answered = !err;
    if (err) {
        err = wb__retryable(err); /* no answer */
    } else if (resp.status != 200) {
        *detail =
            wb__asprintf("IoT Core Publish to %s: HTTP %ld: %.300s", topic, resp.status, resp.body);
        err = resp.status == 403 || resp.status == 401 ? WB_ERR_AUTH_REFUSED
              : resp.status == 413                     ? WB_ERR_TOO_LARGE
              : resp.status == 429                     ? WB_ERR_BUSY
              : resp.status >= 500                     ? WB_ERR_BACKEND
                                                       : WB_ERR_INVALID_ARGUMENT;
        if (resp.status >= 500 || resp.status == 429)
            err = wb__retryable(err);
    }
    if (answered)
        wb__http_response_free(&resp);
    pthread_mutex_unlock(&b->http_lock);
    if (!err) {
        free(*detail);
        *detail = NULL;
    }
    wb__iot_publish_req_free(&req);
    return err;
}

/* ---- MQTT: URIs and TLS ------------------------------------------------------ */

/* The URI of one connection attempt (wss: signed now). */
static char *server_uri(iot *b, char **detail)
{
    if (b->transport != WB_IOT_WSS)
        return wb__asprintf("ssl://%s:%u", b->endpoint, b->port);
    wb__aws_creds cr;
    if (wb__aws_provider_get(b->creds, &cr, detail) != WB_OK)
        return NULL;
    char *uri = wb__iot_wss_url(b->endpoint, b->port, b->region, &cr, time(NULL), detail);
    wb__aws_creds_clear(&cr);
    return uri;
}

/* ---- MQTT: callbacks (Paho's thread) ------------------------------------------ */

static void on_up(iot *b);

static void on_connect_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    on_up(ctx);
}

/* Paho's automatic reconnect succeeded. */
static void on_reconnected(void *ctx, char *cause)
{
    (void)cause;
    on_up(ctx);
}

static void on_up(iot *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->connected) { /* both callbacks for one connection */
        pthread_mutex_unlock(&b->lock);
        return;
    }
    b->connecting = false;
    b->connected = true;
    if (b->ever_connected)
        b->st.reconnects++;
    b->ever_connected = true;
    b->attempt = 0;
    /* messages handed before the loss go again (at least once) */
    for (outmsg *m = b->head; m; m = m->next)
        m->handed = false;
    b->handed = 0;
    /* subscriptions renewed (the session may have expired meanwhile) */
    size_t n = 0;
    for (sub *s = b->subs; s; s = s->next)
        n++;
    char **filters = n ? calloc(n, sizeof *filters) : NULL;
    int *qos = n ? calloc(n, sizeof *qos) : NULL;
    size_t k = 0;
    for (sub *s = b->subs; s && filters && qos; s = s->next, k++) {
        filters[k] = wb__strdup(s->filter);
        qos[k] = s->qos;
    }
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < k; i++) {
        int rc = filters[i] ? MQTTAsync_subscribe(b->client, filters[i], qos[i], NULL) : -1;
        if (rc != MQTTASYNC_SUCCESS)
            wb__log(WB_LOG_WARN, "broker", "renewing the subscription %s failed (%d)",
                    filters[i] ? filters[i] : "?", rc);
        free(filters[i]);
    }
    free(filters);
    free(qos);
    in_cb = b;
    wb__broker_connection(b->core, true, NULL);
    in_cb = NULL;
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData *r)
{
    iot *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->connecting = false;
    b->initial_failed = true;
    free(b->last_failure);
    b->last_failure =
        wb__asprintf("connecting to %s: %s (code %d)%s%s", b->endpoint,
                     r && r->message ? r->message : "refused or unreachable", r ? r->code : 0,
                     b->tls_error ? "; TLS: " : "", b->tls_error ? b->tls_error : "");
    /* 4 and 5: CONNACK "bad user name or password" and "not authorized" */
    if (r && (r->code == 4 || r->code == 5))
        b->auth_refused = true;
    /* at least a second: Paho finishes the failed attempt meanwhile */
    unsigned delay = wb__backoff_ms(b->attempt++, b->rmin, b->rmax);
    b->next_attempt_ms = wb__now_ms() + (delay < 1000 ? 1000 : delay);
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
}

static void on_connection_lost(void *ctx, char *cause)
{
    iot *b = ctx;
    pthread_mutex_lock(&b->lock);
    bool was = b->connected;
    b->connected = false;
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
    if (was) {
        in_cb = b;
        wb__broker_connection(b->core, false, cause ? cause : "connection lost");
        in_cb = NULL;
    }
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    iot *b = ctx;
    char *t = topic_len > 0 ? wb__strndup(topic, (size_t)topic_len) : NULL;
    wb_message msg = {t ? t : topic, m->payload, (size_t)m->payloadlen, m->qos, m->retained != 0};
    in_cb = b;
    wb__broker_deliver(b->core, &msg);
    in_cb = NULL;
    pthread_mutex_lock(&b->lock);
    b->st.received++;
    pthread_mutex_unlock(&b->lock);
    free(t);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* What a Paho callback gets: the message by sequence number, never by
 * pointer (an earlier handing's late answer may come after it is freed). */
typedef struct sendctx {
    iot *b;
    uint64_t seq;
    unsigned gen;
    /* copies for give(), in the same allocation: the outbox entry itself may
     * be freed by a late answer to an earlier handing while give() runs */
    char *topic;
    void *payload;
    size_t len;
    int qos;
    char data[];
} sendctx;

/* The outbox entry with this sequence number, or NULL (acknowledged). */
static outmsg *find_seq(iot *b, uint64_t seq)
{
    for (outmsg *m = b->head; m && m->seq <= seq; m = m->next) {
        if (m->seq == seq)
            return m;
    }
    return NULL;
}

static void unlink_msg(iot *b, outmsg *m)
{
    outmsg **pp = &b->head, *prev = NULL;
    while (*pp && *pp != m) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = m->next;
    if (b->tail == m)
        b->tail = prev;
    b->queued--;
}

static void on_sent(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    sendctx *s = ctx;
    iot *b = s->b;
    pthread_mutex_lock(&b->lock);
    outmsg *m = find_seq(b, s->seq);
    if (m) { /* whichever handing it was, IoT Core has it */
        if (m->handed)
            b->handed--;
        unlink_msg(b, m);
        b->st.acknowledged++;
        free(m);
    }
    /* one wake-up per acknowledgement, for whom it concerns: the pump when
     * a message waits for the window, flush when the outbox is empty */
    if (b->queued > b->handed)
        pthread_cond_signal(&b->pump_cond);
    if (b->queued == 0)
        pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    free(s);
}

static void on_send_failed(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    sendctx *s = ctx;
    iot *b = s->b;
    pthread_mutex_lock(&b->lock);
    outmsg *m = find_seq(b, s->seq);
    if (m && m->handed && m->gen == s->gen) { /* hand it again */
        m->handed = false;
        b->handed--;
    }
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
    free(s);
}

static void on_op_ok(void *ctx, MQTTAsync_successData *r)
{
    iot *b = ctx;
    pthread_mutex_lock(&b->lock);
    /* a SUBACK of 0x80 is a refusal */
    b->op_state = r && r->alt.qos == 0x80 ? 3 : 2;
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
}

static void on_op_fail(void *ctx, MQTTAsync_failureData *r)
{
    (void)r;
    iot *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->op_state = 3;
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
}

/* ---- MQTT: the pump thread ---------------------------------------------------- */

/* OpenSSL's own words about a failed handshake (Paho's thread): kept, so
 * that a refused certificate or a wrong name is reported as such. */
static int on_ssl_error(const char *str, size_t len, void *ctx)
{
    iot *b = ctx;
    while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
        len--;
    pthread_mutex_lock(&b->lock);
    free(b->tls_error);
    b->tls_error = wb__strndup(str, len);
    pthread_mutex_unlock(&b->lock);
    return 1;
}

/* One connection attempt; called without b->lock. */
static void start_connect(iot *b)
{
    char *d = NULL;
    char *uri = server_uri(b, &d);
    int rc = MQTTASYNC_FAILURE;
    if (uri) {
        MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
        ssl.trustStore = b->ca;
        ssl.keyStore = b->cert;
        ssl.privateKey = b->key;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        ssl.disableDefaultTrustStore = 1;
        ssl.ssl_error_cb = on_ssl_error;
        ssl.ssl_error_context = b;
        if (b->transport == WB_IOT_MQTTS_ALPN) {
            ssl.protos = (const unsigned char *)ALPN_MQTT;
            ssl.protos_len = (unsigned)strlen(ALPN_MQTT);
        }
        MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
        co.keepAliveInterval = (int)b->keepalive_s;
        /* A clean session: with cleansession=0, Paho 1.3.12 (Debian 12)
         * resending a persistent session's publishes after a loss read a
         * topic its other thread had freed (a use-after-free inside Paho,
         * 1 run in 3 under ASan when the broker is killed mid-stream). The
         * outbox gives at-least-once without it and subscriptions are
         * renewed after every connection; what is lost is IoT Core keeping
         * QoS 1 messages for the server while it is away, which the server
         * does not use (worker messages reach it through SQS). */
        co.cleansession = 1;
        co.maxInflight = IOT_WINDOW;
        co.connectTimeout = 10;
        co.ssl = &ssl;
        if (b->relay)
            co.httpsProxy = wb__relay_proxy(b->relay);
        co.onSuccess = on_connect_ok;
        co.onFailure = on_connect_fail;
        co.context = b;
        char *uris[1] = {uri};
        if (b->transport == WB_IOT_WSS) {
            co.serverURIcount = 1;
            co.serverURIs = uris;
        }
        co.MQTTVersion = MQTTVERSION_3_1_1;
        /* Paho reconnects by itself after a loss (its backoff doubles from
         * min to max); driving reconnects from here, with connect calls
         * racing Paho's own clean-up of the failed attempt, corrupted its
         * memory (seen under ASan) */
        co.automaticReconnect = 1;
        co.minRetryInterval = (int)(b->rmin < 1000 ? 1 : b->rmin / 1000);
        co.maxRetryInterval = (int)(b->rmax < 1000 ? 1 : b->rmax / 1000);
        rc = MQTTAsync_connect(b->client, &co);
        free(uri);
    }
    if (rc == MQTTASYNC_SUCCESS)
        return;
    pthread_mutex_lock(&b->lock);
    b->connecting = false;
    free(b->last_failure);
    b->last_failure =
        d ? d : wb__asprintf("connecting to %s: Paho refused to start (%d)", b->endpoint, rc);
    b->next_attempt_ms = wb__now_ms() + wb__backoff_ms(b->attempt++, b->rmin, b->rmax);
    pthread_mutex_unlock(&b->lock);
}

/* Picks the queued messages that the window and the rate let go now, and
 * marks them handed. Lock held. */
static size_t pick(iot *b, sendctx **out, size_t max)
{
    uint64_t now = wb__now_ms();
    double dt = (double)(now - b->tokens_at_ms) / 1000.0;
    b->tokens = b->tokens + dt * iot_rate > iot_rate ? iot_rate : b->tokens + dt * iot_rate;
    b->byte_tokens = b->byte_tokens + dt * iot_byte_rate > iot_byte_rate
                         ? iot_byte_rate
                         : b->byte_tokens + dt * iot_byte_rate;
    b->tokens_at_ms = now;
    size_t n = 0;
    for (outmsg *m = b->head; m && n < max && b->handed < IOT_WINDOW && b->tokens >= 1.0;
         m = m->next) {
        if (m->handed)
            continue;
        /* a message larger than what is left waits for the bytes to refill
         * (a full second's worth covers the largest one, 128 KiB) */
        if (b->byte_tokens < (double)m->len)
            break;
        b->byte_tokens -= (double)m->len;
        size_t tl = strlen(m->topic) + 1;
        sendctx *s = malloc(sizeof *s + tl + m->len);
        if (!s)
            break;
        m->gen++;
        *s = (sendctx){b, m->seq, m->gen, s->data, s->data + tl, m->len, m->qos};
        memcpy(s->data, m->topic, tl);
        memcpy(s->data + tl, m->payload, m->len);
        m->handed = true;
        b->handed++;
        b->tokens -= 1.0;
        out[n++] = s;
    }
    return n;
}

/* Gives picked messages to Paho; called without b->lock. The outbox entry
 * cannot be freed meanwhile: only an answer to this handing or a later one
 * frees it, and Paho has not got it yet. */
static void give(iot *b, sendctx **s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        MQTTAsync_message pm = MQTTAsync_message_initializer;
        pm.payload = (void *)s[i]->payload;
        pm.payloadlen = (int)s[i]->len;
        pm.qos = s[i]->qos;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = on_sent;
        ro.onFailure = on_send_failed;
        ro.context = s[i];
        /* Paho copies topic and payload; s[i] itself lives on as the
         * callback's context */
        int rc = MQTTAsync_sendMessage(b->client, s[i]->topic, &pm, &ro);
        if (rc != MQTTASYNC_SUCCESS) {
            pthread_mutex_lock(&b->lock);
            for (size_t j = i; j < n; j++) {
                outmsg *m = find_seq(b, s[j]->seq);
                if (m && m->handed && m->gen == s[j]->gen) {
                    m->handed = false;
                    b->handed--;
                }
                free(s[j]);
            }
            pthread_mutex_unlock(&b->lock);
            return; /* again on the pump's next round */
        }
    }
}

/* Hands what the window and the rate allow to Paho, in order. Called with
 * b->lock held; returns with it held. One thread gives at a time: a
 * publisher that finds another giving leaves its message to that one, which
 * picks again before it stops. */
static void drain(iot *b)
{
    sendctx *batch[IOT_WINDOW];
    while (b->connected && !b->giving && b->queued > b->handed) {
        size_t n = pick(b, batch, IOT_WINDOW);
        if (!n)
            return;
        b->giving = true;
        pthread_mutex_unlock(&b->lock);
        give(b, batch, n);
        pthread_mutex_lock(&b->lock);
        b->giving = false;
    }
}

static void *pump_main(void *arg)
{
    iot *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->stop) {
        uint64_t now = wb__now_ms();
        unsigned wait = 1000;
        bool issue = !b->connect_issued || (b->initial_failed && !b->ever_connected);
        if (b->want && issue && !b->connected && !b->connecting && !b->auth_refused) {
            if (now >= b->next_attempt_ms) {
                b->connect_issued = true;
                b->initial_failed = false;
                b->connecting = true;
                pthread_mutex_unlock(&b->lock);
                start_connect(b);
                pthread_mutex_lock(&b->lock);
                continue;
            }
            wait = (unsigned)(b->next_attempt_ms - now);
        }
        if (b->connected) {
            /* acknowledgements open the window; the rate refills */
            drain(b);
            if (b->queued > b->handed && b->handed < IOT_WINDOW)
                wait = 10; /* the rate's next token */
        }
        wb__cond_wait_ms(&b->pump_cond, &b->lock, wait ? wait : 1);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* ---- operations -------------------------------------------------------------- */

static wb_err iot_open(void *priv, const wb_config *cfg, const wb_broker_opts *opts,
                       wb__broker_core *core, char **detail)
{
    iot *b = priv;
    b->core = core;
    const wb__iotcore_view *v = wb__config_iotcore(cfg);
    b->transport = v->transport;
    b->endpoint = wb__strdup(v->endpoint);
    b->region = wb__strdup(v->region ? v->region : "us-east-1");
    b->client_id = wb__strdup(opts->client_id);
    b->keepalive_s = opts->keepalive_s ? opts->keepalive_s : 1200;
    b->rmin = opts->reconnect_min_ms ? opts->reconnect_min_ms : 100;
    b->rmax = opts->reconnect_max_ms ? opts->reconnect_max_ms : 30000;
    b->max_queued = opts->max_queued ? opts->max_queued : 100000;
    const char *ca = v->ca_file, *cert = v->cert_file, *key = v->key_file;
    b->ca = ca ? wb__strdup(ca) : NULL;
    b->cert = cert ? wb__strdup(cert) : NULL;
    b->key = key ? wb__strdup(key) : NULL;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_cond_init(&b->pump_cond, NULL);
    pthread_mutex_init(&b->http_lock, NULL);
    if (!b->endpoint || !b->region || !b->client_id || (ca && !b->ca) || (cert && !b->cert) ||
        (key && !b->key))
        return WB_ERR_NO_MEMORY;
    wb_err err = check_session_limits(b, detail);
    if (err)
        return err;
    const char *to = v->connect_host;
    b->port = b->transport == WB_IOT_MQTTS ? 8883u : 443u;
    if (to) {
        unsigned port = v->connect_port;
        b->connect_to = wb__asprintf("%s:443:%s:%u", b->endpoint, to, port);
        /* MQTT: Paho goes through the relay, an HTTP CONNECT proxy that
         * dials the override's address and port; TLS still checks the
         * endpoint's name, which the URI keeps */
        b->dial_host = wb__strdup(to);
        b->dial_port = port;
        if (!b->dial_host)
            return WB_ERR_NO_MEMORY;
        if (mqtt(b)) {
            err = wb__relay_start(b->endpoint, to, port, &b->relay, detail);
            if (err)
                return err;
        }
        wb__log(WB_LOG_WARN, "broker", "MQTT_BROKER_IOTCORE_CONNECT_TO: %s goes to %s:%u",
                b->endpoint, to, port);
    }
    if (b->transport == WB_IOT_HTTPS || b->transport == WB_IOT_WSS) {
        b->creds = wb__aws_provider_new(b->region);
        if (!b->creds)
            return WB_ERR_NO_MEMORY;
    }
    if (!mqtt(b)) {
        b->http = wb__http_new();
        return b->http ? WB_OK : WB_ERR_NO_MEMORY;
    }
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer;
    cro.sendWhileDisconnected = 0;
    /* never reached: Paho is handed at most IOT_WINDOW messages */
    cro.maxBufferedMessages = (int)IOT_WINDOW * 2;
    cro.MQTTVersion = MQTTVERSION_3_1_1;
    /* mqtts and mqtts-alpn: the URI is given once, here. Passing it again
     * with each connect (serverURIs) let Paho free it while its reconnect
     * still read it (a use-after-free inside Paho, seen under ASan when the
     * broker is killed). wss must pass a freshly signed URL each time. */
    char *uri = wb__asprintf("ssl://%s:%u", b->endpoint, b->port);
    int rc = uri ? MQTTAsync_createWithOptions(&b->client, uri, b->client_id,
                                               MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro)
                 : MQTTASYNC_FAILURE;
    free(uri);
    if (rc != MQTTASYNC_SUCCESS) {
        *detail = wb__asprintf("Paho could not create a client for %s (%d)", b->endpoint, rc);
        return WB_ERR_BACKEND;
    }
    MQTTAsync_setCallbacks(b->client, b, on_connection_lost, on_message, NULL);
    MQTTAsync_setConnected(b->client, b, on_reconnected);
    return WB_OK;
}

/* Why a TLS connection to IoT Core fails, in OpenSSL's words: the same
 * handshake as Paho's (CA, client certificate, SNI, host name), made once
 * here because Paho reports only "TCP/TLS connect failure". NULL when the
 * handshake succeeds or the address cannot be reached at all. */
static char *diagnose_tls(const iot *b)
{
    if (b->transport == WB_IOT_WSS)
        return NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", b->dial_host ? b->dial_port : b->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(b->dial_host ? b->dial_host : b->endpoint, port, &hints, &ai) != 0 || !ai)
        return NULL;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    bool up = fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    freeaddrinfo(ai);
    if (!up) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    char *why = NULL;
    ERR_clear_error();
    if (ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
        SSL_CTX_load_verify_locations(ctx, b->ca, NULL) == 1 &&
        (!b->cert || (SSL_CTX_use_certificate_chain_file(ctx, b->cert) == 1 &&
                      SSL_CTX_use_PrivateKey_file(ctx, b->key, SSL_FILETYPE_PEM) == 1))) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
    }
    if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_set_tlsext_host_name(ssl, b->endpoint) == 1 &&
        SSL_set1_host(ssl, b->endpoint) == 1) {
        if (b->transport == WB_IOT_MQTTS_ALPN)
            SSL_set_alpn_protos(ssl, (const unsigned char *)ALPN_MQTT, (unsigned)strlen(ALPN_MQTT));
        int rc = SSL_connect(ssl);
        long vr = SSL_get_verify_result(ssl);
        if (rc == 1) {
            /* the server may refuse our certificate only after the
             * handshake (TLS 1.3): read its alert */
            char c;
            if (SSL_read(ssl, &c, 1) <= 0 && ERR_peek_error()) {
                char e[256];
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
                why = wb__asprintf("IoT Core refused this client: %s", e);
            }
        } else if (vr != X509_V_OK) {
            why = wb__asprintf("the certificate of %s is not accepted: %s", b->endpoint,
                               X509_verify_cert_error_string(vr));
        } else {
            char e[256] = "handshake failed";
            if (ERR_peek_error())
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
            why = wb__asprintf("TLS with %s failed: %s", b->endpoint, e);
        }
    }
    if (ssl)
        SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    ERR_clear_error();
    return why;
}

static wb_err iot_connect(void *priv, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    if (!mqtt(b)) {
        /* nothing to keep open: check that credentials can be found */
        wb__aws_creds cr;
        wb_err err = wb__aws_provider_get(b->creds, &cr, detail);
        wb__aws_creds_clear(&cr);
        if (!err) {
            pthread_mutex_lock(&b->lock);
            b->connected = true;
            pthread_mutex_unlock(&b->lock);
        }
        return err;
    }
    pthread_mutex_lock(&b->lock);
    if (b->want) {
        pthread_mutex_unlock(&b->lock);
        *detail = wb__strdup("already connected (or connecting)");
        return WB_ERR_STATE;
    }
    b->want = true;
    b->stop = false;
    b->auth_refused = false;
    b->next_attempt_ms = 0;
    if (!b->pump_running) {
        if (pthread_create(&b->pump, NULL, pump_main, b) != 0) {
            pthread_mutex_unlock(&b->lock);
            *detail = wb__strdup("cannot start the iotcore thread");
            return WB_ERR_NO_MEMORY;
        }
        b->pump_running = true;
    }
    wake_all(b);
    uint64_t deadline = wb__now_ms() + timeout_ms;
    while (!b->connected && !b->auth_refused && wb__now_ms() < deadline)
        wb__cond_wait_ms(&b->cond, &b->lock, (unsigned)(deadline - wb__now_ms()));
    wb_err err = b->connected ? WB_OK : b->auth_refused ? WB_ERR_AUTH_REFUSED : WB_ERR_TIMEOUT;
    char *last = err && b->last_failure ? wb__strdup(b->last_failure) : NULL;
    bool tls_known = b->tls_error != NULL;
    pthread_mutex_unlock(&b->lock);
    if (err) {
        char *why = !tls_known && last ? diagnose_tls(b) : NULL;
        *detail = wb__asprintf("%s%s%s%s", last ? last : "no connection", why ? "; " : "",
                               why ? why : "", err == WB_ERR_TIMEOUT ? " (still retrying)" : "");
        free(why);
    }
    free(last);
    return err;
}

static wb_err iot_publish(void *priv, const char *topic, const void *payload, size_t len, int qos,
                          char **detail)
{
    iot *b = priv;
    if (!mqtt(b)) {
        wb_err err = https_publish(b, topic, payload, len, qos, detail);
        pthread_mutex_lock(&b->lock);
        b->st.published += err == WB_OK;
        b->st.acknowledged += err == WB_OK;
        pthread_mutex_unlock(&b->lock);
        return err;
    }
    size_t tl = strlen(topic) + 1;
    outmsg *m = malloc(sizeof *m + tl + len);
    if (!m)
        return WB_ERR_NO_MEMORY;
    *m = (outmsg){.topic = m->data, .payload = m->data + tl, .len = len, .qos = qos};
    memcpy(m->data, topic, tl);
    if (len)
        memcpy(m->data + tl, payload, len);
    pthread_mutex_lock(&b->lock);
    wb_err err = WB_OK;
    if (!b->want) {
        err = WB_ERR_STATE;
        *detail = wb__strdup("not connected: call wb_broker_connect() first");
    } else if (qos == 0 && !b->connected) {
        err = WB_ERR_CONNECTION_LOST;
        *detail = wb__strdup("QoS 0 while disconnected from IoT Core");
    } else if (b->queued >= b->max_queued) {
        err = WB_ERR_BUSY;
        *detail = wb__asprintf("%zu messages wait for IoT Core (max_queued)", b->queued);
    }
    if (!err) {
        m->seq = b->next_seq++;
        if (b->tail)
            b->tail->next = m;
        else
            b->head = m;
        b->tail = m;
        b->queued++;
        b->st.published++;
        drain(b); /* hands it to Paho now when the window and the rate allow */
    }
    pthread_mutex_unlock(&b->lock);
    if (err)
        free(m);
    return err;
}

/* Subscribe or unsubscribe, waiting for IoT Core's answer. Called without
 * b->lock; one at a time (the core serializes them per handle). */
static wb_err sub_op(iot *b, const char *filter, int qos, bool unsub, unsigned timeout_ms,
                     char **detail)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_op_ok;
    ro.onFailure = on_op_fail;
    ro.context = b;
    pthread_mutex_lock(&b->lock);
    b->op_state = 1;
    pthread_mutex_unlock(&b->lock);
    int rc = unsub ? MQTTAsync_unsubscribe(b->client, filter, &ro)
                   : MQTTAsync_subscribe(b->client, filter, qos, &ro);
    pthread_mutex_lock(&b->lock);
    if (rc != MQTTASYNC_SUCCESS) {
        b->op_state = 0;
        pthread_mutex_unlock(&b->lock);
        *detail = wb__asprintf("%s %s: Paho refused (%d)", unsub ? "unsubscribe" : "subscribe",
                               filter, rc);
        return WB_ERR_CONNECTION_LOST;
    }
    uint64_t deadline = wb__now_ms() + timeout_ms;
    while (b->op_state == 1 && wb__now_ms() < deadline)
        wb__cond_wait_ms(&b->cond, &b->lock, (unsigned)(deadline - wb__now_ms()));
    int st = b->op_state;
    b->op_state = 0;
    pthread_mutex_unlock(&b->lock);
    if (st == 2)
        return WB_OK;
    *detail = wb__asprintf("%s %s: %s", unsub ? "unsubscribe" : "subscribe", filter,
                           st == 3 ? "refused by IoT Core (its policy does not allow it)"
                                   : "no answer in time");
    return st == 3 ? WB_ERR_AUTH_REFUSED : WB_ERR_TIMEOUT;
}

static wb_err iot_subscribe(void *priv, const char *filter, int qos, unsigned timeout_ms,
                            char **detail)
{
    iot *b = priv;
    if (!mqtt(b)) {
        *detail = wb__strdup("MQTT_BROKER_IOTCORE_TRANSPORT=https publishes only; worker "
                             "messages reach the server through SQS (the iot queue)");
        return WB_ERR_NOT_SUPPORTED;
    }
    sub *s = calloc(1, sizeof *s);
    if (!s || !(s->filter = wb__strdup(filter))) {
        free(s);
        return WB_ERR_NO_MEMORY;
    }
    s->qos = qos;
    pthread_mutex_lock(&b->lock);
    bool connected = b->connected;
    pthread_mutex_unlock(&b->lock);
    wb_err err = connected ? sub_op(b, filter, qos, false, timeout_ms, detail) : WB_OK;
    pthread_mutex_lock(&b->lock);
    if (!err) {
        s->next = b->subs;
        b->subs = s;
    }
    pthread_mutex_unlock(&b->lock);
    if (err) {
        free(s->filter);
        free(s);
    }
    return err;
}

static wb_err iot_unsubscribe(void *priv, const char *filter, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    if (!mqtt(b))
        return WB_ERR_NOT_SUPPORTED;
    pthread_mutex_lock(&b->lock);
    for (sub **pp = &b->subs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->filter, filter) == 0) {
            sub *s = *pp;
            *pp = s->next;
            free(s->filter);
            free(s);
            break;
        }
    }
    bool connected = b->connected;
    pthread_mutex_unlock(&b->lock);
    return connected ? sub_op(b, filter, 0, true, timeout_ms, detail) : WB_OK;
}

static bool iot_in_callback(void *priv)
{
    return in_cb == priv;
}

static wb_err iot_flush(void *priv, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    pthread_mutex_lock(&b->lock);
    uint64_t deadline = wb__now_ms() + timeout_ms;
    while (b->queued && wb__now_ms() < deadline)
        wb__cond_wait_ms(&b->cond, &b->lock, (unsigned)(deadline - wb__now_ms()));
    size_t left = b->queued;
    pthread_mutex_unlock(&b->lock);
    if (left) {
        *detail = wb__asprintf("%zu messages not yet acknowledged by IoT Core", left);
        return WB_ERR_TIMEOUT;
    }
    return WB_OK;
}

static void drop_outbox(iot *b)
{
    while (b->head) {
        outmsg *m = b->head;
        b->head = m->next;
        free(m);
    }
    b->tail = NULL;
    b->queued = b->handed = 0;
}

static wb_err iot_disconnect(void *priv, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    wb_err err = mqtt(b) ? iot_flush(b, timeout_ms, detail) : WB_OK;
    pthread_mutex_lock(&b->lock);
    b->want = false;
    b->stop = true;
    wake_all(b);
    bool running = b->pump_running;
    b->pump_running = false;
    pthread_mutex_unlock(&b->lock);
    if (running)
        pthread_join(b->pump, NULL);
    if (mqtt(b) && MQTTAsync_isConnected(b->client)) {
        MQTTAsync_disconnectOptions dopts = MQTTAsync_disconnectOptions_initializer;
        dopts.timeout = 1000;
        MQTTAsync_disconnect(b->client, &dopts);
        for (int i = 0; i < 100 && MQTTAsync_isConnected(b->client); i++) {
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
    }
    pthread_mutex_lock(&b->lock);
    bool was = b->connected;
    b->connected = false;
    b->connect_issued = false;
    drop_outbox(b);
    pthread_mutex_unlock(&b->lock);
    if (was && mqtt(b))
        wb__broker_connection(b->core, false, "disconnected");
    return err;
}

static void iot_stats(void *priv, wb_broker_stats *out)
{
    iot *b = priv;
    pthread_mutex_lock(&b->lock);
    *out = b->st;
    out->queued = b->queued;
    out->connected = b->connected;
    pthread_mutex_unlock(&b->lock);
}

static void iot_close(void *priv)
{
    iot *b = priv;
    char *d = NULL;
    if (b->pump_running)
        iot_disconnect(b, 0, &d);
    free(d);
    if (b->client)
        MQTTAsync_destroy(&b->client);
    wb__relay_stop(b->relay);
    drop_outbox(b);
    while (b->subs) {
        sub *s = b->subs;
        b->subs = s->next;
        free(s->filter);
        free(s);
    }
    wb__http_free(b->http);
    wb__aws_provider_free(b->creds);
    free(b->endpoint);
    free(b->region);
    free(b->client_id);
    free(b->cert);
    free(b->key);
    free(b->ca);
    free(b->connect_to);
    free(b->dial_host);
    free(b->last_failure);
    free(b->tls_error);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->pump_cond);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->http_lock);
}

const wb__broker_ops wb__iotcore_broker_ops = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "iotcore",
    /* no persistent session: see start_connect() */
    .caps = WB__BROKER_CAP_QOS1 | WB__BROKER_CAP_SUBSCRIBE,
    .priv_size = sizeof(iot),
    .max_payload = IOT_MAX_PAYLOAD,
    .max_topic = IOT_MAX_TOPIC,
    .max_slashes = IOT_MAX_SLASHES,
    .open = iot_open,
    .connect = iot_connect,
    .publish = iot_publish,
    .disconnect = iot_disconnect,
    .close = iot_close,
    .subscribe = iot_subscribe,
    .unsubscribe = iot_unsubscribe,
    .flush = iot_flush,
    .stats = iot_stats,
    .in_callback = iot_in_callback,
};
