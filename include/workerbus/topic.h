/**
 * @file topic.h
 * Worker topics and ULIDs.
 *
 * Topics: `<ns>/readonly/<pool>/<worker>` (server to worker) and
 * `<ns>/writeonly/<pool>/<worker>` (worker to server), where pool and worker
 * are ULIDs. ULIDs are 26 characters of Crockford base32 (0-9 and A-Z without
 * I, L, O, U), first character 0-7; input is accepted in any case, output is
 * always upper case. All functions here are pure and thread-safe.
 */
#ifndef WORKERBUS_TOPIC_H
#define WORKERBUS_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Characters in a ULID's text form. */
#define WB_ULID_LEN 26
/** Buffer size for a ULID's text form with its NUL. */
#define WB_ULID_STR_SIZE 27

/** IoT Core: a topic is at most this many bytes (UTF-8). */
#define WB_IOT_TOPIC_MAX_BYTES 256
/** IoT Core: a topic has at most this many '/'. */
#define WB_IOT_TOPIC_MAX_SLASHES 7
/** The longest namespace that keeps every worker topic within IoT Core's
 *  limits: 256 - strlen("/writeonly/") - 2 * 26 - 1. */
#define WB_NAMESPACE_MAX_BYTES 192
/** The most '/' a namespace may hold: 7 minus the 3 a worker topic adds. */
#define WB_NAMESPACE_MAX_SLASHES 4
/** Buffer size that holds any topic built by wb_topic_build() with its NUL. */
#define WB_TOPIC_BUF_SIZE (WB_IOT_TOPIC_MAX_BYTES + 1)

/** A ULID's 128-bit value, big-endian. */
typedef struct wb_ulid {
    uint8_t bytes[16];
} wb_ulid;

/**
 * Parses a ULID's text form (any case).
 * @param text NUL-terminated; exactly 26 characters.
 * @param out  receives the value; untouched on error.
 * @return ::WB_OK, or ::WB_ERR_INVALID_ARGUMENT for a NULL argument, a wrong
 *         length, a character outside the alphabet (I, L, O and U included),
 *         or a first character above 7 (the value would overflow 128 bits).
 */
WB_API wb_err wb_ulid_parse(const char *text, wb_ulid *out);

/** Writes the canonical (upper-case) text of a ULID into out, NUL-terminated. */
WB_API void wb_ulid_format(const wb_ulid *ulid, char out[WB_ULID_STR_SIZE]);

/**
 * Validates a ULID's text and writes its canonical form.
 * @return ::WB_OK, or ::WB_ERR_INVALID_ARGUMENT as wb_ulid_parse().
 */
WB_API wb_err wb_ulid_canonical(const char *text, char out[WB_ULID_STR_SIZE]);

/**
 * Makes a new ULID: 48 bits of milliseconds since the epoch, then 80 random
 * bits from the operating system's generator.
 * @return ::WB_OK, ::WB_ERR_INVALID_ARGUMENT (NULL out) or ::WB_ERR_IO when the
 *         system's random source fails.
 */
WB_API wb_err wb_ulid_new(wb_ulid *out);

/** Topic directions. */
typedef enum wb_topic_dir {
    WB_TOPIC_READONLY = 0,  /**< server to worker: `<ns>/readonly/...` */
    WB_TOPIC_WRITEONLY = 1, /**< worker to server: `<ns>/writeonly/...` */
} wb_topic_dir;

/** "readonly" or "writeonly"; NULL outside the enum. */
WB_API const char *wb_topic_dir_name(wb_topic_dir dir);

/**
 * Checks a topic namespace: non-empty, valid UTF-8 without control
 * characters, no '+', '#', not starting with '$', no leading, trailing or
 * doubled '/', at most ::WB_NAMESPACE_MAX_BYTES bytes and
 * ::WB_NAMESPACE_MAX_SLASHES slashes.
 * @param why if not NULL and the namespace is refused, receives a static
 *            sentence saying why.
 * @return ::WB_OK, ::WB_ERR_INVALID_ARGUMENT, or ::WB_ERR_TOO_LARGE (length
 *         or slashes over IoT Core's limits).
 */
WB_API wb_err wb_namespace_check(const char *ns, const char **why);

/**
 * Builds `<ns>/<dir>/<pool>/<worker>` with the ULIDs in canonical form.
 * @param buf    receives the NUL-terminated topic.
 * @param size   size of buf; ::WB_TOPIC_BUF_SIZE is always enough.
 * @param len    if not NULL, receives the topic's length.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT for a bad namespace, direction or
 *         ULID; ::WB_ERR_TOO_LARGE when the namespace breaks IoT Core's
 *         limits or buf is too small (buf then holds an empty string).
 */
WB_API wb_err wb_topic_build(char *buf, size_t size, const char *ns, wb_topic_dir dir,
                             const char *pool, const char *worker, size_t *len);

/** A parsed worker topic. */
typedef struct wb_topic_parts {
    wb_topic_dir dir;
    char pool[WB_ULID_STR_SIZE];   /**< canonical (upper case) */
    char worker[WB_ULID_STR_SIZE]; /**< canonical (upper case) */
} wb_topic_parts;

/**
 * Parses a worker topic under namespace ns.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT when the topic is not
 *         `<ns>/readonly|writeonly/<ulid>/<ulid>` (out untouched).
 */
WB_API wb_err wb_topic_parse(const char *topic, const char *ns, wb_topic_parts *out);

/**
 * Checks a topic name against IoT Core's limits (at most 256 bytes and 7
 * slashes; no wildcard; not empty).
 * @return ::WB_OK, ::WB_ERR_INVALID_ARGUMENT (NULL, empty or wildcard) or
 *         ::WB_ERR_TOO_LARGE.
 */
WB_API wb_err wb_topic_check_iot_limits(const char *topic);

#ifdef __cplusplus
}
#endif
#endif
