/**
 * @file bundled.h
 * The bundled broker: a Mosquitto process that workerbus configures, starts
 * and supervises when MQTT_BROKER_TYPE=builtin.
 *
 * wb_bundled_start() writes a Mosquitto configuration and copies of the
 * credentials it needs into MQTT_BROKER_BUILTIN_RUNTIME_DIR, runs the
 * mosquitto executable as a child process and returns once the listener
 * accepts connections. A supervisor thread routes Mosquitto's log lines into
 * workerbus's log (component "mosquitto") and restarts the process, with
 * exponential backoff and jitter, if it dies. The child is also told to
 * terminate if the calling process dies. See docs/builtin-broker.md.
 */
#ifndef WORKERBUS_BUNDLED_H
#define WORKERBUS_BUNDLED_H

#include <stdbool.h>

#include "common.h"
#include "config.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A running bundled broker. */
typedef struct wb_bundled wb_bundled;

/**
 * The default largest payload a worker may publish to the bundled broker:
 * 128 KiB, as IoT Core. MQTT_BROKER_BUILTIN_MAX_PAYLOAD changes it, up to
 * ::WB_BUNDLED_MAX_PAYLOAD_LIMIT. A larger payload is refused without
 * touching the queue (MQTT 5: PUBACK reason code 135; MQTT 3.1.1:
 * acknowledged and recorded in the dlq queue).
 */
#define WB_BUNDLED_MAX_PAYLOAD (128u * 1024u)
/**
 * The highest payload limit that can be configured: its envelope (base64 of
 * the payload plus the three added fields, which take under 512 bytes) still
 * fits the message queue's default body limit ::WB_QUEUE_BODY_DEFAULT_MAX of
 * 256 KiB, so any accepted payload can be queued.
 */
#define WB_BUNDLED_MAX_PAYLOAD_LIMIT (256u * 1024u / 4u * 3u - 512u)
/**
 * The largest MQTT packet the bundled broker reads at all: beyond it
 * Mosquitto closes the connection at the packet's header, before reading
 * or storing its body (MQTT 5: DISCONNECT reason code 149).
 */
#define WB_BUNDLED_MAX_PACKET (16u * 1024u * 1024u)

/** Options of wb_bundled_start(). Initialize with ::WB_BUNDLED_OPTS_INIT. */
typedef struct wb_bundled_opts {
    unsigned int version;          /**< ::WB_BUNDLED_OPTS_VERSION */
    unsigned int start_timeout_ms; /**< how long to wait for the listener; 0: 15000 */
    unsigned int restart_min_ms;   /**< first restart delay; 0: 250 */
    unsigned int restart_max_ms;   /**< longest restart delay; 0: 15000 */
    /** Seconds between saves of the broker's in-memory state to its
     *  persistence file (Mosquitto's autosave_interval). 0: every 5 s
     *  without PostgreSQL; with it (a replica, whose outbox keeps what waits
     *  for workers), at exit only, and a broker killed without warning
     *  restarts empty. What a killed broker had not saved is lost: see
     *  docs/builtin-broker.md. */
    unsigned int autosave_interval_s;
    /** The topic rule (docs/builtin-broker.md): what workers publish on
     *  their writeonly topics is written into the configuration's iot queue
     *  before the broker acknowledges it. On by default; tests that bring up
     *  a broker without a queue turn it off. Version 2. */
    bool no_topic_rule;
    /** Lines appended verbatim to the generated mosquitto.conf (more
     *  listeners, say), or NULL. Version 2. */
    const char *extra_conf;
} wb_bundled_opts;

#define WB_BUNDLED_OPTS_VERSION 2
/* clang-format off */
#define WB_BUNDLED_OPTS_INIT {WB_BUNDLED_OPTS_VERSION, 0, 0, 0, 0, false, NULL}
/* clang-format on */

/**
 * Starts the bundled broker for a builtin configuration.
 * @param config  a configuration with MQTT_BROKER_TYPE=builtin; it must
 *                outlive the broker.
 * @param opts    NULL: the defaults of ::WB_BUNDLED_OPTS_INIT.
 * @param out     receives the handle, owned by the caller (wb_bundled_stop()).
 * @param detail  if not NULL, on failure receives what went wrong and what to
 *                fix (wb_free()).
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (not a builtin configuration,
 *         bad opts); ::WB_ERR_BUSY (the listen port is taken);
 *         ::WB_ERR_IO (the runtime directory or the credentials cannot be
 *         written or read); ::WB_ERR_BACKEND (Mosquitto refused to start,
 *         e.g. a certificate it cannot load; detail quotes its log);
 *         ::WB_ERR_TIMEOUT (no listener within start_timeout_ms);
 *         ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_bundled_start(const wb_config *config, const wb_bundled_opts *opts,
                               wb_bundled **out, char **detail);

/**
 * Stops the broker (SIGTERM, then SIGKILL after 10 s), waits for the child
 * and the supervisor, and frees the handle. NULL is ignored.
 * @return ::WB_OK, or ::WB_ERR_TIMEOUT when SIGKILL was needed.
 */
WB_API wb_err wb_bundled_stop(wb_bundled *broker);

/**
 * Reloads what can change without a restart: the credentials (the broker's
 * certificate and key, the CA, the token key, e.g. after
 * `workerbus pki reissue-broker`), the log level and the queue settings of
 * the topic rule. Writes Mosquitto's configuration and credential copies
 * again and sends it SIGHUP; Mosquitto 2.0 then reads its file and reloads
 * its listeners' certificates, and restarts its plugins (connections stay up).
 * @param config  the configuration to use from now on (it must then outlive
 *                the broker), or NULL to read the files of the current one
 *                again. The listener, the runtime directory and the
 *                executable must not differ: they need a restart.
 * Thread: any, but not concurrently with wb_bundled_stop().
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (not builtin, or a change that
 *         needs a restart; detail says which); ::WB_ERR_IO (a file cannot
 *         be written, or Mosquitto cannot be signalled).
 */
WB_API wb_err wb_bundled_reload(wb_bundled *broker, const wb_config *config, char **detail);

/** The process id of the current Mosquitto child, or 0 while it is down. */
WB_API int wb_bundled_pid(const wb_bundled *broker);

/** How many times the supervisor restarted Mosquitto. */
WB_API unsigned int wb_bundled_restarts(const wb_bundled *broker);

/**
 * Waits until the listener accepts connections (after a restart, say).
 * @return ::WB_OK, or ::WB_ERR_TIMEOUT.
 */
WB_API wb_err wb_bundled_wait_ready(wb_bundled *broker, unsigned int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
