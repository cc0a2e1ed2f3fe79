/* The worker-side client: one worker of a pool, on the MQTT engine. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mqttc.h"
#include "wb_internal.h"
#include "workerbus/worker.h"

struct wb_worker {
    wb__mqttc *client;
    wb_worker_opts o;
    char readonly[WB_TOPIC_BUF_SIZE];
    char writeonly[WB_TOPIC_BUF_SIZE];
    pthread_mutex_t lock;
    char *async_error;
};

static void wkr_on_message(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                           bool retained)
{
    wb_worker *w = ctx;
    if (!w->o.on_message)
        return;
    wb_message m = {topic, payload, len, qos, retained};
    w->o.on_message(w->o.on_message_ctx, &m);
}

static void wkr_on_connection(void *ctx, bool up, const char *reason)
{
    wb_worker *w = ctx;
    if (!up) {
        pthread_mutex_lock(&w->lock);
        free(w->async_error);
        w->async_error = wb__asprintf("connection lost: %s", reason ? reason : "unknown reason");
        pthread_mutex_unlock(&w->lock);
    }
    if (w->o.on_connection)
        w->o.on_connection(w->o.on_connection_ctx, up, reason);
}

WB_API wb_err wb_worker_open(const wb_worker_opts *opts, wb_worker **out, char **detail)
{
    char *d = NULL;
    if (detail)
        *detail = NULL;
    if (!opts || !out || opts->version != WB_WORKER_OPTS_VERSION) {
        if (detail)
            *detail = wb__strdup("options with version WB_WORKER_OPTS_VERSION are required");
        return WB_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    wb_err err = WB_ERR_INVALID_ARGUMENT;
    char *host = NULL, *dial = NULL;
    unsigned port = 0, dial_port = 0;
    bool tls = false;
    const char *ns = opts->ns ? opts->ns : "spacelift";
    const char *why = opts->endpoint ? wb__hostport_parse(opts->endpoint, true, &host, &port, &tls)
                                     : "is missing";
    if (why) {
        d = wb__asprintf("endpoint \"%s\": %s", opts->endpoint ? opts->endpoint : "", why);
        goto fail;
    }
    if (opts->connect_to &&
        (why = wb__hostport_parse(opts->connect_to, false, &dial, &dial_port, NULL)) != NULL) {
        d = wb__asprintf("connect_to \"%s\": %s", opts->connect_to, why);
        goto fail;
    }
    if (tls && (!opts->ca_file || !opts->cert_file || !opts->key_file)) {
        d = wb__strdup("a tls:// endpoint needs ca_file, cert_file and key_file");
        goto fail;
    }
    if (!tls && !opts->token) {
        d = wb__strdup("a plain endpoint needs the pool's token (workerbus pki token)");
        goto fail;
    }
    wb_worker *w = calloc(1, sizeof *w);
    if (!w) {
        err = WB_ERR_NO_MEMORY;
        goto fail;
    }
    w->o = *opts;
    pthread_mutex_init(&w->lock, NULL);
    char pool[WB_ULID_STR_SIZE];
    if (wb_topic_build(w->readonly, sizeof w->readonly, ns, WB_TOPIC_READONLY, opts->pool,
                       opts->worker, NULL) != WB_OK ||
        wb_topic_build(w->writeonly, sizeof w->writeonly, ns, WB_TOPIC_WRITEONLY, opts->pool,
                       opts->worker, NULL) != WB_OK ||
        wb_ulid_canonical(opts->pool, pool) != WB_OK) {
        d = wb__asprintf("pool \"%s\" and worker \"%s\" must be ULIDs, namespace \"%s\" valid",
                         opts->pool ? opts->pool : "", opts->worker ? opts->worker : "", ns);
        wb_worker_close(w);
        goto fail;
    }
    char worker_id[WB_ULID_STR_SIZE];
    wb_ulid_canonical(opts->worker, worker_id);
    wb__mqttc_opts o = {
        .connect_host = dial ? dial : host,
        .tls_name = dial ? NULL : host,
        .port = dial ? dial_port : port,
        .tls = tls,
        .cafile = opts->ca_file,
        .certfile = opts->cert_file,
        .keyfile = opts->key_file,
        .username = tls ? NULL : pool,
        .password = tls ? NULL : opts->token,
        .client_id = worker_id,
        .clean_session = opts->clean_session,
        .keepalive_s = opts->keepalive_s,
        .max_queued = opts->max_queued,
        .on_message = wkr_on_message,
        .on_connection = wkr_on_connection,
        .ctx = w,
        .component = "worker",
    };
    err = wb__mqttc_new(&o, &w->client, &d);
    if (err) {
        wb_worker_close(w);
        goto fail;
    }
    /* the worker's own topic, renewed at every reconnect */
    err = wb__mqttc_subscribe(w->client, w->readonly, 1, 0, &d);
    if (err) {
        wb_worker_close(w);
        goto fail;
    }
    free(host);
    free(dial);
    *out = w;
    return WB_OK;
fail:
    free(host);
    free(dial);
    if (detail)
        *detail = d;
    else
        free(d);
    return err;
}

WB_API wb_err wb_worker_connect(wb_worker *w, unsigned int timeout_ms)
{
    if (!w)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = wb__mqttc_connect(w->client, timeout_ms, &d);
    if (!err) /* the subscription was made at connect: wait for its answer */
        err = wb__mqttc_subscribe(w->client, w->readonly, 1, timeout_ms, &d);
    return err ? wb__fail(w, err, d) : wb__ok(w);
}

WB_API wb_err wb_worker_publish(wb_worker *w, const void *payload, size_t len, int qos)
{
    return wb_worker_publish_topic(w, w ? w->writeonly : NULL, payload, len, qos);
}

WB_API wb_err wb_worker_publish_topic(wb_worker *w, const char *topic, const void *payload,
                                      size_t len, int qos)
{
    if (!w || !topic || (!payload && len))
        return WB_ERR_INVALID_ARGUMENT;
    if (qos != 0 && qos != 1)
        return wb__fail(w, WB_ERR_NOT_SUPPORTED, wb__asprintf("QoS %d is not supported", qos));
    char *d = NULL;
    wb_err err = wb__mqttc_publish(w->client, topic, payload, len, qos, &d);
    return err ? wb__fail(w, err, d) : wb__ok(w);
}

WB_API wb_err wb_worker_subscribe(wb_worker *w, const char *filter, int qos,
                                  unsigned int timeout_ms)
{
    if (!w || !filter)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = wb__mqttc_subscribe(w->client, filter, qos, timeout_ms, &d);
    return err ? wb__fail(w, err, d) : wb__ok(w);
}

WB_API wb_err wb_worker_flush(wb_worker *w, unsigned int timeout_ms)
{
    if (!w)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = wb__mqttc_flush(w->client, timeout_ms, &d);
    return err ? wb__fail(w, err, d) : wb__ok(w);
}

WB_API wb_err wb_worker_disconnect(wb_worker *w, unsigned int timeout_ms)
{
    if (!w)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    wb_err err = wb__mqttc_disconnect(w->client, timeout_ms, &d);
    return err ? wb__fail(w, err, d) : wb__ok(w);
}

WB_API void wb_worker_stats_get(wb_worker *w, wb_broker_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!w)
        return;
    wb__mqttc_broker_stats(w->client, out);
}

WB_API const char *wb_worker_last_error(const wb_worker *w)
{
    if (!w)
        return wb__last_error(NULL, NULL);
    pthread_mutex_lock((pthread_mutex_t *)&w->lock);
    char *async = w->async_error ? wb__strdup(w->async_error) : NULL;
    pthread_mutex_unlock((pthread_mutex_t *)&w->lock);
    const char *r = wb__last_error(w, async);
    free(async);
    return r;
}

WB_API const char *wb_worker_readonly_topic(const wb_worker *w)
{
    return w ? w->readonly : NULL;
}

WB_API const char *wb_worker_writeonly_topic(const wb_worker *w)
{
    return w ? w->writeonly : NULL;
}

WB_API void wb_worker_close(wb_worker *w)
{
    if (!w)
        return;
    wb__mqttc_free(w->client);
    pthread_mutex_destroy(&w->lock);
    free(w->async_error);
    wb__forget(w);
    free(w);
}
