/* A built-in broker environment for integration tests: a fresh PKI, a worker
 * pool certificate, a free port, a runtime directory and a configuration. */
#ifndef WBT_FIXTURE_H
#define WBT_FIXTURE_H

#include <stdbool.h>

#include "workerbus/workerbus.h"

#define WBT_POOL         "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define WBT_WORKER       "01BX5ZZKBKACTAV9WEVGEMMVRZ"
#define WBT_OTHER_WORKER "01BX5ZZKBKACTAV9WEVGEMMVR0"

typedef struct wbt_env {
    char dir[64]; /* everything lives below this */
    char pki[96];
    char run[96];
    char worker_key[128];
    char worker_crt[128];
    char endpoint[64];
    unsigned port;
    bool tls;
    wb_config *cfg;
    wb_bundled *broker;
    wb_config *iot_cfg; /* wbt_env_setup_iot(): the server's iotcore configuration */
    char iot_addr[32];  /* the stand-in's loopback address (port 8883) */
    bool topic_rule;    /* the broker writes worker messages into the iot queue */
    /* with the services' PostgreSQL: a database of this environment's own,
     * where its replica's presence and outbox live (tests in parallel use
     * the same worker ids); "" without */
    char db_url[640];
} wbt_env;

/* The IoT Core endpoint the stand-in's certificate is issued for. */
#define WBT_IOT_ENDPOINT "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"

/* Makes the PKI, a worker certificate for WBT_POOL and a configuration. */
void wbt_env_setup(wbt_env *e, bool tls);
/* The IoT Core stand-in: the same bundled Mosquitto with mutual TLS and the
 * workerbus plugin's per-certificate access rules, listening on
 * <its own 127.x.y.z>:8883 with a certificate for WBT_IOT_ENDPOINT; and
 * iot_cfg, an iotcore configuration (mqtts) that reaches it through
 * MQTT_BROKER_IOTCORE_CONNECT_TO, TLS checking WBT_IOT_ENDPOINT. */
void wbt_env_setup_iot(wbt_env *e);
/* The same with the topic rule on: over (NULL-terminated "KEY=VALUE") names
 * a reachable queue, SQS for IoT Core (the stand-in's topic-rule forwarder
 * writes into its iot queue); iot_cfg uses the same queue. */
void wbt_env_setup_iot_queue(wbt_env *e, const char *const *over);
/* wbt_env_setup() with the topic rule on and these overrides, which name a
 * reachable queue (DATABASE_URL, or the SQS variables). */
void wbt_env_setup_queue(wbt_env *e, bool tls, const char *const *over);
/* An iotcore configuration for the stand-in of e, with "KEY=VALUE"
 * overrides (NULL-terminated, may be NULL); asserts it loads. */
wb_config *wbt_env_iot_config(const wbt_env *e, const char *const *over);
/* Replaces the builtin configuration of e by one with these overrides
 * (NULL-terminated "KEY=VALUE"; they replace those given at setup). The
 * broker must be stopped. */
void wbt_env_reconfigure(wbt_env *e, const char *const *over);
/* Starts the bundled broker (asserts success). */
void wbt_env_start(wbt_env *e);
/* The same with options. */
void wbt_env_start_opts(wbt_env *e, const wb_bundled_opts *o);
void wbt_env_teardown(wbt_env *e);
/* "<ns>/<dir>/<pool>/<worker>" in a static buffer (one of four). */
const char *wbt_topic(const char *dir, const char *pool, const char *worker);

/* A worker of WBT_POOL with this client id, connected to the broker of e
 * (asserts success); fn may be NULL. */
wb_worker *wbt_env_worker(const wbt_env *e, const char *id, wb_message_fn fn, void *ctx);

/* Captures workerbus's log lines from now on. */
void wbt_log_capture(void);
/* Waits up to timeout_ms for a captured line containing text. */
bool wbt_log_wait_for(const char *text, unsigned timeout_ms);

#endif
