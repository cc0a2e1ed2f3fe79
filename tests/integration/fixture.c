#include "fixture.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <ctype.h>
#include <libpq-fe.h>

#include "proc.h"
#include "sqs_urls.h"

/* The builtin configuration of e with these overrides. */
static wb_config *load_builtin(const wbt_env *e, const char *const *over)
{
    /* the services' database when the suite runs with them (replicas and
     * their outbox then work as in production), else one never reached
     * (the topic rule's tests give the real queues) */
    char db[700];
    const char *url = e->db_url[0] ? e->db_url : NULL;
    snprintf(db, sizeof db, "DATABASE_URL=%s", url ? url : "postgres://127.0.0.1/unused");
    /* each environment its own replica (suites run in parallel on one
     * database): named after its directory, the same across reconfigurations */
    char rid[128];
    const char *end = strrchr(e->run, '/'), *start = end;
    while (start && start > e->run && start[-1] != '/')
        start--;
    snprintf(rid, sizeof rid, "MQTT_BROKER_BUILTIN_REPLICA_ID=%.*s", start ? (int)(end - start) : 0,
             start ? start : "");
    char ep[96], pk[160], rn[160];
    snprintf(ep, sizeof ep, "MQTT_BROKER_ENDPOINT=%s", e->endpoint);
    snprintf(pk, sizeof pk, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", e->pki);
    snprintf(rn, sizeof rn, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s", e->run);
    const char *env[] = {"MQTT_BROKER_TYPE=builtin",
                         ep,
                         pk,
                         rn,
                         "MQTT_BROKER_BUILTIN_LOG_LEVEL=info",
                         "MESSAGE_QUEUE_TYPE=postgres",
                         db,
                         url && *url ? rid : NULL,
                         NULL};
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = env;
    o.overrides = over;
    wb_config_report *rep = NULL;
    wb_config *cfg = NULL;
    wb_err err = wb_config_load(&o, &cfg, &rep);
    if (err) {
        char *t = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
        cr_assert_fail("configuration refused:\n%s", t ? t : "");
    }
    wb_config_report_free(rep);
    return cfg;
}

void wbt_env_reconfigure(wbt_env *e, const char *const *over)
{
    cr_assert_null(e->broker, "stop the broker before changing its configuration");
    wb_config_free(e->cfg);
    e->cfg = load_builtin(e, over);
}

/* The PKI (broker certificate for these hosts), a worker certificate, and a
 * builtin configuration listening on host:port. */
static void setup_at(wbt_env *e, bool tls, const char *const *hosts, const char *host,
                     unsigned port, const char *const *over)
{
    memset(e, 0, sizeof *e);
    strcpy(e->dir, "/tmp/wbit-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    /* the broker drops to the mosquitto user, which must reach the runtime dir */
    chmod(e->dir, 0711);
    snprintf(e->pki, sizeof e->pki, "%s/pki", e->dir);
    snprintf(e->run, sizeof e->run, "%s/run", e->dir);
    snprintf(e->worker_key, sizeof e->worker_key, "%s/worker.key", e->dir);
    snprintf(e->worker_crt, sizeof e->worker_crt, "%s/worker.crt", e->dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    po.broker_hosts = hosts;
    char *d = NULL;
    cr_assert_eq(wb_pki_init(e->pki, &po, &d), WB_OK, "%s", d ? d : "");
    char *key = NULL, *csr = NULL, *crt = NULL, ca[160], cak[160];
    cr_assert_eq(wb_pki_new_csr(WB_PKI_KEY_EC_P256, "pool", &key, &csr, &d), WB_OK);
    snprintf(ca, sizeof ca, "%s/ca.crt", e->pki);
    snprintf(cak, sizeof cak, "%s/ca.key", e->pki);
    cr_assert_eq(wb_pki_sign_csr(ca, cak, WBT_POOL, csr, strlen(csr), 0, &crt, &d), WB_OK);
    FILE *f = fopen(e->worker_key, "w");
    fputs(key, f);
    fclose(f);
    f = fopen(e->worker_crt, "w");
    fputs(crt, f);
    fclose(f);
    wb_free(key);
    wb_free(csr);
    wb_free(crt);

    /* a database of its own on the services' PostgreSQL */
    const char *url = getenv("DATABASE_URL");
    const char *slash = url ? strrchr(url, '/') : NULL;
    if (slash && !strchr(slash, '?')) {
        char name[64];
        snprintf(name, sizeof name, "wbt_%s", strrchr(e->dir, '-') + 1);
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        PGconn *c = PQconnectdb(url);
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        PGresult *r = PQexec(c, sql);
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        snprintf(e->db_url, sizeof e->db_url, "%.*s/%s", (int)(slash - url), url, name);
    }
    e->tls = tls;
    e->port = port;
    snprintf(e->endpoint, sizeof e->endpoint, "%s%s:%u", tls ? "tls://" : "", host, e->port);
    e->cfg = load_builtin(e, over);
}

void wbt_env_setup(wbt_env *e, bool tls)
{
    static const char *const hosts[] = {"127.0.0.1", "localhost", NULL};
    setup_at(e, tls, hosts, "127.0.0.1", wbt_free_port(), NULL);
}

void wbt_env_setup_queue(wbt_env *e, bool tls, const char *const *over)
{
    static const char *const hosts[] = {"127.0.0.1", "localhost", NULL};
    setup_at(e, tls, hosts, "127.0.0.1", wbt_free_port(), over);
    e->topic_rule = true;
}

void wbt_env_setup_iot(wbt_env *e)
{
    wbt_env_setup_iot_queue(e, NULL);
}

void wbt_env_setup_iot_queue(wbt_env *e, const char *const *over)
{
    /* a loopback address of its own, so that 8883 is free whatever runs */
    char addr[32];
    snprintf(addr, sizeof addr, "127.%u.%u.%u", 1u + (unsigned)getpid() % 250u,
             (unsigned)(getpid() / 250) % 250u, 1u + (unsigned)rand() % 250u);
    const char *hosts[] = {WBT_IOT_ENDPOINT, addr, NULL};
    setup_at(e, true, hosts, addr, 8883, over);
    snprintf(e->iot_addr, sizeof e->iot_addr, "%s", addr);
    e->topic_rule = over != NULL;
    e->iot_cfg = wbt_env_iot_config(e, over);
}

wb_config *wbt_env_iot_config(const wbt_env *e, const char *const *over)
{
    char ep[128], cert[160], key[160], ca[160], to[96];
    snprintf(ep, sizeof ep, "MQTT_BROKER_ENDPOINT=%s", WBT_IOT_ENDPOINT);
    snprintf(cert, sizeof cert, "MQTT_BROKER_IOTCORE_CERT_FILE=%s/server.crt", e->pki);
    snprintf(key, sizeof key, "MQTT_BROKER_IOTCORE_KEY_FILE=%s/server.key", e->pki);
    snprintf(ca, sizeof ca, "MQTT_BROKER_IOTCORE_CA_FILE=%s/ca.crt", e->pki);
    snprintf(to, sizeof to, "MQTT_BROKER_IOTCORE_CONNECT_TO=%s:8883", e->iot_addr);
    const char *env[] = {"MQTT_BROKER_TYPE=iotcore",
                         ep,
                         "MQTT_BROKER_IOTCORE_TRANSPORT=mqtts",
                         cert,
                         key,
                         ca,
                         to,
                         "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true",
                         "AWS_REGION=us-east-1",
                         "MESSAGE_QUEUE_TYPE=sqs",
                         WBT_UNREACHABLE_SQS_URLS,
                         NULL};
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = env;
    o.overrides = over;
    wb_config_report *rep = NULL;
    wb_config *cfg = NULL;
    if (wb_config_load(&o, &cfg, &rep)) {
        char *t = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
        cr_assert_fail("the iotcore configuration was refused:\n%s", t ? t : "");
    }
    wb_config_report_free(rep);
    return cfg;
}

void wbt_env_start(wbt_env *e)
{
    wbt_env_start_opts(e, NULL);
}

void wbt_env_start_opts(wbt_env *e, const wb_bundled_opts *opts)
{
    wb_bundled_opts o = WB_BUNDLED_OPTS_INIT;
    if (opts)
        o = *opts;
    o.no_topic_rule = !e->topic_rule;
    char *d = NULL;
    wb_err err = wb_bundled_start(e->cfg, &o, &e->broker, &d);
    cr_assert_eq(err, WB_OK, "bundled broker: %s: %s", wb_err_name(err), d ? d : "");
}

void wbt_env_teardown(wbt_env *e)
{
    wb_bundled_stop(e->broker);
    e->broker = NULL;
    wb_config_free(e->cfg);
    e->cfg = NULL;
    wb_config_free(e->iot_cfg);
    e->iot_cfg = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0)
        cr_log_warn("cannot remove %s", e->dir);
}

wb_worker *wbt_env_worker(const wbt_env *e, const char *id, wb_message_fn fn, void *ctx)
{
    char ca[160];
    snprintf(ca, sizeof ca, "%s/ca.crt", e->pki);
    wb_worker_opts o = WB_WORKER_OPTS_INIT;
    o.endpoint = e->endpoint;
    o.pool = WBT_POOL;
    o.worker = id;
    o.ca_file = ca;
    o.cert_file = e->worker_crt;
    o.key_file = e->worker_key;
    o.on_message = fn;
    o.on_message_ctx = ctx;
    wb_worker *w = NULL;
    char *d = NULL;
    cr_assert_eq(wb_worker_open(&o, &w, &d), WB_OK, "%s", d ? d : "");
    return w;
}

const char *wbt_topic(const char *dir, const char *pool, const char *worker)
{
    static char bufs[4][160];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "spacelift/%s/%s/%s", dir, pool, worker);
    return b;
}

static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static char *captured;
static size_t cap_len;

static void capture(void *ctx, wb_log_level level, const char *component, const char *message)
{
    (void)ctx;
    pthread_mutex_lock(&cap_lock);
    size_t n = strlen(component) + strlen(message) + 16;
    char *nb = realloc(captured, cap_len + n);
    if (nb) {
        captured = nb;
        cap_len +=
            (size_t)sprintf(captured + cap_len, "%d %s: %s\n", (int)level, component, message);
    }
    pthread_mutex_unlock(&cap_lock);
    if (getenv("WBT_VERBOSE"))
        fprintf(stderr, "[log] %s: %s\n", component, message);
}

void wbt_log_capture(void)
{
    wb_log_set_level(WB_LOG_DEBUG);
    wb_log_set_handler(capture, NULL);
}

bool wbt_log_wait_for(const char *text, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 20) {
        pthread_mutex_lock(&cap_lock);
        bool found = captured && strstr(captured, text);
        pthread_mutex_unlock(&cap_lock);
        if (found)
            return true;
        if (waited >= timeout_ms)
            return false;
        usleep(20000);
    }
}
