/* The connect-to relay of the iotcore backend: an HTTP CONNECT proxy on
 * loopback that joins the configured host's connections to one address and
 * refuses every other host. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connect_to.h"

#define HOST "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"

/* An upstream that answers each line "X" with "X back" once. */
static int upstream_fd;
static unsigned upstream_port;

static void *upstream(void *arg)
{
    (void)arg;
    int c = accept(upstream_fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[256];
    ssize_t n = recv(c, buf, sizeof buf - 1, 0);
    if (n > 0) {
        buf[n] = '\0';
        char out[300];
        int m = snprintf(out, sizeof out, "%s back", buf);
        if (send(c, out, (size_t)m, 0) < 0)
            perror("upstream send");
    }
    close(c);
    return NULL;
}

static void start_upstream(pthread_t *t)
{
    upstream_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    cr_assert_eq(bind(upstream_fd, (struct sockaddr *)&a, l), 0);
    cr_assert_eq(listen(upstream_fd, 4), 0);
    cr_assert_eq(getsockname(upstream_fd, (struct sockaddr *)&a, &l), 0);
    upstream_port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(t, NULL, upstream, NULL), 0);
}

/* Connects to the relay and sends a request. */
static int ask(const wb__relay *r, const char *request)
{
    const char *proxy = wb__relay_proxy(r);
    cr_assert(strncmp(proxy, "127.0.0.1:", 10) == 0, "%s", proxy);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(proxy + 10)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));
    return fd;
}

/* Reads until the peer closes or timeout; returns what came. */
static char *read_all(int fd, unsigned timeout_ms)
{
    static char buf[1024];
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len < sizeof buf - 1 && poll(&p, 1, (int)timeout_ms) > 0) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

Test(relay, joins_the_configured_host_to_the_address)
{
    pthread_t t;
    start_upstream(&t);
    wb__relay *r = NULL;
    char *d = NULL;
    cr_assert_eq(wb__relay_start(HOST, "127.0.0.1", upstream_port, &r, &d), WB_OK, "%s", d);
    int fd = ask(r, "CONNECT " HOST ":8883 HTTP/1.1\r\nHost: " HOST ":8883\r\n\r\n");
    /* the answer comes alone, before any byte of the upstream */
    char head[64] = {0};
    size_t want = strlen("HTTP/1.1 200 Connection established\r\n\r\n"), got = 0;
    while (got < want) {
        ssize_t n = recv(fd, head + got, want - got, 0);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    cr_assert_str_eq(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    cr_assert_eq(send(fd, "ping", 4, 0), 4);
    cr_assert_str_eq(read_all(fd, 5000), "ping back");
    close(fd);
    pthread_join(t, NULL);
    close(upstream_fd);
    cr_assert_eq(wb__relay_joined(r), 1);
    wb__relay_stop(r);
}

Test(relay, refuses_any_other_host)
{
    wb__relay *r = NULL;
    char *d = NULL;
    cr_assert_eq(wb__relay_start(HOST, "127.0.0.1", 9, &r, &d), WB_OK, "%s", d);
    static const char *const bad[] = {
        "CONNECT evil.example.com:8883 HTTP/1.1\r\n\r\n",
        "CONNECT " HOST ".evil.example.com:8883 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = ask(r, bad[i]);
        const char *answer = read_all(fd, 5000);
        cr_assert(strncmp(answer, "HTTP/1.1 403", 12) == 0, "%s: %s", bad[i], answer);
        close(fd);
    }
    cr_assert_eq(wb__relay_joined(r), 0);
    wb__relay_stop(r);
}

Test(relay, an_unreachable_address_gets_502)
{
    /* a port nothing listens on: bind one, close it */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    cr_assert_eq(bind(s, (struct sockaddr *)&a, l), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s);
    wb__relay *r = NULL;
    char *d = NULL;
    cr_assert_eq(wb__relay_start(HOST, "127.0.0.1", ntohs(a.sin_port), &r, &d), WB_OK, "%s", d);
    int fd = ask(r, "CONNECT " HOST ":443 HTTP/1.1\r\n\r\n");
    const char *answer = read_all(fd, 8000);
    cr_assert(strncmp(answer, "HTTP/1.1 502", 12) == 0, "%s", answer);
    close(fd);
    wb__relay_stop(r);
}

Test(relay, a_name_is_not_an_address)
{
    wb__relay *r = NULL;
    char *d = NULL;
    cr_assert_eq(wb__relay_start(HOST, "localhost", 8883, &r, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "numeric IP address"), "%s", d);
    cr_assert_null(r);
    free(d);
}
