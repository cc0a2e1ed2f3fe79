/* workerbus check --probe: what the database's commits cost, and the rate of
 * worker messages that allows.
 *
 * A commit is measured with a transactional logical message
 * (pg_logical_emit_message(true, ...)): it writes WAL and takes a
 * transaction id, so its COMMIT waits for the WAL flush exactly as an
 * INSERT's does, without a table to write to and without touching the
 * queue (a running server's drain would take a probe message). Any role may
 * call it. A bare SELECT measures the round trip, so that the flush shows
 * apart from the network. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "probe.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(double *v, unsigned n, wb_cli_probe_figures *out)
{
    qsort(v, n, sizeof *v, cmp_double);
    out->p50_ms = v[(n - 1) / 2];
    out->p99_ms = v[(unsigned)((double)(n - 1) * 0.99)];
    out->max_ms = v[n - 1];
}

/* Runs SQL n times, one round trip each; the durations in ms in v. */
static bool time_runs(PGconn *c, const char *sql, unsigned n, double *v, char *why, size_t cap)
{
    for (unsigned i = 0; i < n; i++) {
        double t0 = now_ms();
        PGresult *r = PQexec(c, sql);
        v[i] = now_ms() - t0;
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok) {
            const char *m = PQresultErrorMessage(r);
            snprintf(why, cap, "%s: %.*s", sql, (int)strcspn(m, "\n"), m);
        }
        PQclear(r);
        if (!ok)
            return false;
    }
    return true;
}

static void setting(PGconn *c, const char *name, char *out, size_t cap)
{
    const char *vals[] = {name};
    PGresult *r = PQexecParams(c, "SELECT current_setting($1)", 1, NULL, vals, NULL, NULL, 0);
    snprintf(out, cap, "%s", PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "?");
    PQclear(r);
}

bool wb_cli_probe_database(const char *url, unsigned runs, wb_cli_probe *out)
{
    memset(out, 0, sizeof *out);
    out->runs = runs;
    const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *vals[] = {"workerbus-check", "10", url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        /* libpq's message names the host and port, never the password */
        snprintf(out->why, sizeof out->why, "cannot connect: %.*s", (int)strcspn(m, "\n"), m);
        PQfinish(c);
        return false;
    }
    setting(c, "server_version", out->server_version, sizeof out->server_version);
    setting(c, "synchronous_commit", out->synchronous_commit, sizeof out->synchronous_commit);
    setting(c, "fsync", out->fsync, sizeof out->fsync);
    double *v = calloc(runs, sizeof *v);
    bool ok = v != NULL;
    if (!ok)
        snprintf(out->why, sizeof out->why, "out of memory");
    /* a few runs first: the connection's first statements cost more */
    ok = ok && time_runs(c, "SELECT 1", 5, v, out->why, sizeof out->why) &&
         time_runs(c, "SELECT 1", runs, v, out->why, sizeof out->why);
    if (ok)
        summarize(v, runs, &out->round_trip);
    ok = ok && time_runs(c, "SELECT pg_logical_emit_message(true, 'workerbus-check', '')", runs, v,
                         out->why, sizeof out->why);
    if (ok)
        summarize(v, runs, &out->commit);
    free(v);
    PQfinish(c);
    return ok;
}
