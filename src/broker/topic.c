/* Worker topics: <ns>/readonly|writeonly/<pool>/<worker>. */
#include <string.h>

#include "wb_internal.h"

WB_API const char *wb_topic_dir_name(wb_topic_dir dir)
{
    switch (dir) {
    case WB_TOPIC_READONLY:
        return "readonly";
    case WB_TOPIC_WRITEONLY:
        return "writeonly";
    }
    return NULL;
}

WB_API wb_err wb_namespace_check(const char *ns, const char **why)
{
    const char *reason = NULL;
    wb_err err = WB_ERR_INVALID_ARGUMENT;
    size_t n = ns ? strlen(ns) : 0;
    size_t slashes = 0;
    if (!ns || n == 0) {
        reason = "the namespace is empty";
        goto out;
    }
    if (!wb__utf8_valid(ns, n)) {
        reason = "the namespace is not valid UTF-8";
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ns[i];
        if (c < 0x20 || c == 0x7f) {
            reason = "the namespace holds a control character";
            goto out;
        }
        if (c == 0xC2 && i + 1 < n && (unsigned char)ns[i + 1] <= 0x9F) {
            reason = "the namespace holds a control character (U+0080-U+009F)";
            goto out;
        }
        if (c == '+' || c == '#') {
            reason = "the namespace holds an MQTT wildcard ('+' or '#')";
            goto out;
        }
        if (c == '/') {
            slashes++;
            if (i == 0) {
                reason = "the namespace starts with '/'";
                goto out;
            }
            if (i == n - 1) {
                reason = "the namespace ends with '/'";
                goto out;
            }
            if (ns[i + 1] == '/') {
                reason = "the namespace has an empty level ('//')";
                goto out;
            }
        }
    }
    if (ns[0] == '$') {
        reason = "the namespace starts with '$' (reserved for broker topics such as $SYS and $aws)";
        goto out;
    }
    if (n > WB_NAMESPACE_MAX_BYTES) {
        reason = "the namespace is too long: worker topics would exceed IoT Core's 256 bytes";
        err = WB_ERR_TOO_LARGE;
        goto out;
    }
    if (slashes > WB_NAMESPACE_MAX_SLASHES) {
        reason = "the namespace has too many '/': worker topics would exceed IoT Core's 7 slashes";
        err = WB_ERR_TOO_LARGE;
        goto out;
    }
    err = WB_OK;
out:
    if (why)
        *why = reason;
    return err;
}

WB_API wb_err wb_topic_build(char *buf, size_t size, const char *ns, wb_topic_dir dir,
                             const char *pool, const char *worker, size_t *len)
{
    if (!buf || size == 0)
        return WB_ERR_INVALID_ARGUMENT;
    buf[0] = '\0';
    const char *d = wb_topic_dir_name(dir);
    char p[WB_ULID_STR_SIZE], w[WB_ULID_STR_SIZE];
    if (!d || wb_ulid_canonical(pool, p) || wb_ulid_canonical(worker, w))
        return WB_ERR_INVALID_ARGUMENT;
    wb_err err = wb_namespace_check(ns, NULL);
    if (err)
        return err;
    size_t nl = strlen(ns), dl = strlen(d);
    size_t total = nl + 1 + dl + 1 + WB_ULID_LEN + 1 + WB_ULID_LEN;
    if (total + 1 > size)
        return WB_ERR_TOO_LARGE;
    char *o = buf;
    memcpy(o, ns, nl), o += nl, *o++ = '/';
    memcpy(o, d, dl), o += dl, *o++ = '/';
    memcpy(o, p, WB_ULID_LEN), o += WB_ULID_LEN, *o++ = '/';
    memcpy(o, w, WB_ULID_LEN), o += WB_ULID_LEN;
    *o = '\0';
    if (len)
        *len = total;
    return WB_OK;
}

WB_API wb_err wb_topic_parse(const char *topic, const char *ns, wb_topic_parts *out)
{
    if (!topic || !ns || !out || wb_namespace_check(ns, NULL) != WB_OK)
        return WB_ERR_INVALID_ARGUMENT;
    size_t nl = strlen(ns);
    if (strncmp(topic, ns, nl) != 0 || topic[nl] != '/')
        return WB_ERR_INVALID_ARGUMENT;
    const char *p = topic + nl + 1;
    wb_topic_dir dir;
    if (strncmp(p, "readonly/", 9) == 0) {
        dir = WB_TOPIC_READONLY;
        p += 9;
    } else if (strncmp(p, "writeonly/", 10) == 0) {
        dir = WB_TOPIC_WRITEONLY;
        p += 10;
    } else {
        return WB_ERR_INVALID_ARGUMENT;
    }
    char a[WB_ULID_STR_SIZE], b[WB_ULID_STR_SIZE];
    if (strnlen(p, WB_ULID_LEN + 1) < WB_ULID_LEN || p[WB_ULID_LEN] != '/')
        return WB_ERR_INVALID_ARGUMENT;
    memcpy(a, p, WB_ULID_LEN);
    a[WB_ULID_LEN] = '\0';
    p += WB_ULID_LEN + 1;
    if (strlen(p) != WB_ULID_LEN)
        return WB_ERR_INVALID_ARGUMENT;
    memcpy(b, p, WB_ULID_LEN + 1);
    wb_topic_parts parts;
    parts.dir = dir;
    if (wb_ulid_canonical(a, parts.pool) || wb_ulid_canonical(b, parts.worker))
        return WB_ERR_INVALID_ARGUMENT;
    *out = parts;
    return WB_OK;
}

WB_API wb_err wb_topic_check_iot_limits(const char *topic)
{
    if (!topic || !*topic)
        return WB_ERR_INVALID_ARGUMENT;
    size_t n = 0, slashes = 0;
    for (const char *p = topic; *p; p++, n++) {
        if (*p == '+' || *p == '#')
            return WB_ERR_INVALID_ARGUMENT;
        if (*p == '/')
            slashes++;
    }
    if (!wb__utf8_valid(topic, n))
        return WB_ERR_INVALID_ARGUMENT;
    if (n > WB_IOT_TOPIC_MAX_BYTES || slashes > WB_IOT_TOPIC_MAX_SLASHES)
        return WB_ERR_TOO_LARGE;
    return WB_OK;
}
