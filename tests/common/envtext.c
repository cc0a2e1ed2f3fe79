/* KEY=VALUE lines (envtext.h). */
#include "envtext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *wbt_env_value(const char *env, const char *key)
{
    static _Thread_local char buf[1024];
    size_t kl = strlen(key);
    for (const char *l = env; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t ll = e ? (size_t)(e - l) : strlen(l);
        if (ll > kl && !strncmp(l, key, kl) && l[kl] == '=') {
            snprintf(buf, sizeof buf, "%.*s", (int)(ll - kl - 1), l + kl + 1);
            return buf;
        }
        l = e ? e + 1 : NULL;
    }
    return NULL;
}

wb_config *wbt_config_of(const char *env, const char *const *over, char **problems)
{
    char *copy = strdup(env ? env : "");
    const char *lines[128];
    size_t n = 0;
    for (char *save = NULL, *l = copy ? strtok_r(copy, "\n", &save) : NULL; l && n < 127;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    lines[n] = NULL;
    wb_config_load_opts lo = WB_CONFIG_LOAD_OPTS_INIT;
    lo.env = lines;
    lo.overrides = over;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    if (wb_config_load(&lo, &cfg, &rep) != WB_OK && problems)
        *problems = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
    wb_config_report_free(rep);
    free(copy);
    return cfg;
}
