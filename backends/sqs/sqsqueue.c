/* The SQS message queue: AWS JSON 1.0 over libcurl, signed with our SigV4.
 *
 * - Endpoint: AWS_ENDPOINT_URL_SQS, then AWS_ENDPOINT_URL, else the scheme
 *   and host of each queue's URL. Region: the one in an AWS queue URL's
 *   host, else AWS_REGION / AWS_DEFAULT_REGION from the configuration.
 * - Credentials: the standard chain (src/aws/aws_creds.c), cached.
 * - One attempt per operation: transport failures, HTTP 5xx and throttling
 *   are marked retryable and the queue core retries them, with backoff, for
 *   up to wb_queue_opts.retry_limit_ms. SQS's own error code and message are
 *   passed on in the error detail.
 * - Bodies are checked against SQS's MD5 on send and on receive.
 * - One HTTP handle per concurrent caller, kept open between requests.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws_creds.h"
#include "http.h"
#include "queue_backend.h"
#include "sigv4.h"
#include "wb_internal.h"

#define HTTP_POOL 64

typedef struct sqsq {
    char *url[WB_LQ__COUNT];
    char *endpoint[WB_LQ__COUNT]; /* where requests for that queue go */
    char *host[WB_LQ__COUNT];     /* the Host header for that endpoint */
    char *region[WB_LQ__COUNT];
    wb__aws_provider *creds;
    pthread_mutex_t lock;
    wb__http *idle[HTTP_POOL];
    size_t n_idle;
    atomic_uint wake_gen; /* wb__queue_ops.wake: long polls begun before end */
} sqsq;

/* A long poll watches the handle's wake-up count from its start. */
typedef struct watch {
    sqsq *q;
    unsigned gen;
} watch;

static bool woken(void *ctx)
{
    const watch *w = ctx;
    return atomic_load(&w->q->wake_gen) != w->gen;
}

static const char *env_nonempty(const char *n)
{
    const char *v = getenv(n);
    return v && *v ? v : NULL;
}

/* "scheme://host[:port]" of a URL into *base and "host[:port]" into *host. */
static bool split_url(const char *url, char **base, char **host)
{
    const char *s = strstr(url, "://");
    if (!s)
        return false;
    const char *h = s + 3;
    size_t hl = strcspn(h, "/?#");
    if (hl == 0)
        return false;
    *base = wb__strndup(url, (size_t)(h - url) + hl);
    *host = wb__strndup(h, hl);
    /* a default port is not part of the Host header curl sends */
    if (*host) {
        size_t n = strlen(*host);
        if (strncmp(url, "https://", 8) == 0 && n > 4 && strcmp(*host + n - 4, ":443") == 0)
            (*host)[n - 4] = '\0';
        if (strncmp(url, "http://", 7) == 0 && n > 3 && strcmp(*host + n - 3, ":80") == 0)
            (*host)[n - 3] = '\0';
    }
    return *base && *host;
}

/* The region an AWS SQS host names: sqs.<region>.amazonaws.com[.cn],
 * sqs.<region>.api.aws, <region>.queue.amazonaws.com, queue.amazonaws.com
 * (us-east-1); NULL for any other host. */
static char *region_of_host(const char *host)
{
    size_t hl = strcspn(host, ":");
    if (hl == 19 && strncmp(host, "queue.amazonaws.com", 19) == 0)
        return wb__strdup("us-east-1");
    const char *dot = memchr(host, '.', hl);
    if (!dot)
        return NULL;
    if (strncmp(host, "sqs.", 4) == 0) {
        const char *r = host + 4, *end = memchr(r, '.', hl - 4);
        if (end && (strncmp(end, ".amazonaws.com", 14) == 0 || strncmp(end, ".api.aws", 8) == 0))
            return wb__strndup(r, (size_t)(end - r));
        return NULL;
    }
    if (strncmp(dot, ".queue.amazonaws.com", 20) == 0)
        return wb__strndup(host, (size_t)(dot - host));
    return NULL;
}

/* ---- HTTP handles -------------------------------------------------------- */

static wb__http *take_http(sqsq *q)
{
    pthread_mutex_lock(&q->lock);
    wb__http *h = q->n_idle ? q->idle[--q->n_idle] : NULL;
    pthread_mutex_unlock(&q->lock);
    return h ? h : wb__http_new();
}

static void give_http(sqsq *q, wb__http *h)
{
    pthread_mutex_lock(&q->lock);
    if (q->n_idle < HTTP_POOL) {
        q->idle[q->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&q->lock);
    wb__http_free(h);
}

/* ---- one call ------------------------------------------------------------ */

static bool throttled(const char *code)
{
    static const char *const t[] = {"Throttling",
                                    "ThrottlingException",
                                    "RequestThrottled",
                                    "TooManyRequestsException",
                                    "RequestLimitExceeded",
                                    "AWS.SimpleQueueService.RequestThrottled",
                                    "ProvisionedThroughputExceededException",
                                    "SlowDown",
                                    "ServiceUnavailable",
                                    "InternalError",
                                    "InternalFailure"};
    for (size_t i = 0; code && i < WB__ARRAY_LEN(t); i++) {
        if (strcmp(code, t[i]) == 0)
            return true;
    }
    return false;
}

static wb_err classify(const char *code)
{
    if (!code)
        return WB_ERR_BACKEND;
    if (strstr(code, "QueueDoesNotExist") || strstr(code, "NonExistentQueue"))
        return WB_ERR_NOT_FOUND;
    if (strstr(code, "AccessDenied") || strstr(code, "InvalidClientTokenId") ||
        strstr(code, "SignatureDoesNotMatch") || strstr(code, "UnrecognizedClient") ||
        strstr(code, "MissingAuthenticationToken") || strstr(code, "ExpiredToken") ||
        strstr(code, "IncompleteSignature"))
        return WB_ERR_AUTH_REFUSED;
    if (strstr(code, "MessageNotInflight"))
        return WB_ERR_NOT_FOUND;
    if (throttled(code))
        return WB_ERR_BUSY;
    if (strstr(code, "Invalid") || strstr(code, "TooLong") || strstr(code, "Missing") ||
        strstr(code, "Unsupported") || strstr(code, "BatchEntryIdsNotDistinct") ||
        strstr(code, "EmptyBatchRequest") || strstr(code, "TooManyEntries"))
        return WB_ERR_INVALID_ARGUMENT;
    return WB_ERR_BACKEND;
}

/* The error code of an SQS JSON error: "__type" after its '#', else the
 * x-amzn-query-error header's code. */
static char *error_code(const json_t *j, const wb__http_response *r)
{
    const char *t = json_string_value(json_object_get(j, "__type"));
    if (t) {
        const char *h = strrchr(t, '#');
        return wb__strdup(h ? h + 1 : t);
    }
    if (r->query_error)
        return wb__strndup(r->query_error, strcspn(r->query_error, ";"));
    return NULL;
}

/* One request; w (may be NULL) ends a long poll early when the handle is
 * woken (WB_ERR_STATE). */
static wb_err call_watched(sqsq *q, wb_logical_queue lq, const char *action, json_t *req,
                           json_t **resp, unsigned timeout_ms, watch *w, char **detail)
{
    *resp = NULL;
    json_object_set_new(req, "QueueUrl", json_string(q->url[lq]));
    char *body = json_dumps(req, JSON_COMPACT);
    if (!body)
        return WB_ERR_NO_MEMORY;
    wb__http *h = take_http(q);
    if (!h) {
        free(body);
        return WB_ERR_NO_MEMORY;
    }
    wb__http_set_abort(h, w ? woken : NULL, w);
    char target[96];
    snprintf(target, sizeof target, "AmazonSQS.%s", action);
    wb_err err = WB_ERR_BACKEND;
    char *d = NULL;
    do { /* one attempt; the queue core retries what is marked retryable */
        wb__aws_creds cr;
        err = wb__aws_provider_get(q->creds, &cr, &d);
        if (err)
            break;
        wb__sigv4_header sh[] = {{"Host", q->host[lq]},
                                 {"Content-Type", "application/x-amz-json-1.0"},
                                 {"X-Amz-Target", target}};
        wb__sigv4_request sr = {.method = "POST",
                                .path = "/",
                                .headers = sh,
                                .n_headers = WB__ARRAY_LEN(sh),
                                .body = body,
                                .body_len = strlen(body),
                                .region = q->region[lq],
                                .service = "sqs",
                                .now = time(NULL)};
        wb__sigv4_result sig;
        err = wb__sigv4_sign(&sr, &cr, &sig, &d);
        if (err) {
            wb__aws_creds_clear(&cr);
            break;
        }
        char *hh = wb__asprintf("Host: %s", q->host[lq]);
        char *ht = wb__asprintf("X-Amz-Target: %s", target);
        char *hd = wb__asprintf("X-Amz-Date: %s", sig.amz_date);
        char *ha = wb__asprintf("Authorization: %s", sig.authorization);
        char *hs =
            cr.session_token ? wb__asprintf("X-Amz-Security-Token: %s", cr.session_token) : NULL;
        const char *hdrs[] = {hh, "Content-Type: application/x-amz-json-1.0", ht, hd, ha, hs, NULL};
        wb__http_response r;
        if (!hh || !ht || !hd || !ha || (cr.session_token && !hs)) {
            err = WB_ERR_NO_MEMORY;
        } else {
            err = wb__http_request(h, "POST", q->endpoint[lq], hdrs, body, strlen(body), 5000,
                                   timeout_ms, &r, &d);
        }
        free(hh);
        free(ht);
        free(hd);
        free(ha);
        free(hs);
        wb__sigv4_result_free(&sig);
        wb__aws_creds_clear(&cr);
        if (err == WB_ERR_NO_MEMORY)
            break;
        if (err) { /* no answer: the transport failed */
            err = wb__retryable(err);
            break;
        }
        json_error_t je;
        json_t *j = r.body_len ? json_loads(r.body, 0, &je) : json_object();
        if (r.status == 200 && j) {
            wb__http_response_free(&r);
            *resp = j;
            err = WB_OK;
            break;
        }
        char *code = j ? error_code(j, &r) : NULL;
        const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;
        if (!msg && j)
            msg = json_string_value(json_object_get(j, "Message"));
        d = wb__asprintf("SQS %s on %s: HTTP %ld%s%s%s%s", action, wb_logical_queue_name(lq),
                         r.status, code ? ", " : "", code ? code : "", msg ? ": " : "",
                         msg ? msg : (j ? "" : " (the answer is not JSON)"));
        err = classify(code);
        if (r.status >= 500 || r.status == 429 || throttled(code))
            err = wb__retryable(err);
        free(code);
        json_decref(j);
        wb__http_response_free(&r);
    } while (0);
    wb__http_set_abort(h, NULL, NULL);
    give_http(q, h);
    free(body);
    if (err)
        *detail = d;
    else
        free(d);
    return err;
}

static wb_err call(sqsq *q, wb_logical_queue lq, const char *action, json_t *req, json_t **resp,
                   unsigned timeout_ms, char **detail)
{
    return call_watched(q, lq, action, req, resp, timeout_ms, NULL, detail);
}

static void md5_hex(const void *data, size_t n, char hex[33])
{
    unsigned char md[16];
    unsigned int ml = 0;
    hex[0] = '\0';
    if (!EVP_Digest(data, n, md, &ml, EVP_md5(), NULL))
        return;
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* ---- operations -------------------------------------------------------- */

/* The "Failed" entries of a batch answer: each entry's result, and the first
 * failure's code and message in *detail. */
static void batch_failures(const json_t *resp, const char *action, wb_logical_queue lq,
                           const char *what, size_t n, wb_err *results, wb_err *first,
                           char **detail)
{
    size_t k;
    json_t *x;
    json_array_foreach(json_object_get(resp, "Failed"), k, x)
    {
        const char *id = json_string_value(json_object_get(x, "Id"));
        const char *code = json_string_value(json_object_get(x, "Code"));
        const char *msg = json_string_value(json_object_get(x, "Message"));
        size_t i = id ? strtoul(id, NULL, 10) : n;
        if (i >= n)
            continue;
        results[i] = classify(code);
        if (!*first) {
            *first = results[i];
            *detail = wb__asprintf("SQS %s on %s: %s %zu failed: %s%s%s", action,
                                   wb_logical_queue_name(lq), what, i, code ? code : "error",
                                   msg ? ": " : "", msg ? msg : "");
        }
    }
}

static wb_err sqs_send_batch(void *priv, wb_logical_queue lq, const wb_queue_entry *e, size_t n,
                             char (*ids)[WB_QUEUE_ID_MAX + 1], wb_err *results, char **detail)
{
    sqsq *q = priv;
    json_t *req = json_object(), *entries = json_array();
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%zu", i);
        json_t *x = json_object();
        json_object_set_new(x, "Id", json_string(id));
        json_object_set_new(x, "MessageBody", json_stringn(e[i].body, e[i].body_len));
        if (e[i].delay_s)
            json_object_set_new(x, "DelaySeconds", json_integer(e[i].delay_s));
        if (e[i].group_id)
            json_object_set_new(x, "MessageGroupId", json_string(e[i].group_id));
        if (e[i].dedup_id)
            json_object_set_new(x, "MessageDeduplicationId", json_string(e[i].dedup_id));
        json_array_append_new(entries, x);
        results[i] = WB_ERR_BACKEND;
    }
    json_object_set_new(req, "Entries", entries);
    json_t *resp;
    wb_err err = call(q, lq, "SendMessageBatch", req, &resp, 30000, detail);
    json_decref(req);
    if (err) {
        for (size_t i = 0; i < n; i++)
            results[i] = err;
        return err;
    }
    wb_err first = WB_OK;
    size_t k;
    json_t *x;
    json_array_foreach(json_object_get(resp, "Successful"), k, x)
    {
        const char *id = json_string_value(json_object_get(x, "Id"));
        const char *mid = json_string_value(json_object_get(x, "MessageId"));
        const char *md5 = json_string_value(json_object_get(x, "MD5OfMessageBody"));
        size_t i = id ? strtoul(id, NULL, 10) : n;
        if (i >= n || !mid)
            continue;
        char want[33];
        md5_hex(e[i].body, e[i].body_len, want);
        if (md5 && want[0] && strcmp(md5, want) != 0) {
            results[i] = WB_ERR_BACKEND;
            if (!first) {
                first = WB_ERR_BACKEND;
                *detail = wb__asprintf("SQS SendMessageBatch on %s: entry %zu arrived damaged "
                                       "(MD5 %s, sent %s)",
                                       wb_logical_queue_name(lq), i, md5, want);
            }
            continue;
        }
        snprintf(ids[i], WB_QUEUE_ID_MAX + 1, "%s", mid);
        results[i] = WB_OK;
    }
    batch_failures(resp, "SendMessageBatch", lq, "entry", n, results, &first, detail);
    for (size_t i = 0; i < n && !first; i++) {
        if (results[i] != WB_OK) {
            first = results[i];
            *detail = wb__asprintf("SQS SendMessageBatch on %s: no result for entry %zu",
                                   wb_logical_queue_name(lq), i);
        }
    }
    json_decref(resp);
    return first;
}

static wb_err sqs_receive(void *priv, wb_logical_queue lq, unsigned max, unsigned wait_s,
                          int visibility_s, wb_queue_message **out, size_t *n, char **detail)
{
    sqsq *q = priv;
    json_t *req = json_object();
    json_object_set_new(req, "MaxNumberOfMessages", json_integer(max));
    json_object_set_new(req, "WaitTimeSeconds", json_integer(wait_s));
    if (visibility_s >= 0)
        json_object_set_new(req, "VisibilityTimeout", json_integer(visibility_s));
    json_object_set_new(req, "AttributeNames", json_pack("[s]", "All"));
    json_object_set_new(req, "MessageSystemAttributeNames", json_pack("[s]", "All"));
    json_t *resp;
    watch w = {q, atomic_load(&q->wake_gen)};
    wb_err err = call_watched(q, lq, "ReceiveMessage", req, &resp, wait_s * 1000u + 15000u,
                              wait_s ? &w : NULL, detail);
    json_decref(req);
    if (err && wait_s && woken(&w)) { /* woken: the poll ends empty */
        free(*detail);
        *detail = NULL;
        *n = 0;
        *out = NULL;
        return WB_OK;
    }
    if (err)
        return err;
    json_t *msgs = json_object_get(resp, "Messages");
    size_t count = json_array_size(msgs);
    wb_queue_message *m = count ? calloc(count, sizeof *m) : NULL;
    size_t k = 0, i;
    json_t *x;
    json_array_foreach(msgs, i, x)
    {
        if (!m)
            break;
        const char *mid = json_string_value(json_object_get(x, "MessageId"));
        const char *rh = json_string_value(json_object_get(x, "ReceiptHandle"));
        json_t *b = json_object_get(x, "Body");
        const char *md5 = json_string_value(json_object_get(x, "MD5OfBody"));
        json_t *a = json_object_get(x, "Attributes");
        if (!mid || !rh || !json_is_string(b))
            continue;
        wb_queue_message *y = &m[k++];
        y->id = wb__strdup(mid);
        y->receipt = wb__strdup(rh);
        y->body_len = json_string_length(b);
        y->body = wb__strndup(json_string_value(b), y->body_len);
        const char *rc = json_string_value(json_object_get(a, "ApproximateReceiveCount"));
        const char *st = json_string_value(json_object_get(a, "SentTimestamp"));
        const char *g = json_string_value(json_object_get(a, "MessageGroupId"));
        y->receive_count = rc ? (unsigned)strtoul(rc, NULL, 10) : 1;
        y->sent_ms = st ? strtoull(st, NULL, 10) : 0;
        y->group_id = g ? wb__strdup(g) : NULL;
        if (!y->id || !y->receipt || !y->body || (g && !y->group_id)) {
            err = WB_ERR_NO_MEMORY;
            break;
        }
        char want[33];
        md5_hex(y->body, y->body_len, want);
        if (md5 && want[0] && strcmp(md5, want) != 0) {
            err = WB_ERR_BACKEND;
            *detail = wb__asprintf("SQS ReceiveMessage on %s: message %s arrived damaged (MD5 "
                                   "%s, computed %s)",
                                   wb_logical_queue_name(lq), mid, md5, want);
            break;
        }
    }
    json_decref(resp);
    if ((count && !m) || err) {
        wb_queue_messages_free(m, k);
        if (!err)
            err = WB_ERR_NO_MEMORY;
        return err;
    }
    if (!k) {
        free(m);
        m = NULL;
    }
    *out = m;
    *n = k;
    return WB_OK;
}

static wb_err sqs_delete_batch(void *priv, wb_logical_queue lq, const char *const *receipts,
                               size_t n, wb_err *results, char **detail)
{
    sqsq *q = priv;
    json_t *req = json_object(), *entries = json_array();
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%zu", i);
        json_array_append_new(entries,
                              json_pack("{s:s, s:s}", "Id", id, "ReceiptHandle", receipts[i]));
        results[i] = WB_ERR_BACKEND;
    }
    json_object_set_new(req, "Entries", entries);
    json_t *resp;
    wb_err err = call(q, lq, "DeleteMessageBatch", req, &resp, 30000, detail);
    json_decref(req);
    if (err) {
        for (size_t i = 0; i < n; i++)
            results[i] = err;
        return err;
    }
    size_t k;
    json_t *x;
    json_array_foreach(json_object_get(resp, "Successful"), k, x)
    {
        const char *id = json_string_value(json_object_get(x, "Id"));
        size_t i = id ? strtoul(id, NULL, 10) : n;
        if (i < n)
            results[i] = WB_OK;
    }
    wb_err first = WB_OK;
    batch_failures(resp, "DeleteMessageBatch", lq, "receipt", n, results, &first, detail);
    json_decref(resp);
    return first;
}

static wb_err sqs_change_visibility(void *priv, wb_logical_queue lq, const char *receipt,
                                    unsigned visibility_s, char **detail)
{
    json_t *req = json_pack("{s:s, s:I}", "ReceiptHandle", receipt, "VisibilityTimeout",
                            (json_int_t)visibility_s);
    json_t *resp;
    wb_err err = call(priv, lq, "ChangeMessageVisibility", req, &resp, 30000, detail);
    json_decref(req);
    json_decref(resp);
    return err;
}

static uint64_t attr_u64(const json_t *attrs, const char *name)
{
    const char *v = json_string_value(json_object_get(attrs, name));
    return v ? strtoull(v, NULL, 10) : 0;
}

static wb_err sqs_counts(void *priv, wb_logical_queue lq, wb_queue_counts *out, char **detail)
{
    json_t *req =
        json_pack("{s:[s,s,s]}", "AttributeNames", "ApproximateNumberOfMessages",
                  "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed");
    json_t *resp;
    wb_err err = call(priv, lq, "GetQueueAttributes", req, &resp, 30000, detail);
    json_decref(req);
    if (err)
        return err;
    json_t *a = json_object_get(resp, "Attributes");
    out->visible = attr_u64(a, "ApproximateNumberOfMessages");
    out->in_flight = attr_u64(a, "ApproximateNumberOfMessagesNotVisible");
    out->delayed = attr_u64(a, "ApproximateNumberOfMessagesDelayed");
    json_decref(resp);
    return WB_OK;
}

/* ---- open and close ---------------------------------------------------- */

static void sqs_close(void *priv)
{
    sqsq *q = priv;
    for (int i = 0; i < WB_LQ__COUNT; i++) {
        free(q->url[i]);
        free(q->endpoint[i]);
        free(q->host[i]);
        free(q->region[i]);
    }
    for (size_t i = 0; i < q->n_idle; i++)
        wb__http_free(q->idle[i]);
    wb__aws_provider_free(q->creds);
    pthread_mutex_destroy(&q->lock);
}

static wb_err sqs_open(void *priv, const wb_config *cfg, const wb_queue_opts *opts, char **detail)
{
    /* SQS's redrive policy lives on the queue, not here; the body limit and
     * the retries are the core's */
    (void)opts;
    sqsq *q = priv;
    pthread_mutex_init(&q->lock, NULL);
    const char *override = env_nonempty("AWS_ENDPOINT_URL_SQS");
    const char *override_var = "AWS_ENDPOINT_URL_SQS";
    if (!override) {
        override = env_nonempty("AWS_ENDPOINT_URL");
        override_var = "AWS_ENDPOINT_URL";
    }
    const char *cfg_region = wb_config_aws_region(cfg);
    q->creds = wb__aws_provider_new(cfg_region);
    wb_err err = q->creds ? WB_OK : WB_ERR_NO_MEMORY;
    for (int i = 0; !err && i < WB_LQ__COUNT; i++) {
        const char *url = wb_config_sqs_url(cfg, (wb_logical_queue)i);
        if (!url) {
            *detail = wb__asprintf("%s is not set; the sqs queue needs all eight queue URLs",
                                   wb_logical_queue_variable((wb_logical_queue)i));
            err = WB_ERR_CONFIG;
            break;
        }
        q->url[i] = wb__strdup(url);
        char *base = NULL, *host = NULL;
        if (!split_url(override ? override : url, &base, &host)) {
            *detail = wb__asprintf("%s (%s) is not an http or https URL",
                                   override ? override_var
                                            : wb_logical_queue_variable((wb_logical_queue)i),
                                   override ? override : url);
            free(base);
            free(host);
            err = WB_ERR_CONFIG;
            break;
        }
        q->endpoint[i] = wb__asprintf("%s/", base);
        q->host[i] = host;
        free(base);
        char *qb = NULL, *qh = NULL;
        char *r = split_url(url, &qb, &qh) ? region_of_host(qh) : NULL;
        free(qb);
        free(qh);
        q->region[i] = r ? r : wb__strdup(cfg_region ? cfg_region : "us-east-1");
        if (!q->url[i] || !q->endpoint[i] || !q->region[i])
            err = WB_ERR_NO_MEMORY;
    }
    /* Refuse at startup what would fail later: no credentials, or a queue
     * that does not exist. */
    for (int i = 0; !err && i < WB_LQ__COUNT; i++) {
        json_t *req = json_pack("{s:[s]}", "AttributeNames", "QueueArn"), *resp = NULL;
        char *d = NULL;
        err = call(q, (wb_logical_queue)i, "GetQueueAttributes", req, &resp, 15000, &d);
        json_decref(req);
        json_decref(resp);
        if (err) {
            *detail = wb__asprintf("%s (%s): %s", wb_logical_queue_variable((wb_logical_queue)i),
                                   q->url[i], d ? d : "");
            free(d);
        }
    }
    if (err)
        sqs_close(q);
    return err;
}

static void sqs_wake(void *priv)
{
    sqsq *q = priv;
    atomic_fetch_add(&q->wake_gen, 1);
}

const wb__queue_ops wb__sqs_queue_ops = {
    .version = WB__QUEUE_OPS_VERSION,
    .name = "sqs",
    .priv_size = sizeof(sqsq),
    .open = sqs_open,
    .send_batch = sqs_send_batch,
    .receive = sqs_receive,
    .delete_batch = sqs_delete_batch,
    .change_visibility = sqs_change_visibility,
    .counts = sqs_counts,
    .close = sqs_close,
    .wake = sqs_wake,
};
