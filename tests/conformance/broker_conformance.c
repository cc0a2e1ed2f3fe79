/* The broker interface's conformance suite: written against wb_broker_*
 * only (workers as the peers), run against every backend through its
 * target (target_<backend>.c). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "target.h"

#define W1 "01BX5ZZKBKACTAV9WEVGEMMVRZ"
#define W2 "01BX5ZZKBKACTAV9WEVGEMMVR0"
#define T  (&wbt_target_impl)

/* ---- a collector of received messages ------------------------------------ */

typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t n;        /* messages received */
    size_t distinct; /* distinct indexes among "m-<index>" payloads */
    size_t dups;
    size_t out_of_order;
    long last;           /* last index seen */
    unsigned char *seen; /* by index */
    size_t cap;
    char last_topic[256];
    char last_payload[256];
} collector;

static void col_init(collector *c, size_t cap)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->cap = cap;
    c->seen = calloc(cap ? cap : 1, 1);
    c->last = -1;
}

static void col_free(collector *c)
{
    free(c->seen);
}

static void on_msg(void *ctx, const wb_message *m)
{
    collector *c = ctx;
    pthread_mutex_lock(&c->lock);
    c->n++;
    snprintf(c->last_topic, sizeof c->last_topic, "%s", m->topic);
    size_t l =
        m->payload_len < sizeof c->last_payload - 1 ? m->payload_len : sizeof c->last_payload - 1;
    memcpy(c->last_payload, m->payload, l);
    c->last_payload[l] = '\0';
    long idx = -1;
    if (sscanf(c->last_payload, "m-%ld", &idx) == 1 && idx >= 0 && (size_t)idx < c->cap) {
        if (c->seen[idx])
            c->dups++;
        else {
            c->seen[idx] = 1;
            c->distinct++;
        }
        if (idx < c->last)
            c->out_of_order++;
        c->last = idx;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* What a wait waits for, read under the collector's lock: want messages
 * (distinct, or any for n_only), or, with to > 0, every index in
 * [from, to). */
typedef struct col_goal {
    size_t want, from, to;
    bool n_only;
} col_goal;

static bool col_reached(const collector *c, const col_goal *g)
{
    if (g->to == 0)
        return (g->n_only ? c->n : c->distinct) >= g->want;
    size_t i = g->from;
    while (i < g->to && i < c->cap && c->seen[i])
        i++;
    return i >= g->to;
}

/* Polls until the goal is reached; false after timeout_ms. */
static bool col_until(collector *c, col_goal g, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 10) {
        pthread_mutex_lock(&c->lock);
        bool done = col_reached(c, &g);
        pthread_mutex_unlock(&c->lock);
        if (done)
            return true;
        if (waited >= timeout_ms)
            return false;
        usleep(10000);
    }
}

/* Waits until `distinct` (or, for n_only, `n`) reaches want. */
static bool col_wait(collector *c, size_t want, unsigned timeout_ms, bool n_only)
{
    return col_until(c, (col_goal){.want = want, .n_only = n_only}, timeout_ms);
}

/* Waits until every index in [from, to) has been received. */
static bool col_wait_range(collector *c, size_t from, size_t to, unsigned timeout_ms)
{
    return col_until(c, (col_goal){.from = from, .to = to}, timeout_ms);
}

/* ---- helpers ---------------------------------------------------------------- */

static wb_broker *server(wb_message_fn fn, void *ctx)
{
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.on_message = fn;
    o.on_message_ctx = ctx;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 1000;
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(T->config(), &o, &b), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(b, 10000), WB_OK, "%s", wb_broker_last_error(b));
    return b;
}

static wb_worker *worker(const char *ulid, collector *c)
{
    wb_worker *w = T->worker(ulid, on_msg, c);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    return w;
}

static void publish_seq(wb_broker *b, const char *worker_ulid, size_t from, size_t to, int qos)
{
    for (size_t i = from; i < to; i++) {
        char p[32];
        int n = snprintf(p, sizeof p, "m-%zu", i);
        wb_err err;
        while ((err = wb_broker_publish_to_worker(b, WBT_CPOOL, worker_ulid, p, (size_t)n, qos)) ==
               WB_ERR_BUSY)
            usleep(1000);
        cr_assert_eq(err, WB_OK, "message %zu: %s", i, wb_broker_last_error(b));
    }
}

static void setup(void)
{
    T->setup();
}

static void teardown(void)
{
    T->teardown();
}

TestSuite(broker, .init = setup, .fini = teardown, .timeout = 120);

/* How long n messages may take to go through: the target's rate limit, if
 * any, plus a fixed allowance. */
static unsigned budget_ms(size_t n, unsigned allowance_ms)
{
    return allowance_ms + (T->publish_rate ? (unsigned)(n * 1000u / T->publish_rate) : 0);
}

/* ---- the suite ----------------------------------------------------------- */

Test(broker, connect_and_disconnect)
{
    wb_broker *b = server(NULL, NULL);
    cr_assert_str_eq(wb_broker_backend(b), T->name);
    wb_broker_stats st;
    wb_broker_stats_get(b, &st);
    cr_assert(st.connected);
    cr_assert_eq(wb_broker_connect(b, 1000), WB_ERR_STATE, "a second connect is refused");
    cr_assert_eq(wb_broker_disconnect(b, 1000), WB_OK);
    wb_broker_stats_get(b, &st);
    cr_assert_not(st.connected);
    cr_assert_eq(wb_broker_publish(b, "spacelift/readonly/x", "x", 1, 1), WB_ERR_STATE);
    wb_broker_close(b);
}

Test(broker, publish_before_connect_is_refused)
{
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(T->config(), NULL, &b), WB_OK);
    cr_assert_eq(wb_broker_publish_to_worker(b, WBT_CPOOL, W1, "x", 1, 1), WB_ERR_STATE);
    cr_assert(strstr(wb_broker_last_error(b), "connect"), "%s", wb_broker_last_error(b));
    wb_broker_close(b);
}

Test(broker, qos0_and_qos1_reach_the_worker)
{
    collector c;
    col_init(&c, 16);
    wb_worker *w = worker(W1, &c);
    wb_broker *b = server(NULL, NULL);
    publish_seq(b, W1, 0, 1, 0);
    publish_seq(b, W1, 1, 2, 1);
    cr_assert_eq(wb_broker_flush(b, 5000), WB_OK);
    cr_assert(col_wait(&c, 2, 5000, false), "received %zu of 2", c.distinct);
    cr_assert_str_eq(c.last_topic, "spacelift/readonly/" WBT_CPOOL "/" W1);
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, qos1_messages_arrive_complete_and_in_order)
{
    const size_t N = 2000;
    collector c;
    col_init(&c, N);
    wb_worker *w = worker(W1, &c);
    wb_broker *b = server(NULL, NULL);
    publish_seq(b, W1, 0, N, 1);
    cr_assert_eq(wb_broker_flush(b, 20000), WB_OK, "%s", wb_broker_last_error(b));
    cr_assert(col_wait(&c, N, 20000, false), "received %zu of %zu", c.distinct, N);
    cr_assert_eq(c.out_of_order, 0);
    cr_assert_eq(c.dups, 0);
    wb_broker_stats st;
    wb_broker_stats_get(b, &st);
    cr_assert_eq(st.published, N);
    cr_assert_eq(st.acknowledged, N);
    cr_assert_eq(st.queued, 0);
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, payload_is_copied_and_binary_safe)
{
    collector c;
    col_init(&c, 4);
    wb_worker *w = worker(W1, &c);
    wb_broker *b = server(NULL, NULL);
    char buf[16] = "m-1\0binary";
    cr_assert_eq(wb_broker_publish_to_worker(b, WBT_CPOOL, W1, buf, sizeof buf, 1), WB_OK);
    memset(buf, 'X', sizeof buf); /* the caller owns it again at once */
    cr_assert(col_wait(&c, 1, 5000, false));
    cr_assert_str_eq(c.last_payload, "m-1");
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, worker_messages_reach_a_subscribed_server)
{
    collector c;
    col_init(&c, 16);
    wb_broker *b = server(on_msg, &c);
    cr_assert_eq(wb_broker_subscribe(b, "spacelift/writeonly/#", 1, 5000), WB_OK, "%s",
                 wb_broker_last_error(b));
    collector unused;
    col_init(&unused, 1);
    wb_worker *w = worker(W2, &unused);
    cr_assert_eq(wb_worker_publish(w, "m-7", 3, 1), WB_OK);
    cr_assert(col_wait(&c, 1, 5000, false));
    cr_assert_str_eq(c.last_topic, "spacelift/writeonly/" WBT_CPOOL "/" W2);
    cr_assert_str_eq(c.last_payload, "m-7");
    /* after unsubscribe nothing more arrives */
    cr_assert_eq(wb_broker_unsubscribe(b, "spacelift/writeonly/#", 5000), WB_OK);
    cr_assert_eq(wb_worker_publish(w, "m-8", 3, 1), WB_OK);
    cr_assert_eq(wb_worker_flush(w, 5000), WB_OK);
    usleep(300000);
    cr_assert_eq(c.n, 1, "a message arrived after unsubscribe");
    wb_worker_close(w);
    wb_broker_close(b);
    col_free(&c);
    col_free(&unused);
}

Test(broker, forbidden_subscription_is_refused)
{
    wb_broker *b = server(NULL, NULL);
    cr_assert_eq(wb_broker_subscribe(b, T->forbidden_filter, 1, 5000), WB_ERR_AUTH_REFUSED);
    cr_assert(strstr(wb_broker_last_error(b), "refused"), "%s", wb_broker_last_error(b));
    wb_broker_close(b);
}

typedef struct pub_job {
    wb_broker *b;
    size_t from, to;
} pub_job;

static void *pub_thread(void *arg)
{
    pub_job *j = arg;
    publish_seq(j->b, W1, j->from, j->to, 1);
    return NULL;
}

Test(broker, publishing_from_several_threads_at_once)
{
    enum { THREADS = 8, PER = 500 };
    collector c;
    col_init(&c, THREADS * PER);
    wb_worker *w = worker(W1, &c);
    wb_broker *b = server(NULL, NULL);
    pthread_t th[THREADS];
    pub_job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (pub_job){b, (size_t)i * PER, (size_t)(i + 1) * PER};
        cr_assert_eq(pthread_create(&th[i], NULL, pub_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(wb_broker_flush(b, budget_ms(THREADS * PER, 30000)), WB_OK, "%s",
                 wb_broker_last_error(b));
    cr_assert(col_wait(&c, THREADS * PER, 30000, false), "received %zu of %d", c.distinct,
              THREADS * PER);
    wb_broker_stats st;
    wb_broker_stats_get(b, &st);
    cr_assert_eq(st.published, THREADS * PER);
    cr_assert_eq(st.acknowledged, THREADS * PER);
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

static wb_broker *cb_broker;
static wb_err cb_pub_err = WB_ERR_BACKEND, cb_sub_err = WB_OK;

static void reply_from_callback(void *ctx, const wb_message *m)
{
    (void)ctx;
    (void)m;
    cb_pub_err = wb_broker_publish_to_worker(cb_broker, WBT_CPOOL, W1, "m-2", 3, 1);
    cb_sub_err = wb_broker_subscribe(cb_broker, "spacelift/writeonly/x", 1, 100);
}

Test(broker, callbacks_may_publish_but_not_subscribe)
{
    collector c;
    col_init(&c, 4);
    wb_worker *w = worker(W1, &c);
    cb_broker = server(reply_from_callback, NULL);
    cr_assert_eq(wb_broker_subscribe(cb_broker, "spacelift/writeonly/#", 1, 5000), WB_OK);
    cr_assert_eq(wb_worker_publish(w, "m-1", 3, 1), WB_OK);
    cr_assert(col_wait(&c, 1, 5000, true), "the reply sent from the callback did not arrive");
    cr_assert_str_eq(c.last_payload, "m-2");
    cr_assert_eq(cb_pub_err, WB_OK);
    cr_assert_eq(cb_sub_err, WB_ERR_STATE);
    wb_broker_close(cb_broker);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, worker_session_keeps_messages_while_it_is_away)
{
    collector c;
    col_init(&c, 16);
    wb_worker *w = worker(W1, &c);
    cr_assert_eq(wb_worker_disconnect(w, 1000), WB_OK);
    wb_worker_close(w);
    wb_broker *b = server(NULL, NULL);
    publish_seq(b, W1, 0, 10, 1);
    cr_assert_eq(wb_broker_flush(b, 5000), WB_OK);
    w = worker(W1, &c); /* the same worker comes back */
    cr_assert(col_wait(&c, 10, 5000, false), "received %zu of 10", c.distinct);
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, hundred_workers_each_get_a_qos1_burst, .timeout = 240)
{
    enum { WORKERS = 100, EACH = 50 };
    static collector cs[WORKERS];
    wb_worker *ws[WORKERS];
    char ids[WORKERS][WB_ULID_STR_SIZE];
    for (int i = 0; i < WORKERS; i++) {
        wb_ulid u;
        cr_assert_eq(wb_ulid_new(&u), WB_OK);
        wb_ulid_format(&u, ids[i]);
        col_init(&cs[i], EACH);
        ws[i] = worker(ids[i], &cs[i]);
    }
    wb_broker *b = server(NULL, NULL);
    for (int k = 0; k < EACH; k++) { /* interleaved: a burst to all at once */
        for (int i = 0; i < WORKERS; i++)
            publish_seq(b, ids[i], (size_t)k, (size_t)k + 1, 1);
    }
    cr_assert_eq(wb_broker_flush(b, 60000), WB_OK, "%s", wb_broker_last_error(b));
    size_t total = 0;
    for (int i = 0; i < WORKERS; i++) {
        col_wait(&cs[i], EACH, 30000, false);
        total += cs[i].distinct;
    }
    cr_assert_eq(total, (size_t)WORKERS * EACH, "received %zu of %d", total, WORKERS * EACH);
    wb_broker_close(b);
    for (int i = 0; i < WORKERS; i++) {
        wb_worker_close(ws[i]);
        col_free(&cs[i]);
    }
}

Test(broker, hundred_workers_publish_a_qos1_burst_to_the_server, .timeout = 240)
{
    /* the fan-in that Mosquitto 2.0.11's default queue limit broke: 100
     * publishers at once to one subscriber */
    enum { WORKERS = 100, EACH = 50 };
    collector c;
    col_init(&c, WORKERS * EACH);
    wb_broker *b = server(on_msg, &c);
    cr_assert_eq(wb_broker_subscribe(b, "spacelift/writeonly/#", 1, 5000), WB_OK);
    static collector unused[WORKERS];
    wb_worker *ws[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        wb_ulid u;
        char id[WB_ULID_STR_SIZE];
        cr_assert_eq(wb_ulid_new(&u), WB_OK);
        wb_ulid_format(&u, id);
        col_init(&unused[i], 1);
        ws[i] = worker(id, &unused[i]);
    }
    for (int k = 0; k < EACH; k++) {
        for (int i = 0; i < WORKERS; i++) {
            char p[32];
            int n = snprintf(p, sizeof p, "m-%d", i * EACH + k);
            cr_assert_eq(wb_worker_publish(ws[i], p, (size_t)n, 1), WB_OK);
        }
    }
    for (int i = 0; i < WORKERS; i++)
        cr_assert_eq(wb_worker_flush(ws[i], 60000), WB_OK, "%s", wb_worker_last_error(ws[i]));
    cr_assert(col_wait(&c, WORKERS * EACH, 60000, false), "the server received %zu of %d",
              c.distinct, WORKERS * EACH);
    for (int i = 0; i < WORKERS; i++) {
        wb_worker_close(ws[i]);
        col_free(&unused[i]);
    }
    wb_broker_close(b);
    col_free(&c);
}

Test(broker, qos1_not_yet_acknowledged_survives_a_killed_broker, .timeout = 180)
{
    /* at a limited rate, as many as flow in 30 s */
    const size_t N =
        T->publish_rate && T->publish_rate * 30u < 20000u ? T->publish_rate * 30u : 20000u;
    collector c;
    col_init(&c, N);
    wb_worker *w = worker(W1, &c);
    wb_broker *b = server(NULL, NULL);
    /* a worker's session is as old as the worker: let the broker save it, as
     * it has for any worker that was not born a second ago */
    usleep(T->save_interval_ms * 1000 * 3); /* Mosquitto saves once a whole interval has passed */
    /* publish half, kill the broker while they flow, then the rest */
    publish_seq(b, W1, 0, N / 2, 1);
    cr_assert(T->kill_broker(), "the target cannot kill its broker");
    wb_broker_stats st;
    for (int i = 0; i < 500; i++) { /* every acknowledgement sent before the death is read */
        wb_broker_stats_get(b, &st);
        if (!st.connected)
            break;
        usleep(10000);
    }
    cr_assert_not(st.connected, "the client did not notice the broker's death");
    size_t acked_before = (size_t)st.acknowledged;
    publish_seq(b, W1, N / 2, N, 1); /* accepted while the broker is down */
    cr_assert(T->broker_ready(30000), "the broker did not come back");
    cr_assert_eq(wb_broker_flush(b, budget_ms(N, 60000)), WB_OK, "%s", wb_broker_last_error(b));
    wb_broker_stats_get(b, &st);
    cr_assert_geq(st.reconnects, 1);
    cr_assert_eq(st.queued, 0);
    /* PUBACKs come in order on one connection: the first acked_before
     * messages were acknowledged before the kill, the others were not.
     * Those must all arrive; of the first, the broker may have lost some
     * with its memory, so waiting for all N would wait out the timeout
     * whenever it did. The broker delivers a session's messages in order:
     * once the last ones are in, what is missing is lost. */
    col_wait_range(&c, acked_before, N, 30000);
    size_t missing_unacked = 0, missing_acked = 0;
    pthread_mutex_lock(&c.lock);
    for (size_t i = 0; i < N; i++) {
        if (!c.seen[i]) {
            if (i < acked_before)
                missing_acked++;
            else
                missing_unacked++;
        }
    }
    size_t dups = c.dups;
    /* the lost ranges, for the report */
    char ranges[512] = "";
    size_t rl = 0;
    for (size_t i = 0; i < N && rl < sizeof ranges - 40; i++) {
        if (c.seen[i])
            continue;
        size_t j = i;
        while (j + 1 < N && !c.seen[j + 1])
            j++;
        rl += (size_t)snprintf(ranges + rl, sizeof ranges - rl, " %zu-%zu", i, j);
        i = j;
    }
    pthread_mutex_unlock(&c.lock);
    fprintf(stderr, "MEASURE lost ranges:%s\n", ranges);
    cr_log_info("killed broker: %zu of %zu acknowledged before the kill; after it, lost %zu "
                "acknowledged (held by the broker in memory), 0 expected among the %zu "
                "unacknowledged (lost: %zu), %zu duplicates",
                acked_before, N, missing_acked, N - acked_before, missing_unacked, dups);
    fprintf(stderr,
            "MEASURE broker-kill acked_before=%zu lost_acked=%zu lost_unacked=%zu dups=%zu "
            "total=%zu\n",
            acked_before, missing_acked, missing_unacked, dups, N);
    cr_assert_lt(acked_before, N, "the kill came too late to test anything");
    cr_assert_eq(missing_unacked, 0, "%zu messages the broker never acknowledged were lost",
                 missing_unacked);
    wb_broker_close(b);
    wb_worker_close(w);
    col_free(&c);
}

Test(broker, bad_worker_address_names_the_culprit)
{
    wb_broker *b = server(NULL, NULL);
    cr_assert_eq(wb_broker_publish_to_worker(b, WBT_CPOOL, "not-a-worker", "x", 1, 1),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_broker_last_error(b), "\"not-a-worker\""), "%s", wb_broker_last_error(b));
    wb_broker_close(b);
}
