/* Error codes: static text and names. */
#include "wb_internal.h"

static const struct {
    const char *name;
    const char *text;
} errors[WB_ERR__COUNT] = {
    [WB_OK] = {"WB_OK", "success"},
    [WB_ERR_INVALID_ARGUMENT] = {"WB_ERR_INVALID_ARGUMENT", "invalid argument"},
    [WB_ERR_CONFIG] = {"WB_ERR_CONFIG", "invalid configuration"},
    [WB_ERR_NOT_SUPPORTED] = {"WB_ERR_NOT_SUPPORTED", "operation not supported by this backend"},
    [WB_ERR_NOT_BUILT_IN] = {"WB_ERR_NOT_BUILT_IN", "backend not built into this library"},
    [WB_ERR_TIMEOUT] = {"WB_ERR_TIMEOUT", "operation timed out"},
    [WB_ERR_CONNECTION_LOST] = {"WB_ERR_CONNECTION_LOST", "connection lost"},
    [WB_ERR_AUTH_REFUSED] = {"WB_ERR_AUTH_REFUSED", "authentication refused"},
    [WB_ERR_TOO_LARGE] = {"WB_ERR_TOO_LARGE", "exceeds a size or count limit"},
    [WB_ERR_BACKEND] = {"WB_ERR_BACKEND", "backend failure"},
    [WB_ERR_NO_MEMORY] = {"WB_ERR_NO_MEMORY", "out of memory"},
    [WB_ERR_IO] = {"WB_ERR_IO", "input/output error"},
    [WB_ERR_NOT_FOUND] = {"WB_ERR_NOT_FOUND", "not found"},
    [WB_ERR_STATE] = {"WB_ERR_STATE", "not allowed in the current state"},
    [WB_ERR_BUSY] = {"WB_ERR_BUSY", "busy: a concurrency limit was reached"},
};

WB_API const char *wb_strerror(wb_err err)
{
    if ((unsigned)err >= WB_ERR__COUNT)
        return "unknown error";
    return errors[err].text;
}

WB_API const char *wb_err_name(wb_err err)
{
    if ((unsigned)err >= WB_ERR__COUNT)
        return "WB_ERR_UNKNOWN";
    return errors[err].name;
}

WB_API const char *wb_version(void)
{
    return WB_VERSION_STRING;
}
