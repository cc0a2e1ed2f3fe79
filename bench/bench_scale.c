/* Thousands of TLS workers on one broker: the connect storm, steady
 * heartbeat loads, a broker restart, against raw Mosquitto in the same run.
 *
 * Two brokers on the harness's PKI, one after the other, each with N
 * workers of bench-scale-client (one process, one epoll loop, a hand-written
 * MQTT client: each worker a TLS connection with the pool certificate, a
 * ULID, a SUBSCRIBE to its readonly topic):
 *  - raw: Mosquitto alone with the same TLS listener (client certificates
 *    required, TLS 1.2), no plugin, no persistence;
 *  - workerbus: the bundled broker as a replica runs it (plugin, topic rule
 *    into the harness's PostgreSQL queue, persistence at exit), and this
 *    process's drain (serve's defaults: 2 threads, 5 ms receive linger)
 *    handing each message to a handler.
 * For each:
 *  - the storm: all N connect at once: the time until the last SUBACK,
 *    each worker's connect time, the broker's CPU per connection (mostly
 *    the TLS handshake), its resident memory per connection and the
 *    kernel's listen-queue overflows;
 *  - the connections held for 20 s with no message: the CPU of the broker,
 *    of PostgreSQL and of the server process (% of a core);
 *  - steady loads of 100 and 1000 msg/s for S seconds, round robin over the
 *    workers: publish to PUBACK, and for workerbus worker to handler
 *    (p50, p99, p99.9), CPU per message of the broker, of PostgreSQL and of
 *    the server process (drain, handler, broker supervision), PostgreSQL
 *    transactions per message;
 *  - a restart: the broker stopped and started again; every worker
 *    reconnects with workerbus's backoff (50-100 ms, then doubling while
 *    refused): the time until all N are subscribed again, from the new
 *    broker's start.
 * Workers connect as workerbus's own client does (bench/scale_client.c);
 * after each storm the workerbus run waits for the plugin to record every
 * worker's presence.
 * And on the same PostgreSQL: the CPU of a plain single-row INSERT, and the
 * minimal SKIP LOCKED queue (bench_minq.h) under the same steady loads:
 * single-row INSERTs from one connection, one consumer claiming up to 100
 * and polling every 5 ms (the drain's linger), no wake-ups: what the
 * simplest correct queue costs per message here.
 *
 * Usage: bench-scale [workers] [seconds] [attempt ms]
 * (default 10000 workers, 60 s; seconds 0: the storm and the restart only;
 * attempt ms: how long a worker's first connection attempt may take,
 * default 10000 as workerbus's own client, doubling after each that timed
 * out) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bench_common.h"
#include "bench_pg.h"
#include "envtext.h"
#include "workerbus/workerbus.h"

static const char *prog = "bench-scale";
static wb_harness *h;

static void die(const char *what, const char *why)
{
    wbb_die_down(prog, h, what, why);
}

/* ---- the handler ---------------------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static double *lat;
static size_t nlat, cap_lat;

static wb_err handler(void *ctx, const wb_worker_message *m)
{
    (void)ctx;
    double t = wbb_now_ms();
    const char *p = strstr(m->envelope->payload, "\"t\":");
    pthread_mutex_lock(&lock);
    if (p && nlat < cap_lat)
        lat[nlat++] = t - atof(p + 4);
    pthread_mutex_unlock(&lock);
    return WB_OK;
}

static size_t handled(void)
{
    pthread_mutex_lock(&lock);
    size_t n = nlat;
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- processes -------------------------------------------------------------------- */

/* The kernel's count of connections dropped at a full listen queue. */
static double listen_overflows(void)
{
    FILE *f = fopen("/proc/net/netstat", "r");
    char names[4096], values[4096];
    double v = 0;
    while (f && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "TcpExt:", 7))
            continue;
        char *sn, *sv;
        char *n = strtok_r(names, " \n", &sn), *x = strtok_r(values, " \n", &sv);
        for (; n && x; n = strtok_r(NULL, " \n", &sn), x = strtok_r(NULL, " \n", &sv))
            if (!strcmp(n, "ListenOverflows"))
                v = atof(x);
    }
    if (f)
        fclose(f);
    return v;
}

/* Starts argv[0] with stdin and stdout on pipes (NULL: /dev/null) and no
 * other descriptor of ours. */
static pid_t spawn(char *const argv[], FILE **in, FILE **out)
{
    int to[2] = {-1, -1}, from[2] = {-1, -1};
    if ((in && pipe(to)) || (out && pipe(from)))
        die("pipe", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork", strerror(errno));
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(in ? to[0] : nul, 0);
        dup2(out ? from[1] : nul, 1);
        close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    if (in) {
        close(to[0]);
        *in = fdopen(to[1], "w");
    }
    if (out) {
        close(from[1]);
        *out = fdopen(from[0], "r");
    }
    return pid;
}

static bool port_open(unsigned port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* ---- the two brokers -------------------------------------------------------------- */

typedef struct broker {
    const char *name;
    unsigned port;
    pid_t raw;           /* raw: the mosquitto process */
    char conf[512];      /* raw: its configuration */
    wb_bundled *bundled; /* workerbus */
    wb_config *cfg;      /* workerbus: the broker's and the drain's */
} broker;

static void broker_start(broker *b)
{
    if (b->cfg) {
        char *d = NULL;
        if (wb_bundled_start(b->cfg, NULL, &b->bundled, &d))
            die("the bundled broker", d);
        return;
    }
    char *argv[] = {"/usr/sbin/mosquitto", "-c", b->conf, NULL};
    b->raw = spawn(argv, NULL, NULL);
    for (int i = 0; !port_open(b->port); i++) {
        if (i > 200 || waitpid(b->raw, NULL, WNOHANG) == b->raw)
            die("raw Mosquitto", "did not listen within 10 s (its log: raw-scale/mosquitto.log)");
        usleep(50000);
    }
}

static void broker_stop(broker *b)
{
    if (b->bundled) {
        wb_bundled_stop(b->bundled);
        b->bundled = NULL;
    }
    if (b->raw > 0) {
        kill(b->raw, SIGTERM);
        waitpid(b->raw, NULL, 0);
        b->raw = 0;
    }
}

static int broker_pid(const broker *b)
{
    return b->bundled ? wb_bundled_pid(b->bundled) : (int)b->raw;
}

static void raw_conf(broker *b)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/raw-scale", wb_harness_dir(h));
    mkdir(dir, 0755);
    snprintf(b->conf, sizeof b->conf, "%s/mosquitto.conf", dir);
    FILE *f = fopen(b->conf, "w");
    if (!f)
        die(b->conf, strerror(errno));
    const char *pki = wb_harness_dir(h);
    /* the bundled broker's listener and limits, without its plugin and
     * persistence; the default log (connections included) to a file */
    fprintf(f,
            "%sper_listener_settings false\nallow_anonymous false\npersistence false\n"
            "log_dest file %s/mosquitto.log\nmax_inflight_messages 100\nset_tcp_nodelay true\n"
            "max_keepalive 1200\n"
            "listener %u 127.0.0.1\nmax_connections -1\n"
            "cafile %s/pki/ca.crt\ncertfile %s/pki/broker.crt\nkeyfile %s/pki/broker.key\n"
            "require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n",
            geteuid() == 0 ? "user root\n" : "", dir, b->port, pki, pki, pki);
    fclose(f);
}

/* Waits until the plugin has recorded the presence of all n workers (its
 * thread writes them after the storm), so that the steady loads measure
 * the messages' cost alone. */
static void wait_presence(const char *url, unsigned n)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        die("libpq", PQerrorMessage(c));
    double t0 = wbb_now_ms();
    for (;;) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM workerbus_presence"
                                " WHERE replica = 'bench-scale'");
        unsigned got =
            PQresultStatus(r) == PGRES_TUPLES_OK ? (unsigned)atol(PQgetvalue(r, 0, 0)) : 0;
        PQclear(r);
        if (got >= n)
            break;
        if (wbb_now_ms() - t0 > 120000)
            die("presence", "the plugin did not record every worker within 120 s");
        usleep(200000);
    }
    fprintf(stderr, "%s: presence of %u workers recorded %.1f s after the last SUBACK\n", prog, n,
            (wbb_now_ms() - t0) / 1e3);
    PQfinish(c);
}

/* ---- one broker's run ------------------------------------------------------------- */

typedef struct storm_fig {
    double all_s, p50, p99, max, failed, timed_out, overflows, cpu_ms_per_conn, kib_per_conn;
    double restart_s, restart_failed, restart_timed_out;
    double idle_broker, idle_pg, idle_server; /* % of a core, connected, no messages */
    unsigned curve[120], ncurve;              /* subscribed within 1, 2, ... s */
    unsigned rcurve[120], nrcurve;            /* the same after the restart */
} storm_fig;

/* How long the connected workers are held with no message, seconds. */
#define IDLE_S 20

typedef struct steady_fig {
    double ack50, ack99, ack999, e2e50, e2e99, e2e999;
    double broker_us, pg_us, server_us, xact;
    unsigned long lost;
} steady_fig;

static double self_cpu_ms(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

static void read_line(FILE *out, char *line, size_t size, const char *what)
{
    if (!fgets(line, (int)size, out))
        die("bench-scale-client", what);
}

/* The client's "curve C1 C2 ..." line. */
static void read_curve(FILE *out, unsigned *v, unsigned *nv)
{
    char line[2048];
    read_line(out, line, sizeof line, "ended before its curve");
    if (strncmp(line, "curve", 5))
        die("bench-scale-client: not a curve", line);
    *nv = 0;
    char *p = line + 5, *end;
    for (unsigned long x; *nv < 120 && (x = strtoul(p, &end, 10), end != p); p = end)
        v[(*nv)++] = (unsigned)x;
}

/* Two curves side by side as bars, one row a second. */
static void print_curves(const char *title, const unsigned *a, unsigned na, const unsigned *b,
                         unsigned nb, unsigned n)
{
    unsigned rows = na > nb ? na : nb, per = n / 40 ? n / 40 : 1;
    printf("\n%s (each # is %u workers):\n\n```text\n  s  %-47s %s\n", title, per, "raw Mosquitto",
           "workerbus");
    for (unsigned r = 0; r < rows; r++) {
        unsigned x = r < na ? a[r] : n, y = r < nb ? b[r] : n;
        char bx[48], by[48];
        unsigned lx = x / per < 40 ? x / per : 40, ly = y / per < 40 ? y / per : 40;
        memset(bx, '#', lx);
        bx[lx] = '\0';
        memset(by, '#', ly);
        by[ly] = '\0';
        printf("%3u  %-40s %6u %-40s %6u\n", r + 1, bx, x, by, y);
    }
    printf("```\n");
}

static const unsigned rates[] = {100, 1000};
static unsigned nrates = 2;
static char attempt_ms[16] = "10000";

static void run(broker *b, unsigned n, unsigned secs, const char *dburl, storm_fig *sf,
                steady_fig sd[2])
{
    broker_start(b);
    int pid = broker_pid(b);
    double rss0 = wbb_rss_kib(pid), lo0 = listen_overflows(), cpu0 = wbb_proc_cpu_ms(pid, NULL);
    char port[16], count[16], ca[400], crt[400], key[400];
    snprintf(port, sizeof port, "%u", b->port);
    snprintf(count, sizeof count, "%u", n);
    snprintf(ca, sizeof ca, "%s/pki/ca.crt", wb_harness_dir(h));
    snprintf(crt, sizeof crt, "%s/pool.crt", wb_harness_dir(h));
    snprintf(key, sizeof key, "%s/pool.key", wb_harness_dir(h));
    wb_config *hc = wb_harness_config(h, WB_BROKER_BUILTIN);
    char ns[128];
    snprintf(ns, sizeof ns, "%s", wb_config_namespace(hc));
    wb_config_free(hc);
    char *argv[] = {WB_BENCH_SCALE_CLIENT,      "127.0.0.1", port,  ca,         crt, key,
                    (char *)wb_harness_pool(h), ns,          count, attempt_ms, NULL};
    FILE *in = NULL, *out = NULL;
    fprintf(stderr, "%s: %s: %u workers connecting\n", prog, b->name, n);
    pid_t client = spawn(argv, &in, &out);
    char line[256];
    read_line(out, line, sizeof line, "ended during the storm");
    unsigned got = 0, failed = 0, timed_out = 0;
    double ms = 0;
    if (sscanf(line, "connected %u %lf %lf %lf %lf %u %u", &got, &ms, &sf->p50, &sf->p99, &sf->max,
               &failed, &timed_out) != 7 ||
        got != n)
        die("the storm (not every worker connected within 300 s)", line);
    sf->all_s = ms / 1e3;
    sf->failed = failed;
    sf->timed_out = timed_out;
    read_curve(out, sf->curve, &sf->ncurve);
    sf->overflows = listen_overflows() - lo0;
    sf->cpu_ms_per_conn = (wbb_proc_cpu_ms(pid, NULL) - cpu0) / n;
    sleep(2); /* the broker settles (freed handshake buffers) */
    sf->kib_per_conn = (wbb_rss_kib(pid) - rss0) / n;
    fprintf(stderr, "%s: %s: all connected in %.1f s\n", prog, b->name, sf->all_s);
    if (b->cfg)
        wait_presence(dburl, n);
    /* the cost of holding the connections with no message at all */
    double i_br = wbb_proc_cpu_ms(pid, NULL), i_pg = b->cfg ? wbb_pg_cpu_ms(prog, h) : 0;
    double i_sv = self_cpu_ms(), i_t = wbb_now_ms();
    sleep(IDLE_S);
    double i_ms = wbb_now_ms() - i_t;
    sf->idle_broker = 100.0 * (wbb_proc_cpu_ms(pid, NULL) - i_br) / i_ms;
    sf->idle_pg = b->cfg ? 100.0 * (wbb_pg_cpu_ms(prog, h) - i_pg) / i_ms : 0;
    sf->idle_server = b->cfg ? 100.0 * (self_cpu_ms() - i_sv) / i_ms : 0;

    for (size_t ri = 0; ri < nrates; ri++) {
        unsigned long total = (unsigned long)rates[ri] * secs;
        wb_queue *q = NULL;
        wb_drain *d = NULL;
        if (b->cfg) {
            wbb_pg_empty_queues(prog, h, dburl);
            wb_queue_opts qo = WB_QUEUE_OPTS_INIT;
            qo.receive_linger_ms = WB_QUEUE_LINGER_DEFAULT_MS; /* serve's default */
            if (wb_queue_open(b->cfg, &qo, &q))
                die("queue", wb_queue_last_error(NULL));
            pthread_mutex_lock(&lock);
            free(lat);
            cap_lat = total;
            lat = calloc(cap_lat, sizeof *lat);
            nlat = 0;
            pthread_mutex_unlock(&lock);
            wb_drain_opts o = WB_DRAIN_OPTS_INIT;
            if (wb_drain_start(q, &o, handler, NULL, &d))
                die("drain", NULL);
            sleep(2); /* the drain's first polls, then quiet */
        }
        double x0 = b->cfg ? wbb_pg_xacts(prog, h, dburl) : 0;
        double pg0 = b->cfg ? wbb_pg_cpu_ms(prog, h) : 0;
        double br0 = wbb_proc_cpu_ms(pid, NULL), sv0 = self_cpu_ms();
        fprintf(stderr, "%s: %s: %u msg/s for %u s\n", prog, b->name, rates[ri], secs);
        fprintf(in, "steady %u %u\n", rates[ri], secs);
        fflush(in);
        read_line(out, line, sizeof line, "ended during a steady load");
        unsigned long sent = 0, acked = 0;
        steady_fig *f = &sd[ri];
        if (sscanf(line, "steady %lu %lu %lf %lf %lf %*f", &sent, &acked, &f->ack50, &f->ack99,
                   &f->ack999) != 5 ||
            sent != total || acked != sent)
            die("the steady load (sent, acknowledged)", line);
        if (b->cfg) {
            for (int waited = 0; handled() < sent && waited < 600; waited++)
                usleep(100000);
            double pg1 = wbb_pg_cpu_ms(prog, h), br1 = wbb_proc_cpu_ms(pid, NULL);
            double sv1 = self_cpu_ms();
            pthread_mutex_lock(&lock);
            f->lost = sent - nlat;
            qsort(lat, nlat, sizeof *lat, wbb_cmp_double);
            f->e2e50 = lat[nlat / 2];
            f->e2e99 = lat[(size_t)((double)(nlat - 1) * 0.99)];
            f->e2e999 = lat[(size_t)((double)(nlat - 1) * 0.999)];
            pthread_mutex_unlock(&lock);
            f->pg_us = (pg1 - pg0) * 1e3 / (double)sent;
            f->broker_us = (br1 - br0) * 1e3 / (double)sent;
            f->server_us = (sv1 - sv0) * 1e3 / (double)sent;
            /* the listening connection's backend counts a transaction for
             * each read of notifications, and an idle backend reports its
             * counts late: its end (the last handle closed) reports them */
            wb_drain_free(d);
            wb_queue_close(q);
            sleep(2); /* the other backends' statistics reach the database */
            f->xact = (wbb_pg_xacts(prog, h, dburl) - x0) / (double)sent;
        } else {
            f->broker_us = (wbb_proc_cpu_ms(pid, NULL) - br0) * 1e3 / (double)sent;
        }
    }

    /* the restart: every worker comes back at once */
    fprintf(stderr, "%s: %s: restart\n", prog, b->name);
    fprintf(in, "reconnect\n");
    fflush(in);
    sleep(1);
    broker_stop(b);
    double up = wbb_now_ms();
    broker_start(b);
    read_line(out, line, sizeof line, "ended during the restart");
    unsigned back = 0, refused = 0, timed_out_again = 0;
    if (sscanf(line, "reconnected %u %*f %u %u", &back, &refused, &timed_out_again) != 3 ||
        back != n)
        die("the restart (not every worker came back within 120 s)", line);
    sf->restart_s = (wbb_now_ms() - up) / 1e3;
    sf->restart_failed = refused;
    sf->restart_timed_out = timed_out_again;
    read_curve(out, sf->rcurve, &sf->nrcurve);
    fprintf(in, "quit\n");
    fflush(in);
    fclose(in);
    fclose(out);
    waitpid(client, NULL, 0);
    broker_stop(b);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 10000;
    unsigned secs = argc > 2 ? (unsigned)atoi(argv[2]) : 60;
    if (argc > 3)
        snprintf(attempt_ms, sizeof attempt_ms, "%s", argv[3]);
    if (n < 1 || n > 50000 || secs > 3600 || atoi(attempt_ms) < 100)
        die("usage", "bench-scale [workers 1-50000] [seconds 0-3600] [attempt ms >= 100]");
    if (secs == 0)
        nrates = 0;
    /* raw Mosquitto does not raise its own open-file limit: it inherits
     * ours, raised to the hard limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < n + 64) {
        char why[160];
        snprintf(why, sizeof why,
                 "the hard open-file limit is %llu: %u workers need at least %u (ulimit -Hn)",
                 (unsigned long long)rl.rlim_max, n, n + 64);
        die("usage", why);
    }
    h = wbb_harness_start(prog, WB_BENCH_SERVICES_SCRIPT);
    const char *env = wb_harness_env(h, WB_BROKER_BUILTIN);
    char dburl[1024];
    snprintf(dburl, sizeof dburl, "%s", wbt_env_value(env, "DATABASE_URL"));
    unsigned port = 30000u + (unsigned)getpid() % 20000u;

    broker raw = {.name = "raw Mosquitto", .port = port};
    raw_conf(&raw);
    broker wb = {.name = "workerbus", .port = port + 1};
    char ep[80], rdir[300];
    snprintf(ep, sizeof ep, "MQTT_BROKER_ENDPOINT=tls://127.0.0.1:%u", wb.port);
    snprintf(rdir, sizeof rdir, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=%s/wb-scale", wb_harness_dir(h));
    const char *over[] = {ep, rdir, "MQTT_BROKER_BUILTIN_REPLICA_ID=bench-scale", NULL};
    char *problems = NULL;
    wb.cfg = wbt_config_of(env, over, &problems);
    if (!wb.cfg)
        die("configuration", problems);

    storm_fig rs = {0}, ws = {0};
    steady_fig rd[2] = {0}, wd[2] = {0};
    run(&raw, n, secs, dburl, &rs, rd);
    run(&wb, n, secs, dburl, &ws, wd);

    /* PostgreSQL's CPU for a plain single-row INSERT, the same server */
    double c0 = wbb_pg_cpu_ms(prog, h);
    wbb_pg_raw_insert(prog, h, dburl, 10000);
    double ins_us = (wbb_pg_cpu_ms(prog, h) - c0) * 1e3 / 10000;
    wbb_minq_fig mq[2] = {0};
    for (size_t ri = 0; ri < nrates; ri++) {
        fprintf(stderr, "%s: minimal SKIP LOCKED queue: %u msg/s for %u s\n", prog, rates[ri],
                secs);
        wbb_pg_minimal_queue(prog, h, dburl, rates[ri], secs, WB_QUEUE_LINGER_DEFAULT_MS, &mq[ri]);
    }

    printf("| %u TLS workers, all at once | all connected s | connect p50 ms | p99 ms | max ms "
           "| failed attempts (timed out) | listen overflows | broker CPU ms per connection | "
           "broker RSS KiB per connection | restart: all back s (from the new broker's start) "
           "| restart: failed attempts (timed out) |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n",
           n);
    const storm_fig *sfs[] = {&rs, &ws};
    const char *names[] = {"raw Mosquitto, same TLS, no plugin",
                           "workerbus bundled broker (plugin, topic rule, PostgreSQL)"};
    for (int i = 0; i < 2; i++)
        printf("| %s | %.1f | %.0f | %.0f | %.0f | %.0f (%.0f) | %.0f | %.2f | %.1f | %.1f | %.0f "
               "(%.0f) |\n",
               names[i], sfs[i]->all_s, sfs[i]->p50, sfs[i]->p99, sfs[i]->max, sfs[i]->failed,
               sfs[i]->timed_out, sfs[i]->overflows, sfs[i]->cpu_ms_per_conn, sfs[i]->kib_per_conn,
               sfs[i]->restart_s, sfs[i]->restart_failed, sfs[i]->restart_timed_out);
    print_curves("Workers subscribed within each second of the storm", rs.curve, rs.ncurve,
                 ws.curve, ws.ncurve, n);
    print_curves("Workers subscribed again within each second of their drop at the restart",
                 rs.rcurve, rs.nrcurve, ws.rcurve, ws.nrcurve, n);
    printf("\n| %u workers connected, no message, %d s | broker CPU %% of a core | PostgreSQL CPU "
           "%% | server CPU %% |\n|---|---|---|---|\n",
           n, IDLE_S);
    printf("| %s | %.1f | - | - |\n", names[0], rs.idle_broker);
    printf("| %s | %.1f | %.1f | %.1f |\n", names[1], ws.idle_broker, ws.idle_pg, ws.idle_server);
    if (!nrates)
        goto out;
    printf("\n| %u workers, steady, %u s | PUBACK p50 ms | p99 | p99.9 | worker to handler p50 "
           "ms | p99 | p99.9 | broker CPU µs/msg | PostgreSQL CPU µs/msg (x plain INSERT) | "
           "server CPU µs/msg | PostgreSQL transactions/msg |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n",
           n, secs);
    for (int ri = 0; ri < 2; ri++) {
        printf("| raw Mosquitto, %u msg/s | %.2f | %.2f | %.2f | | | | %.0f | | | |\n", rates[ri],
               rd[ri].ack50, rd[ri].ack99, rd[ri].ack999, rd[ri].broker_us);
        /* a short run's CPU can be under one clock tick: no ratio then */
        char vs_raw[32] = "", vs_ins[32] = "";
        if (rd[ri].broker_us > 0)
            snprintf(vs_raw, sizeof vs_raw, " (%.1fx raw)", wd[ri].broker_us / rd[ri].broker_us);
        if (ins_us > 0)
            snprintf(vs_ins, sizeof vs_ins, " (%.1fx)", wd[ri].pg_us / ins_us);
        printf("| workerbus, %u msg/s | %.2f | %.2f | %.2f | %.1f | %.1f | %.1f | %.0f%s | %.0f%s "
               "| %.0f | %.2f |\n",
               rates[ri], wd[ri].ack50, wd[ri].ack99, wd[ri].ack999, wd[ri].e2e50, wd[ri].e2e99,
               wd[ri].e2e999, wd[ri].broker_us, vs_raw, wd[ri].pg_us, vs_ins, wd[ri].server_us,
               wd[ri].xact);
    }
    printf("| plain single-row INSERT, one connection (10000) | | | | | | | | %.0f (1.0x) | | "
           "1.00 |\n",
           ins_us);
    for (int ri = 0; ri < 2; ri++) {
        char vs_ins[32] = "";
        if (ins_us > 0)
            snprintf(vs_ins, sizeof vs_ins, " (%.1fx)", mq[ri].pg_us / ins_us);
        printf("| minimal SKIP LOCKED queue, %u msg/s: INSERT to claim, a consumer polling every "
               "%d ms | | | | %.1f | %.1f | %.1f | | %.0f%s | | %.2f |\n",
               rates[ri], WB_QUEUE_LINGER_DEFAULT_MS, mq[ri].lat50, mq[ri].lat99, mq[ri].lat999,
               mq[ri].pg_us, vs_ins, mq[ri].xact);
    }
    for (int ri = 0; ri < 2; ri++)
        if (wd[ri].lost)
            fprintf(stderr, "%s: %lu messages at %u msg/s did not reach the handler\n", prog,
                    wd[ri].lost, rates[ri]);
out:
    wb_config_free(wb.cfg);
    free(lat);
    wb_harness_down(h);
    return wd[0].lost || wd[1].lost;
}
