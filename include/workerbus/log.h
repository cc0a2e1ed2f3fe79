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

#ifdef __cplusplus
}
#endif
#endif
