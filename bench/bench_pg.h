/* What the end-to-end benchmarks measure of the processes and of the
 * harness's PostgreSQL: CPU time, resident memory, transactions, and a
 * plain single-row INSERT to hold workerbus's cost against. Failures end
 * the benchmark (wbb_die_down: the harness taken down). */
#ifndef WB_BENCH_PG_H
#define WB_BENCH_PG_H

#include "workerbus/workerbus.h"

/* CPU time (user + system) of a process so far, ms; 0 when it is gone.
 * ppid (may be NULL) gets its parent's pid. */
double wbb_proc_cpu_ms(int pid, int *ppid);
/* Resident memory (VmRSS) of a process, KiB; 0 when unknown. */
double wbb_rss_kib(int pid);
/* The CPU time of the harness's PostgreSQL, ms: its postmaster, every
 * process of it alive now (backends, background workers) and those that
 * ended (the postmaster's reaped children). */
double wbb_pg_cpu_ms(const char *prog, wb_harness *h);
/* Transactions committed and rolled back in the database of url so far,
 * after this backend's statistics are flushed (others flush within 1 s). */
double wbb_pg_xacts(const char *prog, wb_harness *h, const char *url);
/* n single-row INSERTs of an envelope-sized body through libpq on one
 * connection, each its own commit, into a table made and dropped for it;
 * returns the rate (rows a second). */
double wbb_pg_raw_insert(const char *prog, wb_harness *h, const char *url, unsigned n);
/* The minimal SKIP LOCKED queue (bench_minq.h) under a steady load, in a
 * table made and dropped for it: one connection sends rate single-row
 * INSERTs a second for secs seconds on a fixed schedule, each its own
 * commit, as the topic rule does; one consumer connection claims up to 100
 * messages and deletes them, and sleeps poll_ms after a claim that found
 * fewer. */
typedef struct wbb_minq_fig {
    double pg_us;                /* PostgreSQL's CPU per message, µs */
    double xact;                 /* transactions per message */
    double lat50, lat99, lat999; /* from the INSERT's start to the claim, ms */
} wbb_minq_fig;
void wbb_pg_minimal_queue(const char *prog, wb_harness *h, const char *url, unsigned rate,
                          unsigned secs, unsigned poll_ms, wbb_minq_fig *f);
/* Removes every queued message (after runs with no consumer). */
void wbb_pg_empty_queues(const char *prog, wb_harness *h, const char *url);

#endif
