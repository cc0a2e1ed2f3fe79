/* docs/configuration.md's summary of the variables and the library's table
 * of them agree: the same names, in the same order, with the same
 * defaults, secrecy, owners and descriptions. On a mismatch the test prints
 * the summary as the table gives it, ready to paste. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

#define BEGIN "<!-- variables: begin -->"
#define END   "<!-- variables: end -->"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The summary as the table gives it. */
static char *expected(void)
{
    size_t n = 0;
    const wb__var_def *v = wb__config_vars(&n);
    size_t cap = 256 + n * 256, len = 0;
    char *out = malloc(cap);
    len += (size_t)snprintf(out + len, cap - len,
                            "| variable | default | secret | used by | what it is |\n"
                            "|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        char def[128];
        if (v[i].def)
            snprintf(def, sizeof def, "`%s`", v[i].def);
        else
            snprintf(def, sizeof def, "—");
        len += (size_t)snprintf(out + len, cap - len, "| `%s` | %s | %s | %s | %s |\n", v[i].name,
                                def, v[i].secret ? "yes" : "no", v[i].owner, v[i].description);
    }
    return out;
}

Test(config_docs, the_summary_is_the_table)
{
    const char *root = getenv("WB_SOURCE_ROOT");
    cr_assert_not_null(root, "WB_SOURCE_ROOT is not set: run through meson test");
    char path[512];
    snprintf(path, sizeof path, "%s/docs/configuration.md", root);
    char *doc = slurp(path);
    char *b = strstr(doc, BEGIN), *e = b ? strstr(b, END) : NULL;
    cr_assert(b && e, "%s has no " BEGIN " ... " END " section", path);
    b += strlen(BEGIN);
    while (*b == '\n')
        b++;
    *e = '\0';
    char *want = expected();
    cr_assert_str_eq(b, want,
                     "docs/configuration.md's summary differs from the table in "
                     "src/config/config.c; as the table gives it:\n%s",
                     want);
    free(want);
    free(doc);
}

Test(config_docs, every_variable_has_a_section_or_a_row_of_its_own)
{
    const char *root = getenv("WB_SOURCE_ROOT");
    cr_assert_not_null(root);
    char path[512];
    snprintf(path, sizeof path, "%s/docs/configuration.md", root);
    char *doc = slurp(path);
    /* the detailed reference follows the summary */
    char *detail = strstr(doc, END);
    cr_assert_not_null(detail);
    size_t n = 0;
    const wb__var_def *v = wb__config_vars(&n);
    for (size_t i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "`%s`", v[i].name);
        bool sqs = strncmp(v[i].name, "MESSAGE_QUEUE_SQS_", 18) == 0;
        cr_assert(strstr(detail, name) || (sqs && strstr(detail, "`MESSAGE_QUEUE_SQS_*_URL`")),
                  "%s is in the table but not described in %s", v[i].name, path);
    }
    free(doc);
}
