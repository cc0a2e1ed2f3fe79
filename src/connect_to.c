/* The connect-to override for libraries that resolve names themselves
 * (Paho): this library's getaddrinfo() answers the configured host name with
 * the configured address and passes every other name to the C library's.
 * Nothing changes unless wb__connect_to_set() was called, which only
 * happens with MQTT_BROKER_IOTCORE_CONNECT_TO and
 * MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true. */
#define _GNU_SOURCE
#include "connect_to.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wb_internal.h"

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static char *from_host, *to_address;

wb_err wb__connect_to_set(const char *host, const char *address, char **detail)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, address, buf) != 1 && inet_pton(AF_INET6, address, buf) != 1) {
        *detail = wb__asprintf("the connect-to address must be a numeric IP address, not \"%s\"",
                               address);
        return WB_ERR_INVALID_ARGUMENT;
    }
    char *h = wb__strdup(host), *a = wb__strdup(address);
    if (!h || !a) {
        free(h);
        free(a);
        return WB_ERR_NO_MEMORY;
    }
    pthread_rwlock_wrlock(&lock);
    free(from_host);
    free(to_address);
    from_host = h;
    to_address = a;
    pthread_rwlock_unlock(&lock);
    return WB_OK;
}

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

__attribute__((visibility("default"))) int getaddrinfo(const char *node, const char *service,
                                                       const struct addrinfo *hints,
                                                       struct addrinfo **res)
{
    static gai_fn real;
    if (!real)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real)
        return EAI_SYSTEM;
    if (node) {
        pthread_rwlock_rdlock(&lock);
        if (from_host && strcasecmp(node, from_host) == 0) {
            struct addrinfo h = hints ? *hints : (struct addrinfo){0};
            h.ai_flags |= AI_NUMERICHOST;
            int rc = real(to_address, service, &h, res);
            pthread_rwlock_unlock(&lock);
            return rc;
        }
        pthread_rwlock_unlock(&lock);
    }
    return real(node, service, hints, res);
}
