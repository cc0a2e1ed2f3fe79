/* Process and PostgreSQL measurements of the end-to-end benchmarks. */
#include "bench_pg.h"

#include <dirent.h>
#include <pthread.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "bench_minq.h"

double wbb_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    double kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atof(line + 6);
    if (f)
        fclose(f);
    return kib;
}

static PGconn *connect_or_die(const char *prog, wb_harness *h, const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        wbb_die_down(prog, h, "libpq", PQerrorMessage(c));
    return c;
}

/* A body of the envelope's size, as a worker's heartbeat carries. */
static const char ENVELOPE_BODY[] =
    "eyJpIjoxMjM0LCJ0IjoxNzk1MzQ2MTE5MTc1LjEyMywidGltZXN0YW1wIjoxNzk1MzQ2MTE5M"
    "Tc1LCJ3b3JrZXJfcG9vbF91bGlkIjoiMDFNODFGRjhGUUE5WjQ4WjVDMDJWQkNBMEoiLCJ3b3"
    "JrZXJfdWxpZCI6IjAxTTgxRkY4RlFHV0Y1Rlk2VkM3WUowUzFIIn0=";

/* Closes c, then waits (up to 2 s) until its backend has ended and the
 * postmaster has reaped it, so that its CPU time is in the postmaster's
 * children's (wbb_pg_cpu_ms() reads it from there from then on). */
static void finish_reaped(PGconn *c)
{
    int pid = PQbackendPID(c);
    PQfinish(c);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", pid);
    for (int i = 0; pid > 0 && i < 200 && access(path, F_OK) == 0; i++)
        usleep(10000);
}

double wbb_pg_xacts(const char *prog, wb_harness *h, const char *url)
{
    PGconn *c = connect_or_die(prog, h, url);
    PQclear(PQexec(c, "SELECT pg_stat_force_next_flush()"));
    PGresult *r = PQexec(c, "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                            " WHERE datname = current_database()");
    double x = PQresultStatus(r) == PGRES_TUPLES_OK ? atof(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return x;
}

/* The CPU time of a process (user + system, ms), and in *reaped that of its
 * children it has waited for; 0 when it is gone. */
static double proc_times(int pid, int *ppid, double *reaped)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *at = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    int pp = 0;
    if (!at || sscanf(at + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &pp,
                      &ut, &st, &cut, &cst) != 5)
        return 0;
    if (ppid)
        *ppid = pp;
    double tick = 1000.0 / (double)sysconf(_SC_CLK_TCK);
    if (reaped)
        *reaped = (double)(cut + cst) * tick;
    return (double)(ut + st) * tick;
}

double wbb_proc_cpu_ms(int pid, int *ppid)
{
    return proc_times(pid, ppid, NULL);
}

double wbb_pg_cpu_ms(const char *prog, wb_harness *h)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pg/postmaster.pid", wb_harness_services_dir(h));
    FILE *f = fopen(path, "r");
    int pm = 0;
    if (!f || fscanf(f, "%d", &pm) != 1)
        wbb_die_down(prog, h, "PostgreSQL", "cannot read its postmaster.pid");
    fclose(f);
    /* the backends that ended: their time went to the postmaster's
     * children's when it reaped them */
    double reaped = 0;
    double total = proc_times(pm, NULL, &reaped) + reaped;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        int pid = atoi(e->d_name), pp = 0;
        if (pid > 0 && pid != pm) {
            double c = wbb_proc_cpu_ms(pid, &pp);
            if (pp == pm)
                total += c;
        }
    }
    if (d)
        closedir(d);
    return total;
}

void wbb_pg_empty_queues(const char *prog, wb_harness *h, const char *url)
{
    PGconn *c = connect_or_die(prog, h, url);
    PGresult *r = PQexec(c, "DELETE FROM message_queue_messages");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        wbb_die_down(prog, h, "emptying the queues", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

double wbb_pg_raw_insert(const char *prog, wb_harness *h, const char *url, unsigned n)
{
    PGconn *c = connect_or_die(prog, h, url);
    PQclear(PQexec(c, "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, "
                      "body text NOT NULL, sent_at timestamptz NOT NULL DEFAULT now())"));
    PGresult *r = PQprepare(c, "ins", "INSERT INTO bench_raw (body) VALUES ($1)", 1, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        wbb_die_down(prog, h, "prepare", PQerrorMessage(c));
    PQclear(r);
    const char *body = ENVELOPE_BODY;
    double t0 = wbb_now_ms();
    for (unsigned i = 0; i < n; i++) {
        r = PQexecPrepared(c, "ins", 1, &body, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            wbb_die_down(prog, h, "insert", PQerrorMessage(c));
        PQclear(r);
    }
    double rate = n / ((wbb_now_ms() - t0) / 1000.0);
    PQclear(PQexec(c, "DROP TABLE bench_raw"));
    finish_reaped(c);
    return rate;
}

/* The minimal queue's consumer: claims until every message is deleted. */
typedef struct minq_run {
    const char *prog, *url;
    wb_harness *h;
    unsigned long total, poll_ms;
    unsigned long got; /* claimed so far */
    double *lat;       /* ms from the INSERT's start to the claim */
} minq_run;

/* A claimed body: its latency from the send time it starts with. */
static void minq_seen(const char *body, void *ctx)
{
    minq_run *m = ctx;
    if (m->got < m->total)
        m->lat[m->got++] = wbb_now_ms() - atof(body);
}

static void *minq_consume(void *arg)
{
    minq_run *m = arg;
    PGconn *c = connect_or_die(m->prog, m->h, m->url);
    const char *err = wbb_minq_prepare(c);
    if (err)
        wbb_die_down(m->prog, m->h, "minimal queue: prepare", err);
    const unsigned batch = 100;
    while (m->got < m->total) {
        int rows = wbb_minq_claim_delete(c, "steady", batch, minq_seen, m, &err);
        if (rows < 0)
            wbb_die_down(m->prog, m->h, "minimal queue: claim and delete", err);
        if ((unsigned)rows < batch)
            usleep((useconds_t)(m->poll_ms * 1000));
    }
    finish_reaped(c); /* its CPU counted when the caller reads it */
    return NULL;
}

void wbb_pg_minimal_queue(const char *prog, wb_harness *h, const char *url, unsigned rate,
                          unsigned secs, unsigned poll_ms, wbb_minq_fig *f)
{
    PGconn *c = connect_or_die(prog, h, url);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PGresult *r = PQexec(c, WBB_MINQ_TABLE);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        wbb_die_down(prog, h, "minimal queue: table", PQerrorMessage(c));
    PQclear(r);
    const char *err = wbb_minq_prepare(c);
    if (err)
        wbb_die_down(prog, h, "minimal queue: prepare", err);
    minq_run m = {prog, url, h, (unsigned long)rate * secs, poll_ms, 0, NULL};
    m.lat = calloc(m.total, sizeof *m.lat);
    if (!m.lat)
        wbb_die_down(prog, h, "minimal queue", "out of memory");
    double x0 = wbb_pg_xacts(prog, h, url), c0 = wbb_pg_cpu_ms(prog, h);
    pthread_t t;
    if (pthread_create(&t, NULL, minq_consume, &m))
        wbb_die_down(prog, h, "minimal queue", "cannot start its consumer");
    /* the sends on a fixed schedule, as the workers' heartbeats come */
    double start = wbb_now_ms();
    for (unsigned long i = 0; i < m.total; i++) {
        double due = start + (double)i * 1000.0 / rate, now = wbb_now_ms();
        if (due > now)
            usleep((useconds_t)((due - now) * 1000));
        /* the body: the send time, then an envelope's worth of text */
        char body[256];
        snprintf(body, sizeof body, "%.3f %s", wbb_now_ms(), ENVELOPE_BODY);
        const char *vals[] = {"steady", body};
        r = PQexecPrepared(c, "min_send1", 2, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            wbb_die_down(prog, h, "minimal queue: send", PQerrorMessage(c));
        PQclear(r);
    }
    pthread_join(t, NULL);
    f->pg_us = (wbb_pg_cpu_ms(prog, h) - c0) * 1e3 / (double)m.total;
    /* a backend reports its counts when it ends at the latest (one more
     * transaction: the DROP) */
    PQclear(PQexec(c, "DROP TABLE bench_minq"));
    PQfinish(c);
    sleep(2); /* the other backends' statistics reach the database */
    f->xact = (wbb_pg_xacts(prog, h, url) - x0) / (double)m.total;
    qsort(m.lat, m.total, sizeof *m.lat, wbb_cmp_double);
    f->lat50 = m.lat[m.total / 2];
    f->lat99 = m.lat[(size_t)((double)(m.total - 1) * 0.99)];
    f->lat999 = m.lat[(size_t)((double)(m.total - 1) * 0.999)];
    free(m.lat);
}
