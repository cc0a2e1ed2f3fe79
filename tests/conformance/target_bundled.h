/* What the builtin and iotcore targets share: a bundled Mosquitto that the
 * suite can kill and wait for (for iotcore, as the IoT Core stand-in). */
#ifndef WBT_TARGET_BUNDLED_H
#define WBT_TARGET_BUNDLED_H

#include <stdbool.h>

#include "fixture.h"

extern wbt_env wbt_bundled_env;

/* Starts the broker of wbt_bundled_env (set up already), saving sessions
 * every second and restarting fast. */
void wbt_bundled_start(void);
void wbt_bundled_teardown(void);
wb_worker *wbt_bundled_worker(const char *ulid, wb_message_fn fn, void *ctx);
bool wbt_bundled_kill(void);
bool wbt_bundled_ready(unsigned timeout_ms);

#endif
