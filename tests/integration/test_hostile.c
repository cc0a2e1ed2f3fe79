/* Hostile workers against the bundled broker, with real clients
 * (mosquitto_pub and mosquitto_sub, MQTT 3.1.1 and 5): no worker may take
 * another pool's worker id or the server's, oversized and poison messages
 * are refused to their sender alone, and nothing one worker sends slows the
 * others. Runs under with-services.sh all (the topic rule writes into
 * PostgreSQL). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "proc.h"

extern char **environ;

/* A second pool, whose certificate tries to take WBT_POOL's workers. */
#define POOL_B "01BRZ3NDEKTSV4RRFFQ69G5FAV"

static wbt_env env;
static char b_key[160], b_crt[160], ca[160], srv_crt[160], srv_key[160];

static const char *need(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run this suite through with-services.sh all", name);
    return v;
}

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static void write_file(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void up(void)
{
    wbt_log_capture();
    static char db[600];
    snprintf(db, sizeof db, "DATABASE_URL=%s", need("DATABASE_URL"));
    const char *over[] = {db, NULL};
    wbt_env_setup_queue(&env, true, over);
    /* a certificate of pool B */
    char *key = NULL, *csr = NULL, *crt = NULL, *d = NULL, cak[160];
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    snprintf(cak, sizeof cak, "%s/ca.key", env.pki);
    snprintf(srv_crt, sizeof srv_crt, "%s/server.crt", env.pki);
    snprintf(srv_key, sizeof srv_key, "%s/server.key", env.pki);
    cr_assert_eq(wb_pki_new_csr(WB_PKI_KEY_EC_P256, "pool", &key, &csr, &d), WB_OK);
    cr_assert_eq(wb_pki_sign_csr(ca, cak, POOL_B, csr, strlen(csr), 0, &crt, &d), WB_OK);
    snprintf(b_key, sizeof b_key, "%s/b.key", env.dir);
    snprintf(b_crt, sizeof b_crt, "%s/b.crt", env.dir);
    write_file(b_key, key, strlen(key));
    write_file(b_crt, crt, strlen(crt));
    wb_free(key);
    wb_free(csr);
    wb_free(crt);
    wbt_env_start(&env);
}

/* Background clients still running (a failed assertion skips their stop). */
static pid_t running[16];
static size_t nrunning;

static void down(void)
{
    for (size_t i = 0; i < nrunning; i++) {
        if (running[i] > 0) {
            kill(running[i], SIGKILL);
            waitpid(running[i], NULL, 0);
        }
    }
    nrunning = 0;
    wbt_env_teardown(&env);
}

TestSuite(hostile, .init = up, .fini = down, .timeout = 180);

/* ---- real clients -------------------------------------------------------- */

typedef struct client {
    const char *cert, *key, *id;
    const char *version; /* "mqttv311" or "mqttv5" */
} client;

static client pool_a(const char *id, const char *v)
{
    return (client){env.worker_crt, env.worker_key, id, v};
}

static client pool_b(const char *id, const char *v)
{
    return (client){b_crt, b_key, id, v};
}

/* argv of mosquitto_pub/sub for c, then the rest (NULL-terminated). */
static size_t base_args(const char **argv, const char *prog, const client *c)
{
    static char port[8];
    snprintf(port, sizeof port, "%u", env.port);
    size_t n = 0;
    const char *base[] = {prog,  "-h",     "127.0.0.1", "-p",    port,   "--cafile",
                          ca,    "--cert", c->cert,     "--key", c->key, "-i",
                          c->id, "-V",     c->version,  "-d"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        argv[n++] = base[i];
    return n;
}

/* mosquitto_pub of one QoS 1 message on topic (payload, or -f file). */
static wbt_proc pub(const client *c, const char *topic, const char *payload, const char *file)
{
    const char *argv[40];
    size_t n = base_args(argv, "mosquitto_pub", c);
    const char *rest[] = {"-q", "1", "-t", topic, file ? "-f" : "-m", file ? file : payload};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    wbt_proc p;
    cr_assert(wbt_proc_run(argv, NULL, 30000, &p), "cannot run mosquitto_pub");
    return p;
}

static const char *my_topic(const client *c, const char *dir)
{
    return wbt_topic(dir, c->cert == b_crt ? POOL_B : WBT_POOL, c->id);
}

/* A mosquitto_sub running in the background, its output in a file. */
typedef struct bg {
    pid_t pid;
    char out[200];
} bg;

static bg sub_start(const client *c, const char *extra1, const char *extra2)
{
    static int seq;
    bg b;
    snprintf(b.out, sizeof b.out, "%s/sub-%d.out", env.dir, seq++);
    const char *argv[40];
    size_t n = base_args(argv, "mosquitto_sub", c);
    const char *rest[] = {"-q", "1", "-t", my_topic(c, "readonly"), "-v"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        argv[n++] = rest[i];
    if (extra1)
        argv[n++] = extra1;
    if (extra2)
        argv[n++] = extra2;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, b.out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* its debug lines go through stdio: line-buffered, so they reach the
     * file as they happen */
    const char *args[48] = {"stdbuf", "-oL"};
    for (size_t i = 0; i <= n; i++)
        args[i + 2] = argv[i];
    cr_assert_eq(posix_spawnp(&b.pid, "stdbuf", &fa, NULL, (char *const *)args, environ), 0);
    if (nrunning < sizeof running / sizeof running[0])
        running[nrunning++] = b.pid;
    posix_spawn_file_actions_destroy(&fa);
    return b;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static unsigned count(const char *text, const char *what)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* Waits until the background client's output holds `what` `times` times. */
static bool bg_wait(const bg *b, const char *what, unsigned times, unsigned timeout_ms)
{
    for (uint64_t until = now_ms() + timeout_ms;;) {
        char *t = slurp(b->out);
        bool ok = count(t, what) >= times;
        free(t);
        if (ok)
            return true;
        if (now_ms() > until)
            return false;
        usleep(50000);
    }
}

static char *bg_stop(bg *b)
{
    kill(b->pid, SIGTERM);
    waitpid(b->pid, NULL, 0);
    for (size_t i = 0; i < nrunning; i++) {
        if (running[i] == b->pid)
            running[i] = 0;
    }
    return slurp(b->out);
}

static wb_broker *server(void)
{
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(env.cfg, NULL, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    return br;
}

/* ---- identities ------------------------------------------------------------ */

/* Pool B's certificate with pool A's worker id: refused at CONNECT, and the
 * worker connected with that id keeps its connection. */
static void cross_pool_takeover(const char *version)
{
    client victim = pool_a(WBT_WORKER, version);
    bg v = sub_start(&victim, NULL, NULL);
    cr_assert(bg_wait(&v, "received CONNACK", 1, 10000), "the victim did not connect");
    cr_assert(bg_wait(&v, "received SUBACK", 1, 10000));
    client thief = pool_b(WBT_WORKER, version);
    for (int i = 0; i < 5; i++) {
        wbt_proc p = pub(&thief, my_topic(&thief, "writeonly"), "{\"stolen\":true}", NULL);
        cr_assert_neq(p.status, 0, "%s: pool B took pool A's worker id:\n%s%s", version, p.out,
                      p.err);
        /* not authorized: 3.1.1 return code 5; 5: reason code 135 */
        const char *want = strcmp(version, "mqttv5") == 0 ? "CONNACK (135)" : "CONNACK (5)";
        cr_assert(strstr(p.err, want) || strstr(p.out, want), "%s: no %s:\n%s%s", version, want,
                  p.out, p.err);
        wbt_proc_free(&p);
    }
    cr_assert(wbt_log_wait_for("belongs to pool " WBT_POOL, 5000), "the refusal is not logged");
    /* the victim is still on its first connection and still gets messages */
    wb_broker *br = server();
    cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_WORKER, "{\"still\":1}", 11, 1),
                 WB_OK);
    cr_assert(bg_wait(&v, "{\"still\":1}", 1, 10000), "the victim lost its connection");
    char *out = bg_stop(&v);
    cr_assert_eq(count(out, "sending CONNECT"), 1, "%s: the victim was disconnected:\n%s", version,
                 out);
    free(out);
    wb_broker_close(br);
}

Test(hostile, another_pool_cannot_take_a_worker_id_mqtt311)
{
    cross_pool_takeover("mqttv311");
}

Test(hostile, another_pool_cannot_take_a_worker_id_mqtt5)
{
    cross_pool_takeover("mqttv5");
}

Test(hostile, another_pool_cannot_wipe_a_workers_offline_session)
{
    /* the worker's persistent session: subscribed, then gone */
    client w = pool_a(WBT_OTHER_WORKER, "mqttv311");
    bg v = sub_start(&w, "-c", NULL);
    cr_assert(bg_wait(&v, "received SUBACK", 1, 10000));
    free(bg_stop(&v));
    /* two messages the broker acknowledges and keeps for it */
    wb_broker *br = server();
    cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_OTHER_WORKER, "{\"kept\":1}", 10, 1),
                 WB_OK);
    cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_OTHER_WORKER, "{\"kept\":2}", 10, 1),
                 WB_OK);
    cr_assert_eq(wb_broker_flush(br, 10000), WB_OK);
    /* pool B with a clean session, both protocols */
    static const char *const versions[] = {"mqttv311", "mqttv5"};
    for (int i = 0; i < 2; i++) {
        client thief = pool_b(WBT_OTHER_WORKER, versions[i]);
        wbt_proc p = pub(&thief, my_topic(&thief, "writeonly"), "{}", NULL);
        cr_assert_neq(p.status, 0, "%s: accepted:\n%s%s", versions[i], p.out, p.err);
        wbt_proc_free(&p);
    }
    /* the worker comes back to its session: both messages are there */
    bg back = sub_start(&w, "-c", NULL);
    bool both = bg_wait(&back, "{\"kept\":1}", 1, 10000) && bg_wait(&back, "{\"kept\":2}", 1, 5000);
    char *out = bg_stop(&back);
    cr_assert(both, "the offline session lost its messages:\n%s", out);
    free(out);
    wb_broker_close(br);
}

Test(hostile, no_pool_certificate_can_take_the_servers_id)
{
    wb_broker *br = server();
    wb_broker_stats before;
    wb_broker_stats_get(br, &before);
    static const char *const versions[] = {"mqttv311", "mqttv5"};
    for (int i = 0; i < 20; i++) {
        client thief = pool_a("workerbus-server", versions[i % 2]);
        wbt_proc p = pub(&thief, wbt_topic("writeonly", WBT_POOL, WBT_WORKER), "{}", NULL);
        cr_assert_neq(p.status, 0, "a pool certificate connected as workerbus-server:\n%s%s", p.out,
                      p.err);
        wbt_proc_free(&p);
    }
    cr_assert(wbt_log_wait_for("the client id is not a worker ULID", 5000));
    /* nor the server's certificate a worker's id */
    client srv_as_worker = {srv_crt, srv_key, WBT_WORKER, "mqttv5"};
    wbt_proc p = pub(&srv_as_worker, wbt_topic("readonly", WBT_POOL, WBT_WORKER), "{}", NULL);
    cr_assert_neq(p.status, 0, "the server's certificate took a worker id:\n%s%s", p.out, p.err);
    wbt_proc_free(&p);
    sleep(1);
    wb_broker_stats after;
    wb_broker_stats_get(br, &after);
    cr_log_info("server id attacks: 20 refused; server reconnects %llu before, %llu after",
                (unsigned long long)before.reconnects, (unsigned long long)after.reconnects);
    cr_assert(after.connected);
    cr_assert_eq(after.reconnects, before.reconnects, "the server lost its connection");
    wb_broker_close(br);
}

Test(hostile, a_worker_takes_over_its_own_stale_connection)
{
    client w = pool_a(WBT_WORKER, "mqttv5");
    bg first = sub_start(&w, NULL, NULL);
    cr_assert(bg_wait(&first, "received SUBACK", 1, 10000));
    wbt_proc p = pub(&w, my_topic(&w, "writeonly"), "{\"again\":true}", NULL);
    cr_assert_eq(p.status, 0, "its own pool's certificate was refused:\n%s%s", p.out, p.err);
    wbt_proc_free(&p);
    free(bg_stop(&first));
}

Test(hostile, the_binding_survives_a_broker_restart)
{
    client w = pool_a(WBT_WORKER, "mqttv311");
    wbt_proc p = pub(&w, my_topic(&w, "writeonly"), "{\"first\":true}", NULL);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    wb_bundled_stop(env.broker);
    env.broker = NULL;
    wbt_env_start(&env);
    client thief = pool_b(WBT_WORKER, "mqttv5");
    p = pub(&thief, my_topic(&thief, "writeonly"), "{}", NULL);
    cr_assert_neq(p.status, 0, "after a restart pool B took the id:\n%s%s", p.out, p.err);
    wbt_proc_free(&p);
    p = pub(&w, my_topic(&w, "writeonly"), "{\"second\":true}", NULL);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    wbt_proc_free(&p);
}

/* ---- sizes and poison ---------------------------------------------------------- */

static wb_queue *open_queue(void)
{
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(env.cfg, NULL, &q), WB_OK, "%s", wb_queue_last_error(NULL));
    return q;
}

/* Receives and deletes what lq holds; returns how many, the bodies joined
 * in *all (may be NULL). */
static size_t take_all(wb_queue *q, wb_logical_queue lq, size_t want, unsigned wait_ms, char **all)
{
    size_t got = 0;
    size_t cap = 0, len = 0;
    char *text = NULL;
    for (uint64_t until = now_ms() + wait_ms;;) {
        wb_queue_message *m = NULL;
        size_t n = 0;
        cr_assert_eq(wb_queue_receive(q, lq, 10, 1, 60, &m, &n), WB_OK, "%s",
                     wb_queue_last_error(q));
        for (size_t i = 0; i < n; i++) {
            if (all) {
                if (len + m[i].body_len + 2 > cap) {
                    cap = (len + m[i].body_len + 2) * 2;
                    text = realloc(text, cap);
                }
                memcpy(text + len, m[i].body, m[i].body_len);
                len += m[i].body_len;
                text[len++] = '\n';
                text[len] = '\0';
            }
            cr_assert_eq(wb_queue_delete(q, lq, m[i].receipt), WB_OK);
        }
        got += n;
        wb_queue_messages_free(m, n);
        if (n == 0 && (got >= want || now_ms() > until))
            break;
    }
    if (all)
        *all = text ? text : strdup("");
    else
        free(text);
    return got;
}

/* A JSON object of n bytes in a file. */
static const char *object_file(const char *name, size_t n)
{
    static char path[4][200];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", env.dir, name);
    char *body = malloc(n);
    memset(body, 'x', n);
    memcpy(body, "{\"big\":\"", 8);
    memcpy(body + n - 2, "\"}", 2);
    write_file(p, body, n);
    free(body);
    return p;
}

Test(hostile, oversized_messages_are_refused_to_their_sender_alone)
{
    wb_queue *q = open_queue();
    take_all(q, WB_LQ_IOT, 0, 0, NULL);
    take_all(q, WB_LQ_DLQ, 0, 0, NULL);
    client v5 = pool_a(WBT_WORKER, "mqttv5");
    static const size_t sizes[] = {200u * 1024u, 1024u * 1024u, 10u * 1024u * 1024u};
    for (size_t i = 0; i < 3; i++) {
        wbt_proc p = pub(&v5, my_topic(&v5, "writeonly"), NULL, object_file("big.json", sizes[i]));
        /* refused with a reason code; the client ends its own connection */
        cr_assert(strstr(p.out, "RC:135") || strstr(p.err, "RC:135"),
                  "%zu bytes, MQTT 5: no reason code 135:\n%s%s", sizes[i], p.out, p.err);
        cr_assert(strstr(p.out, "sending DISCONNECT") || strstr(p.err, "sending DISCONNECT"),
                  "%zu bytes: the broker closed the connection:\n%s%s", sizes[i], p.out, p.err);
        wbt_proc_free(&p);
    }
    cr_assert(wbt_log_wait_for("the payload is 204800 bytes; the limit is 131072", 5000));
    /* MQTT 3.1.1: acknowledged and kept in the dlq, with who and why */
    client v3 = pool_a(WBT_WORKER, "mqttv311");
    wbt_proc p = pub(&v3, my_topic(&v3, "writeonly"), NULL, object_file("big.json", 200u * 1024u));
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    cr_assert(strstr(p.out, "received PUBACK") || strstr(p.err, "received PUBACK"));
    wbt_proc_free(&p);
    /* the limit itself passes */
    p = pub(&v5, my_topic(&v5, "writeonly"), NULL,
            object_file("limit.json", WB_BUNDLED_MAX_PAYLOAD));
    cr_assert(!strstr(p.out, "RC:135") && !strstr(p.err, "RC:135"), "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    char *dlq = NULL;
    size_t n = take_all(q, WB_LQ_DLQ, 1, 10000, &dlq);
    cr_assert_eq(n, 1, "%zu dlq records:\n%.2000s", n, dlq);
    json_t *rec = json_loads(dlq, 0, NULL);
    cr_assert_not_null(rec, "%.500s", dlq);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "worker_ulid")), WBT_WORKER);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "worker_pool_ulid")), WBT_POOL);
    cr_assert(strstr(json_string_value(json_object_get(rec, "reason")), "204800 bytes"));
    cr_assert_eq(json_integer_value(json_object_get(rec, "payload_bytes")), 204800);
    cr_assert(json_is_true(json_object_get(rec, "payload_truncated")));
    json_decref(rec);
    free(dlq);
    size_t iot = take_all(q, WB_LQ_IOT, 1, 10000, NULL);
    cr_assert_eq(iot, 1, "only the message at the limit reaches the iot queue (%zu)", iot);
    wb_queue_close(q);
}

/* MQTT_BROKER_BUILTIN_MAX_PAYLOAD moves the limit; at the highest value
 * accepted, a payload of that size still fits the queue end to end. */
static void restart_with_limit(const char *setting)
{
    static char db[600];
    snprintf(db, sizeof db, "DATABASE_URL=%s", need("DATABASE_URL"));
    const char *over[] = {db, setting, NULL};
    wb_bundled_stop(env.broker);
    env.broker = NULL;
    wbt_env_reconfigure(&env, over);
    wbt_env_start(&env);
}

Test(hostile, the_highest_configurable_limit_still_fits_the_queue)
{
    restart_with_limit("MQTT_BROKER_BUILTIN_MAX_PAYLOAD=196096");
    cr_assert_eq(wb_config_builtin_max_payload(env.cfg), WB_BUNDLED_MAX_PAYLOAD_LIMIT);
    wb_queue *q = open_queue();
    take_all(q, WB_LQ_IOT, 0, 0, NULL);
    take_all(q, WB_LQ_DLQ, 0, 0, NULL);
    client v5 = pool_a(WBT_WORKER, "mqttv5");
    wbt_proc p = pub(&v5, my_topic(&v5, "writeonly"), NULL,
                     object_file("limit.json", WB_BUNDLED_MAX_PAYLOAD_LIMIT));
    cr_assert(!strstr(p.out, "RC:135") && !strstr(p.err, "RC:135"), "%s%s", p.out, p.err);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    p = pub(&v5, my_topic(&v5, "writeonly"), NULL,
            object_file("over.json", WB_BUNDLED_MAX_PAYLOAD_LIMIT + 1));
    cr_assert(strstr(p.out, "RC:135") || strstr(p.err, "RC:135"), "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    char *iot = NULL;
    cr_assert_eq(take_all(q, WB_LQ_IOT, 1, 10000, &iot), 1);
    wb_envelope e = WB_ENVELOPE_INIT;
    cr_assert_eq(wb_envelope_decode(iot, strcspn(iot, "\n"), &e, NULL), WB_OK);
    cr_assert_eq(e.payload_len, WB_BUNDLED_MAX_PAYLOAD_LIMIT, "%zu", e.payload_len);
    wb_envelope_clear(&e);
    free(iot);
    cr_assert_eq(take_all(q, WB_LQ_DLQ, 0, 500, NULL), 0, "nothing went to the dlq");
    wb_queue_close(q);
}

Test(hostile, a_lower_configured_limit_is_enforced)
{
    restart_with_limit("MQTT_BROKER_BUILTIN_MAX_PAYLOAD=1000");
    client v5 = pool_a(WBT_WORKER, "mqttv5");
    wbt_proc p = pub(&v5, my_topic(&v5, "writeonly"), NULL, object_file("ok.json", 1000));
    cr_assert(!strstr(p.out, "RC:135") && !strstr(p.err, "RC:135"), "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    p = pub(&v5, my_topic(&v5, "writeonly"), NULL, object_file("over.json", 1001));
    cr_assert(strstr(p.out, "RC:135") || strstr(p.err, "RC:135"), "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("the payload is 1001 bytes; the limit is 1000", 5000));
}

Test(hostile, a_non_object_from_mqtt311_is_acknowledged_and_kept_in_the_dlq)
{
    wb_queue *q = open_queue();
    take_all(q, WB_LQ_DLQ, 0, 0, NULL);
    client v3 = pool_a(WBT_WORKER, "mqttv311");
    wbt_proc p = pub(&v3, my_topic(&v3, "writeonly"), "[1,2,3]", NULL);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    wbt_proc_free(&p);
    char *dlq = NULL;
    cr_assert_eq(take_all(q, WB_LQ_DLQ, 1, 10000, &dlq), 1);
    json_t *rec = json_loads(dlq, 0, NULL);
    cr_assert(strstr(json_string_value(json_object_get(rec, "reason")), "a JSON array"), "%s", dlq);
    cr_assert_str_eq(json_string_value(json_object_get(rec, "payload_base64")), "WzEsMiwzXQ==");
    cr_assert_eq(json_integer_value(json_object_get(rec, "mqtt_version")), 4);
    json_decref(rec);
    free(dlq);
    wb_queue_close(q);
}

/* One worker resends poison (oversized, and not an object; MQTT 3.1.1 and
 * 5) for 10 s while 40 other workers publish: every one of the 40 is
 * acknowledged and queued, and the topic rule never pauses. */
Test(hostile, one_worker_resending_poison_does_not_slow_the_others, .timeout = 240)
{
    wb_queue *q = open_queue();
    take_all(q, WB_LQ_IOT, 0, 0, NULL);
    const char *big = object_file("poison.json", 200u * 1024u);
    char script[2048];
    char port[8];
    snprintf(port, sizeof port, "%u", env.port);
    snprintf(script, sizeof script,
             "end=$(( $(date +%%s) + 10 )); n=0; while [ $(date +%%s) -lt $end ]; do "
             "for v in mqttv311 mqttv5; do "
             "mosquitto_pub -h 127.0.0.1 -p %s --cafile '%s' --cert '%s' --key '%s' -i %s -V $v "
             "-q 1 -t '%s' -f '%s' >/dev/null 2>&1; "
             "mosquitto_pub -h 127.0.0.1 -p %s --cafile '%s' --cert '%s' --key '%s' -i %s -V $v "
             "-q 1 -t '%s' -m 'not json' >/dev/null 2>&1; n=$((n+2)); done; done; echo $n",
             port, ca, env.worker_crt, env.worker_key, WBT_OTHER_WORKER,
             wbt_topic("writeonly", WBT_POOL, WBT_OTHER_WORKER), big, port, ca, env.worker_crt,
             env.worker_key, WBT_OTHER_WORKER, wbt_topic("writeonly", WBT_POOL, WBT_OTHER_WORKER));
    char outp[200];
    snprintf(outp, sizeof outp, "%s/poison.out", env.dir);
    pid_t poisoner;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *sh[] = {"sh", "-c", script, NULL};
    cr_assert_eq(posix_spawnp(&poisoner, "sh", &fa, NULL, (char *const *)sh, environ), 0);
    running[nrunning++] = poisoner; /* it stops by itself after 10 s */
    posix_spawn_file_actions_destroy(&fa);
    usleep(500000); /* the poison is flowing */
    enum { OTHERS = 40 };
    wb_worker *w[OTHERS];
    char ids[OTHERS][WB_ULID_STR_SIZE];
    uint64_t t0 = now_ms();
    for (int i = 0; i < OTHERS; i++) {
        wb_ulid u;
        wb_ulid_new(&u);
        wb_ulid_format(&u, ids[i]);
        w[i] = wbt_env_worker(&env, ids[i], NULL, NULL);
        cr_assert_eq(wb_worker_connect(w[i], 10000), WB_OK, "%s", wb_worker_last_error(w[i]));
        char m[64];
        int n = snprintf(m, sizeof m, "{\"other\":%d}", i);
        cr_assert_eq(wb_worker_publish(w[i], m, (size_t)n, 1), WB_OK);
    }
    unsigned acked = 0;
    for (int i = 0; i < OTHERS; i++) {
        if (wb_worker_flush(w[i], 10000) == WB_OK)
            acked++;
    }
    uint64_t t1 = now_ms();
    int st = 0;
    waitpid(poisoner, &st, 0);
    running[nrunning - 1] = 0;
    char *sent = slurp(outp);
    cr_log_info("poison: %s message(s) of poison sent in 10 s; the 40 others: %u acknowledged in "
                "%llu ms",
                strtok(sent, "\n") ? sent : "?", acked, (unsigned long long)(t1 - t0));
    free(sent);
    for (int i = 0; i < OTHERS; i++)
        wb_worker_close(w[i]);
    cr_assert_eq(acked, OTHERS, "only %u of %d other workers' messages were acknowledged", acked,
                 OTHERS);
    size_t got = take_all(q, WB_LQ_IOT, OTHERS, 15000, NULL);
    cr_assert_eq(got, OTHERS, "%zu of %d messages reached the iot queue", got, OTHERS);
    cr_assert_not(wbt_log_wait_for("closing its connection", 0), "the topic rule paused");
    take_all(q, WB_LQ_DLQ, 0, 0, NULL);
    wb_queue_close(q);
}
