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
 * Options (plugin_opt_*): namespace (required), token_key (plain listeners).
 */
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

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
} bltn_plugin;

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
        if (ed->access == MOSQ_ACL_WRITE)
            ok = is_topic(p, ed->topic, WB_TOPIC_WRITEONLY, pool, worker);
        else
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
        }
    }
    if (!p->ns || wb_namespace_check(p->ns, NULL) != WB_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: plugin_opt_namespace is missing or "
                                           "invalid");
        plugin_free(p);
        return MOSQ_ERR_INVAL;
    }
    p->ns_len = strlen(p->ns);
    int rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, bltn_acl, NULL, p);
    if (rc == MOSQ_ERR_SUCCESS && p->token_key)
        rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL, p);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "Error: workerbus: cannot register callbacks: %s",
                             mosquitto_strerror(rc));
        plugin_free(p);
        return rc;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "workerbus: plugin ready (namespace \"%s\", %s)", p->ns,
                         p->token_key ? "plain listener, token passwords"
                                      : "TLS listener, certificate identities");
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
        if (p->token_key)
            mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, bltn_basic_auth, NULL);
    }
    plugin_free(p);
    return MOSQ_ERR_SUCCESS;
}
