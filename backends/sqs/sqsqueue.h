/* The SQS queue backend (not installed). */
#ifndef WB_SQSQUEUE_H
#define WB_SQSQUEUE_H

#include "queue_backend.h"

extern const wb__queue_ops wb__sqs_queue_ops;

#endif
