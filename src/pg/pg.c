/* PostgreSQL helpers (pg.h): errors, connections and the schema's
 * migrations. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg.h"
#include "schema.h"
#include "wb_internal.h"

bool wb__pg_is_transient(PGconn *c, const PGresult *r)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return true;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return r == NULL;
    /* connection exceptions, shutdowns, serialization and deadlocks */
    return strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
           strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0;
}

char *wb__pg_describe(PGconn *c, const PGresult *r, const char *what)
{
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "no connection";
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return wb__asprintf("PostgreSQL, %s: %.*s%s%s%s", what, (int)n, m, state ? " (SQLSTATE " : "",
                        state ? state : "", state ? ")" : "");
}

/* The server's NOTICE lines ("relation already exists, skipping") go to
 * the debug log, not to the process's standard error. */
static void on_notice(void *arg, const char *message)
{
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n')
        n--;
    wb__log(WB_LOG_DEBUG, arg ? arg : "postgres", "PostgreSQL: %.*s", (int)n, message);
}

/* Every connection's parameters: the URL (dbname, expanded) comes last,
 * so that what it sets wins over the defaults before it. */
static const char *const connect_keys[] = {"application_name", "connect_timeout", "client_encoding",
                                           "dbname", NULL};
#define STRING_OF(x)      #x
#define DECIMAL(x)        STRING_OF(x)
#define CONNECT_TIMEOUT_S DECIMAL(WB__PG_CONNECT_TIMEOUT_S)

PGconn *wb__pg_connect(const char *url, const char *application_name, const char *component,
                       char **detail)
{
    return wb__pg_connect_stoppable(url, application_name, component, -1, NULL, NULL, detail);
}

PGconn *wb__pg_connect_stoppable(const char *url, const char *application_name,
                                 const char *component, int wake_fd, bool (*stop)(void *ctx),
                                 void *ctx, char **detail)
{
    PGconn *c = wb__pg_connect_start(url, application_name, detail);
    uint64_t deadline = wb__now_ms() + WB__PG_CONNECT_TIMEOUT_S * 1000u;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING; /* as libpq says to begin */
    while (c && st != PGRES_POLLING_OK) {
        uint64_t now = wb__now_ms();
        if (st == PGRES_POLLING_FAILED || now >= deadline) {
            *detail = st == PGRES_POLLING_FAILED
                          ? wb__pg_describe(c, NULL, "connecting")
                          : wb__asprintf("PostgreSQL, connecting: no answer within %d s",
                                         WB__PG_CONNECT_TIMEOUT_S);
            PQfinish(c);
            return NULL;
        }
        if (stop && stop(ctx)) {
            PQfinish(c);
            return NULL;
        }
        uint64_t left = deadline - now;
        int slice = stop && left > 50 ? 50 : (int)left;
        struct pollfd p[2] = {
            {.fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT},
            {.fd = wake_fd, .events = POLLIN}};
        int rc = poll(p, wake_fd >= 0 ? 2 : 1, slice);
        if (rc < 0 && errno != EINTR)
            wb__log(WB_LOG_DEBUG, component, "PostgreSQL, connecting: poll: %s", strerror(errno));
        if (rc > 0 && wake_fd >= 0 && (p[1].revents & POLLIN)) {
            uint64_t v;
            if (read(wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                wb__log(WB_LOG_DEBUG, component, "PostgreSQL, connecting: wake-up: %s",
                        strerror(errno));
        }
        if (rc > 0 && p[0].revents)
            st = PQconnectPoll(c);
    }
    if (c)
        wb__pg_connected(c, component);
    return c;
}

PGconn *wb__pg_connect_start(const char *url, const char *application_name, char **detail)
{
    const char *vals[] = {application_name, CONNECT_TIMEOUT_S, "UTF8", url, NULL};
    PGconn *c = PQconnectStartParams(connect_keys, vals, 1);
    if (!c) {
        *detail = wb__strdup("PostgreSQL: out of memory while connecting");
        return NULL;
    }
    if (PQstatus(c) == CONNECTION_BAD) {
        *detail = wb__pg_describe(c, NULL, "connecting");
        PQfinish(c);
        return NULL;
    }
    return c;
}

void wb__pg_connected(PGconn *c, const char *component)
{
    /* component is a string literal of the caller's: it outlives c */
    PQsetNoticeProcessor(c, on_notice, (void *)component);
}

PGresult *wb__pg_exec_prepared_stoppable(PGconn *c, const char *name, int n,
                                         const char *const *vals, const int *lens, const int *fmts,
                                         int binary, bool (*stop)(void *ctx), void *ctx,
                                         bool *stopped)
{
    *stopped = false;
    if (!PQsendQueryPrepared(c, name, n, vals, lens, fmts, binary))
        return PQgetResult(c); /* the failure, as PQexecPrepared() gives it */
    PGresult *first = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (stop(ctx)) {
                PQclear(first);
                *stopped = true;
                return NULL;
            }
            struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
            if (poll(&p, 1, 50) < 0 && errno != EINTR)
                wb__log(WB_LOG_DEBUG, "pg", "waiting for a result: poll: %s", strerror(errno));
            if (!PQconsumeInput(c))
                break; /* the connection failed: PQgetResult() says how */
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            return first;
        if (!first)
            first = r;
        else
            PQclear(r);
    }
}

wb_err wb__pg_exec(PGconn *c, const char *sql, const char *what, char **detail)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok)
        *detail = wb__pg_describe(c, r, what);
    PQclear(r);
    return ok ? WB_OK : WB_ERR_BACKEND;
}

int wb__pg_schema_version(void)
{
    return wb_pg_migrations[WB__ARRAY_LEN(wb_pg_migrations) - 1].version;
}

wb_err wb__pg_migrate(PGconn *c, const char *component, int *from, int *to, char **detail)
{
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)", WB_PG_MIGRATION_LOCK);
    wb_err err = wb__pg_exec(c, "BEGIN", "starting the migration", detail);
    if (!err)
        err = wb__pg_exec(c, lock, "taking the migration lock", detail);
    if (!err)
        err = wb__pg_exec(c,
                          "CREATE TABLE IF NOT EXISTS workerbus_schema (version integer PRIMARY "
                          "KEY, description text NOT NULL, applied_at timestamptz NOT NULL "
                          "DEFAULT now())",
                          "creating workerbus_schema", detail);
    int current = 0;
    if (!err) {
        PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM workerbus_schema");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            current = atoi(PQgetvalue(r, 0, 0));
        else {
            *detail = wb__pg_describe(c, r, "reading workerbus_schema");
            err = WB_ERR_BACKEND;
        }
        PQclear(r);
    }
    int known = wb__pg_schema_version();
    if (!err && current > known) {
        *detail = wb__asprintf("the database's workerbus schema is at version %d; this workerbus "
                               "knows versions up to %d: upgrade workerbus",
                               current, known);
        err = WB_ERR_STATE;
    }
    for (size_t i = 0; !err && i < WB__ARRAY_LEN(wb_pg_migrations); i++) {
        const struct wb_pg_migration *m = &wb_pg_migrations[i];
        if (m->version <= current)
            continue;
        char what[160];
        snprintf(what, sizeof what, "migration %d (%s)", m->version, m->description);
        err = wb__pg_exec(c, m->sql, what, detail);
        if (!err) {
            char vs[16];
            snprintf(vs, sizeof vs, "%d", m->version);
            const char *vals[] = {vs, m->description};
            PGresult *r = PQexecParams(c,
                                       "INSERT INTO workerbus_schema (version, description) "
                                       "VALUES ($1, $2)",
                                       2, NULL, vals, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                *detail = wb__pg_describe(c, r, what);
                err = WB_ERR_BACKEND;
            }
            PQclear(r);
            if (!err)
                wb__log(WB_LOG_INFO, component, "applied %s", what);
        }
    }
    if (err) {
        PQclear(PQexec(c, "ROLLBACK"));
        return err;
    }
    err = wb__pg_exec(c, "COMMIT", "committing the migration", detail);
    if (from)
        *from = current;
    if (to)
        *to = current > known ? current : known;
    return err;
}
