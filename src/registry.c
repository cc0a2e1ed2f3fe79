/* Backend tables of an interface: the ones built in, test overrides, and
 * the checks every operations table goes through. */
#include <stdlib.h>

#include "wb_internal.h"

wb_err wb__ops_refusal(const char *kind, const char *name, unsigned version, unsigned expected,
                       const char *missing, char **detail)
{
    if (version != expected) {
        *detail = wb__asprintf("%s backend \"%s\" has operations table version %u; this library "
                               "needs %u",
                               kind, name ? name : "?", version, expected);
        return WB_ERR_INVALID_ARGUMENT;
    }
    if (missing) {
        *detail = wb__asprintf("%s backend \"%s\" lacks the mandatory operation %s", kind,
                               name ? name : "?", missing);
        return WB_ERR_INVALID_ARGUMENT;
    }
    return WB_OK;
}

const void *wb__registry_get(wb__registry *r, unsigned type)
{
    if (type >= WB__REGISTRY_SLOTS)
        return NULL;
    pthread_mutex_lock(&r->lock);
    const void *ops = r->override[type] ? r->override[type] : r->builtin[type];
    pthread_mutex_unlock(&r->lock);
    return ops;
}

void wb__registry_set(wb__registry *r, unsigned type, const void *ops)
{
    if (type >= WB__REGISTRY_SLOTS)
        return;
    pthread_mutex_lock(&r->lock);
    r->override[type] = ops;
    pthread_mutex_unlock(&r->lock);
}
