/**
 * @file harness.h
 * The whole environment on one machine, for integration tests, the demo and
 * a developer's laptop: everything either broker type needs, on loopback.
 *
 * wb_harness_up() starts, under one directory:
 *  - PostgreSQL 15 and the SQS stand-in with the eight queues (through the
 *    project's scripts/services; their variables, AWS_ENDPOINT_URL_SQS and
 *    dummy credentials included, are also set in this process's
 *    environment, which the brokers' topic rules inherit: setenv() is not
 *    thread-safe, so bring the harness up before threads of yours read the
 *    environment);
 *  - a PKI: a CA, the brokers' certificate (127.0.0.1, localhost and the IoT
 *    Core stand-in's endpoint name), the server's certificate, and one
 *    worker pool's key and certificate;
 *  - the bundled broker (MQTT_BROKER_TYPE=builtin), its topic rule writing
 *    into PostgreSQL;
 *  - the IoT Core stand-in: a second bundled Mosquitto with a certificate
 *    for WB_HARNESS_IOT_ENDPOINT, its topic rule forwarding into the SQS
 *    stand-in's iot queue;
 *  - with replicas (wb_harness_opts.replicas ≥ 1), the bundled broker is N
 *    server replicas instead, each a `workerbus broker run` process (its own
 *    bundled broker, heartbeat and outbox delivery) on a loopback port of
 *    its own, behind HAProxy in TCP mode, as an NLB passes TLS through: the
 *    builtin environment's MQTT_BROKER_ENDPOINT is the load balancer, where
 *    the simulated workers connect;
 *  - N simulated workers on each broker: each publishes a heartbeat,
 *    {"kind":"heartbeat","seq":N} with N counting from 0 per worker and
 *    broker, every heartbeat_ms, and answers every message from the server
 *    with {"kind":"echo","of":<the message>} (the message as JSON, or as a
 *    string when it is not JSON).
 *
 * wb_harness_env() gives the server's environment for either broker type;
 * wb_harness_down() stops everything and removes the directory. A process
 * that dies without calling it (a crash, SIGKILL) leaves nothing running
 * either: the brokers get SIGTERM at its death, and a watchdog process
 * started by wb_harness_up() then stops PostgreSQL and the SQS stand-in
 * and removes the directory.
 * `workerbus harness up|env|down` does the same from a shell.
 */
#ifndef WORKERBUS_HARNESS_H
#define WORKERBUS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "config.h"
#include "error.h"
#include "topic.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The IoT Core endpoint the stand-in answers for. */
#define WB_HARNESS_IOT_ENDPOINT "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"
#define WB_HARNESS_MAX_WORKERS  1000u

typedef struct wb_harness wb_harness;

/** Options of wb_harness_up(). Initialize with ::WB_HARNESS_OPTS_INIT. */
typedef struct wb_harness_opts {
    unsigned int version; /**< ::WB_HARNESS_OPTS_VERSION */
    /** Where everything lives; it must not exist or be empty. NULL: a new
     *  directory under /tmp. */
    const char *dir;
    unsigned int workers;      /**< simulated workers per broker; 0: none */
    unsigned int heartbeat_ms; /**< between a worker's heartbeats; 0: none */
    /** The services script (scripts/services of the source tree); NULL:
     *  the installed one, <libexecdir>/workerbus/services. */
    const char *services_script;
    /* ---- version 2 ---- */
    /** 0: one bundled broker in this process, as in version 1. N (at most
     *  ::WB_HARNESS_MAX_REPLICAS): N replicas behind HAProxy. */
    unsigned int replicas;
    /** MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT of the replicas; 0: its default. */
    unsigned int replica_timeout_s;
    /** The workerbus executable the replicas run; NULL: the installed one. */
    const char *workerbus;
} wb_harness_opts;

#define WB_HARNESS_OPTS_VERSION 2
#define WB_HARNESS_MAX_REPLICAS 16u
/* clang-format off */
#define WB_HARNESS_OPTS_INIT {WB_HARNESS_OPTS_VERSION, NULL, 0, 0, NULL, 0, 0, NULL}
/* clang-format on */

/** Counters of the simulated workers, both brokers together. */
typedef struct wb_harness_stats {
    uint64_t heartbeats;    /**< heartbeats published */
    uint64_t received;      /**< messages the workers received from the server */
    uint64_t echoed;        /**< echoes published */
    uint64_t acknowledged;  /**< worker publishes the brokers acknowledged */
    unsigned int connected; /**< workers connected now */
} wb_harness_stats;

/**
 * Brings the environment up. On failure everything started is stopped.
 * @param opts NULL: the defaults of ::WB_HARNESS_OPTS_INIT.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT; ::WB_ERR_IO (the directory,
 *         or a service that did not start: detail quotes its log);
 *         ::WB_ERR_BACKEND (a broker did not start); ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_harness_up(const wb_harness_opts *opts, wb_harness **out, char **detail);

/** The server's environment for a broker type, as NUL-terminated lines of
 *  KEY=VALUE; belongs to the harness. */
WB_API const char *wb_harness_env(const wb_harness *h, wb_broker_type type);

/** The same, loaded and validated (wb_config_free()); NULL on failure. */
WB_API wb_config *wb_harness_config(const wb_harness *h, wb_broker_type type);

/** The pool, and the i-th simulated worker (the same ULIDs on both brokers). */
WB_API const char *wb_harness_pool(const wb_harness *h);
WB_API const char *wb_harness_worker(const wb_harness *h, unsigned int i);

/** The harness's directory. */
WB_API const char *wb_harness_dir(const wb_harness *h);

/** The bundled broker's process id, and the IoT Core stand-in's. */
WB_API int wb_harness_broker_pid(const wb_harness *h, wb_broker_type type);

/** How many replicas run now (0 without replicas). */
WB_API unsigned int wb_harness_replicas(const wb_harness *h);

/** Replica i's server environment (NUL-terminated KEY=VALUE lines): the load
 *  balancer as MQTT_BROKER_ENDPOINT, the replica's own broker as
 *  MQTT_BROKER_BUILTIN_LISTEN (where its server connects), its
 *  MQTT_BROKER_BUILTIN_REPLICA_ID. Belongs to the harness; NULL past the
 *  last replica. wb_harness_env(h, WB_BROKER_BUILTIN) is replica 0's. */
WB_API const char *wb_harness_replica_env(const wb_harness *h, unsigned int i);

/** Replica i's `workerbus broker run` process, and its Mosquitto (whose
 *  pid changes when it is restarted); 0 when there is none. SIGKILL of the
 *  first kills both, as a server's death does; a frozen replica is both
 *  stopped (SIGSTOP). */
WB_API int wb_harness_replica_pid(const wb_harness *h, unsigned int i);
WB_API int wb_harness_replica_broker_pid(const wb_harness *h, unsigned int i);

/**
 * Starts one more replica and adds it to the load balancer at run time
 * (HAProxy's runtime API), changing nothing of the others.
 * @return ::WB_OK; ::WB_ERR_STATE (no replicas, or the limit reached);
 *         ::WB_ERR_BACKEND (it did not start, detail quotes its log).
 */
WB_API wb_err wb_harness_replica_add(wb_harness *h, char **detail);

/** The services' directory (for scripts/services restart|suspend|resume). */
WB_API const char *wb_harness_services_dir(const wb_harness *h);

WB_API void wb_harness_stats_get(wb_harness *h, wb_harness_stats *out);

/** Pauses (false) or resumes (true) the workers' heartbeats; on return no
 *  heartbeat is being sent. */
WB_API void wb_harness_heartbeats(wb_harness *h, bool on);

/** Waits until every worker publish so far is acknowledged by its broker.
 *  @return ::WB_OK or ::WB_ERR_TIMEOUT. */
WB_API wb_err wb_harness_flush(wb_harness *h, unsigned int timeout_ms);

/** Stops the workers, the brokers and the services, and removes the
 *  directory. NULL is ignored. */
WB_API wb_err wb_harness_down(wb_harness *h);

#ifdef __cplusplus
}
#endif
#endif
