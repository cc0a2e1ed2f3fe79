/* The bundled Mosquitto broker, driven with the stock mosquitto_pub and
 * mosquitto_sub clients: access control, supervision, start-up failures. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "proc.h"

#include "wb_internal.h"
#include "sqs_urls.h"

static wbt_env env;

static void up_tls(void)
{
    wbt_log_capture();
    wbt_env_setup(&env, true);
    wbt_env_start(&env);
}

static void up_plain(void)
{
    wbt_log_capture();
    wbt_env_setup(&env, false);
    wbt_env_start(&env);
}

static void down(void)
{
    wbt_env_teardown(&env);
}

/* mosquitto_pub / mosquitto_sub with the connection options of `who`:
 * "worker" (the pool certificate), "server" (the server's certificate),
 * "nocert", "otherca". Extra arguments follow. */
static wbt_proc client(const char *prog, const char *who, const char *const *extra)
{
    static char port[8], ca[160], scrt[160], skey[160], ocrt[160], okey[160];
    snprintf(port, sizeof port, "%u", env.port);
    snprintf(ca, sizeof ca, "%s/ca.crt", env.pki);
    snprintf(scrt, sizeof scrt, "%s/server.crt", env.pki);
    snprintf(skey, sizeof skey, "%s/server.key", env.pki);
    const char *argv[40];
    int n = 0;
    argv[n++] = prog;
    argv[n++] = "-h";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = port;
    if (env.tls) {
        argv[n++] = "--cafile";
        argv[n++] = ca;
        if (!strcmp(who, "worker")) {
            argv[n++] = "--cert";
            argv[n++] = env.worker_crt;
            argv[n++] = "--key";
            argv[n++] = env.worker_key;
        } else if (!strcmp(who, "server")) {
            argv[n++] = "--cert";
            argv[n++] = scrt;
            argv[n++] = "--key";
            argv[n++] = skey;
        } else if (!strcmp(who, "otherca")) {
            /* a complete, valid set from another CA */
            char other[128];
            snprintf(other, sizeof other, "%s/other", env.dir);
            if (access(other, F_OK) != 0)
                cr_assert_eq(wb_pki_init(other, NULL, NULL), WB_OK);
            snprintf(ocrt, sizeof ocrt, "%s/server.crt", other);
            snprintf(okey, sizeof okey, "%s/server.key", other);
            argv[n++] = "--cert";
            argv[n++] = ocrt;
            argv[n++] = "--key";
            argv[n++] = okey;
        }
    }
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    wbt_proc p;
    cr_assert(wbt_proc_run(argv, NULL, 15000, &p), "cannot run %s", prog);
    return p;
}

TestSuite(bundled_tls, .init = up_tls, .fini = down, .timeout = 60);
TestSuite(bundled_plain, .init = up_plain, .fini = down, .timeout = 60);

Test(bundled_tls, server_reaches_worker_at_qos1_through_a_persistent_session)
{
    const char *mine = wbt_topic("readonly", WBT_POOL, WBT_WORKER);
    /* the worker subscribes with a persistent session, then goes away */
    const char *s1[] = {"-i", WBT_WORKER, "-c", "-q", "1", "-t", mine, "-W", "1", NULL};
    wbt_proc p = client("mosquitto_sub", "worker", s1);
    cr_assert_str_eq(p.err, "Timed out\n", "%s", p.err); /* -W 1 ends it */
    wbt_proc_free(&p);
    /* the server publishes while the worker is away */
    const char *pub[] = {"-i", "srv-1", "-q", "1", "-t", mine, "-m", "hello worker", NULL};
    p = client("mosquitto_pub", "server", pub);
    cr_assert_eq(p.status, 0, "%s", p.err);
    wbt_proc_free(&p);
    /* the worker comes back and gets it */
    const char *s2[] = {"-i", WBT_WORKER, "-c", "-q", "1", "-t", mine, "-C", "1", "-W", "5", NULL};
    p = client("mosquitto_sub", "worker", s2);
    cr_assert_str_eq(p.out, "hello worker\n", "got \"%s\" (%s)", p.out, p.err);
    wbt_proc_free(&p);
}

Test(bundled_tls, worker_cannot_subscribe_to_another_workers_topic)
{
    const char *other = wbt_topic("readonly", WBT_POOL, WBT_OTHER_WORKER);
    const char *a[] = {"-i", WBT_WORKER, "-q", "1", "-t", other, "-W", "2", NULL};
    wbt_proc p = client("mosquitto_sub", "worker", a);
    cr_assert(strstr(p.err, "All subscription requests were denied"), "stderr: %s", p.err);
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("denied client \"" WBT_WORKER "\"", 3000));
    cr_assert(wbt_log_wait_for(
        "to subscribe to \"spacelift/readonly/" WBT_POOL "/" WBT_OTHER_WORKER "\"", 1000));
    /* nor with a wildcard over its whole pool */
    const char *b[] = {"-i", WBT_WORKER, "-q", "1", "-t", "spacelift/readonly/" WBT_POOL "/+",
                       "-W", "2",        NULL};
    p = client("mosquitto_sub", "worker", b);
    cr_assert(strstr(p.err, "All subscription requests were denied"), "stderr: %s", p.err);
    wbt_proc_free(&p);
}

Test(bundled_tls, worker_cannot_publish_to_another_workers_topic)
{
    const char *all = "spacelift/writeonly/#";
    /* the server listens (persistent session) to every worker's writeonly topic */
    const char *s1[] = {"-i", "srv-listen", "-c", "-q", "1", "-t", all, "-W", "1", NULL};
    wbt_proc p = client("mosquitto_sub", "server", s1);
    cr_assert_str_eq(p.err, "Timed out\n", "%s", p.err); /* -W 1 ends it */
    wbt_proc_free(&p);
    /* MQTT 5 tells the publisher; the message goes nowhere */
    const char *bad[] = {"-V", "mqttv5", "-i", WBT_WORKER,
                         "-q", "1",      "-t", wbt_topic("writeonly", WBT_POOL, WBT_OTHER_WORKER),
                         "-m", "forged", NULL};
    p = client("mosquitto_pub", "worker", bad);
    cr_assert(strstr(p.err, "Not authorized"), "stderr: %s", p.err);
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for(
        "to publish to \"spacelift/writeonly/" WBT_POOL "/" WBT_OTHER_WORKER "\"", 3000));
    /* the same worker on its own topic is heard: the control */
    const char *good[] = {"-i", WBT_WORKER, "-q",
                          "1",  "-t",       wbt_topic("writeonly", WBT_POOL, WBT_WORKER),
                          "-m", "genuine",  NULL};
    p = client("mosquitto_pub", "worker", good);
    cr_assert_eq(p.status, 0, "%s", p.err);
    wbt_proc_free(&p);
    const char *s2[] = {"-i", "srv-listen", "-c", "-q", "1", "-t", all, "-v", "-W", "3", NULL};
    p = client("mosquitto_sub", "server", s2);
    cr_assert(strstr(p.out, "genuine"), "server got: %s", p.out);
    cr_assert_null(strstr(p.out, "forged"), "a forged message arrived: %s", p.out);
    wbt_proc_free(&p);
}

Test(bundled_tls, worker_cannot_publish_to_readonly_topics)
{
    const char *a[] = {"-V", "mqttv5", "-i", WBT_WORKER,
                       "-q", "1",      "-t", wbt_topic("readonly", WBT_POOL, WBT_WORKER),
                       "-m", "x",      NULL};
    wbt_proc p = client("mosquitto_pub", "worker", a);
    cr_assert(strstr(p.err, "Not authorized"), "stderr: %s", p.err);
    wbt_proc_free(&p);
}

/* One descriptor a connection: Mosquitto runs with its soft open-file limit
 * raised to the hard one, and refuses connections past what that leaves. */
Test(bundled_limits, the_broker_takes_the_whole_open_file_limit, .timeout = 60)
{
    /* a soft limit below the hard one, as a shell's 1024 */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    cr_assert_gt(rl.rlim_max, 1024, "this test needs a hard open-file limit above 1024");
    struct rlimit low = {1024, rl.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    wbt_env_setup(&env, true);
    wbt_env_start(&env);
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", wb_bundled_pid(env.broker));
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    unsigned long long soft = 0, hard = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Max open files", 14))
            sscanf(line + 14, "%llu %llu", &soft, &hard);
    fclose(f);
    cr_assert_eq(hard, (unsigned long long)rl.rlim_max);
    cr_assert_eq(soft, hard, "the broker's soft open-file limit %llu is not raised to %llu", soft,
                 hard);
    char conf[256], want[64];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", env.run);
    snprintf(want, sizeof want, "max_connections %llu\n", hard - 64);
    f = fopen(conf, "r");
    cr_assert_not_null(f);
    bool found = false;
    while (fgets(line, sizeof line, f))
        found = found || !strcmp(line, want);
    fclose(f);
    cr_assert(found, "%s has no '%.*s'", conf, (int)strlen(want) - 1, want);
    /* and no other listener: a setting of a listener written outside one
     * makes Mosquitto open its default listener on port 1883 */
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(1883), .sin_addr.s_addr = htonl(INADDR_ANY)};
    int rc = bind(sock, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(sock);
    cr_assert_eq(rc, 0, "port 1883 is taken (%s): did the broker open its default listener?",
                 strerror(e));
    wbt_env_teardown(&env);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* With PostgreSQL (this suite's services), the broker is a replica: it saves
 * its state at exit only (no stall every few seconds), a clean restart keeps
 * a worker's session and what was queued for it, and a broker killed later
 * restarts empty instead of from the file it read at its start. */
Test(bundled_persistence, a_replica_saves_at_exit_only, .timeout = 90)
{
    cr_assert_not_null(getenv("DATABASE_URL"), "this suite runs with PostgreSQL");
    wbt_env_setup(&env, true);
    wbt_env_start(&env);
    char conf[256], db[256], line[256];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", env.run);
    snprintf(db, sizeof db, "%s/persistence/mosquitto.db", env.run);
    FILE *f = fopen(conf, "r");
    cr_assert_not_null(f);
    bool at_exit = false;
    while (fgets(line, sizeof line, f))
        at_exit = at_exit || !strcmp(line, "autosave_interval 0\n");
    fclose(f);
    cr_assert(at_exit, "%s does not say autosave_interval 0", conf);

    const char *mine = wbt_topic("readonly", WBT_POOL, WBT_WORKER);
    const char *away[] = {"-i", WBT_WORKER, "-c", "-q", "1", "-t", mine, "-W", "1", NULL};
    const char *back[] = {"-i", WBT_WORKER, "-c", "-q", "1", "-t",
                          mine, "-C",       "1",  "-W", "4", NULL};
    const char *pub[] = {"-i", "srv-1", "-q", "1", "-t", mine, "-m", "kept", NULL};
    wbt_proc p = client("mosquitto_sub", "worker", away);
    wbt_proc_free(&p);
    p = client("mosquitto_pub", "server", pub);
    cr_assert_eq(p.status, 0, "%s", p.err);
    wbt_proc_free(&p);
    cr_assert_not(file_exists(db), "%s was written while the broker ran", db);

    /* a clean stop saves; the next start reads the file, then it goes */
    wb_bundled_stop(env.broker);
    env.broker = NULL;
    cr_assert(file_exists(db), "a clean stop did not save %s", db);
    wbt_env_start(&env);
    cr_assert_not(file_exists(db), "%s is still there once the broker has read it", db);
    p = client("mosquitto_sub", "worker", back);
    cr_assert_str_eq(p.out, "kept\n", "a clean restart lost the queued message: got \"%s\" (%s)",
                     p.out, p.err);
    wbt_proc_free(&p);

    /* killed: restarted by the supervisor with no state at all (not the
     * one read at the last start, whose message was delivered since) */
    p = client("mosquitto_sub", "worker", away);
    wbt_proc_free(&p);
    const char *pub2[] = {"-i", "srv-1", "-q", "1", "-t", mine, "-m", "gone", NULL};
    p = client("mosquitto_pub", "server", pub2);
    cr_assert_eq(p.status, 0, "%s", p.err);
    wbt_proc_free(&p);
    int pid = wb_bundled_pid(env.broker);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 100 && wb_bundled_restarts(env.broker) == 0; i++)
        usleep(50000);
    cr_assert_eq(wb_bundled_restarts(env.broker), 1, "the killed broker was not restarted");
    cr_assert_eq(wb_bundled_wait_ready(env.broker, 15000), WB_OK);
    p = client("mosquitto_sub", "worker", back);
    cr_assert_str_eq(p.out, "", "a killed broker came back with an old state: got \"%s\"", p.out);
    wbt_proc_free(&p);
    wbt_env_teardown(&env);
}

/* Mosquitto 2.0 listens with a backlog of 100: with the broker busy (here
 * stopped), a burst of connections beyond it is dropped by the kernel and
 * each waits for a SYN retransmit (1 s, then 3, 7, 15 ...). The plugin
 * lengthens the listen queue, so the whole burst waits in it instead. */
Test(bundled_storm, a_burst_waits_in_the_listen_queue, .timeout = 60)
{
    enum { BURST = 400 };
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    int somaxconn = 0;
    cr_assert(f && fscanf(f, "%d", &somaxconn) == 1);
    fclose(f);
    cr_assert_gt(somaxconn, BURST, "net.core.somaxconn is %d here: a queue of %d cannot be shown",
                 somaxconn, BURST);
    wbt_env_setup(&env, true);
    wbt_env_start(&env);
    /* the plugin raises it at its first tick, ten times a second */
    usleep(500000);
    int pid = wb_bundled_pid(env.broker);
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    int fds[BURST];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < BURST; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fds[i], 0);
        int r = connect(fds[i], (struct sockaddr *)&a, sizeof a);
        cr_assert(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
    }
    /* a connection the queue holds is established at once; a dropped one
     * stays in SYN-SENT for its first retransmit, a second later */
    usleep(300000);
    int established = 0;
    for (int i = 0; i < BURST; i++) {
        struct pollfd pf = {.fd = fds[i], .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&pf, 1, 0) == 1 && getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0)
            established++;
    }
    cr_assert_eq(kill(pid, SIGCONT), 0);
    for (int i = 0; i < BURST; i++)
        close(fds[i]);
    cr_assert_eq(established, BURST,
                 "%d of %d connections to a busy broker were established: the listen queue is "
                 "still Mosquitto's 100",
                 established, BURST);
    wbt_env_teardown(&env);
}

Test(bundled_tls, connection_without_certificate_is_refused)
{
    const char *a[] = {"-i", WBT_WORKER, "-t", wbt_topic("writeonly", WBT_POOL, WBT_WORKER),
                       "-m", "x",        NULL};
    wbt_proc p = client("mosquitto_pub", "nocert", a);
    cr_assert_neq(p.status, 0, "a client without a certificate got in");
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("peer did not return a certificate", 3000));
}

Test(bundled_tls, certificate_from_another_ca_is_refused)
{
    const char *a[] = {"-i", WBT_WORKER, "-t", wbt_topic("readonly", WBT_POOL, WBT_WORKER),
                       "-m", "x",        NULL};
    wbt_proc p = client("mosquitto_pub", "otherca", a);
    cr_assert_neq(p.status, 0, "a certificate of another CA got in");
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("certificate verify failed", 3000));
}

static wb_worker *own_worker(const char *id)
{
    wb_worker *w = wbt_env_worker(&env, id, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    return w;
}

Test(bundled_tls, our_worker_client_is_refused_too)
{
    wb_worker *w = own_worker(WBT_WORKER);
    cr_assert_eq(wb_worker_subscribe(w, wbt_topic("readonly", WBT_POOL, WBT_OTHER_WORKER), 1, 5000),
                 WB_ERR_AUTH_REFUSED);
    cr_assert(strstr(wb_worker_last_error(w), "refused"), "%s", wb_worker_last_error(w));
    cr_assert_eq(wb_worker_subscribe(w, "#", 1, 5000), WB_ERR_AUTH_REFUSED);
    cr_assert(wbt_log_wait_for("to subscribe to \"#\"", 3000));
    wb_worker_close(w);
    /* a client id that is not a worker ULID gets nothing */
    const char *pub[] = {"-i", "not-a-ulid", "-V", "mqttv5",
                         "-q", "1",          "-t", wbt_topic("writeonly", WBT_POOL, WBT_WORKER),
                         "-m", "x",          NULL};
    wbt_proc p = client("mosquitto_pub", "worker", pub);
    cr_assert(strstr(p.err, "Not authorized"), "stderr: %s", p.err);
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("not a worker", 3000));
}

Test(bundled_tls, port_already_in_use)
{
    wb_bundled *second = NULL;
    char *d = NULL;
    wb_err err = wb_bundled_start(env.cfg, NULL, &second, &d);
    cr_assert_eq(err, WB_ERR_BUSY, "%s", wb_err_name(err));
    cr_assert_null(second);
    char port[32];
    snprintf(port, sizeof port, "port %u", env.port);
    cr_assert(strstr(d, port) && strstr(d, "already in use"), "%s", d);
    wb_free(d);
}

Test(bundled_tls, killed_broker_is_restarted)
{
    int pid = wb_bundled_pid(env.broker);
    cr_assert_gt(pid, 0);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    cr_assert(wbt_log_wait_for("was killed by signal 9", 5000));
    cr_assert_eq(wb_bundled_wait_ready(env.broker, 15000), WB_OK);
    int pid2 = wb_bundled_pid(env.broker);
    cr_assert_gt(pid2, 0);
    cr_assert_neq(pid2, pid);
    cr_assert_eq(wb_bundled_restarts(env.broker), 1);
    /* and it works again */
    const char *pub[] = {
        "-i", "srv-2",         "-q", "1", "-t", wbt_topic("readonly", WBT_POOL, WBT_WORKER),
        "-m", "after restart", NULL};
    wbt_proc p = client("mosquitto_pub", "server", pub);
    cr_assert_eq(p.status, 0, "%s", p.err);
    wbt_proc_free(&p);
}

/* The broker on env's port presents a certificate that ends at not_after. */
static void presents(int64_t not_after)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%u -CAfile %s/ca.crt -cert %s -key %s "
             "</dev/null 2>/dev/null | openssl x509 -noout -enddate",
             env.port, env.pki, env.worker_crt, env.worker_key);
    for (int attempt = 0;; attempt++) { /* a reload takes a moment */
        FILE *f = popen(cmd, "r");
        char line[256] = "";
        cr_assert_not_null(f);
        char *got = fgets(line, sizeof line, f);
        pclose(f);
        char want[64];
        struct tm tm;
        time_t t = (time_t)not_after;
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%H:%M:%S %Y GMT", &tm);
        if (got && strstr(line, want))
            return;
        cr_assert_lt(attempt, 50, "the broker presents %s, not the certificate ending %s", line,
                     want);
        usleep(100000);
    }
}

/* The broker's certificate issued again (before it expires, or for a new
 * name) while the CA stays: after a restart of the broker, a worker of a
 * pool whose certificate was signed before connects as it did. */
Test(bundled_tls, a_reissued_broker_certificate_keeps_pool_certificates_working)
{
    wb_worker *w = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "%s", wb_worker_last_error(w));
    wb_worker_close(w);
    char crt[160];
    snprintf(crt, sizeof crt, "%s/broker.crt", env.pki);
    wb_pki_cert_info before, after;
    cr_assert_eq(wb_pki_cert_info_get(crt, &before, NULL), WB_OK);
    sleep(1); /* a later certificate, to tell them apart */
    const char *hosts[] = {"127.0.0.1", "localhost", NULL};
    char *d = NULL;
    cr_assert_eq(wb_pki_reissue(env.pki, WB_PKI_LEAF_BROKER, hosts, &d), WB_OK, "%s", d ? d : "");
    cr_assert_eq(wb_pki_cert_info_get(crt, &after, NULL), WB_OK);
    cr_assert_gt(after.not_after, before.not_after);
    /* the configuration still checks out, and the broker takes the new one */
    wb_bundled_stop(env.broker);
    env.broker = NULL;
    wbt_env_start(&env);
    w = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "after the reissue: %s",
                 wb_worker_last_error(w));
    wb_worker_close(w);
    presents(after.not_after);
}

/* After `pki reissue-broker`, wb_bundled_reload() makes the running broker
 * present the new certificate: the same process, no restart. */
Test(bundled_tls, a_reload_takes_the_new_certificate_without_a_restart)
{
    int pid = wb_bundled_pid(env.broker);
    char crt[160];
    snprintf(crt, sizeof crt, "%s/broker.crt", env.pki);
    sleep(1);
    const char *hosts[] = {"127.0.0.1", "localhost", NULL};
    char *d = NULL;
    cr_assert_eq(wb_pki_reissue(env.pki, WB_PKI_LEAF_BROKER, hosts, &d), WB_OK, "%s", d ? d : "");
    wb_pki_cert_info after;
    cr_assert_eq(wb_pki_cert_info_get(crt, &after, NULL), WB_OK);
    cr_assert_eq(wb_bundled_reload(env.broker, NULL, &d), WB_OK, "%s", d ? d : "");
    cr_assert(wbt_log_wait_for("Reloading config", 5000), "mosquitto did not reload");
    cr_assert_eq(wb_bundled_pid(env.broker), pid, "the broker was restarted");
    presents(after.not_after);
    wb_worker *w = wbt_env_worker(&env, WBT_WORKER, NULL, NULL);
    cr_assert_eq(wb_worker_connect(w, 10000), WB_OK, "after the reload: %s",
                 wb_worker_last_error(w));
    wb_worker_close(w);
    /* a change that needs a restart is refused by name */
    cr_assert_eq(wb_bundled_reload(NULL, NULL, NULL), WB_ERR_INVALID_ARGUMENT);
}

Test(bundled_tls, stop_leaves_no_process)
{
    int pid = wb_bundled_pid(env.broker);
    cr_assert_gt(pid, 0);
    wb_bundled *b = env.broker;
    env.broker = NULL; /* stop frees it, whatever it returns */
    cr_assert_eq(wb_bundled_stop(b), WB_OK);
    cr_assert_eq(kill(pid, 0), -1);
    cr_assert_eq(errno, ESRCH, "mosquitto (pid %d) is still there", pid);
}

Test(bundled_plain, token_passwords)
{
    char tok[WB_PKI_TOKEN_LEN + 1], tkey[160];
    snprintf(tkey, sizeof tkey, "%s/token.key", env.pki);
    cr_assert_eq(wb_pki_token(tkey, WBT_POOL, tok, NULL), WB_OK);
    const char *own = wbt_topic("writeonly", WBT_POOL, WBT_WORKER);
    const char *ok[] = {"-V", "mqttv5", "-i", WBT_WORKER, "-u", WBT_POOL, "-P", tok,
                        "-q", "1",      "-t", own,        "-m", "x",      NULL};
    wbt_proc p = client("mosquitto_pub", "plain", ok);
    cr_assert_eq(p.status, 0, "%s", p.err);
    cr_assert_str_eq(p.err, "");
    wbt_proc_free(&p);
    char wrong[WB_PKI_TOKEN_LEN + 1];
    memcpy(wrong, tok, sizeof wrong);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    const char *bad[] = {"-i", WBT_WORKER, "-u", WBT_POOL, "-P", wrong, "-t", own, "-m", "x", NULL};
    p = client("mosquitto_pub", "plain", bad);
    cr_assert_neq(p.status, 0, "a wrong password got in");
    wbt_proc_free(&p);
    cr_assert(wbt_log_wait_for("wrong password for this user name", 3000));
    const char *anon[] = {"-i", WBT_WORKER, "-t", own, "-m", "x", NULL};
    p = client("mosquitto_pub", "plain", anon);
    cr_assert_neq(p.status, 0, "an anonymous client got in");
    wbt_proc_free(&p);
    /* a pool's token does not open another pool */
    const char *other[] = {"-i", WBT_WORKER, "-u", "01BX5ZZKBKACTAV9WEVGEMMVR1",
                           "-P", tok,        "-t", own,
                           "-m", "x",        NULL};
    p = client("mosquitto_pub", "plain", other);
    cr_assert_neq(p.status, 0, "a token opened another pool");
    wbt_proc_free(&p);
}

Test(bundled_start, unusable_key_is_reported_with_its_variable, .timeout = 60)
{
    wbt_log_capture();
    wbt_env_setup(&env, true);
    /* the configuration was valid when loaded; the key breaks afterwards */
    char key[160];
    snprintf(key, sizeof key, "%s/broker.key", env.pki);
    FILE *f = fopen(key, "w");
    fputs("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    char *d = NULL;
    wb_err err = wb_bundled_start(env.cfg, NULL, &env.broker, &d);
    cr_assert_eq(err, WB_ERR_BACKEND, "%s", wb_err_name(err));
    cr_assert(strstr(d, "MQTT_BROKER_BUILTIN_KEY_FILE"), "%s", d);
    cr_assert(strstr(d, "mosquitto: "), "the detail quotes mosquitto: %s", d);
    wb_free(d);
    wbt_env_teardown(&env);
}

Test(bundled_start, iotcore_configuration_is_refused)
{
    if (!wb__backend_built("broker", WB_BROKER_IOTCORE))
        cr_skip_test("this build has no iotcore backend: no iotcore configuration loads");
    const char *e[] = {"MQTT_BROKER_TYPE=iotcore",
                       "MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west-1.amazonaws.com",
                       WBT_UNREACHABLE_SQS_URLS, NULL};
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = e;
    wb_config *cfg = NULL;
    cr_assert_eq(wb_config_load(&o, &cfg, NULL), WB_OK);
    wb_bundled *b = NULL;
    char *d = NULL;
    cr_assert_eq(wb_bundled_start(cfg, NULL, &b, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "MQTT_BROKER_TYPE=builtin"), "%s", d);
    wb_free(d);
    wb_config_free(cfg);
}

Test(bundled_start, broker_dies_with_a_killed_server, .timeout = 60)
{
    wbt_log_capture();
    wbt_env_setup(&env, true);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t server = fork();
    cr_assert_geq(server, 0);
    if (server == 0) { /* a server that will be killed without warning */
        wb_bundled *b = NULL;
        if (wb_bundled_start(env.cfg, NULL, &b, NULL) != WB_OK)
            _exit(1);
        int pid = wb_bundled_pid(b);
        if (write(fds[1], &pid, sizeof pid) != sizeof pid)
            _exit(1);
        for (;;)
            pause();
    }
    int broker = 0;
    cr_assert_eq(read(fds[0], &broker, sizeof broker), (ssize_t)sizeof broker);
    cr_assert_gt(broker, 0);
    cr_assert_eq(kill(server, SIGKILL), 0);
    waitpid(server, NULL, 0);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        /* exited: gone, or a zombie that this machine's init has not reaped
         * yet (it reaps slowly) */
        char path[64], st = 0;
        snprintf(path, sizeof path, "/proc/%d/stat", broker);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%*d %*s %c", &st) != 1)
                st = 0;
            fclose(f);
        }
        gone = (kill(broker, 0) != 0 && errno == ESRCH) || st == 'Z';
        if (!gone)
            usleep(50000);
    }
    cr_assert(gone, "mosquitto (pid %d) outlived its killed server", broker);
    /* the next server starts on the same configuration */
    wbt_env_start(&env);
    cr_assert_gt(wb_bundled_pid(env.broker), 0);
    wbt_env_teardown(&env);
}
