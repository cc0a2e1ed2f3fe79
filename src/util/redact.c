/* Keeping secrets out of messages: the secret keywords of libpq connection
 * strings (password, sslpassword) and passwords in URLs' userinfo, wherever
 * they appear: a value of a connection string may itself be a connection
 * string or a URI (libpq expands dbname), so values are searched too. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wb_internal.h"

/* How deep connection strings nested in values are searched; deeper ones
 * are redacted whole. */
#define MAX_DEPTH 4

/* Found secrets, for wb__conninfo_secrets(). */
typedef struct found {
    char **v;
    size_t n;
    bool failed;
} found;

static void found_add(found *f, const char *s, size_t n)
{
    if (!f || f->failed || n == 0)
        return;
    char **nv = realloc(f->v, (f->n + 2) * sizeof *nv);
    char *copy = wb__strndup(s, n);
    if (!nv || !copy) {
        free(copy);
        if (nv)
            f->v = nv;
        f->failed = true;
        return;
    }
    f->v = nv;
    f->v[f->n++] = copy;
    f->v[f->n] = NULL;
}

typedef struct span {
    size_t off, len;
} span;

/* Finds the password of a URL's user-info ("scheme://user:PASSWORD@host").
 * Returns 1 and fills *out when there is one, else 0. */
static size_t url_userinfo_password(const char *s, size_t n, const char *stops, span *out)
{
    const char *end = s + n;
    const char *sep = memchr(s, ':', n);
    if (!sep || end - sep < 3 || sep[1] != '/' || sep[2] != '/')
        return 0;
    const char *p = sep + 3, *ae = p;
    while (ae < end && !memchr(stops, *ae, strlen(stops)))
        ae++;
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

void wb__redact_url(wb__buf *out, const char *s, size_t n)
{
    span sp;
    size_t count = url_userinfo_password(s, n, "/?#", &sp);
    replace_spans(out, s, n, &sp, count);
}

static bool is_uri(const char *s, size_t n)
{
    return (n >= 13 && strncasecmp(s, "postgresql://", 13) == 0) ||
           (n >= 11 && strncasecmp(s, "postgres://", 11) == 0);
}

/* libpq's keywords whose value is a secret. */
static bool secret_key(const char *k, size_t n)
{
    return (n == 8 && strncasecmp(k, "password", 8) == 0) ||
           (n == 11 && strncasecmp(k, "sslpassword", 11) == 0);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* s[0..n) with %XX decoded (as libpq decodes URI parts), in b. */
static void percent_decode(wb__buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            wb__buf_putc(b, (char)(hi * 16 + lo));
            i += 2;
        } else {
            wb__buf_putc(b, s[i]);
        }
    }
}

static void redact_any(wb__buf *out, const char *s, size_t n, int depth, found *f);

/* A value that is not itself secret: appended as it is, unless it holds a
 * connection string or URI with a secret, which is then redacted inside it
 * (raw values) or replaced whole (encoded ones, which cannot be redacted in
 * place). */
static void put_value(wb__buf *out, const char *v, size_t n, bool encoded, int depth, found *f)
{
    if (n == 0 || (!memchr(v, '=', n) && !memchr(v, ':', n) && !memchr(v, '%', n))) {
        wb__buf_append(out, v, n);
        return;
    }
    wb__buf plain = WB__BUF_INIT;
    if (encoded)
        percent_decode(&plain, v, n);
    else
        wb__buf_append(&plain, v, n);
    wb__buf red = WB__BUF_INIT;
    if (!plain.failed)
        redact_any(&red, plain.data ? plain.data : "", plain.len, depth + 1, f);
    bool changed = plain.failed || red.failed || red.len != plain.len ||
                   (plain.len && memcmp(red.data, plain.data, plain.len) != 0);
    if (!changed)
        wb__buf_append(out, v, n);
    else if (encoded || red.failed)
        wb__buf_puts(out, "****");
    else
        wb__buf_append(out, red.data ? red.data : "", red.len);
    wb__buf_free(&plain);
    wb__buf_free(&red);
}

/* scheme://[user[:password]@][hosts][/dbname][?key=value&...], split as
 * libpq splits it: the user-info ends at the first '@' before any '/', the
 * hosts at '/' or '?', the database name at '?'. */
static void redact_uri(wb__buf *out, const char *s, size_t n, int depth, found *f)
{
    const char *end = s + n;
    const char *p = (const char *)memchr(s, ':', n) + 3;
    const char *q = p, *copied = s, *hosts = p;
    while (q < end && *q != '@' && *q != '/')
        q++;
    if (q < end && *q == '@') {
        const char *colon = memchr(p, ':', (size_t)(q - p));
        if (colon && colon + 1 < q) {
            wb__buf_append(out, s, (size_t)(colon + 1 - s));
            wb__buf_puts(out, "****");
            wb__buf dec = WB__BUF_INIT;
            percent_decode(&dec, colon + 1, (size_t)(q - colon - 1));
            found_add(f, dec.data, dec.len);
            wb__buf_free(&dec);
            copied = q;
        }
        hosts = q + 1;
    }
    const char *qm = hosts;
    while (qm < end && *qm != '?')
        qm++;
    wb__buf_append(out, copied, (size_t)(qm - copied));
    if (qm == end)
        return;
    wb__buf_putc(out, '?');
    for (q = qm + 1; q < end;) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        if (!eq) {
            wb__buf_append(out, q, (size_t)(pe - q));
        } else {
            wb__buf key = WB__BUF_INIT;
            percent_decode(&key, q, (size_t)(eq - q));
            wb__buf_append(out, q, (size_t)(eq + 1 - q));
            if (key.failed || secret_key(key.data ? key.data : "", key.len)) {
                wb__buf dec = WB__BUF_INIT;
                percent_decode(&dec, eq + 1, (size_t)(pe - eq - 1));
                found_add(f, dec.data, dec.len);
                wb__buf_free(&dec);
                wb__buf_puts(out, "****");
            } else {
                put_value(out, eq + 1, (size_t)(pe - eq - 1), true, depth, f);
            }
            wb__buf_free(&key);
        }
        if (amp)
            wb__buf_putc(out, '&');
        q = amp ? amp + 1 : end;
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* key = value pairs, values optionally single-quoted with \ escapes. */
static void redact_pairs(wb__buf *out, const char *s, size_t n, int depth, found *f)
{
    size_t i = 0;
    while (i < n) {
        size_t w0 = i;
        while (i < n && is_space(s[i]))
            i++;
        size_t k0 = i;
        while (i < n && s[i] != '=' && !is_space(s[i]))
            i++;
        size_t klen = i - k0;
        while (i < n && is_space(s[i]))
            i++;
        if (i >= n || s[i] != '=') { /* not a pair: the rest as it is */
            wb__buf_append(out, s + w0, n - w0);
            return;
        }
        i++;
        while (i < n && is_space(s[i]))
            i++;
        wb__buf_append(out, s + w0, i - w0);
        size_t v0 = i;
        bool quoted = i < n && s[i] == '\'';
        wb__buf val = WB__BUF_INIT; /* unescaped */
        if (quoted)
            i++;
        while (i < n && (quoted ? s[i] != '\'' : !is_space(s[i]))) {
            if (s[i] == '\\' && i + 1 < n)
                i++;
            wb__buf_putc(&val, s[i]);
            i++;
        }
        if (quoted && i < n)
            i++;
        if (secret_key(s + k0, klen)) {
            found_add(f, val.data, val.len);
            wb__buf_puts(out, i > v0 ? "****" : "");
        } else if (!quoted && val.len == i - v0) {
            put_value(out, s + v0, i - v0, false, depth, f);
        } else {
            /* quoted or escaped: search the value itself, and quote what
             * comes out again */
            wb__buf red = WB__BUF_INIT;
            put_value(&red, val.data ? val.data : "", val.len, false, depth, f);
            bool same = red.len == val.len && (!val.len || !memcmp(red.data, val.data, val.len));
            if (same) {
                wb__buf_append(out, s + v0, i - v0);
            } else {
                wb__buf_putc(out, '\'');
                for (size_t k = 0; k < red.len; k++) {
                    if (red.data[k] == '\'' || red.data[k] == '\\')
                        wb__buf_putc(out, '\\');
                    wb__buf_putc(out, red.data[k]);
                }
                wb__buf_putc(out, '\'');
            }
            wb__buf_free(&red);
        }
        wb__buf_free(&val);
    }
}

static void redact_any(wb__buf *out, const char *s, size_t n, int depth, found *f)
{
    if (depth > MAX_DEPTH) {
        wb__buf_puts(out, "****");
        return;
    }
    if (is_uri(s, n))
        redact_uri(out, s, n, depth, f);
    else if (memchr(s, '=', n))
        redact_pairs(out, s, n, depth, f);
    else if (memchr(s, ':', n) && memchr(s, '@', n))
        wb__redact_url(out, s, n); /* another scheme's URL */
    else
        wb__buf_append(out, s, n);
}

void wb__redact_conninfo(wb__buf *out, const char *s, size_t n)
{
    redact_any(out, s, n, 0, NULL);
}

char **wb__conninfo_secrets(const char *s, size_t n)
{
    found f = {0};
    wb__buf scratch = WB__BUF_INIT;
    redact_any(&scratch, s, n, 0, &f);
    wb__buf_free(&scratch);
    if (f.failed || !f.v) {
        wb__strv_free(f.v);
        return NULL;
    }
    return f.v;
}

void wb__strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

char *wb__redact_in_quotes(const char *msg, char *const *secrets)
{
    wb__buf b = WB__BUF_INIT;
    const char *p = msg;
    bool in_quotes = false;
    while (*p) {
        if (*p == '"') {
            in_quotes = !in_quotes;
            wb__buf_putc(&b, *p++);
            continue;
        }
        size_t hit = 0;
        for (size_t i = 0; in_quotes && secrets && secrets[i] && !hit; i++) {
            size_t sl = strlen(secrets[i]);
            if (sl > 0 && strncmp(p, secrets[i], sl) == 0)
                hit = sl;
        }
        if (hit) {
            wb__buf_puts(&b, "****");
            p += hit;
            continue;
        }
        wb__buf_putc(&b, *p++);
    }
    return wb__buf_take(&b);
}
