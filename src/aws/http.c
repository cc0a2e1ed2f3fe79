/* HTTP on libcurl: one easy handle per wb__http, reused so connections stay
 * open (keep-alive) between requests. */
#include "http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wb_internal.h"

struct wb__http {
    CURL *curl;
    bool (*abort)(void *ctx); /* asked while a transfer runs; true: stop it */
    void *abort_ctx;
};

void wb__http_set_abort(wb__http *h, bool (*abort)(void *ctx), void *ctx)
{
    h->abort = abort;
    h->abort_ctx = ctx;
}

static int on_progress(void *p, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    (void)dlt, (void)dln, (void)ult, (void)uln;
    const wb__http *h = p;
    return h->abort && h->abort(h->abort_ctx) ? 1 : 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void wb__http_global_init(void)
{
    pthread_once(&once, init_once);
}

wb__http *wb__http_new(void)
{
    wb__http_global_init();
    wb__http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NULL;
    }
    return h;
}

void wb__http_free(wb__http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

typedef struct sink {
    wb__buf body;
    wb__http_response *resp;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    wb__buf_append(&s->body, p, size * n);
    return s->body.failed ? 0 : size * n;
}

static char *header_value(const char *line, size_t n, const char *name)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    const char *v = line + nl + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    return wb__strndup(v, vl);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t len = size * n;
    char *v;
    if ((v = header_value(p, len, "x-amzn-query-error")) != NULL) {
        free(s->resp->query_error);
        s->resp->query_error = v;
    } else if ((v = header_value(p, len, "retry-after")) != NULL) {
        free(s->resp->retry_after);
        s->resp->retry_after = v;
    }
    return len;
}

void wb__http_response_free(wb__http_response *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->query_error);
    free(r->retry_after);
    memset(r, 0, sizeof *r);
}

wb_err wb__http_request(wb__http *h, const char *method, const char *url,
                        const char *const *headers, const void *body, size_t body_len,
                        unsigned connect_timeout_ms, unsigned timeout_ms, wb__http_response *out,
                        char **detail)
{
    return wb__http_request_to(h, method, url, NULL, NULL, headers, body, body_len,
                               connect_timeout_ms, timeout_ms, out, detail);
}

wb_err wb__http_request_to(wb__http *h, const char *method, const char *url, const char *connect_to,
                           const char *ca_file, const char *const *headers, const void *body,
                           size_t body_len, unsigned connect_timeout_ms, unsigned timeout_ms,
                           wb__http_response *out, char **detail)
{
    memset(out, 0, sizeof *out);
    CURL *c = h->curl;
    curl_easy_reset(c);
    sink s = {WB__BUF_INIT, out};
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *n = curl_slist_append(hl, headers[i]);
        if (!n) {
            curl_slist_free_all(hl);
            return WB_ERR_NO_MEMORY;
        }
        hl = n;
    }
    /* libcurl would add "Expect: 100-continue" to large bodies: one more
     * round trip for nothing. */
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    struct curl_slist *ct = connect_to ? curl_slist_append(NULL, connect_to) : NULL;
    if (ct)
        curl_easy_setopt(c, CURLOPT_CONNECT_TO, ct);
    if (ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    /* curl asks about once a second while it waits, and at every chunk */
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, h->abort ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, h->abort ? on_progress : NULL);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    }
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hl);
    curl_slist_free_all(ct);
    if (rc != CURLE_OK) {
        wb__buf_free(&s.body);
        wb__http_response_free(out);
        *detail = wb__asprintf("%s %s: %s", method, url, curl_easy_strerror(rc));
        return rc == CURLE_ABORTED_BY_CALLBACK  ? WB_ERR_STATE
               : rc == CURLE_OPERATION_TIMEDOUT ? WB_ERR_TIMEOUT
               : rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                       rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING
                   ? WB_ERR_CONNECTION_LOST
               : rc == CURLE_OUT_OF_MEMORY ? WB_ERR_NO_MEMORY
                                           : WB_ERR_IO;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    out->body_len = s.body.len;
    out->body = wb__buf_take(&s.body);
    if (!out->body) {
        wb__http_response_free(out);
        return WB_ERR_NO_MEMORY;
    }
    return WB_OK;
}
