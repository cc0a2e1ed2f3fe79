/* The MQTT session machinery both MQTT engines share: outbox, subscriptions,
 * reconnect backoff, counters. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "wb_internal.h"

void wb__session_init(wb__session *s, size_t max_queued, unsigned backoff_min_ms,
                      unsigned backoff_max_ms)
{
    *s = (wb__session){.max_queued = max_queued,
                       .backoff_min_ms = backoff_min_ms,
                       .backoff_max_ms = backoff_max_ms};
}

void wb__session_free(wb__session *s)
{
    wb__session_clear_outbox(s);
    while (s->subs) {
        wb__sub *u = s->subs;
        s->subs = u->next;
        free(u->filter);
        free(u);
    }
}

/* ---- the outbox ---------------------------------------------------------- */

wb_err wb__session_enqueue(wb__session *s, const char *topic, const void *payload, size_t len,
                           int qos, const char *peer, wb__outmsg **out, char **detail)
{
    if (s->queued >= s->max_queued) {
        *detail = wb__asprintf("%zu messages are waiting for %s (max_queued): try again later, or "
                               "raise max_queued",
                               s->queued, peer);
        return WB_ERR_BUSY;
    }
    size_t tl = strlen(topic) + 1;
    wb__outmsg *m = malloc(sizeof *m + tl + len);
    if (!m)
        return WB_ERR_NO_MEMORY;
    *m = (wb__outmsg){
        .topic = m->data, .payload = m->data + tl, .len = len, .qos = qos, .seq = s->next_seq++};
    memcpy(m->data, topic, tl);
    if (len)
        memcpy(m->data + tl, payload, len);
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->queued++;
    s->published++;
    if (out)
        *out = m;
    return WB_OK;
}

wb__outmsg *wb__session_next(wb__session *s)
{
    wb__outmsg *m = s->cursor ? s->cursor : s->head;
    while (m && m->handed)
        m = m->next;
    s->cursor = m;
    return m;
}

void wb__session_handed(wb__session *s, wb__outmsg *m)
{
    if (m->handed)
        return;
    m->handed = true;
    m->gen++;
    s->handed++;
    if (s->cursor == m)
        s->cursor = m->next;
}

void wb__session_unhand(wb__session *s, uint64_t seq, unsigned gen)
{
    wb__outmsg *m = wb__session_find_seq(s, seq);
    if (m && m->handed && m->gen == gen) {
        m->handed = false;
        s->handed--;
        s->cursor = NULL; /* it is before the cursor now */
    }
}

void wb__session_rehand_all(wb__session *s)
{
    for (wb__outmsg *m = s->head; m; m = m->next)
        m->handed = false;
    s->handed = 0;
    s->cursor = NULL;
}

wb__outmsg *wb__session_find_seq(const wb__session *s, uint64_t seq)
{
    for (wb__outmsg *m = s->head; m && m->seq <= seq; m = m->next) {
        if (m->seq == seq)
            return m;
    }
    return NULL;
}

wb__outmsg *wb__session_find_mid(const wb__session *s, int mid)
{
    /* the oldest first: acknowledgements mostly come in order */
    for (wb__outmsg *m = s->head; m; m = m->next) {
        if (m->handed && m->mid == mid)
            return m;
    }
    return NULL;
}

void wb__session_done(wb__session *s, wb__outmsg *m, bool delivered)
{
    wb__outmsg **pp = &s->head, *prev = NULL;
    while (*pp && *pp != m) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = m->next;
    if (s->tail == m)
        s->tail = prev;
    if (s->cursor == m)
        s->cursor = m->next;
    if (m->handed)
        s->handed--;
    s->queued--;
    if (delivered)
        s->acknowledged++;
    free(m);
}

size_t wb__session_clear_outbox(wb__session *s)
{
    size_t n = s->queued;
    while (s->head) {
        wb__outmsg *m = s->head;
        s->head = m->next;
        free(m);
    }
    s->tail = s->cursor = NULL;
    s->queued = s->handed = 0;
    return n;
}

/* ---- subscriptions ------------------------------------------------------ */

wb_err wb__session_sub_add(wb__session *s, const char *filter, int qos)
{
    for (wb__sub *u = s->subs; u; u = u->next) {
        if (strcmp(u->filter, filter) == 0) {
            u->qos = qos;
            return WB_OK;
        }
    }
    wb__sub *u = malloc(sizeof *u);
    char *f = wb__strdup(filter);
    if (!u || !f) {
        free(u);
        free(f);
        return WB_ERR_NO_MEMORY;
    }
    *u = (wb__sub){.next = s->subs, .filter = f, .qos = qos};
    s->subs = u;
    return WB_OK;
}

void wb__session_sub_remove(wb__session *s, const char *filter)
{
    for (wb__sub **pp = &s->subs; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->filter, filter) == 0) {
            wb__sub *u = *pp;
            *pp = u->next;
            free(u->filter);
            free(u);
            return;
        }
    }
}

size_t wb__session_subs_copy(const wb__session *s, char ***filters, int **qos,
                             const char *component)
{
    size_t n = 0;
    for (wb__sub *u = s->subs; u; u = u->next)
        n++;
    *filters = n ? calloc(n, sizeof **filters) : NULL;
    *qos = n ? calloc(n, sizeof **qos) : NULL;
    size_t k = 0;
    for (wb__sub *u = s->subs; u && *filters && *qos; u = u->next) {
        char *f = wb__strdup(u->filter);
        if (!f)
            break;
        (*filters)[k] = f;
        (*qos)[k] = u->qos;
        k++;
    }
    if (k < n)
        wb__log(WB_LOG_ERROR, component, "out of memory: %zu of %zu subscriptions not renewed",
                n - k, n);
    return k;
}

void wb__session_subs_free(char **filters, int *qos, size_t n)
{
    for (size_t i = 0; filters && i < n; i++)
        free(filters[i]);
    free(filters);
    free(qos);
}

/* ---- reconnects ---------------------------------------------------------- */

unsigned wb__session_backoff(wb__session *s)
{
    unsigned delay = wb__backoff_ms(s->attempt++, s->backoff_min_ms, s->backoff_max_ms);
    s->next_attempt_ms = wb__now_ms() + delay;
    return delay;
}

bool wb__session_connected(wb__session *s)
{
    bool again = s->ever_connected;
    s->ever_connected = true;
    s->attempt = 0;
    if (again)
        s->reconnects++;
    return again;
}

void wb__session_stats(const wb__session *s, wb_broker_stats *out)
{
    out->published = s->published;
    out->acknowledged = s->acknowledged;
    out->reconnects = s->reconnects;
    out->queued = s->queued;
}
