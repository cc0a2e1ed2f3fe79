/* The minimal SKIP LOCKED queue: the simplest correct SQL for a queue's
 * core semantics (a visibility timeout, a receive count, claims that never
 * hand one message to two consumers, deletes by id), in a table of its
 * own, without what workerbus adds (message groups, deduplication, redrive
 * to a dead-letter queue, expiry, wake-ups). The benchmarks hold
 * workerbus's queue against it. */
#ifndef WB_BENCH_MINQ_H
#define WB_BENCH_MINQ_H

#include <libpq-fe.h>

/* Creates the table and its claim index if missing. */
extern const char WBB_MINQ_TABLE[];

/* Prepares on c the statements:
 *  - min_send (queue, text[]): the bodies in one INSERT;
 *  - min_send1 (queue, body): one row;
 *  - min_claim (queue, limit, visibility s): returns id, body;
 *  - min_delete (bigint[] of ids).
 * Returns NULL, or libpq's error message. */
const char *wbb_minq_prepare(PGconn *c);

/* Claims up to n (1-100) messages of queue with min_claim and deletes them
 * with min_delete, each statement its own transaction; seen (may be NULL)
 * gets each claimed body before the delete. Returns how many, or -1 with
 * libpq's error in *err. */
int wbb_minq_claim_delete(PGconn *c, const char *queue, unsigned n,
                          void (*seen)(const char *body, void *ctx), void *ctx, const char **err);

#endif
