/* The workerbus command-line tool: shared declarations. */
#ifndef WB_CLI_H
#define WB_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "workerbus/workerbus.h"

/* sysexits.h values, spelled out so the meaning is visible where used */
#define WB_EXIT_OK       0
#define WB_EXIT_USAGE    64 /* EX_USAGE: the command line is wrong */
#define WB_EXIT_NOINPUT  66 /* EX_NOINPUT: an input file cannot be read */
#define WB_EXIT_SOFTWARE 70 /* EX_SOFTWARE: an internal error (e.g. out of memory) */
#define WB_EXIT_CONFIG   78 /* EX_CONFIG: the configuration is invalid */

typedef struct wb_cli_command {
    const char *name;
    const char *summary;
    const char *usage; /* full --help text */
    int (*run)(int argc, char **argv);
} wb_cli_command;

extern const wb_cli_command wb_cli_check;
extern const wb_cli_command wb_cli_pki;
extern const wb_cli_command wb_cli_broker;
extern const wb_cli_command wb_cli_publish;
extern const wb_cli_command wb_cli_worker;
extern const wb_cli_command wb_cli_queue;
extern const wb_cli_command wb_cli_serve;
extern const wb_cli_command wb_cli_harness;
extern const wb_cli_command wb_cli_demo;

/* --env-file FILE and --set KEY=VALUE, shared by the commands that load the
 * configuration. */
typedef struct wb_cli_config_opts {
    const char *command;
    const char *env_file;
    const char *sets[64];
    size_t nsets;
    unsigned parts; /* WB_CONFIG_ALL, or WB_CONFIG_QUEUE for the queue commands */
} wb_cli_config_opts;

/* ---- options: getopt_long with what each value takes ---------------------- */

/* One long option of a command: its name without "--", and what its value
 * takes for the error that names it when the value is missing ("N, 1 to
 * 64"), or NULL when it takes none. */
typedef struct wb_cli_opt {
    const char *name;
    const char *takes;
    char short_name; /* e.g. 'q' for -q; 0: none */
} wb_cli_opt;

/* The configuration options, at the end of a command's list. */
#define WB_CLI_CONFIG_OPTS                                                                         \
    {"env-file", "FILE", 0},                                                                       \
    {                                                                                              \
        "set", "KEY=VALUE", 0                                                                      \
    }

/* A walk over one command's argv with getopt_long: options in any order
 * among the arguments, "--name VALUE" or "--name=VALUE", "--" ending the
 * options. argv[0] is the command's (or subcommand's) name. */
typedef struct wb_cli_getopt {
    const char *cmd; /* for messages: "serve", "pki init" */
    int argc;
    char **argv;
    const wb_cli_opt *opts; /* ends with a NULL name */
    int started;
} wb_cli_getopt;

#define WB_CLI_GETOPT_END (-1) /* no more options: the arguments follow */
#define WB_CLI_GETOPT_BAD (-2) /* a usage error was printed: exit 64 */

/* The next option: its index in opts, with its value in *value (NULL when
 * it takes none); WB_CLI_GETOPT_END; or WB_CLI_GETOPT_BAD after saying what
 * is wrong (a missing value and what it takes, an unknown option and the
 * options there are). */
int wb_cli_getopt_next(wb_cli_getopt *g, const char **value);
/* After WB_CLI_GETOPT_END: the arguments that are not options, in order. */
char **wb_cli_getopt_args(const wb_cli_getopt *g, int *count);
/* After the loop that ended with k: the arguments, at most max of them.
 * Returns 0, or 64 after the usage error (k's, or one naming the first
 * argument too many). */
int wb_cli_getopt_rest(const wb_cli_getopt *g, int k, int max, char ***args, int *count);
/* This program's own path (to run it again, as the harness's replicas do);
 * NULL when /proc does not say. */
const char *wb_cli_self_path(void);
/* Whether option k is the one named name. */
bool wb_cli_opt_is(const wb_cli_getopt *g, int k, const char *name);

/* Takes option k when it is a configuration option (--env-file, --set);
 * sets *rc to a usage error when its value is malformed. */
bool wb_cli_config_opt(wb_cli_config_opts *o, const wb_cli_getopt *g, int k, const char *value,
                       int *rc);
/* Loads the configuration, printing its problems; returns an exit code. */
int wb_cli_load_config(const wb_cli_config_opts *o, wb_config **out);
/* Blocks SIGINT and SIGTERM (call before starting threads). */
void wb_cli_block_signals(sigset_t *set);
/* Waits up to timeout_ms for one of them; returns it, or 0. */
int wb_cli_wait_signal(const sigset_t *set, unsigned timeout_ms);

/* Prints "workerbus: <cmd>: message" and the hint to see --help; returns 64. */
int wb_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool wb_cli_is_help(const char *arg);
/* A decimal number from lo to hi, and nothing else (no sign, no blanks). */
bool wb_cli_parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out);
/* The services script for the harness: the installed one (NULL, the
 * library's default) when it is there, else the source tree's that this
 * tool was built from. */
const char *wb_cli_services_script(void);

#endif
