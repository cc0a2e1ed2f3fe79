/* IoT Core over MQTT (MQTT_BROKER_IOTCORE_TRANSPORT=mqtts, mqtts-alpn or
 * wss): Paho MQTT C (MQTTAsync) over OpenSSL, TLS 1.2+, SNI and host-name
 * verification on. wss signs its URL with SigV4 (iotdevicegateway) again
 * before every connection attempt.
 *
 * IoT Core's per-connection rate (100 publishes/s) and in-flight limit
 * (100) are met by queueing: the outbox is the session layer's
 * (src/mqtt/session.c), and Paho is never handed more than the window, so
 * its command buffer never reaches maxBufferedMessages (where
 * MQTTAsync_sendMessage fails with -12, connected or not). QoS 1 messages
 * stay in the outbox until IoT Core acknowledges them and are handed again
 * after a reconnect; the MQTT session is clean (see start_connect() for
 * why). */
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

#include "connect_to.h"
#include "iotcore.h"
#include "iotsign.h"
#include "session.h"
#include "wb_internal.h"

#define IOT_WINDOW    100u           /* IoT Core's unacknowledged in-flight limit */
#define IOT_RATE      100u           /* publishes per second per connection */
#define IOT_BYTE_RATE (512u * 1024u) /* bytes per second per connection */
#define ALPN_MQTT     "\x0ex-amzn-mqtt-ca"

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

typedef struct iot {
    wb__iot_base base;
    wb__relay *relay; /* with MQTT_BROKER_IOTCORE_CONNECT_TO */

    MQTTAsync client;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_cond_t pump_cond; /* the pump waits on this one */
    bool lock_ready;
    pthread_t pump;
    bool pump_running, stop, want, connected, connecting, auth_refused;
    bool connect_issued; /* Paho owns reconnecting from then on */
    bool initial_failed; /* the first connect failed: issue it again */
    char *last_failure;
    char *tls_error; /* OpenSSL's last complaint */
    wb__session s;   /* the outbox, subscriptions, backoff and counters */
    bool giving;     /* a thread is handing picked messages to Paho (drain()) */
    double tokens, byte_tokens;
    uint64_t tokens_at_ms;
    uint64_t received;
    uint64_t down_since_ms; /* when the connection was lost, for the log */
    /* a pending subscribe/unsubscribe answer */
    int op_state; /* 0 idle, 1 waiting, 2 ok, 3 refused */
} iot;

/* State changed: everyone who waits re-checks (the pump has its own
 * condition so that acknowledgements wake only it). Lock held. */
static void wake_all(iot *b)
{
    pthread_cond_broadcast(&b->cond);
    pthread_cond_broadcast(&b->pump_cond);
}

/* Set while this thread runs one of our Paho callbacks. Lock order: no Paho
 * call is ever made while b->lock is held (Paho may hold its own mutex while
 * it calls us). */
static _Thread_local const iot *in_cb;

/* ---- MQTT: URIs and TLS ------------------------------------------------------ */

/* The URI of one connection attempt (wss: signed now). */
static char *server_uri(iot *b, char **detail)
{
    if (b->base.transport != WB_IOT_WSS)
        return wb__asprintf("ssl://%s:%u", b->base.endpoint, b->base.port);
    wb__aws_creds cr;
    if (wb__aws_provider_get(b->base.creds, &cr, detail) != WB_OK)
        return NULL;
    char *uri =
        wb__iot_wss_url(b->base.endpoint, b->base.port, b->base.region, &cr, time(NULL), detail);
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
    if (wb__session_connected(&b->s))
        wb__log(WB_LOG_WARN, "broker", "reconnected to %s after %.1f s without a connection",
                b->base.endpoint, (double)(wb__now_ms() - b->down_since_ms) / 1000.0);
    /* the session is clean: messages handed before the loss go again (at
     * least once), and subscriptions are renewed */
    wb__session_rehand_all(&b->s);
    char **filters = NULL;
    int *qos = NULL;
    size_t k = wb__session_subs_copy(&b->s, &filters, &qos, "broker");
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < k; i++) {
        int rc = MQTTAsync_subscribe(b->client, filters[i], qos[i], NULL);
        if (rc != MQTTASYNC_SUCCESS)
            wb__log(WB_LOG_WARN, "broker", "renewing the subscription %s failed (%d)", filters[i],
                    rc);
    }
    wb__session_subs_free(filters, qos, k);
    in_cb = b;
    wb__broker_connection(b->base.core, true, NULL);
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
        wb__asprintf("connecting to %s: %s (code %d)%s%s", b->base.endpoint,
                     r && r->message ? r->message : "refused or unreachable", r ? r->code : 0,
                     b->tls_error ? "; TLS: " : "", b->tls_error ? b->tls_error : "");
    /* 4 and 5: CONNACK "bad user name or password" and "not authorized" */
    if (r && (r->code == 4 || r->code == 5))
        b->auth_refused = true;
    /* at least a second: Paho finishes the failed attempt meanwhile */
    if (wb__session_backoff(&b->s) < 1000)
        b->s.next_attempt_ms = wb__now_ms() + 1000;
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
}

static void on_connection_lost(void *ctx, char *cause)
{
    iot *b = ctx;
    pthread_mutex_lock(&b->lock);
    bool was = b->connected;
    b->connected = false;
    if (was)
        b->down_since_ms = wb__now_ms();
    wake_all(b);
    pthread_mutex_unlock(&b->lock);
    if (was) {
        wb__log(WB_LOG_WARN, "broker", "connection to %s lost: %s; reconnecting", b->base.endpoint,
                cause ? cause : "no reason given");
        in_cb = b;
        wb__broker_connection(b->base.core, false, cause ? cause : "connection lost");
        in_cb = NULL;
    }
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    iot *b = ctx;
    char *t = topic_len > 0 ? wb__strndup(topic, (size_t)topic_len) : NULL;
    wb_message msg = {t ? t : topic, m->payload, (size_t)m->payloadlen, m->qos, m->retained != 0};
    in_cb = b;
    wb__broker_deliver(b->base.core, &msg);
    in_cb = NULL;
    pthread_mutex_lock(&b->lock);
    b->received++;
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

static void on_sent(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    sendctx *s = ctx;
    iot *b = s->b;
    pthread_mutex_lock(&b->lock);
    wb__outmsg *m = wb__session_find_seq(&b->s, s->seq);
    if (m) /* whichever handing it was, IoT Core has it */
        wb__session_done(&b->s, m, true);
    /* one wake-up per acknowledgement, for whom it concerns: the pump when
     * a message waits for the window, flush when the outbox is empty */
    if (b->s.queued > b->s.handed)
        pthread_cond_signal(&b->pump_cond);
    if (b->s.queued == 0)
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
    wb__session_unhand(&b->s, s->seq, s->gen); /* hand it again */
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
        ssl.trustStore = b->base.ca;
        ssl.keyStore = b->base.cert;
        ssl.privateKey = b->base.key;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        ssl.disableDefaultTrustStore = 1;
        ssl.ssl_error_cb = on_ssl_error;
        ssl.ssl_error_context = b;
        if (b->base.transport == WB_IOT_MQTTS_ALPN) {
            ssl.protos = (const unsigned char *)ALPN_MQTT;
            ssl.protos_len = (unsigned)strlen(ALPN_MQTT);
        }
        MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
        co.keepAliveInterval = (int)b->base.keepalive_s;
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
        if (b->base.transport == WB_IOT_WSS) {
            co.serverURIcount = 1;
            co.serverURIs = uris;
        }
        co.MQTTVersion = MQTTVERSION_3_1_1;
        /* Paho reconnects by itself after a loss (its backoff doubles from
         * min to max); driving reconnects from here, with connect calls
         * racing Paho's own clean-up of the failed attempt, corrupted its
         * memory (seen under ASan) */
        co.automaticReconnect = 1;
        co.minRetryInterval =
            (int)(b->base.reconnect_min_ms < 1000 ? 1 : b->base.reconnect_min_ms / 1000);
        co.maxRetryInterval =
            (int)(b->base.reconnect_max_ms < 1000 ? 1 : b->base.reconnect_max_ms / 1000);
        rc = MQTTAsync_connect(b->client, &co);
        free(uri);
    }
    if (rc == MQTTASYNC_SUCCESS)
        return;
    pthread_mutex_lock(&b->lock);
    b->connecting = false;
    free(b->last_failure);
    b->last_failure =
        d ? d : wb__asprintf("connecting to %s: Paho refused to start (%d)", b->base.endpoint, rc);
    wb__session_backoff(&b->s);
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
    wb__outmsg *m;
    while (n < max && b->s.handed < IOT_WINDOW && b->tokens >= 1.0 &&
           (m = wb__session_next(&b->s)) != NULL) {
        /* a message larger than what is left waits for the bytes to refill
         * (a full second's worth covers the largest one, 128 KiB) */
        if (b->byte_tokens < (double)m->len)
            break;
        b->byte_tokens -= (double)m->len;
        size_t tl = strlen(m->topic) + 1;
        sendctx *s = malloc(sizeof *s + tl + m->len);
        if (!s)
            break;
        wb__session_handed(&b->s, m);
        *s = (sendctx){b, m->seq, m->gen, s->data, s->data + tl, m->len, m->qos};
        memcpy(s->data, m->topic, tl);
        memcpy(s->data + tl, m->payload, m->len);
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
                wb__session_unhand(&b->s, s[j]->seq, s[j]->gen);
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
    while (b->connected && !b->giving && b->s.queued > b->s.handed) {
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
        bool issue = !b->connect_issued || (b->initial_failed && !b->s.ever_connected);
        if (b->want && issue && !b->connected && !b->connecting && !b->auth_refused) {
            if (now >= b->s.next_attempt_ms) {
                b->connect_issued = true;
                b->initial_failed = false;
                b->connecting = true;
                pthread_mutex_unlock(&b->lock);
                start_connect(b);
                pthread_mutex_lock(&b->lock);
                continue;
            }
            wait = (unsigned)(b->s.next_attempt_ms - now);
        }
        if (b->connected) {
            /* acknowledgements open the window; the rate refills */
            drain(b);
            if (b->s.queued > b->s.handed && b->s.handed < IOT_WINDOW)
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
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_cond_init(&b->pump_cond, NULL);
    b->lock_ready = true;
    wb_err err = wb__iot_base_open(&b->base, cfg, opts, core, detail);
    if (err)
        return err;
    wb__session_init(&b->s, b->base.max_queued, b->base.reconnect_min_ms, b->base.reconnect_max_ms);
    const wb__iotcore_view *v = wb__config_iotcore(cfg);
    if (v->connect_host) {
        /* Paho goes through the relay, an HTTP CONNECT proxy that dials the
         * override's address and port; TLS still checks the endpoint's
         * name, which the URI keeps */
        err =
            wb__relay_start(b->base.endpoint, v->connect_host, v->connect_port, &b->relay, detail);
        if (err)
            return err;
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
    char *uri = wb__asprintf("ssl://%s:%u", b->base.endpoint, b->base.port);
    int rc = uri ? MQTTAsync_createWithOptions(&b->client, uri, b->base.client_id,
                                               MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro)
                 : MQTTASYNC_FAILURE;
    free(uri);
    if (rc != MQTTASYNC_SUCCESS) {
        *detail = wb__asprintf("Paho could not create a client for %s (%d)", b->base.endpoint, rc);
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
    if (b->base.transport == WB_IOT_WSS)
        return NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", b->base.dial_host ? b->base.dial_port : b->base.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(b->base.dial_host ? b->base.dial_host : b->base.endpoint, port, &hints, &ai) !=
            0 ||
        !ai)
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
        SSL_CTX_load_verify_locations(ctx, b->base.ca, NULL) == 1 &&
        (!b->base.cert || (SSL_CTX_use_certificate_chain_file(ctx, b->base.cert) == 1 &&
                           SSL_CTX_use_PrivateKey_file(ctx, b->base.key, SSL_FILETYPE_PEM) == 1))) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
    }
    if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_set_tlsext_host_name(ssl, b->base.endpoint) == 1 &&
        SSL_set1_host(ssl, b->base.endpoint) == 1) {
        if (b->base.transport == WB_IOT_MQTTS_ALPN)
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
            why = wb__asprintf("the certificate of %s is not accepted: %s", b->base.endpoint,
                               X509_verify_cert_error_string(vr));
        } else {
            char e[256] = "handshake failed";
            if (ERR_peek_error())
                ERR_error_string_n(ERR_get_error(), e, sizeof e);
            why = wb__asprintf("TLS with %s failed: %s", b->base.endpoint, e);
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
    pthread_mutex_lock(&b->lock);
    if (b->want) {
        pthread_mutex_unlock(&b->lock);
        *detail = wb__strdup("already connected (or connecting)");
        return WB_ERR_STATE;
    }
    b->want = true;
    b->stop = false;
    b->auth_refused = false;
    b->s.next_attempt_ms = 0;
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
    pthread_mutex_lock(&b->lock);
    wb_err err = WB_OK;
    if (!b->want) {
        err = WB_ERR_STATE;
        *detail = wb__strdup("not connected: call wb_broker_connect() first");
    } else if (qos == 0 && !b->connected) {
        err = WB_ERR_CONNECTION_LOST;
        *detail = wb__strdup("QoS 0 while disconnected from IoT Core");
    } else {
        err = wb__session_enqueue(&b->s, topic, payload, len, qos, "IoT Core", NULL, detail);
    }
    if (!err)
        drain(b); /* hands it to Paho now when the window and the rate allow */
    pthread_mutex_unlock(&b->lock);
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
    pthread_mutex_lock(&b->lock);
    bool connected = b->connected;
    pthread_mutex_unlock(&b->lock);
    wb_err err = connected ? sub_op(b, filter, qos, false, timeout_ms, detail) : WB_OK;
    if (!err) { /* renewed after every connection */
        pthread_mutex_lock(&b->lock);
        err = wb__session_sub_add(&b->s, filter, qos);
        pthread_mutex_unlock(&b->lock);
    }
    return err;
}

static wb_err iot_unsubscribe(void *priv, const char *filter, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    pthread_mutex_lock(&b->lock);
    wb__session_sub_remove(&b->s, filter);
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
    while (b->s.queued && wb__now_ms() < deadline)
        wb__cond_wait_ms(&b->cond, &b->lock, (unsigned)(deadline - wb__now_ms()));
    size_t left = b->s.queued;
    pthread_mutex_unlock(&b->lock);
    if (left) {
        *detail = wb__asprintf("%zu messages not yet acknowledged by IoT Core", left);
        return WB_ERR_TIMEOUT;
    }
    return WB_OK;
}

static wb_err iot_disconnect(void *priv, unsigned timeout_ms, char **detail)
{
    iot *b = priv;
    wb_err err = iot_flush(b, timeout_ms, detail);
    pthread_mutex_lock(&b->lock);
    b->want = false;
    b->stop = true;
    wake_all(b);
    bool running = b->pump_running;
    b->pump_running = false;
    pthread_mutex_unlock(&b->lock);
    if (running)
        pthread_join(b->pump, NULL);
    if (b->client && MQTTAsync_isConnected(b->client)) {
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
    wb__session_clear_outbox(&b->s);
    pthread_mutex_unlock(&b->lock);
    if (was)
        wb__broker_connection(b->base.core, false, "disconnected");
    return err;
}

static void iot_stats(void *priv, wb_broker_stats *out)
{
    iot *b = priv;
    pthread_mutex_lock(&b->lock);
    wb__session_stats(&b->s, out);
    out->received = b->received;
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
    wb__session_free(&b->s);
    wb__iot_base_close(&b->base);
    free(b->last_failure);
    free(b->tls_error);
    if (b->lock_ready) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->pump_cond);
        pthread_cond_destroy(&b->cond);
    }
}

const wb__broker_ops wb__iotcore_mqtt_ops = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "iotcore",
    /* no persistent session: see start_connect() */
    .caps = WB__BROKER_CAP_QOS1 | WB__BROKER_CAP_SUBSCRIBE,
    .priv_size = sizeof(iot),
    .max_payload = WB__IOT_MAX_PAYLOAD,
    .max_topic = WB__IOT_MAX_TOPIC,
    .max_slashes = WB__IOT_MAX_SLASHES,
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
