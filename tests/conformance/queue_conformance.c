/* The message-queue conformance suite: the same tests, unchanged, against
 * every backend (tests/conformance/qtarget_*.c) with real servers. Server
 * code must not be able to tell the backends apart. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue_target.h"

#define T (&wbt_qtarget_impl)

static wb_config *cfg;
static wb_queue *q;

const char *wbt_qenv(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set: run this suite through tests/conformance/with-services.sh",
              name);
    return v;
}

wb_drain *wbt_drain_long_polls(wb_queue *queue, wb_worker_message_fn fn, void *ctx)
{
    wb_drain_opts o = WB_DRAIN_OPTS_INIT;
    o.threads = 2;
    o.wait_s = 20;
    wb_drain *d = NULL;
    cr_assert_eq(wb_drain_start(queue, &o, fn, ctx, &d), WB_OK, "%s", wb_queue_last_error(queue));
    return d;
}

bool wbt_services(const char *cmd, const char *what)
{
    char line[1024];
    snprintf(line, sizeof line, "'%s/scripts/services' %s %s --dir '%s' >/dev/null 2>&1",
             wbt_qenv("WB_SOURCE_ROOT"), cmd, what, wbt_qenv("WBT_SERVICES_DIR"));
    return system(line) == 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    T->purge();
    cfg = T->config(NULL);
    wb_err err = wb_queue_open(cfg, NULL, &q);
    cr_assert_eq(err, WB_OK, "open: %s", wb_queue_last_error(NULL));
    cr_assert_str_eq(wb_queue_backend(q), T->name);
}

static void teardown(void)
{
    wb_queue_close(q);
    wb_config_free(cfg);
    q = NULL;
    cfg = NULL;
}

TestSuite(queue, .init = setup, .fini = teardown, .timeout = 120);

static void send1(wb_logical_queue lq, const char *body, const char *group, char *id_out)
{
    wb_queue_entry e = {.body = body, .body_len = strlen(body), .group_id = group};
    char id[WB_QUEUE_ID_MAX + 1];
    wb_err err = wb_queue_send(q, lq, &e, id);
    cr_assert_eq(err, WB_OK, "send: %s", wb_queue_last_error(q));
    cr_assert_gt(strlen(id), 0);
    if (id_out)
        strcpy(id_out, id);
}

/* Receives up to max, waiting up to wait_s; asserts success. */
static size_t recv_n(wb_logical_queue lq, unsigned max, unsigned wait_s, int vis,
                     wb_queue_message **m)
{
    size_t n = 0;
    wb_err err = wb_queue_receive(q, lq, max, wait_s, vis, m, &n);
    cr_assert_eq(err, WB_OK, "receive: %s", wb_queue_last_error(q));
    return n;
}

Test(queue, send_receive_delete)
{
    char id[WB_QUEUE_ID_MAX + 1];
    const char *body = "{\"kind\":\"heartbeat\",\"text\":\"caf\xc3\xa9 \xf0\x9f\x9a\x80\"}";
    uint64_t before = (uint64_t)time(NULL) * 1000u;
    send1(WB_LQ_EVENTS_INBOX, body, NULL, id);
    wb_queue_message *m = NULL;
    size_t n = recv_n(WB_LQ_EVENTS_INBOX, 10, 5, 30, &m);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(m[0].id, id);
    cr_assert_eq(m[0].body_len, strlen(body));
    cr_assert_str_eq(m[0].body, body);
    cr_assert_eq(m[0].receive_count, 1);
    cr_assert_null(m[0].group_id);
    cr_assert(m[0].sent_ms + 5000 >= before && m[0].sent_ms <= before + 60000,
              "sent_ms %llu, test started %llu", (unsigned long long)m[0].sent_ms,
              (unsigned long long)before);
    /* in flight: nothing to receive, counted as such */
    wb_queue_message *none = NULL;
    cr_assert_eq(recv_n(WB_LQ_EVENTS_INBOX, 10, 0, -1, &none), 0);
    cr_assert_null(none);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_EVENTS_INBOX, &c), WB_OK);
    cr_assert_eq(c.in_flight, 1);
    cr_assert_eq(wb_queue_delete(q, WB_LQ_EVENTS_INBOX, m[0].receipt), WB_OK, "%s",
                 wb_queue_last_error(q));
    wb_queue_messages_free(m, n);
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_EVENTS_INBOX, &c), WB_OK);
    cr_assert_eq(c.in_flight + c.visible + c.delayed, 0, "%llu left",
                 (unsigned long long)(c.in_flight + c.visible));
}

Test(queue, batches_of_ten)
{
    wb_queue_entry e[10];
    char bodies[10][32];
    for (int i = 0; i < 10; i++) {
        snprintf(bodies[i], sizeof bodies[i], "batch-%d", i);
        e[i] = (wb_queue_entry){.body = bodies[i], .body_len = strlen(bodies[i])};
    }
    wb_err results[10];
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_WEBHOOKS, e, 10, results), WB_OK, "%s",
                 wb_queue_last_error(q));
    for (int i = 0; i < 10; i++)
        cr_assert_eq(results[i], WB_OK);
    bool seen[10] = {false};
    const char *receipts[10];
    wb_queue_message *arrays[10];
    size_t counts[10], batches = 0, got = 0;
    uint64_t deadline = now_ms() + 10000;
    while (got < 10 && batches < 10 && now_ms() < deadline) {
        wb_queue_message *m = NULL;
        size_t n = recv_n(WB_LQ_WEBHOOKS, 10, 2, 60, &m);
        for (size_t i = 0; i < n; i++) {
            int k = atoi((char *)m[i].body + 6);
            cr_assert(!seen[k], "batch-%d received twice", k);
            seen[k] = true;
            receipts[got++] = m[i].receipt;
        }
        arrays[batches] = m;
        counts[batches++] = n;
    }
    cr_assert_eq(got, 10, "received %zu of 10", got);
    wb_err dres[10];
    cr_assert_eq(wb_queue_delete_batch(q, WB_LQ_WEBHOOKS, receipts, 10, dres), WB_OK, "%s",
                 wb_queue_last_error(q));
    for (int i = 0; i < 10; i++)
        cr_assert_eq(dres[i], WB_OK);
    for (size_t i = 0; i < batches; i++)
        wb_queue_messages_free(arrays[i], counts[i]);
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_WEBHOOKS, 10, 0, 0, &m), 0);
}

Test(queue, visibility_expiry_makes_a_message_visible_again)
{
    send1(WB_LQ_ASYNC_JOBS, "expires", NULL, NULL);
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 5, 1, &m), 1);
    cr_assert_eq(m[0].receive_count, 1);
    wb_queue_messages_free(m, 1);
    m = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 0, 1, &m), 0, "visible while in flight");
    /* after the timeout (1 s) it comes back, counted again */
    uint64_t t0 = now_ms();
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 10, 30, &m), 1, "not visible again");
    cr_assert_eq(m[0].receive_count, 2);
    cr_assert_str_eq(m[0].body, "expires");
    cr_log_info("visible again %llu ms after the second receive began",
                (unsigned long long)(now_ms() - t0));
    wb_queue_messages_free(m, 1);
}

#define SKIP_IF_DEVIATES(field)                                                                    \
    do {                                                                                           \
        if (T->field)                                                                              \
            cr_skip_test("%s deviates from SQS: %s", T->name, T->field);                           \
    } while (0)

Test(queue, change_visibility)
{
    SKIP_IF_DEVIATES(deviates_visibility_0);
    send1(WB_LQ_ASYNC_JOBS, "vis", NULL, NULL);
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 5, 600, &m), 1);
    /* extend, then release at once */
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_ASYNC_JOBS, m[0].receipt, 900), WB_OK, "%s",
                 wb_queue_last_error(q));
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_ASYNC_JOBS, m[0].receipt, 0), WB_OK, "%s",
                 wb_queue_last_error(q));
    wb_queue_messages_free(m, 1);
    m = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 5, 600, &m), 1, "not released by visibility 0");
    cr_assert_eq(m[0].receive_count, 2);
    wb_queue_messages_free(m, 1);
}

static void redrive_case(wb_logical_queue lq, wb_logical_queue dead, const char *group)
{
    send1(lq, "poison", group, NULL);
    for (unsigned i = 1; i <= 3; i++) {
        wb_queue_message *m = NULL;
        cr_assert_eq(recv_n(lq, 1, 5, 0, &m), 1, "receive %u", i);
        cr_assert_eq(m[0].receive_count, i);
        wb_queue_messages_free(m, 1);
    }
    /* the fourth attempt moves it to the dead-letter queue */
    wb_queue_message *m = NULL;
    size_t n = recv_n(lq, 1, 1, 0, &m);
    cr_assert_eq(n, 0, "received a 4th time (receive count %u)", n ? m[0].receive_count : 0);
    n = recv_n(dead, 1, 5, 30, &m);
    cr_assert_eq(n, 1, "not in %s", wb_logical_queue_name(dead));
    cr_assert_str_eq(m[0].body, "poison");
    if (group)
        cr_assert_str_eq(m[0].group_id, group);
    wb_queue_messages_free(m, n);
}

Test(queue, redrive_after_three_receives)
{
    redrive_case(WB_LQ_ASYNC_JOBS, WB_LQ_DLQ, NULL);
}

Test(queue, fifo_redrive_to_dlq_fifo)
{
    redrive_case(WB_LQ_ASYNC_JOBS_FIFO, WB_LQ_DLQ_FIFO, "poisoned-group");
}

Test(queue, fifo_order_within_groups)
{
    /* 15 messages in each of two groups, sent interleaved in batches */
    enum { PER = 15 };
    for (int at = 0; at < 2 * PER; at += 10) {
        wb_queue_entry e[10];
        char bodies[10][32];
        size_t k = 0;
        for (int i = at; i < at + 10 && i < 2 * PER; i++, k++) {
            snprintf(bodies[k], sizeof bodies[k], "%c-%02d", i % 2 ? 'B' : 'A', i / 2);
            e[k] = (wb_queue_entry){.body = bodies[k],
                                    .body_len = strlen(bodies[k]),
                                    .group_id = i % 2 ? "group-B" : "group-A"};
        }
        cr_assert_eq(wb_queue_send_batch(q, WB_LQ_ASYNC_JOBS_FIFO, e, k, NULL), WB_OK, "%s",
                     wb_queue_last_error(q));
    }
    int next[2] = {0, 0};
    uint64_t deadline = now_ms() + 30000;
    while ((next[0] < PER || next[1] < PER) && now_ms() < deadline) {
        wb_queue_message *m = NULL;
        size_t n = recv_n(WB_LQ_ASYNC_JOBS_FIFO, 10, 1, 30, &m);
        const char *r[10];
        for (size_t i = 0; i < n; i++) {
            const char *b = m[i].body;
            int g = b[0] == 'B';
            cr_assert_str_eq(m[i].group_id, g ? "group-B" : "group-A");
            cr_assert_eq(atoi(b + 2), next[g], "group %c: got %s, expected #%d", b[0], b, next[g]);
            next[g]++;
            r[i] = m[i].receipt;
        }
        if (n)
            cr_assert_eq(wb_queue_delete_batch(q, WB_LQ_ASYNC_JOBS_FIFO, r, n, NULL), WB_OK);
        wb_queue_messages_free(m, n);
    }
    cr_assert_eq(next[0], PER);
    cr_assert_eq(next[1], PER);
}

Test(queue, fifo_group_waits_for_its_message_in_flight)
{
    SKIP_IF_DEVIATES(deviates_fifo_in_flight);
    wb_queue_entry e[2] = {{.body = "first", .body_len = 5, .group_id = "g"},
                           {.body = "second", .body_len = 6, .group_id = "g"}};
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_ASYNC_JOBS_FIFO, e, 2, NULL), WB_OK);
    wb_queue_message *m = NULL, *m2 = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS_FIFO, 1, 5, 60, &m), 1);
    cr_assert_str_eq(m[0].body, "first");
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS_FIFO, 10, 0, 60, &m2), 0,
                 "a message of group g while its predecessor is in flight");
    cr_assert_eq(wb_queue_delete(q, WB_LQ_ASYNC_JOBS_FIFO, m[0].receipt), WB_OK);
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS_FIFO, 10, 5, 60, &m2), 1);
    cr_assert_str_eq(m2[0].body, "second");
    wb_queue_messages_free(m, 1);
    wb_queue_messages_free(m2, 1);
}

Test(queue, fifo_deduplication)
{
    char a[WB_QUEUE_ID_MAX + 1], b[WB_QUEUE_ID_MAX + 1], c[WB_QUEUE_ID_MAX + 1];
    /* by content (no id given) */
    send1(WB_LQ_ASYNC_JOBS_FIFO, "same body", "g1", a);
    send1(WB_LQ_ASYNC_JOBS_FIFO, "same body", "g1", b);
    cr_assert_str_eq(a, b, "a duplicate got a new id");
    /* by explicit id, whatever the body */
    wb_queue_entry e1 = {.body = "one", .body_len = 3, .group_id = "g2", .dedup_id = "job-42"};
    wb_queue_entry e2 = {.body = "two", .body_len = 3, .group_id = "g2", .dedup_id = "job-42"};
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e1, a), WB_OK);
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e2, c), WB_OK);
    cr_assert_str_eq(a, c);
    size_t total = 0;
    bool saw_two = false;
    for (int round = 0; round < 4; round++) {
        wb_queue_message *m = NULL;
        size_t n = recv_n(WB_LQ_ASYNC_JOBS_FIFO, 10, 1, 60, &m);
        for (size_t i = 0; i < n; i++) {
            saw_two |= strcmp(m[i].body, "two") == 0;
            wb_queue_delete(q, WB_LQ_ASYNC_JOBS_FIFO, m[i].receipt);
        }
        total += n;
        wb_queue_messages_free(m, n);
    }
    cr_assert_eq(total, 2, "%zu messages for 2 distinct ones", total);
    cr_assert(!saw_two, "the duplicate's body was delivered");
}

Test(queue, delay)
{
    wb_queue_entry e = {.body = "later", .body_len = 5, .delay_s = 2};
    cr_assert_eq(wb_queue_send(q, WB_LQ_CRONJOBS, &e, NULL), WB_OK, "%s", wb_queue_last_error(q));
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_CRONJOBS, 1, 0, 30, &m), 0, "a delayed message came at once");
    uint64_t t0 = now_ms();
    cr_assert_eq(recv_n(WB_LQ_CRONJOBS, 1, 10, 30, &m), 1, "the delayed message never came");
    uint64_t waited = now_ms() - t0;
    cr_assert_str_eq(m[0].body, "later");
    cr_log_info("the delayed message came after %llu ms more", (unsigned long long)waited);
    wb_queue_messages_free(m, 1);
}

Test(queue, empty_long_poll_waits)
{
    wb_queue_message *m = NULL;
    uint64_t t0 = now_ms();
    cr_assert_eq(recv_n(WB_LQ_IOT, 10, 1, -1, &m), 0);
    cr_assert_geq(now_ms() - t0, 900, "a 1 s long poll returned after %llu ms",
                  (unsigned long long)(now_ms() - t0));
}

typedef struct waiter {
    wb_queue *q;
    uint64_t returned_at;
    size_t n;
    char body[64];
} waiter;

static void *long_poll(void *arg)
{
    waiter *w = arg;
    wb_queue_message *m = NULL;
    wb_err err = wb_queue_receive(w->q, WB_LQ_IOT, 10, 15, -1, &m, &w->n);
    w->returned_at = now_ms();
    if (!err && w->n)
        snprintf(w->body, sizeof w->body, "%s", (char *)m[0].body);
    wb_queue_messages_free(m, w->n);
    return NULL;
}

/* A long poll on an empty queue returns soon after a send made through
 * another handle (another connection), not at the end of its wait. */
Test(queue, long_poll_wakes_on_send)
{
    SKIP_IF_DEVIATES(deviates_long_poll);
    wb_queue *other = NULL;
    cr_assert_eq(wb_queue_open(cfg, NULL, &other), WB_OK);
    waiter w = {.q = q};
    pthread_t t;
    pthread_create(&t, NULL, long_poll, &w);
    sleep_ms(500);
    wb_queue_entry e = {.body = "wake up", .body_len = 7};
    /* from the start of the send: the wake-up can come before the send call
     * has returned to this thread */
    uint64_t sent = now_ms();
    cr_assert_eq(wb_queue_send(other, WB_LQ_IOT, &e, NULL), WB_OK);
    pthread_join(t, NULL);
    cr_assert_eq(w.n, 1);
    cr_assert_str_eq(w.body, "wake up");
    uint64_t lag = w.returned_at > sent ? w.returned_at - sent : 0;
    cr_log_info("the long poll returned %llu ms after the send", (unsigned long long)lag);
    cr_assert_lt(lag, 5000, "the long poll slept through the send (%llu ms)",
                 (unsigned long long)lag);
    wb_queue_close(other);
}

/* ---- concurrency --------------------------------------------------------- */

enum { PRODUCERS = 4, PER_PRODUCER = 100, CONSUMERS = 2 };

typedef struct shared {
    pthread_mutex_t lock;
    unsigned char seen[PRODUCERS * PER_PRODUCER];
    size_t unique, duplicates;
    unsigned pace_ms; /* pause between sends */
    size_t sent;
    int errors;
} shared;

static shared S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *producer(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        char body[32];
        snprintf(body, sizeof body, "m-%d", p * PER_PRODUCER + i);
        wb_queue_entry e = {.body = body, .body_len = strlen(body)};
        wb_err err = wb_queue_send(q, WB_LQ_ASYNC_JOBS, &e, NULL);
        pthread_mutex_lock(&S.lock);
        S.errors += err != WB_OK;
        S.sent += err == WB_OK;
        pthread_mutex_unlock(&S.lock);
        if (err)
            fprintf(stderr, "send: %s\n", wb_queue_last_error(q));
        if (S.pace_ms)
            sleep_ms(S.pace_ms);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    unsigned idle = 0;
    for (;;) {
        pthread_mutex_lock(&S.lock);
        bool done = S.unique == PRODUCERS * PER_PRODUCER || idle > 8;
        pthread_mutex_unlock(&S.lock);
        if (done)
            break;
        wb_queue_message *m = NULL;
        size_t n = 0;
        if (wb_queue_receive(q, WB_LQ_ASYNC_JOBS, 10, 1, 60, &m, &n) != WB_OK) {
            fprintf(stderr, "receive: %s\n", wb_queue_last_error(q));
            idle++;
            continue;
        }
        idle = n ? 0 : idle + 1;
        const char *r[10];
        pthread_mutex_lock(&S.lock);
        for (size_t i = 0; i < n; i++) {
            int k = atoi((char *)m[i].body + 2);
            if (k >= 0 && k < PRODUCERS * PER_PRODUCER) {
                if (S.seen[k]++)
                    S.duplicates++;
                else
                    S.unique++;
            }
            r[i] = m[i].receipt;
        }
        pthread_mutex_unlock(&S.lock);
        if (n && wb_queue_delete_batch(q, WB_LQ_ASYNC_JOBS, r, n, NULL) != WB_OK)
            fprintf(stderr, "delete: %s\n", wb_queue_last_error(q));
        wb_queue_messages_free(m, n);
    }
    return NULL;
}

static void run_flow(bool restart_midway)
{
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        pthread_create(&c[i], NULL, consumer, NULL);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_create(&p[i], NULL, producer, (void *)(intptr_t)i);
    if (restart_midway) {
        sleep_ms(300);
        pthread_mutex_lock(&S.lock);
        size_t sent = S.sent, received = S.unique;
        pthread_mutex_unlock(&S.lock);
        cr_assert(T->restart(), "the server did not restart");
        cr_log_info("%s restarted after %zu sends and %zu receipts of %d", T->name, sent, received,
                    PRODUCERS * PER_PRODUCER);
        cr_assert_lt(sent, PRODUCERS * PER_PRODUCER, "the flow ended before the restart");
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(p[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(c[i], NULL);
    size_t missing = 0;
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
        missing += S.seen[i] == 0;
    cr_log_info("%zu unique, %zu duplicates, %zu missing, %d send errors", S.unique, S.duplicates,
                missing, S.errors);
    cr_assert_eq(S.errors, 0, "%d sends failed", S.errors);
    cr_assert_eq(missing, 0, "%zu messages lost", missing);
}

static wb_err count_handled(void *ctx, const wb_worker_message *msg)
{
    (void)msg;
    (*(int *)ctx)++;
    return WB_OK;
}

/* wb_drain_stop() does not wait for its threads' long polls to run their
 * course (20 s here): it ends them. The one timed assertion of the suite,
 * with a bound far from both ends. */
Test(queue, drain_stop_ends_the_long_polls)
{
    int handled = 0;
    wb_drain *d = wbt_drain_long_polls(q, count_handled, &handled);
    sleep_ms(1500); /* both threads are in their long polls now */
    uint64_t t0 = now_ms();
    wb_drain_stop(d);
    uint64_t took = now_ms() - t0;
    cr_log_info("wb_drain_stop() took %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 5000, "wb_drain_stop() took %llu ms: it waited for the long polls",
                 (unsigned long long)took);
    wb_drain_free(d);
    cr_assert_eq(handled, 0);
    /* the handle still works: a long poll begun after the stop waits again */
    wb_queue_message *m = NULL;
    uint64_t t1 = now_ms();
    cr_assert_eq(recv_n(WB_LQ_IOT, 10, 1, -1, &m), 0);
    cr_assert_geq(now_ms() - t1, 900, "a 1 s long poll after the stop returned after %llu ms",
                  (unsigned long long)(now_ms() - t1));
}

Test(queue, concurrent_producers_and_consumers)
{
    run_flow(false);
}

/* A stop during an outage of the server: the receives were retrying it
 * (for up to wb_queue_opts.retry_limit_ms, 60 s), and wb_drain_stop() ends
 * their retries as it ends their long polls. Timed as the test above. */
static atomic_uint retrying;

static void count_retries(void *ctx, wb_log_level level, const char *component, const char *message)
{
    (void)ctx;
    (void)level;
    if (!strcmp(component, "queue") && strstr(message, "receive") && strstr(message, "retrying in"))
        atomic_fetch_add(&retrying, 1);
}

Test(queue, drain_stop_ends_the_retries_of_an_outage)
{
    if (!T->outage)
        cr_skip_test("%s cannot be stopped here", T->name);
    int handled = 0;
    wb_drain *d = wbt_drain_long_polls(q, count_handled, &handled);
    sleep_ms(500);
    atomic_store(&retrying, 0);
    wb_log_set_handler(count_retries, NULL);
    cr_assert(T->outage(true), "%s did not stop", T->name);
    /* a receive is retrying once it says so (a long poll ends on its timer
     * within a few seconds with the server gone) */
    uint64_t end = now_ms() + 20000;
    while (atomic_load(&retrying) == 0 && now_ms() < end)
        sleep_ms(50);
    unsigned seen = atomic_load(&retrying);
    sleep_ms(300);
    uint64_t t0 = now_ms();
    wb_drain_stop(d);
    uint64_t took = now_ms() - t0;
    wb_log_set_handler(NULL, NULL);
    bool back = T->outage(false);
    wb_drain_free(d);
    cr_assert(back, "%s did not start again", T->name);
    cr_assert_gt(seen, 0, "no receive retried the outage within 20 s");
    cr_log_info("wb_drain_stop() took %llu ms during the outage", (unsigned long long)took);
    cr_assert_lt(took, 5000, "wb_drain_stop() took %llu ms: it waited for the retries",
                 (unsigned long long)took);
    cr_assert_eq(handled, 0);
}

Test(queue, server_restart_mid_flow_loses_nothing)
{
    if (!T->restart)
        cr_skip_test("%s cannot be restarted here (a hosted service)", T->name);
    S.pace_ms = 5; /* sends keep going across the restart */
    run_flow(true);
}

/* ---- limits and errors --------------------------------------------------- */

Test(queue, limits_checked_before_sending)
{
    size_t big = WB_QUEUE_BODY_DEFAULT_MAX + 1;
    char *body = malloc(big);
    memset(body, 'x', big);
    wb_queue_entry e = {.body = body, .body_len = big};
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS, &e, NULL), WB_ERR_TOO_LARGE);
    cr_assert(strstr(wb_queue_last_error(q), "262145 bytes"), "%s", wb_queue_last_error(q));
    free(body);
    wb_queue_entry nul = {.body = "a\0b", .body_len = 3};
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS, &nul, NULL), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "byte 1"), "%s", wb_queue_last_error(q));
    wb_queue_entry nogroup = {.body = "x", .body_len = 1};
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &nogroup, NULL), WB_ERR_INVALID_ARGUMENT);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_ASYNC_JOBS, &c), WB_OK);
    cr_assert_eq(c.visible + c.in_flight + c.delayed, 0, "a refused message was sent");
}

Test(queue, a_body_of_256_kib_travels)
{
    size_t big = WB_QUEUE_BODY_DEFAULT_MAX;
    char *body = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 26);
    body[big] = '\0';
    send1(WB_LQ_EVENTS_INBOX, body, NULL, NULL);
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_EVENTS_INBOX, 1, 5, 30, &m), 1);
    cr_assert_eq(m[0].body_len, big);
    cr_assert_eq(memcmp(m[0].body, body, big), 0);
    wb_queue_messages_free(m, 1);
    free(body);
}

Test(queue, stale_receipts)
{
    send1(WB_LQ_ASYNC_JOBS, "stale", NULL, NULL);
    wb_queue_message *m = NULL;
    cr_assert_eq(recv_n(WB_LQ_ASYNC_JOBS, 1, 5, 30, &m), 1);
    cr_assert_eq(wb_queue_delete(q, WB_LQ_ASYNC_JOBS, m[0].receipt), WB_OK);
    /* deleting twice is not an error (as with SQS); changing the visibility
     * of a deleted message is */
    cr_assert_eq(wb_queue_delete(q, WB_LQ_ASYNC_JOBS, m[0].receipt), WB_OK, "%s",
                 wb_queue_last_error(q));
    wb_err err = wb_queue_change_visibility(q, WB_LQ_ASYNC_JOBS, m[0].receipt, 10);
    cr_assert_neq(err, WB_OK, "changed the visibility of a deleted message");
    cr_log_info("change visibility of a deleted message: %s", wb_queue_last_error(q));
    wb_queue_messages_free(m, 1);
}

/* ---- interoperability with the aws CLI (the Query protocol) --------------- */

static char *run_cmd(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "%s failed (%d): %s", cmd, rc, out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return out;
}

Test(queue, aws_cli_reads_what_workerbus_sends_and_back)
{
    if (!T->aws_cli)
        cr_skip_test("the aws CLI speaks only to SQS; %s is not", T->name);
    char base[1024];
    snprintf(base, sizeof base, "aws --endpoint-url '%s' --region '%s' --output text sqs",
             wbt_qenv("AWS_ENDPOINT_URL_SQS"), wbt_qenv("AWS_REGION"));
    const char *url = wbt_qenv("MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL");
    send1(WB_LQ_EVENTS_INBOX, "{\"from\":\"workerbus\"}", NULL, NULL);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s receive-message --queue-url '%s' --wait-time-seconds 5 --query "
             "'Messages[0].Body'",
             base, url);
    cr_assert_str_eq(run_cmd(cmd), "{\"from\":\"workerbus\"}");
    snprintf(cmd, sizeof cmd,
             "%s send-message --queue-url '%s' --message-body '{\"from\":\"aws-cli\"}' "
             "--query MessageId",
             base, url);
    char sent_id[128];
    snprintf(sent_id, sizeof sent_id, "%s", run_cmd(cmd));
    uint64_t deadline = now_ms() + 10000;
    bool found = false;
    while (!found && now_ms() < deadline) {
        wb_queue_message *m = NULL;
        size_t n = recv_n(WB_LQ_EVENTS_INBOX, 10, 2, 30, &m);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(m[i].id, sent_id) == 0) {
                cr_assert_str_eq(m[i].body, "{\"from\":\"aws-cli\"}");
                found = true;
            }
        }
        wb_queue_messages_free(m, n);
    }
    cr_assert(found, "the aws CLI's message %s never reached workerbus", sent_id);
}

/* ---- opening errors -------------------------------------------------------- */

Test(queue, unreachable_server_is_named_without_secrets)
{
    wb_config *bad = NULL;
    if (strcmp(T->name, "postgres") == 0) {
        const char *over[] = {"DATABASE_URL=postgres://workerbus:s3cret-pw@127.0.0.1:1/workerbus",
                              NULL};
        bad = T->config(over);
    } else {
        const char *over[] = {"MESSAGE_QUEUE_SQS_IOT_URL="
                              "http://127.0.0.1:1/000000000000/no-such-queue",
                              NULL};
        bad = T->config(over);
    }
    wb_queue *x = NULL;
    wb_err err = wb_queue_open(bad, NULL, &x);
    const char *msg = wb_queue_last_error(NULL);
    cr_log_info("%s", msg);
    cr_assert_neq(err, WB_OK);
    cr_assert_null(x);
    if (strcmp(T->name, "postgres") == 0) {
        cr_assert(strstr(msg, "DATABASE_URL"), "%s", msg);
        cr_assert_null(strstr(msg, "s3cret-pw"), "the password leaked: %s", msg);
    } else {
        cr_assert(strstr(msg, "MESSAGE_QUEUE_SQS_IOT_URL"), "%s", msg);
    }
    wb_config_free(bad);
}
