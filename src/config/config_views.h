/* Typed views of a configuration, one per part of workerbus that needs
 * more than the public accessors (not installed). A backend or the bundled
 * broker's supervisor reads its settings here and never looks a variable up
 * by name. The views live in the wb_config and point into it: valid as long
 * as it is. */
#ifndef WB_CONFIG_VIEWS_H
#define WB_CONFIG_VIEWS_H

#include <stdbool.h>
#include <stddef.h>

#include "workerbus/config.h"

/* MQTT_BROKER_TYPE=builtin: the bundled broker and the server's connection
 * to it. File paths are the effective ones (PKI_DIR's defaults applied);
 * NULL when unset or not used with this endpoint (TLS files on a plain
 * endpoint, the token key on a tls:// one). */
typedef struct wb__builtin_view {
    const char *host; /* the endpoint's, IPv6 without brackets */
    unsigned port;
    bool tls;
    const char *listen_host; /* MQTT_BROKER_BUILTIN_LISTEN, else the endpoint's */
    unsigned listen_port;
    const char *ca_file, *ca_key_file;              /* MQTT_BROKER_BUILTIN_CA_FILE, _CA_KEY_FILE */
    const char *cert_file, *key_file;               /* the broker's: _CERT_FILE, _KEY_FILE */
    const char *client_cert_file, *client_key_file; /* the server's: _CLIENT_* */
    const char *token_key_file;                     /* _TOKEN_KEY_FILE (plain endpoints) */
    const char *runtime_dir;                        /* _RUNTIME_DIR */
    const char *mosquitto;                          /* _MOSQUITTO, resolved to a path */
    const char *plugin;                             /* _PLUGIN */
    size_t max_payload;                             /* _MAX_PAYLOAD, bytes */
    /* replicas: on when DATABASE_URL is set (see docs/replicas.md) */
    bool replicas;
    const char *database_url;       /* DATABASE_URL when replicas is on */
    const char *replica_id;         /* _REPLICA_ID, by default the host name */
    unsigned replica_timeout_s;     /* _REPLICA_TIMEOUT */
    unsigned outbox_expiry_s;       /* _OUTBOX_EXPIRY */
    unsigned outbox_max_per_worker; /* _OUTBOX_MAX_PER_WORKER */
    unsigned outbox_max;            /* _OUTBOX_MAX */
    /* _TOPIC_RULE_ACK=received: the PUBACK does not wait for the queue */
    bool ack_received;
    wb_log_level log_level; /* _LOG_LEVEL */
    const char *ns;         /* MQTT_BROKER_IOTCORE_NAMESPACE */
} wb__builtin_view;

/* MQTT_BROKER_TYPE=iotcore: the server's connection to AWS IoT Core. */
typedef struct wb__iotcore_view {
    const char *endpoint; /* lower case */
    const char *region;   /* named by the endpoint */
    wb_iotcore_transport transport;
    const char *cert_file, *key_file; /* the thing certificate (mutual TLS); NULL: unset */
    const char *ca_file;
    const char *connect_host; /* MQTT_BROKER_IOTCORE_CONNECT_TO when allowed, else NULL */
    unsigned connect_port;
    const char *ns;
} wb__iotcore_view;

/* The settings of the message queue, as NAME and value pairs for the
 * bundled broker's topic rule, which reads them from a file: the queue type,
 * DATABASE_URL, the region variables and the SQS URLs that are set. Returns
 * how many (at most WB__QUEUE_SETTINGS_MAX); the strings are the config's. */
#define WB__QUEUE_SETTINGS_MAX 12
size_t wb__config_queue_settings(const wb_config *config, const char *names[WB__QUEUE_SETTINGS_MAX],
                                 const char *values[WB__QUEUE_SETTINGS_MAX]);

/* DATABASE_URL whatever the queue type (the builtin broker's replicas use
 * it with SQS too); NULL when unset. */
const char *wb__config_database_url_any(const wb_config *config);

/* The view of a builtin configuration; NULL for an iotcore one. */
const wb__builtin_view *wb__config_builtin(const wb_config *config);
/* The view of an iotcore configuration; NULL for a builtin one. */
const wb__iotcore_view *wb__config_iotcore(const wb_config *config);

#endif
