/* The backends compiled in: the list agrees with the build's options
 * (WB_BUILT_BACKENDS, from meson), and a backend left out is refused by name,
 * with the option that builds it, by the configuration and by the
 * interfaces. Built in every configuration, full and reduced. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "wb_internal.h"

typedef struct known {
    const char *name, *kind;
    unsigned type;
    const char *variable; /* the variable that chooses it */
    const char *const *base;
} known;

static const known all[] = {
    {"builtin", "broker", WB_BROKER_BUILTIN, "MQTT_BROKER_TYPE", wbt_base_builtin},
    {"iotcore", "broker", WB_BROKER_IOTCORE, "MQTT_BROKER_TYPE", wbt_base_iotcore},
    {"postgres", "queue", WB_QUEUE_POSTGRES, "MESSAGE_QUEUE_TYPE", wbt_base_builtin},
    {"sqs", "queue", WB_QUEUE_SQS, "MESSAGE_QUEUE_TYPE", wbt_base_builtin_sqs},
};

/* Whether meson built it, by the list it hands the tests. */
static bool expected(const char *name)
{
    const char *list = getenv("WB_BUILT_BACKENDS");
    cr_assert_not_null(list, "WB_BUILT_BACKENDS is not set: run through meson test");
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    }
    return false;
}

Test(backends, the_list_is_the_builds)
{
    size_t listed = 0;
    for (const wb__backend *b = wb__backends; b->kind; b++)
        listed++;
    size_t want = 0;
    for (size_t i = 0; i < WB__ARRAY_LEN(all); i++) {
        bool built = expected(all[i].name);
        want += built;
        cr_assert_eq(wb__backend_built(all[i].kind, all[i].type), built, "%s: built %d, meson %d",
                     all[i].name, wb__backend_built(all[i].kind, all[i].type), built);
        cr_assert_eq(wb__backend_ops(all[i].kind, all[i].type) != NULL, built, "%s", all[i].name);
    }
    cr_assert_eq(listed, want, "%zu backends listed, meson built %zu", listed, want);
}

Test(backends, a_backend_left_out_is_refused_by_name)
{
    for (size_t i = 0; i < WB__ARRAY_LEN(all); i++) {
        char *d = NULL;
        cr_assert_eq(wb__backend_refusal(all[i].kind, all[i].name, &d), WB_ERR_NOT_BUILT_IN);
        char opt[64];
        snprintf(opt, sizeof opt, "-D%s=enabled", all[i].name);
        cr_assert(strstr(d, opt), "%s", d);
        cr_assert(strstr(d, all[i].name), "%s", d);
        free(d);
    }
}

Test(backends, the_configuration_names_a_backend_left_out)
{
    for (size_t i = 0; i < WB__ARRAY_LEN(all); i++) {
        char choose[64];
        snprintf(choose, sizeof choose, "%s=%s", all[i].variable, all[i].name);
        const char *over[] = {choose, NULL};
        wb_config *cfg = NULL;
        wb_config_report *rep = NULL;
        wb_err err = wbt_load(all[i].base, over, &cfg, &rep);
        const wb_config_issue *is = wbt_find(rep, WB_SEVERITY_ERROR, all[i].variable);
        bool refused = is && strstr(is->message, "not built into this library");
        if (expected(all[i].name)) {
            cr_assert_not(refused, "%s is built in, yet: %s", all[i].name, is->message);
        } else {
            cr_assert_eq(err, WB_ERR_CONFIG, "%s", all[i].name);
            cr_assert(refused, "%s: no refusal on %s", all[i].name, all[i].variable);
            char opt[64];
            snprintf(opt, sizeof opt, "-D%s=enabled", all[i].name);
            cr_assert(strstr(is->message, opt), "%s", is->message);
            cr_assert(is->hint && strstr(is->hint, opt), "%s", is->hint ? is->hint : "(none)");
        }
        wb_config_free(cfg);
        wb_config_report_free(rep);
    }
}
