/* The connect-to relay: a loopback HTTP CONNECT proxy for Paho, joining
 * each connection to one configured address. One thread polls the listener
 * and every pair of sockets; bytes are copied as they come, through a buffer
 * per direction, so a slow side holds back only its own pair. */
#define _GNU_SOURCE /* accept4 */
#include "connect_to.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wb_internal.h"

#define MAX_PAIRS       8
#define HEADER_MAX      4096
#define BUF_SIZE        (64u * 1024u)
#define DIAL_TIMEOUT_MS 5000

typedef struct half {
    char buf[BUF_SIZE];
    size_t off, len; /* bytes buf[off..len) wait to be written */
    bool eof;        /* the reading side ended */
} half;

typedef struct pair {
    int client, upstream; /* -1: closed */
    bool joined;          /* the CONNECT was answered: bytes flow */
    char header[HEADER_MAX + 1];
    size_t header_len;
    half up, down; /* client -> upstream, upstream -> client */
} pair;

struct wb__relay {
    char *host;
    struct sockaddr_storage to;
    socklen_t to_len;
    char to_text[64];
    int listener, wake;
    char proxy[32];
    pthread_t thread;
    atomic_ulong joined;
    pair *pairs[MAX_PAIRS];
};

static void pair_close(pair **slot)
{
    pair *p = *slot;
    if (!p)
        return;
    if (p->client >= 0)
        close(p->client);
    if (p->upstream >= 0)
        close(p->upstream);
    free(p);
    *slot = NULL;
}

/* Writes all of text to a non-blocking socket that has just become readable
 * (its send buffer is empty): a short answer goes out in one piece, which
 * Paho needs, as it reads the answer once and then treats what follows as
 * TLS. */
static bool say(int fd, const char *text)
{
    size_t n = strlen(text);
    return send(fd, text, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Connects to the configured address within DIAL_TIMEOUT_MS; -1 on failure
 * (errno says why). */
static int dial(const struct wb__relay *r)
{
    int fd = socket(r->to.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&r->to, r->to_len) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, DIAL_TIMEOUT_MS);
        int err = 0;
        socklen_t el = sizeof err;
        if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            close(fd);
            errno = n == 0 ? ETIMEDOUT : err ? err : EIO;
            return -1;
        }
    }
    return fd;
}

/* The request line's host, checked against the relay's; the port is the
 * transport's and is not used: the relay dials its own. */
static bool request_ok(const struct wb__relay *r, const char *header)
{
    if (strncmp(header, "CONNECT ", 8) != 0)
        return false;
    const char *h = header + 8;
    const char *end = h;
    if (*h == '[') { /* a bracketed IPv6 literal */
        end = strchr(h, ']');
        if (!end)
            return false;
        h++;
    } else {
        while (*end && *end != ':' && *end != ' ')
            end++;
    }
    size_t n = (size_t)(end - h);
    return n == strlen(r->host) && strncasecmp(h, r->host, n) == 0;
}

/* The client's request is in: answer it and start joining, or refuse. */
static bool start_join(struct wb__relay *r, pair *p)
{
    if (!request_ok(r, p->header)) {
        size_t line = strcspn(p->header, "\r\n");
        char *esc = wb__strndup(p->header, line > 200 ? 200 : line);
        char *shown = esc ? wb_escape(esc, strlen(esc)) : NULL;
        wb__log(WB_LOG_WARN, "broker",
                "connect-to relay: refused \"%s\": it only takes CONNECT %s:<port>",
                shown ? shown : "?", r->host);
        wb_free(shown);
        free(esc);
        say(p->client, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return false;
    }
    p->upstream = dial(r);
    if (p->upstream < 0) {
        wb__log(WB_LOG_WARN, "broker", "connect-to relay: cannot reach %s: %s", r->to_text,
                strerror(errno));
        say(p->client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return false;
    }
    if (!say(p->client, "HTTP/1.1 200 Connection established\r\n\r\n"))
        return false;
    p->joined = true;
    atomic_fetch_add(&r->joined, 1);
    return true;
}

/* Reads the request until its blank line; false: drop the pair. */
static bool read_header(struct wb__relay *r, pair *p)
{
    /* byte by byte past the request: what follows belongs to TLS */
    while (p->header_len < HEADER_MAX) {
        ssize_t n = recv(p->client, p->header + p->header_len, 1, 0);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        p->header_len++;
        p->header[p->header_len] = '\0';
        if (p->header_len >= 4 && memcmp(p->header + p->header_len - 4, "\r\n\r\n", 4) == 0)
            return start_join(r, p);
    }
    say(p->client, "HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n");
    return false;
}

/* Moves what it can from `from` through h to `to`; false: the pair failed.
 * A read that ends (EOF, reset) passes the end on with a half close. */
static bool pump(int from, int to, half *h, short rev_from)
{
    if (h->len == 0 && !h->eof && (rev_from & (POLLIN | POLLHUP))) {
        ssize_t n = recv(from, h->buf, sizeof h->buf, 0);
        if (n > 0) {
            h->off = 0;
            h->len = (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            h->eof = true;
            shutdown(to, SHUT_WR);
        }
    }
    if (h->len > h->off) {
        ssize_t n = send(to, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);
        if (n > 0) {
            h->off += (size_t)n;
            if (h->off == h->len)
                h->off = h->len = 0;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return false;
        }
    }
    return true;
}

static void *relay_thread(void *arg)
{
    struct wb__relay *r = arg;
    for (;;) {
        struct pollfd fds[2 + 2 * MAX_PAIRS];
        int where[2 + 2 * MAX_PAIRS]; /* pair index of each fd */
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = r->wake, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = r->listener, .events = POLLIN};
        for (int i = 0; i < MAX_PAIRS; i++) {
            pair *p = r->pairs[i];
            if (!p)
                continue;
            short ce = 0, ue = 0;
            if (!p->joined) {
                ce = POLLIN;
            } else {
                if (p->up.len == 0 && !p->up.eof)
                    ce |= POLLIN;
                if (p->down.len > 0)
                    ce |= POLLOUT;
                if (p->down.len == 0 && !p->down.eof)
                    ue |= POLLIN;
                if (p->up.len > 0)
                    ue |= POLLOUT;
            }
            where[n] = i;
            fds[n++] = (struct pollfd){.fd = p->client, .events = ce};
            if (p->joined) {
                where[n] = i;
                fds[n++] = (struct pollfd){.fd = p->upstream, .events = ue};
            }
        }
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents)
            break; /* wb__relay_stop() */
        if (fds[1].revents & POLLIN) {
            int c = accept4(r->listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            int slot = -1;
            for (int i = 0; c >= 0 && i < MAX_PAIRS && slot < 0; i++)
                slot = r->pairs[i] ? -1 : i;
            pair *p = slot >= 0 ? calloc(1, sizeof *p) : NULL;
            if (p) {
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                p->client = c;
                p->upstream = -1;
                r->pairs[slot] = p;
            } else if (c >= 0) {
                wb__log(WB_LOG_WARN, "broker",
                        "connect-to relay: %d connections at once, the "
                        "most it joins; one more refused",
                        MAX_PAIRS);
                close(c);
            }
        }
        /* one pass per pair, with the events of its two sockets */
        for (nfds_t k = 2; k < n;) {
            int i = where[k];
            pair *p = r->pairs[i];
            short rc = fds[k].revents, ru = 0;
            nfds_t next = k + 1;
            if (next < n && where[next] == i && p && p->joined && fds[next].fd == p->upstream) {
                ru = fds[next].revents;
                next++;
            }
            k = next;
            if (!p || (!rc && !ru))
                continue;
            bool keep;
            if (!p->joined) {
                keep = (rc & POLLERR) ? false : read_header(r, p);
            } else {
                keep = !((rc | ru) & POLLERR) && pump(p->client, p->upstream, &p->up, rc) &&
                       pump(p->upstream, p->client, &p->down, ru);
                /* both ends done, or one side gone for good (a hang-up
                 * after its end was read: nothing more can pass) */
                if ((p->up.eof && p->down.eof && p->up.len == 0 && p->down.len == 0) ||
                    ((rc & POLLHUP) && p->up.eof) || ((ru & POLLHUP) && p->down.eof))
                    keep = false;
            }
            if (!keep)
                pair_close(&r->pairs[i]);
        }
    }
    return NULL;
}

wb_err wb__relay_start(const char *host, const char *address, unsigned port, wb__relay **out,
                       char **detail)
{
    *out = NULL;
    struct wb__relay *r = calloc(1, sizeof *r);
    if (!r)
        return WB_ERR_NO_MEMORY;
    r->listener = r->wake = -1;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&r->to;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&r->to;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        r->to_len = sizeof *v4;
        snprintf(r->to_text, sizeof r->to_text, "%s:%u", address, port);
    } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        r->to_len = sizeof *v6;
        snprintf(r->to_text, sizeof r->to_text, "[%s]:%u", address, port);
    } else {
        free(r);
        *detail = wb__asprintf("the connect-to address must be a numeric IP address, not \"%s\"",
                               address);
        return WB_ERR_INVALID_ARGUMENT;
    }
    r->host = wb__strdup(host);
    if (!r->host) {
        free(r);
        return WB_ERR_NO_MEMORY;
    }
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t ll = sizeof lo;
    r->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    r->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const char *step = r->listener < 0 || r->wake < 0                          ? "socket"
                       : bind(r->listener, (struct sockaddr *)&lo, ll) != 0    ? "bind"
                       : listen(r->listener, 16) != 0                          ? "listen"
                       : getsockname(r->listener, (struct sockaddr *)&lo, &ll) ? "getsockname"
                                                                               : NULL;
    int e = errno;
    if (!step) {
        snprintf(r->proxy, sizeof r->proxy, "127.0.0.1:%u", (unsigned)ntohs(lo.sin_port));
        e = pthread_create(&r->thread, NULL, relay_thread, r);
        if (e)
            step = "pthread_create";
    }
    if (step) {
        *detail = wb__asprintf("the connect-to relay cannot start: %s: %s", step, strerror(e));
        if (r->listener >= 0)
            close(r->listener);
        if (r->wake >= 0)
            close(r->wake);
        free(r->host);
        free(r);
        return WB_ERR_IO;
    }
    *out = r;
    return WB_OK;
}

const char *wb__relay_proxy(const wb__relay *r)
{
    return r->proxy;
}

unsigned long wb__relay_joined(const wb__relay *r)
{
    return atomic_load(&((wb__relay *)r)->joined);
}

void wb__relay_stop(wb__relay *r)
{
    if (!r)
        return;
    uint64_t one = 1;
    if (write(r->wake, &one, sizeof one) < 0)
        wb__log(WB_LOG_ERROR, "broker", "connect-to relay: cannot wake its thread: %s",
                strerror(errno));
    pthread_join(r->thread, NULL);
    for (int i = 0; i < MAX_PAIRS; i++)
        pair_close(&r->pairs[i]);
    close(r->listener);
    close(r->wake);
    free(r->host);
    free(r);
}
