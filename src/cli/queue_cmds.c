/* workerbus queue send | receive | delete | stats: the configured message
 * queue (SQS or PostgreSQL) from the command line, for operators. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "workerbus/workerbus.h"

#define EX_UNAVAILABLE 69
#define EX_DATAERR     65

static const char queue_usage[] =
    "Usage: workerbus queue COMMAND QUEUE [options] [--env-file FILE] [--set KEY=VALUE]...\n"
    "\n"
    "The configured message queue (MESSAGE_QUEUE_TYPE: sqs or postgres). QUEUE is a\n"
    "logical queue: async-jobs, async-jobs.fifo, cronjobs, dlq, dlq.fifo,\n"
    "events-inbox, iot or webhooks.\n"
    "\n"
    "Commands:\n"
    "  send QUEUE [BODY]      sends BODY (else standard input); prints the message id\n"
    "      --delay S          invisible for S seconds first (0-900; standard queues)\n"
    "      --group G          message group id (FIFO queues: required)\n"
    "      --dedup D          deduplication id (FIFO; default: SHA-256 of the body)\n"
    "  receive QUEUE          receives messages; prints one JSON object per line\n"
    "      --max N            1-10 messages (default 1)\n"
    "      --wait S           long poll up to S seconds (0-20, default 0)\n"
    "      --visibility S     visibility timeout, 0-43200 (default: the queue's)\n"
    "      --delete           delete what was received (after printing it)\n"
    "      --body             print only the bodies, one per line\n"
    "  delete QUEUE RECEIPT...  deletes messages by receipt (from receive)\n"
    "  stats [QUEUE...]       visible, in-flight and delayed counts (all queues\n"
    "                         when none is named); --json for JSON\n"
    "--env-file FILE and --set KEY=VALUE (repeatable) give the queue's\n"
    "variables; -- ends the options (a BODY that starts with '-' follows it).\n"
    "\n"
    "SQS credentials come from the standard AWS chain (environment, shared\n"
    "files with AWS_PROFILE, web identity, container, IMDSv2);\n"
    "AWS_ENDPOINT_URL_SQS points at another SQS endpoint.\n"
    "\n"
    "Exit codes: 0 done, 64 usage, 65 refused input (too large, bad characters,\n"
    "...), 69 the queue cannot be reached or refused the request, 78 invalid\n"
    "configuration.\n";

static bool parse_lq(const char *s, wb_logical_queue *out)
{
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        if (strcmp(s, wb_logical_queue_name((wb_logical_queue)i)) == 0) {
            *out = (wb_logical_queue)i;
            return true;
        }
    }
    return false;
}

static int bad_queue(const char *cmd, const char *s)
{
    return wb_cli_usage_error(cmd,
                              "'%s' is not a logical queue (async-jobs, async-jobs.fifo, "
                              "cronjobs, dlq, dlq.fifo, events-inbox, iot, webhooks)",
                              s);
}

/* Exit code for a queue error. */
static int fail(const char *cmd, const wb_queue *q, wb_err err)
{
    const char *why = q ? wb_queue_last_error(q) : NULL;
    fprintf(stderr, "workerbus: queue %s: %s\n", cmd, why && *why ? why : wb_strerror(err));
    return err == WB_ERR_INVALID_ARGUMENT || err == WB_ERR_TOO_LARGE ? EX_DATAERR
           : err == WB_ERR_CONFIG                                    ? WB_EXIT_CONFIG
                                                                     : EX_UNAVAILABLE;
}

static int open_queue(const wb_cli_config_opts *co, wb_config **cfg, wb_queue **q)
{
    /* the queue's variables only: a broker setting the command does not
     * use cannot stop it */
    wb_cli_config_opts qo = *co;
    qo.parts = WB_CONFIG_QUEUE;
    int rc = wb_cli_load_config(&qo, cfg);
    if (rc)
        return rc;
    wb_err err = wb_queue_open(*cfg, NULL, q);
    if (err) {
        fprintf(stderr, "workerbus: %s: cannot open the %s queue: %s\n", co->command,
                wb_queue_type_name(wb_config_queue_type(*cfg)), wb_queue_last_error(NULL));
        wb_config_free(*cfg);
        *cfg = NULL;
        return err == WB_ERR_CONFIG ? WB_EXIT_CONFIG : EX_UNAVAILABLE;
    }
    return 0;
}

static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, stdin);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            char *nb = cap < (2u << 20) ? realloc(b, cap * 2) : NULL;
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    *len = n;
    return b;
}

static int q_send(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "queue send"};
    const char *queue = NULL, *body = NULL, *group = NULL, *dedup = NULL;
    unsigned delay = 0;
    int rc = 0;
    static const wb_cli_opt opts[] = {{"delay", "SECONDS, 0 to 900", 0},
                                      {"group", "a message group id", 0},
                                      {"dedup", "a deduplication id", 0},
                                      WB_CLI_CONFIG_OPTS,
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"queue send", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
        } else if (wb_cli_opt_is(&g, k, "delay")) {
            if (!wb_cli_parse_uint(v, 0, 900, &delay))
                return wb_cli_usage_error("queue send", "--delay takes 0-900 seconds, not '%s'", v);
        } else if (wb_cli_opt_is(&g, k, "group")) {
            group = v;
        } else if (wb_cli_opt_is(&g, k, "dedup")) {
            dedup = v;
        }
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 2, &args, &nargs);
    if (bad)
        return bad;
    queue = nargs > 0 ? args[0] : NULL;
    body = nargs > 1 ? args[1] : NULL;
    wb_logical_queue lq;
    if (!queue)
        return wb_cli_usage_error("queue send", "the queue is missing");
    if (!parse_lq(queue, &lq))
        return bad_queue("queue send", queue);
    size_t len = body ? strlen(body) : 0;
    char *owned = NULL;
    if (!body || strcmp(body, "-") == 0) {
        owned = read_stdin(&len);
        if (!owned) {
            fprintf(stderr, "workerbus: queue send: cannot read standard input\n");
            return WB_EXIT_SOFTWARE;
        }
        body = owned;
    }
    wb_config *cfg;
    wb_queue *q;
    rc = open_queue(&co, &cfg, &q);
    if (rc) {
        free(owned);
        return rc;
    }
    wb_queue_entry e = {
        .body = body, .body_len = len, .delay_s = delay, .group_id = group, .dedup_id = dedup};
    char id[WB_QUEUE_ID_MAX + 1] = "";
    wb_err err = wb_queue_send(q, lq, &e, id);
    rc = err ? fail("send", q, err) : 0;
    if (!err)
        printf("%s\n", id);
    free(owned);
    wb_queue_close(q);
    wb_config_free(cfg);
    return rc;
}

static int q_receive(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "queue receive"};
    const char *queue = NULL;
    unsigned max = 1, wait = 0, vis = 0;
    int visibility = -1;
    bool del = false, bodies = false;
    int rc = 0;
    static const wb_cli_opt opts[] = {{"max", "N, 1 to 10", 0},
                                      {"wait", "SECONDS, 0 to 20", 0},
                                      {"visibility", "SECONDS, 0 to 43200", 0},
                                      {"delete", NULL, 0},
                                      {"body", NULL, 0},
                                      WB_CLI_CONFIG_OPTS,
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"queue receive", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
        } else if (wb_cli_opt_is(&g, k, "max")) {
            if (!wb_cli_parse_uint(v, 0, 10, &max) || max == 0)
                return wb_cli_usage_error("queue receive", "--max takes 1-10, not '%s'", v);
        } else if (wb_cli_opt_is(&g, k, "wait")) {
            if (!wb_cli_parse_uint(v, 0, 20, &wait))
                return wb_cli_usage_error("queue receive", "--wait takes 0-20 seconds, not '%s'",
                                          v);
        } else if (wb_cli_opt_is(&g, k, "visibility")) {
            if (!wb_cli_parse_uint(v, 0, 43200, &vis))
                return wb_cli_usage_error("queue receive",
                                          "--visibility takes 0-43200 seconds, not '%s'", v);
            visibility = (int)vis;
        } else if (wb_cli_opt_is(&g, k, "delete")) {
            del = true;
        } else if (wb_cli_opt_is(&g, k, "body")) {
            bodies = true;
        }
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 1, &args, &nargs);
    if (bad)
        return bad;
    queue = nargs ? args[0] : NULL;
    wb_logical_queue lq;
    if (!queue)
        return wb_cli_usage_error("queue receive", "the queue is missing");
    if (!parse_lq(queue, &lq))
        return bad_queue("queue receive", queue);
    wb_config *cfg;
    wb_queue *q;
    rc = open_queue(&co, &cfg, &q);
    if (rc)
        return rc;
    wb_queue_message *m = NULL;
    size_t n = 0;
    wb_err err = wb_queue_receive(q, lq, max, wait, visibility, &m, &n);
    if (err)
        rc = fail("receive", q, err);
    for (size_t i = 0; i < n; i++) {
        if (bodies) {
            fwrite(m[i].body, 1, m[i].body_len, stdout);
            putchar('\n');
            continue;
        }
        json_t *j =
            json_pack("{s:s, s:s, s:I, s:I, s:s%}", "id", m[i].id, "receipt", m[i].receipt,
                      "receive_count", (json_int_t)m[i].receive_count, "sent_ms",
                      (json_int_t)m[i].sent_ms, "body", (const char *)m[i].body, m[i].body_len);
        if (j && m[i].group_id)
            json_object_set_new(j, "group_id", json_string(m[i].group_id));
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(j);
    }
    fflush(stdout);
    if (!err && del && n) {
        const char *r[WB_QUEUE_BATCH_MAX];
        for (size_t i = 0; i < n; i++)
            r[i] = m[i].receipt;
        err = wb_queue_delete_batch(q, lq, r, n, NULL);
        if (err)
            rc = fail("receive --delete", q, err);
    }
    wb_queue_messages_free(m, n);
    wb_queue_close(q);
    wb_config_free(cfg);
    return rc;
}

static int q_delete(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "queue delete"};
    const char *queue = NULL;
    const char *receipts[256];
    size_t nr = 0;
    int rc = 0;
    static const wb_cli_opt opts[] = {WB_CLI_CONFIG_OPTS, {NULL, NULL, 0}};
    wb_cli_getopt g = {"queue delete", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0)
        if (wb_cli_config_opt(&co, &g, k, v, &rc) && rc)
            return rc;
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    for (int i = 0; i < nargs; i++) {
        if (!queue)
            queue = args[i];
        else if (nr < 256)
            receipts[nr++] = args[i];
        else
            return wb_cli_usage_error("queue delete", "at most 256 receipts at a time");
    }
    wb_logical_queue lq;
    if (!queue)
        return wb_cli_usage_error("queue delete", "the queue is missing");
    if (!parse_lq(queue, &lq))
        return bad_queue("queue delete", queue);
    if (!nr)
        return wb_cli_usage_error("queue delete", "no receipt given");
    wb_config *cfg;
    wb_queue *q;
    rc = open_queue(&co, &cfg, &q);
    if (rc)
        return rc;
    for (size_t at = 0; at < nr && !rc; at += WB_QUEUE_BATCH_MAX) {
        size_t batch = nr - at < WB_QUEUE_BATCH_MAX ? nr - at : WB_QUEUE_BATCH_MAX;
        wb_err err = wb_queue_delete_batch(q, lq, receipts + at, batch, NULL);
        if (err)
            rc = fail("delete", q, err);
    }
    wb_queue_close(q);
    wb_config_free(cfg);
    return rc;
}

static int q_stats(int argc, char **argv)
{
    wb_cli_config_opts co = {.command = "queue stats"};
    bool want[WB_LQ__COUNT] = {false}, any = false, json = false;
    int rc = 0;
    static const wb_cli_opt opts[] = {{"json", NULL, 0}, WB_CLI_CONFIG_OPTS, {NULL, NULL, 0}};
    wb_cli_getopt g = {"queue stats", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_config_opt(&co, &g, k, v, &rc)) {
            if (rc)
                return rc;
        } else if (wb_cli_opt_is(&g, k, "json")) {
            json = true;
        }
    }
    if (k == WB_CLI_GETOPT_BAD)
        return WB_EXIT_USAGE;
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    for (int i = 0; i < nargs; i++) {
        wb_logical_queue lq;
        if (!parse_lq(args[i], &lq))
            return bad_queue("queue stats", args[i]);
        want[lq] = any = true;
    }
    wb_config *cfg;
    wb_queue *q;
    rc = open_queue(&co, &cfg, &q);
    if (rc)
        return rc;
    json_t *all = json ? json_object() : NULL;
    if (!json)
        printf("%-16s %10s %10s %10s\n", "queue", "visible", "in-flight", "delayed");
    for (int i = 0; i < WB_LQ__COUNT && !rc; i++) {
        if (any && !want[i])
            continue;
        wb_queue_counts c;
        wb_err err = wb_queue_counts_get(q, (wb_logical_queue)i, &c);
        if (err) {
            rc = fail("stats", q, err);
            break;
        }
        const char *name = wb_logical_queue_name((wb_logical_queue)i);
        if (json)
            json_object_set_new(all, name,
                                json_pack("{s:I, s:I, s:I}", "visible", (json_int_t)c.visible,
                                          "in_flight", (json_int_t)c.in_flight, "delayed",
                                          (json_int_t)c.delayed));
        else
            printf("%-16s %10llu %10llu %10llu\n", name, (unsigned long long)c.visible,
                   (unsigned long long)c.in_flight, (unsigned long long)c.delayed);
    }
    if (json && !rc) {
        json_object_set_new(all, "backend", json_string(wb_queue_backend(q)));
        char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
        if (s)
            printf("%s\n", s);
        free(s);
    }
    json_decref(all);
    wb_queue_close(q);
    wb_config_free(cfg);
    return rc;
}

static int queue_run(int argc, char **argv)
{
    if (argc < 2)
        return wb_cli_usage_error("queue", "the subcommand is missing (send, receive, delete, "
                                           "stats)");
    const char *sub = argv[1];
    if (strcmp(sub, "send") == 0)
        return q_send(argc - 1, argv + 1);
    if (strcmp(sub, "receive") == 0)
        return q_receive(argc - 1, argv + 1);
    if (strcmp(sub, "delete") == 0)
        return q_delete(argc - 1, argv + 1);
    if (strcmp(sub, "stats") == 0)
        return q_stats(argc - 1, argv + 1);
    return wb_cli_usage_error("queue", "unknown subcommand '%s' (send, receive, delete, stats)",
                              sub);
}

const wb_cli_command wb_cli_queue = {
    .name = "queue",
    .summary = "send, receive, delete and count messages of the message queue",
    .usage = queue_usage,
    .run = queue_run,
};
