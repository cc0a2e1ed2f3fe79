/* The iotcore backend against the IoT Core stand-in: refusals that say why
 * (a certificate from another CA, a wrong server name), and IoT Core's limits
 * checked before anything is sent. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "proc.h"
#include "sqs_urls.h"

static wbt_env env;

static void setup(void)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    wbt_env_start(&env);
}

static void teardown(void)
{
    wbt_env_teardown(&env);
}

TestSuite(iotcore, .init = setup, .fini = teardown, .timeout = 120);

/* Connects with cfg and expects a refusal whose message holds one of the
 * words given. */
static void expect_refused(wb_config *cfg, const char *a, const char *b)
{
    wb_broker *br = NULL;
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 200;
    cr_assert_eq(wb_broker_open(cfg, &o, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    wb_err err = wb_broker_connect(br, 3000);
    const char *m = wb_broker_last_error(br);
    cr_log_info("%s", m);
    cr_assert_neq(err, WB_OK, "connected when it should not have");
    cr_assert(strstr(m, a) || (b && strstr(m, b)), "the error does not say why: %s", m);
    wb_broker_close(br);
    wb_config_free(cfg);
}

Test(iotcore, the_stand_in_accepts_the_configured_server)
{
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(env.iot_cfg, NULL, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_WORKER, "{}", 2, 1), WB_OK);
    cr_assert_eq(wb_broker_flush(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    wb_broker_close(br);
}

Test(iotcore, a_wrong_server_name_is_refused)
{
    /* the stand-in's certificate names WBT_IOT_ENDPOINT, not this one */
    const char *over[] = {"MQTT_BROKER_ENDPOINT=zz9zz9zz9zz9zz-ats.iot.us-east-1.amazonaws.com",
                          NULL};
    expect_refused(wbt_env_iot_config(&env, over), "certificate verify failed", "hostname");
}

Test(iotcore, a_certificate_from_another_ca_is_refused)
{
    char other[160], cert[240], key[240];
    snprintf(other, sizeof other, "%s/other-pki", env.dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    char *d = NULL;
    cr_assert_eq(wb_pki_init(other, &po, &d), WB_OK, "%s", d ? d : "");
    snprintf(cert, sizeof cert, "MQTT_BROKER_IOTCORE_CERT_FILE=%s/server.crt", other);
    snprintf(key, sizeof key, "MQTT_BROKER_IOTCORE_KEY_FILE=%s/server.key", other);
    const char *over[] = {cert, key, NULL};
    expect_refused(wbt_env_iot_config(&env, over), "alert", "connect failure");
}

Test(iotcore, a_server_we_do_not_trust_is_refused)
{
    /* the server's chain checked against another CA than the stand-in's */
    char other[160], ca[240];
    snprintf(other, sizeof other, "%s/other-pki", env.dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    char *d = NULL;
    cr_assert_eq(wb_pki_init(other, &po, &d), WB_OK, "%s", d ? d : "");
    snprintf(ca, sizeof ca, "MQTT_BROKER_IOTCORE_CA_FILE=%s/ca.crt", other);
    const char *over[] = {ca, NULL};
    expect_refused(wbt_env_iot_config(&env, over), "certificate verify failed", NULL);
}

Test(iotcore, limits_are_checked_before_sending)
{
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(env.iot_cfg, NULL, &br), WB_OK);
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    size_t big = 128 * 1024 + 1;
    char *payload = calloc(1, big);
    cr_assert_eq(wb_broker_publish(br, "spacelift/readonly/a/b", payload, big, 1),
                 WB_ERR_TOO_LARGE);
    cr_log_info("payload: %s", wb_broker_last_error(br));
    free(payload);
    char topic[300];
    memset(topic, 'a', 257);
    topic[257] = '\0';
    cr_assert_eq(wb_broker_publish(br, topic, "x", 1, 1), WB_ERR_TOO_LARGE);
    cr_log_info("topic: %s", wb_broker_last_error(br));
    cr_assert_neq(wb_broker_publish(br, "a/b/c/d/e/f/g/h/i", "x", 1, 1), WB_OK);
    cr_assert(strstr(wb_broker_last_error(br), "7"), "%s", wb_broker_last_error(br));
    cr_log_info("slashes: %s", wb_broker_last_error(br));
    cr_assert_eq(wb_broker_publish(br, "spacelift/readonly/a/b", "x", 1, 2), WB_ERR_NOT_SUPPORTED);
    wb_broker_stats st;
    wb_broker_stats_get(br, &st);
    cr_assert_eq(st.published, 0, "a refused message was counted as published");
    wb_broker_close(br);
}

/* ---- the other transports: HTTPS Publish, MQTT over WebSocket, ALPN on 443 ---- */

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define AKID   "AKIDSTANDIN000000001"
#define SECRET "standin/secret+key/000000000000000000000"

typedef struct inbox {
    pthread_mutex_t lock;
    unsigned count;
    char last[256];
} inbox;

static void on_msg(void *ctx, const wb_message *m)
{
    inbox *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->count++;
    snprintf(b->last, sizeof b->last, "%.*s", (int)m->payload_len, (const char *)m->payload);
    pthread_mutex_unlock(&b->lock);
}

static unsigned inbox_wait(inbox *b, unsigned want, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 20) {
        pthread_mutex_lock(&b->lock);
        unsigned n = b->count;
        pthread_mutex_unlock(&b->lock);
        if (n >= want || waited >= timeout_ms)
            return n;
        usleep(20000);
    }
}

/* The port that stands for 443 (which the broker, no longer root, cannot
 * take): the connect-to override's port is what the client dials. */
static unsigned port443;

/* The stand-in's broker with one more listener on <addr>:<port443>. */
static void start_with_443(const char *protocol_lines)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    port443 = wbt_free_port();
    static char extra[2048];
    snprintf(extra, sizeof extra,
             "listener %u %s\n%s\ncafile %s/credentials/ca.crt\n"
             "certfile %s/credentials/broker.crt\nkeyfile %s/credentials/broker.key\n"
             "tls_version tlsv1.2\n",
             port443, env.iot_addr, protocol_lines, env.run, env.run, env.run);
    wb_bundled_opts o = WB_BUNDLED_OPTS_INIT;
    o.extra_conf = extra;
    wbt_env_start_opts(&env, &o);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    unsetenv("AWS_SESSION_TOKEN");
}

static wb_config *transport_config(const char *transport)
{
    char t[64], to[96];
    snprintf(t, sizeof t, "MQTT_BROKER_IOTCORE_TRANSPORT=%s", transport);
    snprintf(to, sizeof to, "MQTT_BROKER_IOTCORE_CONNECT_TO=%s:%u", env.iot_addr, port443);
    const char *over[] = {t, to, NULL};
    return wbt_env_iot_config(&env, over);
}

/* The server reaches a worker through cfg, and (MQTT transports) hears it. */
static void round_trip(wb_config *cfg, bool subscribe)
{
    inbox to_worker = {.lock = PTHREAD_MUTEX_INITIALIZER}, to_server = to_worker;
    wb_worker *w = wbt_env_worker(&env, WBT_WORKER, on_msg, &to_worker);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.on_message = on_msg;
    o.on_message_ctx = &to_server;
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(cfg, &o, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    if (subscribe)
        cr_assert_eq(
            wb_broker_subscribe(br, wbt_topic("writeonly", WBT_POOL, WBT_WORKER), 1, 10000), WB_OK,
            "%s", wb_broker_last_error(br));
    for (int i = 0; i < 3; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "{\"n\":%d}", i);
        cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_WORKER, p, (size_t)n, 1), WB_OK,
                     "%s", wb_broker_last_error(br));
    }
    cr_assert_eq(wb_broker_flush(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    cr_assert_eq(inbox_wait(&to_worker, 3, 10000), 3, "the worker got %u of 3", to_worker.count);
    cr_assert_str_eq(to_worker.last, "{\"n\":2}");
    if (subscribe) {
        cr_assert_eq(wb_worker_publish(w, "{\"up\":1}", 8, 1), WB_OK);
        cr_assert_eq(inbox_wait(&to_server, 1, 10000), 1, "the server heard nothing");
    }
    wb_broker_close(br);
    wb_worker_close(w);
    wb_config_free(cfg);
}

TestSuite(iot_transports, .fini = teardown, .timeout = 120);

Test(iot_transports, mqtts_alpn_on_443)
{
    start_with_443("protocol mqtt\nrequire_certificate true");
    round_trip(transport_config("mqtts-alpn"), true);
}

Test(iot_transports, mqtt_over_websocket_signed_with_sigv4)
{
    start_with_443("protocol websockets\nrequire_certificate false\n"
                   "plugin_opt_websockets_server true");
    round_trip(transport_config("wss"), true);
}

/* The HTTPS Publish API stand-in (iot_https_standin.py) on <addr>:<port443>. */
static pid_t https_standin(void)
{
    char script[512], ca[160], bcrt[160], bkey[160], scrt[160], skey[160], bport[8], hport[8];
    port443 = wbt_free_port();
    snprintf(hport, sizeof hport, "%u", port443);
    snprintf(script, sizeof script, "%s/tests/integration/iot_https_standin.py",
             getenv("WB_SOURCE_ROOT"));
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    snprintf(bcrt, sizeof bcrt, "%s/broker.crt", env.pki);
    snprintf(bkey, sizeof bkey, "%s/broker.key", env.pki);
    snprintf(scrt, sizeof scrt, "%s/server.crt", env.pki);
    snprintf(skey, sizeof skey, "%s/server.key", env.pki);
    snprintf(bport, sizeof bport, "%u", env.port);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl("/usr/bin/python3", "python3", script, env.iot_addr, hport, bcrt, bkey, "us-east-1",
              AKID, SECRET, env.iot_addr, bport, ca, scrt, skey, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[64] = {0};
    size_t got = 0;
    while (got < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t n = read(fds[0], line + got, sizeof line - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    cr_assert(strncmp(line, "ready", 5) == 0, "the HTTPS stand-in did not start");
    return pid;
}

static void stop_standin(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

Test(iot_transports, https_publish_api)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    wbt_env_start(&env);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
    setenv("AWS_SESSION_TOKEN", "a-session-token/with+odd=chars", 1);
    pid_t pid = https_standin();
    round_trip(transport_config("https"), false);
    stop_standin(pid);
}

Test(iot_transports, https_publish_with_a_wrong_secret_is_refused_with_iot_cores_words)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    wbt_env_start(&env);
    setenv("AWS_ACCESS_KEY_ID", AKID, 1);
    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
    unsetenv("AWS_SESSION_TOKEN");
    pid_t pid = https_standin();
    wb_config *cfg = transport_config("https");
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(cfg, NULL, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    wb_err err = wb_broker_publish_to_worker(br, WBT_POOL, WBT_WORKER, "{}", 2, 1);
    if (err == WB_OK)
        err = wb_broker_flush(br, 10000);
    const char *m = wb_broker_last_error(br);
    cr_log_info("%s", m);
    cr_assert_eq(err, WB_ERR_AUTH_REFUSED, "%s: %s", wb_err_name(err), m);
    cr_assert(strstr(m, "HTTP 403") && strstr(m, "signature"), "%s", m);
    wb_broker_close(br);
    wb_config_free(cfg);
    stop_standin(pid);
}

/* ---- an expired client certificate ---------------------------------------------- */

#include <openssl/pem.h>
#include <openssl/x509.h>

/* A certificate for the server's identity, issued by the stand-in's CA,
 * valid from 30 days ago until yesterday. */
static void write_expired(const char *ca_crt, const char *ca_key, const char *crt_out,
                          const char *key_out)
{
    FILE *f = fopen(ca_crt, "r");
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(ca_key, "r");
    EVP_PKEY *cak = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert(ca && cak, "cannot read the stand-in's CA");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), -30L * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), -86400L);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"workerbus-server", -1,
                               -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    cr_assert_gt(X509_sign(x, cak, EVP_sha256()), 0);
    f = fopen(crt_out, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_out, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cak);
}

Test(iotcore, an_expired_client_certificate_is_refused)
{
    char ca[160], cak[160], crt[160], key[160], vc[240], vk[240];
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    snprintf(cak, sizeof cak, "%s/ca.key", env.pki);
    snprintf(crt, sizeof crt, "%s/expired.crt", env.dir);
    snprintf(key, sizeof key, "%s/expired.key", env.dir);
    write_expired(ca, cak, crt, key);
    snprintf(vc, sizeof vc, "MQTT_BROKER_IOTCORE_CERT_FILE=%s", crt);
    snprintf(vk, sizeof vk, "MQTT_BROKER_IOTCORE_KEY_FILE=%s", key);
    char to[96];
    snprintf(to, sizeof to, "MQTT_BROKER_IOTCORE_CONNECT_TO=%s:8883", env.iot_addr);
    const char *e[] = {"MQTT_BROKER_TYPE=iotcore",
                       "MQTT_BROKER_ENDPOINT=" WBT_IOT_ENDPOINT,
                       "MQTT_BROKER_IOTCORE_TRANSPORT=mqtts",
                       vc,
                       vk,
                       WBT_UNREACHABLE_SQS_URLS,
                       NULL};
    /* the server refuses to start with it: the operator hears it at once,
     * not as a TLS alert from IoT Core */
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = e;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    cr_assert_eq(wb_config_load(&o, &cfg, &rep), WB_ERR_CONFIG);
    char *t = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
    cr_log_info("%s", t);
    cr_assert(strstr(t, "MQTT_BROKER_IOTCORE_KEY_FILE") && strstr(t, "expired.crt has expired"),
              "%s", t);
    wb_free(t);
    wb_config_report_free(rep);

    /* and the stand-in, like IoT Core, refuses it at the handshake (seen
     * with openssl s_client, which reports the TLS alert it gets) */
    char connect[64];
    snprintf(connect, sizeof connect, "%s:8883", env.iot_addr);
    const char *argv[] = {"openssl",        "s_client", "-connect", connect, "-servername",
                          WBT_IOT_ENDPOINT, "-CAfile",  ca,         "-cert", crt,
                          "-key",           key,        "-tls1_2",  NULL};
    wbt_proc p;
    cr_assert(wbt_proc_run(argv, NULL, 15000, &p));
    cr_assert(strstr(p.err, "alert certificate expired"), "%s", p.err);
    cr_log_info("openssl s_client: %s", strstr(p.err, "alert certificate expired"));
    wbt_proc_free(&p);
}
