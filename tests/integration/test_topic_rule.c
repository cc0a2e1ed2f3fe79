/* The bundled broker's topic rule, and the IoT Core stand-in's forwarder:
 * worker messages reach the iot queue in IoT Core's envelope, before the
 * broker acknowledges them. Runs under with-services.sh all (a PostgreSQL
 * cluster and the SQS stand-in on loopback). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <pthread.h>
#include <unistd.h>

#include "fixture.h"
#include "freeze.h"
#include "proc.h"

static wbt_env env;

static const char *need(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run this suite through with-services.sh all", name);
    return v;
}

/* "KEY=VALUE" overrides naming the services' queue of the given type. */
static const char *const *queue_over(const char *type)
{
    static char kv[12][600];
    static const char *list[13];
    size_t n = 0;
    if (!strcmp(type, "postgres")) {
        snprintf(kv[n], sizeof kv[n], "DATABASE_URL=%s", need("DATABASE_URL"));
        n++;
    } else {
        snprintf(kv[n++], sizeof kv[0], "MESSAGE_QUEUE_TYPE=sqs");
        for (int q = 0; q < WB_LQ__COUNT; q++) {
            const char *var = wb_logical_queue_variable((wb_logical_queue)q);
            snprintf(kv[n], sizeof kv[n], "%s=%s", var, need(var));
            n++;
        }
        snprintf(kv[n], sizeof kv[n], "AWS_REGION=%s", need("AWS_REGION"));
        n++;
    }
    for (size_t i = 0; i < n; i++)
        list[i] = kv[i];
    list[n] = NULL;
    return list;
}

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static wb_queue *open_queue(const wb_config *cfg)
{
    wb_queue *q = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK, "%s", wb_queue_last_error(NULL));
    return q;
}

/* Receives and deletes everything in the iot queue; returns the envelopes
 * decoded, up to max, waiting up to wait_ms for want of them. */
static size_t drain(wb_queue *q, wb_envelope *out, size_t max, size_t want, unsigned wait_ms)
{
    size_t got = 0;
    uint64_t until = now_ms() + wait_ms;
    for (;;) {
        wb_queue_message *m = NULL;
        size_t n = 0;
        cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 1, 30, &m, &n), WB_OK, "%s",
                     wb_queue_last_error(q));
        for (size_t i = 0; i < n; i++) {
            if (out && got < max) {
                char *d = NULL;
                cr_assert_eq(wb_envelope_decode(m[i].body, m[i].body_len, &out[got], &d), WB_OK,
                             "message %s: %s", m[i].id, d ? d : "");
            }
            got++;
            cr_assert_eq(wb_queue_delete(q, WB_LQ_IOT, m[i].receipt), WB_OK);
        }
        wb_queue_messages_free(m, n);
        if ((n == 0 && got >= want) || now_ms() > until)
            return got;
    }
}

static void check_envelopes(wb_queue *q, wb_worker *w, const char *worker, unsigned count)
{
    uint64_t t0 = now_ms();
    for (unsigned i = 0; i < count; i++) {
        char p[128];
        int n =
            snprintf(p, sizeof p, "{\"seq\":%u,\"kind\":\"heartbeat\",\"timestamp\":\"mine\"}", i);
        cr_assert_eq(wb_worker_publish(w, p, (size_t)n, 1), WB_OK);
    }
    cr_assert_eq(wb_worker_flush(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    uint64_t t1 = now_ms();
    wb_envelope e[64];
    size_t got = drain(q, e, 64, count, 15000);
    cr_assert_eq(got, count, "%zu of %u messages reached the iot queue", got, count);
    bool seen[64] = {false};
    for (size_t i = 0; i < got; i++) {
        cr_assert_str_eq(e[i].pool, WBT_POOL);
        cr_assert_str_eq(e[i].worker, worker);
        /* the broker's time, when it took the message */
        cr_assert(e[i].timestamp_ms + 1000 >= t0 && e[i].timestamp_ms <= t1 + 1000,
                  "timestamp %llu outside [%llu, %llu]", (unsigned long long)e[i].timestamp_ms,
                  (unsigned long long)t0, (unsigned long long)t1);
        json_t *j = json_loads(e[i].payload, 0, NULL);
        cr_assert(json_is_object(j), "%s", e[i].payload);
        /* the worker's fields, minus the one the rule's own field replaces */
        cr_assert_eq(json_object_size(j), 2, "%s", e[i].payload);
        cr_assert_str_eq(json_string_value(json_object_get(j, "kind")), "heartbeat");
        json_int_t s = json_integer_value(json_object_get(j, "seq"));
        cr_assert(s >= 0 && s < (json_int_t)count && !seen[s], "seq %lld", (long long)s);
        seen[s] = true;
        json_decref(j);
        wb_envelope_clear(&e[i]);
    }
}

static void up(const char *type)
{
    wbt_log_capture();
    wbt_env_setup_queue(&env, true, queue_over(type));
    wbt_env_start(&env);
}

static void up_pg(void)
{
    up("postgres");
}

static void up_sqs(void)
{
    up("sqs");
}

static void down(void)
{
    wbt_env_teardown(&env);
}

TestSuite(rule_postgres, .init = up_pg, .fini = down, .timeout = 120);
TestSuite(rule_sqs, .init = up_sqs, .fini = down, .timeout = 120);

/* n messages of the worker through the broker of cfg reach cfg's iot queue,
 * each in its envelope. */
static void envelopes_reach_the_queue(const wb_config *cfg, const char *worker, unsigned n)
{
    wb_queue *q = open_queue(cfg);
    drain(q, NULL, 0, 0, 0);
    wb_worker *w = wbt_env_worker(&env, worker, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    check_envelopes(q, w, worker, n);
    wb_worker_close(w);
    wb_queue_close(q);
}

Test(rule_postgres, worker_messages_reach_the_iot_queue_in_the_envelope)
{
    envelopes_reach_the_queue(env.cfg, WBT_WORKER, 20);
}

Test(rule_sqs, worker_messages_reach_the_iot_queue_in_the_envelope)
{
    envelopes_reach_the_queue(env.cfg, WBT_WORKER, 20);
}

/* mosquitto_pub as the worker, MQTT 5, printing the PUBACK's reason code. */
static wbt_proc pub_v5(const char *payload)
{
    char port[8], ca[160];
    snprintf(port, sizeof port, "%u", env.port);
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    const char *argv[] = {"mosquitto_pub",
                          "-h",
                          "127.0.0.1",
                          "-p",
                          port,
                          "--cafile",
                          ca,
                          "--cert",
                          env.worker_crt,
                          "--key",
                          env.worker_key,
                          "-i",
                          WBT_WORKER,
                          "-V",
                          "mqttv5",
                          "-q",
                          "1",
                          "-d",
                          "-t",
                          wbt_topic("writeonly", WBT_POOL, WBT_WORKER),
                          "-m",
                          payload,
                          NULL};
    wbt_proc p;
    cr_assert(wbt_proc_run(argv, NULL, 15000, &p), "cannot run mosquitto_pub");
    return p;
}

Test(rule_postgres, a_payload_that_is_not_a_json_object_is_refused_with_a_reason_code)
{
    wb_queue *q = open_queue(env.cfg);
    drain(q, NULL, 0, 0, 0);
    static const char *const bad[] = {"[1,2,3]", "not json", "\"a string\"", "42"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wbt_proc p = pub_v5(bad[i]);
        /* 0x87 = 135: not authorized, the reason code of a refused publish */
        cr_assert(strstr(p.out, "received PUBACK") && strstr(p.out, "RC:135"),
                  "payload %s: mosquitto_pub said:\n%s\n%s", bad[i], p.out, p.err);
        wbt_proc_free(&p);
    }
    cr_assert(wbt_log_wait_for("the payload (7 bytes) is a JSON array; workers must publish JSON "
                               "objects",
                               5000),
              "the broker's log names the refusal");
    wbt_proc p = pub_v5("{\"ok\":true}");
    cr_assert(strstr(p.out, "received PUBACK") && !strstr(p.out, "RC:135"), "%s", p.out);
    wbt_proc_free(&p);
    wb_envelope e[4];
    size_t got = drain(q, e, 4, 1, 10000);
    cr_assert_eq(got, 1, "only the object reached the queue (%zu messages)", got);
    cr_assert_str_eq(e[0].payload, "{\"ok\":true}");
    wb_envelope_clear(&e[0]);
    wb_queue_close(q);
}

static void services(const char *what)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/scripts/services' %s --dir '%s' 2>/dev/null",
             need("WB_SOURCE_ROOT"), what, need("WBT_SERVICES_DIR"));
    cr_assert_eq(system(cmd), 0, "scripts/services %s failed", what);
}

/* The iot queue emptied, PostgreSQL suspended, then count messages
 * {"seq":0..count-1} published by a connected worker (returned). */
static wb_worker *publish_with_the_queue_down(wb_queue *q, unsigned count)
{
    drain(q, NULL, 0, 0, 0);
    wb_worker *w = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    services("suspend postgres");
    for (unsigned i = 0; i < count; i++) {
        char p[64];
        int n = snprintf(p, sizeof p, "{\"seq\":%u}", i);
        cr_assert_eq(wb_worker_publish(w, p, (size_t)n, 1), WB_OK);
    }
    return w;
}

/* The "seq" of each envelope, in 0..count-1, marked in seen[]; returns how
 * many distinct ones below `below` arrived, *dups how many arrived again.
 * Clears the envelopes. */
static size_t seqs_of(wb_envelope *e, size_t got, unsigned count, bool *seen, uint64_t below,
                      size_t *dups)
{
    size_t distinct = 0;
    for (size_t i = 0; i < got; i++) {
        json_t *j = json_loads(e[i].payload, 0, NULL);
        json_int_t s = json_integer_value(json_object_get(j, "seq"));
        cr_assert(s >= 0 && s < (json_int_t)count, "seq %lld of %s", (long long)s, e[i].payload);
        if (seen[s])
            (*dups)++;
        else if ((uint64_t)s < below)
            distinct++;
        seen[s] = true;
        json_decref(j);
        wb_envelope_clear(&e[i]);
    }
    return distinct;
}

Test(rule_postgres, while_the_queue_is_down_messages_wait_and_arrive_after, .timeout = 180)
{
    wb_queue *q = open_queue(env.cfg);
    const unsigned count = 40;
    wb_worker *w = publish_with_the_queue_down(q, count);
    cr_assert(wbt_log_wait_for("closing its connection", 10000),
              "the broker refuses while the queue is down");
    sleep(3);
    wb_broker_stats st;
    wb_worker_stats_get(w, &st);
    cr_assert_lt(st.acknowledged, count, "the broker acknowledged all %u with the queue down",
                 count);
    services("resume postgres");
    cr_assert_eq(wb_worker_flush(w, 60000), WB_OK, "%s", wb_worker_last_error(w));
    wb_envelope e[64];
    size_t got = drain(q, e, 64, count, 30000);
    bool seen[64] = {false};
    size_t dups = 0, distinct = seqs_of(e, got < 64 ? got : 64, count, seen, count, &dups);
    cr_log_info("queue down: %llu acknowledged before it came back; %zu messages arrived, %zu "
                "distinct of %u",
                (unsigned long long)st.acknowledged, got, distinct, count);
    cr_assert_eq(distinct, count, "every message arrived once the queue was back");
    wb_worker_close(w);
    wb_queue_close(q);
}

/* The database host stops answering (every process of the cluster stopped)
 * while a worker's message waits for its commit on Mosquitto's only
 * thread: that write gives up after its one attempt's 3 s and the plugin
 * pauses, so the broker goes on with its other work (here another worker's
 * connection) instead of waiting for as long as the kernel keeps the
 * database's connection (minutes). The cluster is continued after 25 s
 * whatever happens, so that a broker that waits fails the test. */
Test(rule_postgres, a_database_that_stops_answering_does_not_hold_the_broker, .timeout = 180)
{
    wb_queue *q = open_queue(env.cfg);
    drain(q, NULL, 0, 0, 0);
    wb_worker *a = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(a, 10000), WB_OK, "%s", wb_worker_last_error(a));
    cr_assert_eq(wb_worker_publish(a, "{\"seq\":0}", 9, 1), WB_OK);
    cr_assert_eq(wb_worker_flush(a, 10000), WB_OK, "the queue took no message before the freeze");
    char pidfile[512];
    snprintf(pidfile, sizeof pidfile, "%s/pg/postmaster.pid", need("WBT_SERVICES_DIR"));
    wbt_frozen fz;
    cr_assert(wbt_freeze(&fz, pidfile, 25000), "cannot stop the cluster of %s", pidfile);
    cr_assert_eq(wb_worker_publish(a, "{\"seq\":1}", 9, 1), WB_OK);
    usleep(300000); /* the topic rule waits for its commit now */
    uint64_t t0 = now_ms();
    wb_worker *b = wbt_env_worker(&env, WBT_OTHER_WORKER, NULL, NULL);
    wb_err err = wb_worker_connect(b, 20000);
    uint64_t took = now_ms() - t0;
    bool said = wbt_log_wait_for("the one attempt's time", 5000);
    wbt_thaw(&fz);
    cr_log_info("another worker connected in %llu ms with %zu processes of the cluster stopped",
                (unsigned long long)took, fz.n);
    cr_assert_eq(err, WB_OK, "another worker could not connect while the database was stopped: %s",
                 wb_worker_last_error(b));
    cr_assert_lt(took, 10000, "another worker waited %llu ms to connect: the broker was held",
                 (unsigned long long)took);
    cr_assert(said, "the plugin did not say why the write failed");
    /* once the database answers again, the message that failed arrives */
    cr_assert_eq(wb_worker_flush(a, 60000), WB_OK, "%s", wb_worker_last_error(a));
    wb_envelope e[4];
    size_t got = drain(q, e, 4, 2, 30000);
    bool seen[2] = {false};
    size_t dups = 0, distinct = seqs_of(e, got < 4 ? got : 4, 2, seen, 2, &dups);
    cr_assert_eq(distinct, 2, "%zu of the 2 messages arrived", distinct);
    wb_worker_close(b);
    wb_worker_close(a);
    wb_queue_close(q);
}

/* ---- MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received ------------------------- */

static void up_ack_received(void)
{
    static const char *over[16];
    const char *const *q = queue_over("postgres");
    size_t n = 0;
    while (q[n] && n < 14) {
        over[n] = q[n];
        n++;
    }
    over[n++] = "MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received";
    over[n] = NULL;
    wbt_log_capture();
    wbt_env_setup_queue(&env, true, over);
    wbt_env_start(&env);
}

TestSuite(rule_ack_received, .init = up_ack_received, .fini = down, .timeout = 180);

Test(rule_ack_received, worker_messages_reach_the_iot_queue_in_the_envelope)
{
    cr_assert(wbt_log_wait_for("acknowledged before they are written to the queue", 5000),
              "the broker does not say that it acknowledges before writing");
    envelopes_reach_the_queue(env.cfg, WBT_WORKER, 20);
}

/* The queue down: every message is acknowledged at once (as IoT Core does),
 * held by the broker, and written once the queue is back. */
Test(rule_ack_received, while_the_queue_is_down_messages_are_acknowledged_and_arrive_after)
{
    wb_queue *q = open_queue(env.cfg);
    const unsigned count = 40;
    wb_worker *w = publish_with_the_queue_down(q, count);
    cr_assert_eq(wb_worker_flush(w, 10000), WB_OK,
                 "the broker did not acknowledge every message with the queue down: %s",
                 wb_worker_last_error(w));
    cr_assert(wbt_log_wait_for("cannot write acknowledged messages", 10000));
    services("resume postgres");
    wb_envelope e[64];
    size_t got = drain(q, e, 64, count, 30000);
    cr_assert_eq(got, count, "%zu of %u acknowledged messages arrived", got, count);
    bool seen[64] = {false};
    size_t dups = 0;
    cr_assert_eq(seqs_of(e, got, count, seen, count, &dups), count);
    cr_assert_eq(dups, 0, "a message arrived twice");
    wb_worker_close(w);
    wb_queue_close(q);
}

/* The mode's loss window, measured: 2000 messages as fast as a worker
 * sends them, the broker SIGKILLed once 1000 are acknowledged and the
 * writer has written at least one. The
 * acknowledged ones (a connection's PUBACKs come in order: the first k)
 * that the writer had not written are lost; the test prints how many, and
 * checks that nothing arrived twice. */
Test(rule_ack_received, a_killed_broker_loses_what_it_had_not_written)
{
    wb_queue *q = open_queue(env.cfg);
    drain(q, NULL, 0, 0, 0);
    wb_worker *w = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    enum { N = 2000 };
    wb_broker_stats st = {0};
    unsigned sent = 0;
    for (; sent < N; sent++) {
        char p[64];
        int n = snprintf(p, sizeof p, "{\"seq\":%u}", sent);
        while (wb_worker_publish(w, p, (size_t)n, 1) == WB_ERR_BUSY)
            usleep(500);
        wb_worker_stats_get(w, &st);
        if (st.acknowledged >= N / 2)
            break;
    }
    for (int i = 0; i < 5000 && st.acknowledged < N / 2; i++) {
        usleep(1000);
        wb_worker_stats_get(w, &st);
    }
    /* the writer has begun (on a loaded machine it may not have written
     * anything yet when half the messages are acknowledged) */
    wb_queue_counts k = {0};
    for (int i = 0; i < 5000 && k.visible == 0; i++) {
        cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &k), WB_OK, "%s", wb_queue_last_error(q));
        if (k.visible == 0)
            usleep(1000);
    }
    cr_assert_eq(kill(wb_bundled_pid(env.broker), SIGKILL), 0);
    wb_worker_stats_get(w, &st);
    uint64_t acked = st.acknowledged;
    wb_worker_close(w); /* what was not acknowledged is not counted */
    static wb_envelope e[N + 100];
    size_t got = drain(q, e, N + 100, 0, 3000);
    static bool seen[N];
    size_t dups = 0;
    size_t written = seqs_of(e, got < N + 100 ? got : N + 100, N, seen, acked, &dups);
    fprintf(stderr,
            "MEASURE ack-received broker-kill acknowledged=%llu written=%zu lost=%llu dups=%zu\n",
            (unsigned long long)acked, written, (unsigned long long)(acked - written), dups);
    cr_assert_eq(dups, 0, "a message was written twice");
    cr_assert_gt(written, 0, "nothing was written before the kill");
    wb_queue_close(q);
}

/* The IoT Core stand-in's forwarder: worker -> stand-in -> SQS iot queue,
 * read by a server with the iotcore configuration. */
static void up_iot(void)
{
    wbt_log_capture();
    wbt_env_setup_iot_queue(&env, queue_over("sqs"));
    wbt_env_start(&env);
}

TestSuite(iot_standin, .init = up_iot, .fini = down, .timeout = 120);

Test(iot_standin, the_forwarder_writes_worker_messages_into_the_sqs_iot_queue)
{
    cr_assert_eq(wb_config_broker_type(env.iot_cfg), WB_BROKER_IOTCORE);
    envelopes_reach_the_queue(env.iot_cfg, WBT_OTHER_WORKER, 10);
}

/* ---- the drain ------------------------------------------------------------------- */

typedef struct drainbox {
    pthread_mutex_t lock;
    unsigned calls, slow_ms;
    wb_err answer;
    char last_payload[256];
} drainbox;

static wb_err box_handler(void *ctx, const wb_worker_message *m)
{
    drainbox *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->calls++;
    snprintf(b->last_payload, sizeof b->last_payload, "%s", m->envelope->payload);
    unsigned slow = b->slow_ms;
    wb_err answer = b->answer;
    pthread_mutex_unlock(&b->lock);
    usleep(slow * 1000u);
    return answer;
}

static void send_envelope(wb_queue *q, const char *payload)
{
    char *body = NULL;
    size_t n = 0;
    cr_assert_eq(wb_envelope_encode(payload, strlen(payload), WBT_POOL, WBT_WORKER, now_ms(), &body,
                                    &n, NULL),
                 WB_OK);
    wb_queue_entry e = {.body = body, .body_len = n};
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_OK, "%s", wb_queue_last_error(q));
    wb_free(body);
}

static unsigned box_calls(drainbox *b)
{
    pthread_mutex_lock(&b->lock);
    unsigned n = b->calls;
    pthread_mutex_unlock(&b->lock);
    return n;
}

TestSuite(drain, .init = up_pg, .fini = down, .timeout = 120);

Test(drain, a_slow_handler_keeps_its_message_invisible)
{
    wb_queue *q = open_queue(env.cfg);
    drain(q, NULL, 0, 0, 0);
    send_envelope(q, "{\"slow\":true}");
    drainbox b = {.lock = PTHREAD_MUTEX_INITIALIZER, .slow_ms = 5000, .answer = WB_OK};
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    o.threads = 2; /* the other thread would take the message if it came back */
    o.visibility_s = 2;
    o.wait_s = 1;
    wb_drain *d = NULL;
    cr_assert_eq(wb_drain_start(q, &o, box_handler, &b, &d), WB_OK);
    for (int i = 0; i < 100 && box_calls(&b) == 0; i++)
        usleep(50000);
    sleep(7); /* past the 5 s handler and twice the visibility */
    wb_drain_stop(d);
    wb_drain_stats st;
    wb_drain_stats_get(d, &st);
    wb_drain_free(d);
    cr_log_info("slow handler: %u call(s), %llu visibility extension(s), %llu delivered",
                box_calls(&b), (unsigned long long)st.extended, (unsigned long long)st.delivered);
    cr_assert_eq(box_calls(&b), 1, "the message came back while its handler ran");
    cr_assert_geq(st.extended, 2);
    cr_assert_eq(st.delivered, 1);
    cr_assert_str_eq(b.last_payload, "{\"slow\":true}");
    wb_queue_close(q);
}

Test(drain, a_failing_handler_sends_its_message_to_the_dlq_and_non_envelopes_follow)
{
    wb_queue *q = open_queue(env.cfg);
    drain(q, NULL, 0, 0, 0);
    send_envelope(q, "{\"fails\":true}");
    wb_queue_entry junk = {.body = "not an envelope", .body_len = 15};
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &junk, NULL), WB_OK);
    drainbox b = {.lock = PTHREAD_MUTEX_INITIALIZER, .answer = WB_ERR_BACKEND};
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    o.visibility_s = 2;
    o.wait_s = 1;
    wb_drain *d = NULL;
    cr_assert_eq(wb_drain_start(q, &o, box_handler, &b, &d), WB_OK);
    wb_drain_stats st = {0};
    for (int i = 0; i < 300 && st.redriven < 2; i++) {
        usleep(50000);
        wb_drain_stats_get(d, &st);
    }
    wb_drain_stop(d);
    wb_drain_stats_get(d, &st);
    wb_drain_free(d);
    cr_log_info("failing handler: %u call(s); received %llu, failed %llu, redriven %llu",
                box_calls(&b), (unsigned long long)st.received, (unsigned long long)st.failed,
                (unsigned long long)st.redriven);
    /* the envelope was handed over 3 times; the junk body never */
    cr_assert_eq(box_calls(&b), 3);
    cr_assert_eq(st.redriven, 2);
    cr_assert_eq(st.failed, 6);
    cr_assert_eq(st.delivered, 0);
    /* both wait in the dead-letter queue once their last attempt's
     * visibility is over and the next receive moves them */
    sleep(3);
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 0, 30, &m, &n), WB_OK);
    wb_queue_messages_free(m, n);
    size_t dead = 0;
    for (int i = 0; i < 3 && dead < 2; i++) {
        cr_assert_eq(wb_queue_receive(q, WB_LQ_DLQ, 10, 1, 30, &m, &n), WB_OK);
        for (size_t k = 0; k < n; k++)
            wb_queue_delete(q, WB_LQ_DLQ, m[k].receipt);
        dead += n;
        wb_queue_messages_free(m, n);
    }
    cr_assert_eq(dead, 2, "%zu message(s) in dlq", dead);
    cr_assert(wbt_log_wait_for("failed on its last attempt (3); the queue moves it to dlq", 1000));
    cr_assert(wbt_log_wait_for("is not a worker message envelope", 1000));
    wb_queue_close(q);
}
