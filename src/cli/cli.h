/* The workerbus command-line tool: shared declarations. */
#ifndef WB_CLI_H
#define WB_CLI_H

#include <stdbool.h>

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

/* Prints "workerbus: <cmd>: message" and the hint to see --help; returns 64. */
int wb_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool wb_cli_is_help(const char *arg);

#endif
