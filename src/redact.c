/* Keeping secrets out of messages: passwords in libpq connection strings
 * and in URLs' userinfo. */
#include <string.h>
#include <strings.h>

#include "wb_internal.h"

typedef struct span {
    size_t off, len;
} span;

#define MAX_SPANS 8

static bool is_uri(const char *s, size_t n)
{
    return (n >= 13 && strncasecmp(s, "postgresql://", 13) == 0) ||
           (n >= 11 && strncasecmp(s, "postgres://", 11) == 0);
}

/* Finds the password of a URL's user-info ("scheme://user:PASSWORD@host").
 * Returns 1 and fills *out when there is one, else 0; *auth_end, if not
 * NULL, receives the end of the authority, the first byte of `stops`. */
static size_t url_userinfo_password(const char *s, size_t n, const char *stops, span *out,
                                    const char **auth_end)
{
    const char *end = s + n;
    const char *sep = memchr(s, ':', n);
    if (auth_end)
        *auth_end = end;
    if (!sep || end - sep < 3 || sep[1] != '/' || sep[2] != '/')
        return 0;
    const char *p = sep + 3, *ae = p;
    while (ae < end && !memchr(stops, *ae, strlen(stops)))
        ae++;
    if (auth_end)
        *auth_end = ae;
    const char *at = NULL;
    for (const char *q = p; q < ae; q++) {
        if (*q == '@')
            at = q;
    }
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (!colon || colon + 1 >= at)
        return 0;
    out->off = (size_t)(colon + 1 - s);
    out->len = (size_t)(at - colon - 1);
    return 1;
}

/* Finds the spans of password values in a libpq connection string. */
static size_t conninfo_password_spans(const char *s, size_t n, span *out)
{
    size_t count = 0;
    if (is_uri(s, n)) {
        const char *auth_end = NULL;
        /* libpq ends the authority only at '/': '?' and '#' may be in a password */
        count += url_userinfo_password(s, n, "/", out, &auth_end);
        const char *end = s + n;
        const char *q = memchr(auth_end, '?', (size_t)(end - auth_end));
        while (q && q < end && count < MAX_SPANS) {
            q++;
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *pe = amp ? amp : end;
            if ((size_t)(pe - q) > 9 && strncasecmp(q, "password=", 9) == 0) {
                out[count].off = (size_t)(q + 9 - s);
                out[count].len = (size_t)(pe - q - 9);
                count++;
            }
            q = amp;
        }
        return count;
    }
    /* key = value pairs, values optionally single-quoted with \ escapes */
    size_t i = 0;
    while (i < n && count < MAX_SPANS) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        size_t k0 = i;
        while (i < n && s[i] != '=' && s[i] != ' ' && s[i] != '\t')
            i++;
        size_t klen = i - k0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= n || s[i] != '=')
            break;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t v0 = i;
        if (i < n && s[i] == '\'') {
            i++;
            while (i < n && s[i] != '\'') {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                i++;
            }
            if (i < n)
                i++;
        } else {
            while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
                if (s[i] == '\\' && i + 1 < n)
                    i++;
                i++;
            }
        }
        if (klen == 8 && strncasecmp(s + k0, "password", 8) == 0 && i > v0) {
            out[count].off = v0;
            out[count].len = i - v0;
            count++;
        }
    }
    return count;
}

static void replace_spans(wb__buf *b, const char *s, size_t n, const span *spans, size_t count)
{
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (spans[i].off < at)
            continue;
        wb__buf_append(b, s + at, spans[i].off - at);
        wb__buf_puts(b, "****");
        at = spans[i].off + spans[i].len;
    }
    wb__buf_append(b, s + at, n - at);
}

void wb__redact_conninfo(wb__buf *out, const char *s, size_t n)
{
    span spans[MAX_SPANS];
    size_t count = conninfo_password_spans(s, n, spans);
    replace_spans(out, s, n, spans, count);
}

char *wb__conninfo_password(const char *s, size_t n)
{
    span spans[MAX_SPANS];
    size_t count = conninfo_password_spans(s, n, spans);
    if (count == 0)
        return NULL;
    const char *v = s + spans[0].off;
    size_t l = spans[0].len;
    if (l >= 2 && v[0] == '\'' && v[l - 1] == '\'') {
        v++;
        l -= 2;
    }
    return wb__strndup(v, l);
}

void wb__redact_url(wb__buf *out, const char *s, size_t n)
{
    span sp;
    size_t count = url_userinfo_password(s, n, "/?#", &sp, NULL);
    replace_spans(out, s, n, &sp, count);
}

char *wb__redact_in_quotes(const char *msg, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    wb__buf b = WB__BUF_INIT;
    const char *p = msg;
    bool in_quotes = false;
    while (*p) {
        if (*p == '"') {
            in_quotes = !in_quotes;
            wb__buf_putc(&b, *p++);
            continue;
        }
        if (in_quotes && sl > 0 && strncmp(p, secret, sl) == 0) {
            wb__buf_puts(&b, "****");
            p += sl;
            continue;
        }
        wb__buf_putc(&b, *p++);
    }
    return wb__buf_take(&b);
}
