/* The workerbus executable: exit codes, output shapes, secrets. Runs the
 * built binary (WB_CLI) with an explicit, clean environment. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"

typedef struct run_result {
    int status;
    char *out;
    char *err;
} run_result;

/* Runs workerbus with argv (after the program name) and exactly envp, plus
 * the sanitizer settings so a report fails the run. */
static run_result run(const char *const *args, const char *const *envp)
{
    const char *cli = getenv("WB_CLI");
    cr_assert_not_null(cli, "WB_CLI is not set (run through meson test)");
    const char *argv[32];
    size_t n = 0;
    argv[n++] = cli;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const char *env[64];
    size_t k = 0;
    static char asan[512], ubsan[512], lsan[512];
    const char *names[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    char *bufs[] = {asan, ubsan, lsan};
    for (int i = 0; i < 3; i++) {
        if (getenv(names[i])) {
            snprintf(bufs[i], 512, "%s=%s", names[i], getenv(names[i]));
            env[k++] = bufs[i];
        }
    }
    for (size_t i = 0; envp && envp[i]; i++)
        env[k++] = envp[i];
    env[k] = NULL;
    wbt_proc p;
    cr_assert(wbt_proc_run(argv, env, 30000, &p), "cannot run %s", cli);
    cr_assert_not(p.signaled, "workerbus died: status %d\nstderr:\n%s", p.status, p.err);
    return (run_result){p.status, p.out, p.err};
}

static void done(run_result *r)
{
    free(r->out);
    free(r->err);
}

static char *example(const char *name)
{
    const char *root = getenv("WB_SOURCE_ROOT");
    cr_assert_not_null(root);
    char *p = malloc(strlen(root) + 64);
    sprintf(p, "%s/docs/examples/%s", root, name);
    return p;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "not JSON (%s):\n%s", e.text, text);
    return j;
}

/* A fresh PKI made with `workerbus pki init`, in a new temporary directory. */
static char *make_pki(const char *host)
{
    char *dir = strdup("/tmp/wbcli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *pki = malloc(strlen(dir) + 8);
    sprintf(pki, "%s/pki", dir);
    const char *args[] = {"pki", "init", pki, "--host", host, NULL};
    run_result r = run(args, NULL);
    cr_assert_eq(r.status, 0, "pki init: exit %d\n%s", r.status, r.err);
    cr_assert(strstr(r.out, "MQTT_BROKER_BUILTIN_PKI_DIR="), "%s", r.out);
    done(&r);
    free(dir);
    return pki;
}

Test(cli, examples_are_valid)
{
    char *pki = make_pki("broker.example.com");
    char set_pki[300];
    snprintf(set_pki, sizeof set_pki, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", pki);
    const char *names[] = {"builtin.env", "iotcore.env"};
    for (int i = 0; i < 2; i++) {
        char *path = example(names[i]);
        /* the builtin example names /var/lib/workerbus/pki: point it at the new one */
        const char *args[] = {
            "check", "--json", "--env-file", path,
            "--set", set_pki,  "--set",      "MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbcli-run",
            NULL};
        if (i == 1)
            args[4] = NULL; /* iotcore needs nothing but the file */
        run_result r = run(args, NULL);
        cr_assert_eq(r.status, 0, "%s: exit %d\n%s%s", names[i], r.status, r.out, r.err);
        json_t *j = parse(r.out);
        cr_assert(json_is_true(json_object_get(j, "valid")));
        cr_assert_eq(json_array_size(json_object_get(j, "errors")), 0);
        cr_assert_eq(json_array_size(json_object_get(j, "warnings")), 0, "%s", r.out);
        json_decref(j);
        done(&r);
        free(path);
    }
    free(pki);
}

Test(cli, missing_credentials_say_how_to_make_them)
{
    const char *env[] = {"MQTT_BROKER_TYPE=builtin",
                         "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:1984",
                         "MESSAGE_QUEUE_TYPE=postgres",
                         "DATABASE_URL=postgres://h/db",
                         "MQTT_BROKER_BUILTIN_PKI_DIR=/nonexistent/pki",
                         NULL};
    const char *args[] = {"check", NULL};
    run_result r = run(args, env);
    cr_assert_eq(r.status, 78);
    cr_assert(strstr(r.out, "error: MQTT_BROKER_BUILTIN_PKI_DIR=\"/nonexistent/pki\""), "%s",
              r.out);
    cr_assert(strstr(r.out, "workerbus pki init /nonexistent/pki"), "%s", r.out);
    cr_assert(strstr(r.out, "error: MQTT_BROKER_BUILTIN_CERT_FILE: is required"), "%s", r.out);
    done(&r);
}

Test(cli, pki_commands)
{
    char *pki = make_pki("127.0.0.1");
    char key[300], csr[300], crt[300], tk[300], cacrt[300];
    snprintf(key, sizeof key, "%s/w.key", pki);
    snprintf(csr, sizeof csr, "%s/w.csr", pki);
    snprintf(crt, sizeof crt, "%s/w.crt", pki);
    snprintf(tk, sizeof tk, "%s/token.key", pki);
    snprintf(cacrt, sizeof cacrt, "%s/ca.crt", pki);
    const char *a1[] = {"pki", "new-csr", "--key-out", key, "--csr-out", csr, NULL};
    run_result r = run(a1, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    done(&r);
    const char *a2[] = {"pki",       "sign-csr", "--pool", "01arz3ndektsv4rrffq69g5fav",
                        "--pki-dir", pki,        "--out",  crt,
                        csr,         NULL};
    r = run(a2, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    done(&r);
    FILE *f = fopen(crt, "r");
    cr_assert_not_null(f);
    char line[64] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert_str_eq(line, "-----BEGIN CERTIFICATE-----\n");
    /* bad inputs: exit codes and messages */
    const char *a3[] = {"pki", "sign-csr", "--pool", "nope", "--pki-dir", pki, csr, NULL};
    r = run(a3, NULL);
    cr_assert_eq(r.status, 65);
    cr_assert(strstr(r.err, "\"nope\" is not a pool ULID"), "%s", r.err);
    done(&r);
    const char *a4[] = {"pki",       "sign-csr", "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                        "--pki-dir", pki,        cacrt,    NULL};
    r = run(a4, NULL);
    cr_assert_eq(r.status, 65, "a certificate is not a CSR");
    done(&r);
    const char *a5[] = {"pki", "init", pki, NULL};
    r = run(a5, NULL);
    cr_assert_eq(r.status, 73, "existing files are kept");
    cr_assert(strstr(r.err, "--force"), "%s", r.err);
    done(&r);
    const char *a6[] = {"pki", "token", "--token-key", tk, "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                        NULL};
    r = run(a6, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strlen(r.out), 65, "64 hex characters and a newline: %s", r.out);
    done(&r);
    const char *a7[] = {"pki", "sign-csr", "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL};
    r = run(a7, NULL);
    cr_assert_eq(r.status, 64);
    done(&r);
    free(pki);
}

Test(cli, iotcore_with_postgres_is_refused)
{
    const char *args[] = {"check", "--json", NULL};
    const char *env[] = {"MQTT_BROKER_TYPE=iotcore", "MESSAGE_QUEUE_TYPE=postgres", NULL};
    run_result r = run(args, env);
    cr_assert_eq(r.status, 78, "exit %d", r.status);
    json_t *j = parse(r.out);
    cr_assert(json_is_false(json_object_get(j, "valid")));
    json_t *errors = json_object_get(j, "errors");
    bool found = false;
    for (size_t i = 0; i < json_array_size(errors); i++) {
        json_t *e = json_array_get(errors, i);
        const char *var = json_string_value(json_object_get(e, "variable"));
        if (var && !strcmp(var, "MESSAGE_QUEUE_TYPE")) {
            found = true;
            cr_assert(strstr(json_string_value(json_object_get(e, "message")), "SQS"));
            cr_assert_str_eq(json_string_value(json_object_get(e, "value")), "postgres");
        }
        /* every error has the four fields */
        cr_assert(json_is_string(json_object_get(e, "variable")));
        cr_assert_not_null(json_object_get(e, "value"));
        cr_assert(json_is_string(json_object_get(e, "message")));
        cr_assert_not_null(json_object_get(e, "hint"));
    }
    cr_assert(found, "no error for MESSAGE_QUEUE_TYPE:\n%s", r.out);
    cr_assert(json_is_object(json_object_get(j, "config")));
    cr_assert(json_is_array(json_object_get(j, "warnings")));
    json_decref(j);
    done(&r);
}

Test(cli, port_1983_is_refused)
{
    const char *env[] = {"MQTT_BROKER_TYPE=builtin", "MQTT_BROKER_ENDPOINT=broker.example.com:1983",
                         NULL};
    const char *args[] = {"check", NULL};
    run_result r = run(args, env);
    cr_assert_eq(r.status, 78);
    cr_assert(strstr(r.out, "error: MQTT_BROKER_ENDPOINT=\"broker.example.com:1983\""), "%s",
              r.out);
    cr_assert(strstr(r.out, "1983, which is reserved for the server's HTTP port"), "%s", r.out);
    done(&r);
}

Test(cli, quiet_prints_nothing)
{
    const char *env[] = {"MQTT_BROKER_TYPE=nope", NULL};
    const char *args[] = {"check", "--quiet", NULL};
    run_result r = run(args, env);
    cr_assert_eq(r.status, 78);
    cr_assert_str_eq(r.out, "");
    cr_assert_str_eq(r.err, "");
    done(&r);
}

Test(cli, usage_errors_exit_64)
{
    const char *cases[][4] = {
        {"check", "--bogus", NULL},
        {"check", "--env-file", NULL},
        {"check", "--json", "--quiet", NULL},
        {"check", "extra", NULL},
        {"frobnicate", NULL},
        {"--frobnicate", NULL},
        {"help", "frobnicate", NULL},
        {NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_result r = run(cases[i], NULL);
        cr_assert_eq(r.status, 64, "case %zu: exit %d", i, r.status);
        cr_assert_neq(strlen(r.err), 0, "case %zu: no message on stderr", i);
        done(&r);
    }
}

Test(cli, help_and_version)
{
    const char *cases[][3] = {
        {"--help", NULL},          {"-h", NULL}, {"help", NULL}, {"help", "check", NULL},
        {"check", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_result r = run(cases[i], NULL);
        cr_assert_eq(r.status, 0, "case %zu", i);
        cr_assert(strstr(r.out, "Usage: workerbus"), "case %zu:\n%s", i, r.out);
        done(&r);
    }
    const char *v[] = {"--version", NULL};
    run_result r = run(v, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_eq(strncmp(r.out, "workerbus ", 10), 0);
    cr_assert(strchr(r.out, '.'));
    done(&r);
}

Test(cli, unreadable_env_file_exits_66)
{
    const char *args[] = {"check", "--env-file", "/nonexistent/x.env", NULL};
    run_result r = run(args, NULL);
    cr_assert_eq(r.status, 66);
    cr_assert(strstr(r.out, "/nonexistent/x.env"), "%s", r.out);
    done(&r);
}

Test(cli, no_secret_in_any_output)
{
    const char *secret = "Pa55w0rdThatMustNotLeak";
    const char *envs[][6] = {
        {"MQTT_BROKER_TYPE=builtin", "MQTT_BROKER_ENDPOINT=h:1984", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=postgres://u:Pa55w0rdThatMustNotLeak@h/db", NULL},
        {"MQTT_BROKER_TYPE=builtin", "MQTT_BROKER_ENDPOINT=h:1983", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=postgres://u:Pa55w0rdThatMustNotLeak@h/db?x=1", NULL},
        {"MQTT_BROKER_TYPE=iotcore", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=host=h password=Pa55w0rdThatMustNotLeak", NULL},
        {"MQTT_BROKER_TYPE=builtin", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=postgres://u:Pa55w0rdThatMustNotLeak%zz@h/db", NULL},
        {"MQTT_BROKER_SECRET_THING=Pa55w0rdThatMustNotLeak", NULL},
        /* every libpq keyword that holds a secret, and URIs inside values */
        {"MQTT_BROKER_TYPE=builtin", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=postgres://u:p@127.0.0.1:1/db?sslpassword=Pa55w0rdThatMustNotLeak", NULL},
        {"MQTT_BROKER_TYPE=builtin", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=dbname=postgres://u:Pa55w0rdThatMustNotLeak@127.0.0.1:1/db", NULL},
        {"MQTT_BROKER_TYPE=builtin", "MESSAGE_QUEUE_TYPE=postgres",
         "DATABASE_URL=host=127.0.0.1 port=1 sslpassword='Pa55w0rdThatMustNotLeak'", NULL},
    };
    const char *modes[][5] = {{"check", NULL},
                              {"check", "--json", NULL},
                              {"queue", "stats", NULL},
                              {"queue", "send", "iot", "{}", NULL}};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            run_result r = run(modes[m], envs[i]);
            cr_assert(m >= 2 || r.status == 0 || r.status == 78);
            cr_assert_null(strstr(r.out, secret), "env %zu mode %zu leaked:\n%s", i, m, r.out);
            cr_assert_null(strstr(r.err, secret), "env %zu mode %zu leaked:\n%s", i, m, r.err);
            done(&r);
        }
    }
}

Test(cli, text_output_marks_defaults)
{
    char *path = example("builtin.env");
    char *pki = make_pki("broker.example.com");
    char set_pki[300];
    snprintf(set_pki, sizeof set_pki, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", pki);
    const char *args[] = {"check", "--env-file", path, "--set", set_pki, NULL};
    free(pki);
    run_result r = run(args, NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "MQTT_BROKER_IOTCORE_NAMESPACE"), "%s", r.out);
    cr_assert(strstr(r.out, "spacelift  (default)"), "%s", r.out);
    cr_assert(strstr(r.out, "postgres://workerbus:****@db.example.com"), "%s", r.out);
    cr_assert(strstr(r.out, "0 errors, 0 warnings: the configuration is valid."), "%s", r.out);
    done(&r);
    free(path);
}

Test(cli, broker_commands_refuse_bad_arguments)
{
    const char *cases[][6] = {
        {"broker", NULL},
        {"broker", "start", NULL},
        {"broker", "run", "--bogus", NULL},
        {"publish", "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL},
        {"publish", "--pool", "x", "--qos", "2", NULL},
        {"worker", "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL},
        {"worker", "--pool", "p", "--worker", "w", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_result r = run(cases[i], NULL);
        cr_assert_eq(r.status, 64, "case %zu: exit %d\n%s", i, r.status, r.err);
        done(&r);
    }
    const char *bad_ulid[] = {
        "publish",   "--pool", "nope", "--worker", "01BX5ZZKBKACTAV9WEVGEMMVRZ",
        "--message", "x",      NULL};
    run_result r = run(bad_ulid, NULL);
    cr_assert_eq(r.status, 65);
    cr_assert(strstr(r.err, "\"nope\""), "%s", r.err);
    done(&r);
}

Test(cli, broker_run_needs_the_builtin_type)
{
    char *path = example("iotcore.env");
    const char *args[] = {"broker", "run", "--env-file", path, NULL};
    run_result r = run(args, NULL);
    cr_assert_eq(r.status, 78, "exit %d\n%s", r.status, r.err);
    cr_assert(strstr(r.err, "MQTT_BROKER_TYPE=builtin"), "%s", r.err);
    done(&r);
    free(path);
}

Test(cli, serve_harness_and_demo_refuse_bad_arguments_by_name)
{
    /* each case: the arguments, then what the message must name */
    const char *cases[][8] = {
        {"serve", "--threads", "0", NULL, "--threads takes 1 to 64, not '0'"},
        {"serve", "--threads", "-3", NULL, "not '-3'"},
        {"serve", "--wait", "21", NULL, "--wait takes 1 to 20 seconds, not '21'"},
        {"serve", "--visibility", "1", NULL, "--visibility takes 2 to 43200"},
        {"serve", "--linger", "1001", NULL, "--linger takes 0 to 1000 ms, not '1001'"},
        {"check", "--probe", "--bogus", NULL, "unknown or ambiguous option '--bogus'"},
        {"serve", "--log-level", "loud", NULL, "debug, info, warn or error, not 'loud'"},
        {"serve", "--bogus", NULL, "unknown or ambiguous option '--bogus'; the options are --exec"},
        {"serve", "--threads", NULL, "--threads needs a value: N, 1 to 64"},
        {"serve", "--threads=0", NULL, "--threads takes 1 to 64, not '0'"},
        {"serve", "--", "--threads", NULL, "unexpected argument '--threads'"},
        {"serve", "-x", NULL, "unknown option '-x'"},
        {"check", "--", "--json", NULL, "unexpected argument '--json'"},
        {"harness", "up", "--replicas", "17", NULL, "--replicas takes 1 to 16, not '17'"},
        {"harness", "down", "--workers", "2", NULL, "unknown or ambiguous option '--workers'"},
        {"queue", "receive", "iot", "--max", NULL, "--max needs a value: N, 1 to 10"},
        {"pki", "sign-csr", "--days", "0", NULL, "--days takes 1 to 36500"},
        {"harness", NULL, "the subcommand is missing"},
        {"harness", "sideways", NULL, "unknown subcommand 'sideways'"},
        {"harness", "up", "--workers", "many", NULL, "--workers takes 0 to 1000, not 'many'"},
        {"harness", "env", "--mode", "cloud", NULL, "--mode takes builtin or iotcore"},
        {"demo", "--duration", "0", NULL, "--duration takes 1 to 604800 seconds, not '0'"},
        {"demo", "--workers", "1001", NULL, "--workers takes 1 to 1000, not '1001'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        while (cases[i][n])
            n++;
        const char *want = cases[i][n + 1];
        run_result r = run(cases[i], NULL);
        cr_assert_eq(r.status, 64, "case %zu: exit %d\n%s", i, r.status, r.err);
        cr_assert(strstr(r.err, want), "case %zu: the message does not say '%s':\n%s", i, want,
                  r.err);
        done(&r);
    }
    /* nothing runs in that directory: 66, and how to start it */
    const char *env[] = {"harness", "env", "--dir", "/nonexistent/wb-harness", NULL};
    run_result r = run(env, NULL);
    cr_assert_eq(r.status, 66, "%s", r.err);
    cr_assert(strstr(r.err, "nothing runs in /nonexistent/wb-harness") &&
                  strstr(r.err, "workerbus harness up"),
              "%s", r.err);
    done(&r);
    const char *down[] = {"harness", "down", "--dir", "/nonexistent/wb-harness", NULL};
    r = run(down, NULL);
    cr_assert_eq(r.status, 66, "%s", r.err);
    done(&r);
}

Test(cli, an_env_file_that_is_not_a_regular_file_is_refused_at_once)
{
    char dir[] = "/tmp/wbcli-fifo-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/env", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    const char *cases[][5] = {
        {"check", "--env-file", fifo, NULL},          {"check", "--json", "--env-file", fifo, NULL},
        {"queue", "stats", "--env-file", fifo, NULL}, {"serve", "--env-file", fifo, NULL},
        {"check", "--env-file", dir, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* no writer ever opens the FIFO: reading it would wait forever */
        run_result r = run(cases[i], NULL);
        cr_assert_eq(r.status, 66, "case %zu: exit %d\n%s%s", i, r.status, r.out, r.err);
        const char *want = i == 4 ? "Is a directory" : "not a regular file";
        cr_assert(strstr(r.out, want) || strstr(r.err, want), "case %zu: no '%s' in:\n%s%s", i,
                  want, r.out, r.err);
        done(&r);
    }
    unlink(fifo);
    rmdir(dir);
}

Test(cli, numbers_are_plain_decimal_digits)
{
    static const char *const bad[] = {" 5",
                                      "5 ",
                                      "+5",
                                      "0x5",
                                      "5e0",
                                      "\t5",
                                      "5\n",
                                      "",
                                      "\xd9\xa5" /* ARABIC-INDIC DIGIT FIVE */,
                                      "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"serve", "--threads", bad[i], NULL};
        run_result r = run(args, NULL);
        cr_assert_eq(r.status, 64, "--threads '%s': exit %d\n%s", bad[i], r.status, r.err);
        cr_assert(strstr(r.err, "--threads takes 1 to 64"), "%s", r.err);
        done(&r);
        const char *days[] = {"pki",    "sign-csr", "--pool", "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                              "--days", bad[i],     NULL};
        r = run(days, NULL);
        cr_assert_eq(r.status, 64, "--days '%s': exit %d\n%s", bad[i], r.status, r.err);
        done(&r);
    }
}

/* Whether text holds a byte a terminal could take for a control sequence. */
static bool has_raw_control(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
            return true;
        if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] < 0xA0)
            return true;
    }
    return false;
}

Test(cli, configuration_values_reach_the_terminal_escaped)
{
    char dir[] = "/tmp/wbcli-esc-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/env", dir);
    FILE *f = fopen(path, "w");
    /* an escape sequence, a NUL, a C1 CSI and a BEL in a region */
    static const char body[] = "MQTT_BROKER_TYPE=iotcore\nMESSAGE_QUEUE_TYPE=sqs\n"
                               "AWS_REGION=us\x1b]0;owned\x07-east-1\x1b[31m\0x\xc2\x9b"
                               "2J\n"
                               "MQTT_BROKER_ENDPOINT=a\x1b[2J"
                               "b-ats.iot.us-east-1.amazonaws.com\n";
    fwrite(body, 1, sizeof body - 1, f);
    fclose(f);
    const char *modes[][5] = {{"check", "--env-file", path, NULL},
                              {"check", "--json", "--env-file", path, NULL},
                              {"queue", "stats", "--env-file", path, NULL}};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        run_result r = run(modes[m], NULL);
        cr_assert_eq(r.status, 78, "mode %zu: exit %d", m, r.status);
        cr_assert_not(has_raw_control(r.out), "mode %zu: a raw control byte on stdout:\n%s", m,
                      r.out);
        cr_assert_not(has_raw_control(r.err), "mode %zu: a raw control byte on stderr:\n%s", m,
                      r.err);
        /* an invalid region never builds an example */
        cr_assert(m == 2 || strstr(r.out, "https://sqs.<region>.amazonaws.com/"), "mode %zu:\n%s",
                  m, r.out);
        done(&r);
    }
    unlink(path);
    rmdir(dir);
}
