/* The message-queue core with a fake backend: SQS's limits are enforced
 * before a backend sees anything, FIFO entries get a deduplication id, the
 * core alone retries what a backend marks retryable, and a backend that is
 * not built in says so. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "queue_backend.h"
#include "wb_internal.h"

static struct {
    int send_calls, entries, receive_calls, delete_calls, vis_calls, counts_calls;
    int fail_left;   /* counts fails this many more times... */
    wb_err fail_err; /* ...with this (wb__retryable() or not) */
    char last_dedup[129];
    char last_group[129];
} calls;

static wb_err f_open(void *p, const wb_config *c, const wb_queue_opts *o, char **d)
{
    (void)p, (void)c, (void)o, (void)d;
    return WB_OK;
}
static wb_err f_send(void *p, wb_logical_queue lq, const wb_queue_entry *e, size_t n,
                     char (*ids)[WB_QUEUE_ID_MAX + 1], wb_err *results, char **d)
{
    (void)p, (void)lq, (void)d;
    calls.send_calls++;
    calls.entries += (int)n;
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], WB_QUEUE_ID_MAX + 1, "id-%d", calls.entries);
        results[i] = WB_OK;
        snprintf(calls.last_dedup, sizeof calls.last_dedup, "%s",
                 e[i].dedup_id ? e[i].dedup_id : "");
        snprintf(calls.last_group, sizeof calls.last_group, "%s",
                 e[i].group_id ? e[i].group_id : "");
    }
    return WB_OK;
}
static wb_err f_receive(void *p, wb_logical_queue lq, unsigned max, unsigned w, int v,
                        wb_queue_message **out, size_t *n, char **d)
{
    (void)p, (void)lq, (void)max, (void)w, (void)v, (void)d;
    calls.receive_calls++;
    *out = calloc(1, sizeof **out);
    (*out)->id = strdup("m1");
    (*out)->receipt = strdup("r1");
    (*out)->body = strdup("hello");
    (*out)->body_len = 5;
    *n = 1;
    return WB_OK;
}
static wb_err f_delete(void *p, wb_logical_queue lq, const char *const *r, size_t n,
                       wb_err *results, char **d)
{
    (void)p, (void)lq, (void)r, (void)d;
    calls.delete_calls++;
    for (size_t i = 0; i < n; i++)
        results[i] = WB_OK;
    return WB_OK;
}
static wb_err f_vis(void *p, wb_logical_queue lq, const char *r, unsigned v, char **d)
{
    (void)p, (void)lq, (void)r, (void)v, (void)d;
    calls.vis_calls++;
    return WB_OK;
}
static wb_err f_counts(void *p, wb_logical_queue lq, wb_queue_counts *o, char **d)
{
    (void)p, (void)lq;
    calls.counts_calls++;
    if (calls.fail_left != 0) {
        if (calls.fail_left > 0)
            calls.fail_left--;
        *d = strdup("the fake is down");
        return calls.fail_err;
    }
    o->visible = 7;
    return WB_OK;
}
static void f_close(void *p)
{
    (void)p;
}

static const wb__queue_ops fake = {
    .version = WB__QUEUE_OPS_VERSION,
    .name = "fake",
    .priv_size = 16,
    .open = f_open,
    .send_batch = f_send,
    .receive = f_receive,
    .delete_batch = f_delete,
    .change_visibility = f_vis,
    .counts = f_counts,
    .close = f_close,
};

static wb_config *cfg;
static wb_queue *q;

static void setup(void)
{
    memset(&calls, 0, sizeof calls);
    cr_assert_eq(wb__queue_set_backend(WB_QUEUE_POSTGRES, &fake), WB_OK);
    cr_assert_eq(wbt_load(wbt_base_builtin, NULL, &cfg, NULL), WB_OK);
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK, "%s", wb_queue_last_error(NULL));
}

static void teardown(void)
{
    wb_queue_close(q);
    wb__queue_set_backend(WB_QUEUE_POSTGRES, NULL);
    wb_config_free(cfg);
}

TestSuite(queue, .init = setup, .fini = teardown);

static wb_queue_entry text(const char *s)
{
    return (wb_queue_entry){s, strlen(s), 0, NULL, NULL};
}

Test(queue, a_valid_message_reaches_the_backend)
{
    char id[WB_QUEUE_ID_MAX + 1] = "";
    wb_queue_entry e = text("{\"a\":1}");
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, id), WB_OK);
    cr_assert_str_eq(id, "id-1");
    cr_assert_str_eq(wb_queue_backend(q), "fake");
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 10, 20, -1, &m, &n), WB_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(m[0].body, "hello");
    wb_queue_messages_free(m, n);
    cr_assert_eq(wb_queue_delete(q, WB_LQ_IOT, "r1"), WB_OK);
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_IOT, "r1", 43200), WB_OK);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &c), WB_OK);
    cr_assert_eq(c.visible, 7);
}

Test(queue, body_limits)
{
    wb_queue_entry e = text("");
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "empty"));
    char *big = malloc(WB_QUEUE_BODY_DEFAULT_MAX + 1);
    memset(big, 'a', WB_QUEUE_BODY_DEFAULT_MAX + 1);
    e = (wb_queue_entry){big, WB_QUEUE_BODY_DEFAULT_MAX, 0, NULL, NULL};
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_OK, "256 KiB exactly is accepted");
    e.body_len++;
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_ERR_TOO_LARGE);
    cr_assert(strstr(wb_queue_last_error(q), "262145 bytes"), "%s", wb_queue_last_error(q));
    free(big);
    const char *bad[] = {"a\x01z", "nul\0x", "\xff", "\xef\xbf\xbe" /* U+FFFE */,
                         "\xed\xa0\x80" /* a surrogate */};
    size_t lens[] = {3, 5, 1, 3, 3};
    for (size_t i = 0; i < 5; i++) {
        e = (wb_queue_entry){bad[i], lens[i], 0, NULL, NULL};
        cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_ERR_INVALID_ARGUMENT, "case %zu", i);
        cr_assert(strstr(wb_queue_last_error(q), "not a character SQS accepts"), "%s",
                  wb_queue_last_error(q));
    }
    const char *good = "tab\t nl\n cr\r \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    e = text(good);
    cr_assert_eq(wb_queue_send(q, WB_LQ_IOT, &e, NULL), WB_OK, "%s", wb_queue_last_error(q));
    cr_assert_eq(calls.send_calls, 2, "only the valid messages reached the backend");
}

Test(queue, batches)
{
    wb_queue_entry es[11];
    for (int i = 0; i < 11; i++)
        es[i] = text("x");
    wb_err r[10];
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_WEBHOOKS, es, 10, r), WB_OK);
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_WEBHOOKS, es, 11, r), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_WEBHOOKS, es, 0, r), WB_ERR_INVALID_ARGUMENT);
    char *big = malloc(200 * 1024);
    memset(big, 'b', 200 * 1024);
    wb_queue_entry two[2] = {{big, 200 * 1024, 0, NULL, NULL}, {big, 100 * 1024, 0, NULL, NULL}};
    cr_assert_eq(wb_queue_send_batch(q, WB_LQ_WEBHOOKS, two, 2, r), WB_ERR_TOO_LARGE);
    cr_assert(strstr(wb_queue_last_error(q), "add up to"), "%s", wb_queue_last_error(q));
    free(big);
    const char *receipts[11] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
    cr_assert_eq(wb_queue_delete_batch(q, WB_LQ_WEBHOOKS, receipts, 11, r),
                 WB_ERR_INVALID_ARGUMENT);
    const char *empty[2] = {"a", ""};
    cr_assert_eq(wb_queue_delete_batch(q, WB_LQ_WEBHOOKS, empty, 2, r), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(calls.entries, 10);
    cr_assert_eq(calls.delete_calls, 0);
}

Test(queue, fifo_rules_and_content_deduplication)
{
    wb_queue_entry e = text("abc");
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e, NULL), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "group id is required"));
    e.group_id = "stack-1";
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e, NULL), WB_OK);
    cr_assert_str_eq(calls.last_group, "stack-1");
    /* SHA-256("abc"), the FIPS 180-2 example */
    cr_assert_str_eq(calls.last_dedup,
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    e.dedup_id = "mine";
    cr_assert_eq(wb_queue_send(q, WB_LQ_DLQ_FIFO, &e, NULL), WB_OK);
    cr_assert_str_eq(calls.last_dedup, "mine");
    e.delay_s = 5;
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e, NULL), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "no per-message delay"));
    e.delay_s = 0;
    e.group_id = "has space";
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e, NULL), WB_ERR_INVALID_ARGUMENT);
    char longid[130];
    memset(longid, 'g', 129);
    longid[129] = '\0';
    e.group_id = longid;
    cr_assert_eq(wb_queue_send(q, WB_LQ_ASYNC_JOBS_FIFO, &e, NULL), WB_ERR_INVALID_ARGUMENT);
    /* standard queues take neither id, and delays up to 900 s */
    wb_queue_entry s = text("x");
    s.group_id = "g";
    cr_assert_eq(wb_queue_send(q, WB_LQ_CRONJOBS, &s, NULL), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "standard queue"));
    s.group_id = NULL;
    s.delay_s = 900;
    cr_assert_eq(wb_queue_send(q, WB_LQ_CRONJOBS, &s, NULL), WB_OK);
    s.delay_s = 901;
    cr_assert_eq(wb_queue_send(q, WB_LQ_CRONJOBS, &s, NULL), WB_ERR_INVALID_ARGUMENT);
}

Test(queue, receive_and_visibility_limits)
{
    wb_queue_message *m = NULL;
    size_t n = 0;
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 0, 0, -1, &m, &n), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 11, 0, -1, &m, &n), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 1, 21, -1, &m, &n), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(q), "0-20 s"));
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 1, 0, 43201, &m, &n), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_receive(q, WB_LQ_IOT, 1, 0, -2, &m, &n), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_receive(q, (wb_logical_queue)99, 1, 0, -1, &m, &n),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_IOT, "r", 43201), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_queue_change_visibility(q, WB_LQ_IOT, "", 1), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(calls.receive_calls, 0);
    cr_assert_eq(calls.vis_calls, 0);
}

Test(queue, options_and_tables)
{
    wb_queue *other = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.max_body_bytes = 2u * 1024 * 1024;
    cr_assert_eq(wb_queue_open(cfg, &o, &other), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(NULL), "1 MiB"));
    wb__queue_ops bad = fake;
    bad.counts = NULL;
    char *d = NULL;
    cr_assert_eq(wb__queue_ops_check(&bad, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "counts"), "%s", d);
    free(d);
    cr_assert_eq(wb__queue_set_backend(WB_QUEUE_SQS, &bad), WB_ERR_INVALID_ARGUMENT);
}

/* ---- the one retry loop --------------------------------------------------- */

static wb_queue *open_with_limit(unsigned limit_ms)
{
    wb_queue *h = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = limit_ms;
    cr_assert_eq(wb_queue_open(cfg, &o, &h), WB_OK, "%s", wb_queue_last_error(NULL));
    return h;
}

/* The log lines of a test, kept to be read back. */
static char logged[8192];
static void keep_log(void *ctx, wb_log_level level, const char *component, const char *message)
{
    (void)ctx, (void)level;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s: %s\n", component, message);
}

Test(queue, a_retryable_failure_is_retried_by_the_core)
{
    logged[0] = '\0';
    wb_log_set_handler(keep_log, NULL);
    calls.fail_left = 3;
    calls.fail_err = wb__retryable(WB_ERR_CONNECTION_LOST);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &c), WB_OK, "%s", wb_queue_last_error(q));
    cr_assert_eq(c.visible, 7);
    cr_assert_eq(calls.counts_calls, 4, "%d attempts", calls.counts_calls);
    /* the outage is logged when it starts and when it ends, with how long */
    wb_log_set_handler(NULL, NULL);
    cr_assert(strstr(logged, "queue: fake counts on iot: the fake is down; retrying in"), "%s",
              logged);
    cr_assert(strstr(logged, "queue: fake counts on iot: recovered after "), "%s", logged);
    cr_assert(strstr(logged, " ms and 3 retries"), "%s", logged);
}

Test(queue, a_failure_not_marked_retryable_is_not_retried)
{
    calls.fail_left = 1;
    calls.fail_err = WB_ERR_AUTH_REFUSED;
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &c), WB_ERR_AUTH_REFUSED);
    cr_assert_eq(calls.counts_calls, 1);
    cr_assert(strstr(wb_queue_last_error(q), "the fake is down"), "%s", wb_queue_last_error(q));
}

Test(queue, retries_end_at_the_limit_with_the_plain_code)
{
    wb_queue *h = open_with_limit(300);
    calls.fail_left = -1; /* for ever */
    calls.fail_err = wb__retryable(WB_ERR_CONNECTION_LOST);
    wb_queue_counts c;
    wb_err err = wb_queue_counts_get(h, WB_LQ_IOT, &c);
    /* the caller never sees the mark */
    cr_assert_eq(err, WB_ERR_CONNECTION_LOST, "%d", (int)err);
    /* 25 ms at least, doubling: at least 3 attempts fit in 300 ms */
    cr_assert(calls.counts_calls >= 3 && calls.counts_calls <= 12, "%d attempts",
              calls.counts_calls);
    wb_queue_close(h);
}

Test(queue, no_retry_is_one_attempt)
{
    wb_queue *h = open_with_limit(WB_QUEUE_NO_RETRY);
    calls.fail_left = -1;
    calls.fail_err = wb__retryable(WB_ERR_BUSY);
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(h, WB_LQ_IOT, &c), WB_ERR_BUSY);
    cr_assert_eq(calls.counts_calls, 1);
    wb_queue_close(h);
}
