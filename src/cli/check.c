/* workerbus check: validate the configuration without starting anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "workerbus/workerbus.h"

static const char usage[] =
    "Usage: workerbus check [--env-file FILE] [--set KEY=VALUE]... [--json | --quiet]\n"
    "\n"
    "Validates the configuration as the server would at start-up, without\n"
    "starting anything, and reports every problem at once.\n"
    "\n"
    "Options:\n"
    "  --env-file FILE  read KEY=VALUE lines from FILE instead of the process\n"
    "                   environment ('#' starts a comment line; 'export ' and\n"
    "                   quotes around a value are accepted)\n"
    "  --set KEY=VALUE  set (or with KEY= unset) a variable on top of the\n"
    "                   environment or the file; may be repeated\n"
    "  --json           print one JSON object on stdout:\n"
    "                   {\"valid\": bool, \"source\": str, \"errors\": [...],\n"
    "                    \"warnings\": [...], \"config\": {...}}; each error and\n"
    "                   warning has \"variable\", \"value\", \"message\", \"hint\"\n"
    "  -q, --quiet      print nothing; only the exit code tells\n"
    "  -h, --help       show this help\n"
    "  --               the end of the options\n"
    "\n"
    "Human output: the effective configuration (defaults marked, secrets\n"
    "redacted), then every error and warning with a hint.\n"
    "\n"
    "Exit codes: 0 valid (warnings allowed), 78 invalid, 64 usage error,\n"
    "66 the environment file cannot be read, 70 internal error.\n";

static int run(int argc, char **argv)
{
    const char *env_file = NULL;
    bool json = false, quiet = false;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    size_t nsets = 0;
    if (!sets) {
        fprintf(stderr, "workerbus: check: %s\n", wb_strerror(WB_ERR_NO_MEMORY));
        return WB_EXIT_SOFTWARE;
    }
    static const wb_cli_opt flags[] = {{"json", NULL, 0},
                                       {"quiet", NULL, 'q'},
                                       {"env-file", "FILE", 0},
                                       {"set", "KEY=VALUE", 0},
                                       {NULL, NULL, 0}};
    wb_cli_getopt g = {"check", argc, argv, flags, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "json")) {
            json = true;
        } else if (wb_cli_opt_is(&g, k, "quiet")) {
            quiet = true;
        } else if (wb_cli_opt_is(&g, k, "env-file")) {
            env_file = v;
        } else if (wb_cli_opt_is(&g, k, "set")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                free(sets);
                return wb_cli_usage_error("check", "--set needs KEY=VALUE, got '%s'", v);
            }
            sets[nsets++] = v;
        }
    }
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    if (k == WB_CLI_GETOPT_BAD || nargs) {
        free(sets);
        return k == WB_CLI_GETOPT_BAD
                   ? WB_EXIT_USAGE
                   : wb_cli_usage_error("check", "unexpected argument '%s'", args[0]);
    }
    if ((json && quiet) || (env_file && !*env_file)) {
        free(sets);
        return wb_cli_usage_error("check", json && quiet
                                               ? "--json and --quiet cannot be used together"
                                               : "--env-file needs a file name");
    }

    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env_file = env_file;
    opts.overrides = sets;
    wb_config_report *rep = NULL;
    wb_err err = wb_config_load(&opts, NULL, &rep);
    free(sets);
    if (!rep) {
        fprintf(stderr, "workerbus: check: %s\n", wb_strerror(err));
        return WB_EXIT_SOFTWARE;
    }
    if (!quiet) {
        char *out = wb_config_report_format(rep, json ? WB_REPORT_JSON : WB_REPORT_TEXT);
        if (!out) {
            wb_config_report_free(rep);
            fprintf(stderr, "workerbus: check: %s\n", wb_strerror(WB_ERR_NO_MEMORY));
            return WB_EXIT_SOFTWARE;
        }
        fputs(out, stdout);
        if (json)
            fputc('\n', stdout);
        wb_free(out);
    }
    wb_config_report_free(rep);
    switch (err) {
    case WB_OK:
        return WB_EXIT_OK;
    case WB_ERR_IO:
        return WB_EXIT_NOINPUT;
    case WB_ERR_CONFIG:
        return WB_EXIT_CONFIG;
    default:
        return WB_EXIT_SOFTWARE;
    }
}

const wb_cli_command wb_cli_check = {
    .name = "check",
    .summary = "validate the configuration without starting anything",
    .usage = usage,
    .run = run,
};
