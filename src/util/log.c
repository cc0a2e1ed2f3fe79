/* Logging: a threshold and a replaceable handler. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "wb_internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static wb_log_fn handler;
static void *handler_ctx;
static atomic_int threshold = WB_LOG_INFO;

static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static void default_handler(void *ctx, wb_log_level level, const char *component,
                            const char *message)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    /* one fprintf: lines from several threads do not interleave */
    fprintf(stderr, "%s.%03ldZ workerbus[%d] %-5s %s: %s\n", when, ts.tv_nsec / 1000000,
            (int)getpid(), level_tags[level], component, message);
}

WB_API void wb_log_set_handler(wb_log_fn fn, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    handler = fn;
    handler_ctx = ctx;
    pthread_mutex_unlock(&log_lock);
}

WB_API void wb_log_set_level(wb_log_level level)
{
    if ((unsigned)level <= WB_LOG_ERROR)
        atomic_store(&threshold, (int)level);
}

WB_API wb_log_level wb_log_get_level(void)
{
    return (wb_log_level)atomic_load(&threshold);
}

bool wb__log_enabled(wb_log_level level)
{
    return (int)level >= atomic_load(&threshold);
}

void wb__log(wb_log_level level, const char *component, const char *fmt, ...)
{
    if (!wb__log_enabled(level))
        return;
    char stack[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stack, sizeof stack, fmt, ap);
    va_end(ap);
    char *msg = stack;
    char *heap = NULL;
    if (n >= (int)sizeof stack) {
        wb__buf b = WB__BUF_INIT;
        va_start(ap, fmt);
        wb__buf_vprintf(&b, fmt, ap);
        va_end(ap);
        heap = wb__buf_take(&b);
        if (heap)
            msg = heap;
    }
    pthread_mutex_lock(&log_lock);
    wb_log_fn fn = handler ? handler : default_handler;
    void *ctx = handler ? handler_ctx : NULL;
    fn(ctx, level, component, msg);
    pthread_mutex_unlock(&log_lock);
    free(heap);
}
