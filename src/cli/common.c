/* What several commands share: configuration options and signals. */
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "wb_cli_paths.h"
#include "wb_paths.h"
#include "workerbus/workerbus.h"

bool wb_cli_config_option(wb_cli_config_opts *o, int argc, char **argv, int *i, int *rc)
{
    const char *a = argv[*i];
    if (strcmp(a, "--env-file") == 0) {
        if (*i + 1 >= argc) {
            *rc = wb_cli_usage_error(o->command, "--env-file needs a file name");
            return true;
        }
        o->env_file = argv[++*i];
        return true;
    }
    if (strcmp(a, "--set") == 0) {
        const char *kv = *i + 1 < argc ? argv[++*i] : NULL;
        if (!kv || !strchr(kv, '=') || kv[0] == '=') {
            *rc = wb_cli_usage_error(o->command, "--set needs KEY=VALUE");
            return true;
        }
        if (o->nsets + 1 >= sizeof o->sets / sizeof o->sets[0]) {
            *rc = wb_cli_usage_error(o->command, "too many --set options");
            return true;
        }
        o->sets[o->nsets++] = kv;
        o->sets[o->nsets] = NULL;
        return true;
    }
    return false;
}

int wb_cli_load_config(const wb_cli_config_opts *o, wb_config **out)
{
    wb_config_load_opts lo = WB_CONFIG_LOAD_OPTS_INIT;
    lo.env_file = o->env_file;
    lo.overrides = o->sets;
    lo.parts = o->parts;
    wb_config_report *rep = NULL;
    wb_err err = wb_config_load(&lo, out, &rep);
    char *problems = rep ? wb_config_report_format(rep, WB_REPORT_PROBLEMS) : NULL;
    if (problems && *problems)
        fputs(problems, stderr);
    wb_free(problems);
    wb_config_report_free(rep);
    if (err == WB_OK)
        return WB_EXIT_OK;
    fprintf(stderr, "workerbus: %s: the configuration is invalid (%s); see `workerbus check`\n",
            o->command, wb_strerror(err));
    return err == WB_ERR_IO       ? WB_EXIT_NOINPUT
           : err == WB_ERR_CONFIG ? WB_EXIT_CONFIG
                                  : WB_EXIT_SOFTWARE;
}

void wb_cli_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    /* before any thread exists, so that every thread inherits the block and
     * the signals wait for sigtimedwait() in the main thread */
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

int wb_cli_wait_signal(const sigset_t *set, unsigned timeout_ms)
{
    struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

bool wb_cli_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    /* plain decimal digits only: no sign, space, base prefix or suffix */
    if (!s || !*s)
        return false;
    unsigned long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10u + (unsigned)(*p - '0');
        if (v > hi)
            return false;
    }
    if (v < lo)
        return false;
    *out = (unsigned)v;
    return true;
}

const char *wb_cli_services_script(void)
{
    return access(WB_SERVICES_PATH, X_OK) == 0 ? NULL : WB_SOURCE_SERVICES_SCRIPT;
}
