/* The builtin backend's environment for the conformance suite: the bundled
 * Mosquitto with TLS and client certificates. */
#include "target.h"
#include "target_bundled.h"

static void setup(void)
{
    wbt_log_capture();
    wbt_env_setup(&wbt_bundled_env, true);
    wbt_bundled_start();
}

static const wb_config *config(void)
{
    return wbt_bundled_env.cfg;
}

const wbt_target wbt_target_impl = {
    .name = "builtin",
    .setup = setup,
    .teardown = wbt_bundled_teardown,
    .config = config,
    .worker = wbt_bundled_worker,
    .kill_broker = wbt_bundled_kill,
    .broker_ready = wbt_bundled_ready,
    .save_interval_ms = 1000,
    .forbidden_filter = "#",
};
