/**
 * @file log.h
 * Where workerbus's log lines go. By default they are written to standard
 * error, one line each, at ::WB_LOG_INFO and above. The bundled broker's own
 * log lines are routed here too (component "mosquitto").
 */
#ifndef WORKERBUS_LOG_H
#define WORKERBUS_LOG_H

#include "common.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A log handler. Called from whichever thread logs (the broker's I/O and
 * supervisor threads among them); it must be thread-safe and must not call
 * back into workerbus. component names the part that logs ("broker",
 * "mosquitto", "config", ...).
 */
typedef void (*wb_log_fn)(void *ctx, wb_log_level level, const char *component,
                          const char *message);

/** Replaces the handler; NULL restores the default (standard error). Thread-safe. */
WB_API void wb_log_set_handler(wb_log_fn fn, void *ctx);
/** Lines below this level are dropped before the handler is called. Thread-safe. */
WB_API void wb_log_set_level(wb_log_level level);
/** The current threshold. */
WB_API wb_log_level wb_log_get_level(void);

/** How the default handler writes a line on standard error. */
typedef enum wb_log_format {
    /** Under systemd, ::WB_LOG_FORMAT_JOURNAL when standard error is the
     *  journal (JOURNAL_STREAM names it), else ::WB_LOG_FORMAT_TEXT. */
    WB_LOG_FORMAT_AUTO = 0,
    /** `2026-11-30T03:59:10.131Z INFO  broker: message pid=123` */
    WB_LOG_FORMAT_TEXT = 1,
    /** One JSON object a line: ts, level, component, msg, pid. */
    WB_LOG_FORMAT_JSON = 2,
    /** `<6>broker: message`: the syslog priority for journald, which adds
     *  the time and the pid itself. */
    WB_LOG_FORMAT_JOURNAL = 3,
} wb_log_format;

/** Chooses the default handler's format. Thread-safe. */
WB_API void wb_log_set_format(wb_log_format format);

/**
 * Logs one line, as workerbus's own parts do: through the handler, at or
 * above the threshold. For programs that want their lines in the same
 * format and place as the library's (the workerbus tool does). Thread-safe.
 */
WB_API void wb_log_message(wb_log_level level, const char *component, const char *message);

#ifdef __cplusplus
}
#endif
#endif
