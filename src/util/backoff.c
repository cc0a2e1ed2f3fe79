/* Exponential backoff with jitter, shared by every reconnect and restart,
 * and the one retry loop of the interfaces' cores. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#include "wb_internal.h"

static _Thread_local uint64_t rng;

uint32_t wb__random32(void)
{
    if (!rng) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed;
        }
        rng = seed | 1;
    }
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

unsigned wb__backoff_ms(unsigned attempt, unsigned min_ms, unsigned max_ms)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    uint64_t base = min_ms;
    for (unsigned i = 0; i < attempt && base < max_ms; i++)
        base *= 2;
    if (base > max_ms)
        base = max_ms;
    /* "equal jitter": half fixed, half random, so peers that lost the same
     * connection do not come back in step, and no wait is near zero */
    unsigned half = (unsigned)(base / 2);
    return half + (half ? wb__random32() % (half + 1) : 0);
}

uint64_t wb__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int wb__cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *lock, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cond, lock, &ts);
}

void wb__retry_start(wb__retry *r, const char *component, const char *what, unsigned limit_ms,
                     unsigned min_ms, unsigned max_ms)
{
    *r = (wb__retry){.component = component,
                     .what = what,
                     .limit_ms = limit_ms,
                     .min_ms = min_ms,
                     .max_ms = max_ms,
                     .start_ms = wb__now_ms()};
}

/* Whether a wake-up to stop came since the retries began (remembered). */
static bool stop_asked(wb__retry *r)
{
    if (r->stop_gen && atomic_load(r->stop_gen) != r->stop_at)
        r->stopped = true;
    return r->stopped;
}

bool wb__retry_again(wb__retry *r, wb_err err, const char *detail)
{
    if (!wb__is_retryable(err) || r->limit_ms == 0 || stop_asked(r))
        return false;
    uint64_t spent = wb__now_ms() - r->start_ms;
    if (spent >= r->limit_ms)
        return false;
    unsigned delay = wb__backoff_ms(r->attempt, r->min_ms, r->max_ms);
    if (delay > r->limit_ms - spent) /* the last wait ends at the limit */
        delay = (unsigned)(r->limit_ms - spent);
    if (r->attempt == 0 || r->attempt % 10 == 9)
        wb__log(WB_LOG_WARN, r->component, "%s: %s; retrying in %u ms (for up to %u ms in all)",
                r->what, detail ? detail : wb_strerror(wb__err_code(err)), delay, r->limit_ms);
    r->attempt++;
    /* in slices, so that a wake-up to stop is heard while it sleeps */
    for (unsigned left = delay; left > 0;) {
        unsigned slice = r->stop_gen && left > 50 ? 50 : left;
        struct timespec ts = {slice / 1000, (long)(slice % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        left -= slice;
        if (stop_asked(r))
            return false;
    }
    return true;
}

void wb__retry_end(const wb__retry *r, wb_err err, const char *detail)
{
    if (r->attempt == 0)
        return; /* no outage: the first attempt did it, or was not retryable */
    unsigned long long spent = (unsigned long long)(wb__now_ms() - r->start_ms);
    if (err && r->stopped)
        wb__log(WB_LOG_WARN, r->component,
                "%s: stopped after %llu ms and %u retr%s, as asked (a stop, such as "
                "wb_drain_stop()): %s",
                r->what, spent, r->attempt, r->attempt == 1 ? "y" : "ies",
                detail ? detail : wb_strerror(wb__err_code(err)));
    else if (!err)
        wb__log(WB_LOG_WARN, r->component, "%s: recovered after %llu ms and %u retr%s", r->what,
                spent, r->attempt, r->attempt == 1 ? "y" : "ies");
    else
        wb__log(WB_LOG_ERROR, r->component, "%s: gave up after %llu ms and %u retr%s: %s", r->what,
                spent, r->attempt, r->attempt == 1 ? "y" : "ies",
                detail ? detail : wb_strerror(wb__err_code(err)));
}
