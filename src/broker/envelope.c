/* The iot queue's envelope: what IoT Core's topic rule makes of a worker
 * message, written by the bundled broker's topic rule and read by servers. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

static const char *const added[] = {"timestamp", "worker_pool_ulid", "worker_ulid"};

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    case JSON_OBJECT:
        break;
    }
    return "an object";
}

/* The payload as a JSON object, or NULL with *detail set. */
static json_t *parse_object(const void *payload, size_t len, const char *what, char **detail)
{
    json_error_t je;
    json_t *j = json_loadb(payload, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        *detail = wb__asprintf("%s is not JSON (%s at byte %d); it must be a JSON object", what,
                               je.text, je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        *detail = wb__asprintf("%s is %s; it must be a JSON object", what, json_kind(j));
        json_decref(j);
        return NULL;
    }
    return j;
}

WB_API wb_err wb_envelope_encode(const void *payload, size_t len, const char *pool,
                                 const char *worker, uint64_t timestamp_ms, char **body,
                                 size_t *body_len, char **detail)
{
    char *d = NULL;
    char cp[WB_ULID_STR_SIZE], cw[WB_ULID_STR_SIZE];
    if (!body || (!payload && len))
        return WB_ERR_INVALID_ARGUMENT;
    *body = NULL;
    if (!pool || !worker || wb_ulid_canonical(pool, cp) != WB_OK ||
        wb_ulid_canonical(worker, cw) != WB_OK) {
        if (detail)
            *detail = wb__strdup("the pool and the worker must be ULIDs");
        return WB_ERR_INVALID_ARGUMENT;
    }
    json_t *j = parse_object(payload ? payload : "", len, "the payload", &d);
    if (!j) {
        if (detail)
            *detail = d;
        else
            free(d);
        return d ? WB_ERR_INVALID_ARGUMENT : WB_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < WB__ARRAY_LEN(added); i++)
        json_object_del(j, added[i]);
    wb_err err = WB_ERR_NO_MEMORY;
    if (json_object_set_new(j, added[0], json_integer((json_int_t)timestamp_ms)) == 0 &&
        json_object_set_new(j, added[1], json_string(cp)) == 0 &&
        json_object_set_new(j, added[2], json_string(cw)) == 0) {
        char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) {
            size_t n = strlen(text);
            char *b = malloc(4 * ((n + 2) / 3) + 1);
            if (b) {
                int m = EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)text, (int)n);
                *body = b;
                if (body_len)
                    *body_len = (size_t)m;
                err = WB_OK;
            }
            free(text);
        }
    }
    json_decref(j);
    return err;
}

WB_API void wb_envelope_clear(wb_envelope *env)
{
    if (!env)
        return;
    free(env->payload);
    memset(env, 0, sizeof *env);
}

static wb_err refuse(char **detail, char *msg)
{
    if (detail)
        *detail = msg;
    else
        free(msg);
    return WB_ERR_INVALID_ARGUMENT;
}

WB_API wb_err wb_envelope_decode(const void *body, size_t len, wb_envelope *out, char **detail)
{
    if (!out || (!body && len))
        return WB_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    const unsigned char *s = body;
    /* base64 of the standard alphabet, padded; whitespace is not accepted */
    if (len == 0 || len % 4 != 0)
        return refuse(detail, wb__asprintf("the body is not base64: its length, %zu, is not a "
                                           "positive multiple of 4",
                                           len));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        bool pad = c == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '=');
        if (!pad && !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') &&
            c != '+' && c != '/')
            return refuse(detail, wb__asprintf("the body is not base64: byte %zu is 0x%02x", i, c));
    }
    unsigned char *raw = malloc(len / 4 * 3 + 1);
    if (!raw)
        return WB_ERR_NO_MEMORY;
    int n = EVP_DecodeBlock(raw, s, (int)len);
    if (n < 0) {
        free(raw);
        return refuse(detail, wb__strdup("the body is not base64"));
    }
    n -= (s[len - 1] == '=') + (s[len - 2] == '='); /* DecodeBlock counts padding */
    char *d = NULL;
    json_t *j = parse_object(raw, (size_t)n, "the decoded body", &d);
    free(raw);
    if (!j)
        return d ? refuse(detail, d) : WB_ERR_NO_MEMORY;
    wb_err err = WB_OK;
    json_t *ts = json_object_get(j, added[0]);
    const char *pool = json_string_value(json_object_get(j, added[1]));
    const char *worker = json_string_value(json_object_get(j, added[2]));
    if (!json_is_integer(ts) || json_integer_value(ts) < 0)
        err = refuse(detail, wb__strdup("the envelope has no \"timestamp\" of epoch "
                                        "milliseconds"));
    else if (!pool || wb_ulid_canonical(pool, out->pool) != WB_OK)
        err = refuse(detail, wb__strdup("the envelope's \"worker_pool_ulid\" is missing or not "
                                        "a ULID"));
    else if (!worker || wb_ulid_canonical(worker, out->worker) != WB_OK)
        err = refuse(detail, wb__strdup("the envelope's \"worker_ulid\" is missing or not a "
                                        "ULID"));
    if (!err) {
        out->timestamp_ms = (uint64_t)json_integer_value(ts);
        for (size_t i = 0; i < WB__ARRAY_LEN(added); i++)
            json_object_del(j, added[i]);
        out->payload = json_dumps(j, JSON_COMPACT);
        if (!out->payload)
            err = WB_ERR_NO_MEMORY;
        else
            out->payload_len = strlen(out->payload);
    }
    json_decref(j);
    if (err) {
        wb_envelope_clear(out);
    }
    return err;
}
