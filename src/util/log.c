/* Logging: a threshold and a replaceable handler. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wb_internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static wb_log_fn handler;
static void *handler_ctx;
static atomic_int threshold = WB_LOG_INFO;

static const char *const level_tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const int syslog_prio[] = {7, 6, 4, 3}; /* debug, info, warning, err */
static atomic_int format = WB_LOG_FORMAT_AUTO;

/* Standard error is the journal's stream (systemd sets JOURNAL_STREAM to
 * its device:inode). */
static bool on_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev = 0, ino = 0;
    return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
           (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

WB_API void wb_log_set_format(wb_log_format f)
{
    if ((unsigned)f <= WB_LOG_FORMAT_JOURNAL)
        atomic_store(&format, (int)f);
}

static void default_handler(void *ctx, wb_log_level level, const char *component,
                            const char *message)
{
    (void)ctx;
    int f = atomic_load(&format);
    if (f == WB_LOG_FORMAT_AUTO)
        f = on_journal() ? WB_LOG_FORMAT_JOURNAL : WB_LOG_FORMAT_TEXT;
    if (f == WB_LOG_FORMAT_JOURNAL) { /* journald adds the time and the pid */
        fprintf(stderr, "<%d>%s: %s\n", syslog_prio[level], component, message);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    if (f == WB_LOG_FORMAT_JSON) {
        char stamp[64];
        snprintf(stamp, sizeof stamp, "%s.%03dZ", when, (int)(ts.tv_nsec / 1000000));
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i}", "ts", stamp, "level", level_names[level],
                              "component", component, "msg", message, "pid", (int)getpid());
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(o);
        if (line)
            fprintf(stderr, "%s\n", line);
        free(line);
        return;
    }
    /* one fprintf: lines from several threads do not interleave */
    fprintf(stderr, "%s.%03ldZ %-5s %s: %s pid=%d\n", when, ts.tv_nsec / 1000000, level_tags[level],
            component, message, (int)getpid());
}

WB_API void wb_log_message(wb_log_level level, const char *component, const char *message)
{
    if ((unsigned)level > WB_LOG_ERROR || !component || !message)
        return;
    wb__log(level, component, "%s", message);
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
