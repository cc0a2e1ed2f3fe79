/* The configuration: read once from the environment (or a list, or a file),
 * validated in one pass that records every problem, then frozen. */
#include <arpa/inet.h>
#include <errno.h>
#ifdef WB_HAVE_LIBPQ
#include <libpq-fe.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"

extern char **environ;

/* Values longer than this are refused before any other check. */
#define VALUE_MAX_BYTES 8192

/* Every variable workerbus reads, in one table: its name, its default (NULL:
 * none, or one derived from another variable), whether its value is a
 * secret, the part of workerbus that uses it, and what it is. The report,
 * `workerbus check` and docs/configuration.md's summary come from it (a test
 * compares that summary with this table). */
#define SQS_URL(q, var, what)                                                                      \
    [WB__V_SQS_FIRST + (q)] = {var, NULL, false, "sqs", "the URL of the " what " queue"}
static const wb__var_def vars[WB__V_COUNT] = {
    [WB__V_BROKER_TYPE] = {"MQTT_BROKER_TYPE", "iotcore", false, "core",
                           "the broker: iotcore or builtin"},
    [WB__V_ENDPOINT] = {"MQTT_BROKER_ENDPOINT", NULL, false, "core",
                        "the endpoint workers use to reach the broker"},
    [WB__V_LOG_LEVEL] = {"MQTT_BROKER_BUILTIN_LOG_LEVEL", "error", false, "builtin",
                         "what the bundled Mosquitto logs"},
    [WB__V_NAMESPACE] = {"MQTT_BROKER_IOTCORE_NAMESPACE", "spacelift", false, "core",
                         "the first levels of every topic"},
    [WB__V_I_TRANSPORT] = {"MQTT_BROKER_IOTCORE_TRANSPORT", "https", false, "iotcore",
                           "how the server reaches IoT Core"},
    [WB__V_I_CERT_FILE] = {"MQTT_BROKER_IOTCORE_CERT_FILE", NULL, false, "iotcore",
                           "the server's thing certificate (mutual TLS)"},
    [WB__V_I_KEY_FILE] = {"MQTT_BROKER_IOTCORE_KEY_FILE", NULL, false, "iotcore",
                          "its private key"},
    [WB__V_I_CA_FILE] = {"MQTT_BROKER_IOTCORE_CA_FILE", "/etc/ssl/certs/Amazon_Root_CA_1.pem",
                         false, "iotcore", "the CA IoT Core's certificate must chain to"},
    [WB__V_I_CONNECT_TO] = {"MQTT_BROKER_IOTCORE_CONNECT_TO", NULL, false, "iotcore",
                            "another address for the endpoint (test stand-ins)"},
    [WB__V_I_ALLOW_CONNECT_TO] = {"MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO", "false", false, "iotcore",
                                  "allows MQTT_BROKER_IOTCORE_CONNECT_TO"},
    [WB__V_B_PKI_DIR] = {"MQTT_BROKER_BUILTIN_PKI_DIR", NULL, false, "builtin",
                         "a directory made by workerbus pki init"},
    [WB__V_B_CA_FILE] = {"MQTT_BROKER_BUILTIN_CA_FILE", NULL, false, "builtin",
                         "the CA that signs worker certificates"},
    [WB__V_B_CA_KEY_FILE] = {"MQTT_BROKER_BUILTIN_CA_KEY_FILE", NULL, false, "builtin",
                             "the CA's key, for signing requests"},
    [WB__V_B_CERT_FILE] = {"MQTT_BROKER_BUILTIN_CERT_FILE", NULL, false, "builtin",
                           "the broker's TLS certificate"},
    [WB__V_B_KEY_FILE] = {"MQTT_BROKER_BUILTIN_KEY_FILE", NULL, false, "builtin",
                          "the broker's TLS key"},
    [WB__V_B_CLIENT_CERT_FILE] = {"MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE", NULL, false, "builtin",
                                  "the server's own client certificate"},
    [WB__V_B_CLIENT_KEY_FILE] = {"MQTT_BROKER_BUILTIN_CLIENT_KEY_FILE", NULL, false, "builtin",
                                 "the server's own client key"},
    [WB__V_B_TOKEN_KEY_FILE] = {"MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE", NULL, false, "builtin",
                                "the key of the passwords of a plain listener"},
    [WB__V_B_LISTEN] = {"MQTT_BROKER_BUILTIN_LISTEN", NULL, false, "builtin",
                        "the address the bundled broker listens on"},
    [WB__V_B_RUNTIME_DIR] = {"MQTT_BROKER_BUILTIN_RUNTIME_DIR", "/var/lib/workerbus/broker", false,
                             "builtin", "the bundled broker's files and persistence"},
    [WB__V_B_MOSQUITTO] = {"MQTT_BROKER_BUILTIN_MOSQUITTO", "mosquitto", false, "builtin",
                           "the mosquitto executable"},
    [WB__V_B_PLUGIN] = {"MQTT_BROKER_BUILTIN_PLUGIN", NULL, false, "builtin",
                        "the workerbus Mosquitto plugin"},
    [WB__V_B_MAX_PAYLOAD] = {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "131072", false, "builtin",
                             "the largest payload a worker may publish, in bytes"},
    [WB__V_B_REPLICA_ID] = {"MQTT_BROKER_BUILTIN_REPLICA_ID", NULL, false, "builtin",
                            "this replica's unique name among the replicas"},
    [WB__V_B_REPLICA_TIMEOUT] = {"MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT", "15", false, "builtin",
                                 "seconds without a heartbeat after which a replica is gone"},
    [WB__V_B_OUTBOX_EXPIRY] = {"MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY", "3600", false, "builtin",
                               "seconds a message waits in the outbox for its worker"},
    [WB__V_B_OUTBOX_MAX_PER_WORKER] = {"MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER", "10000", false,
                                       "builtin", "messages the outbox holds for one worker"},
    [WB__V_B_OUTBOX_MAX] = {"MQTT_BROKER_BUILTIN_OUTBOX_MAX", "1000000", false, "builtin",
                            "messages the outbox holds in all"},
    [WB__V_B_TOPIC_RULE_ACK] = {"MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK", "committed", false, "builtin",
                                "when the broker acknowledges a worker message: committed (once "
                                "in the queue) or received (before, as IoT Core)"},
    [WB__V_QUEUE_TYPE] = {"MESSAGE_QUEUE_TYPE", "sqs", false, "core",
                          "the message queue: sqs or postgres"},
    [WB__V_DATABASE_URL] = {"DATABASE_URL", NULL, true, "postgres",
                            "the PostgreSQL database (libpq URI or key=value)"},
    SQS_URL(WB_LQ_ASYNC_JOBS, "MESSAGE_QUEUE_SQS_ASYNC_URL", "async-jobs"),
    SQS_URL(WB_LQ_ASYNC_JOBS_FIFO, "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL", "async-jobs.fifo"),
    SQS_URL(WB_LQ_CRONJOBS, "MESSAGE_QUEUE_SQS_CRONJOBS_URL", "cronjobs"),
    SQS_URL(WB_LQ_DLQ, "MESSAGE_QUEUE_SQS_DLQ_URL", "dlq"),
    SQS_URL(WB_LQ_DLQ_FIFO, "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL", "dlq.fifo"),
    SQS_URL(WB_LQ_EVENTS_INBOX, "MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL", "events-inbox"),
    SQS_URL(WB_LQ_IOT, "MESSAGE_QUEUE_SQS_IOT_URL", "iot"),
    SQS_URL(WB_LQ_WEBHOOKS, "MESSAGE_QUEUE_SQS_WEBHOOKS_URL", "webhooks"),
    [WB__V_AWS_REGION] = {"AWS_REGION", NULL, false, "aws", "the AWS region"},
    [WB__V_AWS_DEFAULT_REGION] = {"AWS_DEFAULT_REGION", NULL, false, "aws",
                                  "the AWS region when AWS_REGION is unset"},
    [WB__V_SERVE_LOG_LEVEL] = {"WORKERBUS_LOG_LEVEL", "info", false, "core",
                               "what workerbus serve logs: its own lines and the library's"},
};
#undef SQS_URL

const wb__var_def *wb__config_vars(size_t *count)
{
    *count = WB__V_COUNT;
    return vars;
}

static const char *const lq_names[WB_LQ__COUNT] = {
    "async-jobs", "async-jobs.fifo", "cronjobs", "dlq",
    "dlq.fifo",   "events-inbox",    "iot",      "webhooks",
};

static const char *const broker_types[] = {"iotcore", "builtin", NULL};
static const char *const queue_types[] = {"sqs", "postgres", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

#define ENDPOINT_COMMAND                                                                           \
    "aws iot describe-endpoint --endpoint-type iot:Data-ATS --region \"%s\" --no-cli-pager "       \
    "--output json | jq -r '.endpointAddress'"

const char *wb__cfg_effective(const wb__loader *L, enum wb__var v)
{
    if (wb__cfg_raw(L, v))
        return wb__cfg_raw(L, v);
    return L->derived[v] ? L->derived[v] : vars[v].def;
}

const char *wb__var_name(enum wb__var v)
{
    return vars[v].name;
}

WB_API const char *wb_broker_type_name(wb_broker_type type)
{
    return (unsigned)type < 2 ? broker_types[type] : NULL;
}

WB_API const char *wb_queue_type_name(wb_queue_type type)
{
    return (unsigned)type < 2 ? queue_types[type] : NULL;
}

WB_API const char *wb_log_level_name(wb_log_level level)
{
    return (unsigned)level < 4 ? log_levels[level] : NULL;
}

WB_API const char *wb_logical_queue_name(wb_logical_queue q)
{
    return (unsigned)q < WB_LQ__COUNT ? lq_names[q] : NULL;
}

WB_API const char *wb_logical_queue_variable(wb_logical_queue q)
{
    return (unsigned)q < WB_LQ__COUNT ? vars[WB__V_SQS_FIRST + q].name : NULL;
}

WB_API bool wb_logical_queue_is_fifo(wb_logical_queue q)
{
    return q == WB_LQ_ASYNC_JOBS_FIFO || q == WB_LQ_DLQ_FIFO;
}

/* ---- the loader --------------------------------------------------------- */

/* A value as it may be shown: secrets redacted, control bytes escaped. */
char *wb__cfg_display_value(enum wb__var v, const char *s, size_t n)
{
    wb__buf red = WB__BUF_INIT;
    if (v == WB__V_DATABASE_URL)
        wb__redact_conninfo(&red, s, n);
    else
        wb__redact_url(&red, s, n);
    if (red.failed)
        return NULL;
    wb__buf out = WB__BUF_INIT;
    wb__buf_put_escaped(&out, red.data ? red.data : "", red.len);
    wb__buf_free(&red);
    return wb__buf_take(&out);
}

/* text with control bytes, C1 controls and invalid UTF-8 escaped, as values
 * are, but backslashes kept (a message may quote an escaped value); takes
 * text over. */
static char *sanitized(char *text)
{
    if (!text)
        return NULL;
    const unsigned char *u = (const unsigned char *)text;
    size_t n = strlen(text);
    bool clean = true;
    for (size_t i = 0; i < n && clean;) {
        size_t seq = u[i] >= 0x80 ? wb__utf8_seq_len(u + i, n - i) : 1;
        if (u[i] < 0x20 || u[i] == 0x7f || seq == 0 ||
            (seq == 2 && u[i] == 0xC2 && u[i + 1] < 0xA0))
            clean = false;
        i += seq ? seq : 1;
    }
    if (clean)
        return text;
    wb__buf b = WB__BUF_INIT;
    for (size_t i = 0; i < n;) { /* backslashes as they are, the rest escaped */
        size_t j = i;
        while (j < n && u[j] != '\\')
            j++;
        wb__buf_put_escaped(&b, text + i, j - i);
        if (j < n)
            wb__buf_putc(&b, '\\');
        i = j + 1;
    }
    free(text);
    return wb__buf_take(&b);
}

void wb__cfg_issue_push(wb__loader *L, wb_severity sev, char *variable, char *value, char *message,
                        char *hint)
{
    wb__issue_list *l = &L->rep->issues[sev];
    /* a message or hint may quote what the user gave: no raw control bytes
     * may reach a terminal, whatever built the text */
    message = sanitized(message);
    hint = sanitized(hint);
    variable = sanitized(variable);
    if (!variable || !message || L->oom) {
        L->oom = true;
        goto fail;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        wb_config_issue *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            L->oom = true;
            goto fail;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = (wb_config_issue){sev, variable, value, message, hint};
    return;
fail:
    free(variable);
    free(value);
    free(message);
    free(hint);
}

static void problem_va(wb__loader *L, wb_severity sev, enum wb__var v, char *hint, const char *fmt,
                       va_list ap)
{
    wb__buf m = WB__BUF_INIT;
    wb__buf_vprintf(&m, fmt, ap);
    char *value = NULL;
    if (L->set[v]) {
        value = wb__cfg_display_value(v, L->set[v]->value, L->set[v]->value_len);
        if (!value)
            L->oom = true;
    }
    wb__cfg_issue_push(L, sev, wb__strdup(vars[v].name), value, wb__buf_take(&m), hint);
}

void wb__cfg_problem(wb__loader *L, wb_severity sev, enum wb__var v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_va(L, sev, v, NULL, fmt, ap);
    va_end(ap);
}

void wb__cfg_problem_hint(wb__loader *L, wb_severity sev, enum wb__var v, char *hint,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem_va(L, sev, v, hint, fmt, ap);
    va_end(ap);
}

/* A hint for a value that is not one of `choices`: a case or spacing slip, or
 * the nearest choice. Returns heap memory or NULL. */
static char *choice_hint(const char *value, const char *const *choices)
{
    size_t n = strlen(value);
    size_t a = 0, b = n;
    while (a < b && (value[a] == ' ' || value[a] == '\t'))
        a++;
    while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t' || value[b - 1] == '\r' ||
                     value[b - 1] == '\n'))
        b--;
    for (const char *const *c = choices; *c; c++) {
        if (strlen(*c) == b - a && strncasecmp(*c, value + a, b - a) == 0) {
            if (a != 0 || b != n)
                return wb__asprintf("remove the white space around the value: \"%s\"", *c);
            return wb__asprintf("values are lower case: use \"%s\"", *c);
        }
    }
    /* "warning" for "warn", "postgresql" for "postgres": one holds the other */
    for (const char *const *c = choices; *c; c++) {
        size_t cl = strlen(*c);
        if (cl >= 3 && n >= 3 && (strncasecmp(value, *c, cl < n ? cl : n) == 0))
            return wb__asprintf("did you mean \"%s\"?", *c);
    }
    const char *best = NULL;
    size_t bestd = 3;
    for (const char *const *c = choices; *c; c++) {
        size_t d = wb__edit_distance(value, *c);
        if (d < bestd) {
            bestd = d;
            best = *c;
        }
    }
    return best ? wb__asprintf("did you mean \"%s\"?", best) : NULL;
}

static int choice_index(const char *value, const char *const *choices, bool nocase)
{
    for (int i = 0; choices[i]; i++) {
        if (nocase ? strcasecmp(value, choices[i]) == 0 : strcmp(value, choices[i]) == 0)
            return i;
    }
    return -1;
}

static char *choice_list(const char *const *choices)
{
    wb__buf b = WB__BUF_INIT;
    for (size_t i = 0; choices[i]; i++) {
        if (i)
            wb__buf_puts(&b, choices[i + 1] ? ", " : " or ");
        wb__buf_printf(&b, "\"%s\"", choices[i]);
    }
    return wb__buf_take(&b);
}

/* Validates an enumerated variable; returns the index or -1. */
static int check_choice(wb__loader *L, enum wb__var v, const char *const *choices, bool nocase)
{
    const char *val = wb__cfg_raw(L, v) ? wb__cfg_raw(L, v) : vars[v].def;
    if (L->bad[v])
        return -1;
    int i = choice_index(val, choices, nocase);
    if (i >= 0)
        return i;
    char *list = choice_list(choices);
    wb__cfg_problem_hint(L, WB__ERR, v, choice_hint(val, choices), "must be %s%s", list ? list : "",
                         nocase ? " (any case)" : "");
    free(list);
    return -1;
}

/* ---- generic checks ----------------------------------------------------- */

static void check_generic(wb__loader *L)
{
    for (int v = 0; v < WB__V_COUNT; v++) {
        const wb__kv *kv = L->set[v];
        if (!kv)
            continue;
        if (memchr(kv->value, '\0', kv->value_len)) {
            L->bad[v] = true;
            wb__cfg_problem(L, WB__ERR, (enum wb__var)v,
                            "holds a NUL byte, which no valid value has");
        } else if (kv->value_len > VALUE_MAX_BYTES) {
            L->bad[v] = true;
            wb__cfg_problem(L, WB__ERR, (enum wb__var)v,
                            "is %zu bytes long; no valid value exceeds %d bytes", kv->value_len,
                            VALUE_MAX_BYTES);
        }
    }
}

/* ---- the broker --------------------------------------------------------- */

static char *endpoint_command_hint(const wb__loader *L, const char *region)
{
    if (!region)
        region = wb__cfg_raw(L, WB__V_AWS_REGION) ? wb__cfg_raw(L, WB__V_AWS_REGION) : "<region>";
    return wb__asprintf("print your account's endpoint with: " ENDPOINT_COMMAND, region);
}

static void set_iot_region(wb__loader *L, const char *s, size_t n)
{
    free(L->cfg->iot_region);
    L->cfg->iot_region = wb__strndup(s, n);
    if (!L->cfg->iot_region)
        L->oom = true;
}

static void check_iotcore_endpoint(wb__loader *L, const char *val, size_t n)
{
    const enum wb__var V = WB__V_ENDPOINT;
    const char *expect = "expected the AWS IoT Core data endpoint "
                         "<id>-ats.iot.<region>.amazonaws.com (.amazonaws.com.cn in China)";
    if (wb__has_outer_space(val, n)) {
        wb__cfg_problem_hint(L, WB__ERR, V, wb__strdup("remove the white space around the value"),
                             "has leading or trailing white space; %s", expect);
        return;
    }
    const char *sep = strstr(val, "://");
    if (sep) {
        wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                             "must be a bare host name without a scheme (\"%.*s://\"); %s",
                             (int)(sep - val), val, expect);
        return;
    }
    if (strchr(val, '/')) {
        wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                             "must be a bare host name without a path; %s", expect);
        return;
    }
    const char *colon = strchr(val, ':');
    if (colon) {
        char *hint = wb__asprintf(
            "workerbus picks the port itself (8883, or 443): use \"%.*s\"; if this is the "
            "built-in broker's endpoint, set MQTT_BROKER_TYPE=builtin",
            (int)(colon - val), val);
        wb__cfg_problem_hint(L, WB__ERR, V, hint,
                             "must not carry a port with MQTT_BROKER_TYPE=iotcore; %s", expect);
        return;
    }
    char *lower = wb__strndup(val, n);
    if (!lower) {
        L->oom = true;
        return;
    }
    for (char *p = lower; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    const char *why = wb__host_check(lower, n, NULL);
    if (why) {
        wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                             "is not a valid host name (%s); %s", why, expect);
        goto out;
    }
    bool china = false;
    size_t base = n;
    if (n > 17 && strcmp(lower + n - 17, ".amazonaws.com.cn") == 0) {
        china = true;
        base = n - 17;
    } else if (n > 14 && strcmp(lower + n - 14, ".amazonaws.com") == 0) {
        base = n - 14;
    } else {
        wb__cfg_problem_hint(
            L, WB__ERR, V, endpoint_command_hint(L, NULL),
            "is not an AWS IoT Core endpoint (custom domains are not supported); %s", expect);
        goto out;
    }
    /* <first>.<second>.<region> */
    const char *d1 = memchr(lower, '.', base);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(lower + base - d1 - 1)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', (size_t)(lower + base - d2 - 1))) {
        wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                             "is not an IoT Core endpoint; %s", expect);
        goto out;
    }
    size_t l1 = (size_t)(d1 - lower), l2 = (size_t)(d2 - d1 - 1);
    const char *region = d2 + 1;
    size_t rl = (size_t)(lower + base - region);
    bool fips =
        l1 == 4 && memcmp(lower, "data", 4) == 0 && l2 == 8 && memcmp(d1 + 1, "iot-fips", 8) == 0;
    bool ats = l1 > 4 && memcmp(lower + l1 - 4, "-ats", 4) == 0 && l2 == 3 &&
               memcmp(d1 + 1, "iot", 3) == 0;
    if (!fips && !ats) {
        if (l2 == 3 && memcmp(d1 + 1, "iot", 3) == 0)
            wb__cfg_problem_hint(
                L, WB__ERR, V, endpoint_command_hint(L, NULL),
                "is a legacy (VeriSign) IoT Core endpoint, which workerbus does not "
                "use; %s",
                expect);
        else
            wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                                 "is not an IoT Core endpoint; %s", expect);
        goto out;
    }
    if (ats) {
        for (size_t i = 0; i + 4 < l1; i++) {
            char c = lower[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
                wb__cfg_problem_hint(
                    L, WB__ERR, V, endpoint_command_hint(L, NULL),
                    "the endpoint id \"%.*s\" may hold only letters and digits; %s", (int)(l1 - 4),
                    lower, expect);
                goto out;
            }
        }
    }
    if (!wb__aws_region_valid(region, rl)) {
        wb__cfg_problem_hint(L, WB__ERR, V, endpoint_command_hint(L, NULL),
                             "\"%.*s\" is not an AWS region name (expected the shape us-east-1, "
                             "eu-west-1, us-gov-west-1, cn-north-1); %s",
                             (int)rl, region, expect);
        goto out;
    }
    bool cn_region = rl > 3 && memcmp(region, "cn-", 3) == 0;
    if (cn_region != china) {
        char *hint =
            wb__asprintf("use \"%.*s.amazonaws.com%s\"", (int)base, lower, cn_region ? ".cn" : "");
        wb__cfg_problem_hint(L, WB__ERR, V, hint,
                             cn_region
                                 ? "region %.*s is in China: its endpoints end in .amazonaws.com.cn"
                                 : "only China regions (cn-*) use .amazonaws.com.cn; region %.*s "
                                   "uses .amazonaws.com",
                             (int)rl, region);
        goto out;
    }
    set_iot_region(L, region, rl);
    free(L->cfg->values[V]);
    L->cfg->values[V] = lower; /* stored in canonical (lower) case */
    L->cfg->host = wb__strdup(lower);
    if (!L->cfg->host)
        L->oom = true;
    L->cfg->port = 8883;
    L->cfg->tls = true;
    return;
out:
    free(lower);
}

static bool looks_like_iot_endpoint(const char *host, size_t n)
{
    return n > 14 && (strncasecmp(host + n - 14, ".amazonaws.com", 14) == 0 ||
                      (n > 17 && strncasecmp(host + n - 17, ".amazonaws.com.cn", 17) == 0));
}

static void check_builtin_endpoint(wb__loader *L, const char *val, size_t n)
{
    const enum wb__var V = WB__V_ENDPOINT;
    const char *expect = "expected <host>:<port> or tls://<host>:<port>, where host is a DNS "
                         "name, an IPv4 address or a bracketed IPv6 address, and port is "
                         "1-65535 except 1983";
    if (wb__has_outer_space(val, n)) {
        wb__cfg_problem_hint(L, WB__ERR, V, wb__strdup("remove the white space around the value"),
                             "has leading or trailing white space; %s", expect);
        return;
    }
    bool tls = false;
    const char *p = val;
    const char *sep = strstr(val, "://");
    if (sep) {
        if ((size_t)(sep - val) == 3 && strncasecmp(val, "tls", 3) == 0) {
            tls = true;
            p = sep + 3;
        } else {
            wb__cfg_problem_hint(
                L, WB__ERR, V,
                wb__strdup("write host:port for plain MQTT, or tls://host:port for MQTT "
                           "over TLS (the server terminates TLS itself)"),
                "has an unsupported scheme \"%.*s://\"; %s", (int)(sep - val), val, expect);
            return;
        }
    }
    size_t pn = n - (size_t)(p - val);
    if (memchr(p, '/', pn)) {
        wb__cfg_problem(L, WB__ERR, V, "must not have a path; %s", expect);
        return;
    }
    const char *host;
    size_t hl;
    const char *port_s;
    wb__host_kind kind = WB__HOST_DNS;
    if (pn > 0 && p[0] == '[') {
        const char *rb = memchr(p, ']', pn);
        if (!rb) {
            wb__cfg_problem(L, WB__ERR, V, "has an IPv6 address without its closing ']'; %s",
                            expect);
            return;
        }
        host = p + 1;
        hl = (size_t)(rb - p - 1);
        char tmp[64];
        struct in6_addr a6;
        if (hl == 0 || hl >= sizeof tmp) {
            wb__cfg_problem(L, WB__ERR, V, "has an invalid IPv6 address; %s", expect);
            return;
        }
        memcpy(tmp, host, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            wb__cfg_problem(L, WB__ERR, V, "\"%s\" is not a valid IPv6 address; %s", tmp, expect);
            return;
        }
        kind = WB__HOST_IPV6;
        if (rb + 1 == p + pn) {
            wb__cfg_problem_hint(L, WB__ERR, V, wb__asprintf("add the port, e.g. \"%s:1984\"", val),
                                 "has no port; %s", expect);
            return;
        }
        if (rb[1] != ':') {
            wb__cfg_problem(L, WB__ERR, V, "has unexpected text after the IPv6 address; %s",
                            expect);
            return;
        }
        port_s = rb + 2;
    } else {
        const char *c1 = memchr(p, ':', pn);
        if (!c1) {
            char *hint = looks_like_iot_endpoint(p, pn)
                             ? wb__strdup("this looks like an AWS IoT Core endpoint: for IoT "
                                          "Core set MQTT_BROKER_TYPE=iotcore")
                             : wb__asprintf("add the port, e.g. \"%s:1984\"", val);
            wb__cfg_problem_hint(L, WB__ERR, V, hint, "has no port; %s", expect);
            return;
        }
        if (memchr(c1 + 1, ':', pn - (size_t)(c1 + 1 - p))) {
            wb__cfg_problem_hint(L, WB__ERR, V,
                                 wb__strdup("write an IPv6 address in brackets: [::1]:1984"),
                                 "has more than one ':'; %s", expect);
            return;
        }
        host = p;
        hl = (size_t)(c1 - p);
        const char *why = wb__host_check(host, hl, &kind);
        if (why) {
            wb__cfg_problem(L, WB__ERR, V, "has an invalid host \"%.*s\": %s; %s", (int)hl, host,
                            why, expect);
            return;
        }
        port_s = c1 + 1;
    }
    unsigned port = 0;
    size_t psl = n - (size_t)(port_s - val);
    const char *why = wb__port_parse(port_s, psl, &port);
    if (why) {
        wb__cfg_problem(L, WB__ERR, V, "has an invalid port \"%.*s\": %s (and not 1983)", (int)psl,
                        port_s, why);
        return;
    }
    if (port == 1983) {
        wb__cfg_problem_hint(
            L, WB__ERR, V,
            wb__asprintf("choose another port; 1984 is the usual one for the built-in "
                         "broker, e.g. \"%s%.*s:1984\"",
                         tls ? "tls://" : "", (int)(port_s - 1 - p), p),
            "uses port 1983, which is reserved for the server's HTTP port; any other "
            "port from 1 to 65535 is accepted");
        return;
    }
    if ((kind == WB__HOST_IPV4 && hl == 7 && memcmp(host, "0.0.0.0", 7) == 0) ||
        (kind == WB__HOST_IPV6 && hl == 2 && memcmp(host, "::", 2) == 0))
        wb__cfg_problem(
            L, WB__WARN, V,
            "names the wildcard address %.*s, which workers cannot connect to: the endpoint "
            "is the address workers use to reach the broker",
            (int)hl, host);
    L->cfg->host = wb__strndup(host, hl);
    if (!L->cfg->host)
        L->oom = true;
    L->cfg->port = port;
    L->cfg->tls = tls;
}

/* A type whose backend was left out of this build is an error on the
 * variable that chose it; the rest of the checks still run. */
static void check_built_in(wb__loader *L, enum wb__var v, const char *kind, unsigned type,
                           const char *name)
{
    if (wb__backend_built(kind, type))
        return;
    char *d = NULL;
    wb__backend_refusal(kind, name, &d);
    wb__cfg_problem_hint(L, WB__ERR, v,
                         wb__asprintf("rebuild workerbus with the meson option -D%s=enabled, or "
                                      "choose a %s backend that is built in",
                                      name, kind),
                         "%s", d ? d : "not built into this library");
    free(d);
}

/* A log level variable: checked, its value kept lower case, *out set. */
static void check_log_level(wb__loader *L, enum wb__var v, wb_log_level *out)
{
    int lvl = check_choice(L, v, log_levels, true);
    if (lvl < 0)
        return;
    *out = (wb_log_level)lvl;
    free(L->cfg->values[v]);
    L->cfg->values[v] = wb__strdup(log_levels[lvl]);
    if (!L->cfg->values[v])
        L->oom = true;
}

static void check_broker(wb__loader *L)
{
    int t = check_choice(L, WB__V_BROKER_TYPE, broker_types, false);
    L->broker_known = t >= 0;
    if (t >= 0) {
        L->cfg->broker = (wb_broker_type)t;
        check_built_in(L, WB__V_BROKER_TYPE, "broker", (unsigned)t, broker_types[t]);
    }

    if (!L->bad[WB__V_ENDPOINT]) {
        const char *ep = wb__cfg_raw(L, WB__V_ENDPOINT);
        if (!ep) {
            char *hint = NULL;
            if (L->broker_known && L->cfg->broker == WB_BROKER_IOTCORE)
                hint = endpoint_command_hint(L, NULL);
            else if (L->broker_known)
                hint = wb__strdup("e.g. tls://broker.example.com:1984");
            wb__cfg_problem_hint(L, WB__ERR, WB__V_ENDPOINT, hint,
                                 "is required: the endpoint workers use to reach the broker (%s)",
                                 !L->broker_known ? "its format depends on MQTT_BROKER_TYPE"
                                 : L->cfg->broker == WB_BROKER_IOTCORE
                                     ? "<id>-ats.iot.<region>.amazonaws.com"
                                     : "<host>:<port> or tls://<host>:<port>");
        } else if (L->broker_known && L->cfg->broker == WB_BROKER_IOTCORE) {
            check_iotcore_endpoint(L, ep, wb__cfg_raw_len(L, WB__V_ENDPOINT));
        } else if (L->broker_known) {
            check_builtin_endpoint(L, ep, wb__cfg_raw_len(L, WB__V_ENDPOINT));
        }
    }

    check_log_level(L, WB__V_LOG_LEVEL, &L->cfg->log_level);
    check_log_level(L, WB__V_SERVE_LOG_LEVEL, &L->cfg->serve_log_level);
    if (wb__cfg_raw(L, WB__V_LOG_LEVEL) && L->broker_known && L->cfg->broker == WB_BROKER_IOTCORE)
        wb__cfg_problem(L, WB__WARN, WB__V_LOG_LEVEL,
                        "is only used by the built-in broker; it has no effect with "
                        "MQTT_BROKER_TYPE=iotcore");

    static const char *const acks[] = {"committed", "received", NULL};
    int ack = check_choice(L, WB__V_B_TOPIC_RULE_ACK, acks, true);
    if (ack >= 0) {
        L->cfg->ack_received = ack == 1;
        free(L->cfg->values[WB__V_B_TOPIC_RULE_ACK]);
        L->cfg->values[WB__V_B_TOPIC_RULE_ACK] = wb__strdup(acks[ack]);
        if (!L->cfg->values[WB__V_B_TOPIC_RULE_ACK])
            L->oom = true;
    }
    if (ack == 1 && L->broker_known && L->cfg->broker == WB_BROKER_BUILTIN)
        wb__cfg_problem_hint(L, WB__WARN, WB__V_B_TOPIC_RULE_ACK,
                             wb__strdup("unset it (committed) unless the database's commits are "
                                        "too slow for the message rate (workerbus check --probe)"),
                             "acknowledges worker messages before they are in the queue: a "
                             "broker that crashes loses those it has not written yet (see "
                             "docs/builtin-broker.md)");
}

static void check_namespace(wb__loader *L)
{
    const enum wb__var V = WB__V_NAMESPACE;
    if (L->bad[V])
        return;
    if (L->set[V] && L->set[V]->value_len == 0) {
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__strdup("unset it to use the default \"spacelift\", or set the "
                                        "namespace your IoT topic rule selects from"),
                             "is set but empty; a namespace must be non-empty");
        return;
    }
    const char *ns = wb__cfg_raw(L, V) ? wb__cfg_raw(L, V) : vars[V].def;
    const char *why = NULL;
    wb_err err = wb_namespace_check(ns, &why);
    if (err == WB_OK)
        return;
    size_t n = strlen(ns), slashes = 0;
    for (size_t i = 0; i < n; i++)
        slashes += ns[i] == '/';
    const char *rule = "; it must also match the topic rule (FROM '<namespace>/writeonly/#')";
    if (err == WB_ERR_TOO_LARGE && n > WB_NAMESPACE_MAX_BYTES)
        wb__cfg_problem_hint(
            L, WB__ERR, V,
            wb__asprintf("shorten it to at most %d bytes%s", WB_NAMESPACE_MAX_BYTES, rule),
            "is %zu bytes: the longest worker topic (<namespace>/writeonly/<ulid>/<ulid>) "
            "would be %zu bytes, over IoT Core's limit of %d",
            n, n + 64, WB_IOT_TOPIC_MAX_BYTES);
    else if (err == WB_ERR_TOO_LARGE)
        wb__cfg_problem_hint(
            L, WB__ERR, V,
            wb__asprintf("use at most %d '/' in the namespace%s", WB_NAMESPACE_MAX_SLASHES, rule),
            "has %zu '/': worker topics would have %zu, over IoT Core's limit of %d", slashes,
            slashes + 3, WB_IOT_TOPIC_MAX_SLASHES);
    else
        wb__cfg_problem(L, WB__ERR, V,
                        "%s; accepted: non-empty UTF-8 without '+', '#' or control characters, not "
                        "starting with '$', no leading, trailing or doubled '/'",
                        why);
}

/* ---- the message queue -------------------------------------------------- */

static void check_database_url(wb__loader *L, bool used)
{
    const enum wb__var V = WB__V_DATABASE_URL;
    wb_severity sev = used ? WB__ERR : WB__WARN;
    if (L->bad[V])
        return;
    const char *url = wb__cfg_raw(L, V);
    if (!url) {
        if (used && L->cfg->queue == WB_QUEUE_POSTGRES)
            wb__cfg_problem_hint(
                L, WB__ERR, V,
                wb__strdup("e.g. postgres://workerbus:PASSWORD@db.example.com:5432/"
                           "workerbus?sslmode=verify-full"),
                "is required with MESSAGE_QUEUE_TYPE=postgres: a libpq connection "
                "URI or key=value string");
        return;
    }
#ifdef WB_HAVE_LIBPQ
    const char *suffix = used ? "" : " (not used by the message queue, which is sqs)";
    if (L->cfg->queue != WB_QUEUE_POSTGRES && used)
        suffix = " (the builtin broker's replicas coordinate through it)";
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &errmsg);
    if (!opts) {
        char **secrets = wb__conninfo_secrets(url, wb__cfg_raw_len(L, V));
        char *msg = NULL;
        if (errmsg) {
            size_t el = strlen(errmsg);
            while (el > 0 && (errmsg[el - 1] == '\n' || errmsg[el - 1] == ' '))
                errmsg[--el] = '\0';
            msg = wb__redact_in_quotes(errmsg, secrets);
            /* belt and braces: never pass on a message that still holds one */
            for (size_t i = 0; msg && secrets && secrets[i]; i++) {
                if (strlen(secrets[i]) >= 4 && strstr(msg, secrets[i])) {
                    free(msg);
                    msg = wb__strdup("(libpq's message withheld: it quoted a secret)");
                    break;
                }
            }
        }
        wb__cfg_problem_hint(
            L, sev, V,
            wb__strdup("accepted: postgres://[user[:password]@][host][:port][/dbname]"
                       "[?param=value&...] or \"host=... dbname=... user=...\""),
            "is refused by libpq's parser: %s%s", msg ? msg : "out of memory", suffix);
        free(msg);
        wb__strv_free(secrets);
        PQfreemem(errmsg);
        return;
    }
    static const char *const sslmodes[] = {"disable",   "allow",       "prefer", "require",
                                           "verify-ca", "verify-full", NULL};
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val && strcmp(o->keyword, "sslmode") == 0 &&
            choice_index(o->val, sslmodes, false) < 0) {
            char *list = choice_list(sslmodes);
            wb__cfg_problem(L, sev, V, "has sslmode=\"%s\"; libpq accepts %s%s", o->val,
                            list ? list : "", suffix);
            free(list);
        }
    }
    PQconninfoFree(opts);
#else
    /* built without libpq (no postgres backend): its parser is not here */
    (void)sev;
#endif
}

/* The region named by an AWS host (sqs.<region>.amazonaws.com, and the
 * other forms AWS uses), or NULL. */
static char *aws_host_region(const char *host, size_t n, bool *is_aws)
{
    *is_aws = false;
    static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn", ".api.aws", NULL};
    size_t base = 0;
    for (const char *const *s = suffixes; *s; s++) {
        size_t sl = strlen(*s);
        if (n > sl && strncasecmp(host + n - sl, *s, sl) == 0)
            base = n - sl;
    }
    if (base == 0)
        return NULL;
    *is_aws = true;
    if (base == 5 && strncasecmp(host, "queue", 5) == 0)
        return wb__strdup("us-east-1"); /* the legacy global endpoint */
    size_t start = 0;
    for (size_t i = 0; i <= base; i++) {
        if (i == base || host[i] == '.') {
            char *label = wb__strndup(host + start, i - start);
            if (!label)
                return NULL;
            for (char *p = label; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
            if (wb__aws_region_valid(label, i - start))
                return label;
            free(label);
            start = i + 1;
        }
    }
    return NULL;
}

static bool queue_name_valid(const char *s, size_t n, bool *fifo)
{
    *fifo = n > 5 && memcmp(s + n - 5, ".fifo", 5) == 0;
    size_t base = *fifo ? n - 5 : n;
    if (n == 0 || n > 80 || base == 0)
        return false;
    for (size_t i = 0; i < base; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Validates one SQS queue URL; returns true when well formed. */
static bool check_sqs_url(wb__loader *L, wb_logical_queue q)
{
    const enum wb__var V = (enum wb__var)(WB__V_SQS_FIRST + q);
    const char *val = wb__cfg_raw(L, V);
    size_t n = wb__cfg_raw_len(L, V);
    const char *name = lq_names[q];
    const char *expect = "expected <scheme>://<host>[:port]/<12-digit account>/<queue name> "
                         "with scheme http or https";
    if (wb__has_outer_space(val, n)) {
        wb__cfg_problem_hint(L, WB__ERR, V, wb__strdup("remove the white space around the value"),
                             "has leading or trailing white space; %s", expect);
        return false;
    }
    wb__url u;
    const char *why = wb__url_parse(val, n, &u);
    if (why) {
        wb__cfg_problem(L, WB__ERR, V, "is not a valid queue URL (%s); %s", why, expect);
        return false;
    }
    bool https = u.scheme_len == 5 && strncasecmp(u.scheme, "https", 5) == 0;
    bool http = u.scheme_len == 4 && strncasecmp(u.scheme, "http", 4) == 0;
    if (!http && !https) {
        wb__cfg_problem(L, WB__ERR, V, "has the scheme \"%.*s\"; %s", (int)u.scheme_len, u.scheme,
                        expect);
        return false;
    }
    if (u.userinfo) {
        wb__cfg_problem_hint(
            L, WB__ERR, V,
            wb__strdup("remove the user:password@ part; AWS credentials come from the "
                       "credential chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, roles)"),
            "must not carry credentials; %s", expect);
        return false;
    }
    if (u.query || u.fragment) {
        wb__cfg_problem(L, WB__ERR, V, "must not have a query or fragment; %s", expect);
        return false;
    }
    const char *path = u.path;
    size_t pl = u.path_len;
    const char *acct = pl > 0 ? path + 1 : path;
    const char *slash = pl > 1 ? memchr(acct, '/', pl - 1) : NULL;
    size_t al = slash ? (size_t)(slash - acct) : 0;
    bool acct_ok = slash && al == 12;
    for (size_t i = 0; acct_ok && i < al; i++)
        acct_ok = acct[i] >= '0' && acct[i] <= '9';
    if (!acct_ok) {
        wb__cfg_problem(L, WB__ERR, V,
                        "has the path \"%.*s\": the first part must be a 12-digit account id; %s",
                        (int)pl, path, expect);
        return false;
    }
    const char *qn = slash + 1;
    size_t ql = (size_t)(path + pl - qn);
    if (ql > 0 && qn[ql - 1] == '/') {
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__asprintf("remove the trailing '/': \"%.*s\"", (int)(n - 1), val),
                             "ends with '/'; %s", expect);
        return false;
    }
    bool fifo;
    if (!queue_name_valid(qn, ql, &fifo)) {
        wb__cfg_problem(
            L, WB__ERR, V,
            "has the queue name \"%.*s\"; SQS queue names are 1-80 letters, digits, '-' and "
            "'_' (FIFO queues end in \".fifo\")",
            (int)ql, qn);
        return false;
    }
    if (fifo != wb_logical_queue_is_fifo(q)) {
        if (fifo)
            wb__cfg_problem(
                L, WB__ERR, V,
                "names the FIFO queue \"%.*s\", but the %s queue must be a standard queue%s",
                (int)ql, qn, name,
                q == WB_LQ_IOT ? " (the IoT topic rule's SQS action cannot target FIFO "
                                 "queues)"
                               : "");
        else
            wb__cfg_problem(
                L, WB__ERR, V,
                "names the standard queue \"%.*s\", but the %s queue must be a FIFO queue "
                "(its name ends in \".fifo\")",
                (int)ql, qn, name);
        return false;
    }
    bool is_aws;
    char *region = aws_host_region(u.host, u.host_len, &is_aws);
    if (is_aws && http)
        wb__cfg_problem(L, WB__WARN, V,
                        "uses plain http to AWS: requests and messages would cross the network "
                        "unencrypted; use https");
    L->sqs_regions[q] = region;
    return true;
}

static const char *effective_region_env(const wb__loader *L, enum wb__var *which)
{
    if (wb__cfg_raw(L, WB__V_AWS_REGION) && !L->bad[WB__V_AWS_REGION]) {
        *which = WB__V_AWS_REGION;
        return wb__cfg_raw(L, WB__V_AWS_REGION);
    }
    if (wb__cfg_raw(L, WB__V_AWS_DEFAULT_REGION) && !L->bad[WB__V_AWS_DEFAULT_REGION]) {
        *which = WB__V_AWS_DEFAULT_REGION;
        return wb__cfg_raw(L, WB__V_AWS_DEFAULT_REGION);
    }
    return NULL;
}

static void check_sqs(wb__loader *L)
{
    bool ok[WB_LQ__COUNT] = {false};
    for (int q = 0; q < WB_LQ__COUNT; q++) {
        enum wb__var V = (enum wb__var)(WB__V_SQS_FIRST + q);
        if (L->bad[V])
            continue;
        if (!wb__cfg_raw(L, V)) {
            /* only a valid region goes into the example */
            enum wb__var rv;
            const char *region = effective_region_env(L, &rv);
            if (region && !wb__aws_region_valid(region, strlen(region)))
                region = NULL;
            wb__cfg_problem_hint(
                L, WB__ERR, V,
                wb__asprintf("e.g. https://sqs.%s.amazonaws.com/123456789012/%s; print "
                             "it with: aws sqs get-queue-url --queue-name <name>",
                             region ? region : "<region>", lq_names[q]),
                "is required with MESSAGE_QUEUE_TYPE=sqs: the URL of the %s queue", lq_names[q]);
            continue;
        }
        ok[q] = check_sqs_url(L, (wb_logical_queue)q);
    }
    /* each logical queue needs its own SQS queue */
    for (int q = 0; q < WB_LQ__COUNT; q++) {
        for (int p = 0; ok[q] && p < q; p++) {
            if (ok[p] && strcasecmp(wb__cfg_raw(L, (enum wb__var)(WB__V_SQS_FIRST + p)),
                                    wb__cfg_raw(L, (enum wb__var)(WB__V_SQS_FIRST + q))) == 0) {
                wb__cfg_problem(
                    L, WB__ERR, (enum wb__var)(WB__V_SQS_FIRST + q),
                    "is the same queue as %s: the %s and %s queues must be distinct SQS "
                    "queues",
                    vars[WB__V_SQS_FIRST + p].name, lq_names[p], lq_names[q]);
                break;
            }
        }
    }
    enum wb__var which = WB__V_AWS_REGION;
    const char *env_region = effective_region_env(L, &which);
    const char *first_region = NULL;
    bool any_region = false, mixed = false;
    for (int q = 0; q < WB_LQ__COUNT; q++) {
        const char *r = L->sqs_regions[q];
        if (!ok[q] || !r)
            continue;
        any_region = true;
        if (first_region && strcmp(first_region, r) != 0)
            mixed = true;
        if (!first_region)
            first_region = r;
        if (env_region && strcmp(env_region, r) != 0)
            wb__cfg_problem_hint(
                L, WB__ERR, (enum wb__var)(WB__V_SQS_FIRST + q),
                wb__asprintf("set %s=%s, or use the queues of region %s", vars[which].name, r,
                             env_region),
                "names a queue in region %s, but %s is %s: requests would be signed "
                "for the wrong region",
                r, vars[which].name, env_region);
    }
    if (first_region && !L->cfg->sqs_region) {
        L->cfg->sqs_region = wb__strdup(first_region);
        if (!L->cfg->sqs_region)
            L->oom = true;
    }
    if (!env_region && mixed)
        wb__cfg_problem(
            L, WB__WARN, WB__V_AWS_REGION,
            "is not set and the SQS queue URLs name different regions; set AWS_REGION to the "
            "region of the queues");
    if (!env_region && !any_region && !L->cfg->iot_region) {
        bool all_given = true;
        for (int q = 0; q < WB_LQ__COUNT; q++)
            all_given = all_given && ok[q];
        if (all_given)
            wb__cfg_problem_hint(
                L, WB__WARN, WB__V_AWS_REGION,
                wb__strdup("set AWS_REGION (any region name works for a local SQS "
                           "stand-in, e.g. us-east-1)"),
                "is not set, and the SQS queue URLs do not name a region: requests "
                "to SQS are signed for a region");
    }
}

static void check_queue(wb__loader *L)
{
    int t = check_choice(L, WB__V_QUEUE_TYPE, queue_types, false);
    L->queue_known = t >= 0;
    if (t < 0)
        return;
    L->cfg->queue = (wb_queue_type)t;
    check_built_in(L, WB__V_QUEUE_TYPE, "queue", (unsigned)t, queue_types[t]);
    if (L->broker_known && L->cfg->broker == WB_BROKER_IOTCORE &&
        L->cfg->queue == WB_QUEUE_POSTGRES) {
        wb__cfg_problem_hint(L, WB__ERR, WB__V_QUEUE_TYPE,
                             wb__strdup("set MESSAGE_QUEUE_TYPE=sqs with the eight "
                                        "MESSAGE_QUEUE_SQS_*_URL variables, or set "
                                        "MQTT_BROKER_TYPE=builtin to keep PostgreSQL"),
                             "\"postgres\" cannot be used with MQTT_BROKER_TYPE=iotcore: IoT Core "
                             "delivers worker messages only to SQS, through an IoT topic rule");
        return;
    }
    check_database_url(L, L->cfg->queue == WB_QUEUE_POSTGRES ||
                              (L->broker_known && L->cfg->broker == WB_BROKER_BUILTIN));
    if (L->cfg->queue == WB_QUEUE_SQS)
        check_sqs(L);
}

/* ---- regions ------------------------------------------------------------ */

static void check_regions(wb__loader *L)
{
    const enum wb__var vs[2] = {WB__V_AWS_REGION, WB__V_AWS_DEFAULT_REGION};
    for (int i = 0; i < 2; i++) {
        const char *r = wb__cfg_raw(L, vs[i]);
        if (!r || L->bad[vs[i]] || wb__aws_region_valid(r, wb__cfg_raw_len(L, vs[i])))
            continue;
        L->bad[vs[i]] = true;
        wb__cfg_problem(L, WB__ERR, vs[i],
                        "is not an AWS region name; expected the shape us-east-1, eu-west-1, "
                        "us-gov-west-1, cn-north-1");
    }
    const char *a = wb__cfg_raw(L, WB__V_AWS_REGION), *d = wb__cfg_raw(L, WB__V_AWS_DEFAULT_REGION);
    if (a && d && !L->bad[WB__V_AWS_REGION] && !L->bad[WB__V_AWS_DEFAULT_REGION] &&
        strcmp(a, d) != 0)
        wb__cfg_problem(
            L, WB__WARN, WB__V_AWS_DEFAULT_REGION,
            "differs from AWS_REGION (%s), which takes precedence; this value is ignored", a);
}

static void check_iot_region(wb__loader *L)
{
    enum wb__var which = WB__V_AWS_REGION;
    const char *env_region = effective_region_env(L, &which);
    if (L->cfg->iot_region && env_region && strcmp(env_region, L->cfg->iot_region) != 0)
        wb__cfg_problem(L, WB__WARN, WB__V_ENDPOINT,
                        "is in region %s, but %s is %s: IoT Core is reached in %s while other AWS "
                        "requests use %s",
                        L->cfg->iot_region, vars[which].name, env_region, L->cfg->iot_region,
                        env_region);
}

/* ---- unknown variables -------------------------------------------------- */

static int known_index(const char *name)
{
    for (int v = 0; v < WB__V_COUNT; v++) {
        if (strcmp(vars[v].name, name) == 0)
            return v;
    }
    return -1;
}

static void check_unknown(wb__loader *L)
{
    for (size_t i = 0; i < L->kv.count; i++) {
        const char *name = L->kv.items[i].key;
        if (known_index(name) >= 0)
            continue;
        /* report each unknown name once */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(L->kv.items[j].key, name) == 0;
        if (seen)
            continue;
        bool ours =
            strncmp(name, "MQTT_BROKER_", 12) == 0 || strncmp(name, "MESSAGE_QUEUE_", 14) == 0;
        int best = -1;
        size_t bestd = (size_t)-1;
        bool case_only = false;
        for (int v = 0; v < WB__V_COUNT; v++) {
            if (strcasecmp(vars[v].name, name) == 0) {
                best = v;
                case_only = true;
                break;
            }
            size_t d = wb__edit_distance(name, vars[v].name);
            if (d < bestd) {
                bestd = d;
                best = v;
            }
        }
        size_t len = strlen(name);
        bool close = case_only || (best >= 0 && bestd <= (len >= 20 ? 3u : 2u));
        if (!ours && !(close && len >= 8))
            continue;
        char *hint;
        if (case_only)
            hint = wb__asprintf("variable names are case-sensitive: did you mean %s?",
                                vars[best].name);
        else if (close)
            hint = wb__asprintf("did you mean %s?", vars[best].name);
        else
            hint = wb__strdup("see docs/configuration.md for the variables workerbus reads");
        char *msg = wb__strdup(ours ? "is not a variable workerbus knows; it is ignored"
                                    : "is not a variable workerbus knows, but is close to one; "
                                      "it is ignored");
        /* an unknown variable might hold a secret: its value is not shown */
        wb__cfg_issue_push(L, WB__WARN, wb__strdup(name), NULL, msg, hint);
    }
}

/* ---- sources ------------------------------------------------------------ */

static void envfile_problem(void *ctx, unsigned line, const char *message, const char *hint)
{
    wb__loader *L = ctx;
    wb__cfg_issue_push(L, WB__ERR, wb__asprintf("%s:%u", L->file, line), NULL, wb__strdup(message),
                       hint ? wb__strdup(hint) : NULL);
}

static wb_err read_list(wb__loader *L, const char *const *env)
{
    for (; *env; env++) {
        const char *eq = strchr(*env, '=');
        if (!eq || eq == *env)
            continue; /* not KEY=VALUE: environ can hold such strings; skip them */
        wb_err err = wb__kv_push(&L->kv, *env, (size_t)(eq - *env), eq + 1, strlen(eq + 1), 0);
        if (err)
            return err;
    }
    return WB_OK;
}

static void bind_known(wb__loader *L)
{
    for (size_t i = 0; i < L->kv.count; i++) {
        int v = known_index(L->kv.items[i].key);
        if (v < 0)
            continue;
        const wb__kv *prev = L->set[v];
        L->set[v] = &L->kv.items[i];
        if (prev && i < L->overrides_from) { /* an override replaces on purpose */
            if (prev->line)
                wb__cfg_problem(L, WB__WARN, (enum wb__var)v,
                                "is set twice (lines %u and %u); the last value is used",
                                prev->line, L->kv.items[i].line);
            else
                wb__cfg_problem(L, WB__WARN, (enum wb__var)v,
                                "is set twice; the last value is used");
        }
    }
}

static void fill_settings(wb__loader *L)
{
    const wb_config *c = L->cfg;
    for (int v = 0; v < WB__V_COUNT; v++) {
        wb_config_setting *s = &L->rep->settings[v];
        s->variable = vars[v].name;
        s->secret = vars[v].secret;
        if (wb__cfg_raw(L, (enum wb__var)v)) {
            s->origin = WB_ORIGIN_SET;
            s->value = wb__cfg_display_value((enum wb__var)v, wb__cfg_raw(L, (enum wb__var)v),
                                             wb__cfg_raw_len(L, (enum wb__var)v));
            if (!s->value)
                L->oom = true;
        } else if (wb__cfg_effective(L, (enum wb__var)v)) {
            s->origin = WB_ORIGIN_DEFAULT;
            s->value = wb__strdup(wb__cfg_effective(L, (enum wb__var)v));
            if (!s->value)
                L->oom = true;
        } else {
            s->origin = WB_ORIGIN_UNSET;
            s->value = NULL;
        }
        bool used = true;
        if (v == WB__V_LOG_LEVEL)
            used = !L->broker_known || c->broker == WB_BROKER_BUILTIN;
        else if (v == WB__V_DATABASE_URL)
            used = !L->queue_known || c->queue == WB_QUEUE_POSTGRES ||
                   (L->broker_known && c->broker == WB_BROKER_BUILTIN);
        else if (v >= WB__V_SQS_FIRST && v <= WB__V_SQS_LAST)
            used = !L->queue_known || c->queue == WB_QUEUE_SQS;
        else if (v == WB__V_AWS_DEFAULT_REGION)
            used = !wb__cfg_raw(L, WB__V_AWS_REGION);
        else if (v >= WB__V_B_PKI_DIR && v <= WB__V_B_LAST)
            used = wb__cfg_builtin_var_used(L, (enum wb__var)v);
        else if (v >= WB__V_I_TRANSPORT && v <= WB__V_I_ALLOW_CONNECT_TO)
            used = wb__cfg_iotcore_var_used(L, (enum wb__var)v);
        s->used = used;
    }
}

/* The typed views, from the frozen values. */
static void fill_views(wb_config *c)
{
    const char *const *v = (const char *const *)c->values;
    if (c->broker == WB_BROKER_BUILTIN) {
        c->builtin_view = (wb__builtin_view){
            .host = c->host,
            .port = c->port,
            .tls = c->tls,
            .listen_host = c->listen_host,
            .listen_port = c->listen_port,
            .ca_file = v[WB__V_B_CA_FILE],
            .ca_key_file = v[WB__V_B_CA_KEY_FILE],
            .cert_file = v[WB__V_B_CERT_FILE],
            .key_file = v[WB__V_B_KEY_FILE],
            .client_cert_file = v[WB__V_B_CLIENT_CERT_FILE],
            .client_key_file = v[WB__V_B_CLIENT_KEY_FILE],
            .token_key_file = v[WB__V_B_TOKEN_KEY_FILE],
            .runtime_dir = v[WB__V_B_RUNTIME_DIR],
            .mosquitto = v[WB__V_B_MOSQUITTO],
            .plugin = v[WB__V_B_PLUGIN],
            .max_payload = c->max_payload,
            .replicas = c->replicas,
            .database_url = c->replicas ? v[WB__V_DATABASE_URL] : NULL,
            .replica_id = v[WB__V_B_REPLICA_ID],
            .replica_timeout_s = c->replica_timeout_s,
            .outbox_expiry_s = c->outbox_expiry_s,
            .outbox_max_per_worker = c->outbox_max_per_worker,
            .outbox_max = c->outbox_max,
            .ack_received = c->ack_received,
            .log_level = c->log_level,
            .ns = v[WB__V_NAMESPACE],
        };
    } else {
        c->iotcore_view = (wb__iotcore_view){
            .endpoint = v[WB__V_ENDPOINT],
            .region = c->iot_region,
            .transport = (wb_iotcore_transport)c->iot_transport,
            .cert_file = v[WB__V_I_CERT_FILE],
            .key_file = v[WB__V_I_KEY_FILE],
            .ca_file = v[WB__V_I_CA_FILE],
            .connect_host = c->connect_host,
            .connect_port = c->connect_host ? c->connect_port : 0,
            .ns = v[WB__V_NAMESPACE],
        };
    }
}

size_t wb__config_queue_settings(const wb_config *c, const char *names[WB__QUEUE_SETTINGS_MAX],
                                 const char *values[WB__QUEUE_SETTINGS_MAX])
{
    static const enum wb__var which[] = {
        WB__V_QUEUE_TYPE,    WB__V_DATABASE_URL,  WB__V_AWS_REGION,    WB__V_AWS_DEFAULT_REGION,
        WB__V_SQS_FIRST + 0, WB__V_SQS_FIRST + 1, WB__V_SQS_FIRST + 2, WB__V_SQS_FIRST + 3,
        WB__V_SQS_FIRST + 4, WB__V_SQS_FIRST + 5, WB__V_SQS_FIRST + 6, WB__V_SQS_FIRST + 7,
    };
    _Static_assert(WB__ARRAY_LEN(which) == WB__QUEUE_SETTINGS_MAX, "every queue setting");
    _Static_assert(WB_LQ__COUNT == 8, "eight SQS queues");
    size_t n = 0;
    for (size_t i = 0; c && i < WB__ARRAY_LEN(which); i++) {
        if (!c->values[which[i]])
            continue;
        names[n] = vars[which[i]].name;
        values[n] = c->values[which[i]];
        n++;
    }
    return n;
}

const wb__builtin_view *wb__config_builtin(const wb_config *c)
{
    return c && c->broker == WB_BROKER_BUILTIN ? &c->builtin_view : NULL;
}

const wb__iotcore_view *wb__config_iotcore(const wb_config *c)
{
    return c && c->broker == WB_BROKER_IOTCORE ? &c->iotcore_view : NULL;
}

static void freeze_values(wb__loader *L)
{
    wb_config *c = L->cfg;
    for (int v = 0; v < WB__V_COUNT; v++) {
        if (c->values[v])
            continue; /* already canonicalized by a check */
        const char *val = wb__cfg_effective(L, (enum wb__var)v);
        if (!val)
            continue;
        bool used = L->rep->settings[v].used;
        if (!used && v != WB__V_AWS_DEFAULT_REGION)
            continue; /* irrelevant to this configuration: not kept */
        c->values[v] = wb__strdup(val);
        if (!c->values[v])
            L->oom = true;
    }
    enum wb__var which;
    c->region = effective_region_env(L, &which);
    if (c->region)
        c->region = c->values[which];
    else if (c->iot_region)
        c->region = c->iot_region;
    else
        c->region = c->sqs_region;
    fill_views(c);
}

static void report_free_contents(wb_config_report *r)
{
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < r->issues[s].count; i++) {
            wb_config_issue *is = &r->issues[s].items[i];
            free((char *)is->variable);
            free((char *)is->value);
            free((char *)is->message);
            free((char *)is->hint);
        }
        free(r->issues[s].items);
    }
    for (int v = 0; v < WB__V_COUNT; v++)
        free((char *)r->settings[v].value);
    free(r->source);
}

WB_API void wb_config_report_free(wb_config_report *report)
{
    if (!report)
        return;
    report_free_contents(report);
    free(report);
}

WB_API void wb_config_free(wb_config *config)
{
    if (!config)
        return;
    for (int v = 0; v < WB__V_COUNT; v++)
        free(config->values[v]);
    free(config->host);
    free(config->iot_region);
    free(config->sqs_region);
    free(config->listen_host);
    free(config->connect_host);
    free(config);
}

static wb_err load(const wb_config_load_opts *opts, bool queue_only, wb_config **config,
                   wb_config_report **report);

WB_API wb_err wb_config_load(const wb_config_load_opts *opts, wb_config **config,
                             wb_config_report **report)
{
    if (config)
        *config = NULL;
    if (report)
        *report = NULL;
    if (!opts)
        return load(NULL, false, config, report);
    /* version 1 had no parts: everything */
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    if (opts->version == 1) {
        o.env = opts->env;
        o.env_file = opts->env_file;
        o.overrides = opts->overrides;
    } else if (opts->version == WB_CONFIG_LOAD_OPTS_VERSION) {
        o = *opts;
    } else {
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (o.parts != WB_CONFIG_ALL && o.parts != WB_CONFIG_QUEUE)
        return WB_ERR_INVALID_ARGUMENT;
    return load(&o, o.parts == WB_CONFIG_QUEUE, config, report);
}

wb_err wb__config_load_queue(const char *env_file, wb_config **config, char **detail)
{
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env_file = env_file;
    wb_config_report *rep = NULL;
    wb_err err = load(&o, true, config, &rep);
    if (err && detail) {
        *detail = rep ? wb_config_report_format(rep, WB_REPORT_PROBLEMS) : NULL;
        if (*detail) /* one line per problem: join them for a log line */
            for (char *c = *detail; *c; c++)
                if (*c == '\n' && c[1])
                    *c = ' ';
    }
    wb_config_report_free(rep);
    return err;
}

static wb_err load(const wb_config_load_opts *opts, bool queue_only, wb_config **config,
                   wb_config_report **report)
{
    if (config)
        *config = NULL;
    if (report)
        *report = NULL;
    if (opts && (opts->version != WB_CONFIG_LOAD_OPTS_VERSION || (opts->env && opts->env_file)))
        return WB_ERR_INVALID_ARGUMENT;

    wb__loader L;
    memset(&L, 0, sizeof L);
    L.rep = calloc(1, sizeof *L.rep);
    L.cfg = calloc(1, sizeof *L.cfg);
    wb_err err = WB_OK;
    if (!L.rep || !L.cfg) {
        err = WB_ERR_NO_MEMORY;
        goto done;
    }
    L.cfg->broker = WB_BROKER_IOTCORE;
    L.cfg->queue = WB_QUEUE_SQS;
    L.cfg->log_level = WB_LOG_ERROR;
    L.cfg->serve_log_level = WB_LOG_INFO;

    if (opts && opts->env_file) {
        L.file = opts->env_file;
        L.rep->source = wb__asprintf("the file %s", opts->env_file);
        int e = 0;
        err = wb__envfile_read(opts->env_file, &L.kv, envfile_problem, &L, &e);
        if (err == WB_ERR_IO) {
            wb__cfg_issue_push(
                &L, WB__ERR, wb__strdup(opts->env_file), NULL,
                wb__asprintf("cannot read the environment file: %s", wb__envfile_strerror(e)),
                wb__strdup("give the path of a readable regular file of "
                           "KEY=VALUE lines (at most 1 MiB)"));
            fill_settings(&L);
            goto done;
        }
    } else if (opts && opts->env) {
        L.rep->source = wb__strdup("the given list of variables");
        err = read_list(&L, opts->env);
    } else {
        L.rep->source = wb__strdup("the process environment");
        err = read_list(&L, (const char *const *)environ);
    }
    L.overrides_from = L.kv.count;
    if (!err && opts && opts->overrides)
        err = read_list(&L, opts->overrides);
    if (err)
        goto done;
    if (!L.rep->source)
        L.oom = true;

    bind_known(&L);
    check_generic(&L);
    check_regions(&L);
    if (queue_only) {
        /* the queue and nothing else (the bundled broker's topic rule, the
         * queue commands): the broker type only when it is set, for the
         * rule that IoT Core needs SQS */
        L.cfg->broker = WB_BROKER_BUILTIN;
        if (wb__cfg_raw(&L, WB__V_BROKER_TYPE)) {
            int t = check_choice(&L, WB__V_BROKER_TYPE, broker_types, false);
            if (t >= 0)
                L.cfg->broker = (wb_broker_type)t;
        }
        L.broker_known = true;
        check_queue(&L);
        fill_settings(&L);
        freeze_values(&L);
        err = L.rep->issues[WB__ERR].count ? WB_ERR_CONFIG : WB_OK;
        goto done;
    }
    check_broker(&L);
    check_namespace(&L);
    wb__cfg_check_builtin(&L);
    wb__cfg_check_iotcore(&L);
    check_queue(&L);
    check_iot_region(&L);
    check_unknown(&L);
    fill_settings(&L);
    freeze_values(&L);
    err = L.rep->issues[WB__ERR].count ? WB_ERR_CONFIG : WB_OK;

done:
    if (L.oom && (err == WB_OK || err == WB_ERR_CONFIG))
        err = WB_ERR_NO_MEMORY;
    for (int q = 0; q < WB_LQ__COUNT; q++)
        free(L.sqs_regions[q]);
    for (int v = 0; v < WB__V_COUNT; v++)
        free(L.derived[v]);
    wb__kv_list_free(&L.kv);
    if (err == WB_OK && config) {
        *config = L.cfg;
        L.cfg = NULL;
    }
    wb_config_free(L.cfg);
    if (err == WB_ERR_NO_MEMORY || !report) {
        wb_config_report_free(L.rep);
    } else {
        *report = L.rep;
    }
    return err;
}

/* ---- accessors ---------------------------------------------------------- */

WB_API wb_broker_type wb_config_broker_type(const wb_config *c)
{
    return c ? c->broker : WB_BROKER_IOTCORE;
}

WB_API const char *wb_config_broker_endpoint(const wb_config *c)
{
    return c ? c->values[WB__V_ENDPOINT] : NULL;
}

WB_API const char *wb_config_broker_host(const wb_config *c)
{
    return c ? c->host : NULL;
}

WB_API unsigned int wb_config_broker_port(const wb_config *c)
{
    return c ? c->port : 0;
}

WB_API bool wb_config_broker_tls(const wb_config *c)
{
    return c && c->tls;
}

WB_API const char *wb_config_iotcore_region(const wb_config *c)
{
    return c ? c->iot_region : NULL;
}

WB_API wb_log_level wb_config_log_level(const wb_config *c)
{
    return c ? c->serve_log_level : WB_LOG_INFO;
}

WB_API wb_log_level wb_config_builtin_log_level(const wb_config *c)
{
    return c ? c->log_level : WB_LOG_ERROR;
}

WB_API const char *wb_config_namespace(const wb_config *c)
{
    return c ? c->values[WB__V_NAMESPACE] : NULL;
}

WB_API wb_queue_type wb_config_queue_type(const wb_config *c)
{
    return c ? c->queue : WB_QUEUE_SQS;
}

const char *wb__config_database_url_any(const wb_config *c)
{
    return c ? c->values[WB__V_DATABASE_URL] : NULL;
}

WB_API const char *wb_config_database_url(const wb_config *c)
{
    return c && c->queue == WB_QUEUE_POSTGRES ? c->values[WB__V_DATABASE_URL] : NULL;
}

WB_API const char *wb_config_sqs_url(const wb_config *c, wb_logical_queue q)
{
    if (!c || c->queue != WB_QUEUE_SQS || (unsigned)q >= WB_LQ__COUNT)
        return NULL;
    return c->values[WB__V_SQS_FIRST + q];
}

WB_API const char *wb_config_aws_region(const wb_config *c)
{
    return c ? c->region : NULL;
}

WB_API wb_iotcore_transport wb_config_iotcore_transport(const wb_config *c)
{
    return c && c->broker == WB_BROKER_IOTCORE ? (wb_iotcore_transport)c->iot_transport
                                               : WB_IOT_HTTPS;
}

WB_API const char *wb_config_iotcore_connect_host(const wb_config *c)
{
    return c && c->broker == WB_BROKER_IOTCORE ? c->connect_host : NULL;
}

WB_API unsigned int wb_config_iotcore_connect_port(const wb_config *c)
{
    return c && c->broker == WB_BROKER_IOTCORE && c->connect_host ? c->connect_port : 0;
}

WB_API const char *wb_config_builtin_listen_host(const wb_config *c)
{
    return c && c->broker == WB_BROKER_BUILTIN ? c->listen_host : NULL;
}

WB_API unsigned int wb_config_builtin_listen_port(const wb_config *c)
{
    return c && c->broker == WB_BROKER_BUILTIN ? c->listen_port : 0;
}

WB_API const char *wb_config_builtin_replica_id(const wb_config *c)
{
    return c && c->broker == WB_BROKER_BUILTIN && c->replicas ? c->values[WB__V_B_REPLICA_ID]
                                                              : NULL;
}

WB_API size_t wb_config_builtin_max_payload(const wb_config *c)
{
    return c && c->broker == WB_BROKER_BUILTIN ? c->max_payload : 0;
}

WB_API const char *wb_config_get(const wb_config *c, const char *variable)
{
    if (!c || !variable)
        return NULL;
    int v = known_index(variable);
    return v >= 0 ? c->values[v] : NULL;
}
