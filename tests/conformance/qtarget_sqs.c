/* The queue conformance suite's SQS target: the SQS stand-in (local-aws-sqs
 * through tools/sqs-standin.mjs) started by scripts/services with the eight
 * queues and their redrive policies. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"
#include "queue_target.h"

static const char *const url_vars[] = {
    "MESSAGE_QUEUE_SQS_ASYNC_URL",    "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL",
    "MESSAGE_QUEUE_SQS_CRONJOBS_URL", "MESSAGE_QUEUE_SQS_DLQ_URL",
    "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL", "MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL",
    "MESSAGE_QUEUE_SQS_IOT_URL",      "MESSAGE_QUEUE_SQS_WEBHOOKS_URL",
};

static wb_config *sqs_config(const char *const *over)
{
    static char kv[8][512], region[64];
    const char *all[24];
    size_t n = 0;
    for (size_t i = 0; i < 8; i++) {
        snprintf(kv[i], sizeof kv[i], "%s=%s", url_vars[i], wbt_qenv(url_vars[i]));
        all[n++] = kv[i];
    }
    snprintf(region, sizeof region, "AWS_REGION=%s", wbt_qenv("AWS_REGION"));
    all[n++] = region;
    for (size_t i = 0; over && over[i] && n < 23; i++)
        all[n++] = over[i];
    all[n] = NULL;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wbt_load(wbt_base_builtin_sqs, all, &cfg, &rep);
    if (err)
        wbt_dump(rep);
    wb_config_report_free(rep);
    cr_assert_eq(err, WB_OK, "the sqs configuration does not load");
    return cfg;
}

/* A fresh stand-in on the same port: SQS allows one PurgeQueue a minute per
 * queue, and the stand-in enforces it. */
static void sqs_purge(void)
{
    cr_assert(wbt_services("restart", "sqs"), "the SQS stand-in did not restart");
}

static bool sqs_outage(bool down)
{
    return wbt_services(down ? "suspend" : "resume", "sqs");
}

const wbt_qtarget wbt_qtarget_impl = {
    .name = "sqs",
    .config = sqs_config,
    .purge = sqs_purge,
    .restart = NULL,
    .outage = sqs_outage,
    .aws_cli = true,
    .deviates_long_poll = "local-aws-sqs holds a long poll until MaxNumberOfMessages messages "
                          "are there or the wait ends; SQS returns as soon as one is",
    .deviates_fifo_in_flight = "local-aws-sqs delivers the next message of a FIFO group while "
                               "an earlier one is in flight",
    .deviates_visibility_0 = "local-aws-sqs does not release a message whose visibility was "
                             "extended and then set to 0",
};
