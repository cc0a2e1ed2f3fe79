/* Reading and formatting a configuration report. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

WB_API size_t wb_config_report_count(const wb_config_report *r, wb_severity sev)
{
    if (!r || (unsigned)sev > WB_SEVERITY_WARNING)
        return 0;
    return r->issues[sev].count;
}

WB_API const wb_config_issue *wb_config_report_issue(const wb_config_report *r, wb_severity sev,
                                                     size_t i)
{
    if (!r || (unsigned)sev > WB_SEVERITY_WARNING || i >= r->issues[sev].count)
        return NULL;
    return &r->issues[sev].items[i];
}

WB_API size_t wb_config_report_setting_count(const wb_config_report *r)
{
    return r ? WB__V_COUNT : 0;
}

WB_API const wb_config_setting *wb_config_report_setting(const wb_config_report *r, size_t i)
{
    if (!r || i >= WB__V_COUNT || !r->settings[i].variable)
        return NULL;
    return &r->settings[i];
}

WB_API const char *wb_config_report_source(const wb_config_report *r)
{
    return r && r->source ? r->source : "";
}

static void text_issue(wb__buf *b, const wb_config_issue *is)
{
    wb__buf_puts(b, is->severity == WB_SEVERITY_ERROR ? "error: " : "warning: ");
    wb__buf_puts(b, is->variable);
    if (is->value)
        wb__buf_printf(b, "=\"%s\"", is->value);
    wb__buf_printf(b, ": %s\n", is->message);
    if (is->hint)
        wb__buf_printf(b, "  hint: %s\n", is->hint);
}

static char *format_text(const wb_config_report *r, bool settings)
{
    wb__buf b = WB__BUF_INIT;
    if (settings) {
        wb__buf_printf(&b, "Configuration read from %s:\n", wb_config_report_source(r));
        for (size_t i = 0; i < WB__V_COUNT; i++) {
            const wb_config_setting *s = &r->settings[i];
            if (!s->variable)
                continue;
            wb__buf_printf(&b, "  %-36s ", s->variable);
            if (s->value)
                wb__buf_puts(&b, s->value);
            else
                wb__buf_puts(&b, "(unset)");
            if (s->origin == WB_ORIGIN_DEFAULT)
                wb__buf_puts(&b, "  (default)");
            if (!s->used)
                wb__buf_puts(&b, "  (not used)");
            wb__buf_putc(&b, '\n');
        }
        wb__buf_putc(&b, '\n');
    }
    for (int sev = 0; sev < 2; sev++) {
        for (size_t i = 0; i < r->issues[sev].count; i++)
            text_issue(&b, &r->issues[sev].items[i]);
    }
    if (settings) {
        size_t ne = r->issues[0].count, nw = r->issues[1].count;
        if (ne || nw)
            wb__buf_putc(&b, '\n');
        wb__buf_printf(&b, "%zu error%s, %zu warning%s: the configuration is %s.\n", ne,
                       ne == 1 ? "" : "s", nw, nw == 1 ? "" : "s", ne ? "invalid" : "valid");
    }
    return wb__buf_take(&b);
}

/* json_string() refuses invalid UTF-8; values are escaped, so this only
 * guards against a broken invariant. */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *j = json_string(s);
    return j ? j : json_string("(not valid UTF-8)");
}

static char *format_json(const wb_config_report *r)
{
    json_t *root = json_object();
    json_t *lists[2] = {json_array(), json_array()};
    json_t *config = json_object();
    if (!root || !lists[0] || !lists[1] || !config)
        goto fail;
    for (int sev = 0; sev < 2; sev++) {
        for (size_t i = 0; i < r->issues[sev].count; i++) {
            const wb_config_issue *is = &r->issues[sev].items[i];
            json_t *o =
                json_pack("{s:o, s:o, s:o, s:o}", "variable", jstr(is->variable), "value",
                          jstr(is->value), "message", jstr(is->message), "hint", jstr(is->hint));
            if (!o || json_array_append_new(lists[sev], o))
                goto fail;
        }
    }
    for (size_t i = 0; i < WB__V_COUNT; i++) {
        const wb_config_setting *s = &r->settings[i];
        if (!s->variable)
            continue;
        const char *origin = s->origin == WB_ORIGIN_SET       ? "set"
                             : s->origin == WB_ORIGIN_DEFAULT ? "default"
                                                              : "unset";
        json_t *o = json_pack("{s:o, s:s, s:b, s:b}", "value", jstr(s->value), "origin", origin,
                              "used", s->used, "secret", s->secret);
        if (!o || json_object_set_new(config, s->variable, o))
            goto fail;
    }
    json_object_set_new(root, "valid", json_boolean(r->issues[0].count == 0));
    json_object_set_new(root, "source", jstr(wb_config_report_source(r)));
    json_object_set_new(root, "errors", lists[0]);
    json_object_set_new(root, "warnings", lists[1]);
    json_object_set_new(root, "config", config);
    char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!out)
        return NULL;
    /* hand back memory the caller frees with wb_free() (free()) */
    char *copy = wb__strdup(out);
    free(out);
    return copy;
fail:
    json_decref(root);
    json_decref(lists[0]);
    json_decref(lists[1]);
    json_decref(config);
    return NULL;
}

WB_API char *wb_config_report_format(const wb_config_report *r, wb_report_format format)
{
    if (!r)
        return NULL;
    switch (format) {
    case WB_REPORT_TEXT:
        return format_text(r, true);
    case WB_REPORT_PROBLEMS:
        return format_text(r, false);
    case WB_REPORT_JSON:
        return format_json(r);
    }
    return NULL;
}
