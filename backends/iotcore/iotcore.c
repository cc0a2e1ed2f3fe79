/* The iotcore broker backend: the table the backend list names, which
 * chooses the transport's own table, and what the two transports share. */
#include <stdlib.h>
#include <string.h>

#include "iotcore.h"
#include "wb_internal.h"

/* The one place the transport is looked at: wb_broker_open() asks, once. */
static const wb__broker_ops *choose(const wb_config *cfg)
{
    const wb__iotcore_view *v = wb__config_iotcore(cfg);
    return v && v->transport == WB_IOT_HTTPS ? &wb__iotcore_https_ops : &wb__iotcore_mqtt_ops;
}

const wb__broker_ops wb__iotcore_broker_ops = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "iotcore",
    .variant = choose,
};

wb_err wb__iot_base_open(wb__iot_base *b, const wb_config *cfg, const wb_broker_opts *opts,
                         wb__broker_core *core, char **detail)
{
    const wb__iotcore_view *v = wb__config_iotcore(cfg);
    b->core = core;
    b->transport = v->transport;
    b->endpoint = wb__strdup(v->endpoint);
    b->region = wb__strdup(v->region ? v->region : "us-east-1");
    b->client_id = wb__strdup(opts->client_id);
    b->keepalive_s = opts->keepalive_s ? opts->keepalive_s : 1200;
    b->reconnect_min_ms = opts->reconnect_min_ms ? opts->reconnect_min_ms : 100;
    b->reconnect_max_ms = opts->reconnect_max_ms ? opts->reconnect_max_ms : 30000;
    b->max_queued = opts->max_queued ? opts->max_queued : 100000;
    b->ca = v->ca_file ? wb__strdup(v->ca_file) : NULL;
    b->cert = v->cert_file ? wb__strdup(v->cert_file) : NULL;
    b->key = v->key_file ? wb__strdup(v->key_file) : NULL;
    b->port = b->transport == WB_IOT_MQTTS ? 8883u : 443u;
    if (!b->endpoint || !b->region || !b->client_id || (v->ca_file && !b->ca) ||
        (v->cert_file && !b->cert) || (v->key_file && !b->key))
        return WB_ERR_NO_MEMORY;
    /* IoT Core refuses a client id over 128 bytes and a keepalive outside
     * 30-1200 s: say so before connecting */
    if (strlen(b->client_id) > WB__IOT_MAX_CLIENT_ID) {
        *detail = wb__asprintf("the client id is %zu bytes; IoT Core takes at most %u",
                               strlen(b->client_id), WB__IOT_MAX_CLIENT_ID);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (b->keepalive_s < 30 || b->keepalive_s > 1200) {
        *detail =
            wb__asprintf("a keepalive of %u s is outside IoT Core's 30-1200 s", b->keepalive_s);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (v->connect_host) {
        b->connect_to = wb__asprintf("%s:443:%s:%u", b->endpoint, v->connect_host, v->connect_port);
        b->dial_host = wb__strdup(v->connect_host);
        b->dial_port = v->connect_port;
        if (!b->connect_to || !b->dial_host)
            return WB_ERR_NO_MEMORY;
        wb__log(WB_LOG_WARN, "broker", "MQTT_BROKER_IOTCORE_CONNECT_TO: %s goes to %s:%u",
                b->endpoint, v->connect_host, v->connect_port);
    }
    if (b->transport == WB_IOT_HTTPS || b->transport == WB_IOT_WSS) {
        b->creds = wb__aws_provider_new(b->region);
        if (!b->creds)
            return WB_ERR_NO_MEMORY;
    }
    return WB_OK;
}

void wb__iot_base_close(wb__iot_base *b)
{
    wb__aws_provider_free(b->creds);
    free(b->endpoint);
    free(b->region);
    free(b->client_id);
    free(b->cert);
    free(b->key);
    free(b->ca);
    free(b->connect_to);
    free(b->dial_host);
    memset(b, 0, sizeof *b);
}
