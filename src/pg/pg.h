/* PostgreSQL helpers shared by what talks to the database: the postgres
 * queue backend, the builtin broker's replica coordination and the plugin's
 * presence records (not installed). One schema for all of them, in
 * schema.h, applied by wb__pg_migrate(). */
#ifndef WB_PG_H
#define WB_PG_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "workerbus/error.h"

/* "PostgreSQL, WHAT: message (SQLSTATE xxxxx)"; heap, never NULL unless out
 * of memory. r may be NULL (then the connection's message is used). */
char *wb__pg_describe(PGconn *c, const PGresult *r, const char *what);

/* Whether a failure is worth trying again: no connection, a connection
 * exception, a shutdown, a serialization failure or a deadlock. */
bool wb__pg_is_transient(PGconn *c, const PGresult *r);

/* Connects to url (a libpq URI or key=value string) as application
 * application_name, with a 10 s connect timeout and UTF-8; the server's
 * notices go to the debug log of component. NULL and *detail (heap, the
 * URL's secrets never in it) when it fails. */
PGconn *wb__pg_connect(const char *url, const char *application_name, const char *component,
                       char **detail);

/* wb__pg_connect() in steps, for a caller that must not block: starts the
 * connection (NULL and *detail when it failed at once); the caller drives
 * PQconnectPoll() on PQsocket() (which may change between calls) and
 * enforces the 10 s itself, then calls wb__pg_connected() once it is
 * PGRES_POLLING_OK. */
PGconn *wb__pg_connect_start(const char *url, const char *application_name, char **detail);
/* What wb__pg_connect() sets on a new connection: the notices to the
 * debug log of component (a string literal). */
void wb__pg_connected(PGconn *c, const char *component);
/* wb__pg_connect() that a stop can end, for a thread that must stop
 * promptly even while the database does not answer (a frozen host, packets
 * dropped): the connect is driven without blocking, stop(ctx) (NULL: never)
 * is asked at least every 50 ms and whenever wake_fd (an eventfd, -1: none)
 * becomes readable, which consumes its wake-up. NULL with *detail when it
 * failed or the 10 s passed; NULL with no detail when stopped. */
PGconn *wb__pg_connect_stoppable(const char *url, const char *application_name,
                                 const char *component, int wake_fd, bool (*stop)(void *ctx),
                                 void *ctx, char **detail);
/* The connect timeout of every connection, s. */
#define WB__PG_CONNECT_TIMEOUT_S 10

/* PQexecPrepared() (lens, fmts: NULL for text parameters; binary: the
 * results' format) that a stop can end: the wait for the result asks
 * stop(ctx) at least every 50 ms. Stopped: NULL and *stopped; the
 * connection is then in the middle of a statement, and the caller closes
 * it. */
PGresult *wb__pg_exec_prepared_stoppable(PGconn *c, const char *name, int n,
                                         const char *const *vals, const int *lens, const int *fmts,
                                         int binary, bool (*stop)(void *ctx), void *ctx,
                                         bool *stopped);

/* Runs sql (no parameters); WB_OK, or WB_ERR_BACKEND with *detail. */
wb_err wb__pg_exec(PGconn *c, const char *sql, const char *what, char **detail);

/* Applies the schema's migrations this library knows, in order, under the
 * advisory lock, in one transaction. *from and *to (may be NULL) receive
 * the versions before and after. WB_ERR_STATE when the database is at a
 * newer version than this library knows. */
wb_err wb__pg_migrate(PGconn *c, const char *component, int *from, int *to, char **detail);

/* The newest schema version this library knows. */
int wb__pg_schema_version(void);

#endif
