/* One connection per database LISTENs for the whole process (not
 * installed). PostgreSQL wakes every listening connection of a database on
 * every notification, whatever its channel: the queue's long polls and the
 * builtin broker's replica share this one instead of listening each on
 * their own. */
#ifndef WB_PG_LISTEN_H
#define WB_PG_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wb__pg_sub wb__pg_sub;

/* Both run on the listener's thread, one at a time for a database, and
 * must not subscribe or unsubscribe. */
typedef struct wb__pg_sub_ops {
    /* A notification on one of the subscription's channels (payload may
     * be empty). */
    void (*notify)(void *ctx, const char *channel, const char *payload);
    /* heard: the channels are LISTENed to now (after a subscription, or
     * a reconnection: what was sent meanwhile was missed); !heard: the
     * connection is lost or cannot LISTEN (why says so); told once per
     * change. */
    void (*state)(void *ctx, bool heard, const char *why);
} wb__pg_sub_ops;

/* Subscribes ctx to n (1-4) channels of the database at url, starting the
 * process's listener for that URL (a thread and a connection) when it is
 * the first. Never blocks on the database; NULL when out of memory or
 * threads. */
wb__pg_sub *wb__pg_subscribe(const char *url, const char *const *channels, size_t n,
                             const wb__pg_sub_ops *ops, void *ctx);

/* Ends a subscription: once it returns, none of its callbacks runs. The
 * last subscriber of a URL stops its listener (and waits for its thread).
 * Not from a callback. */
void wb__pg_unsubscribe(wb__pg_sub *s);

#endif
