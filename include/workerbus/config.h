/**
 * @file config.h
 * The validated, immutable configuration of workerbus.
 *
 * The environment is read once, by wb_config_load(), into a ::wb_config that
 * never changes afterwards: any number of threads may read one concurrently.
 * Every problem is found in one pass and returned in a ::wb_config_report,
 * so an operator sees all of them at once. Backends never read the
 * environment themselves.
 *
 * Typical start-up:
 * @code
 *   wb_config *cfg = NULL;
 *   wb_config_report *rep = NULL;
 *   wb_err err = wb_config_load(NULL, &cfg, &rep);
 *   if (err != WB_OK) {
 *       char *text = wb_config_report_format(rep, WB_REPORT_TEXT);
 *       fputs(text ? text : wb_strerror(err), stderr);
 *       wb_free(text);
 *       wb_config_report_free(rep);
 *       exit(78);
 *   }
 *   wb_config_report_free(rep);   // warnings, if any, were in it
 * @endcode
 */
#ifndef WORKERBUS_CONFIG_H
#define WORKERBUS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Broker types (MQTT_BROKER_TYPE). */
typedef enum wb_broker_type {
    WB_BROKER_IOTCORE = 0, /**< AWS IoT Core, reached with Paho MQTT C over TLS */
    WB_BROKER_BUILTIN = 1, /**< the bundled Mosquitto broker */
} wb_broker_type;

/** Message-queue types (MESSAGE_QUEUE_TYPE). */
typedef enum wb_queue_type {
    WB_QUEUE_SQS = 0,      /**< Amazon SQS (or a stand-in speaking its protocol) */
    WB_QUEUE_POSTGRES = 1, /**< PostgreSQL, through DATABASE_URL */
} wb_queue_type;

/** Log levels, from most to least verbose. */
typedef enum wb_log_level {
    WB_LOG_DEBUG = 0,
    WB_LOG_INFO = 1,
    WB_LOG_WARN = 2,
    WB_LOG_ERROR = 3,
} wb_log_level;

/** How the iotcore backend reaches IoT Core (MQTT_BROKER_IOTCORE_TRANSPORT). */
typedef enum wb_iotcore_transport {
    WB_IOT_HTTPS = 0,      /**< "https": the data-plane Publish API, SigV4; publish only */
    WB_IOT_MQTTS = 1,      /**< "mqtts": MQTT, mutual TLS on 8883 */
    WB_IOT_MQTTS_ALPN = 2, /**< "mqtts-alpn": MQTT, mutual TLS on 443, ALPN x-amzn-mqtt-ca */
    WB_IOT_WSS = 3,        /**< "wss": MQTT over WebSocket on 443 (/mqtt), SigV4 */
} wb_iotcore_transport;

/** The eight logical queues. */
typedef enum wb_logical_queue {
    WB_LQ_ASYNC_JOBS = 0,  /**< "async-jobs" */
    WB_LQ_ASYNC_JOBS_FIFO, /**< "async-jobs.fifo" (FIFO) */
    WB_LQ_CRONJOBS,        /**< "cronjobs" */
    WB_LQ_DLQ,             /**< "dlq" */
    WB_LQ_DLQ_FIFO,        /**< "dlq.fifo" (FIFO) */
    WB_LQ_EVENTS_INBOX,    /**< "events-inbox" */
    WB_LQ_IOT,             /**< "iot": worker heartbeats and run progress */
    WB_LQ_WEBHOOKS,        /**< "webhooks" */
    WB_LQ__COUNT
} wb_logical_queue;

/** "iotcore" or "builtin"; NULL for a value outside the enum. */
WB_API const char *wb_broker_type_name(wb_broker_type type);
/** "sqs" or "postgres"; NULL for a value outside the enum. */
WB_API const char *wb_queue_type_name(wb_queue_type type);
/** "debug", "info", "warn" or "error"; NULL for a value outside the enum. */
WB_API const char *wb_log_level_name(wb_log_level level);
/** The logical queue's name, e.g. "async-jobs.fifo"; NULL outside the enum. */
WB_API const char *wb_logical_queue_name(wb_logical_queue q);
/** The variable holding the queue's SQS URL, e.g. "MESSAGE_QUEUE_SQS_IOT_URL". */
WB_API const char *wb_logical_queue_variable(wb_logical_queue q);
/** Whether the logical queue is a FIFO queue (async-jobs.fifo, dlq.fifo). */
WB_API bool wb_logical_queue_is_fifo(wb_logical_queue q);

/** An opaque, validated, immutable configuration. */
typedef struct wb_config wb_config;
/** An opaque list of the problems found while loading, and the settings seen. */
typedef struct wb_config_report wb_config_report;

/** Severity of a configuration problem. */
typedef enum wb_severity {
    WB_SEVERITY_ERROR = 0,   /**< the configuration cannot be used */
    WB_SEVERITY_WARNING = 1, /**< usable, but probably not what was meant */
} wb_severity;

/** One problem found while loading. All strings belong to the report. */
typedef struct wb_config_issue {
    wb_severity severity;
    /** The variable at fault (e.g. "MQTT_BROKER_ENDPOINT"), or for a
     *  malformed line of an environment file, "FILE:LINE". Never NULL. */
    const char *variable;
    /** The value as given, with secrets replaced by "****" and control bytes
     *  written as \\xNN; NULL when the variable is unset. */
    const char *value;
    /** What is wrong and what would be accepted. Never NULL. */
    const char *message;
    /** How to fix it, or NULL. */
    const char *hint;
} wb_config_issue;

/** Where an effective setting came from. */
typedef enum wb_config_origin {
    WB_ORIGIN_UNSET = 0,   /**< not set, and no default */
    WB_ORIGIN_DEFAULT = 1, /**< not set (or empty): the default applies */
    WB_ORIGIN_SET = 2,     /**< set by the environment */
} wb_config_origin;

/** One known variable, as the configuration sees it. Strings belong to the report. */
typedef struct wb_config_setting {
    const char *variable; /**< never NULL */
    /** The effective value (redacted, control bytes escaped); NULL when unset. */
    const char *value;
    wb_config_origin origin;
    /** false when the rest of the configuration makes this variable irrelevant
     *  (e.g. DATABASE_URL with MESSAGE_QUEUE_TYPE=sqs). */
    bool used;
    /** true when the value holds a secret (shown redacted). */
    bool secret;
} wb_config_setting;

/** Options of wb_config_load(). Initialize with ::WB_CONFIG_LOAD_OPTS_INIT. */
typedef struct wb_config_load_opts {
    /** Must be ::WB_CONFIG_LOAD_OPTS_VERSION. */
    unsigned int version;
    /** A NULL-terminated array of "KEY=VALUE" strings to read instead of the
     *  process environment. The strings are copied. */
    const char *const *env;
    /** The path of a file of KEY=VALUE lines to read instead of the process
     *  environment (syntax in docs/configuration.md). Exclusive with env. */
    const char *env_file;
    /** A NULL-terminated array of "KEY=VALUE" strings applied on top of the
     *  source (env, env_file or the process environment); "KEY=" unsets. */
    const char *const *overrides;
    /** What to read and check: ::WB_CONFIG_ALL (0), or ::WB_CONFIG_QUEUE for
     *  a program that uses the message queue only. Version 2. */
    unsigned int parts;
} wb_config_load_opts;

/** wb_config_load_opts.parts: every variable (the default). */
#define WB_CONFIG_ALL 0u
/** wb_config_load_opts.parts: the message queue's variables only
 *  (MESSAGE_QUEUE_TYPE, DATABASE_URL, MESSAGE_QUEUE_SQS_*_URL, AWS_REGION,
 *  AWS_DEFAULT_REGION, and MQTT_BROKER_TYPE when it is set: postgres is
 *  refused with iotcore). The broker's variables are neither read nor
 *  checked, and the configuration serves wb_queue_open() and the queue
 *  accessors, not wb_broker_open(). */
#define WB_CONFIG_QUEUE 1u

#define WB_CONFIG_LOAD_OPTS_VERSION 2
/* clang-format off */
#define WB_CONFIG_LOAD_OPTS_INIT {WB_CONFIG_LOAD_OPTS_VERSION, NULL, NULL, NULL, WB_CONFIG_ALL}
/* clang-format on */

/**
 * Reads and validates the configuration.
 *
 * @param opts    where to read from; NULL reads the process environment.
 * @param config  on ::WB_OK, receives a new configuration, owned by the caller
 *                (wb_config_free()); otherwise set to NULL. May be NULL to
 *                only validate.
 * @param report  if not NULL, receives a new report, owned by the caller
 *                (wb_config_report_free()), on every return except
 *                ::WB_ERR_INVALID_ARGUMENT and ::WB_ERR_NO_MEMORY, where it
 *                is set to NULL.
 * @return ::WB_OK when there is no error (warnings may exist);
 *         ::WB_ERR_CONFIG when at least one error was found;
 *         ::WB_ERR_IO when env_file cannot be read (the report says why);
 *         ::WB_ERR_INVALID_ARGUMENT for a bad opts (version not 1 or 2, env
 *         and env_file both set, unknown parts);
 *         ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_config_load(const wb_config_load_opts *opts, wb_config **config,
                             wb_config_report **report);

/** Frees a configuration; NULL is ignored. */
WB_API void wb_config_free(wb_config *config);

/** @name Accessors. Strings belong to the configuration and live as long as it. */
/** @{ */
WB_API wb_broker_type wb_config_broker_type(const wb_config *config);
/** MQTT_BROKER_ENDPOINT as given (iotcore: lower-cased). */
WB_API const char *wb_config_broker_endpoint(const wb_config *config);
/** The endpoint's host; an IPv6 address comes without brackets. */
WB_API const char *wb_config_broker_host(const wb_config *config);
/** builtin: the endpoint's port; iotcore: 8883. */
WB_API unsigned int wb_config_broker_port(const wb_config *config);
/** builtin: true for a tls:// endpoint; iotcore: always true. */
WB_API bool wb_config_broker_tls(const wb_config *config);
/** iotcore: the region named by the endpoint; builtin: NULL. */
WB_API const char *wb_config_iotcore_region(const wb_config *config);
/** What the bundled Mosquitto logs (MQTT_BROKER_BUILTIN_LOG_LEVEL). */
WB_API wb_log_level wb_config_builtin_log_level(const wb_config *config);
/** The level of `workerbus serve`'s log (WORKERBUS_LOG_LEVEL, default info).
 *  The library does not apply it: a program sets it with wb_log_set_level(). */
WB_API wb_log_level wb_config_log_level(const wb_config *config);
/** The topic namespace (MQTT_BROKER_IOTCORE_NAMESPACE, used by both types). */
WB_API const char *wb_config_namespace(const wb_config *config);
WB_API wb_queue_type wb_config_queue_type(const wb_config *config);
/** postgres: DATABASE_URL, including its password (a secret: never log it);
 *  sqs: NULL. */
WB_API const char *wb_config_database_url(const wb_config *config);
/** sqs: the queue's URL; postgres: NULL. */
WB_API const char *wb_config_sqs_url(const wb_config *config, wb_logical_queue q);
/** AWS_REGION, else AWS_DEFAULT_REGION, else the region named by the IoT Core
 *  endpoint or the SQS queue URLs, else NULL. */
WB_API const char *wb_config_aws_region(const wb_config *config);
/** builtin: the address the bundled broker listens on (MQTT_BROKER_BUILTIN_LISTEN,
 *  by default the endpoint's host); IPv6 without brackets. iotcore: NULL. */
WB_API const char *wb_config_builtin_listen_host(const wb_config *config);
/** builtin: the port the bundled broker listens on; iotcore: 0. */
WB_API unsigned int wb_config_builtin_listen_port(const wb_config *config);
/** builtin: the largest payload a worker may publish, in bytes
 *  (MQTT_BROKER_BUILTIN_MAX_PAYLOAD, by default ::WB_BUNDLED_MAX_PAYLOAD);
 *  iotcore: 0. */
WB_API size_t wb_config_builtin_max_payload(const wb_config *config);

/** The builtin broker's replica id (MQTT_BROKER_BUILTIN_REPLICA_ID, by
 *  default the host name) when replicas coordinate through DATABASE_URL;
 *  NULL without DATABASE_URL, or for iotcore. */
WB_API const char *wb_config_builtin_replica_id(const wb_config *config);
/** iotcore: the transport; builtin: WB_IOT_HTTPS (meaningless). */
WB_API wb_iotcore_transport wb_config_iotcore_transport(const wb_config *config);
/** iotcore: the host and port of MQTT_BROKER_IOTCORE_CONNECT_TO when it is
 *  set and allowed (connections go there; TLS still checks the endpoint's
 *  name), else NULL and 0. */
WB_API const char *wb_config_iotcore_connect_host(const wb_config *config);
WB_API unsigned int wb_config_iotcore_connect_port(const wb_config *config);
/** The effective value of any known variable (a default when unset), or NULL
 *  when unset without default or when the name is not a known variable. */
WB_API const char *wb_config_get(const wb_config *config, const char *variable);
/** @} */

/** Number of errors or warnings in the report. */
WB_API size_t wb_config_report_count(const wb_config_report *report, wb_severity severity);
/** The i-th error or warning, in the order found; NULL when i is out of range. */
WB_API const wb_config_issue *wb_config_report_issue(const wb_config_report *report,
                                                     wb_severity severity, size_t i);
/** Number of known variables described by the report. */
WB_API size_t wb_config_report_setting_count(const wb_config_report *report);
/** The i-th known variable, in documentation order; NULL when out of range. */
WB_API const wb_config_setting *wb_config_report_setting(const wb_config_report *report, size_t i);
/** A human-readable description of the source read (e.g. "the process environment"). */
WB_API const char *wb_config_report_source(const wb_config_report *report);

/** Output formats of wb_config_report_format(). */
typedef enum wb_report_format {
    /** Effective configuration, then every error and warning, then a summary line. */
    WB_REPORT_TEXT = 0,
    /** {"valid":bool,"errors":[...],"warnings":[...],"config":{...}} */
    WB_REPORT_JSON = 1,
    /** Errors and warnings only, one per line (for a log at start-up). */
    WB_REPORT_PROBLEMS = 2,
} wb_report_format;

/**
 * Formats the report.
 * @return a new NUL-terminated string owned by the caller (wb_free()), or
 *         NULL when report is NULL, the format unknown, or memory runs out.
 */
WB_API char *wb_config_report_format(const wb_config_report *report, wb_report_format format);

/** Frees a report; NULL is ignored. */
WB_API void wb_config_report_free(wb_config_report *report);

/** Frees memory that a workerbus function returned to the caller. */
WB_API void wb_free(void *ptr);

/**
 * A copy of s[0..n) that is safe to show on a terminal or in a log line, as
 * workerbus shows every value it echoes: bytes below 0x20, 0x7f, C1 controls
 * (U+0080-U+009F) and invalid UTF-8 become \xNN, a backslash becomes \\;
 * valid UTF-8 text is kept. s may hold NUL bytes; NULL is taken as empty.
 * @return a new string owned by the caller (wb_free()), or NULL when out of
 *         memory.
 */
WB_API char *wb_escape(const void *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
