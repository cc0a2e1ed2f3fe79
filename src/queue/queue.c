/* The message-queue interface: SQS's limits checked once, here, then the
 * backend chosen by the configuration. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "queue_backend.h"
#include "wb_internal.h"

struct wb_queue {
    const wb__queue_ops *ops;
    void *priv;
    const wb_config *cfg;
    wb_queue_opts opts;
    /* moved by every wb__queue_wake(): receives retrying an outage stop */
    _Atomic unsigned wake_gen;
};

static wb__registry backends = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .kind = "queue",
};

wb_err wb__queue_ops_check(const wb__queue_ops *ops, char **detail)
{
    if (!ops)
        return wb__ops_refusal("queue", NULL, 0, 0, "the table", detail);
    const char *missing = !ops->name                ? "name"
                          : !ops->open              ? "open"
                          : !ops->send_batch        ? "send_batch"
                          : !ops->receive           ? "receive"
                          : !ops->delete_batch      ? "delete_batch"
                          : !ops->change_visibility ? "change_visibility"
                          : !ops->counts            ? "counts"
                          : !ops->close             ? "close"
                                                    : NULL;
    return wb__ops_refusal("queue", ops->name, ops->version, WB__QUEUE_OPS_VERSION, missing,
                           detail);
}

wb_err wb__queue_set_backend(wb_queue_type type, const wb__queue_ops *ops)
{
    char *d = NULL;
    if ((unsigned)type > WB_QUEUE_POSTGRES || (ops && wb__queue_ops_check(ops, &d) != WB_OK)) {
        free(d);
        return WB_ERR_INVALID_ARGUMENT;
    }
    wb__registry_set(&backends, (unsigned)type, ops);
    return WB_OK;
}

/* ---- checks ----------------------------------------------------------------- */

/* The first byte offset of a character SQS refuses, or n when none. */
static size_t bad_char_at(const unsigned char *s, size_t n, unsigned *cp_out)
{
    size_t i = 0;
    while (i < n) {
        size_t l = wb__utf8_seq_len(s + i, n - i);
        if (l == 0) {
            *cp_out = s[i];
            return i;
        }
        unsigned cp = l == 1   ? s[i]
                      : l == 2 ? ((s[i] & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu)
                      : l == 3
                          ? ((s[i] & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu)
                          : ((s[i] & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) |
                                ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
        bool ok = cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
                  (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
        if (!ok) {
            *cp_out = cp;
            return i;
        }
        i += l;
    }
    return n;
}

static const char *id_refusal(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > WB_QUEUE_ID_MAX)
        return "must be 1-128 characters";
    for (size_t i = 0; i < n; i++) {
        if (id[i] < 0x21 || id[i] > 0x7e)
            return "may hold only printable ASCII characters without spaces";
    }
    return NULL;
}

static bool check_lq(wb_logical_queue lq, char **detail)
{
    if ((unsigned)lq < WB_LQ__COUNT)
        return true;
    *detail = wb__asprintf("%d is not a logical queue", (int)lq);
    return false;
}

static wb_err check_entry(const wb_queue *q, wb_logical_queue lq, const wb_queue_entry *e,
                          size_t index, char **detail)
{
    const char *name = wb_logical_queue_name(lq);
    bool fifo = wb_logical_queue_is_fifo(lq);
    if (!e || (!e->body && e->body_len)) {
        *detail = wb__asprintf("entry %zu: no body", index);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (e->body_len == 0) {
        *detail = wb__asprintf("entry %zu: the body is empty; SQS needs at least 1 byte", index);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (e->body_len > q->opts.max_body_bytes) {
        *detail = wb__asprintf("entry %zu: the body is %zu bytes; the limit is %zu "
                               "(wb_queue_opts.max_body_bytes, at most 1 MiB)",
                               index, e->body_len, q->opts.max_body_bytes);
        return WB_ERR_TOO_LARGE;
    }
    unsigned cp = 0;
    size_t at = bad_char_at(e->body, e->body_len, &cp);
    if (at < e->body_len) {
        *detail = wb__asprintf("entry %zu: byte %zu of the body (U+%04X or an invalid UTF-8 byte) "
                               "is not a character SQS accepts (#x9 #xA #xD #x20-#xD7FF "
                               "#xE000-#xFFFD #x10000-#x10FFFF); encode binary data, e.g. base64",
                               index, at, cp);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (e->delay_s > WB_QUEUE_DELAY_MAX_S || (fifo && e->delay_s)) {
        *detail =
            wb__asprintf("entry %zu: a delay of %u s is not accepted on %s (%s)", index, e->delay_s,
                         name, fifo ? "FIFO queues take no per-message delay" : "0-900 s");
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (!fifo && (e->group_id || e->dedup_id)) {
        *detail = wb__asprintf("entry %zu: %s is a standard queue: no message group or "
                               "deduplication id",
                               index, name);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (fifo && !e->group_id) {
        *detail = wb__asprintf("entry %zu: %s is a FIFO queue: a message group id is required",
                               index, name);
        return WB_ERR_INVALID_ARGUMENT;
    }
    const char *why;
    if (fifo && (why = id_refusal(e->group_id)) != NULL) {
        *detail = wb__asprintf("entry %zu: the message group id %s", index, why);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (fifo && e->dedup_id && (why = id_refusal(e->dedup_id)) != NULL) {
        *detail = wb__asprintf("entry %zu: the deduplication id %s", index, why);
        return WB_ERR_INVALID_ARGUMENT;
    }
    return WB_OK;
}

/* ---- the API ------------------------------------------------------------- */

WB_API wb_err wb_queue_open(const wb_config *config, const wb_queue_opts *opts, wb_queue **out)
{
    if (!out || !config || (opts && (opts->version < 1 || opts->version > WB_QUEUE_OPTS_VERSION)))
        return wb__fail(NULL, WB_ERR_INVALID_ARGUMENT,
                        wb__strdup("a configuration, an out pointer and options of version 1 to "
                                   "WB_QUEUE_OPTS_VERSION are required"));
    *out = NULL;
    wb_queue_opts o = WB_QUEUE_OPTS_INIT;
    if (opts && opts->version == 1) { /* the fields before retry_limit_ms */
        o.max_body_bytes = opts->max_body_bytes;
        o.max_receive_count = opts->max_receive_count;
    } else if (opts && opts->version == 2) { /* the fields before receive_linger_ms */
        o.max_body_bytes = opts->max_body_bytes;
        o.max_receive_count = opts->max_receive_count;
        o.retry_limit_ms = opts->retry_limit_ms;
    } else if (opts) {
        o = *opts;
    }
    o.version = WB_QUEUE_OPTS_VERSION;
    if (o.max_body_bytes == 0)
        o.max_body_bytes = WB_QUEUE_BODY_DEFAULT_MAX;
    if (o.max_body_bytes > WB_QUEUE_BODY_LIMIT)
        return wb__fail(
            NULL, WB_ERR_INVALID_ARGUMENT,
            wb__asprintf("max_body_bytes is %zu; SQS takes at most 1 MiB", o.max_body_bytes));
    if (o.max_receive_count == 0)
        o.max_receive_count = 3;
    if (o.receive_linger_ms > WB_QUEUE_LINGER_MAX_MS)
        return wb__fail(NULL, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("receive_linger_ms is %u; give 0-%u (ms)", o.receive_linger_ms,
                                     WB_QUEUE_LINGER_MAX_MS));
    wb_queue_type type = wb_config_queue_type(config);
    if (type == WB_QUEUE_POSTGRES && wb_config_broker_type(config) == WB_BROKER_IOTCORE)
        return wb__fail(NULL, WB_ERR_CONFIG,
                        wb__strdup("the postgres queue cannot be used with IoT Core: IoT Core "
                                   "delivers worker messages only to SQS"));
    const wb__queue_ops *ops = wb__registry_get(&backends, (unsigned)type);
    if (!ops) {
        char *d = NULL;
        wb_err err = wb__backend_refusal("queue", wb_queue_type_name(type), &d);
        return wb__fail(NULL, err, d);
    }
    wb_queue *q = calloc(1, sizeof *q);
    void *priv = ops->priv_size ? calloc(1, ops->priv_size) : NULL;
    if (!q || (ops->priv_size && !priv)) {
        free(q);
        free(priv);
        return wb__fail(NULL, WB_ERR_NO_MEMORY, NULL);
    }
    q->ops = ops;
    q->priv = priv;
    q->cfg = config;
    q->opts = o;
    char *d = NULL;
    /* one attempt: a server that cannot reach its queue at start says so
     * at once */
    wb_err err = wb__err_code(ops->open(priv, config, &q->opts, &d));
    if (err) {
        free(priv);
        free(q);
        return wb__fail(NULL, err, d);
    }
    *out = q;
    return wb__ok(NULL);
}

/* The logical queue and the size of a batch of entries or receipts. */
static wb_err batch_checks(const wb_queue *q, wb_logical_queue lq, const void *items, size_t n,
                           const char *what)
{
    char *d = NULL;
    if (!check_lq(lq, &d))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, d);
    if (n == 0 || n > WB_QUEUE_BATCH_MAX || !items)
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("a batch holds 1-10 %s, not %zu", what, n));
    return WB_OK;
}

/* The one retry loop of every operation: the backend makes one attempt and
 * marks a failure worth retrying (wb__retryable()); this retries it with
 * backoff and jitter until wb_queue_opts.retry_limit_ms has passed, the
 * same for every backend. */
static unsigned retry_limit(const wb_queue *q)
{
    unsigned l = q->opts.retry_limit_ms;
    return l == WB_QUEUE_NO_RETRY ? 0 : l ? l : WB_QUEUE_RETRY_DEFAULT_MS;
}

static void retry_start(const wb_queue *q, wb__retry *r, char *what, size_t size, const char *op,
                        wb_logical_queue lq)
{
    snprintf(what, size, "%s %s on %s", q->ops->name, op, wb_logical_queue_name(lq));
    wb__retry_start(r, "queue", what, retry_limit(q), 50, 2000);
}

/* Sets err to `call`, an attempt of operation op on lq, made again while the
 * retry loop allows; d holds the last attempt's detail. A wakeable one (the
 * receives) also stops retrying at a wake-up (wb__queue_wake(): a drain that
 * stops), as its long poll ends at one. */
#define RETRYING_AS(wakeable, q, op, lq, d, err, call)                                             \
    do {                                                                                           \
        wb__retry r_;                                                                              \
        char what_[96];                                                                            \
        retry_start(q, &r_, what_, sizeof what_, op, lq);                                          \
        if (wakeable) {                                                                            \
            r_.stop_gen = &(q)->wake_gen;                                                          \
            r_.stop_at = atomic_load(&(q)->wake_gen);                                              \
        }                                                                                          \
        do {                                                                                       \
            free(d);                                                                               \
            (d) = NULL;                                                                            \
            (err) = (call);                                                                        \
        } while ((err) && wb__retry_again(&r_, err, d));                                           \
        wb__retry_end(&r_, err, d);                                                                \
        (err) = wb__err_code(err);                                                                 \
    } while (0)
#define RETRYING(q, op, lq, d, err, call) RETRYING_AS(false, q, op, lq, d, err, call)

/* Per-entry results are plain codes, whatever a backend marked. */
static void plain_codes(wb_err *results, size_t n)
{
    for (size_t i = 0; i < n; i++)
        results[i] = wb__err_code(results[i]);
}

/* A FIFO entry without a deduplication id gets the SHA-256 of its body. */
static void content_dedup(const wb_queue_entry *e, char hex[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    EVP_Digest(e->body, e->body_len, md, &ml, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

WB_API wb_err wb_queue_send_batch(wb_queue *q, wb_logical_queue lq, const wb_queue_entry *entries,
                                  size_t n, wb_err *results)
{
    if (!q)
        return WB_ERR_INVALID_ARGUMENT;
    wb_err err = batch_checks(q, lq, entries, n, "entries");
    if (err)
        return err;
    char *d = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        err = check_entry(q, lq, &entries[i], i, &d);
        if (err)
            return wb__fail(q, err, d);
        total += entries[i].body_len;
    }
    if (total > q->opts.max_body_bytes)
        return wb__fail(q, WB_ERR_TOO_LARGE,
                        wb__asprintf("the batch's bodies add up to %zu bytes; a batch may carry "
                                     "%zu",
                                     total, q->opts.max_body_bytes));
    wb_queue_entry copy[WB_QUEUE_BATCH_MAX];
    char dedup[WB_QUEUE_BATCH_MAX][65];
    for (size_t i = 0; i < n; i++) {
        copy[i] = entries[i];
        if (wb_logical_queue_is_fifo(lq) && !copy[i].dedup_id) {
            content_dedup(&entries[i], dedup[i]);
            copy[i].dedup_id = dedup[i];
        }
    }
    wb_err local[WB_QUEUE_BATCH_MAX];
    char ids[WB_QUEUE_BATCH_MAX][WB_QUEUE_ID_MAX + 1];
    RETRYING(q, "send_batch", lq, d, err,
             q->ops->send_batch(q->priv, lq, copy, n, ids, results ? results : local, &d));
    plain_codes(results ? results : local, n);
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

WB_API wb_err wb_queue_send(wb_queue *q, wb_logical_queue lq, const wb_queue_entry *entry,
                            char id[WB_QUEUE_ID_MAX + 1])
{
    if (!q || !entry)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    if (!check_lq(lq, &d))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, d);
    wb_err err = check_entry(q, lq, entry, 0, &d);
    if (err)
        return wb__fail(q, err, d);
    wb_queue_entry copy = *entry;
    char dedup[65];
    if (wb_logical_queue_is_fifo(lq) && !copy.dedup_id) {
        content_dedup(entry, dedup);
        copy.dedup_id = dedup;
    }
    char ids[1][WB_QUEUE_ID_MAX + 1] = {""};
    wb_err result = WB_OK;
    RETRYING(q, "send", lq, d, err, q->ops->send_batch(q->priv, lq, &copy, 1, ids, &result, &d));
    result = wb__err_code(result);
    if (!err)
        err = result;
    if (!err && id)
        memcpy(id, ids[0], sizeof ids[0]);
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

/* The arguments of a receive. */
static wb_err receive_checks(wb_queue *q, wb_logical_queue lq, unsigned max, unsigned wait_s,
                             int visibility_s)
{
    char *d = NULL;
    if (!check_lq(lq, &d))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, d);
    if (max < 1 || max > WB_QUEUE_BATCH_MAX)
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("receive takes 1-10 messages at a time, not %u", max));
    if (wait_s > WB_QUEUE_WAIT_MAX_S)
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("a long poll lasts 0-20 s, not %u", wait_s));
    if (visibility_s < -1 || visibility_s > (int)WB_QUEUE_VISIBILITY_MAX_S)
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("the visibility timeout is 0-43200 s (or -1 for the "
                                     "queue's), not %d",
                                     visibility_s));
    return WB_OK;
}

WB_API wb_err wb_queue_receive(wb_queue *q, wb_logical_queue lq, unsigned int max,
                               unsigned int wait_s, int visibility_s, wb_queue_message **out,
                               size_t *n)
{
    if (!q || !out || !n)
        return WB_ERR_INVALID_ARGUMENT;
    *out = NULL;
    *n = 0;
    wb_err err = receive_checks(q, lq, max, wait_s, visibility_s);
    if (err)
        return err;
    char *d = NULL;
    RETRYING_AS(
        true, q, "receive", lq, d, err,
        (*out = NULL, *n = 0, q->ops->receive(q->priv, lq, max, wait_s, visibility_s, out, n, &d)));
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

WB_API void wb_queue_messages_free(wb_queue_message *msgs, size_t n)
{
    for (size_t i = 0; msgs && i < n; i++) {
        free(msgs[i].id);
        free(msgs[i].receipt);
        free(msgs[i].body);
        free(msgs[i].group_id);
    }
    free(msgs);
}

static bool receipt_ok(const char *r)
{
    return r && *r;
}

/* The arguments of a delete. */
static wb_err delete_checks(wb_queue *q, wb_logical_queue lq, const char *const *receipts, size_t n)
{
    wb_err err = batch_checks(q, lq, receipts, n, "receipts");
    if (err)
        return err;
    for (size_t i = 0; i < n; i++) {
        if (!receipt_ok(receipts[i]))
            return wb__fail(q, WB_ERR_INVALID_ARGUMENT, wb__asprintf("receipt %zu is empty", i));
    }
    return WB_OK;
}

WB_API wb_err wb_queue_delete_batch(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                                    size_t n, wb_err *results)
{
    if (!q)
        return WB_ERR_INVALID_ARGUMENT;
    wb_err err = delete_checks(q, lq, receipts, n);
    if (err)
        return err;
    char *d = NULL;
    wb_err local[WB_QUEUE_BATCH_MAX];
    RETRYING(q, "delete_batch", lq, d, err,
             q->ops->delete_batch(q->priv, lq, receipts, n, results ? results : local, &d));
    plain_codes(results ? results : local, n);
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

wb_err wb__queue_delete_each(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                             size_t n, wb_err *results)
{
    for (size_t i = 0; i < n; i++)
        results[i] = WB_OK;
    wb_err err = wb_queue_delete_batch(q, lq, receipts, n, results);
    for (size_t i = 0; err && i < n; i++)
        results[i] = results[i] ? results[i] : err;
    return err;
}

void *wb__queue_priv(const wb_queue *q)
{
    return q->priv;
}

wb_err wb__queue_delete_receive(wb_queue *q, wb_logical_queue lq, const char *const *receipts,
                                size_t nr, wb_err *results, unsigned max, unsigned wait_s,
                                int visibility_s, wb_queue_message **out, size_t *n)
{
    if (!q || !out || !n || !results)
        return WB_ERR_INVALID_ARGUMENT;
    *out = NULL;
    *n = 0;
    if (!q->ops->delete_receive) {
        wb_err err = wb__queue_delete_each(q, lq, receipts, nr, results);
        return err ? err : wb_queue_receive(q, lq, max, wait_s, visibility_s, out, n);
    }
    wb_err err = delete_checks(q, lq, receipts, nr);
    if (!err)
        err = receive_checks(q, lq, max, wait_s, visibility_s);
    if (err) {
        for (size_t i = 0; i < nr; i++)
            results[i] = err;
        return err;
    }
    char *d = NULL;
    RETRYING_AS(true, q, "delete_receive", lq, d, err,
                (*out = NULL, *n = 0,
                 q->ops->delete_receive(q->priv, lq, receipts, nr, results, max, wait_s,
                                        visibility_s, out, n, &d)));
    plain_codes(results, nr);
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

WB_API wb_err wb_queue_delete(wb_queue *q, wb_logical_queue lq, const char *receipt)
{
    wb_err result = WB_OK;
    wb_err err = wb_queue_delete_batch(q, lq, &receipt, 1, &result);
    return err ? err : result;
}

WB_API wb_err wb_queue_change_visibility(wb_queue *q, wb_logical_queue lq, const char *receipt,
                                         unsigned int visibility_s)
{
    if (!q)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    if (!check_lq(lq, &d))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, d);
    if (!receipt_ok(receipt))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, wb__strdup("the receipt is empty"));
    if (visibility_s > WB_QUEUE_VISIBILITY_MAX_S)
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT,
                        wb__asprintf("the visibility timeout is 0-43200 s, not %u", visibility_s));
    wb_err err;
    RETRYING(q, "change_visibility", lq, d, err,
             q->ops->change_visibility(q->priv, lq, receipt, visibility_s, &d));
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

WB_API wb_err wb_queue_counts_get(wb_queue *q, wb_logical_queue lq, wb_queue_counts *out)
{
    if (!q || !out)
        return WB_ERR_INVALID_ARGUMENT;
    char *d = NULL;
    if (!check_lq(lq, &d))
        return wb__fail(q, WB_ERR_INVALID_ARGUMENT, d);
    wb_err err;
    RETRYING(q, "counts", lq, d, err,
             (memset(out, 0, sizeof *out), q->ops->counts(q->priv, lq, out, &d)));
    return err ? wb__fail(q, err, d) : wb__ok(q);
}

WB_API const char *wb_queue_last_error(const wb_queue *q)
{
    return wb__last_error(q, NULL);
}

void wb__queue_wake(wb_queue *q)
{
    if (q)
        atomic_fetch_add(&q->wake_gen, 1);
    if (q && q->ops->wake)
        q->ops->wake(q->priv);
}

WB_API const char *wb_queue_backend(const wb_queue *q)
{
    return q ? q->ops->name : NULL;
}

WB_API void wb_queue_close(wb_queue *q)
{
    if (!q)
        return;
    q->ops->close(q->priv);
    free(q->priv);
    wb__forget(q);
    free(q);
}
