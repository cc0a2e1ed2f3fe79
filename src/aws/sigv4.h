/* AWS Signature Version 4 (not installed): one signer for SQS, the IoT
 * WebSocket URL and the IoT data-plane publish, on OpenSSL's HMAC/SHA-256.
 * Checked against AWS's published test suite (tests/unit/data/sigv4). */
#ifndef WB_SIGV4_H
#define WB_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "workerbus/error.h"

/* Credentials; session_token may be NULL. */
typedef struct wb__aws_creds {
    char *access_key;
    char *secret_key;
    char *session_token;
    int64_t expires; /* Unix seconds; 0: never */
    char source[48]; /* where they came from, for messages ("environment", ...) */
} wb__aws_creds;

void wb__aws_creds_clear(wb__aws_creds *c);
/* Deep copy; false on allocation failure. */
int wb__aws_creds_copy(wb__aws_creds *dst, const wb__aws_creds *src);

typedef struct wb__sigv4_header {
    const char *name; /* any case */
    const char *value;
} wb__sigv4_header;

typedef struct wb__sigv4_request {
    const char *method;
    /* The path as the resource names it, before URI encoding: the signer
     * encodes it once (keeping '/'); "" means "/". */
    const char *path;
    /* The query as sent (percent-encoded, '&'-separated), or NULL. The signer
     * decodes each name and value, encodes them canonically and sorts. */
    const char *query;
    const wb__sigv4_header *headers; /* must include host; not x-amz-date */
    size_t n_headers;
    const void *body;
    size_t body_len;
    /* Hex SHA-256 of the payload, or "UNSIGNED-PAYLOAD"; NULL: computed. */
    const char *payload_hash;
    const char *region;
    const char *service;
    time_t now;
} wb__sigv4_request;

/* What the signer produced (all heap; free with wb__sigv4_result_free()). */
typedef struct wb__sigv4_result {
    char amz_date[17];   /* YYYYMMDD'T'HHMMSS'Z': the X-Amz-Date header */
    char *authorization; /* the Authorization header value */
    char *canonical;     /* the canonical request */
    char *string_to_sign;
    char signature[65];
    char *signed_headers;
} wb__sigv4_result;

/* Signs with headers. WB_ERR_INVALID_ARGUMENT (detail says why) or
 * WB_ERR_NO_MEMORY. A session token, when present, is signed as
 * x-amz-security-token; the caller sends that header too. */
wb_err wb__sigv4_sign(const wb__sigv4_request *req, const wb__aws_creds *creds,
                      wb__sigv4_result *out, char **detail);

/* Presigns a URL query (the IoT WebSocket form): returns the full query
 * string, X-Amz-Signature included. The session token is appended after the
 * signature when append_token_after (IoT's convention), else signed. */
char *wb__sigv4_presign_query(const wb__sigv4_request *req, const wb__aws_creds *creds,
                              unsigned expires_s, int append_token_after, char **detail);

void wb__sigv4_result_free(wb__sigv4_result *r);

/* The signing key of AWS's documentation (for tests): 32 bytes. */
void wb__sigv4_signing_key(const char *secret, const char *date8, const char *region,
                           const char *service, unsigned char key[32]);

/* RFC 3986 encoding of SigV4: unreserved characters kept, the rest as %XX
 * (upper case); '/' kept when keep_slash. Appends to a heap string. */
char *wb__uri_encode(const char *s, size_t n, int keep_slash);

/* Lower-case hex SHA-256 of data. */
void wb__sha256_hex(const void *data, size_t n, char hex[65]);

#endif
