/* Host names, ports, AWS region names and http(s) URLs. */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "wb_internal.h"

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

const char *wb__host_check(const char *host, size_t n, wb__host_kind *kind)
{
    if (n == 0)
        return "the host is empty";
    if (n > 253)
        return "the host name is longer than 253 characters";

    bool digits_and_dots = true;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)host[i]) && host[i] != '.')
            digits_and_dots = false;
    }
    if (digits_and_dots) {
        char tmp[16];
        struct in_addr a;
        if (n >= sizeof tmp)
            return "not a valid IPv4 address (four numbers 0-255 separated by dots)";
        memcpy(tmp, host, n);
        tmp[n] = '\0';
        if (inet_pton(AF_INET, tmp, &a) != 1)
            return "not a valid IPv4 address (four numbers 0-255 separated by dots)";
        if (kind)
            *kind = WB__HOST_IPV4;
        return NULL;
    }

    size_t label = 0;
    bool label_all_digits = true;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || host[i] == '.') {
            if (label == 0)
                return "the host name has an empty label (a leading, trailing or doubled '.')";
            if (host[i - 1] == '-')
                return "a label of the host name ends with '-'";
            if (i == n && label_all_digits)
                return "the last label of a host name cannot be all digits";
            label = 0;
            label_all_digits = true;
            continue;
        }
        unsigned char c = (unsigned char)host[i];
        if (c == '-') {
            if (label == 0)
                return "a label of the host name starts with '-'";
        } else if (!is_alnum(c)) {
            return "the host name may hold only letters, digits, '-' and '.'";
        }
        if (!is_digit(c))
            label_all_digits = false;
        if (++label > 63)
            return "a label of the host name is longer than 63 characters";
    }
    if (kind)
        *kind = WB__HOST_DNS;
    return NULL;
}

const char *wb__port_parse(const char *s, size_t n, unsigned *port)
{
    if (n == 0)
        return "the port is empty";
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return "the port must be a decimal number from 1 to 65535";
        if (n > 5)
            return "the port is out of range (1-65535)";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return "the port is out of range (1-65535)";
    *port = v;
    return NULL;
}

static bool word_in(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++) {
        if (strlen(*words) == n && memcmp(*words, s, n) == 0)
            return true;
    }
    return false;
}

bool wb__aws_region_valid(const char *s, size_t n)
{
    static const char *const partitions[] = {"gov", "iso", "isob", "isoe", "isof", NULL};
    static const char *const directions[] = {"east",      "west",      "north",     "south",
                                             "central",   "northeast", "northwest", "southeast",
                                             "southwest", NULL};
    const char *parts[5];
    size_t lens[5];
    size_t np = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '-') {
            if (np == 5)
                return false;
            parts[np] = s + start;
            lens[np] = i - start;
            np++;
            start = i + 1;
        }
    }
    if (np != 3 && np != 4)
        return false;
    /* geography: two lower-case letters */
    if (lens[0] != 2 || !(parts[0][0] >= 'a' && parts[0][0] <= 'z') ||
        !(parts[0][1] >= 'a' && parts[0][1] <= 'z'))
        return false;
    if (np == 4 && !word_in(parts[1], lens[1], partitions))
        return false;
    size_t d = np - 2;
    if (!word_in(parts[d], lens[d], directions))
        return false;
    size_t k = np - 1;
    if (lens[k] < 1 || lens[k] > 2 || parts[k][0] == '0')
        return false;
    for (size_t i = 0; i < lens[k]; i++) {
        if (!is_digit((unsigned char)parts[k][i]))
            return false;
    }
    return true;
}

const char *wb__url_parse(const char *s, size_t n, wb__url *u)
{
    memset(u, 0, sizeof *u);
    const char *end = s + n;
    const char *p = s;
    while (p < end && (is_alnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.'))
        p++;
    if (p == s || end - p < 3 || memcmp(p, "://", 3) != 0)
        return "not a URL: expected scheme://host/...";
    u->scheme = s;
    u->scheme_len = (size_t)(p - s);
    p += 3;

    const char *auth = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    const char *auth_end = p;

    const char *at = NULL;
    for (const char *q = auth; q < auth_end; q++) {
        if (*q == '@')
            at = q;
    }
    if (at) {
        u->userinfo = auth;
        u->userinfo_len = (size_t)(at - auth);
        auth = at + 1;
    }
    if (auth == auth_end)
        return "the URL has no host";

    const char *hp_end = auth_end;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(auth_end - auth));
        if (!rb)
            return "the URL's IPv6 address has no closing ']'";
        char tmp[INET6_ADDRSTRLEN + 1];
        size_t hl = (size_t)(rb - auth - 1);
        struct in6_addr a6;
        if (hl >= sizeof tmp)
            return "the URL's IPv6 address is not valid";
        memcpy(tmp, auth + 1, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return "the URL's IPv6 address is not valid";
        u->host = auth + 1;
        u->host_len = hl;
        u->host_kind = WB__HOST_IPV6;
        hp_end = rb + 1;
        if (hp_end < auth_end && *hp_end != ':')
            return "unexpected characters after the URL's IPv6 address";
    } else {
        const char *colon = memchr(auth, ':', (size_t)(auth_end - auth));
        hp_end = colon ? colon : auth_end;
        u->host = auth;
        u->host_len = (size_t)(hp_end - auth);
        const char *why = wb__host_check(u->host, u->host_len, &u->host_kind);
        if (why)
            return why;
    }
    if (hp_end < auth_end) { /* ":port" */
        const char *why = wb__port_parse(hp_end + 1, (size_t)(auth_end - hp_end - 1), &u->port);
        if (why)
            return why;
    }

    const char *path = auth_end;
    while (p < end && *p != '?' && *p != '#')
        p++;
    u->path = path;
    u->path_len = (size_t)(p - path);
    if (p < end && *p == '?') {
        const char *q = ++p;
        while (p < end && *p != '#')
            p++;
        u->query = q;
        u->query_len = (size_t)(p - q);
    }
    if (p < end && *p == '#') {
        u->fragment = p + 1;
        u->fragment_len = (size_t)(end - p - 1);
    }
    for (const char *q = s; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c <= 0x20 || c >= 0x7f)
            return "the URL holds a space, a control character or a non-ASCII byte";
    }
    return NULL;
}

const char *wb__hostport_parse(const char *s, bool allow_tls, char **host, unsigned *port,
                               bool *tls)
{
    *host = NULL;
    if (tls)
        *tls = false;
    if (allow_tls && strncasecmp(s, "tls://", 6) == 0) {
        s += 6;
        if (tls)
            *tls = true;
    } else if (strstr(s, "://")) {
        return allow_tls ? "the only scheme accepted is tls://" : "a scheme is not accepted here";
    }
    const char *colon = strrchr(s, ':');
    if (!colon)
        return "the port is missing (host:port)";
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (hl - 2 >= sizeof tmp)
            return "the IPv6 address is not valid";
        memcpy(tmp, s + 1, hl - 2);
        tmp[hl - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return "the IPv6 address is not valid";
        h = s + 1;
        hl -= 2;
    } else if (memchr(s, ':', hl)) {
        return "an IPv6 address must be in brackets ([::1]:1984)";
    } else {
        const char *why = wb__host_check(s, hl, NULL);
        if (why)
            return why;
    }
    const char *why = wb__port_parse(colon + 1, strlen(colon + 1), port);
    if (why)
        return why;
    *host = wb__strndup(h, hl);
    return *host ? NULL : "out of memory";
}
