/* Shared between config.c and config_report.c. */
#ifndef WB_CONFIG_INTERNAL_H
#define WB_CONFIG_INTERNAL_H

#include "config_views.h"
#include "wb_internal.h"

/* The known variables, in documentation order. The SQS URLs follow the order
 * of wb_logical_queue. */
enum wb__var {
    WB__V_BROKER_TYPE,
    WB__V_ENDPOINT,
    WB__V_LOG_LEVEL,
    WB__V_NAMESPACE,
    WB__V_I_TRANSPORT,
    WB__V_I_CERT_FILE,
    WB__V_I_KEY_FILE,
    WB__V_I_CA_FILE,
    WB__V_I_CONNECT_TO,
    WB__V_I_ALLOW_CONNECT_TO,
    WB__V_B_PKI_DIR,
    WB__V_B_CA_FILE,
    WB__V_B_CA_KEY_FILE,
    WB__V_B_CERT_FILE,
    WB__V_B_KEY_FILE,
    WB__V_B_CLIENT_CERT_FILE,
    WB__V_B_CLIENT_KEY_FILE,
    WB__V_B_TOKEN_KEY_FILE,
    WB__V_B_LISTEN,
    WB__V_B_RUNTIME_DIR,
    WB__V_B_MOSQUITTO,
    WB__V_B_PLUGIN,
    WB__V_B_MAX_PAYLOAD,
    WB__V_B_REPLICA_ID,
    WB__V_B_REPLICA_TIMEOUT,
    WB__V_B_OUTBOX_EXPIRY,
    WB__V_B_OUTBOX_MAX_PER_WORKER,
    WB__V_B_OUTBOX_MAX,
    WB__V_B_TOPIC_RULE_ACK,
    WB__V_B_LAST = WB__V_B_TOPIC_RULE_ACK,
    WB__V_QUEUE_TYPE,
    WB__V_DATABASE_URL,
    WB__V_SQS_FIRST,
    WB__V_SQS_LAST = WB__V_SQS_FIRST + WB_LQ__COUNT - 1,
    WB__V_AWS_REGION,
    WB__V_AWS_DEFAULT_REGION,
    WB__V_SERVE_LOG_LEVEL,
    WB__V_COUNT
};

/* One row of the table of variables (config.c). */
typedef struct wb__var_def {
    const char *name;
    const char *def;         /* the default; NULL: none, or derived from another variable */
    bool secret;             /* its value is never shown */
    const char *owner;       /* core, builtin, iotcore, postgres, sqs, aws */
    const char *description; /* a few words */
} wb__var_def;

/* The table, WB__V_COUNT rows in enum wb__var's order. */
const wb__var_def *wb__config_vars(size_t *count);

typedef struct wb__issue_list {
    wb_config_issue *items;
    size_t count, cap;
} wb__issue_list;

struct wb_config_report {
    char *source;
    wb__issue_list issues[2]; /* by wb_severity */
    wb_config_setting settings[WB__V_COUNT];
};

struct wb_config {
    char *values[WB__V_COUNT]; /* effective values, defaults included; NULL: unset */
    wb_broker_type broker;
    wb_queue_type queue;
    wb_log_level log_level;
    wb_log_level serve_log_level; /* WORKERBUS_LOG_LEVEL */
    char *host;
    unsigned port;
    bool tls;
    char *iot_region;
    const char *region; /* points into values[] or iot_region or sqs_region */
    char *sqs_region;
    /* builtin broker */
    char *listen_host;
    unsigned listen_port;
    size_t max_payload; /* MQTT_BROKER_BUILTIN_MAX_PAYLOAD, bytes */
    bool replicas;      /* DATABASE_URL set: replicas coordinate through it */
    unsigned replica_timeout_s, outbox_expiry_s, outbox_max_per_worker, outbox_max;
    bool ack_received; /* MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received */
    /* iotcore */
    int iot_transport;  /* wb_iotcore_transport */
    char *connect_host; /* MQTT_BROKER_IOTCORE_CONNECT_TO, when allowed */
    unsigned connect_port;
    /* the typed views (config_views.h), filled once the configuration is
     * valid; they point into this struct */
    wb__builtin_view builtin_view;
    wb__iotcore_view iotcore_view;
};

/* The state of one wb_config_load() call. */
typedef struct wb__loader {
    wb__kv_list kv;
    size_t overrides_from; /* kv items from here on came from opts->overrides */
    const char *file;      /* for "FILE:LINE" in problems */
    /* per known variable: the entry that sets it (last one wins) */
    const wb__kv *set[WB__V_COUNT];
    bool bad[WB__V_COUNT]; /* a generic check (NUL, length) already failed */
    wb_config_report *rep;
    struct wb_config *cfg;
    bool oom;
    bool broker_known, queue_known;
    char *sqs_regions[WB_LQ__COUNT];
    /* defaults computed from other variables (e.g. files in the PKI dir) */
    char *derived[WB__V_COUNT];
} wb__loader;

static inline bool wb__cfg_is_set(const wb__loader *L, enum wb__var v)
{
    return L->set[v] && L->set[v]->value_len > 0;
}

/* The value of a set, non-empty variable, else NULL. */
static inline const char *wb__cfg_raw(const wb__loader *L, enum wb__var v)
{
    return wb__cfg_is_set(L, v) ? L->set[v]->value : NULL;
}

static inline size_t wb__cfg_raw_len(const wb__loader *L, enum wb__var v)
{
    return wb__cfg_is_set(L, v) ? L->set[v]->value_len : 0;
}

#define WB__ERR  WB_SEVERITY_ERROR
#define WB__WARN WB_SEVERITY_WARNING

/* Records a problem on known variable v (its value is shown, redacted). */
void wb__cfg_problem(wb__loader *L, wb_severity sev, enum wb__var v, const char *fmt, ...)
    WB__PRINTF(4, 5);
/* The same with a hint, which is taken over (heap memory or NULL). */
void wb__cfg_problem_hint(wb__loader *L, wb_severity sev, enum wb__var v, char *hint,
                          const char *fmt, ...) WB__PRINTF(5, 6);
/* Records a problem; every string is taken over (heap memory). */
void wb__cfg_issue_push(wb__loader *L, wb_severity sev, char *variable, char *value, char *message,
                        char *hint);
char *wb__cfg_display_value(enum wb__var v, const char *s, size_t n);

const char *wb__var_name(enum wb__var v);

/* The value in force: the set value, else a derived default, else the
 * static default, else NULL. */
const char *wb__cfg_effective(const wb__loader *L, enum wb__var v);

/* Checks of IoT Core's variables (config_iotcore.c). */
void wb__cfg_check_iotcore(wb__loader *L);
bool wb__cfg_iotcore_var_used(const wb__loader *L, enum wb__var v);

/* Checks of the built-in broker's variables (config_builtin.c). */
void wb__cfg_check_builtin(wb__loader *L);
/* Whether a variable is relevant to the configuration loaded so far. */
bool wb__cfg_builtin_var_used(const wb__loader *L, enum wb__var v);

#endif
