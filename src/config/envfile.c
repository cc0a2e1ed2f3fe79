/* Environment files: KEY=VALUE lines, '#' comments, optional "export ",
 * optional matching quotes around the value. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

/* A file larger than this is not an environment file. */
#define ENVFILE_MAX_BYTES (1024 * 1024)

wb_err wb__kv_push(wb__kv_list *l, const char *key, size_t key_len, const char *value,
                   size_t value_len, unsigned line)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        wb__kv *items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return WB_ERR_NO_MEMORY;
        l->items = items;
        l->cap = cap;
    }
    wb__kv *kv = &l->items[l->count];
    kv->key = wb__strndup(key, key_len);
    kv->value = wb__strndup(value, value_len);
    if (!kv->key || !kv->value) {
        free(kv->key);
        free(kv->value);
        return WB_ERR_NO_MEMORY;
    }
    kv->value_len = value_len;
    kv->line = line;
    l->count++;
    return WB_OK;
}

void wb__kv_list_free(wb__kv_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool key_char(char c, bool first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
}

static wb_err parse_line(const char *s, size_t n, unsigned line, wb__kv_list *out,
                         wb__envfile_problem_fn fn, void *ctx)
{
    size_t i = 0;
    while (i < n && is_blank(s[i]))
        i++;
    if (i == n || s[i] == '#')
        return WB_OK;
    if (n - i > 7 && memcmp(s + i, "export", 6) == 0 && is_blank(s[i + 6])) {
        i += 7;
        while (i < n && is_blank(s[i]))
            i++;
    }
    size_t k0 = i;
    while (i < n && key_char(s[i], i == k0))
        i++;
    size_t k1 = i;
    while (i < n && is_blank(s[i]))
        i++;
    if (i == n || s[i] != '=') {
        if (k1 == k0 || (i < n && s[i] != '='))
            fn(ctx, line,
               "not a KEY=VALUE line: a variable name holds only letters, digits "
               "and '_', and does not start with a digit",
               "write NAME=value, or start the line with '#' to make it a comment");
        else
            fn(ctx, line, "not a KEY=VALUE line: there is no '='",
               "write NAME=value (NAME= for an empty value)");
        return WB_OK;
    }
    if (k1 == k0) {
        fn(ctx, line, "not a KEY=VALUE line: the variable name before '=' is empty", NULL);
        return WB_OK;
    }
    i++; /* '=' */
    const char *v = s + i;
    size_t vn = n - i;

    /* Quoted value: the quotes must enclose the rest of the line. */
    if (vn > 0 && (v[0] == '"' || v[0] == '\'')) {
        char q = v[0];
        size_t e = vn;
        while (e > 1 && is_blank(v[e - 1]))
            e--;
        bool closed = false;
        wb__buf b = WB__BUF_INIT;
        size_t j = 1;
        for (; j < e; j++) {
            if (q == '"' && v[j] == '\\' && j + 1 < e) {
                char c = v[++j];
                wb__buf_putc(&b, c == 'n' ? '\n' : c == 't' ? '\t' : c);
                continue;
            }
            if (v[j] == q) {
                closed = true;
                break;
            }
            wb__buf_putc(&b, v[j]);
        }
        if (!closed || j + 1 != e) {
            wb__buf_free(&b);
            fn(ctx, line,
               closed ? "text follows the closing quote of the value"
                      : "the value's opening quote is never closed",
               "quote the whole value (NAME=\"a value\"), or leave it unquoted");
            return WB_OK;
        }
        size_t len = b.len;
        char *val = wb__buf_take(&b);
        if (!val)
            return WB_ERR_NO_MEMORY;
        wb_err err = wb__kv_push(out, s + k0, k1 - k0, val, len, line);
        free(val);
        return err;
    }
    return wb__kv_push(out, s + k0, k1 - k0, v, vn, line);
}

wb_err wb__envfile_parse(const char *text, size_t n, wb__kv_list *out, wb__envfile_problem_fn fn,
                         void *ctx)
{
    unsigned line = 0;
    size_t i = 0;
    /* a UTF-8 byte-order mark at the start is not part of the first name */
    if (n >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - text) : n;
        size_t le = e;
        if (le > i && text[le - 1] == '\r')
            le--;
        line++;
        wb_err err = parse_line(text + i, le - i, line, out, fn, ctx);
        if (err)
            return err;
        i = e + 1;
    }
    return WB_OK;
}

const char *wb__envfile_strerror(int e)
{
    if (e == WB__ENOTREG)
        return "not a regular file (a FIFO, socket or device could be read forever)";
    if (e == EFBIG)
        return "larger than 1 MiB";
    return strerror(e);
}

wb_err wb__envfile_read(const char *path, wb__kv_list *out, wb__envfile_problem_fn fn, void *ctx,
                        int *errno_out)
{
    /* O_NONBLOCK: opening a FIFO without a writer must not wait; anything
     * but a regular file is refused before a byte is read */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *errno_out = errno;
        if (fd >= 0)
            close(fd);
        return WB_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        *errno_out = S_ISDIR(st.st_mode) ? EISDIR : WB__ENOTREG;
        return WB_ERR_IO;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        *errno_out = errno;
        close(fd);
        return WB_ERR_IO;
    }
    wb__buf b = WB__BUF_INIT;
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        wb__buf_append(&b, chunk, got);
        if (b.len > ENVFILE_MAX_BYTES) {
            fclose(f);
            wb__buf_free(&b);
            *errno_out = EFBIG;
            return WB_ERR_IO;
        }
    }
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr) {
        wb__buf_free(&b);
        *errno_out = rerr ? rerr : EIO;
        return WB_ERR_IO;
    }
    if (b.failed) {
        wb__buf_free(&b);
        return WB_ERR_NO_MEMORY;
    }
    wb_err err = wb__envfile_parse(b.data ? b.data : "", b.len, out, fn, ctx);
    wb__buf_free(&b);
    return err;
}
