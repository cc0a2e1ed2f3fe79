/* The queue conformance suite's PostgreSQL target: a throwaway PostgreSQL 15
 * cluster made by scripts/services (initdb as postgres, a free loopback
 * port, fsync and synchronous_commit on). */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"
#include "queue_target.h"

static wb_config *pg_config(const char *const *over)
{
    static char url[512];
    snprintf(url, sizeof url, "DATABASE_URL=%s", wbt_qenv("DATABASE_URL"));
    const char *all[16] = {url, "MESSAGE_QUEUE_TYPE=postgres"};
    size_t n = 2;
    for (size_t i = 0; over && over[i] && n < 15; i++)
        all[n++] = over[i];
    all[n] = NULL;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wbt_load(wbt_base_builtin, all, &cfg, &rep);
    if (err)
        wbt_dump(rep);
    wb_config_report_free(rep);
    cr_assert_eq(err, WB_OK, "the postgres configuration does not load");
    return cfg;
}

static void pg_purge(void)
{
    PGconn *c = PQconnectdb(wbt_qenv("DATABASE_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    /* The tables exist once any queue was opened; open one first. */
    PGresult *r = PQexec(c, "DO $$ BEGIN IF to_regclass('message_queue_messages') IS NOT NULL "
                            "THEN TRUNCATE message_queue_messages, "
                            "message_queue_deduplications; END IF; END $$");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static bool pg_restart(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/scripts/services' restart postgres --dir '%s' 2>/dev/null",
             wbt_qenv("WB_SOURCE_ROOT"), wbt_qenv("WBT_SERVICES_DIR"));
    return system(cmd) == 0;
}

const wbt_qtarget wbt_qtarget_impl = {
    .name = "postgres",
    .config = pg_config,
    .purge = pg_purge,
    .restart = pg_restart,
    .aws_cli = false,
};
