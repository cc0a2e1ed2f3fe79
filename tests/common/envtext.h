/* KEY=VALUE lines, as the harness gives its environments: one value, and
 * the configuration they make. For tests and benchmarks. */
#ifndef WBT_ENVTEXT_H
#define WBT_ENVTEXT_H

#include "workerbus/workerbus.h"

/* The value of key in env, in a buffer of the calling thread's that the
 * next call overwrites; NULL when key is not there. */
const char *wbt_env_value(const char *env, const char *key);

/* The configuration of env's lines with overrides (KEY=VALUE, NULL-ended;
 * may be NULL). NULL when it does not load, with *problems (wb_free())
 * saying why when problems is not NULL. */
wb_config *wbt_config_of(const char *env, const char *const *over, char **problems);

#endif
