/* The eight SQS queue URLs for a configuration that must load but never
 * reaches SQS: port 1 on loopback refuses every connection. Use inside an
 * array of KEY=VALUE strings. */
#ifndef WBT_SQS_URLS_H
#define WBT_SQS_URLS_H

#define WBT_UNREACHABLE_SQS_URL(name) "http://127.0.0.1:1/000000000000/" name
#define WBT_UNREACHABLE_SQS_URLS                                                                   \
    "MESSAGE_QUEUE_SQS_ASYNC_URL=" WBT_UNREACHABLE_SQS_URL("async-jobs"),                          \
        "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL=" WBT_UNREACHABLE_SQS_URL("async-jobs.fifo"),            \
        "MESSAGE_QUEUE_SQS_CRONJOBS_URL=" WBT_UNREACHABLE_SQS_URL("cronjobs"),                     \
        "MESSAGE_QUEUE_SQS_DLQ_URL=" WBT_UNREACHABLE_SQS_URL("dlq"),                               \
        "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL=" WBT_UNREACHABLE_SQS_URL("dlq.fifo"),                     \
        "MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL=" WBT_UNREACHABLE_SQS_URL("events-inbox"),             \
        "MESSAGE_QUEUE_SQS_IOT_URL=" WBT_UNREACHABLE_SQS_URL("iot"),                               \
        "MESSAGE_QUEUE_SQS_WEBHOOKS_URL=" WBT_UNREACHABLE_SQS_URL("webhooks")

#endif
