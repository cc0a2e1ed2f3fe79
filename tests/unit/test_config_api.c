/* The configuration API: boundaries, accessors, one-pass reporting, formats,
 * environment files and secrets. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static wb_err load_ns(const char *ns, wb_config_report **rep)
{
    char *kv = malloc(strlen(ns) + 64);
    sprintf(kv, "MQTT_BROKER_IOTCORE_NAMESPACE=%s", ns);
    const char *over[] = {kv, NULL};
    wb_config *cfg = NULL;
    wb_err err = wbt_load(wbt_base_iotcore, over, &cfg, rep);
    if (err == WB_OK) {
        /* the longest topic built from it must fit IoT Core's limits */
        char topic[WB_TOPIC_BUF_SIZE];
        size_t len = 0;
        cr_assert_eq(wb_topic_build(topic, sizeof topic, wb_config_namespace(cfg),
                                    WB_TOPIC_WRITEONLY, "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                    "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", &len),
                     WB_OK);
        cr_assert_leq(len, WB_IOT_TOPIC_MAX_BYTES);
        cr_assert_eq(wb_topic_check_iot_limits(topic), WB_OK);
    }
    wb_config_free(cfg);
    free(kv);
    return err;
}

Test(config_boundaries, namespace_longest_that_fits)
{
    char *ns = repeat('n', WB_NAMESPACE_MAX_BYTES);
    wb_config_report *rep = NULL;
    cr_assert_eq(load_ns(ns, &rep), WB_OK);
    wb_config_report_free(rep);
    free(ns);
}

Test(config_boundaries, namespace_one_byte_more)
{
    char *ns = repeat('n', WB_NAMESPACE_MAX_BYTES + 1);
    wb_config_report *rep = NULL;
    cr_assert_eq(load_ns(ns, &rep), WB_ERR_CONFIG);
    const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, "MQTT_BROKER_IOTCORE_NAMESPACE");
    cr_assert_not_null(e);
    cr_assert(strstr(e->message, "193 bytes"), "%s", e->message);
    cr_assert(strstr(e->message, "257 bytes"), "%s", e->message);
    cr_assert(strstr(e->hint, "at most 192 bytes"), "%s", e->hint);
    wb_config_report_free(rep);
    free(ns);
}

Test(config_boundaries, namespace_longest_with_most_slashes)
{
    /* 192 bytes holding 4 slashes: topics have exactly 256 bytes and 7 slashes */
    char *ns = repeat('x', WB_NAMESPACE_MAX_BYTES);
    ns[10] = ns[20] = ns[30] = ns[40] = '/';
    wb_config_report *rep = NULL;
    cr_assert_eq(load_ns(ns, &rep), WB_OK);
    wb_config_report_free(rep);
    ns[50] = '/';
    cr_assert_eq(load_ns(ns, &rep), WB_ERR_CONFIG);
    cr_assert_not_null(wbt_find(rep, WB_SEVERITY_ERROR, "MQTT_BROKER_IOTCORE_NAMESPACE"));
    wb_config_report_free(rep);
    free(ns);
}

Test(config_boundaries, multibyte_namespace_counts_bytes)
{
    /* 96 two-byte characters = 192 bytes: fits; 97 = 194 bytes: does not */
    char ns[256] = "";
    for (int i = 0; i < 96; i++)
        strcat(ns, "\xc3\xa9");
    wb_config_report *rep = NULL;
    cr_assert_eq(load_ns(ns, &rep), WB_OK);
    wb_config_report_free(rep);
    strcat(ns, "\xc3\xa9");
    cr_assert_eq(load_ns(ns, &rep), WB_ERR_CONFIG);
    wb_config_report_free(rep);
}

Test(config_boundaries, value_too_long)
{
    char *big = repeat('a', 9000);
    char *kv = malloc(9100);
    sprintf(kv, "DATABASE_URL=%s", big);
    const char *over[] = {kv, NULL};
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, over, NULL, &rep), WB_ERR_CONFIG);
    const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, "DATABASE_URL");
    cr_assert_not_null(e);
    cr_assert(strstr(e->message, "8192"), "%s", e->message);
    wb_config_report_free(rep);
    free(kv);
    free(big);
}

Test(config_api, every_problem_in_one_pass)
{
    const char *env[] = {
        "MQTT_BROKER_TYPE=builtin",
        "MQTT_BROKER_ENDPOINT=broker.example.com:1983",
        "MQTT_BROKER_BUILTIN_LOG_LEVEL=loud",
        "MQTT_BROKER_IOTCORE_NAMESPACE=$bad",
        "MESSAGE_QUEUE_TYPE=postgres",
        "DATABASE_URL=postgres://u:pw@h/db?nope=1",
        "AWS_REGION=mars-1",
        "MQTT_BROKER_TYPO=1",
        NULL,
    };
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env = env;
    wb_config *cfg = (wb_config *)1;
    wb_config_report *rep = NULL;
    cr_assert_eq(wb_config_load(&opts, &cfg, &rep), WB_ERR_CONFIG);
    cr_assert_null(cfg);
    const char *expect[] = {"MQTT_BROKER_ENDPOINT", "MQTT_BROKER_BUILTIN_LOG_LEVEL",
                            "MQTT_BROKER_IOTCORE_NAMESPACE", "DATABASE_URL", "AWS_REGION"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        cr_assert_not_null(wbt_find(rep, WB_SEVERITY_ERROR, expect[i]), "no error on %s",
                           expect[i]);
    cr_assert_eq(wb_config_report_count(rep, WB_SEVERITY_ERROR), 5);
    cr_assert_not_null(wbt_find(rep, WB_SEVERITY_WARNING, "MQTT_BROKER_TYPO"));
    wb_config_report_free(rep);
}

Test(config_api, accessors_iotcore)
{
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    const char *over[] = {"MQTT_BROKER_ENDPOINT=ABC123-ats.iot.eu-west-1.amazonaws.com",
                          "MQTT_BROKER_IOTCORE_NAMESPACE=acme/prod", NULL};
    cr_assert_eq(wbt_load(wbt_base_iotcore, over, &cfg, &rep), WB_OK);
    cr_assert_eq(wb_config_broker_type(cfg), WB_BROKER_IOTCORE);
    cr_assert_str_eq(wb_config_broker_endpoint(cfg), "abc123-ats.iot.eu-west-1.amazonaws.com");
    cr_assert_str_eq(wb_config_broker_host(cfg), "abc123-ats.iot.eu-west-1.amazonaws.com");
    cr_assert_eq(wb_config_broker_port(cfg), 8883);
    cr_assert(wb_config_broker_tls(cfg));
    cr_assert_str_eq(wb_config_iotcore_region(cfg), "eu-west-1");
    cr_assert_str_eq(wb_config_aws_region(cfg), "eu-west-1");
    cr_assert_str_eq(wb_config_namespace(cfg), "acme/prod");
    cr_assert_eq(wb_config_queue_type(cfg), WB_QUEUE_SQS);
    cr_assert_null(wb_config_database_url(cfg));
    cr_assert_str_eq(wb_config_sqs_url(cfg, WB_LQ_IOT),
                     "https://sqs.eu-west-1.amazonaws.com/123456789012/sl-iot");
    cr_assert_str_eq(wb_config_sqs_url(cfg, WB_LQ_DLQ_FIFO),
                     "https://sqs.eu-west-1.amazonaws.com/123456789012/sl-dlq.fifo");
    cr_assert_null(wb_config_sqs_url(cfg, WB_LQ__COUNT));
    cr_assert_str_eq(wb_config_get(cfg, "MQTT_BROKER_TYPE"), "iotcore");
    cr_assert_null(wb_config_get(cfg, "NOT_A_VARIABLE"));
    cr_assert_eq(wb_config_builtin_max_payload(cfg), 0);
    wb_config_free(cfg);
    wb_config_report_free(rep);
}

Test(config_api, accessors_builtin)
{
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    const char *over[] = {"MQTT_BROKER_ENDPOINT=tls://[2001:db8::1]:1984",
                          "MQTT_BROKER_BUILTIN_LOG_LEVEL=WARN", "MQTT_BROKER_TYPE=builtin", NULL};
    cr_assert_eq(wbt_load(wbt_base_builtin, over, &cfg, &rep), WB_OK);
    cr_assert_eq(wb_config_broker_type(cfg), WB_BROKER_BUILTIN);
    cr_assert_str_eq(wb_config_broker_host(cfg), "2001:db8::1");
    cr_assert_eq(wb_config_broker_port(cfg), 1984);
    cr_assert(wb_config_broker_tls(cfg));
    cr_assert_null(wb_config_iotcore_region(cfg));
    cr_assert_eq(wb_config_builtin_log_level(cfg), WB_LOG_WARN);
    cr_assert_str_eq(wb_config_get(cfg, "MQTT_BROKER_BUILTIN_LOG_LEVEL"), "warn");
    cr_assert_eq(wb_config_log_level(cfg), WB_LOG_INFO, "WORKERBUS_LOG_LEVEL's default");
    cr_assert_str_eq(wb_config_namespace(cfg), "spacelift");
    cr_assert_eq(wb_config_queue_type(cfg), WB_QUEUE_POSTGRES);
    /* the library hands the real password to the code that connects */
    cr_assert_str_eq(wb_config_database_url(cfg),
                     "postgres://wb:hunter2secret@db.example.com:5432/wb");
    cr_assert_null(wb_config_sqs_url(cfg, WB_LQ_IOT));
    cr_assert_null(wb_config_aws_region(cfg));
    cr_assert_eq(wb_config_builtin_max_payload(cfg), WB_BUNDLED_MAX_PAYLOAD);
    wb_config_free(cfg);
    wb_config_report_free(rep);

    const char *plain[] = {"MQTT_BROKER_ENDPOINT=broker.example.com:1883",
                           "MQTT_BROKER_BUILTIN_MAX_PAYLOAD=4096", NULL};
    cr_assert_eq(wbt_load(wbt_base_builtin, plain, &cfg, NULL), WB_OK);
    cr_assert_not(wb_config_broker_tls(cfg));
    cr_assert_eq(wb_config_broker_port(cfg), 1883);
    cr_assert_eq(wb_config_builtin_max_payload(cfg), 4096);
    wb_config_free(cfg);
}

Test(config_api, configuration_is_a_copy)
{
    char endpoint[] = "MQTT_BROKER_ENDPOINT=tls://broker.example.com:1984";
    char pki[200];
    snprintf(pki, sizeof pki, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", wbt_pki_dir());
    const char *env[] = {"MQTT_BROKER_TYPE=builtin",
                         endpoint,
                         "MESSAGE_QUEUE_TYPE=postgres",
                         "DATABASE_URL=postgres://h/db",
                         pki,
                         "MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbtest-run",
                         NULL};
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env = env;
    wb_config *cfg = NULL;
    cr_assert_eq(wb_config_load(&opts, &cfg, NULL), WB_OK);
    memset(endpoint, 'x', sizeof endpoint - 1);
    cr_assert_str_eq(wb_config_broker_endpoint(cfg), "tls://broker.example.com:1984");
    wb_config_free(cfg);
}

Test(config_api, process_environment)
{
    clearenv();
    setenv("MQTT_BROKER_TYPE", "builtin", 1);
    setenv("MQTT_BROKER_ENDPOINT", "127.0.0.1:1984", 1);
    setenv("MESSAGE_QUEUE_TYPE", "postgres", 1);
    setenv("DATABASE_URL", "postgres://127.0.0.1/x", 1);
    setenv("MQTT_BROKER_BUILTIN_PKI_DIR", wbt_pki_dir(), 1);
    setenv("MQTT_BROKER_BUILTIN_RUNTIME_DIR", "/tmp/wbtest-run", 1);
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    cr_assert_eq(wb_config_load(NULL, &cfg, &rep), WB_OK);
    cr_assert_str_eq(wb_config_report_source(rep), "the process environment");
    cr_assert_str_eq(wb_config_broker_host(cfg), "127.0.0.1");
    wb_config_free(cfg);
    wb_config_report_free(rep);
    unsetenv("DATABASE_URL");
    cr_assert_eq(wb_config_load(NULL, NULL, NULL), WB_ERR_CONFIG);
}

Test(config_api, bad_options)
{
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.version = 99;
    wb_config_report *rep = (wb_config_report *)1;
    cr_assert_eq(wb_config_load(&opts, NULL, &rep), WB_ERR_INVALID_ARGUMENT);
    cr_assert_null(rep);
    const char *env[] = {NULL};
    wb_config_load_opts both = WB_CONFIG_LOAD_OPTS_INIT;
    both.env = env;
    both.env_file = "/dev/null";
    cr_assert_eq(wb_config_load(&both, NULL, NULL), WB_ERR_INVALID_ARGUMENT);
    wb_config_load_opts parts = WB_CONFIG_LOAD_OPTS_INIT;
    parts.parts = 7;
    cr_assert_eq(wb_config_load(&parts, NULL, NULL), WB_ERR_INVALID_ARGUMENT);
}

/* A program that uses the queue only reads and checks the queue's
 * variables: a broker setting it does not use cannot stop it. */
Test(config_api, the_queue_part_alone)
{
    const char *env[] = {"MQTT_BROKER_TYPE=builtin",
                         "MQTT_BROKER_ENDPOINT=127.0.0.1:1884", /* plain: no token key given */
                         "MESSAGE_QUEUE_TYPE=postgres",
                         "DATABASE_URL=postgres://wb:pw@127.0.0.1:5432/wb", NULL};
    wb_config_load_opts all = WB_CONFIG_LOAD_OPTS_INIT;
    all.env = env;
    wb_config_report *rep = NULL;
    cr_assert_eq(wb_config_load(&all, NULL, &rep), WB_ERR_CONFIG);
    cr_assert_not_null(wbt_find(rep, WB_SEVERITY_ERROR, "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE"));
    wb_config_report_free(rep);

    wb_config_load_opts queue = all;
    queue.parts = WB_CONFIG_QUEUE;
    wb_config *cfg = NULL;
    cr_assert_eq(wb_config_load(&queue, &cfg, &rep), WB_OK);
    cr_assert_eq(wb_config_queue_type(cfg), WB_QUEUE_POSTGRES);
    cr_assert_str_eq(wb_config_database_url(cfg), "postgres://wb:pw@127.0.0.1:5432/wb");
    wb_config_free(cfg);
    wb_config_report_free(rep);

    /* the queue's own variables are still checked, and IoT Core still needs SQS */
    const char *bad[] = {"MESSAGE_QUEUE_TYPE=postgres", "DATABASE_URL=", NULL};
    wb_config_load_opts q2 = queue;
    q2.env = env;
    q2.overrides = bad;
    cr_assert_eq(wb_config_load(&q2, NULL, &rep), WB_ERR_CONFIG);
    cr_assert_not_null(wbt_find(rep, WB_SEVERITY_ERROR, "DATABASE_URL"));
    wb_config_report_free(rep);
    const char *iot[] = {"MQTT_BROKER_TYPE=iotcore", NULL};
    q2.overrides = iot;
    cr_assert_eq(wb_config_load(&q2, NULL, &rep), WB_ERR_CONFIG);
    cr_assert_not_null(wbt_find(rep, WB_SEVERITY_ERROR, "MESSAGE_QUEUE_TYPE"));
    wb_config_report_free(rep);

    /* options of version 1 (no parts) still load everything */
    wb_config_load_opts v1 = all;
    v1.version = 1;
    cr_assert_eq(wb_config_load(&v1, NULL, NULL), WB_ERR_CONFIG);
}

Test(config_api, settings_and_defaults)
{
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, NULL, NULL, &rep), WB_OK);
    cr_assert_eq(wb_config_report_setting_count(rep), 42);
    const wb_config_setting *ns = NULL, *db = NULL, *iot = NULL;
    for (size_t i = 0; i < wb_config_report_setting_count(rep); i++) {
        const wb_config_setting *s = wb_config_report_setting(rep, i);
        if (!strcmp(s->variable, "MQTT_BROKER_IOTCORE_NAMESPACE"))
            ns = s;
        if (!strcmp(s->variable, "DATABASE_URL"))
            db = s;
        if (!strcmp(s->variable, "MESSAGE_QUEUE_SQS_IOT_URL"))
            iot = s;
    }
    cr_assert_eq(ns->origin, WB_ORIGIN_DEFAULT);
    cr_assert_str_eq(ns->value, "spacelift");
    cr_assert_eq(db->origin, WB_ORIGIN_SET);
    cr_assert(db->secret);
    cr_assert_str_eq(db->value, "postgres://wb:****@db.example.com:5432/wb");
    cr_assert_eq(iot->origin, WB_ORIGIN_UNSET);
    cr_assert_not(iot->used);
    cr_assert_null(wb_config_report_setting(rep, 42));
    wb_config_report_free(rep);
}

static void assert_no_secret(const char *text, const char *secret)
{
    cr_assert_null(strstr(text, secret), "secret \"%s\" shown in:\n%s", secret, text);
}

Test(config_secrets, redacted_in_every_format)
{
    const char *cases[][2] = {
        {"DATABASE_URL=postgres://u:S3cretPassw0rd@h/db?bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://u:S3cretPassw0rd@h/db", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://u:S3cret#Passw0rd@h/db?bogus=1", "S3cret#Passw0rd"},
        {"DATABASE_URL=postgres://u:S3cret?Passw0rd@h/db", "Passw0rd"},
        {"DATABASE_URL=host=h password=S3cretPassw0rd bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=host=h password='S3cret Passw0rd' bogus=1", "S3cret Passw0rd"},
        {"DATABASE_URL=postgres://h/db?password=S3cretPassw0rd&bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://u:S3cret%zzPass@h/db", "S3cret%zzPass"},
        {"DATABASE_URL=postgres://u:S3cretPassw0rd@h/db?sslmode=maybe", "S3cretPassw0rd"},
        {"DATABASE_URL=postgresql://u:S3cretPassw0rd@h1,h2/db?target_session_attrs=x",
         "S3cretPassw0rd"},
        /* every keyword that holds a secret, however it is written */
        {"DATABASE_URL=postgres://u:p@127.0.0.1:1/db?sslpassword=S3cretPassw0rd", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://h/db?SSLPassword=S3cretPassw0rd&bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://h/db?%73slpassword=S3cretPassw0rd", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://h/db?password=S3cret%50assw0rd", "S3cret%50assw0rd"},
        {"DATABASE_URL=host=h sslpassword=S3cretPassw0rd bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=host=h sslpassword = 'S3cret Passw0rd'", "S3cret Passw0rd"},
        /* a URI or a connection string inside a value */
        {"DATABASE_URL=dbname=postgres://u:S3cretPassw0rd@h/db", "S3cretPassw0rd"},
        {"DATABASE_URL=dbname='postgres://u:S3cretPassw0rd@h/db' bogus=1", "S3cretPassw0rd"},
        {"DATABASE_URL=dbname='host=h password=S3cretPassw0rd'", "S3cretPassw0rd"},
        {"DATABASE_URL=postgres://h/?dbname=postgres%3A%2F%2Fu%3AS3cretPassw0rd%40h%2Fdb",
         "S3cretPassw0rd"},
        {"DATABASE_URL=postgres:///?dbname=host%3Dh%20password%3DS3cretPassw0rd", "S3cretPassw0rd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *over[] = {cases[i][0], NULL};
        wb_config_report *rep = NULL;
        wbt_load(wbt_base_builtin, over, NULL, &rep);
        cr_assert_not_null(rep);
        for (int f = WB_REPORT_TEXT; f <= WB_REPORT_PROBLEMS; f++) {
            char *out = wb_config_report_format(rep, (wb_report_format)f);
            cr_assert_not_null(out);
            assert_no_secret(out, cases[i][1]);
            wb_free(out);
        }
        wb_config_report_free(rep);
    }
}

Test(config_secrets, redacted_values_keep_what_is_not_secret)
{
    static const char *const cases[][2] = {
        {"postgres://u:p@127.0.0.1:1/db?sslpassword=S3cret&sslmode=require",
         "postgres://u:****@127.0.0.1:1/db?sslpassword=****&sslmode=require"},
        {"dbname=postgres://u:PW@h/db user=x", "dbname=postgres://u:****@h/db user=x"},
        {"host=h dbname='host=h password=PW'", "host=h dbname='host=h password=****'"},
        {"postgres://h/?dbname=postgres%3A%2F%2Fu%3APW%40h", "postgres://h/?dbname=****"},
        {"postgres://u@h/db?application_name=a%3Db", "postgres://u@h/db?application_name=a%3Db"},
        {"host=h port=5432 dbname=wb", "host=h port=5432 dbname=wb"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char over0[256];
        snprintf(over0, sizeof over0, "DATABASE_URL=%s", cases[i][0]);
        const char *over[] = {over0, NULL};
        wb_config_report *rep = NULL;
        wbt_load(wbt_base_builtin, over, NULL, &rep);
        const wb_config_setting *db = NULL;
        for (size_t k = 0; k < wb_config_report_setting_count(rep); k++) {
            const wb_config_setting *s = wb_config_report_setting(rep, k);
            if (!strcmp(s->variable, "DATABASE_URL"))
                db = s;
        }
        cr_assert_not_null(db);
        cr_assert_str_eq(db->value, cases[i][1], "%s", cases[i][0]);
        wb_config_report_free(rep);
    }
}

Test(config_secrets, sqs_url_credentials_redacted)
{
    const char *over[] = {
        "MESSAGE_QUEUE_SQS_IOT_URL=https://me:T0pSecretValue@sqs.eu-west-1.amazonaws.com/"
        "123456789012/iot",
        NULL};
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_iotcore, over, NULL, &rep), WB_ERR_CONFIG);
    char *out = wb_config_report_format(rep, WB_REPORT_JSON);
    assert_no_secret(out, "T0pSecretValue");
    cr_assert(strstr(out, "me:****@"), "%s", out);
    wb_free(out);
    wb_config_report_free(rep);
}

Test(config_format, json_shape)
{
    const char *over[] = {"MQTT_BROKER_ENDPOINT=broker.example.com:1983", "MQTT_BROKER_TYPO=1",
                          NULL};
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, over, NULL, &rep), WB_ERR_CONFIG);
    char *out = wb_config_report_format(rep, WB_REPORT_JSON);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    cr_assert_not_null(root, "invalid JSON: %s\n%s", jerr.text, out);
    cr_assert(json_is_false(json_object_get(root, "valid")));
    json_t *errors = json_object_get(root, "errors");
    json_t *warnings = json_object_get(root, "warnings");
    cr_assert(json_is_array(errors) && json_array_size(errors) == 1);
    cr_assert(json_is_array(warnings) && json_array_size(warnings) == 1);
    json_t *e = json_array_get(errors, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "variable")), "MQTT_BROKER_ENDPOINT");
    cr_assert_str_eq(json_string_value(json_object_get(e, "value")), "broker.example.com:1983");
    cr_assert(json_is_string(json_object_get(e, "message")));
    cr_assert(json_is_string(json_object_get(e, "hint")));
    json_t *w = json_array_get(warnings, 0);
    cr_assert(json_is_null(json_object_get(w, "value")), "unknown variables' values are hidden");
    json_t *config = json_object_get(root, "config");
    cr_assert(json_is_object(config));
    cr_assert_eq(json_object_size(config), 42);
    json_t *ns = json_object_get(config, "MQTT_BROKER_IOTCORE_NAMESPACE");
    cr_assert_str_eq(json_string_value(json_object_get(ns, "origin")), "default");
    json_decref(root);
    wb_free(out);
    wb_config_report_free(rep);
}

Test(config_format, text_lists_everything)
{
    const char *over[] = {"MQTT_BROKER_BUILTIN_LOG_LEVEL=loud", NULL};
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, over, NULL, &rep), WB_ERR_CONFIG);
    char *out = wb_config_report_format(rep, WB_REPORT_TEXT);
    cr_assert(strstr(out, "MQTT_BROKER_IOTCORE_NAMESPACE"));
    cr_assert(strstr(out, "spacelift  (default)"), "%s", out);
    cr_assert(strstr(out, "error: MQTT_BROKER_BUILTIN_LOG_LEVEL=\"loud\": must be"), "%s", out);
    cr_assert(strstr(out, "1 error, 0 warnings: the configuration is invalid."), "%s", out);
    wb_free(out);
    wb_config_report_free(rep);
}

Test(config_format, control_bytes_escaped)
{
    const char *over[] = {"MQTT_BROKER_ENDPOINT=broker\x1b[31m:1984", NULL};
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, over, NULL, &rep), WB_ERR_CONFIG);
    const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, "MQTT_BROKER_ENDPOINT");
    cr_assert_str_eq(e->value, "broker\\x1B[31m:1984");
    wb_config_report_free(rep);
}

/* ---- environment files ---- */

/* Loads an environment file; the test PKI and a runtime directory come as
 * overrides, so the files' own lines stay what each test says. */
static wb_err load_file(const char *text, size_t len, wb_config **cfg, wb_config_report **rep)
{
    const char *path = wbt_tmpfile(text, len);
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env_file = path;
    char pki[200];
    snprintf(pki, sizeof pki, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", wbt_pki_dir());
    const char *over[] = {pki, "MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbtest-run", NULL};
    opts.overrides = over;
    wb_err err = wb_config_load(&opts, cfg, rep);
    unlink(path);
    return err;
}

Test(envfile, syntax)
{
    static const char text[] = "\xEF\xBB\xBF# a comment\r\n"
                               "\n"
                               "   # an indented comment\n"
                               "export MQTT_BROKER_TYPE=builtin\r\n"
                               "MQTT_BROKER_ENDPOINT=\"tls://broker.example.com:1984\"\n"
                               "MESSAGE_QUEUE_TYPE='postgres'   \n"
                               "DATABASE_URL=host=h password='a b'\n"
                               "MQTT_BROKER_IOTCORE_NAMESPACE=\"acme\\\"s\"\n";
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = load_file(text, sizeof text - 1, &cfg, &rep);
    if (err)
        wbt_dump(rep);
    cr_assert_eq(err, WB_OK);
    cr_assert_eq(wb_config_broker_type(cfg), WB_BROKER_BUILTIN);
    cr_assert_str_eq(wb_config_broker_endpoint(cfg), "tls://broker.example.com:1984");
    cr_assert_eq(wb_config_queue_type(cfg), WB_QUEUE_POSTGRES);
    cr_assert_str_eq(wb_config_database_url(cfg), "host=h password='a b'");
    cr_assert_str_eq(wb_config_namespace(cfg), "acme\"s");
    cr_assert(strstr(wb_config_report_source(rep), "the file /tmp/wbtest-"));
    wb_config_free(cfg);
    wb_config_report_free(rep);
}

Test(envfile, malformed_lines_named_by_line)
{
    static const char text[] = "MQTT_BROKER_TYPE=builtin\n"
                               "this is not an assignment\n"
                               "MQTT_BROKER_ENDPOINT=\"tls://unterminated:1984\n"
                               "1BAD=x\n"
                               "=x\n"
                               "MQTT_BROKER_ENDPOINT='a' trailing\n";
    wb_config_report *rep = NULL;
    cr_assert_eq(load_file(text, sizeof text - 1, NULL, &rep), WB_ERR_CONFIG);
    size_t found = 0;
    for (size_t i = 0; i < wb_config_report_count(rep, WB_SEVERITY_ERROR); i++) {
        const wb_config_issue *e = wb_config_report_issue(rep, WB_SEVERITY_ERROR, i);
        for (int line = 2; line <= 6; line++) {
            char suffix[8];
            snprintf(suffix, sizeof suffix, ":%d", line);
            size_t vl = strlen(e->variable), sl = strlen(suffix);
            if (vl > sl && !strcmp(e->variable + vl - sl, suffix))
                found |= 1u << line;
        }
    }
    cr_assert_eq(found, 0x7c, "lines with errors: %#zx", found);
    wb_config_report_free(rep);
}

Test(envfile, duplicate_names_lines)
{
    static const char text[] = "MQTT_BROKER_TYPE=builtin\n"
                               "MQTT_BROKER_ENDPOINT=a:1\n"
                               "MESSAGE_QUEUE_TYPE=postgres\n"
                               "DATABASE_URL=postgres://h/db\n"
                               "MQTT_BROKER_ENDPOINT=b:2\n";
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    cr_assert_eq(load_file(text, sizeof text - 1, &cfg, &rep), WB_OK);
    cr_assert_str_eq(wb_config_broker_endpoint(cfg), "b:2");
    const wb_config_issue *w = wbt_find(rep, WB_SEVERITY_WARNING, "MQTT_BROKER_ENDPOINT");
    cr_assert_not_null(w);
    cr_assert(strstr(w->message, "lines 2 and 5"), "%s", w->message);
    wb_config_free(cfg);
    wb_config_report_free(rep);
}

Test(envfile, nul_byte_in_value)
{
    static const char text[] = "MQTT_BROKER_TYPE=builtin\n"
                               "MQTT_BROKER_ENDPOINT=a\0b:1984\n"
                               "MESSAGE_QUEUE_TYPE=postgres\n"
                               "DATABASE_URL=postgres://u:Pa\0ssw0rdXYZ@h/db\n";
    wb_config_report *rep = NULL;
    cr_assert_eq(load_file(text, sizeof text - 1, NULL, &rep), WB_ERR_CONFIG);
    const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, "MQTT_BROKER_ENDPOINT");
    cr_assert_not_null(e);
    cr_assert(strstr(e->message, "NUL"));
    cr_assert_str_eq(e->value, "a\\x00b:1984");
    const wb_config_issue *d = wbt_find(rep, WB_SEVERITY_ERROR, "DATABASE_URL");
    cr_assert_not_null(d);
    cr_assert_null(strstr(d->value, "ssw0rdXYZ"), "%s", d->value);
    wb_config_report_free(rep);
}

Test(envfile, unreadable_file)
{
    wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
    opts.env_file = "/nonexistent/workerbus.env";
    wb_config_report *rep = NULL;
    wb_config *cfg = NULL;
    cr_assert_eq(wb_config_load(&opts, &cfg, &rep), WB_ERR_IO);
    cr_assert_null(cfg);
    const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, "/nonexistent/workerbus.env");
    cr_assert_not_null(e);
    cr_assert(strstr(e->message, "No such file"), "%s", e->message);
    wb_config_report_free(rep);
}

/* A certificate that expires within 30 days is a warning, with the command
 * that renews it. */
Test(config_api, a_certificate_near_its_end_is_a_warning)
{
    const char *pki = wbt_pki_dir();
    char dir[] = "/tmp/wbexp-XXXXXX", cmd[2048], crt[96], set_crt[160], set_key[160];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(crt, sizeof crt, "%s/server-short.crt", dir);
    /* the server's own key, a certificate for it from the same CA, 10 days */
    snprintf(cmd, sizeof cmd,
             "printf 'extendedKeyUsage=clientAuth\\n' >%s/ext && "
             "openssl req -new -key %s/server.key -subj /CN=workerbus-server 2>/dev/null | "
             "openssl x509 -req -CA %s/ca.crt -CAkey %s/ca.key -CAcreateserial -days 10 "
             "-extfile %s/ext -out %s 2>/dev/null",
             dir, pki, pki, pki, dir, crt);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(set_crt, sizeof set_crt, "MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE=%s", crt);
    snprintf(set_key, sizeof set_key, "MQTT_BROKER_BUILTIN_CLIENT_KEY_FILE=%s/server.key", pki);
    const char *over[] = {set_crt, set_key, NULL};
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    cr_assert_eq(wbt_load(wbt_base_builtin, over, &cfg, &rep), WB_OK);
    const wb_config_issue *is =
        wbt_find(rep, WB_SEVERITY_WARNING, "MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE");
    cr_assert_not_null(is, "no warning about the certificate's end");
    cr_assert(strstr(is->message, "expires in 9 days") || strstr(is->message, "expires in 10 days"),
              "%s", is->message);
    cr_assert(is->hint && strstr(is->hint, "workerbus pki renew-server"), "%s",
              is->hint ? is->hint : "(no hint)");
    /* the usual ones, 825 days: no warning */
    cr_assert_null(wbt_find(rep, WB_SEVERITY_WARNING, "MQTT_BROKER_BUILTIN_CERT_FILE"));
    wb_config_free(cfg);
    wb_config_report_free(rep);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
