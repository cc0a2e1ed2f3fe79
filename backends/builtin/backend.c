/* The builtin broker backend: the server's connection to the bundled
 * Mosquitto, through the MQTT engine of mqttc.c. */
#include <stdlib.h>
#include <string.h>

#include "broker_backend.h"
#include "config_views.h"
#include "mqttc.h"
#ifdef WB_HAVE_LIBPQ
#include "replicas.h"
#endif
#include "wb_internal.h"

/* MQTT's own ceiling for a payload */
#define BLTN_MAX_PAYLOAD 268435455u
#define BLTN_MAX_TOPIC   65535u

typedef struct bltn_backend {
    wb__mqttc *client;
    wb__broker_core *core;
    const char *ns;
#ifdef WB_HAVE_LIBPQ
    bltn_replicas *replicas; /* NULL: one replica, no database */
    bool connected_once;     /* publish before connect is refused, routed or not */
#endif
} bltn_backend;

static void bltn_on_message(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                            bool retained)
{
    bltn_backend *be = ctx;
    wb_message m = {topic, payload, len, qos, retained};
    wb__broker_deliver(be->core, &m);
}

static void bltn_on_connection(void *ctx, bool up, const char *reason)
{
    bltn_backend *be = ctx;
    wb__broker_connection(be->core, up, reason);
}

/* Where the server dials its own broker: the listen address, with the
 * wildcard addresses replaced by loopback. */
static const char *bltn_dial_host(const wb__builtin_view *v)
{
    const char *h = v->listen_host;
    if (strcmp(h, "0.0.0.0") == 0)
        return "127.0.0.1";
    if (strcmp(h, "::") == 0)
        return "::1";
    return h;
}

static wb_err bltn_open(void *priv, const wb_config *cfg, const wb_broker_opts *opts,
                        wb__broker_core *core, char **detail)
{
    bltn_backend *be = priv;
    be->core = core;
    const wb__builtin_view *v = wb__config_builtin(cfg);
    const char *host = bltn_dial_host(v);
    bool tls = v->tls;
    char token[WB_PKI_TOKEN_LEN + 1] = "";
    if (!tls) {
        wb_err err = wb_pki_token(v->token_key_file, NULL, token, detail);
        if (err)
            return err;
    }
    bool name_ok = tls && v->cert_file && wb__pki_cert_matches_host(v->cert_file, host) == 1;
    if (tls && !name_ok)
        wb__log(WB_LOG_INFO, "broker",
                "the broker's certificate is not issued for %s: the server's own connection "
                "verifies its chain, not its name",
                host);
    wb__mqttc_opts o = {
        .connect_host = host,
        .tls_name = name_ok ? host : NULL,
        .port = v->listen_port,
        .tls = tls,
        .cafile = v->ca_file,
        .certfile = v->client_cert_file,
        .keyfile = v->client_key_file,
        .username = tls ? NULL : WB_PKI_SERVER_IDENTITY,
        .password = tls ? NULL : token,
        .client_id = opts->client_id,
        .clean_session = false,
        .keepalive_s = opts->keepalive_s,
        .reconnect_min_ms = opts->reconnect_min_ms,
        .reconnect_max_ms = opts->reconnect_max_ms,
        .max_queued = opts->max_queued,
        .on_message = bltn_on_message,
        .on_connection = bltn_on_connection,
        .ctx = be,
        .component = "broker",
    };
    be->ns = v->ns;
    wb_err err = wb__mqttc_new(&o, &be->client, detail);
#ifdef WB_HAVE_LIBPQ
    /* replicas: routing through the database, and deliveries on a
     * connection of their own */
    if (!err && v->replicas)
        err = bltn_replicas_open(v, &o, &be->replicas, detail);
#endif
    memset(token, 0, sizeof token);
    return err;
}

static wb_err bltn_connect(void *priv, unsigned timeout_ms, char **detail)
{
    bltn_backend *be = priv;
    wb_err err = wb__mqttc_connect(be->client, timeout_ms, detail);
#ifdef WB_HAVE_LIBPQ
    if (!err && be->replicas)
        err = bltn_replicas_start(be->replicas, timeout_ms, detail);
    if (!err)
        be->connected_once = true;
#endif
    return err;
}

static wb_err bltn_publish(void *priv, const char *topic, const void *payload, size_t len, int qos,
                           char **detail)
{
    bltn_backend *be = priv;
#ifdef WB_HAVE_LIBPQ
    wb_topic_parts parts;
    if (be->replicas && !be->connected_once) {
        *detail = wb__strdup("not connected yet: call wb_broker_connect() first");
        return WB_ERR_STATE;
    }
    if (be->replicas && wb_topic_parse(topic, be->ns, &parts) == WB_OK &&
        parts.dir == WB_TOPIC_READONLY) {
        bool local = false;
        wb_err err = bltn_replicas_route(be->replicas, topic, parts.pool, parts.worker, payload,
                                         len, qos, &local, detail);
        if (err || !local)
            return err;
    }
#endif
    return wb__mqttc_publish(be->client, topic, payload, len, qos, detail);
}

static wb_err bltn_subscribe(void *priv, const char *filter, int qos, unsigned timeout_ms,
                             char **detail)
{
    bltn_backend *be = priv;
    return wb__mqttc_subscribe(be->client, filter, qos, timeout_ms, detail);
}

static wb_err bltn_unsubscribe(void *priv, const char *filter, unsigned timeout_ms, char **detail)
{
    bltn_backend *be = priv;
    return wb__mqttc_unsubscribe(be->client, filter, timeout_ms, detail);
}

static wb_err bltn_flush(void *priv, unsigned timeout_ms, char **detail)
{
    bltn_backend *be = priv;
    return wb__mqttc_flush(be->client, timeout_ms, detail);
}

static wb_err bltn_disconnect(void *priv, unsigned timeout_ms, char **detail)
{
    bltn_backend *be = priv;
    return wb__mqttc_disconnect(be->client, timeout_ms, detail);
}

static void bltn_stats(void *priv, wb_broker_stats *out)
{
    bltn_backend *be = priv;
    wb__mqttc_broker_stats(be->client, out);
#ifdef WB_HAVE_LIBPQ
    /* a message put in the outbox was accepted, and is kept by the
     * database as a QoS 1 message by the broker */
    if (be->replicas) {
        wb_broker_replica_stats rs = {0};
        bltn_replicas_stats(be->replicas, &rs);
        out->published += rs.routed + rs.pending;
        out->acknowledged += rs.routed + rs.pending;
    }
#endif
}

static bool bltn_in_callback(void *priv)
{
    bltn_backend *be = priv;
    return wb__mqttc_on_io_thread(be->client);
}

#ifdef WB_HAVE_LIBPQ
static bool bltn_replica_stats(void *priv, wb_broker_replica_stats *out)
{
    bltn_backend *be = priv;
    if (!be->replicas)
        return false;
    bltn_replicas_stats(be->replicas, out);
    return true;
}

/* Tests (wb__broker_priv()): a query on the replicas' routing connection,
 * bltn_replicas_route_query(). */
char *wb__bltn_route_query(void *priv, const char *sql);
char *wb__bltn_route_query(void *priv, const char *sql)
{
    bltn_backend *be = priv;
    return be->replicas ? bltn_replicas_route_query(be->replicas, sql) : NULL;
}
#endif

static void bltn_close(void *priv)
{
    bltn_backend *be = priv;
#ifdef WB_HAVE_LIBPQ
    bltn_replicas_close(be->replicas);
#endif
    wb__mqttc_free(be->client);
}

const wb__broker_ops wb__builtin_broker_ops = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "builtin",
    .caps = WB__BROKER_CAP_QOS1 | WB__BROKER_CAP_SUBSCRIBE | WB__BROKER_CAP_PERSISTENT_SESSION,
    .priv_size = sizeof(bltn_backend),
    .max_payload = BLTN_MAX_PAYLOAD,
    .max_topic = BLTN_MAX_TOPIC,
    .max_slashes = 0,
    .open = bltn_open,
    .connect = bltn_connect,
    .publish = bltn_publish,
    .disconnect = bltn_disconnect,
    .close = bltn_close,
    .subscribe = bltn_subscribe,
    .unsubscribe = bltn_unsubscribe,
    .flush = bltn_flush,
    .stats = bltn_stats,
    .in_callback = bltn_in_callback,
#ifdef WB_HAVE_LIBPQ
    .replica_stats = bltn_replica_stats,
#endif
};
