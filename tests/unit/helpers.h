/* Helpers shared by the unit tests. */
#ifndef WB_TEST_HELPERS_H
#define WB_TEST_HELPERS_H

#include <stddef.h>

#include "workerbus/workerbus.h"

/* Valid environments, NULL-terminated. */
extern const char *const wbt_base_builtin[];     /* builtin + postgres */
extern const char *const wbt_base_iotcore[];     /* iotcore + sqs (AWS URLs, eu-west-1) */
extern const char *const wbt_base_builtin_sqs[]; /* builtin + sqs stand-in URLs */

/* A directory made by wb_pki_init() for the hosts the tests use, shared by
 * all test processes of this user (made once). */
const char *wbt_pki_dir(void);

/* Loads base with overrides applied: "KEY=VALUE" replaces or adds KEY,
 * "KEY" alone removes it; "@PKI@" in a value stands for wbt_pki_dir().
 * Builtin bases get MQTT_BROKER_BUILTIN_PKI_DIR and _RUNTIME_DIR unless the
 * overrides name them. */
wb_err wbt_load(const char *const *base, const char *const *over, wb_config **cfg,
                wb_config_report **rep);

/* The first issue of that severity on that variable, or NULL. */
const wb_config_issue *wbt_find(const wb_config_report *rep, wb_severity sev, const char *var);

/* Prints every issue to stderr (for a failing test's log). */
void wbt_dump(const wb_config_report *rep);

/* Writes text to a new temporary file; returns its path (static buffer). */
const char *wbt_tmpfile(const char *text, size_t len);

#endif
