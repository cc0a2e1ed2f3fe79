/* A small HTTP client on libcurl (not installed): for SQS, the credential
 * sources and IoT's HTTPS publish. One wb__http per thread at a time; it
 * keeps its connection between requests. */
#ifndef WB_HTTP_H
#define WB_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "workerbus/error.h"

typedef struct wb__http wb__http;

typedef struct wb__http_response {
    long status; /* 0 when no response came */
    char *body;  /* NUL-terminated */
    size_t body_len;
    char *query_error; /* x-amzn-query-error header, if any */
    char *retry_after; /* Retry-After header, if any */
} wb__http_response;

wb__http *wb__http_new(void);
void wb__http_free(wb__http *h);

/* One request. headers: "Name: value" strings, NULL-terminated (may be NULL).
 * Returns WB_OK when a response came (any status); WB_ERR_TIMEOUT,
 * WB_ERR_CONNECTION_LOST or WB_ERR_IO with *detail otherwise. */
wb_err wb__http_request(wb__http *h, const char *method, const char *url,
                        const char *const *headers, const void *body, size_t body_len,
                        unsigned connect_timeout_ms, unsigned timeout_ms, wb__http_response *out,
                        char **detail);

/* The same, with curl's --connect-to ("host:port:to_host:to_port", or NULL)
 * and a CA file to verify the server with (NULL: the system's). */
wb_err wb__http_request_to(wb__http *h, const char *method, const char *url, const char *connect_to,
                           const char *ca_file, const char *const *headers, const void *body,
                           size_t body_len, unsigned connect_timeout_ms, unsigned timeout_ms,
                           wb__http_response *out, char **detail);

void wb__http_response_free(wb__http_response *r);

/* From now on, a request of h stops (WB_ERR_STATE, "aborted") as soon as
 * abort(ctx) answers true; curl asks about once a second while it waits for
 * an answer. NULL removes it. */
void wb__http_set_abort(wb__http *h, bool (*abort)(void *ctx), void *ctx);

/* Global libcurl initialization (idempotent, thread-safe). */
void wb__http_global_init(void);

#endif
