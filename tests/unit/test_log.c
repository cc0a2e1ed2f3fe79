/* The default log handler's formats: text, JSON lines, journald, and the
 * automatic choice of journald when standard error is the journal. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workerbus/workerbus.h"

static char path[] = "/tmp/wblog-XXXXXX";
static int saved = -1;

static void capture(void)
{
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Stops capturing; returns what was written (static buffer). */
static const char *captured(void)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    strcpy(path, "/tmp/wblog-XXXXXX");
    return buf;
}

Test(log, text)
{
    wb_log_set_format(WB_LOG_FORMAT_TEXT);
    capture();
    wb_log_message(WB_LOG_WARN, "queue", "retrying in 50 ms");
    const char *out = captured();
    /* 2026-11-30T03:59:10.131Z WARN  queue: retrying in 50 ms pid=123 */
    cr_assert_eq(strlen(out) > 25 && out[4] == '-' && out[10] == 'T' && out[23] == 'Z', 1, "%s",
                 out);
    char want[128];
    snprintf(want, sizeof want, " WARN  queue: retrying in 50 ms pid=%d\n", (int)getpid());
    cr_assert(strstr(out, want), "%s", out);
}

Test(log, json_lines)
{
    wb_log_set_format(WB_LOG_FORMAT_JSON);
    capture();
    wb_log_message(WB_LOG_ERROR, "broker", "a \"quoted\" word\tand a tab");
    wb_log_message(WB_LOG_INFO, "serve", "second");
    const char *out = captured();
    const char *nl = strchr(out, '\n');
    cr_assert_not_null(nl);
    json_error_t e;
    json_t *j = json_loadb(out, (size_t)(nl - out), 0, &e);
    cr_assert_not_null(j, "%s: %s", e.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "level")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(j, "component")), "broker");
    cr_assert_str_eq(json_string_value(json_object_get(j, "msg")), "a \"quoted\" word\tand a tab");
    cr_assert_eq(json_integer_value(json_object_get(j, "pid")), getpid());
    cr_assert(strlen(json_string_value(json_object_get(j, "ts"))) == 24, "%s", out);
    json_decref(j);
    j = json_loads(nl + 1, 0, &e);
    cr_assert_not_null(j, "the second line: %s", nl + 1);
    json_decref(j);
}

Test(log, journal_and_auto)
{
    wb_log_set_format(WB_LOG_FORMAT_JOURNAL);
    capture();
    wb_log_message(WB_LOG_WARN, "queue", "down");
    cr_assert_str_eq(captured(), "<4>queue: down\n");
    /* auto: the journal when JOURNAL_STREAM names standard error */
    wb_log_set_format(WB_LOG_FORMAT_AUTO);
    capture();
    struct stat st;
    cr_assert_eq(fstat(2, &st), 0);
    char js[64];
    snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    wb_log_message(WB_LOG_INFO, "serve", "up");
    unsetenv("JOURNAL_STREAM");
    wb_log_message(WB_LOG_INFO, "serve", "again");
    const char *out = captured();
    cr_assert(strncmp(out, "<6>serve: up\n", 13) == 0, "%s", out);
    cr_assert(strstr(out + 13, " INFO  serve: again pid="), "%s", out);
}

Test(log, below_the_threshold_nothing)
{
    wb_log_set_format(WB_LOG_FORMAT_TEXT);
    wb_log_set_level(WB_LOG_WARN);
    capture();
    wb_log_message(WB_LOG_INFO, "serve", "hidden");
    cr_assert_str_eq(captured(), "");
    wb_log_set_level(WB_LOG_INFO);
}
