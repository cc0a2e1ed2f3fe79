/* The HTTP endpoint of `workerbus serve` (libmicrohttpd): liveness,
 * readiness and Prometheus metrics. */
#ifndef WB_CLI_HTTP_ENDPOINT_H
#define WB_CLI_HTTP_ENDPOINT_H

#include <stdatomic.h>
#include <stdint.h>

#include "workerbus/workerbus.h"

/* Handler durations, in the buckets of the histogram (seconds). */
#define WB_CLI_LATENCY_BUCKETS 11
extern const double wb_cli_latency_bounds[WB_CLI_LATENCY_BUCKETS];

typedef struct wb_cli_latency {
    atomic_uint_fast64_t bucket[WB_CLI_LATENCY_BUCKETS + 1]; /* the last one: +Inf */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
} wb_cli_latency;

/* Counts one handler run of `seconds`. */
void wb_cli_latency_add(wb_cli_latency *l, double seconds);

/* What the endpoint reports on; the pointers stay valid while it runs. */
typedef struct wb_cli_http_source {
    wb_broker *broker;
    wb_drain *drain;
    wb_queue *probe; /* a queue handle of its own, for readiness and depths */
    const wb_cli_latency *latency;
    const char *broker_type, *queue_type;
} wb_cli_http_source;

typedef struct wb_cli_http wb_cli_http;

/* Listens on host:port ("127.0.0.1:9360"; a bracketed IPv6 address works
 * too). Returns 0, or an exit code after printing why. */
int wb_cli_http_start(const char *listen, const wb_cli_http_source *src, wb_cli_http **out);
void wb_cli_http_stop(wb_cli_http *h);

#endif
