/* The iotcore backend against the IoT Core stand-in: refusals that say why
 * (a certificate from another CA, a wrong server name), and IoT Core's limits
 * checked before anything is sent. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static wbt_env env;

static void setup(void)
{
    wbt_log_capture();
    wbt_env_setup_iot(&env);
    wbt_env_start(&env);
}

static void teardown(void)
{
    wbt_env_teardown(&env);
}

TestSuite(iotcore, .init = setup, .fini = teardown, .timeout = 120);

/* Connects with cfg and expects a refusal whose message holds one of the
 * words given. */
static void expect_refused(wb_config *cfg, const char *a, const char *b)
{
    wb_broker *br = NULL;
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 200;
    cr_assert_eq(wb_broker_open(cfg, &o, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    wb_err err = wb_broker_connect(br, 3000);
    const char *m = wb_broker_last_error(br);
    cr_log_info("%s", m);
    cr_assert_neq(err, WB_OK, "connected when it should not have");
    cr_assert(strstr(m, a) || (b && strstr(m, b)), "the error does not say why: %s", m);
    wb_broker_close(br);
    wb_config_free(cfg);
}

Test(iotcore, the_stand_in_accepts_the_configured_server)
{
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(env.iot_cfg, NULL, &br), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    cr_assert_eq(wb_broker_publish_to_worker(br, WBT_POOL, WBT_WORKER, "{}", 2, 1), WB_OK);
    cr_assert_eq(wb_broker_flush(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    wb_broker_close(br);
}

Test(iotcore, a_wrong_server_name_is_refused)
{
    /* the stand-in's certificate names WBT_IOT_ENDPOINT, not this one */
    const char *over[] = {"MQTT_BROKER_ENDPOINT=zz9zz9zz9zz9zz-ats.iot.us-east-1.amazonaws.com",
                          NULL};
    expect_refused(wbt_env_iot_config(&env, over), "certificate verify failed", "hostname");
}

Test(iotcore, a_certificate_from_another_ca_is_refused)
{
    char other[160], cert[240], key[240];
    snprintf(other, sizeof other, "%s/other-pki", env.dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    char *d = NULL;
    cr_assert_eq(wb_pki_init(other, &po, &d), WB_OK, "%s", d ? d : "");
    snprintf(cert, sizeof cert, "MQTT_BROKER_IOTCORE_CERT_FILE=%s/server.crt", other);
    snprintf(key, sizeof key, "MQTT_BROKER_IOTCORE_KEY_FILE=%s/server.key", other);
    const char *over[] = {cert, key, NULL};
    expect_refused(wbt_env_iot_config(&env, over), "alert", "connect failure");
}

Test(iotcore, a_server_we_do_not_trust_is_refused)
{
    /* the server's chain checked against another CA than the stand-in's */
    char other[160], ca[240];
    snprintf(other, sizeof other, "%s/other-pki", env.dir);
    wb_pki_init_opts po = WB_PKI_INIT_OPTS_INIT;
    char *d = NULL;
    cr_assert_eq(wb_pki_init(other, &po, &d), WB_OK, "%s", d ? d : "");
    snprintf(ca, sizeof ca, "MQTT_BROKER_IOTCORE_CA_FILE=%s/ca.crt", other);
    const char *over[] = {ca, NULL};
    expect_refused(wbt_env_iot_config(&env, over), "certificate verify failed", NULL);
}

Test(iotcore, limits_are_checked_before_sending)
{
    wb_broker *br = NULL;
    cr_assert_eq(wb_broker_open(env.iot_cfg, NULL, &br), WB_OK);
    cr_assert_eq(wb_broker_connect(br, 10000), WB_OK, "%s", wb_broker_last_error(br));
    size_t big = 128 * 1024 + 1;
    char *payload = calloc(1, big);
    cr_assert_eq(wb_broker_publish(br, "spacelift/readonly/a/b", payload, big, 1),
                 WB_ERR_TOO_LARGE);
    cr_log_info("payload: %s", wb_broker_last_error(br));
    free(payload);
    char topic[300];
    memset(topic, 'a', 257);
    topic[257] = '\0';
    cr_assert_eq(wb_broker_publish(br, topic, "x", 1, 1), WB_ERR_TOO_LARGE);
    cr_log_info("topic: %s", wb_broker_last_error(br));
    cr_assert_neq(wb_broker_publish(br, "a/b/c/d/e/f/g/h/i", "x", 1, 1), WB_OK);
    cr_assert(strstr(wb_broker_last_error(br), "7"), "%s", wb_broker_last_error(br));
    cr_log_info("slashes: %s", wb_broker_last_error(br));
    cr_assert_eq(wb_broker_publish(br, "spacelift/readonly/a/b", "x", 1, 2), WB_ERR_NOT_SUPPORTED);
    wb_broker_stats st;
    wb_broker_stats_get(br, &st);
    cr_assert_eq(st.published, 0, "a refused message was counted as published");
    wb_broker_close(br);
}
