/* The temporary PKI and configuration the benchmarks run with. */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>

void wbb_die(const char *prog, const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, why ? why : "failed");
    exit(1);
}

wb_worker *wbb_harness_worker(const char *prog, const wb_harness *h, const char *endpoint,
                              bool clean_session)
{
    char ca[300], crt[300], key[300];
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", wb_harness_dir(h));
    snprintf(crt, sizeof crt, "%s/pool.crt", wb_harness_dir(h));
    snprintf(key, sizeof key, "%s/pool.key", wb_harness_dir(h));
    wb_ulid u;
    char id[WB_ULID_STR_SIZE];
    wb_ulid_new(&u);
    wb_ulid_format(&u, id);
    wb_worker_opts o = WB_WORKER_OPTS_INIT;
    o.endpoint = endpoint;
    o.pool = wb_harness_pool(h);
    o.worker = id;
    o.ca_file = ca;
    o.cert_file = crt;
    o.key_file = key;
    o.clean_session = clean_session;
    wb_worker *w = NULL;
    char *d = NULL;
    if (wb_worker_open(&o, &w, &d) || wb_worker_connect(w, 30000))
        wbb_die(prog, "worker", d ? d : wb_worker_last_error(w));
    return w;
}

double wbb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void wbb_die_down(const char *prog, wb_harness *h, const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, why ? why : "failed");
    if (h)
        wb_harness_down(h);
    exit(1);
}

int wbb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double wbb_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, wbb_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void wbb_env_make(wbb_env *e, const char *name)
{
    static const char *const hosts[] = {"127.0.0.1", NULL};
    wbb_env_make_hosts(e, name, hosts);
}

void wbb_env_make_hosts(wbb_env *e, const char *name, const char *const *hosts)
{
    snprintf(e->dir, sizeof e->dir, "/tmp/%s-XXXXXX", name);
    if (!mkdtemp(e->dir))
        wbb_die(name, "mkdtemp", NULL);
    chmod(e->dir, 0711); /* the broker, as the mosquitto user, crosses it */
    snprintf(e->pki, sizeof e->pki, "%s/pki", e->dir);
    snprintf(e->run, sizeof e->run, "%s/run", e->dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    po.broker_hosts = hosts;
    char *d = NULL;
    if (wb_pki_init(e->pki, &po, &d))
        wbb_die(name, "pki", d);
}

wb_config *wbb_config(const wbb_env *e, const char *endpoint, const char *db_url)
{
    char ep[128], pk[160], rn[160], url[600];
    snprintf(ep, sizeof ep, "MQTT_BROKER_ENDPOINT=%s", endpoint);
    snprintf(pk, sizeof pk, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", e->pki);
    snprintf(rn, sizeof rn, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s", e->run);
    snprintf(url, sizeof url, "DATABASE_URL=%s", db_url ? db_url : "");
    /* without a database: one replica, SQS named but never reached (the
     * broker's own path, measured without a topic rule) */
#define SQS_URL(v, q) v "=https://sqs.us-east-1.amazonaws.com/123456789012/" q
    const char *no_db[] = {"MQTT_BROKER_TYPE=builtin",
                           ep,
                           pk,
                           rn,
                           "MESSAGE_QUEUE_TYPE=sqs",
                           "AWS_REGION=us-east-1",
                           SQS_URL("MESSAGE_QUEUE_SQS_ASYNC_URL", "async-jobs"),
                           SQS_URL("MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL", "async-jobs.fifo"),
                           SQS_URL("MESSAGE_QUEUE_SQS_CRONJOBS_URL", "cronjobs"),
                           SQS_URL("MESSAGE_QUEUE_SQS_DLQ_URL", "dlq"),
                           SQS_URL("MESSAGE_QUEUE_SQS_DLQ_FIFO_URL", "dlq.fifo"),
                           SQS_URL("MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL", "events-inbox"),
                           SQS_URL("MESSAGE_QUEUE_SQS_IOT_URL", "iot"),
                           SQS_URL("MESSAGE_QUEUE_SQS_WEBHOOKS_URL", "webhooks"),
                           NULL};
#undef SQS_URL
    const char *with_db[] = {"MQTT_BROKER_TYPE=builtin",    ep,  pk,  rn,
                             "MESSAGE_QUEUE_TYPE=postgres", url, NULL};
    const char *const *env = db_url ? with_db : no_db;
    wb_config_load_opts lo = WB_CONFIG_LOAD_OPTS_INIT;
    lo.env = env;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    if (wb_config_load(&lo, &cfg, &rep))
        wbb_die("bench", "config", wb_config_report_format(rep, WB_REPORT_PROBLEMS));
    wb_config_report_free(rep);
    return cfg;
}

void wbb_env_remove(const wbb_env *e)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", e->dir);
}

wb_harness *wbb_harness_start(const char *prog, const char *services_script)
{
    wb_log_set_level(WB_LOG_ERROR);
    wb_harness_opts ho = WB_HARNESS_OPTS_INIT;
    ho.services_script = services_script;
    wb_harness *h = NULL;
    char *d = NULL;
    if (wb_harness_up(&ho, &h, &d))
        wbb_die(prog, "harness", d);
    return h;
}
