/* The iotcore broker backend (not installed): the server's connection to
 * AWS IoT Core, with one operations table per transport.
 *  - iotcore_mqtt.c: mqtts, mqtts-alpn and wss, on Paho MQTT C (MQTTAsync).
 *  - iotcore_https.c: the data-plane Publish API over libcurl; publish only.
 * iotcore.c holds the table the backend list names, whose variant()
 * chooses one of the two by MQTT_BROKER_IOTCORE_TRANSPORT, and what both
 * share: the settings and IoT Core's session limits. */
#ifndef WB_IOTCORE_H
#define WB_IOTCORE_H

#include <stdbool.h>
#include <stddef.h>

#include "aws_creds.h"
#include "broker_backend.h"
#include "config_views.h"

/* IoT Core's limits (spec/facts.md), as both tables declare them */
#define WB__IOT_MAX_PAYLOAD   (128u * 1024u)
#define WB__IOT_MAX_TOPIC     256u
#define WB__IOT_MAX_SLASHES   7u
#define WB__IOT_MAX_CLIENT_ID 128u

/* What both transports read from the configuration and the options. */
typedef struct wb__iot_base {
    wb__broker_core *core;
    wb_iotcore_transport transport;
    char *endpoint, *region, *client_id;
    char *cert, *key, *ca; /* NULL when unset */
    unsigned keepalive_s, reconnect_min_ms, reconnect_max_ms;
    size_t max_queued;
    unsigned port;    /* the transport's, in URIs: 8883 or 443 */
    char *connect_to; /* with MQTT_BROKER_IOTCORE_CONNECT_TO: curl's form */
    char *dial_host;  /* ... and the override's address and port; else NULL */
    unsigned dial_port;
    wb__aws_provider *creds; /* https and wss: the AWS credential chain */
} wb__iot_base;

/* Fills b from the configuration and the options (defaults applied) and
 * checks IoT Core's session limits (client id, keepalive). The caller's
 * thread; blocks on nothing. Returns WB_OK, WB_ERR_INVALID_ARGUMENT or
 * WB_ERR_NO_MEMORY; wb__iot_base_close() frees what it made either way. */
wb_err wb__iot_base_open(wb__iot_base *b, const wb_config *cfg, const wb_broker_opts *opts,
                         wb__broker_core *core, char **detail);
void wb__iot_base_close(wb__iot_base *b);

extern const wb__broker_ops wb__iotcore_mqtt_ops;
extern const wb__broker_ops wb__iotcore_https_ops;

#endif
