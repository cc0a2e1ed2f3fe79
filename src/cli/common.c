/* What several commands share: configuration options and signals. */
#include <signal.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "wb_cli_paths.h"
#include "wb_paths.h"
#include "workerbus/workerbus.h"

bool wb_cli_opt_is(const wb_cli_getopt *g, int k, const char *name)
{
    return k >= 0 && strcmp(g->opts[k].name, name) == 0;
}

bool wb_cli_config_opt(wb_cli_config_opts *o, const wb_cli_getopt *g, int k, const char *value,
                       int *rc)
{
    if (wb_cli_opt_is(g, k, "env-file")) {
        o->env_file = value;
        return true;
    }
    if (!wb_cli_opt_is(g, k, "set"))
        return false;
    if (!strchr(value, '=') || value[0] == '=') {
        *rc = wb_cli_usage_error(o->command, "--set takes KEY=VALUE, not '%s'", value);
        return true;
    }
    if (o->nsets + 1 >= sizeof o->sets / sizeof o->sets[0]) {
        *rc = wb_cli_usage_error(o->command, "too many --set options (at most %zu)",
                                 sizeof o->sets / sizeof o->sets[0] - 1);
        return true;
    }
    o->sets[o->nsets++] = value;
    o->sets[o->nsets] = NULL;
    return true;
}

#define MAX_OPTS 48

int wb_cli_getopt_next(wb_cli_getopt *g, const char **value)
{
    struct option longopts[MAX_OPTS + 1];
    char shorts[2 * MAX_OPTS + 2] = ":"; /* ':' first: a missing value is told apart */
    size_t n = 0, ns = 1;
    for (; g->opts[n].name && n < MAX_OPTS; n++) {
        longopts[n] =
            (struct option){g->opts[n].name, g->opts[n].takes ? required_argument : no_argument,
                            NULL, (int)(1000 + n)};
        if (g->opts[n].short_name) {
            shorts[ns++] = g->opts[n].short_name;
            if (g->opts[n].takes)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    if (!g->started) {
        optind = 0; /* GNU: start a new scan */
        g->started = 1;
    }
    opterr = 0;
    int c = getopt_long(g->argc, g->argv, shorts, longopts, NULL);
    *value = optarg;
    if (c == -1)
        return WB_CLI_GETOPT_END;
    if (c >= 1000 && c < 1000 + (int)n)
        return c - 1000;
    for (size_t k = 0; c > 0 && c < 256 && c != ':' && c != '?' && k < n; k++)
        if (g->opts[k].short_name == c)
            return (int)k;
    const char *bad = g->argv[optind - 1];
    if (c == ':' && bad[1] != '-') {
        for (size_t k = 0; k < n; k++)
            if (g->opts[k].short_name == optopt)
                return wb_cli_usage_error(g->cmd, "-%c needs a value: %s", optopt,
                                          g->opts[k].takes),
                       WB_CLI_GETOPT_BAD;
    }
    if (c == ':') {
        const char *name = bad + 2;
        for (size_t k = 0; k < n; k++)
            if (!strncmp(name, g->opts[k].name, strlen(name)))
                return wb_cli_usage_error(g->cmd, "--%s needs a value: %s", g->opts[k].name,
                                          g->opts[k].takes),
                       WB_CLI_GETOPT_BAD;
        wb_cli_usage_error(g->cmd, "%s needs a value", bad);
        return WB_CLI_GETOPT_BAD;
    }
    /* an unknown (or ambiguous) option: which ones there are */
    char list[1024] = "";
    size_t used = 0;
    for (size_t k = 0; k < n && used < sizeof list; k++) {
        int w = snprintf(list + used, sizeof list - used, "%s--%s", k ? ", " : "", g->opts[k].name);
        used += w > 0 ? (size_t)w : 0;
    }
    if (optopt && optopt < 1000 && bad[0] == '-' && bad[1] != '-')
        wb_cli_usage_error(g->cmd, "unknown option '-%c'; the options are %s", optopt, list);
    else
        wb_cli_usage_error(g->cmd, "unknown or ambiguous option '%s'; the options are %s", bad,
                           list);
    return WB_CLI_GETOPT_BAD;
}

int wb_cli_getopt_rest(const wb_cli_getopt *g, int k, int max, char ***args, int *count)
{
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    *args = wb_cli_getopt_args(g, count);
    if (*count > max)
        return wb_cli_usage_error(g->cmd, "unexpected argument '%s'", (*args)[max]);
    return 0;
}

const char *wb_cli_self_path(void)
{
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    return self;
}

char **wb_cli_getopt_args(const wb_cli_getopt *g, int *count)
{
    int first = optind > 0 ? optind : 1;
    *count = g->argc > first ? g->argc - first : 0;
    return g->argv + first;
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
