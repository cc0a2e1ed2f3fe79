/* One listening connection per database for the whole process (listen.h).
 *
 * PostgreSQL signals every connection that LISTENs in a database on every
 * NOTIFY, whatever its channel, and each wakes and reads the notification
 * in a transaction of its own (bench/bench-listeners: 20-35 us of the
 * server's CPU per listening connection per notification). So the queue's
 * long polls and the replica's delivery share one connection here, and a
 * worker message's notification wakes one backend per process.
 *
 * Each database URL gets an entry with a thread that owns the connection:
 * it connects, LISTENs to the union of its subscribers' channels (again
 * whenever one subscribes), waits on the socket and hands each
 * notification to the subscribers of its channel. The subscribers' list is
 * read and their callbacks run under the entry's lock, so that once
 * wb__pg_unsubscribe() returns, none of its callbacks runs. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "listen.h"
#include "pg.h"
#include "wb_internal.h"

#define CHANNELS_MAX 4
#define IDLE_WAIT_MS 1000
#define RETRY_MIN_MS 250u
#define RETRY_MAX_MS 5000u

typedef struct entry entry;

struct wb__pg_sub {
    entry *e;
    char *channels[CHANNELS_MAX];
    size_t nchannels;
    wb__pg_sub_ops ops;
    void *ctx;
    int told; /* what its state callback was last told: 0 nothing, 1 heard, 2 lost */
    wb__pg_sub *next;
};

struct entry {
    char *url;
    pthread_mutex_t lock; /* subs, listening, stop, dirty */
    wb__pg_sub *subs;
    bool stop, dirty; /* dirty: a subscriber's channels to LISTEN to */
    pthread_t thread;
    int wake_fd; /* eventfd: stop, or channels to add */
    entry *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *registry;

static void wake(entry *e)
{
    uint64_t one = 1;
    if (write(e->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        wb__log(WB_LOG_DEBUG, "pg", "waking the listener: %s", strerror(errno));
}

/* Lock held: every subscriber learns that nothing is heard now. */
static void tell_lost(entry *e, const char *why)
{
    for (wb__pg_sub *s = e->subs; s; s = s->next) {
        if (s->told != 2)
            s->ops.state(s->ctx, false, why);
        s->told = 2;
    }
}

/* LISTENs to every subscriber's channels (LISTEN twice is harmless), then
 * tells those not yet told that they are heard. Lock held. */
static bool listen_all(entry *e, PGconn *c, char **detail)
{
    for (wb__pg_sub *s = e->subs; s; s = s->next) {
        for (size_t i = 0; i < s->nchannels; i++) {
            char *id = PQescapeIdentifier(c, s->channels[i], strlen(s->channels[i]));
            char *sql = id ? wb__asprintf("LISTEN %s", id) : NULL;
            wb_err err = sql ? wb__pg_exec(c, sql, "LISTEN", detail) : WB_ERR_NO_MEMORY;
            free(sql);
            PQfreemem(id);
            if (err)
                return false;
        }
    }
    e->dirty = false;
    for (wb__pg_sub *s = e->subs; s; s = s->next) {
        if (s->told != 1)
            s->ops.state(s->ctx, true, NULL);
        s->told = 1;
    }
    return true;
}

static bool has_channel(const wb__pg_sub *s, const char *channel)
{
    for (size_t i = 0; i < s->nchannels; i++)
        if (strcmp(s->channels[i], channel) == 0)
            return true;
    return false;
}

/* Waits up to timeout_ms for e's wake-up and for events on fd (-1: none);
 * returns whether the wake-up came (and consumes it), and fd's events in
 * *revents. */
static bool wait_for(entry *e, int fd, short events, int timeout_ms, short *revents)
{
    struct pollfd p[2] = {{.fd = e->wake_fd, .events = POLLIN}, {.fd = fd, .events = events}};
    int rc = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
    if (rc < 0 && errno != EINTR)
        wb__log(WB_LOG_DEBUG, "pg", "the listener's poll: %s", strerror(errno));
    *revents = rc > 0 && fd >= 0 ? p[1].revents : 0;
    if (rc <= 0 || !(p[0].revents & POLLIN))
        return false;
    uint64_t v;
    if (read(e->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        wb__log(WB_LOG_DEBUG, "pg", "the listener's wake-up: %s", strerror(errno));
    return true;
}

static bool entry_stopping(void *ctx)
{
    entry *e = ctx;
    pthread_mutex_lock(&e->lock);
    bool stop = e->stop;
    pthread_mutex_unlock(&e->lock);
    return stop;
}

static void *listener_main(void *arg)
{
    entry *e = arg;
    PGconn *c = NULL;
    unsigned failures = 0;
    for (;;) {
        unsigned wait_ms = IDLE_WAIT_MS;
        pthread_mutex_lock(&e->lock);
        if (e->stop) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        if (!c) {
            /* connecting can take the connect timeout: not under the lock,
             * which subscribing and unsubscribing take, and stopped by a
             * stop */
            pthread_mutex_unlock(&e->lock);
            char *d = NULL;
            /* a wake-up (consumed: all channels are LISTENed to once
             * connected) or a stop ends the connect; NULL with no detail
             * when stopped */
            c = wb__pg_connect_stoppable(e->url, "workerbus", "pg", e->wake_fd, entry_stopping, e,
                                         &d);
            pthread_mutex_lock(&e->lock);
            if (!c && !e->stop) {
                tell_lost(e, d ? d : "PostgreSQL");
                wait_ms = wb__backoff_ms(failures++, RETRY_MIN_MS, RETRY_MAX_MS);
            }
            free(d);
            if (e->stop) {
                pthread_mutex_unlock(&e->lock);
                break;
            }
            e->dirty = c != NULL;
        }
        if (c && e->dirty) {
            char *d = NULL;
            if (!listen_all(e, c, &d)) {
                PQfinish(c);
                c = NULL;
            }
            if (!c) {
                tell_lost(e, d ? d : "PostgreSQL");
                wait_ms = wb__backoff_ms(failures++, RETRY_MIN_MS, RETRY_MAX_MS);
            } else {
                failures = 0;
            }
            free(d);
        }
        pthread_mutex_unlock(&e->lock);

        short ready = 0;
        wait_for(e, c ? PQsocket(c) : -1, POLLIN, (int)wait_ms, &ready);
        if (!c)
            continue;
        pthread_mutex_lock(&e->lock);
        if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
            char *d = wb__pg_describe(c, NULL, "listening");
            PQfinish(c);
            c = NULL;
            tell_lost(e, d ? d : "PostgreSQL");
            free(d);
        } else {
            PGnotify *n;
            while ((n = PQnotifies(c)) != NULL) {
                for (wb__pg_sub *s = e->subs; s; s = s->next)
                    if (s->told == 1 && has_channel(s, n->relname))
                        s->ops.notify(s->ctx, n->relname, n->extra);
                PQfreemem(n);
            }
        }
        pthread_mutex_unlock(&e->lock);
    }
    if (c)
        PQfinish(c);
    return NULL;
}

static void entry_free(entry *e)
{
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    pthread_mutex_destroy(&e->lock);
    free(e->url);
    free(e);
}

static void sub_free(wb__pg_sub *s)
{
    for (size_t i = 0; i < s->nchannels; i++)
        free(s->channels[i]);
    free(s);
}

wb__pg_sub *wb__pg_subscribe(const char *url, const char *const *channels, size_t n,
                             const wb__pg_sub_ops *ops, void *ctx)
{
    if (!url || !channels || n == 0 || n > CHANNELS_MAX || !ops || !ops->notify || !ops->state)
        return NULL;
    wb__pg_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s->channels[i] = wb__strdup(channels[i]);
        s->nchannels = i + 1;
        if (!s->channels[i]) {
            sub_free(s);
            return NULL;
        }
    }
    s->ops = *ops;
    s->ctx = ctx;
    pthread_mutex_lock(&registry_lock);
    entry *e = registry;
    while (e && strcmp(e->url, url) != 0)
        e = e->next;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (e) {
            e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            e->url = wb__strdup(url);
            pthread_mutex_init(&e->lock, NULL);
        }
        if (!e || e->wake_fd < 0 || !e->url ||
            pthread_create(&e->thread, NULL, listener_main, e) != 0) {
            if (e)
                entry_free(e);
            pthread_mutex_unlock(&registry_lock);
            sub_free(s);
            return NULL;
        }
        e->next = registry;
        registry = e;
    }
    s->e = e;
    pthread_mutex_lock(&e->lock);
    s->next = e->subs;
    e->subs = s;
    e->dirty = true;
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_unlock(&registry_lock);
    wake(e);
    return s;
}

void wb__pg_unsubscribe(wb__pg_sub *s)
{
    if (!s)
        return;
    entry *e = s->e;
    pthread_mutex_lock(&registry_lock);
    pthread_mutex_lock(&e->lock);
    for (wb__pg_sub **p = &e->subs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    bool last = e->subs == NULL;
    if (last) {
        e->stop = true;
        for (entry **p = &registry; *p; p = &(*p)->next) {
            if (*p == e) {
                *p = e->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_unlock(&registry_lock);
    sub_free(s);
    if (last) {
        wake(e);
        pthread_join(e->thread, NULL);
        entry_free(e);
    }
}
