/* The last error of a handle, as each thread saw it. A failing call records
 * its detail for the calling thread, so threads sharing a handle never read
 * each other's detail; problems found by a handle's own I/O thread (a lost
 * connection) are given when the thread has nothing newer. */
#include <stdio.h>
#include <stdlib.h>

#include "wb_internal.h"

static _Thread_local struct {
    const void *h;
    char msg[1024];
} last;

wb_err wb__fail(const void *h, wb_err err, char *detail)
{
    last.h = h;
    snprintf(last.msg, sizeof last.msg, "%s", detail ? detail : wb_strerror(err));
    free(detail);
    return err;
}

wb_err wb__ok(const void *h)
{
    if (last.h == h)
        last.msg[0] = '\0';
    return WB_OK;
}

const char *wb__last_error(const void *h, const char *async)
{
    if (last.h == h && last.msg[0])
        return last.msg;
    last.h = h;
    snprintf(last.msg, sizeof last.msg, "%s", async ? async : "");
    return last.msg;
}

void wb__forget(const void *h)
{
    if (last.h == h)
        last.h = NULL;
}
