/* ULIDs and worker topics. */
#include <criterion/criterion.h>
#include <string.h>

#include "workerbus/workerbus.h"

#define POOL   "01ARZ3NDEKTSV4RRFFQ69G5FAV"
#define WORKER "01BX5ZZKBKACTAV9WEVGEMMVRZ"

Test(ulid, parse_and_format_round_trip)
{
    wb_ulid u;
    char out[WB_ULID_STR_SIZE];
    cr_assert_eq(wb_ulid_parse(POOL, &u), WB_OK);
    wb_ulid_format(&u, out);
    cr_assert_str_eq(out, POOL);
}

Test(ulid, known_values)
{
    wb_ulid u;
    char out[WB_ULID_STR_SIZE];
    cr_assert_eq(wb_ulid_parse("00000000000000000000000000", &u), WB_OK);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(u.bytes[i], 0);
    cr_assert_eq(wb_ulid_parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", &u), WB_OK);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(u.bytes[i], 0xff);
    /* value 1 and value 32 */
    cr_assert_eq(wb_ulid_parse("00000000000000000000000001", &u), WB_OK);
    cr_assert_eq(u.bytes[15], 1);
    cr_assert_eq(wb_ulid_parse("00000000000000000000000010", &u), WB_OK);
    cr_assert_eq(u.bytes[15], 32);
    cr_assert_eq(u.bytes[14], 0);
    /* timestamp part: 48 bits big-endian, 10 characters */
    cr_assert_eq(wb_ulid_parse("01ARZ3NDEK0000000000000000", &u), WB_OK);
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | u.bytes[i];
    cr_assert_eq(ms, 1469922850259ull); /* 01ARZ3NDEK, decoded independently */
    wb_ulid_format(&u, out);
    cr_assert_str_eq(out, "01ARZ3NDEK0000000000000000");
}

Test(ulid, case_insensitive_input_canonical_output)
{
    char out[WB_ULID_STR_SIZE];
    cr_assert_eq(wb_ulid_canonical("01arz3ndektsv4rrffq69g5fav", out), WB_OK);
    cr_assert_str_eq(out, POOL);
    cr_assert_eq(wb_ulid_canonical("01ArZ3nDeKtSv4RrFfQ69G5fAv", out), WB_OK);
    cr_assert_str_eq(out, POOL);
}

Test(ulid, refused)
{
    wb_ulid u;
    const char *bad[] = {
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",   /* 25 */
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX", /* 27 */
        "81ARZ3NDEKTSV4RRFFQ69G5FAV",  /* overflows 128 bits */
        "Z1ARZ3NDEKTSV4RRFFQ69G5FAV",
        "01ARZ3NDEKTSV4RRFFQ69G5FAI", /* I */
        "01ARZ3NDEKTSV4RRFFQ69G5FAL", /* L */
        "01ARZ3NDEKTSV4RRFFQ69G5FAO", /* O */
        "01ARZ3NDEKTSV4RRFFQ69G5FAU", /* U */
        "01ARZ3NDEKTSV4RRFFQ69G5FA-",
        "01ARZ3NDEKTSV4RRFFQ69G5FA\xc3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(wb_ulid_parse(bad[i], &u), WB_ERR_INVALID_ARGUMENT, "accepted \"%s\"", bad[i]);
    cr_assert_eq(wb_ulid_parse(NULL, &u), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_ulid_parse(POOL, NULL), WB_ERR_INVALID_ARGUMENT);
    /* I, L, O, U refused in lower case too */
    cr_assert_eq(wb_ulid_parse("01arz3ndektsv4rrffq69g5fal", &u), WB_ERR_INVALID_ARGUMENT);
}

Test(ulid, new_is_valid_and_time_ordered)
{
    wb_ulid a, b;
    char sa[WB_ULID_STR_SIZE], sb[WB_ULID_STR_SIZE];
    cr_assert_eq(wb_ulid_new(&a), WB_OK);
    cr_assert_eq(wb_ulid_new(&b), WB_OK);
    wb_ulid_format(&a, sa);
    wb_ulid_format(&b, sb);
    cr_assert_str_neq(sa, sb);
    wb_ulid back;
    cr_assert_eq(wb_ulid_parse(sa, &back), WB_OK);
    cr_assert_eq(memcmp(&back, &a, sizeof a), 0);
    cr_assert_leq(memcmp(a.bytes, b.bytes, 6), 0, "timestamps go forward");
    cr_assert_leq(sa[0], '7');
}

Test(topic, build_both_directions)
{
    char buf[WB_TOPIC_BUF_SIZE];
    size_t len = 0;
    cr_assert_eq(wb_topic_build(buf, sizeof buf, "spacelift", WB_TOPIC_READONLY,
                                "01arz3ndektsv4rrffq69g5fav", WORKER, &len),
                 WB_OK);
    cr_assert_str_eq(buf, "spacelift/readonly/" POOL "/" WORKER);
    cr_assert_eq(len, strlen(buf));
    cr_assert_eq(wb_topic_build(buf, sizeof buf, "a/b", WB_TOPIC_WRITEONLY, POOL, WORKER, NULL),
                 WB_OK);
    cr_assert_str_eq(buf, "a/b/writeonly/" POOL "/" WORKER);
}

Test(topic, build_refuses)
{
    char buf[WB_TOPIC_BUF_SIZE];
    cr_assert_eq(wb_topic_build(buf, sizeof buf, "ns", WB_TOPIC_READONLY, "nope", WORKER, NULL),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_build(buf, sizeof buf, "ns/+", WB_TOPIC_READONLY, POOL, WORKER, NULL),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_build(buf, sizeof buf, "ns", (wb_topic_dir)7, POOL, WORKER, NULL),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_build(buf, 20, "ns", WB_TOPIC_READONLY, POOL, WORKER, NULL),
                 WB_ERR_TOO_LARGE);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(
        wb_topic_build(buf, sizeof buf, "a/b/c/d/e/f", WB_TOPIC_READONLY, POOL, WORKER, NULL),
        WB_ERR_TOO_LARGE);
}

Test(topic, parse)
{
    wb_topic_parts p;
    cr_assert_eq(
        wb_topic_parse("spacelift/writeonly/01arz3ndektsv4rrffq69g5fav/" WORKER, "spacelift", &p),
        WB_OK);
    cr_assert_eq(p.dir, WB_TOPIC_WRITEONLY);
    cr_assert_str_eq(p.pool, POOL);
    cr_assert_str_eq(p.worker, WORKER);
    cr_assert_eq(wb_topic_parse("a/b/readonly/" POOL "/" WORKER, "a/b", &p), WB_OK);
    cr_assert_eq(p.dir, WB_TOPIC_READONLY);
    const char *bad[] = {
        "spacelift/readonly/" POOL,
        "spacelift/readonly/" POOL "/" WORKER "/x",
        "spacelift/readwrite/" POOL "/" WORKER,
        "other/readonly/" POOL "/" WORKER,
        "spaceliftx/readonly/" POOL "/" WORKER,
        "spacelift/readonly/" POOL "x/" WORKER,
        "spacelift/readonly/" POOL "/" WORKER "x",
        "spacelift/readonly/" POOL "/+",
        "spacelift//" POOL "/" WORKER,
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(wb_topic_parse(bad[i], "spacelift", &p), WB_ERR_INVALID_ARGUMENT, "%s",
                     bad[i]);
}

Test(topic, iot_limits)
{
    char t[300];
    memset(t, 'a', 256);
    t[256] = '\0';
    cr_assert_eq(wb_topic_check_iot_limits(t), WB_OK);
    t[256] = 'a';
    t[257] = '\0';
    cr_assert_eq(wb_topic_check_iot_limits(t), WB_ERR_TOO_LARGE);
    cr_assert_eq(wb_topic_check_iot_limits("a/b/c/d/e/f/g/h"), WB_OK);              /* 7 slashes */
    cr_assert_eq(wb_topic_check_iot_limits("a/b/c/d/e/f/g/h/i"), WB_ERR_TOO_LARGE); /* 8 */
    cr_assert_eq(wb_topic_check_iot_limits("a/+/b"), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_check_iot_limits("a/#"), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_check_iot_limits(""), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_topic_check_iot_limits("a\xff"), WB_ERR_INVALID_ARGUMENT);
}

Test(topic, namespace_reasons)
{
    const char *why = NULL;
    cr_assert_eq(wb_namespace_check("spacelift", &why), WB_OK);
    cr_assert_null(why);
    cr_assert_eq(wb_namespace_check("", &why), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(why, "empty"));
    cr_assert_eq(wb_namespace_check(NULL, &why), WB_ERR_INVALID_ARGUMENT);
    cr_assert_eq(wb_namespace_check("$SYS", &why), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(why, "$"));
}

Test(errors, names_and_texts)
{
    for (int e = 0; e < WB_ERR__COUNT; e++) {
        cr_assert_not_null(wb_strerror((wb_err)e));
        cr_assert_eq(strncmp(wb_err_name((wb_err)e), "WB_", 3), 0);
    }
    cr_assert_str_eq(wb_strerror((wb_err)999), "unknown error");
    cr_assert_str_eq(wb_err_name((wb_err)-1), "WB_ERR_UNKNOWN");
    cr_assert_str_eq(wb_err_name(WB_ERR_CONFIG), "WB_ERR_CONFIG");
    cr_assert_str_eq(wb_version(), WB_VERSION_STRING);
}

Test(names, enums)
{
    cr_assert_str_eq(wb_broker_type_name(WB_BROKER_BUILTIN), "builtin");
    cr_assert_str_eq(wb_queue_type_name(WB_QUEUE_POSTGRES), "postgres");
    cr_assert_str_eq(wb_log_level_name(WB_LOG_WARN), "warn");
    cr_assert_str_eq(wb_logical_queue_name(WB_LQ_DLQ_FIFO), "dlq.fifo");
    cr_assert_str_eq(wb_logical_queue_variable(WB_LQ_ASYNC_JOBS), "MESSAGE_QUEUE_SQS_ASYNC_URL");
    cr_assert_str_eq(wb_logical_queue_variable(WB_LQ_ASYNC_JOBS_FIFO),
                     "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL");
    cr_assert(wb_logical_queue_is_fifo(WB_LQ_ASYNC_JOBS_FIFO));
    cr_assert_not(wb_logical_queue_is_fifo(WB_LQ_IOT));
    cr_assert_null(wb_logical_queue_name(WB_LQ__COUNT));
    cr_assert_null(wb_broker_type_name((wb_broker_type)5));
}
