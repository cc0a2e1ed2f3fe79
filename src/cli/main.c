/* workerbus: entry point and command dispatch. */
#define _GNU_SOURCE /* fopencookie */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "workerbus/workerbus.h"

static const wb_cli_command *const commands[] = {
    &wb_cli_check, &wb_cli_pki,   &wb_cli_broker,  &wb_cli_publish, &wb_cli_worker,
    &wb_cli_queue, &wb_cli_serve, &wb_cli_harness, &wb_cli_demo,
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

bool wb_cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int wb_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    char text[1024];
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* the message may quote an argument: never raw control bytes */
    char *safe = wb_escape(text, n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
    fprintf(stderr, "workerbus: %s%s%s", cmd ? cmd : "", cmd ? ": " : "", safe ? safe : text);
    wb_free(safe);
    fprintf(stderr, "\nRun 'workerbus %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
    return WB_EXIT_USAGE;
}

static void print_help(FILE *out)
{
    fprintf(out,
            "workerbus %s: the messaging layer between a CI/CD control plane and its workers\n"
            "\n"
            "Usage: workerbus [--help | --version] <command> [options]\n"
            "\n"
            "Commands:\n",
            wb_version());
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "  %-10s %s\n", "help", "show the help of a command: workerbus help <command>");
    fprintf(out, "\n"
                 "The configuration comes from the environment: see docs/configuration.md.\n"
                 "Exit codes: 0 success, 64 usage error, 66 unreadable input file,\n"
                 "70 internal error, 78 invalid configuration.\n");
}

static const wb_cli_command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    }
    return NULL;
}

/* Standard error, with control bytes other than newline and tab written as
 * \xNN: whatever a message quotes (an argument, a file name, a detail from a
 * server), no escape sequence reaches the operator's terminal. */
static ssize_t stderr_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    char out[4096];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02X", c);
        else
            out[o++] = (char)c;
        if (o > sizeof out - 8 || i + 1 == n) {
            for (size_t w = 0; w < o;) {
                ssize_t r = write(STDERR_FILENO, out + w, o - w);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0)
                    return -1;
                w += (size_t)r;
            }
            o = 0;
        }
    }
    return (ssize_t)n;
}

static void escape_stderr(void)
{
    cookie_io_functions_t io = {.write = stderr_write};
    FILE *f = fopencookie(NULL, "w", io);
    if (!f)
        return;
    setvbuf(f, NULL, _IOLBF, 0);
    stderr = f;
}

int main(int argc, char **argv)
{
    escape_stderr();
    if (argc < 2) {
        print_help(stderr);
        return WB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (wb_cli_is_help(cmd)) {
        print_help(stdout);
        return WB_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("workerbus %s\n", wb_version());
        return WB_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            print_help(stdout);
            return WB_EXIT_OK;
        }
        const wb_cli_command *c = find(argv[2]);
        if (!c)
            return wb_cli_usage_error(NULL, "unknown command '%s'", argv[2]);
        fputs(c->usage, stdout);
        return WB_EXIT_OK;
    }
    if (cmd[0] == '-')
        return wb_cli_usage_error(NULL, "unknown option '%s'", cmd);
    const wb_cli_command *c = find(cmd);
    if (!c)
        return wb_cli_usage_error(NULL, "unknown command '%s'", cmd);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (wb_cli_is_help(argv[i])) {
            fputs(c->usage, stdout);
            return WB_EXIT_OK;
        }
    }
    return c->run(argc - 1, argv + 1);
}
