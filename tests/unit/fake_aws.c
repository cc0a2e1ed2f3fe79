/* Runs tests/unit/data/fake_aws.py for a test (one per test process). */
#include "fake_aws.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

static pid_t pid;
static unsigned port;

unsigned wbt_fake_aws_start(const char *expires_in)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/unit/data/fake_aws.py",
                 getenv("WB_SOURCE_ROOT") ? getenv("WB_SOURCE_ROOT") : ".");
        execlp("python3", "python3", path, "--expires-in", expires_in, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* the whole first line: closing early would break the writer's pipe */
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t r = read(fds[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        line[n] = '\0';
    }
    close(fds[0]);
    cr_assert(strchr(line, '\n'), "the fake AWS endpoints did not start");
    port = (unsigned)atoi(line);
    cr_assert_gt(port, 0);
    return port;
}

void wbt_fake_aws_stop(void)
{
    if (pid > 0)
        kill(pid, SIGKILL);
    pid = 0;
}

int wbt_fake_aws_count(const char *key)
{
    wb__http *h = wb__http_new();
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/stats", port);
    wb__http_response r;
    char *d = NULL;
    cr_assert_eq(wb__http_request(h, "GET", url, NULL, NULL, 0, 1000, 2000, &r, &d), WB_OK);
    char k[128];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *at = strstr(r.body, k);
    int n = at ? atoi(at + strlen(k)) : 0;
    wb__http_response_free(&r);
    wb__http_free(h);
    return n;
}
