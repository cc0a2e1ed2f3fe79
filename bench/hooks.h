/* Internal functions of the library that only the benchmarks call. They
 * are declared here, not in a header of their backends, so that nothing
 * else can reach them; benchmarks that use them link the static library. */
#ifndef WB_BENCH_HOOKS_H
#define WB_BENCH_HOOKS_H

#include <stdbool.h>

/* The iotcore backend: IoT Core's per-connection rates replaced (0: IoT
 * Core's, 100 msg/s and 512 KiB/s), to measure the backend's own cost
 * against raw Paho. Set before wb_broker_open(). */
void wb__iotcore_set_rates(unsigned msgs_per_s, unsigned bytes_per_s);

/* The postgres backend: the SQL of a statement by name ("wb_send",
 * "wb_claim", ...); NULL if unknown. */
const char *wb__pg_statement(const char *name);
/* Whether the backend plans that statement at every run (PQexecParams)
 * rather than preparing it. */
bool wb__pg_statement_replanned(const char *name);

#endif
