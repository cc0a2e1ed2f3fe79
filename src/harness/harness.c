/* The whole environment on loopback (harness.h). */
#define _GNU_SOURCE /* close_range */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "wb_internal.h"
#include "wb_paths.h"

typedef struct hworker {
    struct wb_harness *h;
    wb_worker *w;
    atomic_uint_fast64_t seq;
} hworker;

struct wb_harness {
    char *dir, *services_dir, *services;
    char pool[WB_ULID_STR_SIZE];
    char (*worker_ids)[WB_ULID_STR_SIZE];
    unsigned nworkers;
    char *env[2]; /* by wb_broker_type */
    wb_config *cfg[2];
    wb_bundled *broker[2];
    hworker *workers; /* 2 * nworkers: builtin ones, then the stand-in's */
    unsigned heartbeat_ms;
    pthread_t beat;
    bool beating;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool paused, beat_running;
    atomic_uint_fast64_t heartbeats, received, echoed;
    bool services_up;
    int watchdog_fd; /* -1: none */
    pid_t watchdog;
    /* replicas: `workerbus broker run` processes behind HAProxy */
    unsigned nreplicas, replica_timeout_s, lb_port;
    char *workerbus, *db_url;
    char *replica_env[WB_HARNESS_MAX_REPLICAS];
    pid_t replica_pid[WB_HARNESS_MAX_REPLICAS];
    pid_t haproxy;
};

static unsigned free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    unsigned port = 0;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

/* Runs the services script; its standard output into *out (may be NULL). */
static wb_err services(wb_harness *h, const char *args, char **out, char **detail)
{
    char *cmd = wb__asprintf("'%s' %s --dir '%s' 2>'%s/services.log'", h->services, args,
                             h->services_dir, h->dir);
    if (!cmd)
        return WB_ERR_NO_MEMORY;
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) {
        *detail = wb__asprintf("cannot run %s: %s", h->services, strerror(errno));
        return WB_ERR_IO;
    }
    wb__buf b = WB__BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        wb__buf_append(&b, chunk, n);
    int st = pclose(p);
    char *text = wb__buf_take(&b);
    if (st != 0) {
        char *logf = wb__asprintf("%s/services.log", h->dir);
        FILE *f = logf ? fopen(logf, "r") : NULL;
        char tail[2048] = "";
        if (f) {
            size_t got = fread(tail, 1, sizeof tail - 1, f);
            tail[got] = '\0';
            fclose(f);
        }
        free(logf);
        *detail = wb__asprintf("%s %s failed (status %d): %s", h->services, args, st, tail);
        free(text);
        return WB_ERR_IO;
    }
    if (out)
        *out = text;
    else
        free(text);
    return WB_OK;
}

/* The watchdog: a shell in a session of its own that waits on a socket
 * whose other end only this process holds. wb_harness_down() writes a line
 * before closing it, and the shell leaves; any other end of this process (a
 * crash, SIGKILL, an exit without wb_harness_down()) gives it end-of-file,
 * and it stops the services and removes the directory, so that a failed
 * test leaves no PostgreSQL or SQS stand-in running. The bundled brokers
 * need no watchdog: they get SIGTERM when this process dies. */
static void watchdog_start(wb_harness *h)
{
    static const char script[] = "if read -r _; then exit 0; fi; "
                                 "\"$0\" stop --dir \"$1\" >/dev/null 2>&1; rm -rf \"$2\"";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        wb__log(WB_LOG_WARN, "harness",
                "no watchdog (socketpair: %s): a crash would leave "
                "the services running",
                strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* only async-signal-safe calls until exec: the caller may run threads */
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (dup2(sv[0], 0) < 0 || null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", script, h->services, h->services_dir, h->dir, (char *)NULL);
        _exit(127);
    }
    close(sv[0]);
    if (pid < 0) {
        wb__log(WB_LOG_WARN, "harness",
                "no watchdog (fork: %s): a crash would leave the "
                "services running",
                strerror(errno));
        close(sv[1]);
        return;
    }
    h->watchdog = pid;
    h->watchdog_fd = sv[1];
}

/* The harness went down in order: the watchdog leaves without a stop. */
static void watchdog_dismiss(wb_harness *h)
{
    if (h->watchdog_fd < 0)
        return;
    if (send(h->watchdog_fd, "down\n", 5, MSG_NOSIGNAL) != 5)
        wb__log(WB_LOG_DEBUG, "harness", "watchdog: %s", strerror(errno));
    close(h->watchdog_fd);
    h->watchdog_fd = -1;
    while (waitpid(h->watchdog, NULL, 0) < 0 && errno == EINTR)
        ;
}

static const char *line_value(const char *env, const char *key)
{
    static _Thread_local char buf[1024];
    size_t kl = strlen(key);
    for (const char *l = env; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t ll = e ? (size_t)(e - l) : strlen(l);
        if (ll > kl && strncmp(l, key, kl) == 0 && l[kl] == '=') {
            snprintf(buf, sizeof buf, "%.*s", (int)(ll - kl - 1), l + kl + 1);
            return buf;
        }
        l = e ? e + 1 : NULL;
    }
    return NULL;
}

/* ---- the simulated workers ---------------------------------------------- */

static void on_server_message(void *ctx, const wb_message *m)
{
    hworker *hw = ctx;
    atomic_fetch_add(&hw->h->received, 1);
    /* echoes carry no sequence number: the same message gives the same
     * echo on either broker */
    json_t *of = json_loadb(m->payload, m->payload_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!of)
        of = json_stringn(m->payload, m->payload_len);
    json_t *o = json_pack("{s:s, s:o}", "kind", "echo", "of", of ? of : json_null());
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text && wb_worker_publish(hw->w, text, strlen(text), 1) == WB_OK)
        atomic_fetch_add(&hw->h->echoed, 1);
    free(text);
}

static void *beat_main(void *arg)
{
    wb_harness *h = arg;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        wb__cond_wait_ms(&h->cond, &h->lock, h->heartbeat_ms);
        if (h->stop)
            break;
        if (h->paused)
            continue;
        h->beat_running = true;
        pthread_mutex_unlock(&h->lock);
        for (unsigned i = 0; i < 2 * h->nworkers; i++) {
            hworker *hw = &h->workers[i];
            char p[96];
            int n = snprintf(p, sizeof p, "{\"kind\":\"heartbeat\",\"seq\":%llu}",
                             (unsigned long long)atomic_fetch_add(&hw->seq, 1));
            if (wb_worker_publish(hw->w, p, (size_t)n, 1) == WB_OK)
                atomic_fetch_add(&h->heartbeats, 1);
        }
        pthread_mutex_lock(&h->lock);
        h->beat_running = false;
        pthread_cond_broadcast(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static wb_err start_workers(wb_harness *h, char **detail)
{
    h->workers = calloc(2 * (size_t)h->nworkers, sizeof *h->workers);
    if (h->nworkers && !h->workers)
        return WB_ERR_NO_MEMORY;
    char *ca = wb__asprintf("%s/pki/ca.crt", h->dir);
    char *crt = wb__asprintf("%s/pool.crt", h->dir);
    char *key = wb__asprintf("%s/pool.key", h->dir);
    wb_err err = ca && crt && key ? WB_OK : WB_ERR_NO_MEMORY;
    for (unsigned i = 0; i < 2 * h->nworkers && !err; i++) {
        hworker *hw = &h->workers[i];
        hw->h = h;
        wb_broker_type t = i < h->nworkers ? WB_BROKER_BUILTIN : WB_BROKER_IOTCORE;
        wb_worker_opts o = WB_WORKER_OPTS_INIT;
        o.endpoint = wb_config_broker_endpoint(h->cfg[WB_BROKER_BUILTIN]);
        char ep[64];
        if (t == WB_BROKER_IOTCORE) {
            snprintf(ep, sizeof ep, "tls://127.0.0.1:%s",
                     line_value(h->env[WB_BROKER_IOTCORE], "MQTT_BROKER_IOTCORE_CONNECT_TO") +
                         strlen("127.0.0.1:"));
            o.endpoint = ep;
        }
        o.ns = wb_config_namespace(h->cfg[WB_BROKER_BUILTIN]);
        o.pool = h->pool;
        o.worker = h->worker_ids[i % h->nworkers];
        o.ca_file = ca;
        o.cert_file = crt;
        o.key_file = key;
        o.on_message = on_server_message;
        o.on_message_ctx = hw;
        err = wb_worker_open(&o, &hw->w, detail);
        if (!err && wb_worker_connect(hw->w, 15000) != WB_OK) {
            *detail = wb__asprintf("simulated worker %s on the %s broker: %s", o.worker,
                                   t == WB_BROKER_BUILTIN ? "bundled" : "IoT Core stand-in",
                                   wb_worker_last_error(hw->w));
            err = WB_ERR_CONNECTION_LOST;
        }
    }
    free(ca);
    free(crt);
    free(key);
    if (!err && h->heartbeat_ms && h->nworkers) {
        h->beating = pthread_create(&h->beat, NULL, beat_main, h) == 0;
        if (!h->beating)
            err = WB_ERR_NO_MEMORY;
    }
    return err;
}

/* ---- replicas behind HAProxy ---------------------------------------------- */

static wb_err write_file(const char *path, const char *text, mode_t mode);

/* Starts argv[0] with standard output and error appended to log; it gets
 * SIGTERM when this thread ends (as the bundled brokers do) and inherits no
 * descriptor but those. Returns the pid, or -1. */
static pid_t spawn_logged(char *const argv[], const char *log)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* only async-signal-safe calls until exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        close_range(3, ~0u, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd);
    return pid;
}

static char *file_tail(const char *path)
{
    char tail[2048] = "";
    FILE *f = fopen(path, "r");
    if (f) {
        if (fseek(f, -(long)(sizeof tail - 1), SEEK_END) != 0)
            rewind(f);
        size_t got = fread(tail, 1, sizeof tail - 1, f);
        tail[got] = '\0';
        fclose(f);
    }
    return wb__strdup(tail);
}

static bool file_has(const char *path, const char *needle)
{
    char *t = file_tail(path);
    bool found = t && strstr(t, needle);
    free(t);
    return found;
}

/* Replica i's environment: workers reach every replica through the load
 * balancer; its server dials its own broker. */
static char *replica_env(const wb_harness *h, unsigned i, unsigned port)
{
    wb__buf b = WB__BUF_INIT;
    wb__buf_printf(&b,
                   "MQTT_BROKER_TYPE=builtin\n"
                   "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u\n"
                   "MQTT_BROKER_BUILTIN_LISTEN=127.0.0.1:%u\n"
                   "MQTT_BROKER_BUILTIN_PKI_DIR=%s/pki\n"
                   "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/replica-%u\n"
                   "MQTT_BROKER_BUILTIN_LOG_LEVEL=warn\n"
                   "MQTT_BROKER_BUILTIN_REPLICA_ID=replica-%u\n",
                   h->lb_port, port, h->dir, h->dir, i + 1, i + 1);
    if (h->replica_timeout_s)
        wb__buf_printf(&b, "MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT=%u\n", h->replica_timeout_s);
    wb__buf_printf(&b, "MESSAGE_QUEUE_TYPE=postgres\nDATABASE_URL=%s\n", h->db_url);
    return wb__buf_take(&b);
}

/* Starts replica i (its environment file, its process) and waits until its
 * broker and its server side are up. */
static wb_err replica_start(wb_harness *h, unsigned i, char **detail)
{
    unsigned port = free_port();
    h->replica_env[i] = replica_env(h, i, port);
    char *envf = wb__asprintf("%s/replica-%u.env", h->dir, i + 1);
    char *log = wb__asprintf("%s/replica-%u.log", h->dir, i + 1);
    wb_err err = h->replica_env[i] && envf && log ? WB_OK : WB_ERR_NO_MEMORY;
    if (!err && write_file(envf, h->replica_env[i], 0600) != WB_OK)
        err = WB_ERR_IO;
    if (!err) {
        char *argv[] = {h->workerbus, "broker", "run", "--env-file", envf, NULL};
        h->replica_pid[i] = spawn_logged(argv, log);
        if (h->replica_pid[i] < 0) {
            h->replica_pid[i] = 0;
            *detail = wb__asprintf("cannot start %s: %s", h->workerbus, strerror(errno));
            err = WB_ERR_IO;
        }
    }
    for (uint64_t end = wb__now_ms() + 30000; !err;) {
        if (file_has(log, "broker running for"))
            break;
        int st;
        bool gone = waitpid(h->replica_pid[i], &st, WNOHANG) == h->replica_pid[i];
        if (gone || wb__now_ms() > end) {
            if (gone)
                h->replica_pid[i] = 0;
            char *t = file_tail(log);
            *detail = wb__asprintf("replica %u %s: %s", i + 1,
                                   gone ? "exited" : "did not start within 30 s", t ? t : "");
            free(t);
            err = WB_ERR_BACKEND;
            break;
        }
        usleep(20000);
    }
    if (!err)
        h->nreplicas = i + 1;
    free(envf);
    free(log);
    return err;
}

static unsigned replica_port(const wb_harness *h, unsigned i)
{
    const char *v = line_value(h->replica_env[i], "MQTT_BROKER_BUILTIN_LISTEN");
    return v ? (unsigned)atoi(strrchr(v, ':') + 1) : 0;
}

/* HAProxy in TCP mode in front of the replicas' brokers, as an NLB: TLS
 * passes through; the replica with the fewest connections gets the next
 * worker; a replica that stops answering its health check gets none. */
static wb_err haproxy_start(wb_harness *h, char **detail)
{
    /* two descriptors a connection: as many as the hard limit allows, up to
     * the 10 000 workers of the largest tests */
    struct rlimit rl;
    unsigned maxconn = 10000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        rl.rlim_max < 2u * maxconn + 200u)
        maxconn = rl.rlim_max > 400u ? (unsigned)(rl.rlim_max - 200u) / 2u : 100u;
    wb__buf b = WB__BUF_INIT;
    wb__buf_printf(&b,
                   "global\n"
                   "  maxconn %u\n"
                   "  stats socket %s/haproxy.sock mode 600 level admin\n"
                   "defaults\n"
                   "  mode tcp\n"
                   "  timeout connect 2s\n"
                   "  timeout client 1h\n"
                   "  timeout server 1h\n"
                   "  retries 2\n"
                   "  option redispatch\n"
                   "frontend mqtt\n"
                   "  bind 127.0.0.1:%u\n"
                   "  default_backend replicas\n"
                   "backend replicas\n"
                   "  balance leastconn\n"
                   "  default-server inter 500ms fall 2 rise 1\n",
                   maxconn, h->dir, h->lb_port);
    for (unsigned i = 0; i < h->nreplicas; i++)
        wb__buf_printf(&b, "  server replica-%u 127.0.0.1:%u check\n", i + 1, replica_port(h, i));
    char *conf = wb__buf_take(&b);
    char *path = wb__asprintf("%s/haproxy.cfg", h->dir);
    char *log = wb__asprintf("%s/haproxy.log", h->dir);
    wb_err err = conf && path && log ? write_file(path, conf, 0600) : WB_ERR_NO_MEMORY;
    if (!err) {
        char *argv[] = {"/usr/sbin/haproxy", "-db", "-f", path, NULL};
        h->haproxy = spawn_logged(argv, log);
        if (h->haproxy < 0) {
            h->haproxy = 0;
            err = WB_ERR_IO;
        }
    }
    /* up once it accepts on its port */
    for (uint64_t end = wb__now_ms() + 10000; !err;) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)h->lb_port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool up = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0;
        if (s >= 0)
            close(s);
        if (up)
            break;
        int st;
        if (waitpid(h->haproxy, &st, WNOHANG) == h->haproxy || wb__now_ms() > end) {
            char *t = file_tail(log);
            *detail = wb__asprintf("HAProxy (/usr/sbin/haproxy, the Debian package haproxy) did "
                                   "not start: %s",
                                   t ? t : "");
            free(t);
            h->haproxy = 0;
            err = WB_ERR_BACKEND;
            break;
        }
        usleep(20000);
    }
    free(conf);
    free(path);
    free(log);
    return err;
}

/* One command on HAProxy's runtime API; its answer in *answer (heap). */
static wb_err haproxy_command(wb_harness *h, const char *cmd, char **answer)
{
    *answer = NULL;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path, sizeof a.sun_path, "%s/haproxy.sock", h->dir);
    if (n < 0 || (size_t)n >= sizeof a.sun_path)
        return WB_ERR_IO;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return WB_ERR_IO;
    wb_err err = WB_OK;
    size_t len = strlen(cmd);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        send(s, cmd, len, MSG_NOSIGNAL) != (ssize_t)len || send(s, "\n", 1, MSG_NOSIGNAL) != 1)
        err = WB_ERR_IO;
    wb__buf b = WB__BUF_INIT;
    char chunk[512];
    ssize_t got;
    while (!err && (got = recv(s, chunk, sizeof chunk, 0)) > 0)
        wb__buf_append(&b, chunk, (size_t)got);
    close(s);
    *answer = wb__buf_take(&b);
    return err;
}

WB_API wb_err wb_harness_replica_add(wb_harness *h, char **detail)
{
    char *d = NULL;
    if (!h || !h->nreplicas || h->nreplicas >= WB_HARNESS_MAX_REPLICAS)
        return WB_ERR_STATE;
    unsigned i = h->nreplicas;
    wb_err err = replica_start(h, i, &d);
    char cmd[256], *ans = NULL;
    if (!err) {
        snprintf(cmd, sizeof cmd,
                 "add server replicas/replica-%u 127.0.0.1:%u check inter 500ms fall 2 rise 1",
                 i + 1, replica_port(h, i));
        err = haproxy_command(h, cmd, &ans);
        if (!err && ans && strstr(ans, "New server registered")) {
            free(ans);
            snprintf(cmd, sizeof cmd, "enable health replicas/replica-%u", i + 1);
            err = haproxy_command(h, cmd, &ans);
            free(ans);
            ans = NULL; /* freed again below when the next command is not run */
            snprintf(cmd, sizeof cmd, "enable server replicas/replica-%u", i + 1);
            if (!err)
                err = haproxy_command(h, cmd, &ans);
        } else if (!err) {
            d = wb__asprintf("HAProxy refused the new replica: %s", ans ? ans : "");
            err = WB_ERR_BACKEND;
        }
        free(ans);
    }
    if (err && !d)
        d = wb__strdup(wb_strerror(err));
    if (detail)
        *detail = d;
    else
        free(d);
    return err;
}

WB_API unsigned int wb_harness_replicas(const wb_harness *h)
{
    return h ? h->nreplicas : 0;
}

WB_API const char *wb_harness_replica_env(const wb_harness *h, unsigned int i)
{
    return h && i < h->nreplicas ? h->replica_env[i] : NULL;
}

WB_API int wb_harness_replica_pid(const wb_harness *h, unsigned int i)
{
    return h && i < h->nreplicas ? h->replica_pid[i] : 0;
}

/* The child of pid that runs mosquitto (from /proc). */
WB_API int wb_harness_replica_broker_pid(const wb_harness *h, unsigned int i)
{
    pid_t parent = wb_harness_replica_pid(h, i);
    if (parent <= 0)
        return 0;
    DIR *d = opendir("/proc");
    int found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces, so from the last ')' */
        char *close_paren = strrchr(buf, ')');
        char state;
        int ppid;
        if (close_paren && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 &&
            ppid == parent && strstr(buf, "(mosquitto)"))
            found = atoi(e->d_name);
    }
    if (d)
        closedir(d);
    return found;
}

/* Stops the replicas (SIGTERM: each stops its broker, whose presence goes
 * with it) and HAProxy. */
static void replicas_stop(wb_harness *h)
{
    for (unsigned i = 0; i < WB_HARNESS_MAX_REPLICAS; i++) {
        if (h->replica_pid[i] > 0) {
            kill(h->replica_pid[i], SIGCONT); /* a frozen one too */
            kill(h->replica_pid[i], SIGTERM);
        }
    }
    for (unsigned i = 0; i < WB_HARNESS_MAX_REPLICAS; i++) {
        if (h->replica_pid[i] <= 0)
            continue;
        int st;
        uint64_t end = wb__now_ms() + 15000;
        while (waitpid(h->replica_pid[i], &st, WNOHANG) == 0 && wb__now_ms() < end)
            usleep(10000);
        if (waitpid(h->replica_pid[i], &st, WNOHANG) == 0) {
            kill(h->replica_pid[i], SIGKILL);
            waitpid(h->replica_pid[i], &st, 0);
        }
        h->replica_pid[i] = 0;
        free(h->replica_env[i]);
        h->replica_env[i] = NULL;
    }
    if (h->haproxy > 0) {
        kill(h->haproxy, SIGTERM);
        waitpid(h->haproxy, NULL, 0);
        h->haproxy = 0;
    }
}

/* ---- up and down ----------------------------------------------------------- */

static wb_err write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return WB_ERR_IO;
    chmod(path, mode);
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? WB_OK : WB_ERR_IO;
}

static wb_err make_pki(wb_harness *h, char **detail)
{
    char *pki = wb__asprintf("%s/pki", h->dir);
    if (!pki)
        return WB_ERR_NO_MEMORY;
    static const char *const hosts[] = {"127.0.0.1", "localhost", WB_HARNESS_IOT_ENDPOINT, NULL};
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    po.broker_hosts = hosts;
    wb_err err = wb_pki_init(pki, &po, detail);
    wb_ulid u;
    if (!err)
        err = wb_ulid_new(&u);
    if (!err)
        wb_ulid_format(&u, h->pool);
    for (unsigned i = 0; i < h->nworkers && !err; i++) {
        err = wb_ulid_new(&u);
        wb_ulid_format(&u, h->worker_ids[i]);
    }
    char *key = NULL, *csr = NULL, *crt = NULL;
    if (!err)
        err = wb_pki_new_csr(WB_PKI_KEY_EC_P256, h->pool, &key, &csr, detail);
    char *ca = wb__asprintf("%s/ca.crt", pki), *cak = wb__asprintf("%s/ca.key", pki);
    if (!err)
        err = wb_pki_sign_csr(ca, cak, h->pool, csr, strlen(csr), 0, &crt, detail);
    char *kp = wb__asprintf("%s/pool.key", h->dir), *cp = wb__asprintf("%s/pool.crt", h->dir);
    if (!err && (write_file(kp, key, 0600) || write_file(cp, crt, 0644))) {
        *detail = wb__asprintf("cannot write the pool's key and certificate in %s", h->dir);
        err = WB_ERR_IO;
    }
    wb_free(key);
    wb_free(csr);
    wb_free(crt);
    free(ca);
    free(cak);
    free(kp);
    free(cp);
    free(pki);
    return err;
}

/* A configuration from KEY=VALUE lines; NULL (and a log line naming what)
 * when it does not load. */
static wb_config *config_of_text(const char *text, const char *what)
{
    char *copy = text ? wb__strdup(text) : NULL;
    if (!copy)
        return NULL;
    const char *lines[64];
    size_t n = 0;
    for (char *l = copy; *l && n < 63;) {
        char *e = strchr(l, '\n');
        if (e)
            *e = '\0';
        lines[n++] = l;
        if (!e)
            break;
        l = e + 1;
    }
    lines[n] = NULL;
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = lines;
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    if (wb_config_load(&o, &cfg, &rep) != WB_OK) {
        char *t = wb_config_report_format(rep, WB_REPORT_PROBLEMS);
        wb__log(WB_LOG_ERROR, "harness", "the %s environment does not load: %s", what, t ? t : "");
        wb_free(t);
    }
    wb_config_report_free(rep);
    free(copy);
    return cfg;
}

/* The two environments, from the services' variables. */
static wb_err make_envs(wb_harness *h, const char *svc)
{
    unsigned pb = free_port(), pi = free_port();
    wb__buf b = WB__BUF_INIT;
    wb__buf_printf(&b,
                   "MQTT_BROKER_TYPE=builtin\n"
                   "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u\n"
                   "MQTT_BROKER_BUILTIN_PKI_DIR=%s/pki\n"
                   "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/builtin\n"
                   "MQTT_BROKER_BUILTIN_LOG_LEVEL=warn\n"
                   "MESSAGE_QUEUE_TYPE=postgres\n"
                   "DATABASE_URL=%s\n",
                   pb, h->dir, h->dir, line_value(svc, "DATABASE_URL"));
    h->env[WB_BROKER_BUILTIN] = wb__buf_take(&b);
    /* the IoT Core stand-in's own configuration: a bundled broker whose
     * topic rule writes into SQS */
    wb__buf s = WB__BUF_INIT;
    wb__buf_printf(&s,
                   "MQTT_BROKER_TYPE=builtin\n"
                   "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u\n"
                   "MQTT_BROKER_BUILTIN_PKI_DIR=%s/pki\n"
                   "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/iot-standin\n"
                   "MQTT_BROKER_BUILTIN_LOG_LEVEL=warn\n"
                   "MESSAGE_QUEUE_TYPE=sqs\n",
                   pi, h->dir, h->dir);
    wb__buf i = WB__BUF_INIT;
    wb__buf_printf(&i,
                   "MQTT_BROKER_TYPE=iotcore\n"
                   "MQTT_BROKER_ENDPOINT=%s\n"
                   "MQTT_BROKER_IOTCORE_TRANSPORT=mqtts\n"
                   "MQTT_BROKER_IOTCORE_CERT_FILE=%s/pki/server.crt\n"
                   "MQTT_BROKER_IOTCORE_KEY_FILE=%s/pki/server.key\n"
                   "MQTT_BROKER_IOTCORE_CA_FILE=%s/pki/ca.crt\n"
                   "MQTT_BROKER_IOTCORE_CONNECT_TO=127.0.0.1:%u\n"
                   "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true\n"
                   "MESSAGE_QUEUE_TYPE=sqs\n",
                   WB_HARNESS_IOT_ENDPOINT, h->dir, h->dir, h->dir, pi);
    /* the SQS variables (URLs, endpoint, region, dummy credentials) */
    for (const char *l = svc; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t ll = e ? (size_t)(e - l) : strlen(l);
        if (strncmp(l, "DATABASE_URL=", 13) != 0 && ll) {
            wb__buf_printf(&i, "%.*s\n", (int)ll, l);
            wb__buf_printf(&s, "%.*s\n", (int)ll, l);
        }
        l = e ? e + 1 : NULL;
    }
    h->env[WB_BROKER_IOTCORE] = wb__buf_take(&i);
    char *standin = wb__buf_take(&s);
    if (!h->env[0] || !h->env[1] || !standin) {
        free(standin);
        return WB_ERR_NO_MEMORY;
    }
    /* the stand-in's configuration, kept in cfg[IOTCORE] */
    h->cfg[WB_BROKER_IOTCORE] = config_of_text(standin, "IoT Core stand-in");
    wb_err err = h->cfg[WB_BROKER_IOTCORE] ? WB_OK : WB_ERR_CONFIG;
    free(standin);
    return err;
}

WB_API wb_config *wb_harness_config(const wb_harness *h, wb_broker_type type)
{
    if (!h || (unsigned)type > 1)
        return NULL;
    return config_of_text(h->env[type], wb_broker_type_name(type));
}

/* harness.json: who the simulated workers are and where their credentials
 * lie, for test suites that play workers of their own. */
static wb_err write_identities(const wb_harness *h)
{
    json_t *j = json_object(), *ws = json_array();
    char *ca = wb__asprintf("%s/pki/ca.crt", h->dir);
    char *crt = wb__asprintf("%s/pool.crt", h->dir);
    char *key = wb__asprintf("%s/pool.key", h->dir);
    for (unsigned i = 0; ws && i < h->nworkers; i++)
        json_array_append_new(ws, json_string(h->worker_ids[i]));
    char *text = NULL;
    if (j && ws && ca && crt && key) {
        json_object_set_new(j, "dir", json_string(h->dir));
        json_object_set_new(j, "pool", json_string(h->pool));
        json_object_set_new(j, "workers", ws);
        ws = NULL;
        json_object_set_new(j, "ca_file", json_string(ca));
        json_object_set_new(j, "pool_cert_file", json_string(crt));
        json_object_set_new(j, "pool_key_file", json_string(key));
        text = json_dumps(j, JSON_INDENT(2));
    }
    json_decref(j);
    json_decref(ws);
    char *path = wb__asprintf("%s/harness.json", h->dir);
    wb_err err = WB_ERR_NO_MEMORY;
    if (text && path) {
        char *line = wb__asprintf("%s\n", text);
        err = line ? write_file(path, line, 0644) : WB_ERR_NO_MEMORY;
        free(line);
    }
    free(text);
    free(path);
    free(ca);
    free(crt);
    free(key);
    return err;
}

WB_API wb_err wb_harness_up(const wb_harness_opts *opts, wb_harness **out, char **detail)
{
    char *d = NULL;
    if (!out || (opts && opts->version != WB_HARNESS_OPTS_VERSION && opts->version != 1) ||
        (opts && opts->workers > WB_HARNESS_MAX_WORKERS))
        return WB_ERR_INVALID_ARGUMENT;
    *out = NULL;
    wb_harness_opts o = WB_HARNESS_OPTS_INIT;
    if (opts && opts->version == 1) { /* the fields before replicas */
        o.dir = opts->dir;
        o.workers = opts->workers;
        o.heartbeat_ms = opts->heartbeat_ms;
        o.services_script = opts->services_script;
    } else if (opts) {
        o = *opts;
    }
    if (o.replicas > WB_HARNESS_MAX_REPLICAS || (o.replica_timeout_s && o.replica_timeout_s < 3))
        return WB_ERR_INVALID_ARGUMENT;
    wb_harness *h = calloc(1, sizeof *h);
    if (!h)
        return WB_ERR_NO_MEMORY;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->watchdog_fd = -1;
    h->nworkers = o.workers;
    h->heartbeat_ms = o.heartbeat_ms;
    h->worker_ids = calloc(o.workers ? o.workers : 1, sizeof *h->worker_ids);
    h->services = wb__strdup(o.services_script ? o.services_script : WB_SERVICES_PATH);
    h->workerbus = wb__strdup(o.workerbus ? o.workerbus : WB_CLI_PATH);
    h->replica_timeout_s = o.replica_timeout_s;
    if (o.dir) {
        h->dir = wb__strdup(o.dir);
        if (h->dir && mkdir(h->dir, 0711) != 0 && errno != EEXIST) {
            d = wb__asprintf("cannot create %s: %s", h->dir, strerror(errno));
            wb_harness_down(h);
            if (detail)
                *detail = d;
            else
                free(d);
            return WB_ERR_IO;
        }
    } else {
        char tmpl[] = "/tmp/workerbus-harness-XXXXXX";
        h->dir = mkdtemp(tmpl) ? wb__strdup(tmpl) : NULL;
    }
    if (!h->dir || !h->worker_ids || !h->services) {
        wb_harness_down(h);
        return WB_ERR_NO_MEMORY;
    }
    chmod(h->dir, 0711); /* the brokers run as the mosquitto user */
    h->services_dir = wb__asprintf("%s/services", h->dir);
    if (h->services_dir)
        watchdog_start(h);
    char *svc = NULL;
    wb_err err = h->services_dir ? services(h, "start all", &svc, &d) : WB_ERR_NO_MEMORY;
    h->services_up = err == WB_OK;
    /* the SQS stand-in's endpoint and dummy credentials, for this process
     * and the brokers it starts */
    for (char *l = svc; !err && l && *l;) {
        char *e = strchr(l, '\n');
        if (e)
            *e = '\0';
        char *eq = strchr(l, '=');
        if (eq && strncmp(l, "AWS_", 4) == 0) {
            *eq = '\0';
            setenv(l, eq + 1, 1);
            *eq = '=';
        }
        if (e)
            *e = '\n';
        l = e ? e + 1 : NULL;
    }
    if (!err)
        err = make_pki(h, &d);
    if (!err)
        err = make_envs(h, svc);
    if (!err && o.replicas) {
        h->db_url = wb__strdup(line_value(svc, "DATABASE_URL"));
        h->lb_port = free_port();
        if (!h->db_url)
            err = WB_ERR_NO_MEMORY;
    }
    free(svc);
    /* the IoT Core stand-in first, then the bundled broker, or the
     * replicas and their load balancer */
    if (!err)
        err = wb_bundled_start(h->cfg[WB_BROKER_IOTCORE], NULL, &h->broker[WB_BROKER_IOTCORE], &d);
    for (unsigned i = 0; !err && i < o.replicas; i++)
        err = replica_start(h, i, &d);
    if (!err && o.replicas) {
        err = haproxy_start(h, &d);
        free(h->env[WB_BROKER_BUILTIN]);
        h->env[WB_BROKER_BUILTIN] = wb__strdup(h->replica_env[0]);
        if (!err && !h->env[WB_BROKER_BUILTIN])
            err = WB_ERR_NO_MEMORY;
    }
    if (!err && !(h->cfg[WB_BROKER_BUILTIN] = wb_harness_config(h, WB_BROKER_BUILTIN))) {
        d = wb__strdup("the bundled broker's environment does not load (see the log)");
        err = WB_ERR_CONFIG;
    }
    if (!err && !o.replicas)
        err = wb_bundled_start(h->cfg[WB_BROKER_BUILTIN], NULL, &h->broker[WB_BROKER_BUILTIN], &d);
    if (!err)
        err = start_workers(h, &d);
    for (int t = 0; t < 2 && !err; t++) {
        char *p = wb__asprintf("%s/%s.env", h->dir, wb_broker_type_name((wb_broker_type)t));
        if (!p || write_file(p, h->env[t], 0600) != WB_OK)
            err = WB_ERR_IO;
        free(p);
    }
    if (!err)
        err = write_identities(h);
    if (err) {
        if (!d)
            d = wb__strdup(wb_strerror(err));
        wb_harness_down(h);
        if (detail)
            *detail = d;
        else
            free(d);
        return err;
    }
    *out = h;
    return WB_OK;
}

WB_API const char *wb_harness_env(const wb_harness *h, wb_broker_type type)
{
    return h && (unsigned)type <= 1 ? h->env[type] : NULL;
}

WB_API const char *wb_harness_pool(const wb_harness *h)
{
    return h ? h->pool : NULL;
}

WB_API const char *wb_harness_worker(const wb_harness *h, unsigned int i)
{
    return h && i < h->nworkers ? h->worker_ids[i] : NULL;
}

WB_API const char *wb_harness_dir(const wb_harness *h)
{
    return h ? h->dir : NULL;
}

WB_API const char *wb_harness_services_dir(const wb_harness *h)
{
    return h ? h->services_dir : NULL;
}

WB_API int wb_harness_broker_pid(const wb_harness *h, wb_broker_type type)
{
    if (h && type == WB_BROKER_BUILTIN && h->nreplicas)
        return wb_harness_replica_broker_pid(h, 0);
    return h && (unsigned)type <= 1 ? wb_bundled_pid(h->broker[type]) : 0;
}

WB_API void wb_harness_stats_get(wb_harness *h, wb_harness_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!h)
        return;
    out->heartbeats = atomic_load(&h->heartbeats);
    out->received = atomic_load(&h->received);
    out->echoed = atomic_load(&h->echoed);
    for (unsigned i = 0; h->workers && i < 2 * h->nworkers; i++) {
        if (!h->workers[i].w)
            continue;
        wb_broker_stats st;
        wb_worker_stats_get(h->workers[i].w, &st);
        out->acknowledged += st.acknowledged;
        out->connected += st.connected;
    }
}

WB_API void wb_harness_heartbeats(wb_harness *h, bool on)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->paused = !on;
    while (!on && h->beat_running)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

WB_API wb_err wb_harness_flush(wb_harness *h, unsigned int timeout_ms)
{
    uint64_t deadline = wb__now_ms() + timeout_ms;
    for (unsigned i = 0; h && h->workers && i < 2 * h->nworkers; i++) {
        uint64_t now = wb__now_ms();
        if (now >= deadline || wb_worker_flush(h->workers[i].w, (unsigned)(deadline - now)))
            return WB_ERR_TIMEOUT;
    }
    return WB_OK;
}

WB_API wb_err wb_harness_down(wb_harness *h)
{
    if (!h)
        return WB_OK;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    if (h->beating)
        pthread_join(h->beat, NULL);
    for (unsigned i = 0; h->workers && i < 2 * h->nworkers; i++) {
        if (h->workers[i].w) {
            wb_worker_flush(h->workers[i].w, 2000);
            wb_worker_close(h->workers[i].w);
        }
    }
    free(h->workers);
    replicas_stop(h);
    wb_err err = WB_OK;
    for (int t = 0; t < 2; t++) {
        if (wb_bundled_stop(h->broker[t]) != WB_OK)
            err = WB_ERR_TIMEOUT;
        wb_config_free(h->cfg[t]);
        free(h->env[t]);
    }
    char *d = NULL;
    if (h->services_up && services(h, "stop", NULL, &d) != WB_OK) {
        wb__log(WB_LOG_WARN, "harness", "%s", d ? d : "the services did not stop");
        err = WB_ERR_IO;
    }
    free(d);
    if (h->dir) {
        char *cmd = wb__asprintf("rm -rf '%s'", h->dir);
        if (cmd && system(cmd) != 0)
            wb__log(WB_LOG_WARN, "harness", "cannot remove %s", h->dir);
        free(cmd);
    }
    watchdog_dismiss(h);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h->worker_ids);
    free(h->workerbus);
    free(h->db_url);
    free(h->services);
    free(h->services_dir);
    free(h->dir);
    free(h);
    return err;
}
