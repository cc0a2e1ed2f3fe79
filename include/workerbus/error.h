/**
 * @file error.h
 * Error codes shared by every workerbus function.
 *
 * Every fallible function returns a ::wb_err. ::WB_OK is zero, so `if (err)`
 * tests for failure. The static text of a code comes from wb_strerror(); the
 * detail of the last failure on a handle (what libpq, Paho, libmosquitto or
 * SQS said) comes from that handle's last-error function. Callers never read
 * errno.
 */
#ifndef WORKERBUS_ERROR_H
#define WORKERBUS_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Result codes. New codes are only ever appended. */
typedef enum wb_err {
    WB_OK = 0,               /**< success */
    WB_ERR_INVALID_ARGUMENT, /**< a caller-supplied argument is out of its domain */
    WB_ERR_CONFIG,           /**< the configuration is invalid (see the report) */
    WB_ERR_NOT_SUPPORTED,    /**< the backend does not support this operation */
    WB_ERR_NOT_BUILT_IN,     /**< the backend was left out of this build */
    WB_ERR_TIMEOUT,          /**< the operation did not finish in time */
    WB_ERR_CONNECTION_LOST,  /**< the connection dropped; retryable */
    WB_ERR_AUTH_REFUSED,     /**< the peer refused our credentials */
    WB_ERR_TOO_LARGE,        /**< a payload, topic or batch exceeds a limit */
    WB_ERR_BACKEND,          /**< the backend library or server failed; see the detail */
    WB_ERR_NO_MEMORY,        /**< an allocation failed */
    WB_ERR_IO,               /**< a file or socket operation failed; see the detail */
    WB_ERR_NOT_FOUND,        /**< the named thing does not exist */
    WB_ERR_STATE,            /**< the handle is not in a state that allows the call */
    WB_ERR_BUSY,             /**< a limit on concurrent work was reached; retryable */
} wb_err;

/** Number of defined codes (one past the last). */
#define WB_ERR__COUNT 15

/**
 * Static, human-readable text of an error code.
 * @return never NULL; "unknown error" for a value outside ::wb_err.
 */
WB_API const char *wb_strerror(wb_err err);

/**
 * The code's symbolic name, e.g. "WB_ERR_CONFIG".
 * @return never NULL; "WB_ERR_UNKNOWN" for a value outside ::wb_err.
 */
WB_API const char *wb_err_name(wb_err err);

#ifdef __cplusplus
}
#endif
#endif
