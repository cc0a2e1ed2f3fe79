/* workerbus broker run | publish | worker: the built-in broker from the
 * command line. */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "workerbus/workerbus.h"

/* ---- broker run ----------------------------------------------------------- */

static const char broker_usage[] =
    "Usage: workerbus broker run [--env-file FILE] [--set KEY=VALUE]...\n"
    "\n"
    "Starts the bundled Mosquitto broker of a MQTT_BROKER_TYPE=builtin\n"
    "configuration and supervises it (restarting it if it dies) until SIGINT\n"
    "or SIGTERM, then stops it cleanly. Its log lines go to standard error.\n"
    "With DATABASE_URL set, it is a replica among others (docs/replicas.md):\n"
    "it also connects to its broker as the replica's server side, keeps the\n"
    "replica's heartbeat and delivers the outbox's messages for the workers\n"
    "its broker holds, draining nothing (`workerbus serve` does the same and\n"
    "drains the iot queue). It says \"broker running\" once all is up.\n"
    "Options: --env-file FILE, --set KEY=VALUE (repeatable), -- (the end of\n"
    "the options). See docs/builtin-broker.md.\n"
    "\n"
    "Exit codes: 0 stopped cleanly, 64 usage, 78 invalid configuration,\n"
    "69 the broker cannot start (the message says why).\n";

#define EX_UNAVAILABLE 69

static int broker_run(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "run") != 0)
        return wb_cli_usage_error("broker", "the subcommand is missing: workerbus broker run");
    wb_cli_config_opts co = {.command = "broker run"};
    int rc = 0;
    static const wb_cli_opt opts[] = {WB_CLI_CONFIG_OPTS, {NULL, NULL, 0}};
    wb_cli_getopt g = {"broker run", argc - 1, argv + 1, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc) && rc)
            return rc;
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 0, &args, &nargs);
    if (bad)
        return bad;
    sigset_t sigs;
    wb_cli_block_signals(&sigs);
    wb_config *cfg = NULL;
    rc = wb_cli_load_config(&co, &cfg);
    if (rc)
        return rc;
    if (wb_config_broker_type(cfg) != WB_BROKER_BUILTIN) {
        fprintf(stderr,
                "workerbus: broker run: MQTT_BROKER_TYPE is %s; the bundled broker "
                "needs MQTT_BROKER_TYPE=builtin\n",
                wb_broker_type_name(wb_config_broker_type(cfg)));
        wb_config_free(cfg);
        return WB_EXIT_CONFIG;
    }
    wb_bundled *b = NULL;
    char *d = NULL;
    wb_err err = wb_bundled_start(cfg, NULL, &b, &d);
    if (err) {
        fprintf(stderr, "workerbus: broker run: %s\n", d ? d : wb_strerror(err));
        wb_free(d);
        wb_config_free(cfg);
        return EX_UNAVAILABLE;
    }
    /* a replica: its server side, for the heartbeat and the deliveries */
    wb_broker *br = NULL;
    const char *replica = NULL;
    if (wb_config_builtin_replica_id(cfg)) {
        wb_broker_opts bo = WB_BROKER_OPTS_INIT;
        bo.client_id = "workerbus-replica";
        if (wb_broker_open(cfg, &bo, &br) != WB_OK || wb_broker_connect(br, 30000) != WB_OK) {
            fprintf(stderr, "workerbus: broker run: the replica's connection to its broker: %s\n",
                    wb_broker_last_error(br));
            wb_broker_close(br);
            wb_bundled_stop(b);
            wb_config_free(cfg);
            return EX_UNAVAILABLE;
        }
        replica = wb_config_builtin_replica_id(cfg);
    }
    fprintf(stderr, "workerbus: broker running for %s%s%s (Ctrl-C stops it)\n",
            wb_config_broker_endpoint(cfg), replica ? " as replica " : "", replica ? replica : "");
    int sig;
    while ((sig = wb_cli_wait_signal(&sigs, 1000)) == 0)
        ;
    fprintf(stderr, "workerbus: %s: stopping the broker (%u restart%s while running)\n",
            strsignal(sig), wb_bundled_restarts(b), wb_bundled_restarts(b) == 1 ? "" : "s");
    wb_broker_close(br);
    err = wb_bundled_stop(b);
    wb_config_free(cfg);
    return err ? WB_EXIT_SOFTWARE : WB_EXIT_OK;
}

const wb_cli_command wb_cli_broker = {
    .name = "broker",
    .summary = "run the bundled Mosquitto broker (workerbus broker run)",
    .usage = broker_usage,
    .run = broker_run,
};

/* ---- publish --------------------------------------------------------------- */

static const char publish_usage[] =
    "Usage: workerbus publish --pool ULID --worker ULID [--qos 0|1] [--message TEXT]\n"
    "                         [--env-file FILE] [--set KEY=VALUE]...\n"
    "\n"
    "Sends one message to a worker (topic <namespace>/readonly/<pool>/<worker>)\n"
    "through the configured broker, as the server does, and waits until the\n"
    "broker acknowledges it. Without --message the message is read from\n"
    "standard input. QoS defaults to 1.\n"
    "\n"
    "Options: --pool and --worker (ULIDs) name the worker; --qos 0 or 1;\n"
    "--message TEXT; --env-file FILE and --set KEY=VALUE (repeatable) give the\n"
    "configuration; -- ends the options.\n"
    "\n"
    "Exit codes: 0 acknowledged, 64 usage, 65 bad pool or worker, 69 cannot\n"
    "connect or not acknowledged in time, 78 invalid configuration.\n";

static char *read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    *len = n;
    return buf;
}

static int publish_run(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "publish"};
    const char *pool = NULL, *worker = NULL, *message = NULL;
    int qos = 1, rc = 0;
    static const wb_cli_opt opts[] = {
        {"pool", "a pool's ULID", 0}, {"worker", "a worker's ULID", 0},
        {"message", "TEXT", 0},       {"qos", "0 or 1", 0},
        WB_CLI_CONFIG_OPTS,           {NULL, NULL, 0}};
    wb_cli_getopt g = {"publish", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
        } else if (wb_cli_opt_is(&g, k, "pool")) {
            pool = v;
        } else if (wb_cli_opt_is(&g, k, "worker")) {
            worker = v;
        } else if (wb_cli_opt_is(&g, k, "message")) {
            message = v;
        } else if (wb_cli_opt_is(&g, k, "qos")) {
            if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
                return wb_cli_usage_error("publish", "--qos takes 0 or 1, got '%s'", v);
            qos = v[0] - '0';
        }
    }
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    if (nargs)
        return wb_cli_usage_error("publish",
                                  "unexpected argument '%s' (the message goes in "
                                  "--message, or on standard input)",
                                  args[0]);
    if (!pool || !worker)
        return wb_cli_usage_error("publish", "--pool and --worker are required");
    char tmp[WB_ULID_STR_SIZE];
    if (wb_ulid_canonical(pool, tmp) || wb_ulid_canonical(worker, tmp)) {
        fprintf(stderr,
                "workerbus: publish: --pool \"%s\" and --worker \"%s\" must be ULIDs (26 "
                "characters of Crockford base32, first 0-7)\n",
                pool, worker);
        return 65;
    }
    wb_config *cfg = NULL;
    rc = wb_cli_load_config(&co, &cfg);
    if (rc)
        return rc;
    size_t len = 0;
    char *owned = NULL;
    if (message) {
        len = strlen(message);
    } else {
        owned = read_stdin(&len);
        message = owned ? owned : "";
    }
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    char id[64];
    snprintf(id, sizeof id, "workerbus-publish-%d", (int)getpid()); /* not the server's session */
    o.client_id = id;
    wb_broker *b = NULL;
    wb_err err = wb_broker_open(cfg, &o, &b);
    if (!err)
        err = wb_broker_connect(b, 10000);
    if (!err)
        err = wb_broker_publish_to_worker(b, pool, worker, message, len, qos);
    if (!err)
        err = wb_broker_flush(b, 10000);
    if (err)
        fprintf(stderr, "workerbus: publish: %s\n", wb_broker_last_error(b));
    else
        fprintf(stderr, "workerbus: published %zu bytes at QoS %d to %s/readonly/%s/%s\n", len, qos,
                wb_config_namespace(cfg), pool, worker);
    wb_broker_disconnect(b, 1000);
    wb_broker_close(b);
    free(owned);
    wb_config_free(cfg);
    return err == WB_OK ? WB_EXIT_OK : err == WB_ERR_INVALID_ARGUMENT ? 65 : EX_UNAVAILABLE;
}

const wb_cli_command wb_cli_publish = {
    .name = "publish",
    .summary = "send a message to a worker, as the server does",
    .usage = publish_usage,
    .run = publish_run,
};

/* ---- worker ----------------------------------------------------------------- */

static const char worker_usage[] =
    "Usage: workerbus worker --pool ULID --worker ULID (--cert FILE --key FILE | --token T)\n"
    "                        [--ca FILE] [--endpoint E] [--connect-to HOST:PORT] [--echo]\n"
    "                        [--count N] [--env-file FILE] [--set KEY=VALUE]...\n"
    "\n"
    "Connects as one worker of a pool, prints every message it receives on its\n"
    "readonly topic (one line each: the payload), and with --echo publishes\n"
    "each one back on its writeonly topic. Stops on SIGINT/SIGTERM, or after\n"
    "--count messages. The endpoint and CA default to MQTT_BROKER_ENDPOINT and\n"
    "MQTT_BROKER_BUILTIN_CA_FILE of the configuration when it loads.\n"
    "--count takes 1 to 2147483647; -- ends the options.\n"
    "\n"
    "Exit codes: 0 stopped, 64 usage, 69 cannot connect (the message says why).\n";

typedef struct worker_ctx {
    wb_worker *w;
    bool echo;
    atomic_uint received;
} worker_ctx;

static void worker_message(void *ctx, const wb_message *m)
{
    worker_ctx *wc = ctx;
    fwrite(m->payload, 1, m->payload_len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (wc->echo && wb_worker_publish(wc->w, m->payload, m->payload_len, 1) != WB_OK)
        fprintf(stderr, "workerbus: worker: echo failed: %s\n", wb_worker_last_error(wc->w));
    atomic_fetch_add(&wc->received, 1);
}

static int worker_run(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "worker"};
    wb_worker_opts o = WB_WORKER_OPTS_INIT;
    worker_ctx wc = {0};
    long count = 0;
    int rc = 0;
    static const wb_cli_opt opts[] = {{"pool", "a pool's ULID", 0},
                                      {"worker", "a worker's ULID", 0},
                                      {"cert", "FILE", 0},
                                      {"key", "FILE", 0},
                                      {"ca", "FILE", 0},
                                      {"token", "the pool's token", 0},
                                      {"endpoint", "[tls://]HOST:PORT", 0},
                                      {"connect-to", "HOST:PORT", 0},
                                      {"echo", NULL, 0},
                                      {"count", "N, 1 to 2147483647", 0},
                                      WB_CLI_CONFIG_OPTS,
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"worker", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
        } else if (wb_cli_opt_is(&g, k, "pool")) {
            o.pool = v;
        } else if (wb_cli_opt_is(&g, k, "worker")) {
            o.worker = v;
        } else if (wb_cli_opt_is(&g, k, "cert")) {
            o.cert_file = v;
        } else if (wb_cli_opt_is(&g, k, "key")) {
            o.key_file = v;
        } else if (wb_cli_opt_is(&g, k, "ca")) {
            o.ca_file = v;
        } else if (wb_cli_opt_is(&g, k, "token")) {
            o.token = v;
        } else if (wb_cli_opt_is(&g, k, "endpoint")) {
            o.endpoint = v;
        } else if (wb_cli_opt_is(&g, k, "connect-to")) {
            o.connect_to = v;
        } else if (wb_cli_opt_is(&g, k, "echo")) {
            wc.echo = true;
        } else if (wb_cli_opt_is(&g, k, "count")) {
            unsigned c = 0;
            if (!wb_cli_parse_uint(v, 1, INT_MAX, &c))
                return wb_cli_usage_error("worker", "--count takes 1 to %d, got '%s'", INT_MAX, v);
            count = (long)c;
        }
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 0, &args, &nargs);
    if (bad)
        return bad;
    if (!o.pool || !o.worker)
        return wb_cli_usage_error("worker", "--pool and --worker are required");
    if (!o.token && (!o.cert_file || !o.key_file))
        return wb_cli_usage_error("worker", "give --cert and --key (TLS), or --token (plain)");
    sigset_t sigs;
    wb_cli_block_signals(&sigs);
    /* defaults from the configuration, when there is a usable one */
    wb_config *cfg = NULL;
    wb_config_load_opts lo = WB_CONFIG_LOAD_OPTS_INIT;
    lo.env_file = co.env_file;
    lo.overrides = co.sets;
    if (wb_config_load(&lo, &cfg, NULL) == WB_OK) {
        if (!o.endpoint)
            o.endpoint = wb_config_broker_endpoint(cfg);
        if (!o.ca_file)
            o.ca_file = wb_config_get(cfg, "MQTT_BROKER_BUILTIN_CA_FILE");
        o.ns = wb_config_namespace(cfg);
    }
    o.on_message = worker_message;
    o.on_message_ctx = &wc;
    char *d = NULL;
    wb_err err = wb_worker_open(&o, &wc.w, &d);
    if (err) {
        fprintf(stderr, "workerbus: worker: %s\n", d ? d : wb_strerror(err));
        wb_free(d);
        wb_config_free(cfg);
        return err == WB_ERR_INVALID_ARGUMENT ? WB_EXIT_USAGE : 69;
    }
    err = wb_worker_connect(wc.w, 15000);
    if (err) {
        fprintf(stderr, "workerbus: worker: cannot connect: %s\n", wb_worker_last_error(wc.w));
        wb_worker_close(wc.w);
        wb_config_free(cfg);
        return 69;
    }
    fprintf(stderr, "workerbus: worker %s of pool %s listening on %s\n", o.worker, o.pool,
            wb_worker_readonly_topic(wc.w));
    while (!wb_cli_wait_signal(&sigs, 100)) {
        if (count && atomic_load(&wc.received) >= (unsigned)count)
            break;
    }
    wb_worker_flush(wc.w, 5000);
    wb_worker_disconnect(wc.w, 1000);
    wb_worker_close(wc.w);
    wb_config_free(cfg);
    return WB_EXIT_OK;
}

const wb_cli_command wb_cli_worker = {
    .name = "worker",
    .summary = "connect as a worker: print its messages, optionally echo them back",
    .usage = worker_usage,
    .run = worker_run,
};
