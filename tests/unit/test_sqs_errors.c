/* The SQS backend against an endpoint that misbehaves on purpose
 * (tests/unit/data/fake_aws.py): retries on 5xx and throttling, SQS's own
 * error code and message in the error, no retry of a refusal, every request
 * signed. The happy paths run against the SQS stand-in in the conformance
 * suite. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_aws.h"
#include "helpers.h"

static wb_config *cfg;
static wb_queue *q;

static void setup(void)
{
    unsigned port = wbt_fake_aws_start("3600");
    unsetenv("AWS_ENDPOINT_URL_SQS");
    unsetenv("AWS_ENDPOINT_URL");
    setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "fake-secret", 1);
    static const char *const vars[] = {"ASYNC",    "ASYNC_FIFO",   "CRONJOBS", "DLQ",
                                       "DLQ_FIFO", "EVENTS_INBOX", "IOT",      "WEBHOOKS"};
    static const char *const names[] = {"async-jobs", "async-jobs.fifo", "cronjobs", "dlq",
                                        "dlq.fifo",   "events-inbox",    "iot",      "webhooks"};
    static char kv[8][160];
    const char *over[10];
    for (int i = 0; i < 8; i++) {
        snprintf(kv[i], sizeof kv[i],
                 "MESSAGE_QUEUE_SQS_%s_URL=http://127.0.0.1:%u/000000000000/%s", vars[i], port,
                 names[i]);
        over[i] = kv[i];
    }
    over[8] = "AWS_REGION=us-east-1";
    over[9] = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wbt_load(wbt_base_builtin_sqs, over, &cfg, &rep);
    if (err)
        wbt_dump(rep);
    wb_config_report_free(rep);
    cr_assert_eq(err, WB_OK);
    cr_assert_eq(wb_queue_open(cfg, NULL, &q), WB_OK, "%s", wb_queue_last_error(NULL));
}

static void teardown(void)
{
    wb_queue_close(q);
    wb_config_free(cfg);
    wbt_fake_aws_stop();
}

TestSuite(sqs, .init = setup, .fini = teardown, .timeout = 60);

static wb_err send_body(const char *body)
{
    wb_queue_entry e = {.body = body, .body_len = strlen(body)};
    return wb_queue_send(q, WB_LQ_ASYNC_JOBS, &e, NULL);
}

Test(sqs, retries_5xx_and_throttling_then_succeeds)
{
    cr_assert_eq(send_body("flaky"), WB_OK, "%s", wb_queue_last_error(q));
    cr_assert_eq(wbt_fake_aws_count("SendMessageBatch"), 3, "one 503, one throttle, one success");
    cr_assert_eq(wbt_fake_aws_count("unsigned"), 0, "a request went out unsigned");
}

Test(sqs, gives_up_at_the_retry_limit_with_the_status)
{
    /* the core retries a 503 until retry_limit_ms has passed, then the
     * last failure stands with its code and SQS's words */
    wb_queue *q2 = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = 1500;
    cr_assert_eq(wb_queue_open(cfg, &o, &q2), WB_OK, "%s", wb_queue_last_error(NULL));
    wb_queue_entry e = {.body = "always-503", .body_len = 10};
    cr_assert_eq(wb_queue_send(q2, WB_LQ_ASYNC_JOBS, &e, NULL), WB_ERR_BACKEND);
    const char *m = wb_queue_last_error(q2);
    cr_log_info("%s", m);
    cr_assert(strstr(m, "HTTP 503"), "%s", m);
    cr_assert(strstr(m, "async-jobs"), "%s", m);
    /* 50 ms doubling to 2 s, jittered to at least half: 25+50+100+200+400
     * ms fit in 1.5 s, so at least 4 attempts, and no more than 12 */
    unsigned attempts = wbt_fake_aws_count("SendMessageBatch");
    cr_assert(attempts >= 4 && attempts <= 12, "%u attempts", attempts);
    wb_queue_close(q2);
}

Test(sqs, no_retry_makes_one_attempt)
{
    wb_queue *q2 = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = WB_QUEUE_NO_RETRY;
    cr_assert_eq(wb_queue_open(cfg, &o, &q2), WB_OK, "%s", wb_queue_last_error(NULL));
    wb_queue_entry e = {.body = "always-503", .body_len = 10};
    cr_assert_eq(wb_queue_send(q2, WB_LQ_ASYNC_JOBS, &e, NULL), WB_ERR_BACKEND);
    cr_assert_eq(wbt_fake_aws_count("SendMessageBatch"), 1);
    wb_queue_close(q2);
}

Test(sqs, a_refusal_is_not_retried_and_carries_sqs_code_and_message)
{
    cr_assert_eq(send_body("reject-me"), WB_ERR_INVALID_ARGUMENT);
    const char *m = wb_queue_last_error(q);
    cr_log_info("%s", m);
    cr_assert(strstr(m, "InvalidParameterValue"), "%s", m);
    cr_assert(strstr(m, "the message was refused on purpose"), "%s", m);
    cr_assert_eq(wbt_fake_aws_count("SendMessageBatch"), 1);
}

Test(sqs, counts_from_queue_attributes)
{
    wb_queue_counts c;
    cr_assert_eq(wb_queue_counts_get(q, WB_LQ_IOT, &c), WB_OK, "%s", wb_queue_last_error(q));
    cr_assert_eq(c.visible, 7);
    cr_assert_eq(c.in_flight, 2);
    cr_assert_eq(c.delayed, 1);
}

Test(sqs, retry_limit_ms_cuts_the_retries_short)
{
    /* a handle whose operations give up retrying after 1 ms: one attempt
     * and one retry at most, against a minute by default */
    wb_queue *quick = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.retry_limit_ms = 1;
    cr_assert_eq(wb_queue_open(cfg, &o, &quick), WB_OK, "%s", wb_queue_last_error(NULL));
    unsigned before = wbt_fake_aws_count("SendMessageBatch");
    wb_queue_entry e = {.body = "always-503", .body_len = 10};
    cr_assert_eq(wb_queue_send(quick, WB_LQ_ASYNC_JOBS, &e, NULL), WB_ERR_BACKEND);
    cr_assert(strstr(wb_queue_last_error(quick), "HTTP 503"), "%s", wb_queue_last_error(quick));
    unsigned attempts = wbt_fake_aws_count("SendMessageBatch") - before;
    cr_assert(attempts >= 1 && attempts <= 2, "%u attempts", attempts);
    wb_queue_close(quick);
}

Test(sqs, options_of_versions_1_and_2_are_still_accepted)
{
    wb_queue *old = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    o.version = 1;
    cr_assert_eq(wb_queue_open(cfg, &o, &old), WB_OK, "%s", wb_queue_last_error(NULL));
    wb_queue_close(old);
    o.version = 2;
    cr_assert_eq(wb_queue_open(cfg, &o, &old), WB_OK, "%s", wb_queue_last_error(NULL));
    wb_queue_close(old);
    o.version = WB_QUEUE_OPTS_VERSION;
    o.receive_linger_ms = WB_QUEUE_LINGER_MAX_MS + 1;
    cr_assert_eq(wb_queue_open(cfg, &o, &old), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(NULL), "receive_linger_ms is 1001; give 0-1000"), "%s",
              wb_queue_last_error(NULL));
    o.receive_linger_ms = 0;
    o.version = WB_QUEUE_OPTS_VERSION + 1;
    cr_assert_eq(wb_queue_open(cfg, &o, &old), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_queue_last_error(NULL), "version 1 to"), "%s", wb_queue_last_error(NULL));
}
