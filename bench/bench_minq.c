/* The minimal SKIP LOCKED queue of the benchmarks. */
#include "bench_minq.h"

#include <stdio.h>

const char WBB_MINQ_TABLE[] =
    "CREATE TABLE IF NOT EXISTS bench_minq (id bigserial PRIMARY KEY, queue text NOT NULL,"
    " body text NOT NULL, visible_at timestamptz NOT NULL DEFAULT now(),"
    " receive_count integer NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS bench_minq_ready ON bench_minq (queue, visible_at, id)";

static const struct {
    const char *name, *sql;
} statements[] = {
    {"min_send", "INSERT INTO bench_minq (queue, body) SELECT $1, unnest($2::text[])"},
    {"min_send1", "INSERT INTO bench_minq (queue, body) VALUES ($1, $2)"},
    {"min_claim", "UPDATE bench_minq SET visible_at = now() + $3 * interval '1 second',"
                  " receive_count = receive_count + 1 WHERE id IN (SELECT id FROM bench_minq"
                  " WHERE queue = $1 AND visible_at <= now() ORDER BY visible_at, id"
                  " LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, body"},
    {"min_delete", "DELETE FROM bench_minq WHERE id = ANY ($1::bigint[])"},
};

const char *wbb_minq_prepare(PGconn *c)
{
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *r = PQprepare(c, statements[i].name, statements[i].sql, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return PQerrorMessage(c);
    }
    return NULL;
}

int wbb_minq_claim_delete(PGconn *c, const char *queue, unsigned n,
                          void (*seen)(const char *body, void *ctx), void *ctx, const char **err)
{
    char sn[16];
    snprintf(sn, sizeof sn, "%u", n);
    const char *vals[] = {queue, sn, "300"};
    PGresult *r = PQexecPrepared(c, "min_claim", 3, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        *err = PQerrorMessage(c);
        return -1;
    }
    int rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        return 0;
    }
    /* up to 100 ids of up to 20 digits, a comma each */
    char ids[22 * 100 + 2] = "{";
    size_t li = 1;
    for (int i = 0; i < rows && li < sizeof ids - 23; i++) {
        if (seen)
            seen(PQgetvalue(r, i, 1), ctx);
        li +=
            (size_t)snprintf(ids + li, sizeof ids - li, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
    }
    snprintf(ids + li, sizeof ids - li, "}");
    PQclear(r);
    const char *dv[] = {ids};
    r = PQexecPrepared(c, "min_delete", 1, dv, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        *err = PQerrorMessage(c);
        return -1;
    }
    return rows;
}
