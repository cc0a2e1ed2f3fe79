/* The iotcore backend's environment for the conformance suite: the IoT Core
 * stand-in (a Mosquitto with mutual TLS, a certificate for an
 * <id>-ats.iot.<region>.amazonaws.com name and per-certificate access rules),
 * reached through MQTT_BROKER_IOTCORE_CONNECT_TO while TLS checks the
 * endpoint's name. */
#include "target.h"
#include "target_bundled.h"

static void setup(void)
{
    wbt_log_capture();
    wbt_env_setup_iot(&wbt_bundled_env);
    wbt_bundled_start();
}

static const wb_config *config(void)
{
    return wbt_bundled_env.iot_cfg;
}

const wbt_target wbt_target_impl = {
    .name = "iotcore",
    .setup = setup,
    .teardown = wbt_bundled_teardown,
    .config = config,
    .worker = wbt_bundled_worker,
    .kill_broker = wbt_bundled_kill,
    .broker_ready = wbt_bundled_ready,
    .save_interval_ms = 1000,
    .forbidden_filter = "#",
    .publish_rate = 100, /* IoT Core's per-connection publish rate */
};
