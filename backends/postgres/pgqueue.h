/* The PostgreSQL queue backend (not installed). */
#ifndef WB_PGQUEUE_H
#define WB_PGQUEUE_H

#include <libpq-fe.h>

#include "queue_backend.h"

extern const wb__queue_ops wb__postgres_queue_ops;

/* Applies the migrations this library knows, under the advisory lock; *from
 * and *to (may be NULL) receive the versions before and after. */
wb_err wb__pg_migrate(PGconn *c, int *from, int *to, char **detail);
/* The SQL of a prepared statement by name ("wb_send", "wb_claim", ...), for
 * the benchmark's raw baseline; NULL if unknown. */
const char *wb__pg_statement(const char *name);
/* The newest schema version this library knows. */
int wb__pg_schema_version_known(void);

#endif
