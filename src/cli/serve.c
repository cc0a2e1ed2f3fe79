/* workerbus serve: the whole messaging layer of a server, from the command
 * line: the bundled broker (builtin) or the IoT Core connection, and the
 * iot queue drained into JSON lines or a command. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cli.h"
#include "http_endpoint.h"
#include "workerbus/workerbus.h"

#define EX_UNAVAILABLE 69

static const char serve_usage[] =
    "Usage: workerbus serve [--exec CMD] [--threads N] [--wait S] [--visibility S] [--linger MS]\n"
    "                       [--no-bundled]\n"
    "                       [--log-level debug|info|warn|error] [--log-format FORMAT]\n"
    "                       [--stats-every SECONDS]\n"
    "                       [--http [ADDRESS:]PORT] [--env-file FILE] [--set KEY=VALUE]...\n"
    "\n"
    "Runs the server's messaging layer: with MQTT_BROKER_TYPE=builtin it starts\n"
    "and supervises the bundled broker, whose topic rule writes worker messages\n"
    "into the iot queue; with iotcore it keeps the connection to IoT Core. It\n"
    "drains the iot queue: each worker message is printed on standard output as\n"
    "one JSON line\n"
    "  "
    "{\"id\":...,\"receive_count\":N,\"pool\":...,\"worker\":...,\"timestamp\":MS,\"payload\":{...}"
    "}\n"
    "or, with --exec, that line is given on standard input to `sh -c CMD`\n"
    "(environment: WB_POOL, WB_WORKER, WB_MESSAGE_ID, WB_TIMESTAMP,\n"
    "WB_RECEIVE_COUNT). A message is deleted once printed or once CMD exits 0;\n"
    "otherwise it comes back, and after 3 attempts goes to the dlq queue.\n"
    "\n"
    "Log lines, serve's own and the library's and the bundled broker's alike, go\n"
    "to standard error in one format (--log-format): text, `TIME LEVEL component:\n"
    "message pid=N`; json, one object a line (ts, level, component, msg, pid);\n"
    "journal, `<PRIORITY>component: message` for journald; auto (the default),\n"
    "journal when standard error is the journal, else text. Level: --log-level,\n"
    "else WORKERBUS_LOG_LEVEL from the configuration (default info).\n"
    "SIGUSR1 prints the counters (received, delivered, failed, redriven,\n"
    "reconnects); SIGINT or SIGTERM stops everything cleanly and prints them.\n"
    "SIGHUP reads the configuration again: serve takes its log level\n"
    "(WORKERBUS_LOG_LEVEL), and the bundled broker reloads what can change\n"
    "without a restart (its certificates and key, e.g. after `workerbus pki\n"
    "reissue-broker`, its log level, the topic rule's queue settings); serve\n"
    "says what it did. An invalid configuration changes nothing.\n"
    "\n"
    "Options:\n"
    "  --exec CMD         run `sh -c CMD` for each message (see above)\n"
    "  --threads N        receiving threads, 1-64 (default 2)\n"
    "  --wait SECONDS     long poll of each receive, 1-20 (default 5): also the\n"
    "                     longest a stop waits for a receive to return\n"
    "  --visibility S     how long a received message stays invisible, extended\n"
    "                     while its handler runs, 2-43200 (default 45, as the iot\n"
    "                     queue)\n"
    "  --linger MS        PostgreSQL: a receive that found the queue drained and is\n"
    "                     woken by a new message waits up to MS ms more for others\n"
    "                     before it claims, and the drain's claims are spaced by\n"
    "                     MS while messages come that often, so that one claim\n"
    "                     takes several: fewer transactions per message for that\n"
    "                     much latency; 0-1000 (default 5); 0: claim at once\n"
    "  --stats-every S    print the counters every S seconds too, 1-86400\n"
    "  --log-level L      debug, info, warn or error (default: WORKERBUS_LOG_LEVEL,\n"
    "                     which SIGHUP reads again; without either, info)\n"
    "  --log-format F     auto, text, json or journal (default auto)\n"
    "  --no-bundled       builtin: the broker already runs (workerbus harness, or a\n"
    "                     `workerbus broker run` of its own); connect to it only\n"
    "  --http [ADDR:]PORT serve /healthz (liveness), /readyz (broker connected and\n"
    "                     queue answering: 200, else 503 with why) and /metrics\n"
    "                     (Prometheus text) on ADDR:PORT; ADDR is numeric, by\n"
    "                     default 127.0.0.1 (e.g. --http 9360); PORT 1-65535\n"
    "  --env-file FILE    read the configuration from FILE (KEY=VALUE lines)\n"
    "  --set KEY=VALUE    override one variable (repeatable)\n"
    "  --                 the end of the options\n"
    "\n"
    "Exit codes: 0 stopped cleanly, 64 usage, 69 the broker or the queue cannot\n"
    "be reached at start, 78 invalid configuration.\n";

typedef struct serve {
    const char *exec;
    pthread_mutex_t out_lock;
    wb_log_level level;
    bool level_pinned;      /* --log-level given: WORKERBUS_LOG_LEVEL is not read */
    wb_cli_latency latency; /* handler durations, for /metrics */
} serve;

static serve S = {.out_lock = PTHREAD_MUTEX_INITIALIZER, .level = WB_LOG_INFO};

/* One line of serve's own, in the log's format (component "serve"). */
static void say(wb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(wb_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    wb_log_message(level, "serve", line);
}

/* The JSON line of a message (jansson keeps the field order). */
static char *json_line(const wb_worker_message *m)
{
    json_t *payload = json_loads(m->envelope->payload, JSON_ALLOW_NUL, NULL);
    json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:I, s:o}", "id", m->id, "receive_count",
                          (int)m->receive_count, "pool", m->envelope->pool, "worker",
                          m->envelope->worker, "timestamp", (json_int_t)m->envelope->timestamp_ms,
                          "payload", payload ? payload : json_object());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static wb_err run_exec(const wb_worker_message *m, const char *line)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return WB_ERR_IO;
    char ts[32], rc[16];
    snprintf(ts, sizeof ts, "%llu", (unsigned long long)m->envelope->timestamp_ms);
    snprintf(rc, sizeof rc, "%u", m->receive_count);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        return WB_ERR_IO;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        setenv("WB_POOL", m->envelope->pool, 1);
        setenv("WB_WORKER", m->envelope->worker, 1);
        setenv("WB_MESSAGE_ID", m->id, 1);
        setenv("WB_TIMESTAMP", ts, 1);
        setenv("WB_RECEIVE_COUNT", rc, 1);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-c", S.exec, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    size_t len = strlen(line), off = 0;
    while (off <= len) { /* the line and its newline; a command that ignores it is fine */
        const char *p = off < len ? line + off : "\n";
        ssize_t w = write(in[1], p, off < len ? len - off : 1);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(in[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return WB_OK;
    char why[64];
    if (WIFEXITED(status))
        snprintf(why, sizeof why, "exited with %d", WEXITSTATUS(status));
    else
        snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
    char msg[256];
    snprintf(msg, sizeof msg, "--exec command %s for message %s (receive %u); it stays queued", why,
             m->id, m->receive_count);
    wb_log_message(WB_LOG_WARN, "serve", msg);
    return WB_ERR_BACKEND;
}

static wb_err handle(const wb_worker_message *m);

static wb_err on_worker_message(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    wb_err err = handle(m);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wb_cli_latency_add(&S.latency,
                       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return err;
}

static wb_err handle(const wb_worker_message *m)
{
    char *line = json_line(m);
    if (!line)
        return WB_ERR_NO_MEMORY;
    wb_err err = WB_OK;
    if (S.exec) {
        err = run_exec(m, line);
    } else {
        pthread_mutex_lock(&S.out_lock);
        bool ok = puts(line) >= 0 && fflush(stdout) == 0;
        pthread_mutex_unlock(&S.out_lock);
        err = ok ? WB_OK : WB_ERR_IO; /* a closed stdout keeps the message */
    }
    free(line);
    return err;
}

static void print_counters(const char *when, wb_drain *d, wb_broker *br)
{
    wb_drain_stats ds;
    wb_drain_stats_get(d, &ds);
    wb_broker_stats bs;
    wb_broker_stats_get(br, &bs);
    say(WB_LOG_INFO,
        "%s: received %llu, delivered %llu, failed %llu, redriven %llu, "
        "reconnects %llu, visibility extensions %llu, queue errors %llu\n",
        when, (unsigned long long)ds.received, (unsigned long long)ds.delivered,
        (unsigned long long)ds.failed, (unsigned long long)ds.redriven,
        (unsigned long long)bs.reconnects, (unsigned long long)ds.extended,
        (unsigned long long)ds.queue_errors);
    wb_broker_replica_stats rs;
    if (wb_broker_replica_stats_get(br, &rs) == WB_OK)
        say(WB_LOG_INFO,
            "%s: replica: local %llu, routed %llu, pending %llu, delivered %llu, expired %llu, "
            "taken over %llu, outbox full %llu, database failures %llu; outbox %llu, "
            "%u replica%s alive%s\n",
            when, (unsigned long long)rs.local, (unsigned long long)rs.routed,
            (unsigned long long)rs.pending, (unsigned long long)rs.delivered,
            (unsigned long long)rs.expired, (unsigned long long)rs.taken_over,
            (unsigned long long)rs.outbox_full, (unsigned long long)rs.db_failures,
            (unsigned long long)rs.outbox_size, rs.replicas, rs.replicas == 1 ? "" : "s",
            rs.registered ? "" : " (this one's heartbeat does not reach the database)");
}

/* SIGHUP: the configuration read again from its source; the bundled
 * broker takes what can change without a restart (its credentials, its log
 * level, the topic rule's queue settings). It says what it did. */
static void reload(const wb_cli_config_opts *co, wb_config **cfg, wb_bundled *bundled,
                   wb_config **older, size_t *nolder, size_t max)
{
    say(WB_LOG_INFO, "SIGHUP: reading the configuration again\n");
    wb_config *next = NULL;
    if (wb_cli_load_config(co, &next) != WB_EXIT_OK) {
        say(WB_LOG_WARN, "SIGHUP: the configuration is invalid now (above); "
                         "nothing changed\n");
        return;
    }
    if (*nolder >= max) {
        say(WB_LOG_WARN,
            "SIGHUP: %zu reloads already: restart to reload "
            "again\n",
            max);
        wb_config_free(next);
        return;
    }
    char *d = NULL;
    if (bundled) {
        wb_err err = wb_bundled_reload(bundled, next, &d);
        if (err) {
            say(WB_LOG_WARN,
                "SIGHUP: the bundled broker kept its settings: "
                "%s\n",
                d ? d : wb_strerror(err));
            wb_free(d);
            wb_config_free(next);
            return;
        }
        say(WB_LOG_INFO,
            "SIGHUP: the bundled broker (mosquitto pid %d) reloaded its "
            "certificates and key, its log level and the topic rule's queue settings\n",
            wb_bundled_pid(bundled));
    } else {
        say(WB_LOG_INFO, "SIGHUP: no bundled broker here (--no-bundled or "
                         "iotcore): nothing to reload\n");
    }
    wb_log_level level = wb_config_log_level(next);
    if (S.level_pinned) {
        say(WB_LOG_INFO, "SIGHUP: the log level stays %s (--log-level sets it)\n",
            wb_log_level_name(S.level));
    } else if (level != S.level) {
        /* the threshold is the more verbose of the two levels while this
         * is said (at info, or warn between warn and error), so that the
         * line is seen whichever way the level went */
        wb_log_level was = S.level, at = level < was ? level : was;
        wb_log_set_level(at);
        say(at > WB_LOG_INFO ? at : WB_LOG_INFO,
            "SIGHUP: log level %s, was %s (WORKERBUS_LOG_LEVEL)\n", wb_log_level_name(level),
            wb_log_level_name(was));
        S.level = level;
        wb_log_set_level(level);
    }
    say(WB_LOG_INFO, "SIGHUP: logs go to standard error, which stays open; "
                     "the server's own connection, the queue and the drain keep their "
                     "settings (a restart applies changes to those)\n");
    older[(*nolder)++] = *cfg; /* the broker connection still reads it */
    *cfg = next;
}

static int serve_run(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "serve"};
    wb_drain_opts dopts = WB_DRAIN_OPTS_INIT;
    dopts.wait_s = 5;
    unsigned stats_every = 0, linger_ms = WB_QUEUE_LINGER_DEFAULT_MS;
    bool no_bundled = false;
    char http_listen[128] = "";
    wb_log_format log_format = WB_LOG_FORMAT_AUTO;
    int rc = 0;
    static const wb_cli_opt opts[] = {{"exec", "CMD, a shell command", 0},
                                      {"threads", "N, 1 to 64", 0},
                                      {"wait", "SECONDS, 1 to 20", 0},
                                      {"visibility", "SECONDS, 2 to 43200", 0},
                                      {"linger", "MS, 0 to 1000", 0},
                                      {"no-bundled", NULL, 0},
                                      {"log-level", "debug, info, warn or error", 0},
                                      {"log-format", "auto, text, json or journal", 0},
                                      {"stats-every", "SECONDS, 1 to 86400", 0},
                                      {"http", "[ADDRESS:]PORT", 0},
                                      WB_CLI_CONFIG_OPTS,
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"serve", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
            continue;
        }
        char a[64];
        snprintf(a, sizeof a, "--%s", opts[k].name);
        if (!strcmp(a, "--no-bundled")) {
            no_bundled = true;
            continue;
        }
        if (!strcmp(a, "--log-format") && v) {
            static const char *const names[] = {"auto", "text", "json", "journal"};
            bool found = false;
            for (int j = 0; j < 4 && !found; j++) {
                if (!strcmp(v, names[j])) {
                    log_format = (wb_log_format)j;
                    found = true;
                }
            }
            if (!found)
                return wb_cli_usage_error(
                    "serve", "--log-format takes auto, text, json or journal, not '%s'", v);
        } else if (!strcmp(a, "--http") && v) {
            bool bare = strspn(v, "0123456789") == strlen(v);
            snprintf(http_listen, sizeof http_listen, "%s%s", bare ? "127.0.0.1:" : "", v);
        } else if (!strcmp(a, "--exec") && v) {
            S.exec = v;
        } else if (!strcmp(a, "--threads") && v) {
            if (!wb_cli_parse_uint(v, 1, 64, &dopts.threads))
                return wb_cli_usage_error("serve", "--threads takes 1 to 64, not '%s'", v);
        } else if (!strcmp(a, "--wait") && v) {
            if (!wb_cli_parse_uint(v, 1, 20, &dopts.wait_s))
                return wb_cli_usage_error("serve", "--wait takes 1 to 20 seconds, not '%s'", v);
        } else if (!strcmp(a, "--linger") && v) {
            if (!wb_cli_parse_uint(v, 0, WB_QUEUE_LINGER_MAX_MS, &linger_ms))
                return wb_cli_usage_error("serve", "--linger takes 0 to %u ms, not '%s'",
                                          WB_QUEUE_LINGER_MAX_MS, v);
        } else if (!strcmp(a, "--visibility") && v) {
            if (!wb_cli_parse_uint(v, 2, 43200, &dopts.visibility_s))
                return wb_cli_usage_error("serve",
                                          "--visibility takes 2 to 43200 seconds, not "
                                          "'%s'",
                                          v);
        } else if (!strcmp(a, "--stats-every") && v) {
            if (!wb_cli_parse_uint(v, 1, 86400, &stats_every))
                return wb_cli_usage_error("serve",
                                          "--stats-every takes 1 to 86400 seconds, "
                                          "not '%s'",
                                          v);
        } else if (!strcmp(a, "--log-level") && v) {
            static const wb_log_level levels[] = {WB_LOG_DEBUG, WB_LOG_INFO, WB_LOG_WARN,
                                                  WB_LOG_ERROR};
            bool found = false;
            for (size_t j = 0; j < 4 && !found; j++)
                if (!strcmp(v, wb_log_level_name(levels[j]))) {
                    S.level = levels[j];
                    S.level_pinned = true;
                    found = true;
                }
            if (!found)
                return wb_cli_usage_error(
                    "serve", "--log-level takes debug, info, warn or error, not '%s'", v);
        }
    }
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    if (nargs)
        return wb_cli_usage_error("serve", "unexpected argument '%s': serve takes options only",
                                  args[0]);
    sigset_t sigs;
    wb_cli_block_signals(&sigs);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error of the handler, not a crash */
    wb_log_set_format(log_format);
    wb_log_set_level(S.level);

    /* every descriptor the hard limit allows: the queue's connections,
     * probes and scrapes here, and the bundled broker's workers, which it
     * inherits (and raises again itself) */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        rlim_t soft = nofile.rlim_cur;
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) == 0)
            say(WB_LOG_DEBUG, "open-file limit raised from %llu to %llu\n",
                (unsigned long long)soft, (unsigned long long)nofile.rlim_max);
    }

    wb_config *cfg = NULL;
    rc = wb_cli_load_config(&co, &cfg);
    if (rc)
        return rc;
    if (!S.level_pinned) {
        S.level = wb_config_log_level(cfg);
        wb_log_set_level(S.level);
    }
    wb_config *older[16] = {NULL}; /* configurations a reload replaced: still in use */
    size_t nolder = 0;
    wb_bundled *bundled = NULL;
    wb_cli_http *http = NULL;
    wb_queue *probe = NULL;
    wb_broker *br = NULL;
    wb_queue *q = NULL;
    wb_drain *d = NULL;
    char *detail = NULL;
    int exit_code = WB_EXIT_OK;
    if (wb_config_broker_type(cfg) == WB_BROKER_BUILTIN && !no_bundled) {
        wb_err err = wb_bundled_start(cfg, NULL, &bundled, &detail);
        if (err) {
            say(WB_LOG_ERROR, "the bundled broker: %s\n", detail ? detail : wb_strerror(err));
            exit_code = EX_UNAVAILABLE;
            goto out;
        }
    }
    if (wb_broker_open(cfg, NULL, &br) != WB_OK || wb_broker_connect(br, 30000) != WB_OK) {
        say(WB_LOG_ERROR, "the %s broker: %s\n", wb_broker_type_name(wb_config_broker_type(cfg)),
            wb_broker_last_error(br));
        exit_code = EX_UNAVAILABLE;
        goto out;
    }
    wb_queue_opts qopts = WB_QUEUE_OPTS_INIT;
    qopts.receive_linger_ms = linger_ms;
    if (wb_queue_open(cfg, &qopts, &q) != WB_OK) {
        say(WB_LOG_ERROR, "the %s queue: %s\n", wb_queue_type_name(wb_config_queue_type(cfg)),
            wb_queue_last_error(NULL));
        exit_code = EX_UNAVAILABLE;
        goto out;
    }
    if (wb_drain_start(q, &dopts, on_worker_message, NULL, &d) != WB_OK) {
        say(WB_LOG_ERROR, "cannot start draining the iot queue\n");
        exit_code = WB_EXIT_SOFTWARE;
        goto out;
    }
    if (http_listen[0]) {
        /* the probes' own handle: one attempt, so that a probe never waits
         * on a retry */
        wb_queue_opts po = WB_QUEUE_OPTS_INIT;
        po.retry_limit_ms = WB_QUEUE_NO_RETRY;
        if (wb_queue_open(cfg, &po, &probe) != WB_OK) {
            say(WB_LOG_ERROR, "the %s queue: %s\n", wb_queue_type_name(wb_config_queue_type(cfg)),
                wb_queue_last_error(NULL));
            exit_code = EX_UNAVAILABLE;
            goto stop;
        }
        wb_cli_http_source hs = {.broker = br,
                                 .drain = d,
                                 .probe = probe,
                                 .latency = &S.latency,
                                 .broker_type = wb_broker_type_name(wb_config_broker_type(cfg)),
                                 .queue_type = wb_queue_backend(q)};
        int hrc = wb_cli_http_start(http_listen, &hs, &http);
        if (hrc) {
            exit_code = hrc;
            goto stop;
        }
        say(WB_LOG_INFO, "http://%s/ serves /healthz, /readyz and /metrics\n", http_listen);
    }
    say(WB_LOG_INFO,
        "%s broker, %s queue; draining iot with %u thread%s (Ctrl-C "
        "stops, SIGUSR1 prints the counters)\n",
        wb_broker_type_name(wb_config_broker_type(cfg)), wb_queue_backend(q),
        dopts.threads ? dopts.threads : 2, dopts.threads == 1 ? "" : "s");
    time_t last = time(NULL);
    /* under systemd (Type=notify): ready now; the watchdog is fed from this
     * loop, so a stuck main loop is restarted */
    uint64_t watchdog_us = 0;
    bool watchdog = sd_watchdog_enabled(0, &watchdog_us) > 0;
    sd_notifyf(0, "READY=1\nSTATUS=%s broker, %s queue: draining iot",
               wb_broker_type_name(wb_config_broker_type(cfg)), wb_queue_backend(q));
    for (;;) {
        int sig = wb_cli_wait_signal(
            &sigs, watchdog && watchdog_us < 2000000u ? (unsigned)(watchdog_us / 2000u) : 1000);
        if (watchdog)
            sd_notify(0, "WATCHDOG=1");
        if (sig == SIGUSR1) {
            print_counters("counters", d, br);
        } else if (sig == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            reload(&co, &cfg, bundled, older, &nolder, sizeof older / sizeof older[0]);
            sd_notify(0, "READY=1");
        } else if (sig) {
            sd_notify(0, "STOPPING=1");
            say(WB_LOG_INFO, "%s: stopping\n", strsignal(sig));
            break;
        }
        if (stats_every && time(NULL) - last >= (time_t)stats_every) {
            print_counters("counters", d, br);
            last = time(NULL);
        }
    }
stop:
    wb_cli_http_stop(http); /* before what it reports on */
    http = NULL;
    wb_drain_stop(d); /* handlers finish; their messages are deleted or left */
    print_counters("at exit", d, br);
out:
    wb_cli_http_stop(http);
    wb_queue_close(probe);
    wb_free(detail);
    wb_drain_free(d);
    wb_queue_close(q);
    wb_broker_close(br);
    if (bundled && wb_bundled_stop(bundled) != WB_OK && exit_code == WB_EXIT_OK)
        exit_code = WB_EXIT_SOFTWARE;
    wb_config_free(cfg);
    for (size_t i = 0; i < nolder; i++)
        wb_config_free(older[i]);
    return exit_code;
}

const wb_cli_command wb_cli_serve = {
    .name = "serve",
    .summary = "run the broker and drain worker messages from the iot queue",
    .usage = serve_usage,
    .run = serve_run,
};
