/* Shared between config.c and config_report.c. */
#ifndef WB_CONFIG_INTERNAL_H
#define WB_CONFIG_INTERNAL_H

#include "wb_internal.h"

/* The known variables, in documentation order. The SQS URLs follow the order
 * of wb_logical_queue. */
enum wb__var {
    WB__V_BROKER_TYPE,
    WB__V_ENDPOINT,
    WB__V_LOG_LEVEL,
    WB__V_NAMESPACE,
    WB__V_QUEUE_TYPE,
    WB__V_DATABASE_URL,
    WB__V_SQS_FIRST,
    WB__V_SQS_LAST = WB__V_SQS_FIRST + WB_LQ__COUNT - 1,
    WB__V_AWS_REGION,
    WB__V_AWS_DEFAULT_REGION,
    WB__V_COUNT
};

typedef struct wb__issue_list {
    wb_config_issue *items;
    size_t count, cap;
} wb__issue_list;

struct wb_config_report {
    char *source;
    wb__issue_list issues[2]; /* by wb_severity */
    wb_config_setting settings[WB__V_COUNT];
};

const char *wb__var_name(enum wb__var v);

#endif
