/* An MQTT client on libmosquitto, driven by one I/O thread of our own.
 *
 * Only the I/O thread calls libmosquitto. Other threads append to the outbox
 * or the request list under `lock` and wake the I/O thread through an
 * eventfd. The outbox, the subscriptions and the reconnect backoff are the
 * session layer's (session.c). A QoS 1 message is handed to libmosquitto
 * only while connected; from then on libmosquitto keeps it too (and sends it
 * again after a reconnect) until its PUBACK, which removes it from the
 * outbox. */
#include "mqttc.h"

#include <errno.h>
#include <mosquitto.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session.h"
#include "wb_internal.h"

#define DEFAULT_KEEPALIVE_S      60
#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 30000
#define DEFAULT_MAX_QUEUED       100000
/* QoS 1 messages handed to libmosquitto and not acknowledged, at most. It
 * must not exceed libmosquitto's own in-flight maximum: libmosquitto 2.0.11
 * keeps the messages beyond that maximum in a queue that does not survive a
 * reconnect (seen here: hundreds lost after a broker restart), while those in
 * flight are sent again. The rest waits in our outbox. */
#define LIBMOSQ_INFLIGHT 100
#define HANDOFF_WINDOW   LIBMOSQ_INFLIGHT
#define TICK_MS          200
/* An attempt without CONNACK after this long is abandoned and made again;
 * the limit doubles with each attempt that stalls in a row (a slow link gets
 * the time it needs) up to CONNECT_TIMEOUT_MAX_MS. An attempt whose socket
 * died is abandoned at once (attempt_dead()), so the limit is for a live
 * connection that gets no answer, and it is not shorter: after a broker's
 * restart every worker reconnects at once, and the broker does their TLS
 * handshakes one after the other (about 1 ms each); an attempt given up
 * while it waits its turn is made again, so the broker does the work twice
 * and the others wait longer still. With 2 s, 10 000 workers took 21 s to
 * reconnect, 22 000 attempts given up; with 10 s, 10 s and none
 * (bench-scale, docs/benchmarks.md). */
#define CONNECT_TIMEOUT_MS     10000
#define CONNECT_TIMEOUT_MAX_MS 30000

typedef enum req_kind { REQ_SUB, REQ_UNSUB } req_kind;

typedef struct req {
    struct req *next;
    req_kind kind;
    char *filter;
    int qos;
    int mid;
    bool sent, done;
    bool busy; /* the I/O thread uses it unlocked: its waiter must not free it */
    wb_err result;
    char *detail;
} req;

struct wb__mqttc {
    wb__mqttc_opts o;
    struct mosquitto *m;
    pthread_t thread;
    bool thread_running;
    int wake_fd;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    wb__session s; /* the outbox, subscriptions, backoff and counters */
    req *reqs;
    bool connected;
    bool stopping;
    bool wake_posted;
    int first; /* first connection: 0 pending, 1 up, -1 failed */
    wb_err first_err;
    char *last_error;
    uint64_t received;

    /* I/O thread only (with s.attempt, s.next_attempt_ms, s.ever_connected) */
    char lib_error[256]; /* libmosquitto's last error line (e.g. OpenSSL's) */
    uint64_t attempt_started_ms;
    unsigned stalled; /* attempts in a row abandoned by the watchdog */
    bool socket_open;
    uint64_t down_since_ms; /* when the connection was lost, for the log */
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

static void set_error(wb__mqttc *c, char *msg)
{
    if (!msg)
        return;
    pthread_mutex_lock(&c->lock);
    free(c->last_error);
    c->last_error = msg;
    pthread_mutex_unlock(&c->lock);
}

static void wake(wb__mqttc *c)
{
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        wb__log(WB_LOG_ERROR, c->o.component, "cannot wake the I/O thread: %s", strerror(errno));
}

/* A connection attempt failed (I/O thread): the error, with libmosquitto's
 * own last line, becomes the last error; a TLS refusal ends the first
 * connect() at once (it is not retried). */
static void attempt_failed(wb__mqttc *c, int rc, bool tls)
{
    char *e = wb__asprintf("cannot connect to %s:%u: %s%s%s%s", c->o.connect_host, c->o.port,
                           rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                           c->lib_error[0] ? " (" : "", c->lib_error, c->lib_error[0] ? ")" : "");
    c->lib_error[0] = '\0';
    wb__log(WB_LOG_DEBUG, c->o.component, "%s", e ? e : "cannot connect");
    set_error(c, e);
    pthread_mutex_lock(&c->lock);
    if (tls && c->first == 0) {
        c->first = -1;
        c->first_err = WB_ERR_AUTH_REFUSED;
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

bool wb__mqttc_on_io_thread(const wb__mqttc *c)
{
    return c->thread_running && pthread_equal(pthread_self(), c->thread);
}

/* ---- libmosquitto callbacks (I/O thread) --------------------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    wb__mqttc *c = obj;
    if (rc != 0) {
        char *e = wb__asprintf("the broker at %s:%u refused the connection: %s", c->o.connect_host,
                               c->o.port, mosquitto_connack_string(rc));
        wb__log(WB_LOG_ERROR, c->o.component, "%s", e ? e : "connection refused");
        set_error(c, e);
        pthread_mutex_lock(&c->lock);
        if (c->first == 0) {
            c->first = -1;
            c->first_err = WB_ERR_AUTH_REFUSED;
            pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->lock);
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->connected = true;
    bool again = wb__session_connected(&c->s);
    c->first = c->first == 0 ? 1 : c->first;
    /* subscriptions again (a persistent session may have them already:
     * subscribing twice to the same filter is harmless); made from a copy,
     * without the lock */
    char **filters = NULL;
    int *qos = NULL;
    size_t n = wb__session_subs_copy(&c->s, &filters, &qos, c->o.component);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < n; i++)
        mosquitto_subscribe(m, NULL, filters[i], qos[i]);
    wb__session_subs_free(filters, qos, n);
    c->stalled = 0;
    if (again)
        wb__log(WB_LOG_WARN, c->o.component,
                "reconnected to %s:%u after %.1f s without a connection", c->o.connect_host,
                c->o.port, (double)(wb__now_ms() - c->down_since_ms) / 1000.0);
    if (c->o.on_connection)
        c->o.on_connection(c->o.ctx, true, NULL);
}

static void schedule_reconnect(wb__mqttc *c)
{
    wb__session_backoff(&c->s);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    wb__mqttc *c = obj;
    c->socket_open = false;
    pthread_mutex_lock(&c->lock);
    bool was = c->connected, stopping = c->stopping;
    c->connected = false;
    /* a subscribe or unsubscribe in progress will not be answered */
    for (req *r = c->reqs; r; r = r->next)
        r->sent = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (stopping)
        return;
    schedule_reconnect(c);
    if (!was) { /* the attempt failed: TCP, TLS or the CONNACK */
        bool tls = rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE ||
                   (rc == MOSQ_ERR_ERRNO && errno == EPROTO) || strstr(c->lib_error, "SSL");
        attempt_failed(c, rc, tls);
        return;
    }
    if (was) {
        c->down_since_ms = wb__now_ms();
        char *e = wb__asprintf("connection to %s:%u lost: %s", c->o.connect_host, c->o.port,
                               rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        wb__log(WB_LOG_WARN, c->o.component, "%s; reconnecting", e ? e : "connection lost");
        set_error(c, e);
        if (c->o.on_connection)
            c->o.on_connection(c->o.ctx, false, mosquitto_strerror(rc));
    }
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    wb__mqttc *c = obj;
    pthread_mutex_lock(&c->lock);
    wb__outmsg *e = wb__session_find_mid(&c->s, mid);
    if (e) {
        wb__session_done(&c->s, e, true);
        if (c->s.queued == 0)
            pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    wb__mqttc *c = obj;
    pthread_mutex_lock(&c->lock);
    c->received++;
    pthread_mutex_unlock(&c->lock);
    if (c->o.on_message)
        c->o.on_message(c->o.ctx, msg->topic, msg->payload, (size_t)msg->payloadlen, msg->qos,
                        msg->retain);
}

static void finish_req(wb__mqttc *c, int mid, wb_err result, char *detail)
{
    pthread_mutex_lock(&c->lock);
    for (req *r = c->reqs; r; r = r->next) {
        if (r->sent && !r->done && r->mid == mid) {
            r->done = true;
            r->result = result;
            r->detail = detail;
            detail = NULL;
            pthread_cond_broadcast(&c->cond);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(detail);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted)
{
    (void)m;
    wb__mqttc *c = obj;
    bool refused = count < 1 || granted[0] >= 0x80;
    finish_req(c, mid, refused ? WB_ERR_AUTH_REFUSED : WB_OK,
               refused ? wb__strdup("the broker refused the subscription (not authorized)") : NULL);
}

static void on_unsubscribe(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    finish_req(obj, mid, WB_OK, NULL);
}

static void on_log(struct mosquitto *m, void *obj, int level, const char *str)
{
    (void)m;
    wb__mqttc *c = obj;
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) {
        wb__log(WB_LOG_DEBUG, c->o.component, "libmosquitto: %s", str);
        snprintf(c->lib_error, sizeof c->lib_error, "%s", str);
    }
}

/* ---- the I/O thread ------------------------------------------------------ */

static void try_connect(wb__mqttc *c)
{
    int rc = c->s.ever_connected || c->s.attempt > 0
                 ? mosquitto_reconnect_async(c->m)
                 : mosquitto_connect_async(c->m, c->o.connect_host, (int)c->o.port,
                                           (int)c->o.keepalive_s);
    if (rc == MOSQ_ERR_SUCCESS) {
        c->socket_open = true;
        c->attempt_started_ms = wb__now_ms();
        return;
    }
    attempt_failed(c, rc, rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE);
    if (!c->s.ever_connected && c->s.attempt == 0)
        c->s.attempt = 1; /* from now on mosquitto_reconnect_async */
    schedule_reconnect(c);
}

/* libmosquitto queues a QoS 1 message before it tries to send it: an error
 * from the sending (the connection breaking: NO_CONN, CONN_LOST, PROTOCOL,
 * ERRNO, TLS...) leaves the message in its hands, to be sent again after the
 * reconnect. Only these errors come before the queuing. */
static bool refused_before_queuing(int rc)
{
    return rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_MALFORMED_UTF8 ||
           rc == MOSQ_ERR_NOMEM || rc == MOSQ_ERR_QOS_NOT_SUPPORTED ||
           rc == MOSQ_ERR_NOT_SUPPORTED || rc == MOSQ_ERR_OVERSIZE_PACKET;
}

/* Hands pending messages and requests to libmosquitto (connected only). */
static void hand_over(wb__mqttc *c)
{
    pthread_mutex_lock(&c->lock);
    wb__outmsg *e;
    while (c->connected && c->s.handed < HANDOFF_WINDOW && (e = wb__session_next(&c->s))) {
        int mid = 0;
        /* only this thread frees an outbox entry: e stays while unlocked */
        pthread_mutex_unlock(&c->lock);
        /* unlocked: mosquitto_publish may write and call back */
        int rc = mosquitto_publish(c->m, &mid, e->topic, (int)e->len, e->payload, e->qos, false);
        pthread_mutex_lock(&c->lock);
        bool kept = rc == MOSQ_ERR_SUCCESS || (e->qos == 1 && !refused_before_queuing(rc));
        if (kept && e->qos == 1) {
            e->mid = mid;
            wb__session_handed(&c->s, e);
        } else {
            if (!kept)
                wb__log(WB_LOG_ERROR, c->o.component, "dropped a message to %s: %s", e->topic,
                        mosquitto_strerror(rc));
            wb__session_done(&c->s, e, kept);
            if (c->s.queued == 0)
                pthread_cond_broadcast(&c->cond);
        }
    }
    for (req *r = c->reqs; c->connected && r; r = r->next) {
        if (r->sent || r->done)
            continue;
        int mid = 0;
        r->busy = true;
        pthread_mutex_unlock(&c->lock);
        int rc = r->kind == REQ_SUB ? mosquitto_subscribe(c->m, &mid, r->filter, r->qos)
                                    : mosquitto_unsubscribe(c->m, &mid, r->filter);
        pthread_mutex_lock(&c->lock);
        r->busy = false;
        pthread_cond_broadcast(&c->cond);
        if (rc == MOSQ_ERR_SUCCESS) {
            r->sent = true;
            r->mid = mid;
        } else if (rc != MOSQ_ERR_NO_CONN) {
            r->done = true;
            r->result = WB_ERR_INVALID_ARGUMENT;
            r->detail = wb__asprintf("\"%s\": %s", r->filter, mosquitto_strerror(rc));
            pthread_cond_broadcast(&c->cond);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* Whether the socket of an attempt is closed or failed. libmosquitto does
 * not always say so while the connection is being made: right after a
 * broker's restart a connect refused leaves its socket closed (TCP state
 * CLOSE, POLLHUP), and the attempt would wait for the time limit. A
 * connection still being made or open polls neither HUP nor ERR. */
static bool attempt_dead(int sock)
{
    if (sock < 0)
        return false;
    struct pollfd p = {.fd = sock, .events = 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* After a round of I/O: a failure that libmosquitto did not report through
 * on_disconnect (it does not for a connection still being made), a socket
 * that died, or an attempt that has not reached CONNACK in time, is
 * abandoned; the next attempt (mosquitto_reconnect_async) closes the old
 * socket and sends the unacknowledged QoS 1 messages again. */
static void check_attempt(wb__mqttc *c, int rc)
{
    if (!c->socket_open)
        return;
    pthread_mutex_lock(&c->lock);
    bool connected = c->connected;
    pthread_mutex_unlock(&c->lock);
    bool closed = mosquitto_socket(c->m) < 0;
    bool failed = rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN;
    if (connected) {
        if (closed || failed) /* lost without a callback (keepalive, say) */
            on_disconnect(c->m, c, failed ? rc : MOSQ_ERR_CONN_LOST);
        return;
    }
    uint64_t limit = (uint64_t)CONNECT_TIMEOUT_MS << (c->stalled < 4 ? c->stalled : 4);
    if (limit > CONNECT_TIMEOUT_MAX_MS)
        limit = CONNECT_TIMEOUT_MAX_MS;
    bool dead = !closed && !failed && attempt_dead(mosquitto_socket(c->m));
    bool late = !dead && wb__now_ms() - c->attempt_started_ms > limit;
    if (late)
        c->stalled++;
    if (!closed && !failed && !dead && !late)
        return;
    wb__log(WB_LOG_DEBUG, c->o.component, "connection attempt to %s:%u %s; trying again",
            c->o.connect_host, c->o.port,
            late     ? "got no CONNACK in time"
            : dead   ? "failed (its socket closed)"
            : failed ? mosquitto_strerror(rc)
                     : "was closed");
    on_disconnect(c->m, c, failed ? rc : MOSQ_ERR_CONN_LOST);
}

static void *io_main(void *arg)
{
    wb__mqttc *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stop = c->stopping;
        bool failed = c->first < 0;
        pthread_mutex_unlock(&c->lock);
        if (stop || failed)
            break;
        uint64_t now = wb__now_ms();
        if (!c->socket_open && now >= c->s.next_attempt_ms)
            try_connect(c);
        int sock = c->socket_open ? mosquitto_socket(c->m) : -1;
        struct pollfd p[2] = {{c->wake_fd, POLLIN, 0}, {sock, POLLIN, 0}};
        if (sock >= 0 && mosquitto_want_write(c->m))
            p[1].events |= POLLOUT;
        int timeout = TICK_MS;
        if (sock < 0) {
            uint64_t at = c->s.next_attempt_ms;
            now = wb__now_ms();
            timeout = at > now ? (int)(at - now < TICK_MS ? at - now : TICK_MS) : 0;
        }
        int n = poll(p, sock >= 0 ? 2 : 1, timeout);
        if (n > 0 && (p[0].revents & POLLIN)) {
            uint64_t v;
            if (read(c->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                wb__log(WB_LOG_ERROR, c->o.component, "wake: %s", strerror(errno));
            pthread_mutex_lock(&c->lock);
            c->wake_posted = false;
            pthread_mutex_unlock(&c->lock);
        }
        int rc = MOSQ_ERR_SUCCESS;
        pthread_mutex_lock(&c->lock);
        bool up = c->connected;
        pthread_mutex_unlock(&c->lock);
        if (!up && sock >= 0 && n > 0 && p[1].revents) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if ((p[1].revents & (POLLERR | POLLHUP)) &&
                getsockopt(sock, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr) {
                /* the TCP connect failed (refused, unreachable): libmosquitto
                 * does not say so for an asynchronous connect */
                errno = soerr;
                rc = MOSQ_ERR_ERRNO;
            } else {
                /* libmosquitto's own loop step knows how to carry an
                 * asynchronous TLS handshake on */
                rc = mosquitto_loop(c->m, 0, 1);
            }
            n = 0;
        }
        if (sock >= 0 && n > 0 && (p[1].revents & (POLLIN | POLLERR | POLLHUP)))
            rc = mosquitto_loop_read(c->m, 1);
        if (rc == MOSQ_ERR_SUCCESS && c->socket_open && mosquitto_socket(c->m) >= 0 && n > 0 &&
            (p[1].revents & POLLOUT))
            rc = mosquitto_loop_write(c->m, 1);
        if (rc == MOSQ_ERR_SUCCESS && c->socket_open)
            rc = mosquitto_loop_misc(c->m);
        check_attempt(c, rc);
        hand_over(c);
        if (c->socket_open && mosquitto_socket(c->m) >= 0 && mosquitto_want_write(c->m))
            mosquitto_loop_write(c->m, 1);
    }
    /* say goodbye if we can */
    pthread_mutex_lock(&c->lock);
    bool connected = c->connected;
    pthread_mutex_unlock(&c->lock);
    if (connected) {
        mosquitto_disconnect(c->m);
        for (int i = 0; i < 10 && mosquitto_want_write(c->m) && mosquitto_socket(c->m) >= 0; i++)
            mosquitto_loop_write(c->m, 1);
        mosquitto_loop_misc(c->m);
    }
    pthread_mutex_lock(&c->lock);
    c->connected = false;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- the API -------------------------------------------------------------- */

static char *dup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = wb__strdup(s);
    if (!d)
        *oom = true;
    return d;
}

wb_err wb__mqttc_new(const wb__mqttc_opts *o, wb__mqttc **out, char **detail)
{
    pthread_once(&lib_once, lib_init);
    *out = NULL;
    wb__mqttc *c = calloc(1, sizeof *c);
    if (!c)
        return WB_ERR_NO_MEMORY;
    bool oom = false;
    c->o = *o;
    c->o.connect_host = dup_opt(o->connect_host, &oom);
    c->o.tls_name = dup_opt(o->tls_name, &oom);
    c->o.cafile = dup_opt(o->cafile, &oom);
    c->o.certfile = dup_opt(o->certfile, &oom);
    c->o.keyfile = dup_opt(o->keyfile, &oom);
    c->o.username = dup_opt(o->username, &oom);
    c->o.password = dup_opt(o->password, &oom);
    c->o.client_id = dup_opt(o->client_id, &oom);
    c->o.component = dup_opt(o->component ? o->component : "mqtt", &oom);
    if (!c->o.keepalive_s)
        c->o.keepalive_s = DEFAULT_KEEPALIVE_S;
    if (!c->o.reconnect_min_ms)
        c->o.reconnect_min_ms = DEFAULT_RECONNECT_MIN_MS;
    if (!c->o.reconnect_max_ms)
        c->o.reconnect_max_ms = DEFAULT_RECONNECT_MAX_MS;
    if (!c->o.max_queued)
        c->o.max_queued = DEFAULT_MAX_QUEUED;
    wb__session_init(&c->s, c->o.max_queued, c->o.reconnect_min_ms, c->o.reconnect_max_ms);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    wb_err err = WB_OK;
    if (oom) {
        err = WB_ERR_NO_MEMORY;
        goto fail;
    }
    if (c->wake_fd < 0) {
        err = WB_ERR_IO;
        *detail = wb__asprintf("eventfd: %s", strerror(errno));
        goto fail;
    }
    c->m = mosquitto_new(c->o.client_id, c->o.clean_session, c);
    if (!c->m) {
        err = errno == EINVAL ? WB_ERR_INVALID_ARGUMENT : WB_ERR_NO_MEMORY;
        *detail = wb__strdup("libmosquitto refused the client (a persistent session needs a "
                             "client id)");
        goto fail;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(c->m, LIBMOSQ_INFLIGHT);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_unsubscribe_callback_set(c->m, on_unsubscribe);
    mosquitto_log_callback_set(c->m, on_log);
    if (c->o.username &&
        mosquitto_username_pw_set(c->m, c->o.username, c->o.password) != MOSQ_ERR_SUCCESS) {
        err = WB_ERR_NO_MEMORY;
        goto fail;
    }
    if (c->o.tls) {
        int rc = mosquitto_tls_set(c->m, c->o.cafile, NULL, c->o.certfile, c->o.keyfile, NULL);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_tls_opts_set(c->m, 1 /* SSL_VERIFY_PEER */, "tlsv1.2", NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            err = WB_ERR_INVALID_ARGUMENT;
            *detail =
                wb__asprintf("TLS settings refused (CA %s, certificate %s, key %s): %s",
                             c->o.cafile ? c->o.cafile : "-", c->o.certfile ? c->o.certfile : "-",
                             c->o.keyfile ? c->o.keyfile : "-", mosquitto_strerror(rc));
            goto fail;
        }
        /* the chain is always verified (and its purpose: a worker's
         * certificate cannot pose as the broker); the name when given */
        if (!c->o.tls_name || strcmp(c->o.tls_name, c->o.connect_host) != 0)
            mosquitto_tls_insecure_set(c->m, true);
    }
    *out = c;
    return WB_OK;
fail:
    wb__mqttc_free(c);
    return err;
}

wb_err wb__mqttc_connect(wb__mqttc *c, unsigned timeout_ms, char **detail)
{
    if (c->thread_running)
        return WB_ERR_STATE;
    c->first = 0;
    c->stopping = false;
    if (pthread_create(&c->thread, NULL, io_main, c) != 0)
        return WB_ERR_NO_MEMORY;
    c->thread_running = true;
    uint64_t deadline = wb__now_ms() + timeout_ms;
    pthread_mutex_lock(&c->lock);
    while (c->first == 0 && wb__now_ms() < deadline) {
        wb__cond_wait_ms(&c->cond, &c->lock, 20);
    }
    int first = c->first;
    wb_err err = first > 0 ? WB_OK : first < 0 ? c->first_err : WB_ERR_TIMEOUT;
    if (err && detail)
        *detail = wb__asprintf("%s%s", c->last_error ? c->last_error : "no answer from the broker",
                               err == WB_ERR_TIMEOUT ? " (gave up waiting)" : "");
    if (err) {
        c->stopping = true;
        c->first = -1;
    }
    pthread_mutex_unlock(&c->lock);
    if (err) {
        wake(c);
        pthread_join(c->thread, NULL);
        c->thread_running = false;
    }
    return err;
}

wb_err wb__mqttc_publish(wb__mqttc *c, const char *topic, const void *payload, size_t len, int qos,
                         char **detail)
{
    pthread_mutex_lock(&c->lock);
    wb_err err = WB_OK;
    if (!c->thread_running || c->stopping) {
        err = WB_ERR_STATE;
        *detail = wb__strdup("not connected: call connect first");
    } else if (qos == 0 && !c->connected) {
        err = WB_ERR_CONNECTION_LOST;
        *detail = wb__asprintf("not connected to %s:%u: a QoS 0 message is not kept while "
                               "reconnecting (use QoS 1)",
                               c->o.connect_host, c->o.port);
    } else {
        err = wb__session_enqueue(&c->s, topic, payload, len, qos, "the broker", NULL, detail);
    }
    bool post = !err && !c->wake_posted;
    if (post)
        c->wake_posted = true;
    pthread_mutex_unlock(&c->lock);
    if (post)
        wake(c);
    return err;
}

static wb_err wait_req(wb__mqttc *c, req *r, unsigned timeout_ms, char **detail)
{
    uint64_t deadline = wb__now_ms() + timeout_ms;
    wb_err err = WB_OK;
    while (!r->done || r->busy) {
        if (r->busy) {
            /* the I/O thread holds it for a moment */
        } else if (!c->connected) { /* recorded: made when the connection is back */
            err = WB_OK;
            break;
        } else if (wb__now_ms() >= deadline) {
            err = WB_ERR_TIMEOUT;
            *detail =
                wb__asprintf("no answer to the request for \"%s\" in %u ms", r->filter, timeout_ms);
            break;
        }
        wb__cond_wait_ms(&c->cond, &c->lock, 20);
    }
    if (r->done) {
        err = r->result;
        if (r->detail) {
            *detail = r->detail;
            r->detail = NULL;
        }
    }
    /* unlink the request */
    for (req **pp = &c->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    free(r->detail);
    free(r->filter);
    free(r);
    return err;
}

static wb_err request(wb__mqttc *c, req_kind kind, const char *filter, int qos, unsigned timeout_ms,
                      char **detail)
{
    if (wb__mqttc_on_io_thread(c)) {
        *detail = wb__strdup("subscribe and unsubscribe cannot be called from a message "
                             "callback");
        return WB_ERR_STATE;
    }
    req *r = calloc(1, sizeof *r);
    char *f = wb__strdup(filter);
    if (!r || !f) {
        free(r);
        free(f);
        return WB_ERR_NO_MEMORY;
    }
    r->kind = kind;
    r->filter = f;
    r->qos = qos;
    pthread_mutex_lock(&c->lock);
    /* the record of subscriptions, made again after every reconnect */
    if (kind == REQ_SUB && wb__session_sub_add(&c->s, filter, qos) != WB_OK) {
        pthread_mutex_unlock(&c->lock);
        free(r->filter);
        free(r);
        return WB_ERR_NO_MEMORY;
    }
    if (kind == REQ_UNSUB)
        wb__session_sub_remove(&c->s, filter);
    r->next = c->reqs;
    c->reqs = r;
    bool running = c->thread_running;
    pthread_mutex_unlock(&c->lock);
    if (!running) { /* recorded; made at connect */
        pthread_mutex_lock(&c->lock);
        c->reqs = r->next;
        pthread_mutex_unlock(&c->lock);
        free(r->filter);
        free(r);
        return WB_OK;
    }
    wake(c);
    pthread_mutex_lock(&c->lock);
    wb_err err = wait_req(c, r, timeout_ms, detail);
    if (err == WB_ERR_AUTH_REFUSED) /* do not make it again at every reconnect */
        wb__session_sub_remove(&c->s, filter);
    pthread_mutex_unlock(&c->lock);
    return err;
}

wb_err wb__mqttc_subscribe(wb__mqttc *c, const char *filter, int qos, unsigned timeout_ms,
                           char **detail)
{
    return request(c, REQ_SUB, filter, qos, timeout_ms, detail);
}

wb_err wb__mqttc_unsubscribe(wb__mqttc *c, const char *filter, unsigned timeout_ms, char **detail)
{
    return request(c, REQ_UNSUB, filter, 0, timeout_ms, detail);
}

wb_err wb__mqttc_flush(wb__mqttc *c, unsigned timeout_ms, char **detail)
{
    if (wb__mqttc_on_io_thread(c)) {
        *detail = wb__strdup("flush cannot be called from a message callback");
        return WB_ERR_STATE;
    }
    uint64_t deadline = wb__now_ms() + timeout_ms;
    pthread_mutex_lock(&c->lock);
    while (c->s.queued > 0 && c->thread_running && wb__now_ms() < deadline) {
        wb__cond_wait_ms(&c->cond, &c->lock, 20);
    }
    size_t left = c->s.queued, sent = c->s.handed, unsent = c->s.queued - c->s.handed;
    bool up = c->connected;
    pthread_mutex_unlock(&c->lock);
    if (left) {
        *detail = wb__asprintf("%zu message%s not acknowledged by the broker within %u ms (%zu "
                               "sent and awaiting acknowledgement, %zu not sent yet; %s)",
                               left, left == 1 ? "" : "s", timeout_ms, sent, unsent,
                               up ? "connected" : "not connected");
        return WB_ERR_TIMEOUT;
    }
    return WB_OK;
}

wb_err wb__mqttc_disconnect(wb__mqttc *c, unsigned timeout_ms, char **detail)
{
    if (!c->thread_running)
        return WB_OK;
    if (wb__mqttc_on_io_thread(c)) {
        *detail = wb__strdup("disconnect cannot be called from a message callback");
        return WB_ERR_STATE;
    }
    wb_err err = timeout_ms ? wb__mqttc_flush(c, timeout_ms, detail) : WB_OK;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_mutex_unlock(&c->lock);
    wake(c);
    pthread_join(c->thread, NULL);
    c->thread_running = false;
    return err;
}

void wb__mqttc_stats_get(wb__mqttc *c, wb__mqttc_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = (wb__mqttc_stats){.published = c->s.published,
                             .acknowledged = c->s.acknowledged,
                             .received = c->received,
                             .reconnects = c->s.reconnects,
                             .queued = c->s.queued,
                             .connected = c->connected};
    pthread_mutex_unlock(&c->lock);
}

void wb__mqttc_broker_stats(wb__mqttc *c, wb_broker_stats *out)
{
    pthread_mutex_lock(&c->lock);
    wb__session_stats(&c->s, out);
    out->received = c->received;
    out->connected = c->connected;
    pthread_mutex_unlock(&c->lock);
}

void wb__mqttc_free(wb__mqttc *c)
{
    if (!c)
        return;
    if (c->thread_running) {
        char *d = NULL;
        wb__mqttc_disconnect(c, 0, &d);
        free(d);
    }
    if (c->m)
        mosquitto_destroy(c->m);
    wb__session_free(&c->s);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free((char *)c->o.connect_host);
    free((char *)c->o.tls_name);
    free((char *)c->o.cafile);
    free((char *)c->o.certfile);
    free((char *)c->o.keyfile);
    free((char *)c->o.username);
    free((char *)c->o.password);
    free((char *)c->o.client_id);
    free((char *)c->o.component);
    free(c->last_error);
    free(c);
}
