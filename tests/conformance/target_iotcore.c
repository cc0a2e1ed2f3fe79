/* The iotcore backend's environment for the conformance suite: the IoT Core
 * stand-in (a Mosquitto with mutual TLS, a certificate for an
 * <id>-ats.iot.<region>.amazonaws.com name and per-certificate access rules),
 * reached through MQTT_BROKER_IOTCORE_CONNECT_TO while TLS checks the
 * endpoint's name. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "fixture.h"
#include "target.h"

static wbt_env env;

static void setup(void)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    wb_bundled_opts o = WB_BUNDLED_OPTS_INIT;
    o.autosave_interval_s = 1;
    o.restart_min_ms = 100;
    wbt_env_start_opts(&env, &o);
}

static void teardown(void)
{
    wbt_env_teardown(&env);
}

static const wb_config *config(void)
{
    return env.iot_cfg;
}

static wb_worker *worker(const char *ulid, wb_message_fn fn, void *ctx)
{
    return wbt_env_worker(&env, ulid, fn, ctx);
}

static bool kill_broker(void)
{
    int pid = wb_bundled_pid(env.broker);
    if (pid <= 0 || kill(pid, SIGKILL) != 0)
        return false;
    while (kill(pid, 0) == 0 || errno != ESRCH) {
        if (wb_bundled_pid(env.broker) != pid) /* reaped already */
            break;
        usleep(1000);
    }
    return true;
}

static bool broker_ready(unsigned timeout_ms)
{
    return wb_bundled_wait_ready(env.broker, timeout_ms) == WB_OK;
}

const wbt_target wbt_target_impl = {
    .name = "iotcore",
    .setup = setup,
    .teardown = teardown,
    .config = config,
    .worker = worker,
    .kill_broker = kill_broker,
    .broker_ready = broker_ready,
    .save_interval_ms = 1000,
    .forbidden_filter = "#",
    .publish_rate = 100, /* IoT Core's per-connection publish rate */
};
