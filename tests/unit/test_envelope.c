/* The iot queue's envelope: encoding as IoT Core's topic rule does, and
 * decoding with a clear refusal of anything else. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>

#include "workerbus/workerbus.h"

#define POOL   "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define WORKER "01BX5ZZKBKACTAV9WEVGEMMVRZ"

static char *b64(const char *s)
{
    static char out[1024];
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
    return out;
}

Test(envelope, encode_adds_the_three_fields_and_base64s_the_object)
{
    const char *p = "{\"run\":\"r1\",\"n\":3,\"nested\":{\"a\":[1,2]}}";
    char *body = NULL, *d = NULL;
    size_t n = 0;
    cr_assert_eq(wb_envelope_encode(p, strlen(p), POOL, WORKER, 1700000000123u, &body, &n, &d),
                 WB_OK);
    cr_assert_eq(n, strlen(body));
    unsigned char raw[1024];
    int m = EVP_DecodeBlock(raw, (unsigned char *)body, (int)n);
    cr_assert_gt(m, 0);
    raw[m] = '\0'; /* the padding decodes to NULs too: strlen stops at the first */
    json_t *j = json_loads((char *)raw, 0, NULL);
    cr_assert(json_is_object(j), "%s", raw);
    cr_assert_eq(json_object_size(j), 6);
    cr_assert_eq(json_integer_value(json_object_get(j, "timestamp")), 1700000000123);
    cr_assert_str_eq(json_string_value(json_object_get(j, "worker_pool_ulid")), POOL);
    cr_assert_str_eq(json_string_value(json_object_get(j, "worker_ulid")), WORKER);
    cr_assert_str_eq(json_string_value(json_object_get(j, "run")), "r1");
    json_decref(j);
    wb_free(body);
}

Test(envelope, the_added_fields_replace_the_workers_own)
{
    const char *p = "{\"timestamp\":\"no\",\"worker_ulid\":\"spoofed\",\"x\":1}";
    char *body = NULL;
    size_t n = 0;
    cr_assert_eq(wb_envelope_encode(p, strlen(p), POOL, WORKER, 5, &body, &n, NULL), WB_OK);
    wb_envelope e = WB_ENVELOPE_INIT;
    cr_assert_eq(wb_envelope_decode(body, n, &e, NULL), WB_OK);
    cr_assert_str_eq(e.worker, WORKER);
    cr_assert_eq(e.timestamp_ms, 5);
    cr_assert_str_eq(e.payload, "{\"x\":1}");
    wb_envelope_clear(&e);
    wb_free(body);
}

Test(envelope, round_trip_keeps_the_payload)
{
    const char *p = "{\"s\":\"caf\\u00e9 \\u0000 \\\"q\\\"\",\"f\":1.5,\"t\":true,\"z\":null}";
    char *body = NULL;
    size_t n = 0;
    cr_assert_eq(wb_envelope_encode(p, strlen(p), POOL, WORKER, 42, &body, &n, NULL), WB_OK);
    wb_envelope e = WB_ENVELOPE_INIT;
    char *d = NULL;
    cr_assert_eq(wb_envelope_decode(body, n, &e, &d), WB_OK, "%s", d ? d : "");
    cr_assert_str_eq(e.pool, POOL);
    json_t *a = json_loads(p, JSON_ALLOW_NUL, NULL),
           *b = json_loads(e.payload, JSON_ALLOW_NUL, NULL);
    cr_assert(json_equal(a, b), "%s", e.payload);
    json_decref(a);
    json_decref(b);
    wb_envelope_clear(&e);
    wb_free(body);
}

Test(envelope, encode_refuses_what_is_not_an_object)
{
    static const char *const bad[][2] = {{"[1]", "is an array"},     {"\"s\"", "is a string"},
                                         {"7", "is a number"},       {"null", "is null"},
                                         {"{\"a\":", "is not JSON"}, {"", "is not JSON"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *body = NULL, *d = NULL;
        cr_assert_eq(
            wb_envelope_encode(bad[i][0], strlen(bad[i][0]), POOL, WORKER, 1, &body, NULL, &d),
            WB_ERR_INVALID_ARGUMENT, "%s", bad[i][0]);
        cr_assert_null(body);
        cr_assert(d && strstr(d, bad[i][1]) && strstr(d, "must be a JSON object"), "%s: %s",
                  bad[i][0], d);
        wb_free(d);
    }
    char *body = NULL, *d = NULL;
    cr_assert_eq(wb_envelope_encode("{}", 2, "not-a-ulid", WORKER, 1, &body, NULL, &d),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "ULIDs"), "%s", d);
    wb_free(d);
}

Test(envelope, decode_says_which_part_is_wrong)
{
    static const char *const cases[][2] = {
        {"abc", "is not a positive multiple of 4"},
        {"ab$d", "byte 2 is 0x24"},
        {"ab=d", "byte 2 is 0x3d"},
        {NULL, "the decoded body is an array"},
        {NULL, "no \"timestamp\""},
        {NULL, "\"worker_pool_ulid\" is missing"},
        {NULL, "\"worker_ulid\" is missing"},
    };
    const char *json[] = {
        NULL,
        NULL,
        NULL,
        "[1]",
        "{\"worker_pool_ulid\":\"" POOL "\",\"worker_ulid\":\"" WORKER "\"}",
        "{\"timestamp\":1,\"worker_pool_ulid\":\"x\",\"worker_ulid\":\"" WORKER "\"}",
        "{\"timestamp\":1,\"worker_pool_ulid\":\"" POOL "\"}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *body = cases[i][0] ? cases[i][0] : b64(json[i]);
        wb_envelope e = WB_ENVELOPE_INIT;
        char *d = NULL;
        cr_assert_eq(wb_envelope_decode(body, strlen(body), &e, &d), WB_ERR_INVALID_ARGUMENT,
                     "case %zu", i);
        cr_assert(d && strstr(d, cases[i][1]), "case %zu: %s", i, d);
        cr_assert_null(e.payload);
        wb_free(d);
    }
}

Test(envelope, decode_reads_what_iot_core_writes)
{
    /* a body as IoT Core's rule would write it: fields in any order */
    const char *json = "{\"worker_ulid\":\"" WORKER "\",\"state\":\"running\",\"timestamp\":"
                       "1732270000000,\"worker_pool_ulid\":\"" POOL "\"}";
    wb_envelope e = WB_ENVELOPE_INIT;
    const char *body = b64(json);
    cr_assert_eq(wb_envelope_decode(body, strlen(body), &e, NULL), WB_OK);
    cr_assert_eq(e.timestamp_ms, 1732270000000u);
    cr_assert_str_eq(e.payload, "{\"state\":\"running\"}");
    cr_assert_eq(e.payload_len, strlen(e.payload));
    wb_envelope_clear(&e);
}
