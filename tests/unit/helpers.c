#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQS(host, acct, pfx)                                                                       \
    "MESSAGE_QUEUE_SQS_ASYNC_URL=" host "/" acct "/" pfx "async-jobs",                             \
        "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL=" host "/" acct "/" pfx "async-jobs.fifo",               \
        "MESSAGE_QUEUE_SQS_CRONJOBS_URL=" host "/" acct "/" pfx "cronjobs",                        \
        "MESSAGE_QUEUE_SQS_DLQ_URL=" host "/" acct "/" pfx "dlq",                                  \
        "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL=" host "/" acct "/" pfx "dlq.fifo",                        \
        "MESSAGE_QUEUE_SQS_EVENTS_INBOX_URL=" host "/" acct "/" pfx "events-inbox",                \
        "MESSAGE_QUEUE_SQS_IOT_URL=" host "/" acct "/" pfx "iot",                                  \
        "MESSAGE_QUEUE_SQS_WEBHOOKS_URL=" host "/" acct "/" pfx "webhooks"

const char *const wbt_base_builtin[] = {
    "MQTT_BROKER_TYPE=builtin",
    "MQTT_BROKER_ENDPOINT=tls://broker.example.com:1984",
    "MESSAGE_QUEUE_TYPE=postgres",
    "DATABASE_URL=postgres://wb:hunter2secret@db.example.com:5432/wb",
    NULL,
};

const char *const wbt_base_iotcore[] = {
    "MQTT_BROKER_TYPE=iotcore",
    "MQTT_BROKER_ENDPOINT=a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com",
    "MESSAGE_QUEUE_TYPE=sqs",
    "AWS_REGION=eu-west-1",
    SQS("https://sqs.eu-west-1.amazonaws.com", "123456789012", "sl-"),
    NULL,
};

const char *const wbt_base_builtin_sqs[] = {
    "MQTT_BROKER_TYPE=builtin",
    "MQTT_BROKER_ENDPOINT=127.0.0.1:1984",
    "MESSAGE_QUEUE_TYPE=sqs",
    "AWS_REGION=us-east-1",
    SQS("http://127.0.0.1:4566", "000000000000", ""),
    NULL,
};

static size_t keylen(const char *s)
{
    const char *eq = strchr(s, '=');
    return eq ? (size_t)(eq - s) : strlen(s);
}

const char *wbt_pki_dir(void)
{
    static char dir[96];
    if (dir[0])
        return dir;
    snprintf(dir, sizeof dir, "/tmp/wbtest-pki-%u-v1", (unsigned)getuid());
    if (access(dir, F_OK) == 0)
        return dir;
    /* made aside and renamed into place: test processes run in parallel */
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.%d", dir, (int)getpid());
    static const char *const hosts[] = {"broker.example.com", "localhost",   "127.0.0.1", "::1",
                                        "10.0.0.7",           "2001:db8::1", NULL};
    wb_pki_init_opts o = WB_PKI_INIT_OPTS_INIT;
    o.broker_hosts = hosts;
    char *d = NULL;
    if (wb_pki_init(tmp, &o, &d) != WB_OK) {
        fprintf(stderr, "wbt_pki_dir: %s\n", d ? d : "failed");
        abort();
    }
    if (rename(tmp, dir) != 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            abort();
    }
    return dir;
}

wb_err wbt_load(const char *const *base, const char *const *over, wb_config **cfg,
                wb_config_report **rep)
{
    const char *list[128];
    size_t n = 0;
    /* builtin bases get the test PKI and a runtime directory in /tmp, unless
     * the case names those variables itself */
    static char pki[160], run[160];
    bool builtin = false, has_pki = false, has_run = false;
    for (size_t i = 0; base && base[i]; i++)
        builtin = builtin || strcmp(base[i], "MQTT_BROKER_TYPE=builtin") == 0;
    for (size_t j = 0; over && over[j]; j++) {
        has_pki = has_pki || strncmp(over[j], "MQTT_BROKER_BUILTIN_PKI_DIR", 27) == 0;
        has_run = has_run || strncmp(over[j], "MQTT_BROKER_BUILTIN_RUNTIME_DIR", 31) == 0;
    }
    if (builtin && !has_pki) {
        snprintf(pki, sizeof pki, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", wbt_pki_dir());
        list[n++] = pki;
    }
    if (builtin && !has_run) {
        snprintf(run, sizeof run, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbtest-run-%u",
                 (unsigned)getuid());
        list[n++] = run;
    }
    for (size_t i = 0; base && base[i]; i++) {
        bool replaced = false;
        for (size_t j = 0; over && over[j]; j++) {
            if (keylen(over[j]) == keylen(base[i]) &&
                strncmp(over[j], base[i], keylen(base[i])) == 0)
                replaced = true;
        }
        if (!replaced)
            list[n++] = base[i];
    }
    static char expanded[8][512];
    size_t ne = 0;
    for (size_t j = 0; over && over[j]; j++) {
        if (!strchr(over[j], '='))
            continue;
        const char *at = strstr(over[j], "@PKI@");
        if (at && ne < 8) { /* "@PKI@" stands for the test PKI directory */
            snprintf(expanded[ne], sizeof expanded[ne], "%.*s%s%s", (int)(at - over[j]), over[j],
                     wbt_pki_dir(), at + 5);
            list[n++] = expanded[ne++];
        } else {
            list[n++] = over[j];
        }
    }
    list[n] = NULL;
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env = list;
    return wb_config_load(&opts, cfg, rep);
}

const wb_config_issue *wbt_find(const wb_config_report *rep, wb_severity sev, const char *var)
{
    for (size_t i = 0; i < wb_config_report_count(rep, sev); i++) {
        const wb_config_issue *is = wb_config_report_issue(rep, sev, i);
        if (strcmp(is->variable, var) == 0)
            return is;
    }
    return NULL;
}

void wbt_dump(const wb_config_report *rep)
{
    char *s = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
    fprintf(stderr, "%s", s ? s : "(no report)\n");
    wb_free(s);
}

const char *wbt_tmpfile(const char *text, size_t len)
{
    static char path[64];
    strcpy(path, "/tmp/wbtest-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    if (write(fd, text, len) != (ssize_t)len)
        abort();
    close(fd);
    return path;
}
