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
    "  --quiet          print nothing; only the exit code tells\n"
    "  -h, --help       show this help\n"
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
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = true;
        } else if (strcmp(a, "--env-file") == 0) {
            if (i + 1 >= argc) {
                free(sets);
                return wb_cli_usage_error("check", "--env-file needs a file name");
            }
            env_file = argv[++i];
        } else if (strncmp(a, "--env-file=", 11) == 0) {
            env_file = a + 11;
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *kv = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (!eq || eq == kv) {
                free(sets);
                return wb_cli_usage_error("check", "--set needs KEY=VALUE, got '%s'", kv ? kv : "");
            }
            sets[nsets++] = kv;
        } else {
            free(sets);
            return wb_cli_usage_error("check", "unexpected argument '%s'", a);
        }
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
