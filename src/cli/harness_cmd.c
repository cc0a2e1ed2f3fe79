#define _GNU_SOURCE /* pipe2 */
/* workerbus harness up|env|down: the whole environment on loopback, for
 * integration test suites and the demo (harness.h). `up` leaves a daemon
 * running that owns the brokers and the simulated workers. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "workerbus/workerbus.h"

#define EX_UNAVAILABLE 69

static const char harness_usage[] =
    "Usage: workerbus harness up   [--dir DIR] [--workers N] [--heartbeat-ms MS] [--json]\n"
    "                              [--replicas N] [--replica-timeout S]\n"
    "       workerbus harness env  [--dir DIR] [--mode builtin|iotcore | --replica I] [--json]\n"
    "       workerbus harness down [--dir DIR]\n"
    "\n"
    "up brings up on loopback everything either broker type needs: PostgreSQL,\n"
    "the SQS stand-in with the eight queues, the IoT Core stand-in (with its\n"
    "topic-rule forwarder into SQS), the bundled broker (its topic rule into\n"
    "PostgreSQL), a PKI with one worker pool, and N simulated workers on each\n"
    "broker (0-1000, default 3) that send a heartbeat every MS milliseconds\n"
    "(0 for none, up to 3600000; default 5000) and answer every server message\n"
    "with an echo. It returns once all is up, leaving a background process\n"
    "that owns it, and prints the builtin environment.\n"
    "\n"
    "--replicas N (1-16) runs the bundled broker as N server replicas instead,\n"
    "each a `workerbus broker run` process with its own broker, heartbeat and\n"
    "outbox delivery, behind HAProxy in TCP mode (docs/replicas.md); the\n"
    "workers, simulated or yours, connect to HAProxy's endpoint, which is the\n"
    "environment's MQTT_BROKER_ENDPOINT. --replica-timeout S (3-3600) sets\n"
    "their MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT (default 15).\n"
    "\n"
    "env prints the server's environment for a broker type (default builtin)\n"
    "as shell assignments: eval \"$(workerbus harness env)\". With builtin the\n"
    "broker already runs: start the server with `workerbus serve --no-bundled`.\n"
    "--replica I (1-N) prints replica I's environment instead, for a server\n"
    "of that replica: its own broker as MQTT_BROKER_BUILTIN_LISTEN, its\n"
    "MQTT_BROKER_BUILTIN_REPLICA_ID (replica-I); builtin is replica 1's.\n"
    "Both also give the simulated workers' identities: WB_HARNESS_POOL,\n"
    "WB_HARNESS_WORKERS (their ULIDs, space-separated), WB_HARNESS_CA_FILE,\n"
    "WB_HARNESS_POOL_CERT_FILE and WB_HARNESS_POOL_KEY_FILE (the pool's\n"
    "certificate and key, for workers of your own). --json prints all of it\n"
    "as one JSON object (dir, pool, workers, ca_file, pool_cert_file,\n"
    "pool_key_file, mode, environment); DIR/harness.json holds the same\n"
    "identities.\n"
    "\n"
    "down stops everything and removes DIR. -- ends the options.\n"
    "\n"
    "DIR: up makes a new directory /tmp/workerbus-harness-XXXXXX unless --dir\n"
    "or $WB_HARNESS_DIR names one, and exports WB_HARNESS_DIR with the rest, so\n"
    "that env and down, which take --dir else $WB_HARNESS_DIR, find it.\n"
    "Exit codes: 0 done, 64 usage, 66 nothing runs in DIR, 69 something did not\n"
    "start (the message says what), 73 a harness already runs in DIR.\n";

#define EX_CANTCREAT 73

/* $WB_HARNESS_DIR, or NULL. */
static const char *env_dir(void)
{
    const char *d = getenv("WB_HARNESS_DIR");
    return d && *d ? d : NULL;
}

/* KEY=VALUE lines as `export KEY='VALUE'`. */
static void print_exports(const char *env)
{
    for (const char *l = env; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        const char *eq = memchr(l, '=', n);
        if (eq) {
            printf("export %.*s='", (int)(eq - l), l);
            for (const char *c = eq + 1; c < l + n; c++) {
                if (*c == '\'')
                    fputs("'\\''", stdout);
                else
                    putchar(*c);
            }
            puts("'");
        }
        if (!e)
            break;
        l = e + 1;
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

/* The identities of harness.json as shell assignments. */
static void print_identities(const json_t *id)
{
    static const char *const keys[][2] = {
        {"dir", "WB_HARNESS_DIR"},
        {"pool", "WB_HARNESS_POOL"},
        {"ca_file", "WB_HARNESS_CA_FILE"},
        {"pool_cert_file", "WB_HARNESS_POOL_CERT_FILE"},
        {"pool_key_file", "WB_HARNESS_POOL_KEY_FILE"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = json_string_value(json_object_get(id, keys[i][0]));
        if (v)
            printf("export %s='%s'\n", keys[i][1], v); /* ULIDs and our own paths */
    }
    printf("export WB_HARNESS_WORKERS='");
    size_t k;
    json_t *w;
    json_array_foreach(json_object_get(id, "workers"), k, w)
    {
        printf("%s%s", k ? " " : "", json_string_value(w));
    }
    puts("'");
}

/* KEY=VALUE lines as a JSON object. */
static json_t *env_object(const char *env)
{
    json_t *o = json_object();
    for (const char *l = env; o && *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        const char *eq = memchr(l, '=', n);
        if (eq) {
            char *k = strndup(l, (size_t)(eq - l));
            json_object_set_new(o, k, json_stringn(eq + 1, (size_t)(l + n - eq - 1)));
            free(k);
        }
        if (!e)
            break;
        l = e + 1;
    }
    return o;
}

static int env_cmd(const char *dir, const char *mode, unsigned replica, bool json)
{
    char path[512], idpath[512];
    if (replica)
        snprintf(path, sizeof path, "%s/replica-%u.env", dir, replica);
    else
        snprintf(path, sizeof path, "%s/%s.env", dir, mode);
    snprintf(idpath, sizeof idpath, "%s/harness.json", dir);
    char *text = read_file(path);
    json_t *id = text ? json_load_file(idpath, 0, NULL) : NULL;
    if (!text || !id) {
        fprintf(stderr,
                "workerbus: harness env: nothing runs in %s (%s: %s); start it with "
                "`workerbus harness up`\n",
                dir, text ? idpath : path, strerror(errno));
        free(text);
        return WB_EXIT_NOINPUT;
    }
    if (json) {
        json_object_set_new(id, "mode", json_string(mode));
        json_object_set_new(id, "environment", env_object(text));
        char *out = json_dumps(id, JSON_INDENT(2));
        if (out)
            puts(out);
        free(out);
    } else {
        print_exports(text);
        print_identities(id);
    }
    json_decref(id);
    free(text);
    return WB_EXIT_OK;
}

static pid_t read_pid(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/harness.pid", dir);
    char *t = read_file(path);
    pid_t pid = t ? (pid_t)atoi(t) : 0;
    free(t);
    return pid;
}

static bool alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) != 0)
        return false;
    char path[64], st = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%*d %*s %c", &st) != 1)
            st = 0;
        fclose(f);
    }
    return st != 'Z';
}

static int down_cmd(const char *dir)
{
    pid_t pid = read_pid(dir);
    if (!alive(pid)) {
        fprintf(stderr, "workerbus: harness down: nothing runs in %s\n", dir);
        return WB_EXIT_NOINPUT;
    }
    kill(pid, SIGTERM);
    for (int i = 0; i < 1200 && alive(pid); i++)
        usleep(50000);
    if (alive(pid)) {
        fprintf(stderr, "workerbus: harness down: the harness (pid %d) did not stop in 60 s\n",
                (int)pid);
        return WB_EXIT_SOFTWARE;
    }
    fprintf(stderr, "workerbus: harness down: stopped; %s removed\n", dir);
    return WB_EXIT_OK;
}

static int up_cmd(const char *dir, unsigned workers, unsigned heartbeat_ms, unsigned replicas,
                  unsigned replica_timeout, bool json)
{
    if (alive(read_pid(dir))) {
        fprintf(stderr,
                "workerbus: harness up: a harness already runs in %s (workerbus harness "
                "down --dir %s stops it)\n",
                dir, dir);
        return EX_CANTCREAT;
    }
    int fds[2];
    /* close-on-exec: the brokers the daemon starts must not hold it open */
    if (pipe2(fds, O_CLOEXEC) != 0)
        return WB_EXIT_SOFTWARE;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return WB_EXIT_SOFTWARE;
    if (pid == 0) { /* the daemon */
        setsid();
        sigset_t sigs;
        wb_cli_block_signals(&sigs);
        /* it outlives its caller: it keeps none of the caller's descriptors
         * (a pipe or a lock held open would hang whoever waits on it), only
         * the answer pipe (as 3), /dev/null for input and its log */
        if (dup2(fds[1], 3) != 3 || fcntl(3, F_SETFD, FD_CLOEXEC) != 0)
            _exit(1);
        fds[1] = 3;
        close_range(4, ~0u, 0);
        char logp[512];
        mkdir(dir, 0711);
        snprintf(logp, sizeof logp, "%s/harness.log", dir);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        dup2(null, 0);
        dup2(lf >= 0 ? lf : null, 1);
        dup2(lf >= 0 ? lf : null, 2);
        if (lf > 3)
            close(lf);
        if (null > 3)
            close(null);
        wb_harness_opts o = WB_HARNESS_OPTS_INIT;
        o.services_script = wb_cli_services_script();
        o.dir = dir;
        o.workers = workers;
        o.heartbeat_ms = heartbeat_ms;
        o.replicas = replicas;
        o.replica_timeout_s = replica_timeout;
        o.workerbus = wb_cli_self_path(); /* the replicas run this very executable */
        wb_harness *h = NULL;
        char *d = NULL;
        wb_err err = wb_harness_up(&o, &h, &d);
        if (err) {
            dprintf(fds[1], "%s", d ? d : wb_strerror(err));
            _exit(1);
        }
        char pidp[512];
        snprintf(pidp, sizeof pidp, "%s/harness.pid", dir);
        FILE *pf = fopen(pidp, "w");
        if (pf) {
            fprintf(pf, "%d\n", (int)getpid());
            fclose(pf);
        }
        dprintf(fds[1], "ok");
        close(fds[1]);
        int sig;
        while ((sig = wb_cli_wait_signal(&sigs, 1000)) == 0)
            ;
        fprintf(stderr, "harness: %s: stopping\n", strsignal(sig));
        _exit(wb_harness_down(h) == WB_OK ? 0 : 1);
    }
    close(fds[1]);
    char msg[4096] = {0};
    size_t got = 0;
    ssize_t n;
    while (got < sizeof msg - 1 && (n = read(fds[0], msg + got, sizeof msg - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    if (strcmp(msg, "ok") != 0) {
        waitpid(pid, NULL, 0);
        fprintf(stderr, "workerbus: harness up: %s\n", got ? msg : "the harness process died");
        return EX_UNAVAILABLE;
    }
    fprintf(stderr,
            "workerbus: harness up: running in %s (pid %d): PostgreSQL, the SQS stand-in, the "
            "IoT Core stand-in, %s, %u simulated worker%s per broker\n",
            dir, (int)pid, replicas ? "the replicas behind HAProxy" : "the bundled broker", workers,
            workers == 1 ? "" : "s");
    return env_cmd(dir, "builtin", 0, json);
}

static int harness_run(int argc, char **argv)
{
    if (argc < 2)
        return wb_cli_usage_error("harness", "the subcommand is missing: up, env or down");
    const char *sub = argv[1], *dir = env_dir(), *mode = "builtin";
    unsigned workers = 3, heartbeat_ms = 5000, replicas = 0, replica_timeout = 0, replica = 0;
    bool json = false;
    if (strcmp(sub, "up") && strcmp(sub, "env") && strcmp(sub, "down"))
        return wb_cli_usage_error("harness", "unknown subcommand '%s': up, env or down", sub);
    static const wb_cli_opt up_opts[] = {{"dir", "DIR", 0},
                                         {"workers", "N, 0 to 1000", 0},
                                         {"heartbeat-ms", "MS, 0 (none) to 3600000", 0},
                                         {"replicas", "N, 1 to 16", 0},
                                         {"replica-timeout", "SECONDS, 3 to 3600", 0},
                                         {"json", NULL, 0},
                                         {NULL, NULL, 0}};
    static const wb_cli_opt env_opts[] = {{"dir", "DIR", 0},
                                          {"mode", "builtin or iotcore", 0},
                                          {"replica", "I, 1 to 16", 0},
                                          {"json", NULL, 0},
                                          {NULL, NULL, 0}};
    static const wb_cli_opt down_opts[] = {{"dir", "DIR", 0}, {NULL, NULL, 0}};
    char cmd[32];
    snprintf(cmd, sizeof cmd, "harness %s", sub);
    wb_cli_getopt g = {cmd, argc - 1, argv + 1,
                       !strcmp(sub, "up")    ? up_opts
                       : !strcmp(sub, "env") ? env_opts
                                             : down_opts,
                       0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "json")) {
            json = true;
        } else if (wb_cli_opt_is(&g, k, "dir")) {
            dir = v;
        } else if (wb_cli_opt_is(&g, k, "mode")) {
            if (strcmp(v, "builtin") && strcmp(v, "iotcore"))
                return wb_cli_usage_error(cmd, "--mode takes builtin or iotcore, not '%s'", v);
            mode = v;
        } else if (wb_cli_opt_is(&g, k, "replica")) {
            if (!wb_cli_parse_uint(v, 1, WB_HARNESS_MAX_REPLICAS, &replica))
                return wb_cli_usage_error(cmd, "--replica takes 1 to %u, not '%s'",
                                          WB_HARNESS_MAX_REPLICAS, v);
        } else if (wb_cli_opt_is(&g, k, "replicas")) {
            if (!wb_cli_parse_uint(v, 1, WB_HARNESS_MAX_REPLICAS, &replicas))
                return wb_cli_usage_error(cmd, "--replicas takes 1 to %u, not '%s'",
                                          WB_HARNESS_MAX_REPLICAS, v);
        } else if (wb_cli_opt_is(&g, k, "replica-timeout")) {
            if (!wb_cli_parse_uint(v, 3, 3600, &replica_timeout))
                return wb_cli_usage_error(cmd,
                                          "--replica-timeout takes 3 to 3600 seconds, not '%s'", v);
        } else if (wb_cli_opt_is(&g, k, "workers")) {
            if (!wb_cli_parse_uint(v, 0, WB_HARNESS_MAX_WORKERS, &workers))
                return wb_cli_usage_error(cmd, "--workers takes 0 to %u, not '%s'",
                                          WB_HARNESS_MAX_WORKERS, v);
        } else if (wb_cli_opt_is(&g, k, "heartbeat-ms")) {
            if (!wb_cli_parse_uint(v, 0, 3600000, &heartbeat_ms))
                return wb_cli_usage_error(cmd, "--heartbeat-ms takes 0 (none) to 3600000, not '%s'",
                                          v);
        }
    }
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    if (nargs)
        return wb_cli_usage_error(cmd, "unexpected argument '%s'", args[0]);
    char fresh[] = "/tmp/workerbus-harness-XXXXXX";
    if (!strcmp(sub, "up") && !dir) { /* a new directory, as the C API makes */
        if (!mkdtemp(fresh)) {
            fprintf(stderr, "workerbus: harness up: cannot make %s: %s\n", fresh, strerror(errno));
            return EX_CANTCREAT;
        }
        chmod(fresh, 0711); /* the broker's user enters it */
        dir = fresh;
    }
    if (!dir)
        return wb_cli_usage_error("harness",
                                  "which harness? give --dir DIR, or set WB_HARNESS_DIR (`eval "
                                  "\"$(workerbus harness up)\"` sets it)");
    if (!strcmp(sub, "up"))
        return up_cmd(dir, workers, heartbeat_ms, replicas, replica_timeout, json);
    if (!strcmp(sub, "env"))
        return env_cmd(dir, mode, replica, json);
    if (!strcmp(sub, "down"))
        return down_cmd(dir);
    return wb_cli_usage_error("harness", "unknown subcommand '%s': up, env or down", sub);
}

const wb_cli_command wb_cli_harness = {
    .name = "harness",
    .summary = "bring the whole environment up on loopback (up | env | down)",
    .usage = harness_usage,
    .run = harness_run,
};
