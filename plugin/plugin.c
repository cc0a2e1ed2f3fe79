/* The workerbus Mosquitto plugin (plugin interface version 5).
 *
 * Identity, at every CONNECT (the basic-auth event, which Mosquitto runs
 * before it looks for an existing session of the client id): on a TLS
 * listener, the common name of the client certificate (verified by the
 * handshake against the CA) is a pool ULID for a worker, "workerbus-server"
 * for the server; on a plain listener, the user name, proven with a token
 * (HMAC of the pool, see wb_pki_token()). The plugin sets the user name to
 * that identity. A worker's client id is its worker ULID, and a worker id is
 * bound to one pool (identities.h): a connection with another pool's
 * certificate, or with the server's, is refused (CONNACK "not authorized")
 * before it can take the session over; the server's ids are anything but
 * worker ULIDs, so no pool certificate can take them.
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
 * broker's message event, which runs before the PUBACK is sent.
 * - A message the queue can never take (larger than max_payload, not a JSON
 *   object, refused by the queue's limits) is refused to its worker alone:
 *   MQTT 5 gets PUBACK reason code 135; MQTT 3.1.1, which has no reason
 *   codes, is acknowledged and the message recorded in the dlq queue with
 *   the reason and the worker's identity. Nothing pauses.
 * - A transient failure (the queue is down) fails the event: Mosquitto
 *   closes that worker's connection without acknowledging, and the worker
 *   sends the message again after it reconnects. Writes are tried once,
 *   never retried here (this is Mosquitto's only thread); after a failure,
 *   messages are refused at once for a short, growing pause.
 * Warnings about what clients send are limited to LOG_BURST a second.
 *
 * Options (plugin_opt_*): namespace (required), token_key (plain listeners),
 * topic_rule_env (a file of the queue's variables, see
 * wb__config_load_queue(); without it there is no topic rule),
 * identities_file (where worker id bindings survive a restart; without it
 * they live in memory only), max_payload (bytes, by default
 * WB_BUNDLED_MAX_PAYLOAD, at most WB_BUNDLED_MAX_PAYLOAD_LIMIT),
 * replica_id and replica_env (this broker's replica, and a file of the
 * queue's variables whose DATABASE_URL worker presence is recorded in, see
 * presence.h),
 * topic_rule_ack ("received": worker messages are acknowledged at once and
 * written by a thread of the plugin, see writer.h),
 * listen_backlog (the listen queue of every listener, 1-65535, the kernel
 * capping it at net.core.somaxconn: Mosquitto 2.0 listens with a backlog
 * of 100, so a reconnect storm overflows it and the kernel drops the
 * connections; listen() again on a listening socket sets the new length,
 * which the plugin does at its first tick, once Mosquitto has opened its
 * listeners),
 * websockets_server (the IoT Core stand-in only: "true" makes every client
 * of a WebSocket listener the server, as IoT Core admits a SigV4-signed
 * connection with the rights of its IAM identity; the stand-in does not
 * check the signature).
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "config_views.h"
#include "identities.h"
#include "presence.h"
#include "writer.h"
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
    char *token_key;         /* NULL: TLS listener, identities come from certificates */
    bool ws_server;          /* WebSocket clients are the server (the IoT Core stand-in) */
    bltn_ids *ids;           /* worker id -> pool */
    char *replica;           /* replica id; NULL: no replicas, no presence */
    bltn_presence *presence; /* which workers this broker holds, in PostgreSQL */
    size_t max_payload;
    uint64_t refused_identity, refused_size;

    /* warnings about one worker's messages, at most LOG_BURST a second */
    uint64_t log_window_ms;
    unsigned log_in_window;
    uint64_t log_suppressed;
    uint64_t last_sync_ms;
    int listen_backlog; /* 0: Mosquitto's own; set at the first tick, then -1 */

    /* the topic rule; off when env_file is NULL */
    char *rule_env;
    wb_config *rule_cfg;
    wb_queue *rule_q;
    uint64_t rule_pause_until; /* monotonic ms: refuse without trying before */
    unsigned rule_failures;    /* in a row */
    uint64_t forwarded, refused_invalid, refused_queue, dead_lettered;
    /* topic_rule_ack received: acknowledged at once, written by this thread */
    bool ack_received;
    bltn_writer *writer;
} bltn_plugin;

/* How long a stopping broker gives the writer to write what it holds. */
#define WRITER_FLUSH_MS 5000u

#define RULE_PAUSE_MIN_MS 250u
#define RULE_PAUSE_MAX_MS 5000u
#define LOG_BURST         20u
/* How much of a refused payload its dead-letter record keeps: base64 of it
 * and the record's other fields fit the queue's 256 KiB. */
#define DLQ_PAYLOAD_MAX (96u * 1024u)

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

/* NULL when the payload is a JSON object (the topic rule takes objects only,
 * as IoT Core's does), else what it is. */
static const char *not_an_object(const void *payload, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(payload ? payload : "", len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    const char *what = json_is_object(j)    ? NULL
                       : !j                 ? "not JSON"
                       : json_is_array(j)   ? "a JSON array"
                       : json_is_string(j)  ? "a JSON string"
                       : json_is_number(j)  ? "a JSON number"
                       : json_is_boolean(j) ? "a JSON boolean"
                                            : "JSON null";
    json_decref(j);
    return what;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A warning about what one client did: at most LOG_BURST a second, so that
 * a client repeating itself cannot flood the log (what was left out is
 * counted in the next line). Arguments a client chose must be escaped. */
WB__PRINTF(2, 3) static void worker_warn(bltn_plugin *p, const char *fmt, ...)
{
    uint64_t now = mono_ms();
    if (now - p->log_window_ms >= 1000u) {
        if (p->log_suppressed)
            mosquitto_log_printf(MOSQ_LOG_WARNING,
                                 "Warning: workerbus: %llu more refusal(s) not logged in the last "
                                 "second",
                                 (unsigned long long)p->log_suppressed);
        p->log_window_ms = now;
        p->log_in_window = 0;
        p->log_suppressed = 0;
    }
    if (p->log_in_window >= LOG_BURST) {
        p->log_suppressed++;
        return;
    }
    p->log_in_window++;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    mosquitto_log_printf(MOSQ_LOG_WARNING, "Warning: workerbus: %s", text);
}

/* What a client chose (its id, a user name, a topic), safe for the log. */
typedef struct esc_buf {
    char s[320];
} esc_buf;

static const char *esc(esc_buf *b, const char *text)
{
    char *e = wb_escape(text, text ? strlen(text) : 0);
    snprintf(b->s, sizeof b->s, "%s", e ? e : "?");
    wb_free(e);
    return b->s;
}

static int bltn_acl(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_acl_check *ed = event_data;
    bltn_plugin *p = userdata;
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
            /* with the topic rule, the message event judges the payload */
            if (ok && !p->rule_env && ed->payloadlen > p->max_payload) {
                p->refused_size++;
                worker_warn(p,
                            "refused a message of worker %s (pool %s, from %s): the payload "
                            "is %u bytes; the limit is %zu",
                            worker, pool, mosquitto_client_address(ed->client),
                            (unsigned)ed->payloadlen, p->max_payload);
                return MOSQ_ERR_ACL_DENIED;
            }
        } else {
            ok = is_topic(p, ed->topic, WB_TOPIC_READONLY, pool, worker);
            /* subscribed to its own topic: what is routed here reaches it */
            if (ok && p->presence && ed->access == MOSQ_ACL_SUBSCRIBE)
                bltn_presence_subscribed(p->presence, worker, ed->client);
        }
        break;
    case BLTN_NOBODY:
        break;
    }
    if (ok)
        return MOSQ_ERR_SUCCESS;
    esc_buf e1, e2, e3;
    worker_warn(p, "denied client \"%s\" (identity \"%s\"%s, from %s) to %s \"%s\"",
                esc(&e1, mosquitto_client_id(ed->client)),
                esc(&e2, mosquitto_client_username(ed->client)),
                who == BLTN_NOBODY ? ", not a worker: the client id must be a worker "
                                     "ULID and the certificate's name a pool ULID"
                                   : "",
                mosquitto_client_address(ed->client), access_name(ed->access), esc(&e3, ed->topic));
    return MOSQ_ERR_ACL_DENIED;
}

/* The one common name of a TLS client's certificate (Mosquitto verified the
 * certificate against the CA during the handshake). */
static bool cert_identity(struct mosquitto *client, char *out, size_t n)
{
    X509 *cert = mosquitto_client_certificate(client);
    if (!cert)
        return false;
    X509_NAME *name = X509_get_subject_name(cert);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    bool ok = false;
    if (idx >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, idx) < 0) {
        const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
        const unsigned char *v = ASN1_STRING_get0_data(d);
        int len = ASN1_STRING_length(d);
        if (v && len > 0 && (size_t)len < n && !memchr(v, '\0', (size_t)len)) {
            memcpy(out, v, (size_t)len);
            out[len] = '\0';
            ok = true;
        }
    }
    X509_free(cert);
    return ok;
}

static int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

/* Whether this identity (canonical pool ULID, or NULL for the server) may
 * use the client's id. Worker ids are worker ULIDs, each bound to one pool;
 * the server's ids are anything else. Returns NULL, or why not (in buf). */
static const char *client_id_refusal(bltn_plugin *p, struct mosquitto *client, const char *pool,
                                     char *buf, size_t n)
{
    const char *id = mosquitto_client_id(client);
    char worker[WB_ULID_STR_SIZE], other[WB_ULID_STR_SIZE];
    bool is_ulid = id && wb_ulid_canonical(id, worker) == WB_OK;
    if (!pool)
        return is_ulid ? "the server's certificate cannot take a worker ULID as client id" : NULL;
    if (!is_ulid)
        return "the client id is not a worker ULID: a pool's certificate connects with its "
               "worker's ULID as client id, never with the server's ids";
    if (bltn_ids_claim(p->ids, worker, pool, client, wall_s(), other))
        return NULL;
    snprintf(buf, n,
             "worker %s belongs to pool %s: a worker id is bound to the pool that first "
             "connected with it, until %u days after it was last connected",
             worker, other, BLTN_IDS_EXPIRY_S / 86400u);
    return buf;
}

/* Every CONNECT: who the client is (the certificate's common name on a TLS
 * listener; user name and token on a plain one), and whether that identity
 * may use the client id. Runs before Mosquitto looks for an existing
 * session of that id, so a refused client takes nothing over. */
static int bltn_basic_auth(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_basic_auth *ed = event_data;
    bltn_plugin *p = userdata;
    const char *why = NULL;
    char pool[WB_ULID_STR_SIZE], worker[WB_ULID_STR_SIZE], cn[256] = "";
    char expect[WB_PKI_TOKEN_LEN + 1], buf[320];
    bool server = false;
    if (p->ws_server && mosquitto_client_protocol(ed->client) == mp_websockets) {
        mosquitto_set_username(ed->client, WB_PKI_SERVER_IDENTITY);
        return MOSQ_ERR_SUCCESS;
    }
    if (!p->token_key) {
        /* the identity is the certificate's, whatever user name was given */
        if (!cert_identity(ed->client, cn, sizeof cn))
            why = "no client certificate with exactly one common name";
        else if (!(server = strcmp(cn, WB_PKI_SERVER_IDENTITY) == 0) &&
                 wb_ulid_canonical(cn, pool) != WB_OK)
            why = "the certificate's common name is neither a pool ULID nor workerbus-server";
    } else if (!ed->username || !ed->password) {
        why = "no user name or password (anonymous access is refused)";
    } else {
        snprintf(cn, sizeof cn, "%s", ed->username);
        server = strcmp(ed->username, WB_PKI_SERVER_IDENTITY) == 0;
        const char *id = mosquitto_client_id(ed->client);
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
    }
    /* what the access checks read as the identity */
    if (!why && mosquitto_set_username(ed->client, server ? WB_PKI_SERVER_IDENTITY : pool) !=
                    MOSQ_ERR_SUCCESS)
        why = "out of memory";
    if (!why)
        why = client_id_refusal(p, ed->client, server ? NULL : pool, buf, sizeof buf);
    if (!why) {
        if (!server && p->presence &&
            wb_ulid_canonical(mosquitto_client_id(ed->client), worker) == WB_OK)
            bltn_presence_connected(p->presence, pool, worker, ed->client);
        return MOSQ_ERR_SUCCESS;
    }
    p->refused_identity++;
    esc_buf e1, e2;
    worker_warn(p, "refused connection of client \"%s\" (%s \"%s\", from %s): %s",
                esc(&e1, mosquitto_client_id(ed->client)), p->token_key ? "user" : "certificate",
                esc(&e2, cn), mosquitto_client_address(ed->client), why);
    return MOSQ_ERR_AUTH;
}

/* A connection ended: its worker id's binding is no longer held by it. */
static int bltn_disconnect(int event, void *event_data, void *userdata)
{
    (void)event;
    struct mosquitto_evt_disconnect *ed = event_data;
    bltn_plugin *p = userdata;
    char pool[WB_ULID_STR_SIZE], worker[WB_ULID_STR_SIZE];
    if (identify(ed->client, pool, worker) == BLTN_WORKER) {
        bltn_ids_release(p->ids, worker, ed->client, wall_s());
        if (p->presence)
            bltn_presence_ended(p->presence, worker, ed->client);
    }
    return MOSQ_ERR_SUCCESS;
}

static int has_subscriptions(const void *holder)
{
    return mosquitto_client_sub_count((const struct mosquitto *)holder) > 0;
}

/* Mosquitto's listening sockets get a longer listen queue. The process's
 * descriptors are walked: Mosquitto does not give a plugin its listeners,
 * and the only listening sockets of the process are its. Every line logged
 * here begins "workerbus: listen backlog" (after a "Warning: "): the
 * supervisor reads it as the sign that mosquitto runs its main loop. */
static void raise_backlog(int backlog)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "Warning: workerbus: listen backlog left at Mosquitto's 100: "
                             "/proc/self/fd: %s",
                             strerror(errno));
        return;
    }
    int raised = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        int on = 0;
        socklen_t len = sizeof on;
        if (*end || fd < 0 || fd == dirfd(d) ||
            getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || !on)
            continue;
        if (listen((int)fd, backlog) == 0)
            raised++;
        else
            failed++;
    }
    closedir(d);
    int cap = 0;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    if (f) {
        if (fscanf(f, "%d", &cap) != 1)
            cap = 0;
        fclose(f);
    }
    int effective = cap > 0 && cap < backlog ? cap : backlog;
    if (failed)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "Warning: workerbus: listen backlog of %d listener(s) left at "
                             "Mosquitto's 100: listen() failed",
                             failed);
    if (raised)
        mosquitto_log_printf(
            MOSQ_LOG_INFO, "workerbus: listen backlog of %d listener(s) raised from 100 to %d%s",
            raised, effective, effective < backlog ? " (capped by net.core.somaxconn)" : "");
}

/* About ten times a second: the bindings reach the disk once a second. */
static int bltn_tick(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    bltn_plugin *p = userdata;
    if (p->listen_backlog > 0) {
        raise_backlog(p->listen_backlog);
        p->listen_backlog = -1;
    }
    uint64_t now = mono_ms();
    if (now - p->last_sync_ms >= 1000u) {
        p->last_sync_ms = now;
        bltn_ids_sync(p->ids);
    }
    /* a persistent session that came back subscribed subscribes no more */
    if (p->presence)
        bltn_presence_check(p->presence, has_subscriptions);
    return MOSQ_ERR_SUCCESS;
}

/* ---- the topic rule ------------------------------------------------------ */

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

/* After a transient failure, writes are refused without trying for a
 * pause that grows with each failure in a row. */
static void rule_failed(bltn_plugin *p)
{
    p->rule_pause_until =
        mono_ms() + wb__backoff_ms(p->rule_failures, RULE_PAUSE_MIN_MS, RULE_PAUSE_MAX_MS);
    p->rule_failures++;
}

/* Opens the queue on first use, and again after a failed open. */
static bool rule_queue(bltn_plugin *p)
{
    if (p->rule_q)
        return true;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = WB_QUEUE_NO_RETRY; /* Mosquitto's only thread never sleeps here */
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

/* The dead-letter record of a message refused for good: what was refused,
 * why, and whose it was, with the payload (its first DLQ_PAYLOAD_MAX bytes)
 * in base64. */
static char *dlq_record(const struct mosquitto_evt_message *ed, const char *pool,
                        const char *worker, const char *why)
{
    size_t keep = ed->payloadlen < DLQ_PAYLOAD_MAX ? ed->payloadlen : DLQ_PAYLOAD_MAX;
    char *b64 = malloc(4 * ((keep + 2) / 3) + 1);
    if (!b64)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b64, ed->payload ? ed->payload : (const void *)"", (int)keep);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:b, s:s}", "refused_by", "workerbus topic rule",
        "reason", why, "worker_pool_ulid", pool, "worker_ulid", worker, "topic",
        ed->topic ? ed->topic : "", "mqtt_version", mosquitto_client_protocol_version(ed->client),
        "timestamp", (json_int_t)wall_ms(), "payload_bytes", (json_int_t)ed->payloadlen,
        "payload_truncated", keep < ed->payloadlen, "payload_base64", b64);
    free(b64);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    return text;
}

/* A message the queue can never take. MQTT 5: refused to its sender alone
 * (PUBACK reason code 135). MQTT 3.1.1, which has no reason codes:
 * acknowledged and kept in the dead-letter queue, so that nothing vanishes
 * and the worker does not send it again; when even that write fails, the
 * failure is transient (*transient set). */
static int refuse_for_good(bltn_plugin *p, const struct mosquitto_evt_message *ed, const char *pool,
                           const char *worker, const char *why, char **transient)
{
    esc_buf e;
    bool v5 = mosquitto_client_protocol_version(ed->client) == 5;
    if (!v5) {
        char *rec = dlq_record(ed, pool, worker, why);
        wb_err err = rec ? WB_OK : WB_ERR_NO_MEMORY;
        if (!err && mono_ms() < p->rule_pause_until)
            err = WB_ERR_CONNECTION_LOST;
        else if (!err && !rule_queue(p))
            err = WB_ERR_CONNECTION_LOST;
        if (!err) {
            wb_queue_entry q = {.body = rec, .body_len = strlen(rec)};
            err = wb_queue_send(p->rule_q, WB_LQ_DLQ, &q, NULL);
        }
        free(rec);
        if (err) {
            *transient =
                wb__asprintf("its dead-letter record cannot be written: %s", wb_strerror(err));
            return MOSQ_ERR_UNKNOWN;
        }
        p->dead_lettered++;
    }
    worker_warn(p,
                "topic rule: refused a message of worker %s (pool %s, from %s, MQTT %s) on "
                "\"%s\": %s; %s",
                worker, pool, mosquitto_client_address(ed->client), v5 ? "5" : "3.1.1",
                esc(&e, ed->topic), why,
                v5 ? "reason code 135 sent"
                   : "acknowledged and written to dlq (MQTT 3.1.1 has "
                     "no reason codes)");
    return MOSQ_ERR_ACL_DENIED; /* no PUBACK of success; the message goes nowhere */
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
    char *why = NULL;   /* transient: the worker sends it again */
    char *never = NULL; /* permanent: sending it again cannot help */
    const char *what = NULL;
    if (ed->payloadlen > p->max_payload) {
        p->refused_size++;
        never = wb__asprintf("the payload is %u bytes; the limit is %zu", (unsigned)ed->payloadlen,
                             p->max_payload);
    } else if ((what = not_an_object(ed->payload, ed->payloadlen))) {
        p->refused_invalid++;
        never = wb__asprintf("the payload (%u bytes) is %s; workers must publish JSON objects",
                             (unsigned)ed->payloadlen, what);
    } else if (p->writer) {
        char *body = NULL, *detail = NULL;
        size_t body_len = 0;
        wb_err err = wb_envelope_encode(ed->payload, ed->payloadlen, pool, worker, wall_ms(), &body,
                                        &body_len, &detail);
        if (err) {
            p->refused_invalid++;
            never = wb__asprintf("%s: %s", wb_strerror(err), detail ? detail : "");
        } else if (bltn_writer_push(p->writer, body, body_len, &why)) {
            p->forwarded++;
        }
        free(body);
        free(detail);
        if (!never && !why)
            return MOSQ_ERR_SUCCESS; /* acknowledged; written by the writer */
    } else if (mono_ms() < p->rule_pause_until) {
        why = wb__strdup("the queue failed moments ago; the worker will send it again");
    } else if (!rule_queue(p)) {
        why = wb__strdup("the queue cannot be opened");
    } else {
        char *body = NULL, *detail = NULL;
        size_t body_len = 0;
        wb_err err = wb_envelope_encode(ed->payload, ed->payloadlen, pool, worker, wall_ms(), &body,
                                        &body_len, &detail);
        if (!err) {
            wb_queue_entry e = {.body = body, .body_len = body_len};
            err = wb_queue_send(p->rule_q, WB_LQ_IOT, &e, NULL);
            if (err) {
                free(detail);
                detail = wb__strdup(wb_queue_last_error(p->rule_q));
            }
        }
        free(body);
        if (!err) {
            p->forwarded++;
            if (p->rule_failures)
                mosquitto_log_printf(MOSQ_LOG_NOTICE,
                                     "workerbus: topic rule: the iot queue takes messages again");
            p->rule_failures = 0;
            free(detail);
            return MOSQ_ERR_SUCCESS;
        }
        /* too large or not writable in any form: the same bytes always fail */
        char *text = wb__asprintf("%s: %s", wb_strerror(err), detail ? detail : "");
        if (err == WB_ERR_TOO_LARGE || err == WB_ERR_INVALID_ARGUMENT) {
            p->refused_invalid++;
            never = text;
        } else {
            why = text;
        }
        free(detail);
    }
    int rc = MOSQ_ERR_UNKNOWN;
    if (never) {
        rc = refuse_for_good(p, ed, pool, worker, never, &why);
        free(never);
        if (rc != MOSQ_ERR_UNKNOWN)
            return rc;
    }
    if (mono_ms() >= p->rule_pause_until)
        rule_failed(p);
    p->refused_queue++;
    worker_warn(p,
                "topic rule: not acknowledging a message of worker %s (pool %s) on \"%s\", "
                "closing its connection: %s",
                worker, pool, ed->topic, why ? why : "out of memory");
    free(why);
    return rc; /* Mosquitto closes the connection; no PUBACK */
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
    bltn_writer_stop(p->writer, WRITER_FLUSH_MS);
    bltn_presence_close(p->presence);
    free(p->replica);
    wb_queue_close(p->rule_q);
    wb_config_free(p->rule_cfg);
    bltn_ids_close(p->ids);
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
    p->max_payload = WB_BUNDLED_MAX_PAYLOAD;
    const char *ids_file = NULL, *replica_env = NULL;
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
        } else if (strcmp(options[i].key, "topic_rule_ack") == 0) {
            p->ack_received = strcmp(options[i].value, "received") == 0;
        } else if (strcmp(options[i].key, "replica_env") == 0) {
            replica_env = options[i].value;
        } else if (strcmp(options[i].key, "replica_id") == 0) {
            free(p->replica);
            p->replica = wb__strdup(options[i].value);
        } else if (strcmp(options[i].key, "listen_backlog") == 0) {
            char *end;
            unsigned long v = strtoul(options[i].value, &end, 10);
            if (*end || v < 1 || v > 65535) {
                mosquitto_log_printf(MOSQ_LOG_ERR,
                                     "Error: workerbus: plugin_opt_listen_backlog \"%.20s\" is "
                                     "not a number of connections from 1 to 65535",
                                     options[i].value);
                plugin_free(p);
                return MOSQ_ERR_INVAL;
            }
            p->listen_backlog = (int)v;
        } else if (strcmp(options[i].key, "identities_file") == 0) {
            ids_file = options[i].value;
        } else if (strcmp(options[i].key, "max_payload") == 0) {
            char *end = NULL;
            unsigned long v = strtoul(options[i].value, &end, 10);
            if (!end || *end || v < 1 || v > WB_BUNDLED_MAX_PAYLOAD_LIMIT) {
                mosquitto_log_printf(MOSQ_LOG_ERR,
                                     "Error: workerbus: plugin_opt_max_payload takes 1 to %u bytes",
                                     WB_BUNDLED_MAX_PAYLOAD_LIMIT);
                plugin_free(p);
                return MOSQ_ERR_INVAL;
            }
            p->max_payload = v;
        }
    }
    if (!p->ns || wb_namespace_check(p->ns, NULL) != WB_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: plugin_opt_namespace is missing or "
                                           "invalid");
        plugin_free(p);
        return MOSQ_ERR_INVAL;
    }
    p->ns_len = strlen(p->ns);
    if (p->rule_env || ids_file || p->replica)
        wb_log_set_handler(log_to_mosquitto, NULL);
    char *d = NULL;
    if (!(p->ids = bltn_ids_open(ids_file, BLTN_IDS_EXPIRY_S, &d))) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: worker identities: %s",
                             d ? d : "out of memory");
        free(d);
        plugin_free(p);
        return MOSQ_ERR_INVAL;
    }
    if (p->rule_env && wb__config_load_queue(p->rule_env, &p->rule_cfg, &d) != WB_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "Error: workerbus: topic rule: the queue settings in %s are not "
                             "usable: %s",
                             p->rule_env, d ? d : "out of memory");
        free(d);
        plugin_free(p);
        return MOSQ_ERR_INVAL;
    }
    if (p->rule_cfg && p->ack_received) {
        p->writer = bltn_writer_start(p->rule_cfg);
        if (!p->writer) {
            mosquitto_log_printf(MOSQ_LOG_ERR,
                                 "Error: workerbus: topic rule: cannot start its writer thread");
            plugin_free(p);
            return MOSQ_ERR_NOMEM;
        }
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "Warning: workerbus: topic rule: worker messages are acknowledged "
                             "before they are written to the queue "
                             "(MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received): a broker that "
                             "crashes loses those not yet written");
    }
    if (p->replica) {
        wb_config *rc = NULL;
        if (replica_env && wb__config_load_queue(replica_env, &rc, &d) != WB_OK) {
            mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: presence: %s is not usable: %s",
                                 replica_env, d ? d : "out of memory");
            free(d);
            plugin_free(p);
            return MOSQ_ERR_INVAL;
        }
        const char *url = wb__config_database_url_any(rc);
        if (!url || !*url) {
            mosquitto_log_printf(MOSQ_LOG_ERR,
                                 "Error: workerbus: plugin_opt_replica_id needs DATABASE_URL in "
                                 "plugin_opt_replica_env: replicas coordinate through "
                                 "PostgreSQL");
            wb_config_free(rc);
            plugin_free(p);
            return MOSQ_ERR_INVAL;
        }
        p->presence = bltn_presence_open(url, p->replica, &d);
        wb_config_free(rc);
        if (!p->presence) {
            mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: presence: %s",
                                 d ? d : "out of memory");
            free(d);
            plugin_free(p);
            return MOSQ_ERR_NOMEM;
        }
    }
    /* every CONNECT goes through the identity check, certificates too */
    int rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, bltn_acl, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, bltn_disconnect, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, bltn_tick, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS && p->rule_env)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, bltn_message, NULL, p);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: cannot register callbacks: %s",
                             mosquitto_strerror(rc));
        plugin_free(p);
        return rc;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO,
                         "workerbus: plugin ready (namespace \"%s\", %s, %s, %zu worker "
                         "identities, payloads up to %zu bytes)",
                         p->ns,
                         p->token_key ? "plain listener, token passwords"
                                      : "TLS listener, certificate identities",
                         p->rule_cfg ? "topic rule to the iot queue" : "no topic rule",
                         bltn_ids_count(p->ids), p->max_payload);
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
        mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL);
        mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, bltn_disconnect, NULL);
        mosquitto_callback_unregister(p->id, MOSQ_EVT_TICK, bltn_tick, NULL);
        if (p->rule_cfg)
            mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, bltn_message, NULL);
        mosquitto_log_printf(MOSQ_LOG_INFO,
                             "workerbus: topic rule: %llu message(s) written to the iot queue, "
                             "%llu refused while the queue failed, %llu refused as never "
                             "writable (%llu of them too large), %llu written to dlq; %llu "
                             "connection(s) refused for their identity",
                             (unsigned long long)p->forwarded, (unsigned long long)p->refused_queue,
                             (unsigned long long)(p->refused_invalid + p->refused_size),
                             (unsigned long long)p->refused_size,
                             (unsigned long long)p->dead_lettered,
                             (unsigned long long)p->refused_identity);
    }
    plugin_free(p);
    return MOSQ_ERR_SUCCESS;
}
