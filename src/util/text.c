/* UTF-8 checks and edit distance. */
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

size_t wb__utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool wb__utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = wb__utf8_seq_len(u + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

size_t wb__edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 256 || lb > 256) /* names longer than this are never typos of ours */
        return (size_t)-1;
    /* three rows suffice for the transposition case */
    size_t *rows = malloc(3 * (lb + 1) * sizeof *rows);
    if (!rows)
        return (size_t)-1;
    size_t *pp = rows, *p = rows + lb + 1, *c = rows + 2 * (lb + 1);
    for (size_t j = 0; j <= lb; j++)
        p[j] = j;
    for (size_t i = 1; i <= la; i++) {
        c[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (p[j - 1] + cost < v)
                v = p[j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
        }
        size_t *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    size_t d = p[lb];
    free(rows);
    return d;
}

bool wb__has_outer_space(const char *s, size_t n)
{
    if (n == 0)
        return false;
    unsigned char f = (unsigned char)s[0], l = (unsigned char)s[n - 1];
    return f == ' ' || f == '\t' || f == '\r' || f == '\n' || l == ' ' || l == '\t' || l == '\r' ||
           l == '\n';
}
