/* The broker interface: argument checks, limits, counters, errors, and
 * dispatch to the backend chosen by the configuration. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "broker_backend.h"
#include "wb_internal.h"

#define DEFAULT_CLIENT_ID "workerbus-server"

struct wb__broker_core {
    wb_broker *owner;
};

struct wb_broker {
    wb__broker_core core;
    const wb__broker_ops *ops;
    void *priv;
    const wb_config *cfg;
    wb_broker_opts opts;
    pthread_mutex_t lock;
    char *async_error;
    atomic_bool connected_once;
    atomic_bool closing;
    atomic_uint_fast64_t refused;
    atomic_uint_fast64_t received;
};

/* ---- backends ----------------------------------------------------------- */

static wb__registry backends = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .kind = "broker",
};

wb_err wb__broker_ops_check(const wb__broker_ops *ops, char **detail)
{
    if (!ops)
        return wb__ops_refusal("broker", NULL, 0, 0, "the table", detail);
    if (ops->variant) /* a family: its tables are checked when chosen */
        return wb__ops_refusal("broker", ops->name, ops->version, WB__BROKER_OPS_VERSION,
                               ops->name ? NULL : "name", detail);
    const char *missing = !ops->name         ? "name"
                          : !ops->open       ? "open"
                          : !ops->connect    ? "connect"
                          : !ops->publish    ? "publish"
                          : !ops->disconnect ? "disconnect"
                          : !ops->close      ? "close"
                                             : NULL;
    return wb__ops_refusal("broker", ops->name, ops->version, WB__BROKER_OPS_VERSION, missing,
                           detail);
}

wb_err wb__broker_set_backend(wb_broker_type type, const wb__broker_ops *ops)
{
    char *d = NULL;
    if ((unsigned)type > WB_BROKER_BUILTIN || (ops && wb__broker_ops_check(ops, &d) != WB_OK)) {
        free(d);
        return WB_ERR_INVALID_ARGUMENT;
    }
    wb__registry_set(&backends, (unsigned)type, ops);
    return WB_OK;
}

static wb_err fail(const wb_broker *b, wb_err err, char *detail)
{
    return wb__fail(b, err, detail);
}

static wb_err ok(const wb_broker *b)
{
    return wb__ok(b);
}

WB_API const char *wb_broker_last_error(const wb_broker *b)
{
    if (!b)
        return wb__last_error(NULL, NULL);
    pthread_mutex_lock((pthread_mutex_t *)&b->lock);
    char *async = b->async_error ? wb__strdup(b->async_error) : NULL;
    pthread_mutex_unlock((pthread_mutex_t *)&b->lock);
    const char *r = wb__last_error(b, async);
    free(async);
    return r;
}

/* ---- callbacks from backends --------------------------------------------- */

void wb__broker_deliver(wb__broker_core *core, const wb_message *msg)
{
    wb_broker *b = core->owner;
    atomic_fetch_add(&b->received, 1);
    if (b->opts.on_message)
        b->opts.on_message(b->opts.on_message_ctx, msg);
}

void wb__broker_connection(wb__broker_core *core, bool connected, const char *reason)
{
    wb_broker *b = core->owner;
    if (!connected) {
        pthread_mutex_lock(&b->lock);
        free(b->async_error);
        b->async_error = wb__asprintf("connection lost: %s", reason ? reason : "unknown reason");
        pthread_mutex_unlock(&b->lock);
    }
    if (b->opts.on_connection)
        b->opts.on_connection(b->opts.on_connection_ctx, connected, reason);
}

/* ---- the API -------------------------------------------------------------- */

WB_API wb_err wb_broker_open(const wb_config *config, const wb_broker_opts *opts, wb_broker **out)
{
    if (!out || !config || (opts && opts->version != WB_BROKER_OPTS_VERSION))
        return fail(NULL, WB_ERR_INVALID_ARGUMENT,
                    wb__strdup(opts && opts->version != WB_BROKER_OPTS_VERSION
                                   ? "wb_broker_opts.version is not WB_BROKER_OPTS_VERSION"
                                   : "a configuration and an out pointer are required"));
    *out = NULL;
    wb_broker_type type = wb_config_broker_type(config);
    const wb__broker_ops *ops = wb__registry_get(&backends, (unsigned)type);
    if (!ops) {
        char *d = NULL;
        wb_err err = wb__backend_refusal("broker", wb_broker_type_name(type), &d);
        return fail(NULL, err, d);
    }
    /* a backend of several tables (IoT Core: MQTT or HTTPS) chooses one by
     * the configuration, once; no operation branches after that */
    if (ops->variant)
        ops = ops->variant(config);
    char *d = NULL;
    if (wb__broker_ops_check(ops, &d) != WB_OK)
        return fail(NULL, WB_ERR_INVALID_ARGUMENT, d);
    wb_broker *b = calloc(1, sizeof *b);
    void *priv = ops->priv_size ? calloc(1, ops->priv_size) : NULL;
    if (!b || (ops->priv_size && !priv)) {
        free(b);
        free(priv);
        return fail(NULL, WB_ERR_NO_MEMORY, NULL);
    }
    b->core.owner = b;
    b->ops = ops;
    b->priv = priv;
    b->cfg = config;
    wb_broker_opts def = WB_BROKER_OPTS_INIT;
    b->opts = opts ? *opts : def;
    if (!b->opts.client_id)
        b->opts.client_id = DEFAULT_CLIENT_ID;
    pthread_mutex_init(&b->lock, NULL);
    wb_err err = wb__err_code(ops->open(priv, config, &b->opts, &b->core, &d));
    if (err) {
        ops->close(priv); /* what open made before it failed */
        pthread_mutex_destroy(&b->lock);
        free(priv);
        free(b);
        return fail(NULL, err, d);
    }
    *out = b;
    return ok(NULL);
}

WB_API wb_err wb_broker_connect(wb_broker *b, unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = b->ops->connect(b->priv, timeout_ms, &d);
    if (err) {
        wb__log(WB_LOG_ERROR, "broker", "cannot connect (%s): %s", b->ops->name,
                d ? d : wb_strerror(err));
        return fail(b, err, d);
    }
    atomic_store(&b->connected_once, true);
    wb__log(WB_LOG_INFO, "broker", "connected (%s)", b->ops->name);
    return ok(b);
}

static wb_err check_topic(const wb_broker *b, const char *topic, char **detail)
{
    if (!topic || !*topic) {
        *detail = wb__strdup("the topic is empty");
        return WB_ERR_INVALID_ARGUMENT;
    }
    size_t n = strlen(topic), slashes = 0;
    if (strpbrk(topic, "+#")) {
        *detail = wb__asprintf("the topic \"%s\" holds a wildcard ('+' or '#'): one cannot "
                               "publish to a filter",
                               topic);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (!wb__utf8_valid(topic, n)) {
        *detail = wb__strdup("the topic is not valid UTF-8");
        return WB_ERR_INVALID_ARGUMENT;
    }
    for (const char *p = topic; *p; p++)
        slashes += *p == '/';
    if (b->ops->max_topic && n > b->ops->max_topic) {
        *detail = wb__asprintf("the topic is %zu bytes; the %s broker takes at most %zu", n,
                               b->ops->name, b->ops->max_topic);
        return WB_ERR_TOO_LARGE;
    }
    if (b->ops->max_slashes && slashes > b->ops->max_slashes) {
        *detail = wb__asprintf("the topic has %zu '/'; the %s broker takes at most %u", slashes,
                               b->ops->name, b->ops->max_slashes);
        return WB_ERR_TOO_LARGE;
    }
    return WB_OK;
}

WB_API wb_err wb_broker_publish(wb_broker *b, const char *topic, const void *payload, size_t len,
                                int qos)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = check_topic(b, topic, &d);
    if (!err && qos != 0 && qos != 1) {
        err = WB_ERR_NOT_SUPPORTED;
        d = wb__asprintf("QoS %d is not supported: use 0 (at most once) or 1 (at least once)", qos);
    } else if (!err && qos == 1 && !(b->ops->caps & WB__BROKER_CAP_QOS1)) {
        err = WB_ERR_NOT_SUPPORTED;
        d = wb__asprintf("the %s broker backend has no QoS 1", b->ops->name);
    } else if (!err && !payload && len) {
        err = WB_ERR_INVALID_ARGUMENT;
        d = wb__strdup("the payload is NULL but its length is not 0");
    } else if (!err && b->ops->max_payload && len > b->ops->max_payload) {
        err = WB_ERR_TOO_LARGE;
        d = wb__asprintf("the payload is %zu bytes; the %s broker takes at most %zu", len,
                         b->ops->name, b->ops->max_payload);
    }
    if (!err) {
        /* the one retry loop: a synchronous publish (IoT Core's HTTPS API)
         * that failed in a way worth retrying (5xx, throttling, no answer)
         * is tried again with backoff for up to WB__PUBLISH_RETRY_MS; an
         * asynchronous backend queues and never asks for it */
        wb__retry r;
        wb__retry_start(&r, "broker", "publish", WB__PUBLISH_RETRY_MS, 50, 2000);
        for (;;) {
            err = b->ops->publish(b->priv, topic, payload, len, qos, &d);
            if (!err || !wb__retry_again(&r, err, d))
                break;
            free(d);
            d = NULL;
        }
        wb__retry_end(&r, err, d);
        err = wb__err_code(err);
    }
    if (err) {
        atomic_fetch_add(&b->refused, 1);
        return fail(b, err, d);
    }
    return ok(b);
}

WB_API wb_err wb_broker_publish_to_worker(wb_broker *b, const char *pool, const char *worker,
                                          const void *payload, size_t len, int qos)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    char topic[WB_TOPIC_BUF_SIZE];
    wb_err err = wb_topic_build(topic, sizeof topic, wb_config_namespace(b->cfg), WB_TOPIC_READONLY,
                                pool, worker, NULL);
    if (err) {
        atomic_fetch_add(&b->refused, 1);
        return fail(b, err,
                    wb__asprintf("cannot address worker \"%s\" of pool \"%s\": pool and worker "
                                 "must be ULIDs (26 characters of Crockford base32)",
                                 worker ? worker : "(null)", pool ? pool : "(null)"));
    }
    return wb_broker_publish(b, topic, payload, len, qos);
}

static wb_err callback_guard(const wb_broker *b, const char *what)
{
    if (b->ops->in_callback && b->ops->in_callback(b->priv))
        return fail(b, WB_ERR_STATE,
                    wb__asprintf("%s cannot be called from a workerbus callback", what));
    return WB_OK;
}

WB_API wb_err wb_broker_subscribe(wb_broker *b, const char *filter, int qos,
                                  unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    if (!b->ops->subscribe || !(b->ops->caps & WB__BROKER_CAP_SUBSCRIBE))
        return fail(b, WB_ERR_NOT_SUPPORTED,
                    wb__asprintf("the %s broker backend cannot subscribe%s%s", b->ops->name,
                                 b->ops->why_no_subscribe ? ": " : "",
                                 b->ops->why_no_subscribe ? b->ops->why_no_subscribe : ""));
    if (!filter || !*filter || !wb__utf8_valid(filter, strlen(filter)))
        return fail(b, WB_ERR_INVALID_ARGUMENT,
                    wb__strdup("the topic filter is empty or not "
                               "UTF-8"));
    if (qos != 0 && qos != 1)
        return fail(b, WB_ERR_NOT_SUPPORTED, wb__asprintf("QoS %d is not supported", qos));
    wb_err err = callback_guard(b, "subscribe");
    if (err)
        return err;
    char *d = NULL;
    err = b->ops->subscribe(b->priv, filter, qos, timeout_ms, &d);
    return err ? fail(b, err, d) : ok(b);
}

WB_API wb_err wb_broker_unsubscribe(wb_broker *b, const char *filter, unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    if (!b->ops->unsubscribe)
        return fail(b, WB_ERR_NOT_SUPPORTED,
                    wb__asprintf("the %s broker backend cannot unsubscribe", b->ops->name));
    if (!filter || !*filter)
        return fail(b, WB_ERR_INVALID_ARGUMENT, wb__strdup("the topic filter is empty"));
    wb_err err = callback_guard(b, "unsubscribe");
    if (err)
        return err;
    char *d = NULL;
    err = b->ops->unsubscribe(b->priv, filter, timeout_ms, &d);
    return err ? fail(b, err, d) : ok(b);
}

WB_API wb_err wb_broker_flush(wb_broker *b, unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    if (!b->ops->flush)
        return ok(b); /* nothing is ever queued by such a backend */
    wb_err err = callback_guard(b, "flush");
    if (err)
        return err;
    char *d = NULL;
    err = b->ops->flush(b->priv, timeout_ms, &d);
    return err ? fail(b, err, d) : ok(b);
}

WB_API wb_err wb_broker_disconnect(wb_broker *b, unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    wb_err err = callback_guard(b, "disconnect");
    if (err)
        return err;
    char *d = NULL;
    err = b->ops->disconnect(b->priv, timeout_ms, &d);
    if (atomic_load(&b->connected_once))
        wb__log(err ? WB_LOG_WARN : WB_LOG_INFO, "broker", "disconnected (%s)%s%s", b->ops->name,
                err ? ": " : "", err ? (d ? d : wb_strerror(err)) : "");
    return err ? fail(b, err, d) : ok(b);
}

WB_API void wb_broker_stats_get(wb_broker *b, wb_broker_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!b)
        return;
    if (b->ops->stats)
        b->ops->stats(b->priv, out);
    out->received = atomic_load(&b->received);
    out->refused = atomic_load(&b->refused);
}

WB_API wb_err wb_broker_replica_stats_get(wb_broker *b, wb_broker_replica_stats *out)
{
    if (!b || !out)
        return WB_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!b->ops->replica_stats || !b->ops->replica_stats(b->priv, out))
        return WB_ERR_NOT_SUPPORTED;
    return WB_OK;
}

WB_API const char *wb_broker_backend(const wb_broker *b)
{
    return b ? b->ops->name : NULL;
}

WB_API void wb_broker_close(wb_broker *b)
{
    if (!b)
        return;
    b->ops->close(b->priv);
    pthread_mutex_destroy(&b->lock);
    free(b->async_error);
    free(b->priv);
    wb__forget(b);
    free(b);
}

void *wb__broker_priv(const wb_broker *b)
{
    return b->priv;
}
