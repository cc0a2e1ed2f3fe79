/* Worker id -> pool bindings of the bundled broker (see identities.h). */
#include "identities.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wb_internal.h"

typedef struct bltn_id {
    char worker[WB_ULID_STR_SIZE]; /* "" : a free slot */
    char pool[WB_ULID_STR_SIZE];
    int64_t seen_s;     /* the last connect or disconnect */
    const void *holder; /* the connection holding it; NULL when offline */
} bltn_id;

struct bltn_ids {
    bltn_id *slots;
    size_t cap;  /* a power of two */
    size_t used; /* slots taken, stale ones included */
    uint32_t expiry_s;
    char *path;
    int fd;          /* the file, appended to; -1 without one */
    size_t lines;    /* lines in the file */
    bool dirty;      /* written since the last fdatasync */
    bool write_fail; /* logged once */
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool stale(const bltn_ids *t, const bltn_id *e, int64_t now_s)
{
    return !e->holder && e->seen_s + (int64_t)t->expiry_s < now_s;
}

/* The slot of worker, or the free slot where it would go. */
static bltn_id *find(bltn_ids *t, const char *worker)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash_id(worker) & mask;; i = (i + 1) & mask) {
        if (!t->slots[i].worker[0] || strcmp(t->slots[i].worker, worker) == 0)
            return &t->slots[i];
    }
}

/* Rebuilds the table at cap slots, leaving stale bindings out. */
static bool rehash(bltn_ids *t, size_t cap, int64_t now_s)
{
    bltn_id *old = t->slots;
    size_t old_cap = t->cap;
    bltn_id *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    t->slots = slots;
    t->cap = cap;
    t->used = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].worker[0] && !stale(t, &old[i], now_s)) {
            *find(t, old[i].worker) = old[i];
            t->used++;
        }
    }
    free(old);
    return true;
}

/* Room for one more binding. */
static bool reserve(bltn_ids *t, int64_t now_s)
{
    if ((t->used + 1) * 10 < t->cap * 7)
        return true;
    size_t live = 0;
    for (size_t i = 0; i < t->cap; i++)
        live += t->slots[i].worker[0] && !stale(t, &t->slots[i], now_s);
    size_t cap = t->cap;
    while ((live + 1) * 10 >= cap * 5) /* at most half full afterwards */
        cap *= 2;
    return rehash(t, cap, now_s);
}

static void append(bltn_ids *t, const bltn_id *e)
{
    if (t->fd < 0)
        return;
    char line[96];
    int n = snprintf(line, sizeof line, "%s %s %" PRId64 "\n", e->worker, e->pool, e->seen_s);
    if (write(t->fd, line, (size_t)n) != n) {
        if (!t->write_fail)
            wb__log(WB_LOG_ERROR, "identities", "cannot append to %s: %s", t->path,
                    strerror(errno));
        t->write_fail = true;
        return;
    }
    t->lines++;
    t->dirty = true;
}

/* Rewrites the file with the live bindings only (a new file, renamed over). */
static void compact(bltn_ids *t, int64_t now_s)
{
    if (!t->path)
        return;
    char *tmp = wb__asprintf("%s.new", t->path);
    int fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd < 0) {
        free(tmp);
        return;
    }
    wb__buf b = WB__BUF_INIT;
    size_t lines = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const bltn_id *e = &t->slots[i];
        if (e->worker[0] && !stale(t, e, now_s)) {
            wb__buf_printf(&b, "%s %s %" PRId64 "\n", e->worker, e->pool, e->seen_s);
            lines++;
        }
    }
    bool ok =
        !b.failed && write(fd, b.data ? b.data : "", b.len) == (ssize_t)b.len && fdatasync(fd) == 0;
    wb__buf_free(&b);
    close(fd);
    if (ok && rename(tmp, t->path) == 0) {
        if (t->fd >= 0)
            close(t->fd);
        t->fd = open(t->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        t->lines = lines;
        t->dirty = false;
    } else {
        unlink(tmp);
    }
    free(tmp);
}

/* Once the file holds far more lines than bindings (used counts stale
 * ones too: cheap, and an upper bound). */
static void maybe_compact(bltn_ids *t, int64_t now_s)
{
    if (t->lines > 2 * t->used + 1024)
        compact(t, now_s);
}

/* Reads "WORKER POOL SECONDS" lines; the last line of a worker wins. */
static bool load(bltn_ids *t, char **detail)
{
    FILE *f = fopen(t->path, "re");
    if (!f) {
        if (errno == ENOENT)
            return true;
        *detail = wb__asprintf("cannot read %s: %s", t->path, strerror(errno));
        return false;
    }
    char line[256];
    size_t bad = 0;
    int64_t now_s = (int64_t)time(NULL);
    while (fgets(line, sizeof line, f)) {
        char w[64], p[64];
        long long seen;
        char cw[WB_ULID_STR_SIZE], cp[WB_ULID_STR_SIZE];
        if (sscanf(line, "%63s %63s %lld", w, p, &seen) != 3 || wb_ulid_canonical(w, cw) ||
            wb_ulid_canonical(p, cp)) {
            bad++;
            continue;
        }
        t->lines++;
        if (!reserve(t, now_s)) {
            fclose(f);
            *detail = wb__strdup("out of memory");
            return false;
        }
        bltn_id *e = find(t, cw);
        if (!e->worker[0])
            t->used++;
        snprintf(e->worker, sizeof e->worker, "%s", cw);
        snprintf(e->pool, sizeof e->pool, "%s", cp);
        e->seen_s = seen;
        e->holder = NULL;
    }
    fclose(f);
    if (bad)
        wb__log(WB_LOG_WARN, "identities", "%s: skipped %zu malformed line(s)", t->path, bad);
    return true;
}

bltn_ids *bltn_ids_open(const char *path, uint32_t expiry_s, char **detail)
{
    bltn_ids *t = calloc(1, sizeof *t);
    if (!t || !(t->slots = calloc(64, sizeof *t->slots))) {
        free(t);
        *detail = wb__strdup("out of memory");
        return NULL;
    }
    t->cap = 64;
    t->fd = -1;
    t->expiry_s = expiry_s;
    if (path) {
        t->path = wb__strdup(path);
        if (!t->path || !load(t, detail)) {
            bltn_ids_close(t);
            return NULL;
        }
        t->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (t->fd < 0) {
            *detail = wb__asprintf("cannot open %s: %s", path, strerror(errno));
            bltn_ids_close(t);
            return NULL;
        }
        maybe_compact(t, (int64_t)time(NULL));
    }
    return t;
}

void bltn_ids_close(bltn_ids *t)
{
    if (!t)
        return;
    if (t->fd >= 0) {
        bltn_ids_sync(t);
        close(t->fd);
    }
    free(t->slots);
    free(t->path);
    free(t);
}

bool bltn_ids_claim(bltn_ids *t, const char *worker, const char *pool, const void *holder,
                    int64_t now_s, char other_pool[WB_ULID_STR_SIZE])
{
    bltn_id *e = find(t, worker);
    if (e->worker[0] && !stale(t, e, now_s) && strcmp(e->pool, pool) != 0) {
        snprintf(other_pool, WB_ULID_STR_SIZE, "%s", e->pool);
        return false;
    }
    if (!e->worker[0]) {
        if (!reserve(t, now_s)) /* no memory: refuse rather than leave it unbound */
            return snprintf(other_pool, WB_ULID_STR_SIZE, "%s", "?"), false;
        e = find(t, worker);
        t->used++;
        snprintf(e->worker, sizeof e->worker, "%s", worker);
    }
    snprintf(e->pool, sizeof e->pool, "%s", pool);
    e->seen_s = now_s;
    e->holder = holder;
    append(t, e);
    maybe_compact(t, now_s);
    return true;
}

void bltn_ids_release(bltn_ids *t, const char *worker, const void *holder, int64_t now_s)
{
    bltn_id *e = find(t, worker);
    if (!e->worker[0])
        return;
    /* the connection a newer one of the same worker took over: the binding
     * stays with the newer one */
    if (e->holder != holder)
        return;
    e->holder = NULL;
    e->seen_s = now_s;
    append(t, e);
}

void bltn_ids_sync(bltn_ids *t)
{
    if (t->fd >= 0 && t->dirty) {
        (void)fdatasync(t->fd);
        t->dirty = false;
    }
}

size_t bltn_ids_count(const bltn_ids *t)
{
    size_t n = 0;
    int64_t now_s = (int64_t)time(NULL);
    for (size_t i = 0; i < t->cap; i++)
        n += t->slots[i].worker[0] && !stale(t, &t->slots[i], now_s);
    return n;
}
