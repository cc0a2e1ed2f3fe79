/* The built-in broker's variables: credentials, listener, runtime directory
 * and the mosquitto executable. */
#define _GNU_SOURCE /* dladdr */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config_internal.h"
#include "wb_paths.h"

static const char *const pki_files[WB__V_COUNT] = {
    [WB__V_B_CA_FILE] = WB_PKI_CA_CERT,
    [WB__V_B_CA_KEY_FILE] = WB_PKI_CA_KEY,
    [WB__V_B_CERT_FILE] = WB_PKI_BROKER_CERT,
    [WB__V_B_KEY_FILE] = WB_PKI_BROKER_KEY,
    [WB__V_B_CLIENT_CERT_FILE] = WB_PKI_SERVER_CERT,
    [WB__V_B_CLIENT_KEY_FILE] = WB_PKI_SERVER_KEY,
    [WB__V_B_TOKEN_KEY_FILE] = WB_PKI_TOKEN_KEY,
};

static const char *const purposes[WB__V_COUNT] = {
    [WB__V_B_CA_FILE] = "the CA certificate that signs worker certificates",
    [WB__V_B_CERT_FILE] = "the broker's TLS certificate",
    [WB__V_B_KEY_FILE] = "the broker's TLS private key",
    [WB__V_B_CLIENT_CERT_FILE] = "the server's own client certificate",
    [WB__V_B_CLIENT_KEY_FILE] = "the server's own client key",
    [WB__V_B_TOKEN_KEY_FILE] = "the key of the passwords on a plain listener",
    [WB__V_B_PLUGIN] = "the workerbus Mosquitto plugin (workerbus_mosquitto.so)",
};

static bool is_builtin(const wb__loader *L)
{
    return L->broker_known && L->cfg->broker == WB_BROKER_BUILTIN;
}

/* -1: unknown (the endpoint is invalid), 0: plain, 1: tls:// */
static int tls_state(const wb__loader *L)
{
    if (!is_builtin(L) || !L->cfg->host)
        return -1;
    return L->cfg->tls ? 1 : 0;
}

static bool tls_only(enum wb__var v)
{
    return v == WB__V_B_CA_FILE || v == WB__V_B_CERT_FILE || v == WB__V_B_KEY_FILE ||
           v == WB__V_B_CLIENT_CERT_FILE || v == WB__V_B_CLIENT_KEY_FILE;
}

bool wb__cfg_builtin_var_used(const wb__loader *L, enum wb__var v)
{
    if (!L->broker_known)
        return true;
    if (!is_builtin(L))
        return false;
    int tls = tls_state(L);
    if (tls < 0)
        return true;
    if (tls_only(v))
        return tls == 1;
    if (v == WB__V_B_TOKEN_KEY_FILE)
        return tls == 0;
    return true;
}

static char *join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    return wb__asprintf("%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", name);
}

static void derive(wb__loader *L, enum wb__var v, char *value)
{
    free(L->derived[v]);
    L->derived[v] = value;
    if (!value)
        L->oom = true;
}

static bool check_pki_dir(wb__loader *L)
{
    const enum wb__var V = WB__V_B_PKI_DIR;
    const char *dir = wb__cfg_raw(L, V);
    if (!dir || L->bad[V])
        return false;
    struct stat st;
    int e = stat(dir, &st) != 0 ? errno : 0;
    if (e || !S_ISDIR(st.st_mode)) {
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__asprintf("create it with: workerbus pki init %s --host <broker "
                                          "host>",
                                          dir),
                             "is not a directory (%s); expected a directory made by "
                             "`workerbus pki init`",
                             e ? strerror(e) : "not a directory");
        return false;
    }
    for (int v = WB__V_B_CA_FILE; v <= WB__V_B_TOKEN_KEY_FILE; v++) {
        if (wb__cfg_raw(L, (enum wb__var)v) || !pki_files[v])
            continue;
        char *path = join(dir, pki_files[v]);
        /* the CA key is optional: a server may keep it elsewhere */
        if (v == WB__V_B_CA_KEY_FILE && path && access(path, F_OK) != 0) {
            free(path);
            continue;
        }
        derive(L, (enum wb__var)v, path);
    }
    return true;
}

/* A readable regular file; records an error on v otherwise. */
static bool check_file(wb__loader *L, enum wb__var v)
{
    const char *path = wb__cfg_effective(L, v);
    if (!path)
        return false;
    struct stat st;
    const char *from =
        wb__cfg_raw(L, v) || v == WB__V_B_PLUGIN ? "" : " (from MQTT_BROKER_BUILTIN_PKI_DIR)";
    if (path[0] != '/') {
        wb__cfg_problem(L, WB__ERR, v, "must be an absolute path to %s", purposes[v]);
        return false;
    }
    if (stat(path, &st) != 0) {
        wb__cfg_problem_hint(
            L, WB__ERR, v,
            wb__strdup(v == WB__V_B_PLUGIN ? "install workerbus (ninja install), or point this "
                                             "variable at the built plugin"
                                           : "workerbus pki init DIR creates every credential "
                                             "the built-in broker needs"),
            "%s%s cannot be used: %s (%s)", path, from, strerror(errno), purposes[v]);
        return false;
    }
    if (!S_ISREG(st.st_mode) || access(path, R_OK) != 0) {
        wb__cfg_problem(L, WB__ERR, v, "%s%s is not a readable file (%s)", path, from, purposes[v]);
        return false;
    }
    return true;
}

static void require(wb__loader *L, enum wb__var v, const char *why)
{
    if (wb__cfg_effective(L, v))
        return;
    wb__cfg_problem_hint(L, WB__ERR, v,
                         wb__strdup("set MQTT_BROKER_BUILTIN_PKI_DIR to a directory made by "
                                    "`workerbus pki init DIR`, or set this variable"),
                         "is required %s: the path of %s", why, purposes[v]);
}

/* cert/key pair; the certificate issued by the CA (when ca_ok) */
static void check_pair(wb__loader *L, enum wb__var cert, enum wb__var key, bool ca_ok)
{
    bool c = check_file(L, cert), k = check_file(L, key);
    if (!c || !k)
        return;
    char *d = NULL;
    wb_err err = wb_pki_check_pair(wb__cfg_effective(L, cert), wb__cfg_effective(L, key), &d);
    if (err == WB_ERR_AUTH_REFUSED && d && strstr(d, "does not belong"))
        wb__cfg_problem(L, WB__ERR, key, "%s", d);
    else if (err)
        wb__cfg_problem(L, WB__ERR, cert, "%s", d ? d : wb_strerror(err));
    wb_free(d);
    if (err || !ca_ok)
        return;
    err = wb_pki_check_issued_by(wb__cfg_effective(L, cert), wb__cfg_effective(L, WB__V_B_CA_FILE),
                                 &d);
    if (err)
        wb__cfg_problem_hint(
            L, WB__ERR, cert,
            wb__strdup("workers trust only MQTT_BROKER_BUILTIN_CA_FILE: issue every "
                       "certificate from that CA (workerbus pki reissue-broker DIR and "
                       "workerbus pki renew-server DIR issue the broker's and the server's "
                       "from DIR's CA)"),
            "%s", d ? d : wb_strerror(err));
    wb_free(d);
}

/* The PKI directory to name in a hint: MQTT_BROKER_BUILTIN_PKI_DIR, else a
 * placeholder. */
static const char *pki_dir_hint(const wb__loader *L)
{
    const char *d = wb__cfg_raw(L, WB__V_B_PKI_DIR);
    return d ? d : "DIR";
}

#define EXPIRY_WARNING_DAYS 30

/* A certificate that expires within EXPIRY_WARNING_DAYS is a warning, with
 * the command that renews it. */
static void check_expiry(wb__loader *L, enum wb__var v, const char *renew)
{
    const char *path = wb__cfg_effective(L, v);
    wb_pki_cert_info info;
    if (!path || wb_pki_cert_info_get(path, &info, NULL) != WB_OK)
        return;
    long long left = ((long long)info.not_after - (long long)time(NULL)) / 86400;
    if (info.not_after <= time(NULL) || left >= EXPIRY_WARNING_DAYS)
        return; /* expired: an error already */
    char until[32];
    time_t t = (time_t)info.not_after;
    strftime(until, sizeof until, "%Y-%m-%d", gmtime(&t));
    wb__cfg_problem_hint(L, WB__WARN, v, wb__asprintf("%s %s", renew, pki_dir_hint(L)),
                         "%s expires in %lld day%s (%s): renew it before then", path, left,
                         left == 1 ? "" : "s", until);
}

static void check_tls_credentials(wb__loader *L)
{
    const char *why = "with a tls:// endpoint";
    for (int v = WB__V_B_CA_FILE; v <= WB__V_B_CLIENT_KEY_FILE; v++) {
        if (v != WB__V_B_CA_KEY_FILE)
            require(L, (enum wb__var)v, why);
    }
    bool ca_ok = wb__cfg_effective(L, WB__V_B_CA_FILE) && check_file(L, WB__V_B_CA_FILE);
    if (wb__cfg_effective(L, WB__V_B_CERT_FILE) && wb__cfg_effective(L, WB__V_B_KEY_FILE))
        check_pair(L, WB__V_B_CERT_FILE, WB__V_B_KEY_FILE, ca_ok);
    if (wb__cfg_effective(L, WB__V_B_CLIENT_CERT_FILE) &&
        wb__cfg_effective(L, WB__V_B_CLIENT_KEY_FILE))
        check_pair(L, WB__V_B_CLIENT_CERT_FILE, WB__V_B_CLIENT_KEY_FILE, ca_ok);

    /* workers check the broker's certificate against the endpoint's host */
    const char *cert = wb__cfg_effective(L, WB__V_B_CERT_FILE);
    if (cert && L->cfg->host && wb__pki_cert_matches_host(cert, L->cfg->host) == 0)
        wb__cfg_problem_hint(L, WB__ERR, WB__V_B_CERT_FILE,
                             wb__asprintf("issue it again for that name, keeping the CA (pool "
                                          "certificates keep working): workerbus pki "
                                          "reissue-broker %s --host %s",
                                          pki_dir_hint(L), L->cfg->host),
                             "%s is not valid for the endpoint's host \"%s\": workers would "
                             "refuse the broker",
                             cert, L->cfg->host);
    check_expiry(L, WB__V_B_CERT_FILE, "workerbus pki reissue-broker");
    check_expiry(L, WB__V_B_CLIENT_CERT_FILE, "workerbus pki renew-server");
    check_expiry(L, WB__V_B_CA_FILE,
                 "a new CA (docs/operations.md, CA rotation); see: "
                 "workerbus pki status");
    const char *client = wb__cfg_effective(L, WB__V_B_CLIENT_CERT_FILE);
    char *cn = client ? wb__pki_cert_cn(client) : NULL;
    if (cn && strcmp(cn, WB_PKI_SERVER_IDENTITY) != 0)
        wb__cfg_problem(L, WB__ERR, WB__V_B_CLIENT_CERT_FILE,
                        "%s has the common name \"%s\"; the server's identity must be \"%s\" "
                        "(a worker certificate cannot publish to other workers)",
                        client, cn, WB_PKI_SERVER_IDENTITY);
    free(cn);
    if (wb__cfg_effective(L, WB__V_B_CA_KEY_FILE) && ca_ok && check_file(L, WB__V_B_CA_KEY_FILE)) {
        char *d = NULL;
        if (wb_pki_check_pair(wb__cfg_effective(L, WB__V_B_CA_FILE),
                              wb__cfg_effective(L, WB__V_B_CA_KEY_FILE), &d) != WB_OK)
            wb__cfg_problem(L, WB__ERR, WB__V_B_CA_KEY_FILE, "%s", d ? d : "invalid");
        wb_free(d);
    }
}

static void check_token_key(wb__loader *L)
{
    require(L, WB__V_B_TOKEN_KEY_FILE, "with a plain (non-TLS) endpoint");
    if (!wb__cfg_effective(L, WB__V_B_TOKEN_KEY_FILE) || !check_file(L, WB__V_B_TOKEN_KEY_FILE))
        return;
    char tok[WB_PKI_TOKEN_LEN + 1];
    char *d = NULL;
    if (wb_pki_token(wb__cfg_effective(L, WB__V_B_TOKEN_KEY_FILE), NULL, tok, &d) != WB_OK)
        wb__cfg_problem(L, WB__ERR, WB__V_B_TOKEN_KEY_FILE, "%s", d ? d : "unusable");
    wb_free(d);
}

/* MQTT_BROKER_BUILTIN_LISTEN: <host>:<port>, host an IPv4 address, a
 * bracketed IPv6 address or a DNS name. */
static void check_listen(wb__loader *L)
{
    const enum wb__var V = WB__V_B_LISTEN;
    const char *v = wb__cfg_raw(L, V);
    const char *expect = "expected <host>:<port> (e.g. 0.0.0.0:1984, [::]:1984, "
                         "127.0.0.1:1984), port 1-65535 except 1983";
    if (!v) {
        if (L->cfg->host) { /* default: the endpoint's host and port */
            L->cfg->listen_host = wb__strdup(L->cfg->host);
            L->cfg->listen_port = L->cfg->port;
            bool v6 = strchr(L->cfg->host, ':') != NULL;
            derive(L, V,
                   wb__asprintf("%s%s%s:%u", v6 ? "[" : "", L->cfg->host, v6 ? "]" : "",
                                L->cfg->port));
        }
        return;
    }
    if (L->bad[V])
        return;
    char *host = NULL;
    unsigned port = 0;
    const char *why = wb__hostport_parse(v, false, &host, &port, NULL);
    if (why || port == 1983) {
        wb__cfg_problem(L, WB__ERR, V, "%s; %s", why ? why : "port 1983 is the server's HTTP port",
                        expect);
        free(host);
        return;
    }
    L->cfg->listen_host = host;
    L->cfg->listen_port = port;
}

/* MQTT_BROKER_BUILTIN_MAX_PAYLOAD: bytes, plain decimal digits, 1 to the
 * limit whose envelope still fits the queue. */
static void check_max_payload(wb__loader *L)
{
    const enum wb__var V = WB__V_B_MAX_PAYLOAD;
    L->cfg->max_payload = WB_BUNDLED_MAX_PAYLOAD;
    const char *v = wb__cfg_raw(L, V);
    if (!v || L->bad[V])
        return;
    unsigned long long n = 0;
    bool digits = *v != '\0';
    for (const char *p = v; *p && digits; p++) {
        if (*p < '0' || *p > '9')
            digits = false;
        else if (n <= WB_BUNDLED_MAX_PAYLOAD_LIMIT)
            n = n * 10 + (unsigned)(*p - '0');
    }
    if (!digits || n < 1 || n > WB_BUNDLED_MAX_PAYLOAD_LIMIT) {
        wb__cfg_problem(L, WB__ERR, V,
                        "%s; expected a number of bytes from 1 to %u (plain decimal digits): "
                        "the envelope of a larger payload would not fit the queue's %u-byte "
                        "message body; the default is %u (128 KiB, as IoT Core)",
                        digits ? "is out of range" : "is not a plain decimal number of bytes",
                        WB_BUNDLED_MAX_PAYLOAD_LIMIT, WB_QUEUE_BODY_DEFAULT_MAX,
                        WB_BUNDLED_MAX_PAYLOAD);
        return;
    }
    L->cfg->max_payload = (size_t)n;
}

/* A whole number of seconds or messages: plain decimal digits, lo to hi.
 * Returns false (and says so, naming what is accepted) when it is not. */
static bool check_count(wb__loader *L, enum wb__var V, unsigned lo, unsigned hi, const char *unit,
                        unsigned *out)
{
    const char *v = wb__cfg_effective(L, V);
    if (!v || L->bad[V])
        return false;
    unsigned long long n = 0;
    bool digits = *v != '\0';
    for (const char *p = v; *p && digits; p++) {
        if (*p < '0' || *p > '9')
            digits = false;
        else if (n <= hi)
            n = n * 10 + (unsigned)(*p - '0');
    }
    if (!digits || n < lo || n > hi) {
        wb__cfg_problem(L, WB__ERR, V, "%s; expected %s from %u to %u (plain decimal digits)",
                        digits ? "is out of range" : "is not a plain decimal number", unit, lo, hi);
        return false;
    }
    *out = (unsigned)n;
    return true;
}

/* A replica's id: what other replicas and the database know it by. */
static bool replica_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* The replicas' variables. Replicas coordinate through DATABASE_URL: with
 * it set (always with MESSAGE_QUEUE_TYPE=postgres), this process is one
 * replica among any number; without it (SQS, one replica) none of these
 * may be set. */
static void check_replicas(wb__loader *L)
{
    static const enum wb__var vars[] = {WB__V_B_REPLICA_ID, WB__V_B_REPLICA_TIMEOUT,
                                        WB__V_B_OUTBOX_EXPIRY, WB__V_B_OUTBOX_MAX_PER_WORKER,
                                        WB__V_B_OUTBOX_MAX};
    L->cfg->replicas = wb__cfg_raw(L, WB__V_DATABASE_URL) != NULL;
    if (!L->cfg->replicas) {
        for (size_t i = 0; i < WB__ARRAY_LEN(vars); i++)
            if (wb__cfg_raw(L, vars[i]))
                wb__cfg_problem_hint(
                    L, WB__ERR, vars[i],
                    wb__strdup("set DATABASE_URL (required for more than one replica, also "
                               "with MESSAGE_QUEUE_TYPE=sqs), or unset this variable to run "
                               "a single replica without PostgreSQL"),
                    "is set, but replicas coordinate only through PostgreSQL and "
                    "DATABASE_URL is not set");
        return;
    }
#ifndef WB_HAVE_LIBPQ
    wb__cfg_problem_hint(L, WB__ERR, WB__V_DATABASE_URL,
                         wb__strdup("build workerbus with -Dpostgres=enabled, or unset "
                                    "DATABASE_URL to run a single replica"),
                         "is set, so the builtin broker's replicas would coordinate through "
                         "PostgreSQL, which this build of workerbus left out");
#endif
    const enum wb__var V = WB__V_B_REPLICA_ID;
    const char *id = wb__cfg_raw(L, V);
    if (!id && !L->bad[V]) {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !replica_id_valid(host)) {
            wb__cfg_problem(L, WB__ERR, V,
                            "is not set and the host name (\"%s\") cannot be a replica id: "
                            "set 1 to 63 letters, digits, '.', '_' or '-', unique among the "
                            "replicas",
                            host);
            L->bad[V] = true;
        } else {
            derive(L, V, wb__strdup(host));
        }
    } else if (id && !L->bad[V] && !replica_id_valid(id)) {
        wb__cfg_problem(L, WB__ERR, V,
                        "is not a replica id; expected 1 to 63 letters, digits, '.', '_' or "
                        "'-', unique among the replicas (e.g. the pod's name)");
    }
    check_count(L, WB__V_B_REPLICA_TIMEOUT, 3, 3600, "seconds", &L->cfg->replica_timeout_s);
    check_count(L, WB__V_B_OUTBOX_EXPIRY, 1, 14 * 86400, "seconds (14 days at most)",
                &L->cfg->outbox_expiry_s);
    check_count(L, WB__V_B_OUTBOX_MAX_PER_WORKER, 1, 1000000, "messages",
                &L->cfg->outbox_max_per_worker);
    check_count(L, WB__V_B_OUTBOX_MAX, 1, 1000000000, "messages", &L->cfg->outbox_max);
}

static void check_runtime_dir(wb__loader *L)
{
    const enum wb__var V = WB__V_B_RUNTIME_DIR;
    const char *dir = wb__cfg_effective(L, V);
    if (L->bad[V] || !dir)
        return;
    if (dir[0] != '/') {
        wb__cfg_problem(L, WB__ERR, V, "must be an absolute path");
        return;
    }
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            wb__cfg_problem(L, WB__ERR, V, "%s exists but is not a directory", dir);
        else if (access(dir, W_OK | X_OK) != 0)
            wb__cfg_problem(L, WB__ERR, V, "%s is not writable by this user", dir);
        return;
    }
    /* it will be created: some ancestor must exist and be writable */
    char *parent = wb__strdup(dir);
    if (!parent) {
        L->oom = true;
        return;
    }
    char *slash;
    while ((slash = strrchr(parent, '/')) != NULL) {
        *(slash == parent ? slash + 1 : slash) = '\0';
        if (stat(parent, &st) == 0)
            break;
        if (slash == parent)
            break;
    }
    if (!S_ISDIR(st.st_mode) || access(parent, W_OK | X_OK) != 0)
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__asprintf("create %s and give this user write access, or "
                                          "choose another directory",
                                          dir),
                             "%s does not exist and cannot be created here (%s is not "
                             "writable)",
                             dir, parent);
    free(parent);
}

static char *find_executable(const char *name)
{
    struct stat st;
    if (strchr(name, '/'))
        return stat(name, &st) == 0 && S_ISREG(st.st_mode) && access(name, X_OK) == 0
                   ? wb__strdup(name)
                   : NULL;
    const char *path = getenv("PATH");
    wb__buf dirs = WB__BUF_INIT;
    wb__buf_puts(&dirs, path ? path : "");
    wb__buf_puts(&dirs, ":/usr/sbin:/usr/local/sbin:/sbin");
    char *list = wb__buf_take(&dirs);
    char *found = NULL;
    for (char *save = NULL, *d = list ? strtok_r(list, ":", &save) : NULL; d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char *cand = join(d, name);
        if (cand && stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
            found = cand;
        else
            free(cand);
    }
    free(list);
    return found;
}

static void check_mosquitto(wb__loader *L)
{
    const enum wb__var V = WB__V_B_MOSQUITTO;
    const char *name = wb__cfg_effective(L, V);
    if (L->bad[V] || !name)
        return;
    char *path = find_executable(name);
    if (!path) {
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__strdup("install the Debian package mosquitto "
                                        "(scripts/bootstrap does), or give the path of the "
                                        "executable"),
                             "\"%s\" is not an executable found in PATH or /usr/sbin", name);
        return;
    }
    if (!wb__cfg_raw(L, V) || strcmp(path, name) != 0)
        derive(L, V, path); /* the resolved path is what the broker runs */
    else
        free(path);
}

/* The plugin when MQTT_BROKER_BUILTIN_PLUGIN is unset: the installed one;
 * else one found from where this code runs (the shared library, or the
 * program it is linked into), which is how an installation moved elsewhere
 * (<dir>/workerbus/) and a build tree (<build>/plugin/, from the library at
 * the build root or a program one or two folders below) find theirs. No
 * path of the build is compiled in. */
static char *default_plugin(void)
{
    if (access(WB_PLUGIN_PATH, R_OK) == 0)
        return wb__strdup(WB_PLUGIN_PATH);
    Dl_info info;
    char exe[4096];
    const char *self = NULL;
    if (dladdr((void *)&wb__cfg_check_builtin, &info) && info.dli_fname &&
        info.dli_fname[0] == '/') {
        self = info.dli_fname;
    } else { /* the main program, known by its argv[0]: ask the kernel */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            self = exe;
        }
    }
    if (self) {
        const char *slash = strrchr(self, '/');
        static const char *const near[] = {"/workerbus/", "/plugin/", "/../plugin/",
                                           "/../../plugin/"};
        for (size_t i = 0; i < WB__ARRAY_LEN(near); i++) {
            char *cand = wb__asprintf("%.*s%s%s", (int)(slash - self), self, near[i],
                                      "workerbus_mosquitto.so");
            if (cand && access(cand, R_OK) == 0)
                return cand;
            free(cand);
        }
    }
    return wb__strdup(WB_PLUGIN_PATH); /* named in the error that follows */
}

void wb__cfg_check_builtin(wb__loader *L)
{
    if (!L->broker_known)
        return;
    if (!is_builtin(L)) {
        for (int v = WB__V_B_PKI_DIR; v <= WB__V_B_LAST; v++) {
            if (wb__cfg_raw(L, (enum wb__var)v))
                wb__cfg_problem(L, WB__WARN, (enum wb__var)v,
                                "is only used by the built-in broker; it has no effect with "
                                "MQTT_BROKER_TYPE=iotcore");
        }
        return;
    }
    check_pki_dir(L);
    int tls = tls_state(L);
    if (tls == 1)
        check_tls_credentials(L);
    else if (tls == 0)
        check_token_key(L);
    if (tls >= 0) {
        for (int v = WB__V_B_CA_FILE; v <= WB__V_B_TOKEN_KEY_FILE; v++) {
            bool wrong = tls ? v == WB__V_B_TOKEN_KEY_FILE : tls_only((enum wb__var)v);
            if (wrong && wb__cfg_raw(L, (enum wb__var)v))
                wb__cfg_problem(L, WB__WARN, (enum wb__var)v, "is not used with a %s endpoint",
                                tls ? "tls://" : "plain (non-TLS)");
        }
    }
    check_listen(L);
    check_max_payload(L);
    check_replicas(L);
    check_runtime_dir(L);
    check_mosquitto(L);
    if (!wb__cfg_raw(L, WB__V_B_PLUGIN))
        derive(L, WB__V_B_PLUGIN, default_plugin());
    if (!L->bad[WB__V_B_PLUGIN] && !check_file(L, WB__V_B_PLUGIN))
        L->bad[WB__V_B_PLUGIN] = true;
}
