/* The bundled Mosquitto broker: configuration, supervision, log routing. */
#define _GNU_SOURCE /* pipe2 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include "config_views.h"
#include "wb_internal.h"

#define DEFAULT_START_TIMEOUT_MS 15000
#define DEFAULT_RESTART_MIN_MS   250
#define DEFAULT_RESTART_MAX_MS   15000
#define DEFAULT_AUTOSAVE_S       5
#define STOP_GRACE_MS            10000
#define PROBE_INTERVAL_MS        25
/* a child that stayed up this long resets the restart backoff */
#define STABLE_MS  10000
#define TAIL_LINES 12

typedef enum bltn_state { BLTN_STARTING, BLTN_READY, BLTN_DOWN, BLTN_FAILED } bltn_state;

struct wb_bundled {
    const wb_config *cfg;
    wb_bundled_opts opts;
    char *runtime_dir;
    char *conf_path;
    char *pid_path;
    uid_t run_uid; /* the user mosquitto runs as; -1: ours */
    gid_t run_gid;
    char *mosquitto;
    char *extra_conf;
    char *probe_host; /* where the readiness probe connects */
    unsigned port;
    /* saved at exit only (a replica): the persistence file, removed once a
     * started broker has read it */
    char *db_path;

    pthread_t thread;
    bool thread_started;
    int ctl_fd; /* eventfd: stop request */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bltn_state state;
    pid_t pid;
    unsigned restarts;
    bool stop_forced;
    char *failure; /* why the first start failed */

    /* supervisor-thread state */
    int log_fd;
    int pid_fd;
    char linebuf[4096];
    size_t linelen;
    char *tail[TAIL_LINES]; /* the last log lines, for error reports */
    unsigned tail_next;
    bool running; /* mosquitto said it is running: listeners and TLS files loaded */
    bool looping; /* the plugin's first tick said so: mosquitto runs its main loop */
};

/* ---- files -------------------------------------------------------------- */

static wb_err mkdirs(const char *path, mode_t mode)
{
    char *p = wb__strdup(path);
    if (!p)
        return WB_ERR_NO_MEMORY;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return WB_ERR_IO;
        }
        *s = '/';
    }
    free(p);
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return WB_ERR_IO;
    return chmod(path, mode) == 0 ? WB_OK : WB_ERR_IO;
}

/* Copies src to dst (mode 0600, owned by uid/gid when uid != -1). */
static wb_err copy_file(const char *src, const char *dst, uid_t uid, gid_t gid, char **detail,
                        const char *variable)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        *detail = wb__asprintf("cannot read %s (%s): %s", src, variable, strerror(errno));
        return WB_ERR_IO;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    wb_err err = WB_OK;
    if (out < 0) {
        *detail = wb__asprintf("cannot write %s: %s", dst, strerror(errno));
        close(in);
        return WB_ERR_IO;
    }
    char buf[8192];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            *detail = wb__asprintf("cannot write %s: %s", dst, strerror(errno));
            err = WB_ERR_IO;
            break;
        }
    }
    if (n < 0 && !err) {
        *detail = wb__asprintf("cannot read %s (%s): %s", src, variable, strerror(errno));
        err = WB_ERR_IO;
    }
    if (!err && uid != (uid_t)-1 && fchown(out, uid, gid) != 0) {
        *detail = wb__asprintf("cannot give %s to the broker's user: %s", dst, strerror(errno));
        err = WB_ERR_IO;
    }
    close(in);
    close(out);
    return err;
}

static const char *log_types(wb_log_level level)
{
    /* warnings always: the plugin reports denied access as warnings, and
     * the forwarder drops other mosquitto warnings below the chosen level */
    /* information always: its "mosquitto version ... running" line tells
     * that the listeners and their TLS files are loaded */
    switch (level) {
    case WB_LOG_DEBUG:
        return "log_type all\n";
    case WB_LOG_INFO:
        return "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
    case WB_LOG_WARN:
    case WB_LOG_ERROR:
        break;
    }
    return "log_type error\nlog_type warning\nlog_type information\n";
}

/* The queue settings the plugin's topic rule reads (mode 0600: the
 * database URL may hold a password). AWS credentials and endpoint overrides
 * reach it through the environment Mosquitto inherits. */
static wb_err write_rule_env(const wb_config *c, const char *path, uid_t uid, gid_t gid,
                             char **detail)
{
    wb__buf env = WB__BUF_INIT;
    wb__buf_puts(&env, "# Written by workerbus for the bundled broker's topic rule.\n");
    const char *names[WB__QUEUE_SETTINGS_MAX], *values[WB__QUEUE_SETTINGS_MAX];
    size_t n = wb__config_queue_settings(c, names, values);
    for (size_t i = 0; i < n; i++) {
        const char *v = values[i];
        /* double quotes, with the escapes of the environment-file syntax */
        wb__buf_printf(&env, "%s=\"", names[i]);
        for (const char *s = v; *s; s++) {
            if (*s == '"' || *s == '\\')
                wb__buf_putc(&env, '\\');
            if (*s == '\n')
                wb__buf_puts(&env, "\\n");
            else
                wb__buf_putc(&env, *s);
        }
        wb__buf_puts(&env, "\"\n");
    }
    char *text = wb__buf_take(&env);
    if (!text)
        return WB_ERR_NO_MEMORY;
    wb_err err = WB_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || (uid != (uid_t)-1 && fchown(fd, uid, gid) != 0) ||
        write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        *detail = wb__asprintf("cannot write %s: %s", path, strerror(errno));
        err = WB_ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return err;
}

/* Descriptors Mosquitto keeps for itself: listeners, persistence, logs,
 * the plugin's database connections. */
#define NOFILE_RESERVE 64

/* The longest listen queue asked for (the plugin's limit). */
#define LISTEN_BACKLOG_MAX 65535L

/* How many connections the open-file limit leaves the broker (its soft
 * limit raised to this process's hard one); -1: no limit. */
static long nofile_connections(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY)
        return -1;
    return rl.rlim_max > NOFILE_RESERVE + 1 ? (long)(rl.rlim_max - NOFILE_RESERVE) : 1;
}

static wb_err write_config(wb_bundled *b, uid_t uid, gid_t gid, bool as_root, char **detail)
{
    const wb_config *c = b->cfg;
    bool tls = wb_config_broker_tls(c);
    char *tlsdir = wb__asprintf("%s/credentials", b->runtime_dir);
    char *persist = wb__asprintf("%s/persistence/", b->runtime_dir);
    if (!tlsdir || !persist) {
        free(tlsdir);
        free(persist);
        return WB_ERR_NO_MEMORY;
    }
    wb_err err = mkdirs(tlsdir, 0700);
    if (!err)
        err = mkdirs(persist, 0700);
    if (err) {
        *detail = wb__asprintf("cannot create %s: %s (MQTT_BROKER_BUILTIN_RUNTIME_DIR)", tlsdir,
                               strerror(errno));
        goto out;
    }
    if (uid != (uid_t)-1 && (chown(b->runtime_dir, uid, gid) != 0 || chown(tlsdir, uid, gid) != 0 ||
                             chown(persist, uid, gid) != 0)) {
        *detail = wb__asprintf("cannot give %s to the broker's user: %s", b->runtime_dir,
                               strerror(errno));
        err = WB_ERR_IO;
        goto out;
    }
    const wb__builtin_view *view = wb__config_builtin(c);
    /* each with the variable that names it, for the error */
    const struct {
        const char *from, *variable, *name;
    } tls_files[] = {
        {view->ca_file, "MQTT_BROKER_BUILTIN_CA_FILE", "ca.crt"},
        {view->cert_file, "MQTT_BROKER_BUILTIN_CERT_FILE", "broker.crt"},
        {view->key_file, "MQTT_BROKER_BUILTIN_KEY_FILE", "broker.key"},
    };
    for (size_t i = 0; tls && i < WB__ARRAY_LEN(tls_files) && !err; i++) {
        char *dst = wb__asprintf("%s/%s", tlsdir, tls_files[i].name);
        err = dst ? copy_file(tls_files[i].from, dst, uid, gid, detail, tls_files[i].variable)
                  : WB_ERR_NO_MEMORY;
        free(dst);
    }
    char *token = NULL;
    if (!tls && !err) {
        token = wb__asprintf("%s/token.key", tlsdir);
        err = token ? copy_file(view->token_key_file, token, uid, gid, detail,
                                "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE")
                    : WB_ERR_NO_MEMORY;
    }
    char *rule_env = NULL;
    bool replicas = wb__config_builtin(c)->replicas;
    if (!err && (!b->opts.no_topic_rule || replicas)) {
        rule_env = wb__asprintf("%s/topic-rule.env", tlsdir);
        err = rule_env ? write_rule_env(c, rule_env, uid, gid, detail) : WB_ERR_NO_MEMORY;
    }
    if (err) {
        free(token);
        free(rule_env);
        goto out;
    }

    /* one descriptor a connection: Mosquitto runs with its soft open-file
     * limit raised to the hard one (see spawn()) and refuses connections
     * cleanly past what that leaves, instead of failing its accept() */
    long max_conn = nofile_connections();
    wb__buf conf = WB__BUF_INIT;
    /* Mosquitto saves its whole state on its one thread: a stall of tens of
     * ms with thousands of sessions, every interval. A replica (with
     * PostgreSQL) keeps what waits for its workers in the outbox, and saves
     * at exit only (0); without PostgreSQL the broker's queues are all there
     * is, saved every 5 s. */
    unsigned autosave = b->opts.autosave_interval_s ? b->opts.autosave_interval_s
                        : replicas                  ? 0
                                                    : DEFAULT_AUTOSAVE_S;
    free(b->db_path);
    b->db_path = autosave ? NULL : wb__asprintf("%smosquitto.db", persist);
    wb__buf_printf(&conf,
                   "# Written by workerbus for the bundled broker; it is rewritten at every "
                   "start.\n"
                   "per_listener_settings false\n"
                   "allow_anonymous false\n"
                   "%s"
                   "persistence true\n"
                   "persistence_location %s\n"
                   "autosave_interval %u\n"
                   "log_dest stderr\n" /* unbuffered: lines reach us as they happen */
                   "log_timestamp false\n"
                   "%s"
                   "connection_messages %s\n"
                   /* queued QoS 1 messages of an offline or slow worker: keep
                    * them (bounded by bytes) instead of dropping at 1000 */
                   "max_queued_messages 100000\n"
                   "max_queued_bytes 268435456\n"
                   "max_inflight_messages 100\n"
                   "set_tcp_nodelay true\n"
                   "max_keepalive 1200\n"
                   "persistent_client_expiration 7d\n"
                   /* packets beyond this are dropped at their header; payloads
                    * above the plugin's limit are refused by the plugin */
                   "max_packet_size %u\n"
                   "plugin %s\n"
                   "plugin_opt_namespace %s\n"
                   "plugin_opt_max_payload %zu\n"
                   "plugin_opt_identities_file %sworkerbus-identities\n"
                   /* a listen queue as long as the connections allowed (the
                    * kernel caps it at net.core.somaxconn): a reconnect storm
                    * waits in it instead of being dropped at Mosquitto's 100 */
                   "plugin_opt_listen_backlog %ld\n",
                   /* the child switched user itself; as root without a mosquitto
                    * user, mosquitto must not look for one */
                   as_root && uid == (uid_t)-1 ? "user root\n" : "", persist, autosave,
                   log_types(wb_config_builtin_log_level(c)),
                   wb_config_builtin_log_level(c) <= WB_LOG_INFO ? "true" : "false",
                   WB_BUNDLED_MAX_PACKET, wb__config_builtin(c)->plugin, wb__config_builtin(c)->ns,
                   wb__config_builtin(c)->max_payload, persist,
                   max_conn > 0 && max_conn < LISTEN_BACKLOG_MAX ? max_conn : LISTEN_BACKLOG_MAX);
    if (token)
        wb__buf_printf(&conf, "plugin_opt_token_key %s\n", token);
    if (rule_env && !b->opts.no_topic_rule) {
        wb__buf_printf(&conf, "plugin_opt_topic_rule_env %s\n", rule_env);
        if (wb__config_builtin(c)->ack_received)
            wb__buf_printf(&conf, "plugin_opt_topic_rule_ack received\n");
    }
    if (rule_env && replicas)
        wb__buf_printf(&conf, "plugin_opt_replica_id %s\nplugin_opt_replica_env %s\n",
                       wb__config_builtin(c)->replica_id, rule_env);
    const char *lh = wb_config_builtin_listen_host(c);
    /* max_connections belongs to a listener: outside one, Mosquitto would
     * open its default listener (1883) for it */
    wb__buf_printf(&conf, "\nlistener %u %s\nprotocol mqtt\nmax_connections %ld\n",
                   wb_config_builtin_listen_port(c), lh, max_conn);
    if (tls)
        wb__buf_printf(&conf,
                       "cafile %s/ca.crt\ncertfile %s/broker.crt\nkeyfile %s/broker.key\n"
                       /* the plugin reads the identity from the certificate
                        * at CONNECT, to check the client id against it */
                       "require_certificate true\n"
                       "tls_version tlsv1.2\n",
                       tlsdir, tlsdir, tlsdir);
    if (b->extra_conf)
        wb__buf_printf(&conf, "\n# extra lines (wb_bundled_opts.extra_conf)\n%s\n", b->extra_conf);
    free(token);
    free(rule_env);
    char *text = wb__buf_take(&conf);
    if (!text) {
        err = WB_ERR_NO_MEMORY;
        goto out;
    }
    int fd = open(b->conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && uid != (uid_t)-1 && fchown(fd, uid, gid) != 0) {
        *detail =
            wb__asprintf("cannot give %s to the broker's user: %s", b->conf_path, strerror(errno));
        err = WB_ERR_IO;
    } else if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        *detail = wb__asprintf("cannot write %s: %s", b->conf_path, strerror(errno));
        err = WB_ERR_IO;
    }
    if (fd >= 0)
        close(fd);
    free(text);
out:
    free(tlsdir);
    free(persist);
    return err;
}

/* Whether uid/gid may search every directory down to path. */
static const char *unreachable_ancestor(const char *path, uid_t uid, gid_t gid, char *buf, size_t n)
{
    snprintf(buf, n, "%s", path);
    for (char *s = buf + strlen(buf); s > buf; s--) {
        if (*s != '/' && s[1] != '\0')
            continue;
        char keep = *s;
        if (s != buf + strlen(buf))
            *s = '\0';
        struct stat st;
        bool ok = stat(buf, &st) != 0 || (st.st_mode & S_IXOTH) ||
                  (st.st_uid == uid && (st.st_mode & S_IXUSR)) ||
                  (st.st_gid == gid && (st.st_mode & S_IXGRP));
        if (!ok)
            return buf;
        *s = keep;
    }
    return NULL;
}

/* ---- the port ----------------------------------------------------------- */

static struct addrinfo *resolve(const char *host, unsigned port)
{
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    return getaddrinfo(host, ps, &hints, &res) == 0 ? res : NULL;
}

/* Fails with a clear message when another process holds the port. */
static wb_err port_free(const char *host, unsigned port, char **detail)
{
    struct addrinfo *res = resolve(host, port);
    if (!res) {
        *detail = wb__asprintf("cannot resolve the listen host \"%s\" "
                               "(MQTT_BROKER_BUILTIN_LISTEN, by default the endpoint's host)",
                               host);
        return WB_ERR_INVALID_ARGUMENT;
    }
    wb_err err = WB_OK;
    for (struct addrinfo *a = res; a && !err; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (s < 0)
            continue;
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno == EADDRINUSE) {
                *detail = wb__asprintf(
                    "port %u on %s is already in use by another process: stop it, or choose "
                    "another port (MQTT_BROKER_BUILTIN_LISTEN, or the endpoint's port)",
                    port, host);
                err = WB_ERR_BUSY;
            } else if (errno == EADDRNOTAVAIL) {
                *detail = wb__asprintf(
                    "%s is not an address of this machine, so the broker cannot listen on it: "
                    "set MQTT_BROKER_BUILTIN_LISTEN (e.g. 0.0.0.0:%u)",
                    host, port);
                err = WB_ERR_INVALID_ARGUMENT;
            } else if (errno == EACCES) {
                *detail = wb__asprintf("port %u needs privileges this process lacks", port);
                err = WB_ERR_IO;
            }
        }
        close(s);
    }
    freeaddrinfo(res);
    return err;
}

static bool probe(const char *host, unsigned port)
{
    struct addrinfo *res = resolve(host, port);
    bool ok = false;
    for (struct addrinfo *a = res; a && !ok; a = a->ai_next) {
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (s < 0)
            continue;
        ok = connect(s, a->ai_addr, a->ai_addrlen) == 0;
        close(s);
    }
    if (res)
        freeaddrinfo(res);
    return ok;
}

/* Whether mosquitto waits in its main loop's epoll_wait. It says "running"
 * just before it sets the flag its SIGTERM handler clears, so a SIGTERM
 * between the two (the parent-death signal of a server killed at that
 * moment) would be lost; once it waits in the loop, it is not. True when
 * /proc cannot tell. */
static bool in_main_loop(pid_t pid)
{
    char path[64], wchan[64] = "";
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, wchan, sizeof wchan - 1);
    close(fd);
    if (n <= 0)
        return true;
    wchan[n] = '\0';
    return strstr(wchan, "epoll") != NULL;
}

/* ---- the child ---------------------------------------------------------- */

/* The pid of the running child, so that a later start can find a broker
 * orphaned by a process that was killed without warning. */
static void write_pid_file(const wb_bundled *b, pid_t pid)
{
    int fd = open(b->pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    dprintf(fd, "%d %d\n", (int)pid, (int)getpid()); /* the broker, its owner */
    close(fd);
}

/* A mosquitto left running on our configuration by a killed predecessor
 * holds the port: stop it. Only a process whose command line names our
 * configuration file is touched. */
static void reap_orphan(const wb_bundled *b)
{
    FILE *f = fopen(b->pid_path, "r");
    int pid = 0, owner = 0;
    if (!f)
        return;
    if (fscanf(f, "%d %d", &pid, &owner) != 2)
        pid = 0;
    fclose(f);
    if (pid <= 1)
        return;
    /* a broker whose owner still runs it is not an orphan: leave it (the
     * port check then says the port is taken) */
    char stat[512] = "";
    snprintf(stat, sizeof stat, "/proc/%d/stat", pid);
    FILE *sf = fopen(stat, "r");
    int ppid = 0;
    if (sf) {
        if (!fgets(stat, sizeof stat, sf))
            stat[0] = '\0';
        fclose(sf);
        const char *close_paren = strrchr(stat, ')');
        if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
            ppid = 0;
    }
    if (ppid == owner && kill(owner, 0) == 0)
        return;
    char path[64], cmd[4096] = "";
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++) /* arguments are NUL-separated */
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    if (!strstr(cmd, "mosquitto") || !strstr(cmd, b->conf_path))
        return;
    wb__log(WB_LOG_WARN, "broker",
            "a mosquitto (pid %d) left by an earlier run holds our configuration: stopping it",
            pid);
    kill(pid, SIGTERM);
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
        usleep(50000);
    if (kill(pid, 0) == 0)
        kill(pid, SIGKILL);
    for (int i = 0; i < 40 && kill(pid, 0) == 0; i++)
        usleep(50000);
}

static wb_err spawn(wb_bundled *b)
{
    uid_t uid = b->run_uid;
    gid_t gid = b->run_gid;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return WB_ERR_IO;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return WB_ERR_IO;
    }
    if (pid == 0) {
        /* Give up root here rather than let mosquitto do it: a change of
         * user clears the parent-death signal, which must outlive it so
         * that the broker dies with the thread that made it. */
        if (uid != (uid_t)-1 && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
            dprintf(pipefd[1], "Error: workerbus: cannot switch to the mosquitto user: %s\n",
                    strerror(errno));
            _exit(126);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        /* as many connections as the hard limit allows (max_connections
         * says how many that is) */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        setpgid(0, 0); /* a terminal's Ctrl-C reaches workerbus, which stops it */
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl(b->mosquitto, "mosquitto", "-c", b->conf_path, (char *)NULL);
        dprintf(1, "Error: workerbus: cannot run %s: %s\n", b->mosquitto, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    b->log_fd = pipefd[0];
    fcntl(b->log_fd, F_SETFL, fcntl(b->log_fd, F_GETFL) | O_NONBLOCK);
    b->pid_fd = (int)syscall(SYS_pidfd_open, pid, 0);
    pthread_mutex_lock(&b->lock);
    b->pid = pid;
    pthread_mutex_unlock(&b->lock);
    write_pid_file(b, pid);
    return b->pid_fd >= 0 ? WB_OK : WB_ERR_IO;
}

static void remember(wb_bundled *b, const char *line)
{
    free(b->tail[b->tail_next]);
    b->tail[b->tail_next] = wb__strdup(line);
    b->tail_next = (b->tail_next + 1) % TAIL_LINES;
}

static char *tail_text(const wb_bundled *b)
{
    wb__buf t = WB__BUF_INIT;
    for (unsigned i = 0; i < TAIL_LINES; i++) {
        const char *l = b->tail[(b->tail_next + i) % TAIL_LINES];
        if (l)
            wb__buf_printf(&t, "\n  mosquitto: %s", l);
    }
    return wb__buf_take(&t);
}

/* One of mosquitto's lines, routed at the level it reads as. */
static void forward(wb_bundled *b, const char *line)
{
    remember(b, line);
    if (strncmp(line, "mosquitto version ", 18) == 0 && strstr(line, " running"))
        b->running = true;
    /* the plugin's first tick (a tick runs in the main loop only) */
    if (strstr(line, "workerbus: listen backlog"))
        b->looping = true;
    wb_log_level configured = wb_config_builtin_log_level(b->cfg);
    wb_log_level level = WB_LOG_INFO;
    if (strncmp(line, "Error", 5) == 0 || strncmp(line, "OpenSSL Error", 13) == 0)
        level = WB_LOG_ERROR;
    else if (strncmp(line, "Warning", 7) == 0)
        level = WB_LOG_WARN;
    bool ours = strstr(line, "workerbus:") != NULL; /* the plugin's lines always pass */
    if (!ours && level < configured)
        return;
    wb__log(level, "mosquitto", "%s", line);
}

static void drain_log(wb_bundled *b)
{
    for (;;) {
        ssize_t n = read(b->log_fd, b->linebuf + b->linelen, sizeof b->linebuf - 1 - b->linelen);
        if (n <= 0)
            break;
        b->linelen += (size_t)n;
        char *start = b->linebuf;
        char *nl;
        while ((nl = memchr(start, '\n', b->linelen - (size_t)(start - b->linebuf))) != NULL) {
            *nl = '\0';
            forward(b, start);
            start = nl + 1;
        }
        size_t rest = b->linelen - (size_t)(start - b->linebuf);
        memmove(b->linebuf, start, rest);
        b->linelen = rest;
        if (b->linelen == sizeof b->linebuf - 1) { /* an over-long line: pass it on */
            b->linebuf[b->linelen] = '\0';
            forward(b, b->linebuf);
            b->linelen = 0;
        }
    }
}

/* Reaps the child; returns a description of how it ended. */
static char *reap(wb_bundled *b)
{
    int st = 0;
    pid_t pid = b->pid;
    waitpid(pid, &st, 0);
    drain_log(b);
    close(b->log_fd);
    close(b->pid_fd);
    b->log_fd = b->pid_fd = -1;
    pthread_mutex_lock(&b->lock);
    b->pid = 0;
    pthread_mutex_unlock(&b->lock);
    if (WIFSIGNALED(st))
        return wb__asprintf("mosquitto (pid %d) was killed by signal %d", (int)pid, WTERMSIG(st));
    return wb__asprintf("mosquitto (pid %d) exited with status %d", (int)pid, WEXITSTATUS(st));
}

/* A start-up failure, said in terms of what to fix. */
static char *explain(const wb_bundled *b, const char *how)
{
    char *tail = tail_text(b);
    const char *hint = "";
    for (unsigned i = 0; i < TAIL_LINES; i++) {
        const char *l = b->tail[i];
        if (!l || strncmp(l, "Error", 5) != 0)
            continue;
        if (strstr(l, "Address already in use"))
            hint = ": the listen port is taken (MQTT_BROKER_BUILTIN_LISTEN)";
        else if (strstr(l, "server key file"))
            hint = ": it cannot load the broker's key (MQTT_BROKER_BUILTIN_KEY_FILE)";
        else if (strstr(l, "server certificate"))
            hint = ": it cannot load the broker's certificate (MQTT_BROKER_BUILTIN_CERT_FILE)";
        else if (strstr(l, "CA certificates"))
            hint = ": it cannot load the CA certificate (MQTT_BROKER_BUILTIN_CA_FILE)";
        else if (strstr(l, "plugin"))
            hint = ": the workerbus plugin failed (MQTT_BROKER_BUILTIN_PLUGIN)";
    }
    char *d = wb__asprintf("%s%s; its last lines:%s", how, hint, tail ? tail : "");
    free(tail);
    return d;
}

static void set_state(wb_bundled *b, bltn_state s)
{
    pthread_mutex_lock(&b->lock);
    b->state = s;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static bool stop_requested(wb_bundled *b, int timeout_ms)
{
    struct pollfd p[3] = {{b->ctl_fd, POLLIN, 0}, {b->log_fd, POLLIN, 0}, {b->pid_fd, POLLIN, 0}};
    nfds_t n = b->log_fd >= 0 ? 3 : 1;
    if (poll(p, n, timeout_ms) > 0) {
        if (n > 1 && (p[1].revents & (POLLIN | POLLHUP)))
            drain_log(b);
        if (p[0].revents & POLLIN)
            return true;
    }
    return false;
}

static bool child_exited(const wb_bundled *b)
{
    struct pollfd p = {b->pid_fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

static void terminate(wb_bundled *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGTERM);
    uint64_t deadline = wb__now_ms() + STOP_GRACE_MS;
    while (!child_exited(b) && wb__now_ms() < deadline) {
        struct pollfd p[2] = {{b->pid_fd, POLLIN, 0}, {b->log_fd, POLLIN, 0}};
        if (poll(p, 2, 100) > 0 && (p[1].revents & (POLLIN | POLLHUP)))
            drain_log(b);
    }
    if (!child_exited(b)) {
        wb__log(WB_LOG_WARN, "broker", "mosquitto did not stop within %d ms: killing it",
                STOP_GRACE_MS);
        kill(b->pid, SIGKILL);
        b->stop_forced = true;
    }
    free(reap(b));
}

static void *supervise(void *arg)
{
    wb_bundled *b = arg;
    unsigned attempt = 0;
    bool first = true;
    for (;;) {
        uint64_t started = wb__now_ms();
        if (spawn(b) != WB_OK) {
            char *d = wb__asprintf("cannot start %s: %s", b->mosquitto, strerror(errno));
            wb__log(WB_LOG_ERROR, "broker", "%s", d ? d : "cannot start mosquitto");
            if (first) {
                pthread_mutex_lock(&b->lock);
                b->failure = d;
                pthread_mutex_unlock(&b->lock);
                set_state(b, BLTN_FAILED);
                return NULL;
            }
            free(d);
        } else {
            /* wait for the listener, the child's death or a stop request */
            uint64_t deadline = started + (b->opts.start_timeout_ms ? b->opts.start_timeout_ms
                                                                    : DEFAULT_START_TIMEOUT_MS);
            bool ready = false, stop = false;
            b->running = b->looping = false;
            while (!ready && !stop && !child_exited(b) && wb__now_ms() < deadline) {
                /* In its main loop, mosquitto has its listeners and loses no
                 * SIGTERM. The plugin's first tick says so even when a
                 * reconnect storm keeps it too busy to be found waiting in
                 * epoll_wait and its listen queue too full for a probe;
                 * without that line, the loop first, then a probe (which
                 * keeps mosquitto busy for a moment). */
                ready = b->running &&
                        (b->looping || (in_main_loop(b->pid) && probe(b->probe_host, b->port)));
                if (!ready)
                    stop = stop_requested(b, PROBE_INTERVAL_MS);
            }
            if (stop) {
                terminate(b);
                return NULL;
            }
            if (ready) {
                if (!first)
                    wb__log(WB_LOG_INFO, "broker",
                            "mosquitto restarted (pid %d), listening on %s:%u", (int)b->pid,
                            b->probe_host, b->port);
                first = false;
                /* Saved at exit only: the file a started broker has read goes,
                 * so that a broker killed later starts empty, rather than
                 * from a state of long ago whose messages it delivered since
                 * (its next clean exit writes a fresh one). */
                if (b->db_path && unlink(b->db_path) != 0 && errno != ENOENT)
                    wb__log(WB_LOG_WARN, "broker", "cannot remove %s: %s", b->db_path,
                            strerror(errno));
                set_state(b, BLTN_READY);
                while (!child_exited(b)) {
                    if (stop_requested(b, 1000)) {
                        terminate(b);
                        return NULL;
                    }
                }
            }
            bool timed_out = !ready && !child_exited(b);
            if (timed_out) /* alive but no listener in time */
                kill(b->pid, SIGKILL);
            char *how = reap(b);
            if (first) {
                char *d;
                if (timed_out) {
                    char *t = wb__asprintf("mosquitto did not listen on %s:%u in time",
                                           b->probe_host, b->port);
                    d = explain(b, t ? t : "mosquitto did not listen in time");
                    free(t);
                } else {
                    d = explain(b, how ? how : "mosquitto stopped");
                }
                pthread_mutex_lock(&b->lock);
                b->failure = d;
                pthread_mutex_unlock(&b->lock);
                free(how);
                set_state(b, BLTN_FAILED);
                return NULL;
            }
            char *d = explain(b, how ? how : "mosquitto stopped");
            wb__log(WB_LOG_ERROR, "broker", "%s", d ? d : "mosquitto stopped");
            free(d);
            free(how);
            if (wb__now_ms() - started > STABLE_MS)
                attempt = 0;
        }
        set_state(b, BLTN_DOWN);
        unsigned delay = wb__backoff_ms(
            attempt++, b->opts.restart_min_ms ? b->opts.restart_min_ms : DEFAULT_RESTART_MIN_MS,
            b->opts.restart_max_ms ? b->opts.restart_max_ms : DEFAULT_RESTART_MAX_MS);
        wb__log(WB_LOG_WARN, "broker", "restarting mosquitto in %u ms", delay);
        if (stop_requested(b, (int)delay))
            return NULL;
        pthread_mutex_lock(&b->lock);
        b->restarts++;
        b->state = BLTN_STARTING;
        pthread_mutex_unlock(&b->lock);
    }
}

/* ---- the public API ------------------------------------------------------ */

static void bundled_free(wb_bundled *b)
{
    if (!b)
        return;
    if (b->ctl_fd >= 0)
        close(b->ctl_fd);
    for (unsigned i = 0; i < TAIL_LINES; i++)
        free(b->tail[i]);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b->runtime_dir);
    free(b->conf_path);
    free(b->pid_path);
    free(b->db_path);
    free(b->mosquitto);
    free(b->extra_conf);
    free(b->probe_host);
    free(b->failure);
    free(b);
}

static char *probe_host_of(const char *listen)
{
    if (strcmp(listen, "0.0.0.0") == 0)
        return wb__strdup("127.0.0.1");
    if (strcmp(listen, "::") == 0)
        return wb__strdup("::1");
    return wb__strdup(listen);
}

WB_API wb_err wb_bundled_start(const wb_config *config, const wb_bundled_opts *opts,
                               wb_bundled **out, char **detail)
{
    char *d = NULL;
    if (detail)
        *detail = NULL;
    if (!out || !config || wb_config_broker_type(config) != WB_BROKER_BUILTIN ||
        (opts && (opts->version < 1 || opts->version > WB_BUNDLED_OPTS_VERSION))) {
        if (detail && config && wb_config_broker_type(config) != WB_BROKER_BUILTIN)
            *detail = wb__strdup("the bundled broker needs MQTT_BROKER_TYPE=builtin");
        return WB_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    wb_bundled *b = calloc(1, sizeof *b);
    if (!b)
        return WB_ERR_NO_MEMORY;
    b->ctl_fd = b->log_fd = b->pid_fd = -1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->cfg = config;
    if (opts && opts->version == 1) { /* the fields before no_topic_rule */
        b->opts.start_timeout_ms = opts->start_timeout_ms;
        b->opts.restart_min_ms = opts->restart_min_ms;
        b->opts.restart_max_ms = opts->restart_max_ms;
        b->opts.autosave_interval_s = opts->autosave_interval_s;
    } else if (opts) {
        b->opts = *opts;
    }
    /* rewritten at every start: kept for the broker's lifetime */
    b->extra_conf = b->opts.extra_conf ? wb__strdup(b->opts.extra_conf) : NULL;
    b->opts.extra_conf = NULL;
    const wb__builtin_view *view = wb__config_builtin(config);
    b->runtime_dir = wb__strdup(view->runtime_dir);
    b->conf_path = wb__asprintf("%s/mosquitto.conf", b->runtime_dir ? b->runtime_dir : "");
    b->pid_path = wb__asprintf("%s/mosquitto.pid", b->runtime_dir ? b->runtime_dir : "");
    b->mosquitto = wb__strdup(view->mosquitto);
    b->probe_host = probe_host_of(view->listen_host);
    b->port = view->listen_port;
    b->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    wb_err err = WB_OK;
    if (!b->runtime_dir || !b->conf_path || !b->pid_path || !b->mosquitto || !b->probe_host) {
        err = WB_ERR_NO_MEMORY;
        goto fail;
    }
    if (b->ctl_fd < 0) {
        err = WB_ERR_IO;
        d = wb__asprintf("eventfd: %s", strerror(errno));
        goto fail;
    }

    /* as root, mosquitto gives up its privileges: to the mosquitto user when
     * there is one, which must then own what it reads and writes */
    bool as_root = geteuid() == 0;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (as_root) {
        struct passwd *pw = getpwnam("mosquitto");
        if (pw) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        } else {
            wb__log(WB_LOG_WARN, "broker",
                    "running as root without a 'mosquitto' user: the "
                    "broker keeps root's privileges");
        }
    }
    char blocked[4096];
    if (uid != (uid_t)-1 &&
        unreachable_ancestor(b->runtime_dir, uid, gid, blocked, sizeof blocked)) {
        d = wb__asprintf("the broker runs as the user mosquitto, which cannot enter %s: give it "
                         "search permission (chmod o+x %s) or choose another "
                         "MQTT_BROKER_BUILTIN_RUNTIME_DIR",
                         blocked, blocked);
        err = WB_ERR_IO;
        goto fail;
    }
    if (mkdirs(b->runtime_dir, 0700) != WB_OK) {
        d = wb__asprintf("cannot create %s: %s (MQTT_BROKER_BUILTIN_RUNTIME_DIR)", b->runtime_dir,
                         strerror(errno));
        err = WB_ERR_IO;
        goto fail;
    }
    b->run_uid = uid;
    b->run_gid = gid;
    reap_orphan(b);
    err = write_config(b, uid, gid, as_root, &d);
    if (err)
        goto fail;
    err = port_free(wb_config_builtin_listen_host(config), b->port, &d);
    if (err)
        goto fail;

    b->state = BLTN_STARTING;
    if (pthread_create(&b->thread, NULL, supervise, b) != 0) {
        err = WB_ERR_NO_MEMORY;
        goto fail;
    }
    b->thread_started = true;
    pthread_mutex_lock(&b->lock);
    while (b->state == BLTN_STARTING)
        pthread_cond_wait(&b->cond, &b->lock);
    bool failed = b->state == BLTN_FAILED;
    pthread_mutex_unlock(&b->lock);
    if (failed) {
        pthread_join(b->thread, NULL);
        b->thread_started = false;
        d = b->failure;
        b->failure = NULL;
        err = d && strstr(d, "did not listen") ? WB_ERR_TIMEOUT : WB_ERR_BACKEND;
        goto fail;
    }
    wb__log(WB_LOG_INFO, "broker", "mosquitto (pid %d) listening on %s:%u (%s)", b->pid,
            wb_config_builtin_listen_host(config), b->port,
            wb_config_broker_tls(config) ? "TLS, client certificates" : "plain, token passwords");
    long conns = nofile_connections();
    if (conns >= 0 && conns < 1000)
        wb__log(WB_LOG_WARN, "broker",
                "the bundled broker can hold only %ld worker connections: the hard open-file "
                "limit (RLIMIT_NOFILE) of this process is %ld; raise it (LimitNOFILE= of the "
                "systemd unit, which sets 65536; `ulimit -Hn` in a shell; the container's "
                "nofile ulimit)",
                conns, conns + NOFILE_RESERVE);
    else if (conns >= 0)
        wb__log(WB_LOG_INFO, "broker",
                "the bundled broker can hold %ld connections (hard open-file limit %ld)", conns,
                conns + NOFILE_RESERVE);
    *out = b;
    return WB_OK;
fail:
    if (d)
        wb__log(WB_LOG_ERROR, "broker", "%s", d);
    if (detail)
        *detail = d;
    else
        free(d);
    bundled_free(b);
    return err;
}

WB_API wb_err wb_bundled_stop(wb_bundled *b)
{
    if (!b)
        return WB_OK;
    if (b->thread_started) {
        uint64_t one = 1;
        if (write(b->ctl_fd, &one, sizeof one) < 0)
            wb__log(WB_LOG_ERROR, "broker", "cannot signal the supervisor: %s", strerror(errno));
        pthread_join(b->thread, NULL);
    }
    wb_err err = b->stop_forced ? WB_ERR_TIMEOUT : WB_OK;
    wb__log(WB_LOG_INFO, "broker", "mosquitto stopped");
    bundled_free(b);
    return err;
}

WB_API wb_err wb_bundled_reload(wb_bundled *b, const wb_config *config, char **detail)
{
    if (detail)
        *detail = NULL;
    char *d = NULL;
    if (!b || (config && wb_config_broker_type(config) != WB_BROKER_BUILTIN))
        return WB_ERR_INVALID_ARGUMENT;
    if (config) {
        const wb__builtin_view *now = wb__config_builtin(b->cfg),
                               *next = wb__config_builtin(config);
        if (strcmp(now->runtime_dir, next->runtime_dir) != 0 ||
            strcmp(now->listen_host, next->listen_host) != 0 ||
            now->listen_port != next->listen_port || now->tls != next->tls ||
            strcmp(now->mosquitto, next->mosquitto) != 0) {
            d = wb__strdup("the listener, the runtime directory or the mosquitto executable "
                           "changed: that takes a restart of the broker, not a reload");
            if (detail)
                *detail = d;
            else
                free(d);
            return WB_ERR_INVALID_ARGUMENT;
        }
    }
    pthread_mutex_lock(&b->lock);
    if (config)
        b->cfg = config;
    /* the configuration file and the copies of the credentials, then
     * SIGHUP: Mosquitto reads its file again and reloads its listeners'
     * certificates and key */
    wb_err err = write_config(b, b->run_uid, b->run_gid, geteuid() == 0, &d);
    pid_t pid = b->pid;
    pthread_mutex_unlock(&b->lock);
    if (!err && pid > 0 && kill(pid, SIGHUP) != 0) {
        d = wb__asprintf("cannot signal mosquitto (pid %d): %s", (int)pid, strerror(errno));
        err = WB_ERR_IO;
    }
    if (!err)
        wb__log(WB_LOG_INFO, "broker",
                "reloaded: configuration and credentials written again, mosquitto (pid %d) "
                "told to read them (SIGHUP)",
                (int)pid);
    if (detail)
        *detail = d;
    else
        free(d);
    return err;
}

WB_API int wb_bundled_pid(const wb_bundled *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&b->lock);
    int pid = b->state == BLTN_READY ? (int)b->pid : 0;
    pthread_mutex_unlock((pthread_mutex_t *)&b->lock);
    return pid;
}

WB_API unsigned int wb_bundled_restarts(const wb_bundled *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)&b->lock);
    unsigned r = b->restarts;
    pthread_mutex_unlock((pthread_mutex_t *)&b->lock);
    return r;
}

WB_API wb_err wb_bundled_wait_ready(wb_bundled *b, unsigned int timeout_ms)
{
    if (!b)
        return WB_ERR_INVALID_ARGUMENT;
    uint64_t deadline = wb__now_ms() + timeout_ms;
    pthread_mutex_lock(&b->lock);
    while (b->state != BLTN_READY && wb__now_ms() < deadline)
        wb__cond_wait_ms(&b->cond, &b->lock, 50);
    bool ready = b->state == BLTN_READY;
    pthread_mutex_unlock(&b->lock);
    return ready ? WB_OK : WB_ERR_TIMEOUT;
}
