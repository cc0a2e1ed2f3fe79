/* Internal declarations shared across the portable layer (not installed). */
#ifndef WB_INTERNAL_H
#define WB_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "workerbus/workerbus.h"

#define WB__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define WB__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WB__PRINTF(f, a)
#endif

/* ---- time and backoff (backoff.c) --------------------------------------- */

#include <stdint.h>
/* A delay for retry number `attempt` (0-based): min_ms doubled per attempt up
 * to max_ms, then jittered to between half and all of that. */
unsigned wb__backoff_ms(unsigned attempt, unsigned min_ms, unsigned max_ms);
uint32_t wb__random32(void);
/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t wb__now_ms(void);
/* pthread_cond_timedwait() for at most ms milliseconds (lock held). */
#include <pthread.h>
int wb__cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *lock, unsigned ms);

/* ---- retries (backoff.c) ------------------------------------------------ */

/* A backend operation makes one attempt and never sleeps or loops. When its
 * failure is worth trying again (a lost or refused connection, a timeout,
 * throttling, a server error) it says so by returning wb__retryable(code);
 * the interface's core then owns the one retry loop (wb__retry_again()) and
 * hands the caller the plain code. */
#define WB__RETRYABLE 0x10000
static inline wb_err wb__retryable(wb_err code)
{
    return (wb_err)((int)code | WB__RETRYABLE);
}
static inline bool wb__is_retryable(wb_err err)
{
    return ((int)err & WB__RETRYABLE) != 0;
}
static inline wb_err wb__err_code(wb_err err)
{
    return (wb_err)((int)err & ~WB__RETRYABLE);
}

/* The state of one operation's retries. */
typedef struct wb__retry {
    const char *component;   /* for the log: "queue", "broker" */
    const char *what;        /* the operation, e.g. "send_batch on iot" */
    unsigned limit_ms;       /* how long to keep trying; 0: one attempt */
    unsigned min_ms, max_ms; /* the backoff's range */
    uint64_t start_ms;
    unsigned attempt;
    /* NULL, or a generation that ends the retries when it moves from
     * stop_at (a wake-up to stop: wb_drain_stop()); set after
     * wb__retry_start(). stopped: it did. */
    const _Atomic unsigned *stop_gen;
    unsigned stop_at;
    bool stopped;
} wb__retry;

/* Starts counting: the first attempt is about to run. */
void wb__retry_start(wb__retry *r, const char *component, const char *what, unsigned limit_ms,
                     unsigned min_ms, unsigned max_ms);
/* After a failed attempt: true when err is retryable and the limit allows
 * another attempt, after sleeping the backoff (logged at the first retry and
 * every tenth, with detail, which stays the caller's); false: stop, err
 * stands. A move of stop_gen ends it, within 50 ms even while it sleeps. */
bool wb__retry_again(wb__retry *r, wb_err err, const char *detail);
/* After the last attempt: an outage that was retried is logged as ended,
 * with how long it lasted (recovered: a warning; given up: an error). */
void wb__retry_end(const wb__retry *r, wb_err err, const char *detail);

/* ---- backend tables (registry.c) ---------------------------------------- */

/* One backend compiled into this library. The list, wb__backends[], is made
 * by backends/meson.build from its list of backends; it ends with an entry
 * whose kind is NULL. */
typedef struct wb__backend {
    const char *kind; /* "broker" or "queue" */
    unsigned type;    /* wb_broker_type or wb_queue_type */
    const char *name; /* also the name of its meson option */
    const void *ops;  /* const wb__broker_ops * or const wb__queue_ops *; NULL in
                       * the plugin's copy for the broker backends it lacks */
} wb__backend;
extern const wb__backend wb__backends[];

/* The operations of the backend of this kind and type compiled in, or NULL. */
const void *wb__backend_ops(const char *kind, unsigned type);
/* Whether the library was built with the backend of this kind and type. */
bool wb__backend_built(const char *kind, unsigned type);
/* WB_ERR_NOT_BUILT_IN with a detail that names the meson option to build it
 * with and the backends of this kind that are built in. */
wb_err wb__backend_refusal(const char *kind, const char *name, char **detail);

#define WB__REGISTRY_SLOTS 2
typedef struct wb__registry {
    pthread_mutex_t lock;
    const char *kind;                         /* of wb__backends[] */
    const void *override[WB__REGISTRY_SLOTS]; /* set by tests */
} wb__registry;

/* WB_OK, or WB_ERR_INVALID_ARGUMENT with a detail saying that the table of
 * this kind ("broker", "queue") has the wrong version or lacks `missing`. */
wb_err wb__ops_refusal(const char *kind, const char *name, unsigned version, unsigned expected,
                       const char *missing, char **detail);
/* A test's override, else the backend compiled in, else NULL. */
const void *wb__registry_get(wb__registry *r, unsigned type);
void wb__registry_set(wb__registry *r, unsigned type, const void *ops);

/* ---- last errors of handles (lasterror.c) -------------------------------- */

/* Records a failure of the calling thread on handle h (detail taken over,
 * NULL: the code's text); returns err. */
wb_err wb__fail(const void *h, wb_err err, char *detail);
/* Records a success of the calling thread on h; returns WB_OK. */
wb_err wb__ok(const void *h);
/* The calling thread's last failure on h, else async (may be NULL), else "". */
const char *wb__last_error(const void *h, const char *async);
/* Forgets h (it is being freed). */
void wb__forget(const void *h);

/* ---- logging (log.c) --------------------------------------------------- */

bool wb__log_enabled(wb_log_level level);
void wb__log(wb_log_level level, const char *component, const char *fmt, ...) WB__PRINTF(3, 4);

/* ---- growable string (strbuf.c) ---------------------------------------- */

/* A NUL-terminated, growable string. On allocation failure it sets `failed`
 * and ignores further appends, so callers check once at the end. */
typedef struct wb__buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} wb__buf;

#define WB__BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0, false                                                                          \
    }

void wb__buf_append(wb__buf *b, const char *s, size_t n);
void wb__buf_puts(wb__buf *b, const char *s);
void wb__buf_putc(wb__buf *b, char c);
void wb__buf_printf(wb__buf *b, const char *fmt, ...) WB__PRINTF(2, 3);
void wb__buf_vprintf(wb__buf *b, const char *fmt, va_list ap) WB__PRINTF(2, 0);
/* Returns the string (caller frees) and resets b; NULL if anything failed. */
char *wb__buf_take(wb__buf *b);
void wb__buf_free(wb__buf *b);

/* Appends s[0..n) with bytes below 0x20, 0x7f and invalid UTF-8 written as
 * \xNN, so a value can be shown on one line without ambiguity. */
void wb__buf_put_escaped(wb__buf *b, const char *s, size_t n);

char *wb__strndup(const char *s, size_t n);
char *wb__strdup(const char *s);
WB__PRINTF(1, 2) char *wb__asprintf(const char *fmt, ...);

/* ---- text helpers (text.c) --------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
size_t wb__utf8_seq_len(const unsigned char *s, size_t n);
bool wb__utf8_valid(const char *s, size_t n);
/* Damerau-Levenshtein (optimal string alignment) distance, case-sensitive. */
size_t wb__edit_distance(const char *a, const char *b);
bool wb__has_outer_space(const char *s, size_t n);

/* ---- addresses and URLs (netaddr.c) ------------------------------------ */

typedef enum wb__host_kind { WB__HOST_DNS, WB__HOST_IPV4, WB__HOST_IPV6 } wb__host_kind;

/* Checks a host name (DNS name or dotted IPv4; no brackets). Returns NULL when
 * valid, else a static reason. */
const char *wb__host_check(const char *host, size_t n, wb__host_kind *kind);

/* Parses a decimal port 1-65535. Returns NULL when valid, else a reason. */
const char *wb__port_parse(const char *s, size_t n, unsigned *port);

/* Parses "host:port" (and "tls://host:port" when allow_tls): a DNS name, a
 * dotted IPv4 address or a bracketed IPv6 address, and a port 1-65535.
 * Returns NULL and a new *host (without brackets), or a static reason. */
const char *wb__hostport_parse(const char *s, bool allow_tls, char **host, unsigned *port,
                               bool *tls);

/* The AWS region shape: us-east-1, us-gov-west-1, cn-north-1, ... */
bool wb__aws_region_valid(const char *s, size_t n);

/* An http(s) URL split into parts (pointers into the input). */
typedef struct wb__url {
    const char *scheme;
    size_t scheme_len;
    const char *userinfo;
    size_t userinfo_len; /* NULL when absent */
    const char *host;
    size_t host_len; /* IPv6 without brackets */
    wb__host_kind host_kind;
    unsigned port; /* 0 when absent */
    const char *path;
    size_t path_len; /* from the first '/', may be 0 */
    const char *query;
    size_t query_len; /* after '?', NULL when absent */
    const char *fragment;
    size_t fragment_len;
} wb__url;

/* Parses scheme://[userinfo@]host[:port][/path][?query][#fragment].
 * Returns NULL when well formed, else a static reason. */
const char *wb__url_parse(const char *s, size_t n, wb__url *u);

/* ---- secrets (redact.c) ------------------------------------------------- */

/* Appends a libpq connection string (URI or key=value) with every secret
 * replaced by "****": the values of password and sslpassword (however the
 * key is spelt or encoded), a URI's user-info password, and the same inside
 * values that are themselves connection strings or URIs (dbname=postgres://
 * u:PW@...). Works on lengths: s may hold NUL bytes. */
void wb__redact_conninfo(wb__buf *out, const char *s, size_t n);
/* Every secret inside a libpq connection string (decoded), as a
 * NULL-terminated list (wb__strv_free()), or NULL when there is none. */
char **wb__conninfo_secrets(const char *s, size_t n);
void wb__strv_free(char **v);
/* Appends a URL with the password of its userinfo replaced by "****". */
void wb__redact_url(wb__buf *out, const char *s, size_t n);
/* A copy of msg with every occurrence of a secret (NULL-terminated list,
 * may be NULL) inside "..." replaced. */
char *wb__redact_in_quotes(const char *msg, char *const *secrets);

/* ---- certificates (pki.c) ----------------------------------------------- */

/* The subject common name of a PEM certificate file, or NULL (caller frees). */
char *wb__pki_cert_cn(const char *cert_file);
/* 1 when the certificate is valid for host (DNS name or IP), 0 when not, -1
 * when the file cannot be read. */
int wb__pki_cert_matches_host(const char *cert_file, const char *host);

/* ---- env files (envfile.c) --------------------------------------------- */

typedef struct wb__kv {
    char *key;
    char *value;
    size_t value_len; /* a value read from a file may hold a NUL byte */
    unsigned line;    /* 1-based line in the file; 0 for other sources */
} wb__kv;

typedef struct wb__kv_list {
    wb__kv *items;
    size_t count;
    size_t cap;
} wb__kv_list;

typedef void (*wb__envfile_problem_fn)(void *ctx, unsigned line, const char *message,
                                       const char *hint);

/* The errno_out of wb__envfile_read() for a path that is not a regular file
 * (a FIFO, a device, a socket): such a file could be read forever. */
#define WB__ENOTREG (-1)
/* What wb__envfile_read()'s errno_out means, for a message. */
const char *wb__envfile_strerror(int e);

/* Reads KEY=VALUE lines from a regular file of at most 1 MiB. Malformed
 * lines are reported through fn and skipped. Returns WB_OK, WB_ERR_IO
 * (errno_out set) or WB_ERR_NO_MEMORY. */
wb_err wb__envfile_read(const char *path, wb__kv_list *out, wb__envfile_problem_fn fn, void *ctx,
                        int *errno_out);
/* Parses text already in memory (same rules). */
wb_err wb__envfile_parse(const char *text, size_t n, wb__kv_list *out, wb__envfile_problem_fn fn,
                         void *ctx);
wb_err wb__kv_push(wb__kv_list *l, const char *key, size_t key_len, const char *value,
                   size_t value_len, unsigned line);
void wb__kv_list_free(wb__kv_list *l);

/* Reads and checks only the message-queue variables of an environment file
 * (MESSAGE_QUEUE_TYPE, DATABASE_URL, the SQS URLs, the regions), as the
 * bundled broker's topic rule needs them. detail: the problems, one line. */
wb_err wb__config_load_queue(const char *env_file, wb_config **config, char **detail);

#endif
