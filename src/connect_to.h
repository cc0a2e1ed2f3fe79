/* The connect-to override (not installed): connections to one host name go
 * to another address while TLS still checks the name, like curl's
 * --connect-to. For tests and the harness, which reach an IoT Core stand-in
 * on loopback; the configuration refuses it unless explicitly allowed. */
#ifndef WB_CONNECT_TO_H
#define WB_CONNECT_TO_H

#include "workerbus/error.h"

/* From now on, resolving `host` in this process gives `address` (a numeric
 * IPv4 or IPv6 address). Paho chooses the port itself (the transport's), so
 * only the address can change. One mapping per process; setting it again
 * replaces it. */
wb_err wb__connect_to_set(const char *host, const char *address, char **detail);

#endif
