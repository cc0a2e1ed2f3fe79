/* A database host that stops answering: every process of a PostgreSQL
 * cluster stopped (SIGSTOP), so that connections stay open, new ones are
 * accepted by the kernel, and nothing is answered. */
#ifndef WBT_FREEZE_H
#define WBT_FREEZE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct wbt_frozen {
    int pids[64];
    size_t n;
    atomic_bool thawed;
    pthread_t thread;
    unsigned max_ms;
} wbt_frozen;

/* Stops the postmaster whose postmaster.pid is pidfile, and its children.
 * A thread continues them after max_ms, so that a test whose call waits
 * for the database fails instead of hanging. False when pidfile cannot be
 * read. */
bool wbt_freeze(wbt_frozen *f, const char *pidfile, unsigned max_ms);
/* Continues them (at once) and ends the thread. */
void wbt_thaw(wbt_frozen *f);

#endif
