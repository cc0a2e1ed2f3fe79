/* IoT Core's data-plane Publish API (MQTT_BROKER_IOTCORE_TRANSPORT=https):
 * POST /topics/{topic}?qos=N on 443, over libcurl, signed with SigV4
 * (iotdata). Publish only: worker messages reach the server through SQS.
 * A publish is one request, made while the caller waits; the broker core
 * retries what is marked retryable. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "iotcore.h"
#include "iotsign.h"
#include "wb_internal.h"

typedef struct iot_https {
    wb__iot_base base;
    pthread_mutex_t lock; /* one request at a time on the HTTP handle; the counters */
    bool lock_ready;
    wb__http *http;
    bool connected;
    uint64_t published;
} iot_https;

static wb_err https_open(void *priv, const wb_config *cfg, const wb_broker_opts *opts,
                         wb__broker_core *core, char **detail)
{
    iot_https *h = priv;
    pthread_mutex_init(&h->lock, NULL);
    h->lock_ready = true;
    wb_err err = wb__iot_base_open(&h->base, cfg, opts, core, detail);
    if (err)
        return err;
    h->http = wb__http_new();
    return h->http ? WB_OK : WB_ERR_NO_MEMORY;
}

/* Nothing to keep open: checks that credentials can be found. */
static wb_err https_connect(void *priv, unsigned timeout_ms, char **detail)
{
    (void)timeout_ms;
    iot_https *h = priv;
    wb__aws_creds cr;
    wb_err err = wb__aws_provider_get(h->base.creds, &cr, detail);
    wb__aws_creds_clear(&cr);
    if (!err) {
        pthread_mutex_lock(&h->lock);
        h->connected = true;
        pthread_mutex_unlock(&h->lock);
    }
    return err;
}

static wb_err https_publish(void *priv, const char *topic, const void *payload, size_t len, int qos,
                            char **detail)
{
    iot_https *h = priv;
    wb__iot_base *b = &h->base;
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
    wb__http_response resp;
    pthread_mutex_lock(&h->lock);
    err = wb__http_request_to(h->http, "POST", req.url, b->connect_to, b->ca, hdrs, payload, len,
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
    h->published += err == WB_OK;
    pthread_mutex_unlock(&h->lock);
    if (!err) {
        free(*detail);
        *detail = NULL;
    }
    wb__iot_publish_req_free(&req);
    return err;
}

static wb_err https_disconnect(void *priv, unsigned timeout_ms, char **detail)
{
    (void)timeout_ms, (void)detail;
    iot_https *h = priv;
    pthread_mutex_lock(&h->lock);
    h->connected = false;
    pthread_mutex_unlock(&h->lock);
    return WB_OK;
}

static void https_stats(void *priv, wb_broker_stats *out)
{
    iot_https *h = priv;
    pthread_mutex_lock(&h->lock);
    /* a request answered 200 is IoT Core's acknowledgement */
    out->published = out->acknowledged = h->published;
    out->connected = h->connected;
    pthread_mutex_unlock(&h->lock);
}

static void https_close(void *priv)
{
    iot_https *h = priv;
    wb__http_free(h->http);
    wb__iot_base_close(&h->base);
    if (h->lock_ready)
        pthread_mutex_destroy(&h->lock);
}

const wb__broker_ops wb__iotcore_https_ops = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "iotcore",
    .caps = WB__BROKER_CAP_QOS1,
    .priv_size = sizeof(iot_https),
    .max_payload = WB__IOT_MAX_PAYLOAD,
    .max_topic = WB__IOT_MAX_TOPIC,
    .max_slashes = WB__IOT_MAX_SLASHES,
    .why_no_subscribe = "MQTT_BROKER_IOTCORE_TRANSPORT=https publishes only; worker messages "
                        "reach the server through SQS (the iot queue)",
    .open = https_open,
    .connect = https_connect,
    .publish = https_publish,
    .disconnect = https_disconnect,
    .close = https_close,
    .stats = https_stats,
};
