/**
 * @file envelope.h
 * The envelope of a worker message in the iot queue.
 *
 * A worker publishes a JSON object on <ns>/writeonly/<pool>/<worker>. On
 * its way to the server's iot queue the message becomes what AWS IoT Core's
 * topic rule makes of it (SELECT *, Timestamp() as timestamp, topic(3) as
 * worker_pool_ulid, topic(4) as worker_ulid), base64 in the queue message
 * body. The bundled broker's topic rule writes the same envelope, so a
 * consumer cannot tell which broker carried a message.
 *
 * The three added fields replace any fields of the same names in the
 * worker's object. Numbers are carried as JSON numbers of at most 64-bit
 * integer or double precision.
 */
#ifndef WORKERBUS_ENVELOPE_H
#define WORKERBUS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "error.h"
#include "topic.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A decoded envelope. Initialize with ::WB_ENVELOPE_INIT; free with
 *  wb_envelope_clear(). */
typedef struct wb_envelope {
    char pool[WB_ULID_STR_SIZE];   /**< worker_pool_ulid */
    char worker[WB_ULID_STR_SIZE]; /**< worker_ulid */
    uint64_t timestamp_ms;         /**< when the broker took the message, Unix ms */
    /** The worker's JSON object without the three added fields, compact,
     *  NUL-terminated. */
    char *payload;
    size_t payload_len;
} wb_envelope;

/* clang-format off */
#define WB_ENVELOPE_INIT {{0}, {0}, 0, NULL, 0}
/* clang-format on */

/**
 * Makes the queue message body for a worker's payload: the object with the
 * three fields added, compact JSON, then base64.
 * @param body    receives a new NUL-terminated string (wb_free()).
 * @param detail  if not NULL, on failure receives why (wb_free()).
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT when the payload is not a JSON
 *         object (detail says what it is instead) or pool/worker are not
 *         ULIDs; ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_envelope_encode(const void *payload, size_t len, const char *pool,
                                 const char *worker, uint64_t timestamp_ms, char **body,
                                 size_t *body_len, char **detail);

/**
 * Decodes a body of the iot queue.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT when the body is not base64 of
 *         a JSON object with the three fields (detail says which part is
 *         wrong); ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_envelope_decode(const void *body, size_t len, wb_envelope *out, char **detail);

/** Frees what wb_envelope_decode() allocated; the struct can be reused. */
WB_API void wb_envelope_clear(wb_envelope *env);

#ifdef __cplusplus
}
#endif
#endif
