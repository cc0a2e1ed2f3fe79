/* The workerbus Mosquitto plugin (plugin interface version 5).
 *
 * Identity: on a TLS listener the broker is configured with
 * use_identity_as_username, so the user name is the client certificate's
 * common name: a pool ULID for a worker, "workerbus-server" for the server.
 * On a plain listener the user name is given by the client and proven with a
 * token (HMAC of the pool, see wb_pki_token()). A worker's client id is its
 * worker ULID.
 *
 * Access: a worker may subscribe to and read only
 * <ns>/readonly/<its pool>/<its worker>, and publish only to
 * <ns>/writeonly/<its pool>/<its worker>. The server may publish to any
 * <ns>/readonly/<ulid>/<ulid> and subscribe to <ns>/writeonly/ topics.
 * Everything else is denied and logged with who tried what.
 *
 * Topic rule: what a worker publishes on its writeonly topic is written into
 * the iot queue in the envelope of AWS IoT Core's topic rule (envelope.h)
 * before the broker acknowledges it. The queue write happens in the
 * broker's message event, which runs before the PUBACK is sent: when the
 * queue cannot take the message, the event fails, Mosquitto closes that
 * worker's connection without acknowledging, and the worker sends the
 * message again after it reconnects. A payload that is not a JSON object is
 * refused at the access check (MQTT 5 clients get reason code 0x87, not
 * authorized) and logged. After a queue failure, messages are refused at
 * once for a short, growing pause instead of each waiting on the queue.
 *
 * Options (plugin_opt_*): namespace (required), token_key (plain listeners),
 * topic_rule_env (a file of the queue's variables, see
 * wb__config_load_queue(); without it there is no topic rule),
 * websockets_server (the IoT Core stand-in only: "true" makes every client of
 * a WebSocket listener the server, as IoT Core admits a SigV4-signed
 * connection with the rights of its IAM identity; the stand-in does not
 * check the signature).
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wb_internal.h"

#define PLUGIN_API __attribute__((visibility("default")))

/* the plugin's own symbols are hidden; these three are what mosquitto loads */
PLUGIN_API int mosquitto_plugin_version(int supported_version_count, const int *supported_versions);
PLUGIN_API int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                     struct mosquitto_opt *options, int option_count);
PLUGIN_API int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
                                        int option_count);

typedef struct bltn_plugin {
    mosquitto_plugin_id_t *id;
    char *ns;
    size_t ns_len;
    char *token_key; /* NULL: TLS listener, identities come from certificates */
    bool ws_server;  /* WebSocket clients are the server (the IoT Core stand-in) */

    /* the topic rule; off when env_file is NULL */
    char *rule_env;
    wb_config *rule_cfg;
    wb_queue *rule_q;
    uint64_t rule_pause_until; /* monotonic ms: refuse without trying before */
    unsigned rule_failures;    /* in a row */
    uint64_t forwarded, refused_invalid, refused_queue;
} bltn_plugin;

/* How long one queue write may keep retrying: the broker waits meanwhile. */
#define RULE_RETRY_LIMIT_MS 2000u
#define RULE_PAUSE_MIN_MS   250u
#define RULE_PAUSE_MAX_MS   5000u

typedef enum bltn_who { BLTN_NOBODY, BLTN_SERVER, BLTN_WORKER } bltn_who;

static const char *access_name(int access)
{
    switch (access) {
    case MOSQ_ACL_READ:
        return "read";
    case MOSQ_ACL_WRITE:
        return "publish to";
    case MOSQ_ACL_SUBSCRIBE:
        return "subscribe to";
    case MOSQ_ACL_UNSUBSCRIBE:
        return "unsubscribe from";
    }
    return "access";
}

/* Who the client is; for a worker, its canonical pool and worker ULIDs. */
static bltn_who identify(struct mosquitto *client, char pool[WB_ULID_STR_SIZE],
                         char worker[WB_ULID_STR_SIZE])
{
    const char *user = mosquitto_client_username(client);
    const char *id = mosquitto_client_id(client);
    if (!user)
        return BLTN_NOBODY;
    if (strcmp(user, WB_PKI_SERVER_IDENTITY) == 0)
        return BLTN_SERVER;
    if (!id || wb_ulid_canonical(user, pool) != WB_OK || wb_ulid_canonical(id, worker) != WB_OK)
        return BLTN_NOBODY;
    return BLTN_WORKER;
}

/* Whether topic is <ns>/<dir>/<pool>/<worker> exactly (pool/worker NULL:
 * any ULIDs in canonical form). */
static bool is_topic(const bltn_plugin *p, const char *topic, wb_topic_dir dir, const char *pool,
                     const char *worker)
{
    wb_topic_parts parts;
    if (!topic || wb_topic_parse(topic, p->ns, &parts) != WB_OK || parts.dir != dir)
        return false;
    /* the parser accepts any case; a topic names a worker in canonical form */
    const char *ulids = topic + p->ns_len + 1 + strlen(wb_topic_dir_name(dir)) + 1;
    if (strncmp(ulids, parts.pool, WB_ULID_LEN) != 0 ||
        strcmp(ulids + WB_ULID_LEN + 1, parts.worker) != 0)
        return false;
    return !pool || (strcmp(parts.pool, pool) == 0 && strcmp(parts.worker, worker) == 0);
}

/* The server subscribes to <ns>/writeonly/# or to one worker's topic. */
static bool server_may_subscribe(const bltn_plugin *p, const char *filter)
{
    if (!filter || strncmp(filter, p->ns, p->ns_len) != 0 || filter[p->ns_len] != '/')
        return false;
    const char *rest = filter + p->ns_len + 1;
    if (strcmp(rest, "writeonly/#") == 0 || strcmp(rest, "writeonly/+/+") == 0)
        return true;
    return is_topic(p, filter, WB_TOPIC_WRITEONLY, NULL, NULL);
}

/* The topic rule takes JSON objects only, as IoT Core's does. */
static bool payload_is_object(const struct mosquitto_evt_acl_check *ed, const char *pool,
                              const char *worker)
{
    json_error_t je;
    json_t *j = json_loadb(ed->payload ? ed->payload : "", ed->payloadlen,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    bool ok = json_is_object(j);
    if (!ok)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "Warning: workerbus: topic rule: refused a message of worker %s (pool "
                             "%s, from %s) on \"%s\": the payload (%u bytes) is %s; workers "
                             "must publish JSON objects",
                             worker, pool, mosquitto_client_address(ed->client), ed->topic,
                             (unsigned)ed->payloadlen,
                             !j                   ? "not JSON"
                             : json_is_array(j)   ? "a JSON array"
                             : json_is_string(j)  ? "a JSON string"
                             : json_is_number(j)  ? "a JSON number"
                             : json_is_boolean(j) ? "a JSON boolean"
                                                  : "JSON null");
    json_decref(j);
    return ok;
}

static int bltn_acl(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_acl_check *ed = event_data;
    const bltn_plugin *p = userdata;
    char pool[WB_ULID_STR_SIZE], worker[WB_ULID_STR_SIZE];
    bltn_who who = identify(ed->client, pool, worker);
    bool ok = false;
    switch (who) {
    case BLTN_SERVER:
        if (ed->access == MOSQ_ACL_WRITE)
            ok = is_topic(p, ed->topic, WB_TOPIC_READONLY, NULL, NULL);
        else if (ed->access == MOSQ_ACL_SUBSCRIBE || ed->access == MOSQ_ACL_UNSUBSCRIBE)
            ok = server_may_subscribe(p, ed->topic);
        else if (ed->access == MOSQ_ACL_READ)
            ok = is_topic(p, ed->topic, WB_TOPIC_WRITEONLY, NULL, NULL);
        break;
    case BLTN_WORKER:
        if (ed->access == MOSQ_ACL_WRITE) {
            ok = is_topic(p, ed->topic, WB_TOPIC_WRITEONLY, pool, worker);
            if (ok && p->rule_env && !payload_is_object(ed, pool, worker))
                return MOSQ_ERR_ACL_DENIED;
        } else
            ok = is_topic(p, ed->topic, WB_TOPIC_READONLY, pool, worker);
        break;
    case BLTN_NOBODY:
        break;
    }
    if (ok)
        return MOSQ_ERR_SUCCESS;
    const char *user = mosquitto_client_username(ed->client);
    const char *id = mosquitto_client_id(ed->client);
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         "Warning: workerbus: denied client \"%s\" (identity \"%s\"%s, from %s) "
                         "to %s \"%s\"",
                         id ? id : "", user ? user : "",
                         who == BLTN_NOBODY ? ", not a worker: the client id must be a worker "
                                              "ULID and the certificate's name a pool ULID"
                                            : "",
                         mosquitto_client_address(ed->client), access_name(ed->access),
                         ed->topic ? ed->topic : "");
    return MOSQ_ERR_ACL_DENIED;
}

/* Plain listeners: user name = pool ULID (or workerbus-server), password =
 * its token. */
static int bltn_basic_auth(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_basic_auth *ed = event_data;
    const bltn_plugin *p = userdata;
    const char *id = mosquitto_client_id(ed->client);
    const char *why = NULL;
    char pool[WB_ULID_STR_SIZE], worker[WB_ULID_STR_SIZE];
    char expect[WB_PKI_TOKEN_LEN + 1];
    if (p->ws_server && mosquitto_client_protocol(ed->client) == mp_websockets) {
        mosquitto_set_username(ed->client, WB_PKI_SERVER_IDENTITY);
        return MOSQ_ERR_SUCCESS;
    }
    if (!p->token_key)
        return MOSQ_ERR_PLUGIN_DEFER; /* certificate identities: not ours to check */
    if (!ed->username || !ed->password) {
        why = "no user name or password (anonymous access is refused)";
    } else {
        bool server = strcmp(ed->username, WB_PKI_SERVER_IDENTITY) == 0;
        if (!server && wb_ulid_canonical(ed->username, pool) != WB_OK)
            why = "the user name is neither a pool ULID nor workerbus-server";
        else if (!server && (!id || wb_ulid_canonical(id, worker) != WB_OK))
            why = "the client id is not a worker ULID";
        else if (wb_pki_token(p->token_key, server ? NULL : pool, expect, NULL) != WB_OK)
            why = "the broker cannot read its token key";
        else if (strlen(ed->password) != WB_PKI_TOKEN_LEN ||
                 CRYPTO_memcmp(ed->password, expect, WB_PKI_TOKEN_LEN) != 0)
            why = "wrong password for this user name";
        OPENSSL_cleanse(expect, sizeof expect);
        if (!why && !server) /* what the ACL check reads as the pool */
            mosquitto_set_username(ed->client, pool);
    }
    if (!why)
        return MOSQ_ERR_SUCCESS;
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         "Warning: workerbus: refused connection of client \"%s\" (user \"%s\", "
                         "from %s): %s",
                         id ? id : "", ed->username ? ed->username : "",
                         mosquitto_client_address(ed->client), why);
    return MOSQ_ERR_AUTH;
}

/* ---- the topic rule ------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The library's log lines, in Mosquitto's log. */
static void log_to_mosquitto(void *ctx, wb_log_level level, const char *component,
                             const char *message)
{
    (void)ctx;
    int ml = level == WB_LOG_DEBUG  ? MOSQ_LOG_DEBUG
             : level == WB_LOG_INFO ? MOSQ_LOG_INFO
             : level == WB_LOG_WARN ? MOSQ_LOG_WARNING
                                    : MOSQ_LOG_ERR;
    mosquitto_log_printf(ml, "workerbus: %s: %s", component, message);
}

static void rule_failed(bltn_plugin *p)
{
    unsigned shift = p->rule_failures < 5 ? p->rule_failures : 5;
    unsigned pause = RULE_PAUSE_MIN_MS << shift;
    p->rule_pause_until = mono_ms() + (pause < RULE_PAUSE_MAX_MS ? pause : RULE_PAUSE_MAX_MS);
    p->rule_failures++;
}

/* Opens the queue on first use, and again after a failed open. */
static bool rule_queue(bltn_plugin *p)
{
    if (p->rule_q)
        return true;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = RULE_RETRY_LIMIT_MS;
    wb_err err = wb_queue_open(p->rule_cfg, &o, &p->rule_q);
    if (err) {
        mosquitto_log_printf(
            MOSQ_LOG_WARNING, "Warning: workerbus: topic rule: cannot open the %s queue: %s",
            wb_queue_type_name(wb_config_queue_type(p->rule_cfg)),
            wb_queue_last_error(NULL) ? wb_queue_last_error(NULL) : wb_strerror(err));
        p->rule_q = NULL;
        return false;
    }
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "workerbus: topic rule: writing to the %s queue",
                         wb_queue_backend(p->rule_q));
    return true;
}

static int bltn_message(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_message *ed = event_data;
    bltn_plugin *p = userdata;
    char pool[WB_ULID_STR_SIZE], worker[WB_ULID_STR_SIZE];
    if (!p->rule_env || identify(ed->client, pool, worker) != BLTN_WORKER ||
        !is_topic(p, ed->topic, WB_TOPIC_WRITEONLY, pool, worker))
        return MOSQ_ERR_SUCCESS;
    const char *why = NULL;
    char *detail = NULL;
    if (mono_ms() < p->rule_pause_until) {
        why = "the queue failed moments ago; the worker will send it again";
    } else if (!rule_queue(p)) {
        why = "the queue cannot be opened";
    } else {
        char *body = NULL;
        size_t body_len = 0;
        wb_err err = wb_envelope_encode(ed->payload, ed->payloadlen, pool, worker, wall_ms(), &body,
                                        &body_len, &detail);
        if (err == WB_ERR_INVALID_ARGUMENT) { /* the access check lets only objects through */
            p->refused_invalid++;
            mosquitto_log_printf(MOSQ_LOG_WARNING,
                                 "Warning: workerbus: topic rule: dropped a message of worker %s "
                                 "on \"%s\": %s",
                                 worker, ed->topic, detail ? detail : "not a JSON object");
            free(detail);
            return MOSQ_ERR_ACL_DENIED;
        }
        if (!err) {
            wb_queue_entry e = {.body = body, .body_len = body_len};
            err = wb_queue_send(p->rule_q, WB_LQ_IOT, &e, NULL);
            if (err) {
                detail = wb__asprintf(
                    "%s: %s", wb_strerror(err),
                    wb_queue_last_error(p->rule_q) ? wb_queue_last_error(p->rule_q) : "");
                why = detail;
            }
        } else {
            why = wb_strerror(err);
        }
        free(body);
        if (!err) {
            p->forwarded++;
            if (p->rule_failures)
                mosquitto_log_printf(MOSQ_LOG_NOTICE,
                                     "workerbus: topic rule: the iot queue takes messages again");
            p->rule_failures = 0;
            return MOSQ_ERR_SUCCESS;
        }
    }
    if (mono_ms() >= p->rule_pause_until)
        rule_failed(p);
    p->refused_queue++;
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         "Warning: workerbus: topic rule: not acknowledging a message of worker %s "
                         "(pool %s) on \"%s\", closing its connection: %s",
                         worker, pool, ed->topic, why);
    free(detail);
    return MOSQ_ERR_UNKNOWN; /* Mosquitto closes the connection; no PUBACK */
}

PLUGIN_API int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++) {
        if (supported_versions[i] == 5)
            return 5;
    }
    return -1;
}

static void plugin_free(bltn_plugin *p)
{
    if (!p)
        return;
    wb_queue_close(p->rule_q);
    wb_config_free(p->rule_cfg);
    free(p->rule_env);
    free(p->ns);
    free(p->token_key);
    free(p);
}

PLUGIN_API int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                     struct mosquitto_opt *options, int option_count)
{
    bltn_plugin *p = calloc(1, sizeof *p);
    if (!p)
        return MOSQ_ERR_NOMEM;
    p->id = identifier;
    for (int i = 0; i < option_count; i++) {
        if (strcmp(options[i].key, "namespace") == 0) {
            free(p->ns);
            p->ns = wb__strdup(options[i].value);
        } else if (strcmp(options[i].key, "token_key") == 0) {
            free(p->token_key);
            p->token_key = wb__strdup(options[i].value);
        } else if (strcmp(options[i].key, "websockets_server") == 0) {
            p->ws_server = strcmp(options[i].value, "true") == 0;
        } else if (strcmp(options[i].key, "topic_rule_env") == 0) {
            free(p->rule_env);
            p->rule_env = wb__strdup(options[i].value);
        }
    }
    if (!p->ns || wb_namespace_check(p->ns, NULL) != WB_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: plugin_opt_namespace is missing or "
                                           "invalid");
        plugin_free(p);
        return MOSQ_ERR_INVAL;
    }
    p->ns_len = strlen(p->ns);
    if (p->rule_env) {
        wb_log_set_handler(log_to_mosquitto, NULL);
        char *d = NULL;
        if (wb__config_load_queue(p->rule_env, &p->rule_cfg, &d) != WB_OK) {
            mosquitto_log_printf(MOSQ_LOG_ERR,
                                 "Error: workerbus: topic rule: the queue settings in %s are not "
                                 "usable: %s",
                                 p->rule_env, d ? d : "out of memory");
            free(d);
            plugin_free(p);
            return MOSQ_ERR_INVAL;
        }
    }
    int rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, bltn_acl, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS && p->rule_env)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, bltn_message, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS && (p->token_key || p->ws_server))
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL, p);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: cannot register callbacks: %s",
                             mosquitto_strerror(rc));
        plugin_free(p);
        return rc;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "workerbus: plugin ready (namespace \"%s\", %s, %s)", p->ns,
                         p->token_key ? "plain listener, token passwords"
                                      : "TLS listener, certificate identities",
                         p->rule_cfg ? "topic rule to the iot queue" : "no topic rule");
    *userdata = p;
    return MOSQ_ERR_SUCCESS;
}

PLUGIN_API int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
                                        int option_count)
{
    (void)options;
    (void)option_count;
    bltn_plugin *p = userdata;
    if (p) {
        mosquitto_callback_unregister(p->id, MOSQ_EVT_ACL_CHECK, bltn_acl, NULL);
        if (p->token_key || p->ws_server)
            mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL);
        if (p->rule_cfg) {
            mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, bltn_message, NULL);
            mosquitto_log_printf(MOSQ_LOG_INFO,
                                 "workerbus: topic rule: %llu message(s) written to the iot queue, "
                                 "%llu refused while the queue failed, %llu dropped as not JSON "
                                 "objects",
                                 (unsigned long long)p->forwarded,
                                 (unsigned long long)p->refused_queue,
                                 (unsigned long long)p->refused_invalid);
        }
    }
    plugin_free(p);
    return MOSQ_ERR_SUCCESS;
}
