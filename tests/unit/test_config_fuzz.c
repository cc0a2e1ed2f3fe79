/* Random and mutated values never crash (this suite runs under ASan and
 * UBSan) and never break the loader's invariants. The seed is printed on
 * failure; WB_FUZZ_SEED and WB_FUZZ_ITERATIONS override the defaults. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "helpers.h"
#include "wb_internal.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: small, fast and reproducible */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}

static uint64_t seed_from_env(void)
{
    const char *s = getenv("WB_FUZZ_SEED");
    return s ? strtoull(s, NULL, 0) : 0x5eed5eed1234ULL;
}

static int iterations(int dflt)
{
    const char *s = getenv("WB_FUZZ_ITERATIONS");
    return s ? atoi(s) : dflt;
}

static const char *const fragments[] = {
    ":",
    "/",
    "//",
    "[",
    "]",
    "@",
    "%",
    "%zz",
    "'",
    "\"",
    "=",
    "?",
    "#",
    "+",
    "$",
    "\\",
    " ",
    "\t",
    "\n",
    "\xff",
    "\xc3",
    "\xc2\x85",
    "::1",
    ":1983",
    ":0",
    ":65536",
    "tls://",
    "https://",
    ".fifo",
    ".amazonaws.com",
    ".amazonaws.com.cn",
    "-ats.iot.",
    "cn-north-1",
    "us-gov-west-1",
    "password=",
    "sslmode=",
    "123456789012",
    "\xe2\x80\xae",
    "..",
    "-",
};

/* Mutates s (NUL-terminated, no NUL inside) in place into out. */
static void mutate(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    int rounds = 1 + (int)below(4);
    for (int r = 0; r < rounds; r++) {
        n = strlen(out);
        switch (below(6)) {
        case 0: /* flip a byte to any non-NUL byte */
            if (n)
                out[below(n)] = (char)(1 + below(255));
            break;
        case 1: { /* insert a fragment */
            const char *f = fragments[below(sizeof fragments / sizeof fragments[0])];
            size_t fl = strlen(f), at = below(n + 1);
            if (n + fl < cap) {
                memmove(out + at + fl, out + at, n - at + 1);
                memcpy(out + at, f, fl);
            }
            break;
        }
        case 2: { /* delete a range */
            if (!n)
                break;
            size_t at = below(n), len = 1 + below(n - at);
            memmove(out + at, out + at + len, n - at - len + 1);
            break;
        }
        case 3: { /* duplicate a range */
            if (!n)
                break;
            size_t at = below(n), len = 1 + below(n - at);
            if (n + len < cap) {
                memmove(out + at + len, out + at, n - at + 1);
            }
            break;
        }
        case 4: /* truncate */
            out[below(n + 1)] = '\0';
            break;
        case 5: { /* replace with random bytes */
            size_t len = below(cap < 400 ? cap - 1 : 400);
            for (size_t i = 0; i < len; i++)
                out[i] = (char)(1 + below(255));
            out[len] = '\0';
            break;
        }
        }
    }
}

static void check_invariants(wb_err err, wb_config *cfg, wb_config_report *rep, uint64_t seed,
                             int iter)
{
    cr_assert(err == WB_OK || err == WB_ERR_CONFIG, "seed %#llx iter %d: %s",
              (unsigned long long)seed, iter, wb_err_name(err));
    cr_assert_not_null(rep);
    size_t ne = wb_config_report_count(rep, WB_SEVERITY_ERROR);
    cr_assert_eq(err == WB_OK, ne == 0);
    cr_assert_eq(err == WB_OK, cfg != NULL);
    for (int sev = 0; sev < 2; sev++) {
        for (size_t i = 0; i < wb_config_report_count(rep, (wb_severity)sev); i++) {
            const wb_config_issue *is = wb_config_report_issue(rep, (wb_severity)sev, i);
            cr_assert_not_null(is->variable);
            cr_assert_not_null(is->message);
            if (is->value)
                cr_assert(wb__utf8_valid(is->value, strlen(is->value)));
        }
    }
    char *json = wb_config_report_format(rep, WB_REPORT_JSON);
    cr_assert_not_null(json, "seed %#llx iter %d: JSON formatting failed", (unsigned long long)seed,
                       iter);
    json_t *root = json_loads(json, 0, NULL);
    cr_assert_not_null(root, "seed %#llx iter %d: invalid JSON", (unsigned long long)seed, iter);
    json_decref(root);
    wb_free(json);
    char *text = wb_config_report_format(rep, WB_REPORT_TEXT);
    cr_assert_not_null(text);
    wb_free(text);
    if (cfg) {
        unsigned port = wb_config_broker_port(cfg);
        cr_assert(port >= 1 && port <= 65535);
        cr_assert(wb_config_broker_type(cfg) == WB_BROKER_IOTCORE || port != 1983);
        cr_assert_eq(wb_namespace_check(wb_config_namespace(cfg), NULL), WB_OK);
        cr_assert_not_null(wb_config_broker_host(cfg));
        cr_assert(!(wb_config_broker_type(cfg) == WB_BROKER_IOTCORE &&
                    wb_config_queue_type(cfg) == WB_QUEUE_POSTGRES));
    }
}

static void fuzz_base(const char *const *base)
{
    uint64_t seed = seed_from_env();
    rng_state = seed | 1;
    int n = iterations(1500);
    size_t nbase = 0;
    while (base[nbase])
        nbase++;
    char bufs[4][600];
    for (int it = 0; it < n; it++) {
        const char *list[40];
        size_t k = 0;
        for (size_t i = 0; i < nbase; i++)
            list[k++] = base[i];
        /* mutate 1-3 entries (value and sometimes the name) */
        int m = 1 + (int)below(3);
        for (int j = 0; j < m && j < 4; j++) {
            size_t which = below(nbase);
            mutate(base[which], bufs[j], sizeof bufs[j]);
            if (!strchr(bufs[j], '='))
                continue; /* no longer KEY=VALUE: the loader skips it like environ */
            list[which] = bufs[j];
        }
        list[k] = NULL;
        wb_config_load_opts opts = WB_CONFIG_LOAD_OPTS_INIT;
        opts.env = list;
        wb_config *cfg = NULL;
        wb_config_report *rep = NULL;
        wb_err err = wb_config_load(&opts, &cfg, &rep);
        check_invariants(err, cfg, rep, seed, it);
        wb_config_free(cfg);
        wb_config_report_free(rep);
    }
}

Test(fuzz, mutated_builtin, .timeout = 300)
{
    fuzz_base(wbt_base_builtin);
}

Test(fuzz, mutated_iotcore, .timeout = 300)
{
    fuzz_base(wbt_base_iotcore);
}

Test(fuzz, mutated_builtin_sqs, .timeout = 300)
{
    fuzz_base(wbt_base_builtin_sqs);
}

static void ignore_problem(void *ctx, unsigned line, const char *m, const char *h)
{
    (void)line, (void)m, (void)h;
    ++*(int *)ctx;
}

Test(fuzz, envfile_text, .timeout = 300)
{
    uint64_t seed = seed_from_env();
    rng_state = seed | 1;
    static const char sample[] = "# c\nexport A=1\nB=\"x y\"\nC='z'\r\nD=\\\"\nE=a=b\n";
    char text[800];
    for (int it = 0; it < iterations(1500) * 2; it++) {
        mutate(sample, text, sizeof text);
        size_t len = strlen(text);
        /* also NUL bytes, which only a file can carry */
        if (len && below(4) == 0)
            text[below(len)] = '\0';
        wb__kv_list kv = {0};
        int problems = 0;
        cr_assert_eq(wb__envfile_parse(text, len, &kv, ignore_problem, &problems), WB_OK);
        for (size_t i = 0; i < kv.count; i++) {
            const char *k = kv.items[i].key;
            cr_assert(k[0] == '_' || (k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z'),
                      "seed %#llx: bad key \"%s\"", (unsigned long long)seed, k);
            cr_assert_eq(
                strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"),
                strlen(k));
        }
        wb__kv_list_free(&kv);
    }
}

Test(fuzz, topics_and_ulids, .timeout = 120)
{
    uint64_t seed = seed_from_env();
    rng_state = seed | 1;
    char buf[400], topic[WB_TOPIC_BUF_SIZE];
    for (int it = 0; it < iterations(1500) * 4; it++) {
        mutate("spacelift/readonly/01ARZ3NDEKTSV4RRFFQ69G5FAV/01BX5ZZKBKACTAV9WEVGEMMVRZ", buf,
               sizeof buf);
        wb_topic_parts p;
        if (wb_topic_parse(buf, "spacelift", &p) == WB_OK) {
            /* whatever parses rebuilds to the same topic, up to case */
            cr_assert_eq(
                wb_topic_build(topic, sizeof topic, "spacelift", p.dir, p.pool, p.worker, NULL),
                WB_OK);
            cr_assert_eq(strcasecmp(topic, buf), 0, "seed %#llx: %s vs %s",
                         (unsigned long long)seed, topic, buf);
        }
        wb_topic_check_iot_limits(buf);
        wb_namespace_check(buf, NULL);
        wb_ulid u;
        if (wb_ulid_parse(buf, &u) == WB_OK) {
            char out[WB_ULID_STR_SIZE];
            wb_ulid_format(&u, out);
            cr_assert_eq(strcasecmp(out, buf), 0);
        }
    }
}
