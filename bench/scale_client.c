/* bench-scale-client: N MQTT 3.1.1 workers over TLS in one process and one
 * thread, for bench-scale. Each connection is a worker of the harness's
 * pool as a real one is: the pool certificate, a fresh ULID as client id,
 * clean session, a SUBSCRIBE to its readonly topic, QoS 1 publishes to its
 * writeonly topic. A hand-written client on one epoll loop, because
 * thousands of library clients with a thread each would measure the load
 * generator, not the broker.
 *
 *   bench-scale-client HOST PORT CA CERT KEY POOL NAMESPACE N [ATTEMPT_MS]
 *
 * A worker connects as workerbus's own client does: an attempt not
 * subscribed within ATTEMPT_MS (default 10 s; doubling with each such
 * attempt in a row, at most 30 s) is given up; after a drop or a failed
 * attempt the next waits 100 ms doubling with each attempt since the last
 * connection, at most 30 s, with equal jitter.
 *
 * At start all N connect at once (the storm: every socket, TLS handshake,
 * CONNECT and SUBSCRIBE in flight together), then it prints
 *   connected N MS P50 P99 MAX FAILED TIMED_OUT
 *   curve C1 C2 ...
 * (the time until the last SUBACK; each worker's time from the storm's
 * start to its SUBACK; attempts that failed, and of them those given up
 * for taking too long; how many had their SUBACK within 1, 2, ... s).
 * Then it reads commands on stdin:
 *   steady RATE SECS  RATE publishes a second for SECS seconds, round robin
 *                     over the workers, each payload {"i":I,"t":WALLCLOCK_MS};
 *                     prints "steady SENT ACKED P50 P99 P999 MAX" (publish to
 *                     PUBACK, ms) once every PUBACK is in (or 60 s passed)
 *   reconnect         waits for the connections to drop (the broker's
 *                     restart) and prints "reconnected N MS FAILED
 *                     TIMED_OUT" once all N are subscribed again, MS from
 *                     the first drop, or "reconnected 0 ..." after 120 s,
 *                     then a curve line (seconds from each worker's drop)
 *   quit              disconnects and exits
 * Errors go to stderr; exit 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "workerbus/workerbus.h"

enum state { S_IDLE, S_TCP, S_TLS, S_CONNACK, S_SUBACK, S_READY };

typedef struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    char id[WB_ULID_STR_SIZE];
    char rtopic[WB_TOPIC_BUF_SIZE], wtopic[WB_TOPIC_BUF_SIZE];
    unsigned char in[4096];
    size_t in_len;
    unsigned char out[1024];
    size_t out_len;
    uint16_t next_pid;
    uint16_t pid[4];   /* publishes in flight */
    double sent_at[4]; /* their send times, ms (monotonic) */
    unsigned inflight;
    double started;  /* when this connection attempt began */
    double since;    /* when the worker began to want a connection; 0: has one */
    double retry_at; /* 0: no retry pending */
    unsigned stalls; /* attempts in a row that timed out */
    unsigned fails;  /* attempts since the last connection: the backoff */
    bool want_write;
} conn;

static conn *C;
static unsigned N;
static int ep;
static SSL_CTX *ctx;
static struct sockaddr_in addr;
static unsigned ready, failed_attempts, timed_out;
static double *lat;
static size_t nlat, cap_lat;
static double *conn_ms;
static size_t nconn_ms;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fatal(const char *what, const char *why)
{
    fprintf(stderr, "bench-scale-client: %s: %s\n", what, why);
    exit(1);
}

static void ssl_fatal(const char *what)
{
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    fatal(what, buf);
}

/* ---- MQTT packets ---------------------------------------------------------------- */

static size_t put_len(unsigned char *p, size_t len)
{
    size_t n = 0;
    do {
        unsigned char b = len % 128;
        len /= 128;
        p[n++] = (unsigned char)(len ? b | 0x80 : b);
    } while (len);
    return n;
}

static size_t put_str(unsigned char *p, const char *s, size_t len)
{
    p[0] = (unsigned char)(len >> 8);
    p[1] = (unsigned char)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

/* Appends a packet: fixed header byte, then body. */
static void queue_packet(conn *c, unsigned char type, const unsigned char *body, size_t len)
{
    unsigned char hdr[5];
    hdr[0] = type;
    size_t h = 1 + put_len(hdr + 1, len);
    if (c->out_len + h + len > sizeof c->out)
        fatal("client", "output buffer full");
    memcpy(c->out + c->out_len, hdr, h);
    memcpy(c->out + c->out_len + h, body, len);
    c->out_len += h + len;
}

static void set_events(conn *c, bool want_write)
{
    struct epoll_event e = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0u),
                            .data.u32 = (uint32_t)(c - C)};
    if (want_write != c->want_write)
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->want_write = want_write;
}

static void drop(conn *c);

/* Writes what is queued; false when the connection failed. */
static bool flush_out(conn *c)
{
    while (c->out_len) {
        int w = SSL_write(c->ssl, c->out, (int)c->out_len);
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                set_events(c, true);
                return true;
            }
            return false;
        }
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
    set_events(c, false);
    return true;
}

static void send_connect(conn *c)
{
    unsigned char b[128];
    size_t n = put_str(b, "MQTT", 4);
    b[n++] = 4;    /* 3.1.1 */
    b[n++] = 0x02; /* clean session; identity from the certificate */
    b[n++] = 600 >> 8;
    b[n++] = 600 & 0xff; /* keepalive 600 s: no PINGREQ within a run */
    n += put_str(b + n, c->id, strlen(c->id));
    queue_packet(c, 0x10, b, n);
}

static void send_subscribe(conn *c)
{
    unsigned char b[256];
    size_t n = 0;
    b[n++] = 0;
    b[n++] = 1;
    n += put_str(b + n, c->rtopic, strlen(c->rtopic));
    b[n++] = 1;
    queue_packet(c, 0x82, b, n);
}

static bool send_publish(conn *c, unsigned long i, double wall_ms)
{
    if (c->inflight == 4)
        return false;
    unsigned char b[512];
    size_t n = put_str(b, c->wtopic, strlen(c->wtopic));
    uint16_t pid = ++c->next_pid ? c->next_pid : ++c->next_pid;
    b[n++] = (unsigned char)(pid >> 8);
    b[n++] = (unsigned char)pid;
    n += (size_t)sprintf((char *)b + n, "{\"i\":%lu,\"t\":%.3f}", i, wall_ms);
    queue_packet(c, 0x32, b, n);
    c->pid[c->inflight] = pid;
    c->sent_at[c->inflight++] = mono_ms();
    return true;
}

/* ---- connections ---------------------------------------------------------------- */

static void start(conn *c)
{
    c->started = mono_ms();
    if (c->since == 0)
        c->since = c->started;
    c->retry_at = 0;
    c->in_len = c->out_len = 0;
    c->inflight = 0;
    c->want_write = true;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fatal("socket", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->st = S_TCP;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
        drop(c);
        return;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - C)};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
}

/* The wait before the next attempt, as workerbus's client waits: 100 ms
 * doubling with each attempt since the last connection, at most 30 s,
 * with equal jitter (half of it fixed, half random). */
static double backoff_ms(unsigned attempt)
{
    double base = 100.0;
    for (unsigned i = 0; i < attempt && base < 30000.0; i++)
        base *= 2;
    base = base < 30000.0 ? base : 30000.0;
    return base / 2 + (double)(random() % ((long)base / 2 + 1));
}

/* The connection failed or closed: counted, and tried again when the
 * reconnect command was given. */
static void drop(conn *c)
{
    if (c->st == S_READY)
        ready--;
    else
        failed_attempts++;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->st = S_IDLE;
    c->retry_at = mono_ms() + backoff_ms(c->fails++);
}

static void handle_packet(conn *c, unsigned char type, const unsigned char *p, size_t len)
{
    switch (type >> 4) {
    case 2: /* CONNACK */
        if (c->st != S_CONNACK || len < 2 || p[1] != 0) {
            fprintf(stderr, "bench-scale-client: CONNACK refused (code %d)\n",
                    len >= 2 ? p[1] : -1);
            drop(c);
            return;
        }
        send_subscribe(c);
        c->st = S_SUBACK;
        break;
    case 9: /* SUBACK */
        if (c->st != S_SUBACK || len < 3 || p[2] == 0x80) {
            fprintf(stderr, "bench-scale-client: SUBACK refused\n");
            drop(c);
            return;
        }
        c->st = S_READY;
        c->stalls = c->fails = 0;
        ready++;
        if (nconn_ms < N)
            conn_ms[nconn_ms++] = mono_ms() - c->since;
        c->since = 0;
        break;
    case 4: /* PUBACK */
        if (len >= 2) {
            uint16_t pid = (uint16_t)(p[0] << 8 | p[1]);
            for (unsigned i = 0; i < c->inflight; i++)
                if (c->pid[i] == pid) {
                    if (nlat < cap_lat)
                        lat[nlat++] = mono_ms() - c->sent_at[i];
                    c->pid[i] = c->pid[c->inflight - 1];
                    c->sent_at[i] = c->sent_at[c->inflight - 1];
                    c->inflight--;
                    break;
                }
        }
        break;
    case 3: /* PUBLISH from the server: acknowledged when QoS 1 */
        if ((type & 0x06) == 0x02 && len >= 2) {
            size_t tl = (size_t)(p[0] << 8 | p[1]);
            if (len >= tl + 4) {
                unsigned char ack[2] = {p[2 + tl], p[3 + tl]};
                queue_packet(c, 0x40, ack, 2);
            }
        }
        break;
    default:
        break;
    }
}

static void on_readable(conn *c)
{
    for (;;) {
        int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof c->in - c->in_len));
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            drop(c);
            return;
        }
        c->in_len += (size_t)r;
        /* whole packets out of the buffer */
        size_t at = 0;
        while (c->in_len - at >= 2) {
            size_t len = 0, mult = 1, i = at + 1;
            for (; i < c->in_len && i < at + 5; i++) {
                len += (c->in[i] & 127u) * mult;
                mult *= 128;
                if (!(c->in[i] & 128))
                    break;
            }
            if (i >= c->in_len || c->in_len - i - 1 < len)
                break;
            handle_packet(c, c->in[at], c->in + i + 1, len);
            if (c->st == S_IDLE)
                return;
            at = i + 1 + len;
        }
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
        if (c->in_len == sizeof c->in)
            fatal("client", "a packet larger than the input buffer");
    }
    if (!flush_out(c))
        drop(c);
}

static void on_event(conn *c, uint32_t ev)
{
    if (c->st == S_TCP) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            drop(c);
            return;
        }
        c->ssl = SSL_new(ctx);
        if (!c->ssl)
            ssl_fatal("SSL_new");
        SSL_set_fd(c->ssl, c->fd);
        c->st = S_TLS;
    }
    if (c->st == S_TLS) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                set_events(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            drop(c);
            return;
        }
        send_connect(c);
        c->st = S_CONNACK;
        if (!flush_out(c))
            drop(c);
        return;
    }
    if (ev & EPOLLIN) {
        on_readable(c);
        return;
    }
    if ((ev & EPOLLOUT) && !flush_out(c))
        drop(c);
    else if (ev & (EPOLLERR | EPOLLHUP))
        drop(c);
}

/* How long an attempt may take until its SUBACK, as workerbus's own client
 * allows: 10 s, doubling with each attempt in a row that timed out, at most
 * 30 s. A connection whose handshake the server's full listen queue
 * dropped would otherwise wait for TCP to give up, minutes later. */
static double first_limit_ms = 10000.0;

static double attempt_limit_ms(unsigned stalls)
{
    double ms = first_limit_ms * (double)(1u << (stalls < 4 ? stalls : 4));
    double cap = first_limit_ms > 30000.0 ? first_limit_ms : 30000.0;
    return ms < cap ? ms : cap;
}

/* Runs the loop once, waiting at most wait_ms; starts what is due again and
 * gives up on attempts that took too long. */
static void poll_once(int wait_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, wait_ms);
    for (int i = 0; i < n; i++) {
        conn *c = &C[evs[i].data.u32];
        if (c->fd >= 0)
            on_event(c, evs[i].events);
    }
    static double last_scan;
    double now = mono_ms();
    if (now - last_scan < 50)
        return;
    last_scan = now;
    for (unsigned i = 0; i < N; i++) {
        conn *c = &C[i];
        if (c->st == S_IDLE && c->retry_at > 0 && c->retry_at <= now) {
            start(c);
        } else if (c->st != S_IDLE && c->st != S_READY &&
                   now - c->started > attempt_limit_ms(c->stalls)) {
            c->stalls++;
            timed_out++;
            drop(c);
        }
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    return n ? v[(size_t)((double)(n - 1) * p)] : 0;
}

/* ---- phases ---------------------------------------------------------------------- */

/* "curve C1 C2 ...": how many workers had their SUBACK within 1, 2, ...
 * seconds (conn_ms sorted), up to the last one or 120 s. */
static void print_curve(void)
{
    printf("curve");
    size_t at = 0;
    for (unsigned s = 1; s <= 120 && at < nconn_ms; s++) {
        while (at < nconn_ms && conn_ms[at] <= s * 1000.0)
            at++;
        printf(" %zu", at);
    }
    printf("\n");
}

static void storm(void)
{
    double t0 = mono_ms();
    for (unsigned i = 0; i < N; i++)
        start(&C[i]);
    while (ready < N && mono_ms() - t0 < 300000)
        poll_once(50);
    double ms = mono_ms() - t0;
    qsort(conn_ms, nconn_ms, sizeof *conn_ms, cmp_d);
    printf("connected %u %.0f %.1f %.1f %.1f %u %u\n", ready, ms, pct(conn_ms, nconn_ms, 0.5),
           pct(conn_ms, nconn_ms, 0.99), nconn_ms ? conn_ms[nconn_ms - 1] : 0, failed_attempts,
           timed_out);
    print_curve();
    fflush(stdout);
}

static void steady(unsigned rate, unsigned secs)
{
    unsigned long total = (unsigned long)rate * secs, sent = 0;
    free(lat);
    cap_lat = total;
    lat = calloc(cap_lat, sizeof *lat);
    nlat = 0;
    unsigned next = 0;
    double t0 = mono_ms();
    while (sent < total) {
        unsigned long due = (unsigned long)((mono_ms() - t0) * rate / 1000.0);
        for (unsigned tries = 0; sent < due && sent < total && tries < N; tries++) {
            conn *c = &C[next];
            next = (next + 1) % N;
            if (c->st != S_READY || !send_publish(c, sent, wbb_now_ms()))
                continue;
            sent++;
            if (!flush_out(c))
                drop(c);
        }
        poll_once(1);
    }
    double end = mono_ms();
    while (nlat < sent && mono_ms() - end < 60000)
        poll_once(10);
    qsort(lat, nlat, sizeof *lat, cmp_d);
    printf("steady %lu %zu %.2f %.2f %.2f %.2f\n", sent, nlat, pct(lat, nlat, 0.5),
           pct(lat, nlat, 0.99), pct(lat, nlat, 0.999), nlat ? lat[nlat - 1] : 0);
    fflush(stdout);
}

/* Waits for the drop of every connection (the broker stopping) and for all
 * of them to be back. */
static void reconnect(void)
{
    failed_attempts = timed_out = 0;
    nconn_ms = 0;
    double t0 = mono_ms();
    while (ready == N && mono_ms() - t0 < 120000)
        poll_once(10); /* until the first drop */
    double dropped = mono_ms();
    while (ready < N && mono_ms() - dropped < 120000)
        poll_once(10);
    printf("reconnected %u %.0f %u %u\n", ready == N ? ready : 0, mono_ms() - dropped,
           failed_attempts, timed_out);
    qsort(conn_ms, nconn_ms, sizeof *conn_ms, cmp_d);
    print_curve();
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 9 && argc != 10)
        fatal("usage", "bench-scale-client HOST PORT CA CERT KEY POOL NAMESPACE N [ATTEMPT_MS]");
    if (argc == 10 && (first_limit_ms = atof(argv[9])) < 100)
        fatal("usage", "ATTEMPT_MS must be at least 100");
    N = (unsigned)atoi(argv[8]);
    if (N < 1 || N > 50000)
        fatal("usage", "N must be 1-50000");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < N + 64)
            fatal("open-file limit", "lower than N + 64: raise the hard limit (ulimit -Hn)");
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1)
        fatal("host", "not an IPv4 address");
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1)
        ssl_fatal("CA");
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[4]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[5], SSL_FILETYPE_PEM) != 1)
        ssl_fatal("pool certificate");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* the broker's certificate names the address dialled, as a worker checks */
    X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), argv[1]);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    ep = epoll_create1(EPOLL_CLOEXEC);
    C = calloc(N, sizeof *C);
    conn_ms = calloc(N, sizeof *conn_ms);
    if (!C || !conn_ms)
        fatal("memory", "cannot hold the workers");
    for (unsigned i = 0; i < N; i++) {
        wb_ulid u;
        wb_ulid_new(&u);
        wb_ulid_format(&u, C[i].id);
        C[i].fd = -1;
        if (wb_topic_build(C[i].rtopic, sizeof C[i].rtopic, argv[7], WB_TOPIC_READONLY, argv[6],
                           C[i].id, NULL) != WB_OK ||
            wb_topic_build(C[i].wtopic, sizeof C[i].wtopic, argv[7], WB_TOPIC_WRITEONLY, argv[6],
                           C[i].id, NULL) != WB_OK)
            fatal("topics", "the pool must be a ULID and the namespace valid");
    }
    storm();
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        unsigned rate, secs;
        if (sscanf(line, "steady %u %u", &rate, &secs) == 2 && rate > 0 && secs > 0)
            steady(rate, secs);
        else if (strncmp(line, "reconnect", 9) == 0)
            reconnect();
        else if (strncmp(line, "quit", 4) == 0)
            break;
        else
            fatal("command", line);
    }
    for (unsigned i = 0; i < N; i++)
        if (C[i].fd >= 0) {
            unsigned char disc[2] = {0xe0, 0};
            if (C[i].st == S_READY)
                SSL_write(C[i].ssl, disc, 2);
            SSL_free(C[i].ssl);
            close(C[i].fd);
        }
    return 0;
}
