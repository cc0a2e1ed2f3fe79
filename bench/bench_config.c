/* How long loading and validating a full configuration takes.
 *
 * Baseline, measured in the same run: the unavoidable raw work on the same
 * input, i.e. looking up the 16 variables (getenv) and handing DATABASE_URL to
 * libpq's parser (PQconninfoParse), which workerbus also does. The ratio
 * shows what validation adds on top.
 *
 * Usage: bench-config [iterations]   (prints one Markdown table row per case) */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "workerbus/workerbus.h"

static char pki_var[128], run_var[128];
static const char *const builtin_env[] = {
    "MQTT_BROKER_TYPE=builtin",
    "MQTT_BROKER_ENDPOINT=tls://broker.example.com:1984",
    "MQTT_BROKER_BUILTIN_LOG_LEVEL=info",
    "MQTT_BROKER_IOTCORE_NAMESPACE=spacelift",
    "MESSAGE_QUEUE_TYPE=postgres",
    "DATABASE_URL=postgres://workerbus:secret@db.example.com:5432/workerbus?sslmode=verify-full",
    pki_var,
    run_var,
    NULL,
};

#define Q(n) "MESSAGE_QUEUE_SQS_" n "=https://sqs.eu-west-1.amazonaws.com/123456789012/sl-"
static const char *const iotcore_env[] = {
    "MQTT_BROKER_TYPE=iotcore",
    "MQTT_BROKER_ENDPOINT=a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com",
    "MQTT_BROKER_IOTCORE_NAMESPACE=spacelift",
    "MESSAGE_QUEUE_TYPE=sqs",
    "AWS_REGION=eu-west-1",
    Q("ASYNC_URL") "async-jobs",
    Q("ASYNC_FIFO_URL") "async-jobs.fifo",
    Q("CRONJOBS_URL") "cronjobs",
    Q("DLQ_URL") "dlq",
    Q("DLQ_FIFO_URL") "dlq.fifo",
    Q("EVENTS_INBOX_URL") "events-inbox",
    Q("IOT_URL") "iot",
    Q("WEBHOOKS_URL") "webhooks",
    NULL,
};

static const char *const names[] = {
    "MQTT_BROKER_TYPE",
    "MQTT_BROKER_ENDPOINT",
    "MQTT_BROKER_BUILTIN_LOG_LEVEL",
    "MQTT_BROKER_IOTCORE_NAMESPACE",
    "MESSAGE_QUEUE_TYPE",
    "DATABASE_URL",
    "MESSAGE_QUEUE_SQS_ASYNC_URL",
    "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL",
    "MESSAGE_QUEUE_SQS_CRONJOBS_URL",
    "MESSAGE_QUEUE_SQS_DLQ_URL",
    "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL",
    "MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL",
    "MESSAGE_QUEUE_SQS_IOT_URL",
    "MESSAGE_QUEUE_SQS_WEBHOOKS_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_env(const char *const *env)
{
    clearenv();
    for (size_t i = 0; env[i]; i++) {
        const char *eq = strchr(env[i], '=');
        char name[64];
        memcpy(name, env[i], (size_t)(eq - env[i]));
        name[eq - env[i]] = '\0';
        setenv(name, eq + 1, 1);
    }
}

static volatile size_t sink;

static double raw_once(void)
{
    double t0 = now();
    size_t total = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        total += v ? strlen(v) : 0;
    }
    const char *db = getenv("DATABASE_URL");
    if (db) {
        char *err = NULL;
        PQconninfoOption *o = PQconninfoParse(db, &err);
        total += o != NULL;
        PQconninfoFree(o);
        PQfreemem(err);
    }
    sink += total;
    return now() - t0;
}

static double wb_once(void)
{
    double t0 = now();
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wb_config_load(NULL, &cfg, &rep);
    if (err != WB_OK) {
        fprintf(stderr, "bench-config: the benchmark environment is invalid: %s\n",
                wb_strerror(err));
        exit(1);
    }
    wb_config_free(cfg);
    wb_config_report_free(rep);
    return now() - t0;
}

static void measure(const char *label, const char *const *env, int n)
{
    set_env(env);
    double *raw = malloc(sizeof *raw * (size_t)n), *wb = malloc(sizeof *wb * (size_t)n);
    for (int i = 0; i < 200; i++) { /* warm up */
        raw_once();
        wb_once();
    }
    for (int i = 0; i < n; i++) { /* interleaved so both see the same machine */
        raw[i] = raw_once();
        wb[i] = wb_once();
    }
    qsort(raw, (size_t)n, sizeof *raw, wbb_cmp_double);
    qsort(wb, (size_t)n, sizeof *wb, wbb_cmp_double);
    double rp50 = raw[n / 2] * 1e6, wp50 = wb[n / 2] * 1e6;
    double rp99 = raw[n * 99 / 100] * 1e6, wp99 = wb[n * 99 / 100] * 1e6;
    printf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.1fx |\n", label, n, wp50, wp99, rp50, rp99,
           wp50 / rp50);
    free(raw);
    free(wb);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    if (n < 100)
        n = 100;
    char dir[] = "/tmp/wbbench-config-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    snprintf(pki_var, sizeof pki_var, "MQTT_BROKER_BUILTIN_PKI_DIR=%s/pki", dir);
    snprintf(run_var, sizeof run_var, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/run", dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    const char *hosts[] = {"broker.example.com", NULL};
    po.broker_hosts = hosts;
    if (wb_pki_init(strchr(pki_var, '=') + 1, &po, NULL) != WB_OK)
        return 1;
    printf("| environment | runs | workerbus p50 (µs) | workerbus p99 (µs) | raw p50 (µs) | "
           "raw p99 (µs) | p50 ratio |\n");
    printf("|---|---|---|---|---|---|---|\n");
    measure("builtin + postgres (8 variables; reads and checks 5 certificate files)", builtin_env,
            n);
    measure("iotcore + sqs (13 variables)", iotcore_env, n);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) != 0;
}
