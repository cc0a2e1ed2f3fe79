/* workerbus check: validate the configuration without starting anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#ifdef WB_CLI_HAVE_PROBE
#include "probe.h"
#endif
#include "workerbus/workerbus.h"

#define EX_UNAVAILABLE 69
#define PROBE_RUNS     200

static const char usage[] =
    "Usage: workerbus check [--env-file FILE] [--set KEY=VALUE]... [--json | --quiet]\n"
    "                       [--probe]\n"
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
    "  --probe          once the configuration is valid, measure the database at\n"
    "                   DATABASE_URL: 200 round trips and 200 commits that wait\n"
    "                   for the disk (p50, p99, max), and the rate of worker\n"
    "                   messages that allows (the builtin broker's topic rule\n"
    "                   commits each one before its PUBACK); writes nothing\n"
    "                   but WAL. With --json: a \"probe\" member\n"
    "  -h, --help       show this help\n"
    "  --               the end of the options\n"
    "\n"
    "Human output: the effective configuration (defaults marked, secrets\n"
    "redacted), then every error and warning with a hint.\n"
    "\n"
    "Exit codes: 0 valid (warnings allowed), 78 invalid, 64 usage error,\n"
    "66 the environment file cannot be read, 69 the probe cannot reach the\n"
    "database, 70 internal error.\n";

#ifdef WB_CLI_HAVE_PROBE
/* The redacted DATABASE_URL of the report, and whether it is used. */
static const char *report_url(const wb_config_report *rep, bool *used)
{
    for (size_t i = 0; i < wb_config_report_setting_count(rep); i++) {
        const wb_config_setting *s = wb_config_report_setting(rep, i);
        if (strcmp(s->variable, "DATABASE_URL") == 0) {
            *used = s->used && s->value;
            return s->value;
        }
    }
    *used = false;
    return NULL;
}

static void figures_text(const char *what, const wb_cli_probe_figures *f)
{
    printf("  %-26s p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", what, f->p50_ms, f->p99_ms,
           f->max_ms);
}

static void figures_json(const char *what, const wb_cli_probe_figures *f)
{
    printf("\"%s\": {\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}", what, f->p50_ms,
           f->p99_ms, f->max_ms);
}

/* Measures the configured database; prints after the report. */
static int probe(const wb_config *cfg, const wb_config_report *rep, bool json, bool quiet)
{
    bool used;
    const char *shown = report_url(rep, &used);
    const char *url = wb_config_database_url(cfg);
    if (!used || !url) {
        if (json)
            printf(", \"probe\": null}\n");
        else if (!quiet)
            printf("\nProbe: nothing to measure: this configuration uses no database "
                   "(DATABASE_URL is unset or unused).\n");
        return WB_EXIT_OK;
    }
    wb_cli_probe p;
    if (!wb_cli_probe_database(url, PROBE_RUNS, &p)) {
        if (json)
            printf("}\n");
        fprintf(stderr, "workerbus: check: --probe: DATABASE_URL=%s: %s\n", shown, p.why);
        return EX_UNAVAILABLE;
    }
    /* the topic rule commits one message at a time on the broker's thread;
     * an INSERT's own work only lowers this */
    double per_replica = 1000.0 / p.commit.p50_ms;
    bool topic_rule = wb_config_broker_type(cfg) == WB_BROKER_BUILTIN &&
                      wb_config_queue_type(cfg) == WB_QUEUE_POSTGRES;
    bool durable = strcmp(p.synchronous_commit, "off") != 0 &&
                   strcmp(p.synchronous_commit, "local") != 0 && strcmp(p.fsync, "on") == 0;
    if (json) {
        printf(", \"probe\": {\"runs\": %u, \"server_version\": \"%s\", "
               "\"synchronous_commit\": \"%s\", \"fsync\": \"%s\", \"durable\": %s, ",
               p.runs, p.server_version, p.synchronous_commit, p.fsync, durable ? "true" : "false");
        figures_json("round_trip", &p.round_trip);
        printf(", ");
        figures_json("commit", &p.commit);
        if (topic_rule)
            printf(", \"topic_rule_msgs_per_s_per_replica\": %.0f}}\n", per_replica);
        else
            printf(", \"topic_rule_msgs_per_s_per_replica\": null}}\n");
        return WB_EXIT_OK;
    }
    if (quiet)
        return WB_EXIT_OK;
    printf("\nProbe of DATABASE_URL=%s\n  PostgreSQL %s, synchronous_commit=%s, fsync=%s; %u runs "
           "each:\n",
           shown, p.server_version, p.synchronous_commit, p.fsync, p.runs);
    figures_text("round trip (SELECT 1):", &p.round_trip);
    figures_text("commit, flushed to disk:", &p.commit);
    if (!durable)
        printf("  warning: commits do not wait for the disk here (synchronous_commit=%s, "
               "fsync=%s): a crash of PostgreSQL can lose messages already acknowledged to "
               "workers; set synchronous_commit=on and fsync=on\n",
               p.synchronous_commit, p.fsync);
    if (topic_rule)
        printf("  The builtin broker's topic rule commits each worker message before its PUBACK,\n"
               "  one at a time per broker: at the median commit, one replica takes at most\n"
               "  about %.0f msg/s (3 replicas: %.0f msg/s). At one heartbeat per worker every\n"
               "  10 s that is about %.0f workers per replica.\n",
               per_replica, 3 * per_replica, 10 * per_replica);
    else
        printf("  Server-side sends commit once per send or per group of concurrent sends:\n"
               "  at the median commit, one sending thread makes at most about %.0f commits/s.\n",
               per_replica);
    return WB_EXIT_OK;
}
#endif

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
    bool want_probe = false;
    static const wb_cli_opt flags[] = {{"json", NULL, 0},       {"probe", NULL, 0},
                                       {"quiet", NULL, 'q'},    {"env-file", "FILE", 0},
                                       {"set", "KEY=VALUE", 0}, {NULL, NULL, 0}};
    wb_cli_getopt g = {"check", argc, argv, flags, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "json")) {
            json = true;
        } else if (wb_cli_opt_is(&g, k, "probe")) {
            want_probe = true;
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
#ifndef WB_CLI_HAVE_PROBE
    if (want_probe) {
        free(sets);
        return wb_cli_usage_error("check", "--probe needs the postgres backend, which this "
                                           "workerbus was built without");
    }
#endif
    wb_config_report *rep = NULL;
    wb_config *cfg = NULL;
    wb_err err = wb_config_load(&opts, want_probe ? &cfg : NULL, &rep);
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
        size_t len = strlen(out);
        /* --probe adds a member to the JSON object */
        bool open_end = json && cfg && len && out[len - 1] == '}';
        fwrite(out, 1, open_end ? len - 1 : len, stdout);
        if (json && !open_end)
            fputc('\n', stdout);
        wb_free(out);
    }
#ifdef WB_CLI_HAVE_PROBE
    if (cfg) {
        int rc = probe(cfg, rep, json, quiet);
        wb_config_free(cfg);
        wb_config_report_free(rep);
        return rc;
    }
#endif
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
