/* What the benchmarks share: a temporary PKI, a built-in configuration,
 * medians. */
#ifndef WB_BENCH_COMMON_H
#define WB_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "workerbus/workerbus.h"

typedef struct wbb_env {
    char dir[64];  /* the temporary directory (0711) */
    char pki[128]; /* dir/pki: CA, broker (for 127.0.0.1) and server credentials */
    char run[128]; /* dir/run: the bundled broker's runtime directory */
} wbb_env;

/* Makes the directory and the PKI; exits with a message on failure. */
void wbb_env_make(wbb_env *e, const char *name);
/* The same with the broker certificate issued for these host names. */
void wbb_env_make_hosts(wbb_env *e, const char *name, const char *const *hosts);
/* A builtin configuration on that PKI: endpoint and DATABASE_URL given;
 * db_url NULL: no database (SQS named, never reached), one replica. */
wb_config *wbb_config(const wbb_env *e, const char *endpoint, const char *db_url);
/* Removes the directory. */
void wbb_env_remove(const wbb_env *e);
void wbb_die(const char *prog, const char *what, const char *why);
/* A worker of the harness's pool with a fresh ULID, connected to endpoint
 * (its pool certificate, the harness's CA); exits with a message on
 * failure. */
wb_worker *wbb_harness_worker(const char *prog, const wb_harness *h, const char *endpoint,
                              bool clean_session);
/* The wall clock in ms (timestamps in payloads, read on other threads). */
double wbb_now_ms(void);
/* "prog: what: why" on stderr, the harness taken down when h is not NULL,
 * then exit 1. */
void wbb_die_down(const char *prog, wb_harness *h, const char *what, const char *why);
/* The harness with its defaults (PostgreSQL, the builtin broker, the IoT
 * Core and SQS stand-ins), services started by services_script, the
 * library's log at errors only; exits with a message on failure. */
wb_harness *wbb_harness_start(const char *prog, const char *services_script);
/* qsort comparison of doubles, ascending. */
int wbb_cmp_double(const void *a, const void *b);
/* The median of v[0..n) (n > 0; the mean of the middle two when n is
 * even); sorts v. */
double wbb_median(double *v, size_t n);

#endif
