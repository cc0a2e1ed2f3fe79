/* Growable strings and small allocation helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

static bool buf_reserve(wb__buf *b, size_t extra)
{
    if (b->failed)
        return false;
    if (extra > SIZE_MAX - b->len - 1) {
        b->failed = true;
        return false;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void wb__buf_append(wb__buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void wb__buf_puts(wb__buf *b, const char *s)
{
    wb__buf_append(b, s, strlen(s));
}

void wb__buf_putc(wb__buf *b, char c)
{
    wb__buf_append(b, &c, 1);
}

void wb__buf_vprintf(wb__buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!buf_reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void wb__buf_printf(wb__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    wb__buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void wb__buf_put_escaped(wb__buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] >= 0x20 && u[i] < 0x7f) {
            size_t j = i;
            while (j < n && u[j] >= 0x20 && u[j] < 0x7f && u[j] != '\\')
                j++;
            if (j > i) {
                wb__buf_append(b, s + i, j - i);
                i = j;
                continue;
            }
        }
        if (u[i] == '\\') {
            wb__buf_puts(b, "\\\\");
            i++;
            continue;
        }
        size_t seq = u[i] >= 0x80 ? wb__utf8_seq_len(u + i, n - i) : 0;
        /* C1 controls (U+0080-U+009F): some terminals obey them as they do ESC */
        if (seq == 2 && u[i] == 0xC2 && u[i + 1] < 0xA0)
            seq = 0;
        if (seq > 0) {
            wb__buf_append(b, s + i, seq);
            i += seq;
        } else {
            wb__buf_printf(b, "\\x%02X", u[i]);
            i++;
        }
    }
    if (!b->data)
        wb__buf_append(b, "", 0);
}

char *wb__buf_take(wb__buf *b)
{
    if (!b->failed && !b->data)
        wb__buf_append(b, "", 0);
    char *p = b->failed ? NULL : b->data;
    if (b->failed)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
    return p;
}

void wb__buf_free(wb__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

char *wb__strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *wb__strdup(const char *s)
{
    return s ? wb__strndup(s, strlen(s)) : NULL;
}

char *wb__asprintf(const char *fmt, ...)
{
    wb__buf b = WB__BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    wb__buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return wb__buf_take(&b);
}

void wb_free(void *ptr)
{
    free(ptr);
}

WB_API char *wb_escape(const void *s, size_t n)
{
    wb__buf b = WB__BUF_INIT;
    wb__buf_put_escaped(&b, s ? s : "", s ? n : 0);
    return wb__buf_take(&b);
}
