/* The broker core with a fake counting backend: dispatch, argument checks
 * made before the backend is called, optional operations, table checks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_backend.h"
#include "helpers.h"

static struct {
    int open, connect, publish, disconnect, close, subscribe, flush;
    char last_topic[300];
    size_t last_len;
    int last_qos;
    wb__broker_core *core;
} calls;

static wb_err f_open(void *priv, const wb_config *cfg, const wb_broker_opts *o,
                     wb__broker_core *core, char **d)
{
    (void)priv, (void)cfg, (void)o, (void)d;
    calls.open++;
    calls.core = core;
    return WB_OK;
}
static wb_err f_connect(void *priv, unsigned t, char **d)
{
    (void)priv, (void)t, (void)d;
    calls.connect++;
    return WB_OK;
}
static wb_err f_publish(void *priv, const char *topic, const void *p, size_t len, int qos, char **d)
{
    (void)priv, (void)p, (void)d;
    calls.publish++;
    snprintf(calls.last_topic, sizeof calls.last_topic, "%s", topic);
    calls.last_len = len;
    calls.last_qos = qos;
    return WB_OK;
}
static wb_err f_disconnect(void *priv, unsigned t, char **d)
{
    (void)priv, (void)t, (void)d;
    calls.disconnect++;
    return WB_OK;
}
static void f_close(void *priv)
{
    (void)priv;
    calls.close++;
}
static wb_err f_subscribe(void *priv, const char *f, int q, unsigned t, char **d)
{
    (void)priv, (void)f, (void)q, (void)t;
    calls.subscribe++;
    *d = strdup("refused by the fake");
    return WB_ERR_AUTH_REFUSED;
}

static const wb__broker_ops fake = {
    .version = WB__BROKER_OPS_VERSION,
    .name = "fake",
    .caps = WB__BROKER_CAP_QOS1 | WB__BROKER_CAP_SUBSCRIBE,
    .priv_size = 64,
    .max_payload = 100,
    .max_topic = 200,
    .max_slashes = 7,
    .open = f_open,
    .connect = f_connect,
    .publish = f_publish,
    .disconnect = f_disconnect,
    .close = f_close,
    .subscribe = f_subscribe,
    /* unsubscribe, flush, stats: left out on purpose */
};

static wb_config *cfg;

static void setup(void)
{
    memset(&calls, 0, sizeof calls);
    cr_assert_eq(wb__broker_set_backend(WB_BROKER_BUILTIN, &fake), WB_OK);
    cr_assert_eq(wbt_load(wbt_base_builtin, NULL, &cfg, NULL), WB_OK);
}

static void teardown(void)
{
    wb__broker_set_backend(WB_BROKER_BUILTIN, NULL);
    wb_config_free(cfg);
}

TestSuite(dispatch, .init = setup, .fini = teardown);

Test(dispatch, calls_reach_the_backend_once)
{
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(cfg, NULL, &b), WB_OK);
    cr_assert_str_eq(wb_broker_backend(b), "fake");
    cr_assert_eq(wb_broker_connect(b, 1000), WB_OK);
    cr_assert_eq(wb_broker_publish(b, "a/b", "xyz", 3, 1), WB_OK);
    cr_assert_eq(wb_broker_publish_to_worker(b, "01arz3ndektsv4rrffq69g5fav",
                                             "01BX5ZZKBKACTAV9WEVGEMMVRZ", "", 0, 0),
                 WB_OK);
    cr_assert_str_eq(calls.last_topic,
                     "spacelift/readonly/01ARZ3NDEKTSV4RRFFQ69G5FAV/01BX5ZZKBKACTAV9WEVGEMMVRZ");
    cr_assert_eq(calls.last_qos, 0);
    cr_assert_eq(wb_broker_disconnect(b, 1000), WB_OK);
    wb_broker_close(b);
    cr_assert_eq(calls.open, 1);
    cr_assert_eq(calls.connect, 1);
    cr_assert_eq(calls.publish, 2);
    cr_assert_eq(calls.disconnect, 1);
    cr_assert_eq(calls.close, 1);
}

Test(dispatch, bad_arguments_never_reach_the_backend)
{
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(cfg, NULL, &b), WB_OK);
    cr_assert_eq(wb_broker_publish(b, "a/b", "x", 1, 2), WB_ERR_NOT_SUPPORTED);
    cr_assert(strstr(wb_broker_last_error(b), "QoS 2"), "%s", wb_broker_last_error(b));
    cr_assert_eq(wb_broker_publish(b, "", "x", 1, 0), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_broker_publish(b, NULL, "x", 1, 0), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_broker_publish(b, "a/+/b", "x", 1, 0), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_broker_last_error(b), "wildcard"));
    cr_assert_eq(wb_broker_publish(b, "a/#", "x", 1, 0), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_broker_publish(b, "a\xff", "x", 1, 0), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_broker_publish(b, "a", NULL, 5, 0), WB_ERR_INVALID_ARGUMENT);
    char big[101] = {0};
    cr_assert_eq(wb_broker_publish(b, "a", big, sizeof big, 0), WB_ERR_TOO_LARGE);
    cr_assert(strstr(wb_broker_last_error(b), "at most 100"), "%s", wb_broker_last_error(b));
    cr_assert_eq(wb_broker_publish(b, "a", big, 100, 0), WB_OK); /* the limit itself */
    cr_assert_eq(wb_broker_publish(b, "a/b/c/d/e/f/g/h/i", "x", 1, 0), WB_ERR_TOO_LARGE);
    cr_assert_eq(wb_broker_publish(b, "a/b/c/d/e/f/g/h", "x", 1, 0), WB_OK);
    char topic[202];
    memset(topic, 't', 201);
    topic[201] = '\0';
    cr_assert_eq(wb_broker_publish(b, topic, "x", 1, 0), WB_ERR_TOO_LARGE);
    cr_assert_eq(wb_broker_publish_to_worker(b, "nope", "01BX5ZZKBKACTAV9WEVGEMMVRZ", "x", 1, 0),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_broker_last_error(b), "\"nope\""), "%s", wb_broker_last_error(b));
    cr_assert_eq(calls.publish, 2, "only the two valid publishes reached the backend");
    wb_broker_stats st;
    wb_broker_stats_get(b, &st);
    cr_assert_eq(st.refused, 11);
    wb_broker_close(b);
}

Test(dispatch, optional_operations_answered_by_the_core)
{
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(cfg, NULL, &b), WB_OK);
    cr_assert_eq(wb_broker_unsubscribe(b, "a/#", 100), WB_ERR_NOT_SUPPORTED);
    cr_assert(strstr(wb_broker_last_error(b), "cannot unsubscribe"));
    cr_assert_eq(wb_broker_flush(b, 100), WB_OK);
    cr_assert_eq(wb_broker_subscribe(b, "a/#", 1, 100), WB_ERR_AUTH_REFUSED);
    cr_assert_str_eq(wb_broker_last_error(b), "refused by the fake");
    cr_assert_eq(wb_broker_subscribe(b, "a/#", 2, 100), WB_ERR_NOT_SUPPORTED);
    cr_assert_eq(calls.subscribe, 1);
    wb_broker_close(b);
}

static int got, ups, downs;
static char got_topic[64];

static void on_msg(void *ctx, const wb_message *m)
{
    cr_assert_eq(ctx, &got);
    got++;
    snprintf(got_topic, sizeof got_topic, "%s", m->topic);
}

static void on_conn(void *ctx, bool up, const char *reason)
{
    (void)ctx;
    if (up)
        ups++;
    else {
        downs++;
        cr_assert_str_eq(reason, "cable cut");
    }
}

Test(dispatch, messages_and_connection_changes_reach_the_callbacks)
{
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.on_message = on_msg;
    o.on_message_ctx = &got;
    o.on_connection = on_conn;
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(cfg, &o, &b), WB_OK);
    wb_message m = {"w/x", "p", 1, 1, false};
    wb__broker_deliver(calls.core, &m);
    wb__broker_connection(calls.core, true, NULL);
    wb__broker_connection(calls.core, false, "cable cut");
    cr_assert_eq(got, 1);
    cr_assert_str_eq(got_topic, "w/x");
    cr_assert_eq(ups, 1);
    cr_assert_eq(downs, 1);
    cr_assert(strstr(wb_broker_last_error(b), "connection lost: cable cut"));
    wb_broker_stats st;
    wb_broker_stats_get(b, &st);
    cr_assert_eq(st.received, 1);
    wb_broker_close(b);
}

Test(dispatch, tables_are_checked)
{
    wb__broker_ops bad = fake;
    bad.version = 99;
    char *d = NULL;
    cr_assert_eq(wb__broker_ops_check(&bad, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "version 99"), "%s", d);
    free(d);
    bad = fake;
    bad.publish = NULL;
    cr_assert_eq(wb__broker_ops_check(&bad, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "mandatory operation publish"), "%s", d);
    free(d);
    cr_assert_eq(wb__broker_set_backend(WB_BROKER_BUILTIN, &bad), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb__broker_ops_check(&fake, &d), WB_OK);
}

/* IoT Core's session limits, refused when the handle is opened (nothing
 * is sent then: no network needed). */
Test(dispatch, iotcore_session_limits)
{
    wb_config *io = NULL;
    cr_assert_eq(wbt_load(wbt_base_iotcore, NULL, &io, NULL), WB_OK);
    wb_broker *b = NULL;
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    char id[140];
    memset(id, 'c', 129);
    id[129] = '\0';
    o.client_id = id;
    cr_assert_eq(wb_broker_open(io, &o, &b), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_broker_last_error(NULL), "client id is 129 bytes"), "%s",
              wb_broker_last_error(NULL));
    o.client_id = NULL;
    o.keepalive_s = 20;
    cr_assert_eq(wb_broker_open(io, &o, &b), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(wb_broker_last_error(NULL), "30-1200"), "%s", wb_broker_last_error(NULL));
    o.keepalive_s = 0; /* IoT Core's default, 1200 s */
    cr_assert_eq(wb_broker_open(io, &o, &b), WB_OK, "%s", wb_broker_last_error(NULL));
    cr_assert_str_eq(wb_broker_backend(b), "iotcore");
    wb_broker_close(b);
    wb_config_free(io);
}

Test(dispatch, bad_options_version)
{
    wb_broker_opts o = WB_BROKER_OPTS_INIT;
    o.version = 7;
    wb_broker *b = NULL;
    cr_assert_eq(wb_broker_open(cfg, &o, &b), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(calls.open, 0);
}
