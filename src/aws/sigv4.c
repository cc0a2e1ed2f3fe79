/* AWS Signature Version 4: canonical request, string to sign, signing key
 * and signature, with OpenSSL's HMAC and SHA-256. */
#include "sigv4.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

void wb__aws_creds_clear(wb__aws_creds *c)
{
    if (!c)
        return;
    if (c->secret_key)
        OPENSSL_cleanse(c->secret_key, strlen(c->secret_key));
    free(c->access_key);
    free(c->secret_key);
    free(c->session_token);
    memset(c, 0, sizeof *c);
}

int wb__aws_creds_copy(wb__aws_creds *dst, const wb__aws_creds *src)
{
    memset(dst, 0, sizeof *dst);
    dst->access_key = wb__strdup(src->access_key ? src->access_key : "");
    dst->secret_key = wb__strdup(src->secret_key ? src->secret_key : "");
    dst->session_token = src->session_token ? wb__strdup(src->session_token) : NULL;
    dst->expires = src->expires;
    memcpy(dst->source, src->source, sizeof dst->source);
    if (!dst->access_key || !dst->secret_key || (src->session_token && !dst->session_token)) {
        wb__aws_creds_clear(dst);
        return 0;
    }
    return 1;
}

void wb__sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    EVP_Digest(data, n, md, &ml, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void hmac(const void *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32])
{
    unsigned int ol = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &ol);
}

void wb__sigv4_signing_key(const char *secret, const char *date8, const char *region,
                           const char *service, unsigned char key[32])
{
    size_t sl = strlen(secret);
    char *k0 = malloc(sl + 5);
    if (!k0) {
        memset(key, 0, 32);
        return;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, sl + 1);
    unsigned char a[32], b[32];
    hmac(k0, sl + 4, date8, strlen(date8), a);
    OPENSSL_cleanse(k0, sl + 4);
    free(k0);
    hmac(a, 32, region, strlen(region), b);
    hmac(b, 32, service, strlen(service), a);
    hmac(a, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
}

static bool unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void put_encoded(wb__buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            wb__buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            wb__buf_append(b, e, 3);
        }
    }
}

char *wb__uri_encode(const char *s, size_t n, int keep_slash)
{
    wb__buf b = WB__BUF_INIT;
    put_encoded(&b, s, n, keep_slash != 0);
    return wb__buf_take(&b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) (only valid %XX; everything else literal). */
static char *pct_decode(const char *s, size_t n, size_t *out_len)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
            (l = hexval(s[i + 2])) >= 0) {
            o[j++] = (char)(h * 16 + l);
            i += 2;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

typedef struct kv {
    char *k;
    char *v;
} kv;

static int kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static void kv_free(kv *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].k);
        free(p[i].v);
    }
    free(p);
}

/* The canonical query: each name and value decoded then encoded, sorted. */
static bool canonical_query(wb__buf *b, const char *q, const kv *extra, size_t n_extra)
{
    size_t cap = n_extra + 1, n = 0;
    for (const char *p = q; p && *p; p++)
        cap += *p == '&';
    kv *items = calloc(cap, sizeof *items);
    if (!items)
        return false;
    const char *p = q ? q : "";
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            const char *eq = memchr(p, '=', len);
            size_t kl = eq ? (size_t)(eq - p) : len;
            size_t dk, dv;
            char *k = pct_decode(p, kl, &dk);
            char *v = eq ? pct_decode(eq + 1, len - kl - 1, &dv) : (dv = 0, wb__strdup(""));
            items[n].k = k ? wb__uri_encode(k, dk, 0) : NULL;
            items[n].v = v ? wb__uri_encode(v, dv, 0) : NULL;
            free(k);
            free(v);
            if (!items[n++].v || !items[n - 1].k) {
                kv_free(items, n);
                return false;
            }
        }
        p += len + (end ? 1 : 0);
    }
    for (size_t i = 0; i < n_extra; i++) {
        items[n].k = wb__uri_encode(extra[i].k, strlen(extra[i].k), 0);
        items[n].v = wb__uri_encode(extra[i].v, strlen(extra[i].v), 0);
        if (!items[n++].k || !items[n - 1].v) {
            kv_free(items, n);
            return false;
        }
    }
    qsort(items, n, sizeof *items, kv_cmp);
    for (size_t i = 0; i < n; i++)
        wb__buf_printf(b, "%s%s=%s", i ? "&" : "", items[i].k, items[i].v);
    kv_free(items, n);
    return true;
}

typedef struct hdr {
    char *name; /* lower case */
    wb__buf value;
    size_t order;
} hdr;

static int hdr_cmp(const void *a, const void *b)
{
    const hdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Trims and collapses runs of spaces (SigV4's header value rule). */
static void put_trimmed(wb__buf *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == ' ' || v[i] == '\t') {
            space = true;
            continue;
        }
        if (space)
            wb__buf_putc(b, ' ');
        space = false;
        wb__buf_putc(b, v[i]);
    }
}

/* Canonical headers and the signed-header list; duplicate names joined with
 * ',' in the order given. */
static bool canonical_headers(wb__buf *canon, wb__buf *signed_list, const wb__sigv4_header *hs,
                              size_t n, char **detail)
{
    hdr *h = calloc(n ? n : 1, sizeof *h);
    if (!h)
        return false;
    size_t m = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        if (!hs[i].name || !*hs[i].name || !hs[i].value) {
            *detail = wb__strdup("a header to sign has no name or no value");
            ok = false;
            break;
        }
        char *lower = wb__strdup(hs[i].name);
        if (!lower) {
            ok = false;
            break;
        }
        for (char *c = lower; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        size_t j;
        for (j = 0; j < m && strcmp(h[j].name, lower) != 0; j++)
            ;
        if (j < m) {
            free(lower);
            wb__buf_putc(&h[j].value, ',');
        } else {
            h[m].name = lower;
            h[m].order = m;
            j = m++;
        }
        put_trimmed(&h[j].value, hs[i].value);
        if (h[j].value.failed)
            ok = false;
    }
    if (ok) {
        qsort(h, m, sizeof *h, hdr_cmp);
        for (size_t i = 0; i < m; i++) {
            wb__buf_printf(canon, "%s:%s\n", h[i].name, h[i].value.data ? h[i].value.data : "");
            wb__buf_printf(signed_list, "%s%s", i ? ";" : "", h[i].name);
        }
    }
    for (size_t i = 0; i < m; i++) {
        free(h[i].name);
        wb__buf_free(&h[i].value);
    }
    free(h);
    return ok;
}

static bool has_header(const wb__sigv4_request *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (r->headers[i].name && strcasecmp(r->headers[i].name, name) == 0)
            return true;
    }
    return false;
}

static wb_err check_request(const wb__sigv4_request *r, const wb__aws_creds *c, char **detail)
{
    if (!r || !c || !r->method || !r->region || !r->service || !c->access_key || !c->secret_key) {
        *detail = wb__strdup("SigV4 needs a method, a region, a service and credentials");
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (!*c->access_key || !*c->secret_key) {
        *detail = wb__strdup("the AWS credentials have an empty access key id or secret key");
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (!has_header(r, "host")) {
        *detail = wb__strdup("SigV4 signs the Host header: it is missing");
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (has_header(r, "x-amz-date")) {
        *detail = wb__strdup("X-Amz-Date is added by the signer; do not pass it");
        return WB_ERR_INVALID_ARGUMENT;
    }
    return WB_OK;
}

static void format_dates(time_t now, char amz[17], char date8[9])
{
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz, 17, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date8, amz, 8);
    date8[8] = '\0';
}

static void put_canonical_uri(wb__buf *b, const char *path)
{
    if (!path || !*path) {
        wb__buf_putc(b, '/');
        return;
    }
    put_encoded(b, path, strlen(path), true);
}

/* The signature of string_to_sign, hex. */
static void sign_sts(const wb__aws_creds *c, const char *date8, const char *region,
                     const char *service, const char *sts, char sig[65])
{
    unsigned char key[32], mac[32];
    wb__sigv4_signing_key(c->secret_key, date8, region, service, key);
    hmac(key, 32, sts, strlen(sts), mac);
    OPENSSL_cleanse(key, sizeof key);
    for (unsigned i = 0; i < 32; i++)
        snprintf(sig + 2 * i, 3, "%02x", mac[i]);
}

void wb__sigv4_result_free(wb__sigv4_result *r)
{
    if (!r)
        return;
    free(r->authorization);
    free(r->canonical);
    free(r->string_to_sign);
    free(r->signed_headers);
    memset(r, 0, sizeof *r);
}

wb_err wb__sigv4_sign(const wb__sigv4_request *req, const wb__aws_creds *creds,
                      wb__sigv4_result *out, char **detail)
{
    memset(out, 0, sizeof *out);
    wb_err err = check_request(req, creds, detail);
    if (err)
        return err;
    char date8[9];
    format_dates(req->now, out->amz_date, date8);

    size_t nh = req->n_headers + 2;
    wb__sigv4_header *hs = calloc(nh, sizeof *hs);
    if (!hs)
        return WB_ERR_NO_MEMORY;
    memcpy(hs, req->headers, req->n_headers * sizeof *hs);
    nh = req->n_headers;
    hs[nh++] = (wb__sigv4_header){"x-amz-date", out->amz_date};
    if (creds->session_token && *creds->session_token)
        hs[nh++] = (wb__sigv4_header){"x-amz-security-token", creds->session_token};

    char payload[65];
    const char *ph = req->payload_hash;
    if (!ph) {
        wb__sha256_hex(req->body ? req->body : "", req->body ? req->body_len : 0, payload);
        ph = payload;
    }
    wb__buf canon = WB__BUF_INIT, sl = WB__BUF_INIT;
    wb__buf_printf(&canon, "%s\n", req->method);
    put_canonical_uri(&canon, req->path);
    wb__buf_putc(&canon, '\n');
    bool ok = canonical_query(&canon, req->query, NULL, 0);
    wb__buf_putc(&canon, '\n');
    ok = ok && canonical_headers(&canon, &sl, hs, nh, detail);
    free(hs);
    if (!ok) {
        wb__buf_free(&canon);
        wb__buf_free(&sl);
        return *detail ? WB_ERR_INVALID_ARGUMENT : WB_ERR_NO_MEMORY;
    }
    wb__buf_printf(&canon, "\n%s\n%s", sl.data ? sl.data : "", ph);
    out->canonical = wb__buf_take(&canon);
    out->signed_headers = wb__buf_take(&sl);
    if (!out->canonical || !out->signed_headers) {
        wb__sigv4_result_free(out);
        return WB_ERR_NO_MEMORY;
    }
    char ch[65];
    wb__sha256_hex(out->canonical, strlen(out->canonical), ch);
    out->string_to_sign = wb__asprintf("AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                                       out->amz_date, date8, req->region, req->service, ch);
    if (!out->string_to_sign) {
        wb__sigv4_result_free(out);
        return WB_ERR_NO_MEMORY;
    }
    sign_sts(creds, date8, req->region, req->service, out->string_to_sign, out->signature);
    out->authorization = wb__asprintf(
        "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
        creds->access_key, date8, req->region, req->service, out->signed_headers, out->signature);
    if (!out->authorization) {
        wb__sigv4_result_free(out);
        return WB_ERR_NO_MEMORY;
    }
    return WB_OK;
}

char *wb__sigv4_presign_query(const wb__sigv4_request *req, const wb__aws_creds *creds,
                              unsigned expires_s, int append_token_after, char **detail)
{
    if (check_request(req, creds, detail) != WB_OK)
        return NULL;
    char amz[17], date8[9];
    format_dates(req->now, amz, date8);
    char *cred = wb__asprintf("%s/%s/%s/%s/aws4_request", creds->access_key, date8, req->region,
                              req->service);
    char exp[16];
    snprintf(exp, sizeof exp, "%u", expires_s);
    wb__buf sl = WB__BUF_INIT, canon = WB__BUF_INIT, hdrs = WB__BUF_INIT;
    bool token = creds->session_token && *creds->session_token;
    bool ok = cred && canonical_headers(&hdrs, &sl, req->headers, req->n_headers, detail);
    kv extra[6];
    size_t ne = 0;
    if (ok) {
        extra[ne++] = (kv){"X-Amz-Algorithm", "AWS4-HMAC-SHA256"};
        extra[ne++] = (kv){"X-Amz-Credential", cred};
        extra[ne++] = (kv){"X-Amz-Date", amz};
        if (expires_s)
            extra[ne++] = (kv){"X-Amz-Expires", exp};
        extra[ne++] = (kv){"X-Amz-SignedHeaders", sl.data ? sl.data : ""};
        if (token && !append_token_after)
            extra[ne++] = (kv){"X-Amz-Security-Token", creds->session_token};
    }
    wb__buf q = WB__BUF_INIT;
    ok = ok && canonical_query(&q, req->query, extra, ne);
    char payload[65];
    const char *ph = req->payload_hash;
    if (!ph) {
        wb__sha256_hex(req->body ? req->body : "", req->body ? req->body_len : 0, payload);
        ph = payload;
    }
    char *result = NULL;
    if (ok) {
        wb__buf_printf(&canon, "%s\n", req->method);
        put_canonical_uri(&canon, req->path);
        wb__buf_printf(&canon, "\n%s\n%s\n%s\n%s", q.data ? q.data : "", hdrs.data ? hdrs.data : "",
                       sl.data ? sl.data : "", ph);
        if (!canon.failed) {
            char ch[65], sig[65];
            wb__sha256_hex(canon.data, canon.len, ch);
            char *sts = wb__asprintf("AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz, date8,
                                     req->region, req->service, ch);
            if (sts) {
                sign_sts(creds, date8, req->region, req->service, sts, sig);
                wb__buf_printf(&q, "&X-Amz-Signature=%s", sig);
                if (token && append_token_after) {
                    wb__buf_puts(&q, "&X-Amz-Security-Token=");
                    put_encoded(&q, creds->session_token, strlen(creds->session_token), false);
                }
                result = wb__buf_take(&q);
            }
            free(sts);
        }
    }
    wb__buf_free(&q);
    wb__buf_free(&canon);
    wb__buf_free(&hdrs);
    wb__buf_free(&sl);
    free(cred);
    return result;
}
