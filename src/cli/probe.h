/* workerbus check --probe: the database's round trip and commit latency. */
#ifndef WB_CLI_PROBE_H
#define WB_CLI_PROBE_H

#include <stdbool.h>

typedef struct wb_cli_probe_figures {
    double p50_ms, p99_ms, max_ms;
} wb_cli_probe_figures;

typedef struct wb_cli_probe {
    unsigned runs;
    char server_version[32], synchronous_commit[16], fsync[8];
    wb_cli_probe_figures round_trip; /* SELECT 1 */
    wb_cli_probe_figures commit;     /* a transaction that writes WAL, to its flush */
    char why[512];                   /* why the probe failed */
} wb_cli_probe;

/* Connects to URL and times RUNS round trips, then RUNS commits that wait
 * for the WAL flush. false with out->why on failure. */
bool wb_cli_probe_database(const char *url, unsigned runs, wb_cli_probe *out);

#endif
