/* Backend tables of an interface: the ones built in, test overrides, and
 * the checks every operations table goes through. */
#include <stdlib.h>
#include <string.h>

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

static const wb__backend *find(const char *kind, unsigned type)
{
    for (const wb__backend *b = wb__backends; b->kind; b++) {
        if (b->type == type && strcmp(b->kind, kind) == 0)
            return b;
    }
    return NULL;
}

const void *wb__backend_ops(const char *kind, unsigned type)
{
    const wb__backend *b = find(kind, type);
    return b ? b->ops : NULL;
}

bool wb__backend_built(const char *kind, unsigned type)
{
    return find(kind, type) != NULL;
}

wb_err wb__backend_refusal(const char *kind, const char *name, char **detail)
{
    wb__buf built = WB__BUF_INIT;
    for (const wb__backend *b = wb__backends; b->kind; b++) {
        if (strcmp(b->kind, kind) == 0)
            wb__buf_printf(&built, "%s%s", built.len ? ", " : "", b->name);
    }
    char *list = wb__buf_take(&built);
    *detail = wb__asprintf("the %s %s backend is not built into this library (it was left out "
                           "with the meson option -D%s=disabled; build with -D%s=enabled); "
                           "%s backends built in: %s",
                           name, kind, name, name, kind, list && *list ? list : "none");
    free(list);
    return WB_ERR_NOT_BUILT_IN;
}

const void *wb__registry_get(wb__registry *r, unsigned type)
{
    if (type >= WB__REGISTRY_SLOTS)
        return NULL;
    pthread_mutex_lock(&r->lock);
    const void *ops = r->override[type];
    pthread_mutex_unlock(&r->lock);
    return ops ? ops : wb__backend_ops(r->kind, type);
}

void wb__registry_set(wb__registry *r, unsigned type, const void *ops)
{
    if (type >= WB__REGISTRY_SLOTS)
        return;
    pthread_mutex_lock(&r->lock);
    r->override[type] = ops;
    pthread_mutex_unlock(&r->lock);
}
