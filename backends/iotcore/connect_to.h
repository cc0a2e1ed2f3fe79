/* The connect-to relay (not installed): connections to one host name go to
 * another address while TLS still checks the name, as curl's --connect-to
 * does. Paho resolves and dials names itself, but it can go through an HTTP
 * CONNECT proxy: the relay is that proxy, on a loopback port of its own, and
 * it dials the configured address whatever the name asked for. The process's
 * resolver is left alone, and each broker has its own relay.
 *
 * It exists for test suites and the harness, which reach an IoT Core
 * stand-in on loopback; the configuration refuses MQTT_BROKER_IOTCORE_
 * CONNECT_TO unless MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true. */
#ifndef WB_CONNECT_TO_H
#define WB_CONNECT_TO_H

#include "workerbus/error.h"

typedef struct wb__relay wb__relay;

/* Starts a relay that takes HTTP CONNECT requests for `host` (any port) on
 * 127.0.0.1 and joins each to address:port (a numeric IPv4 or IPv6 address).
 * A request for another host is refused (403). *proxy receives what Paho's
 * httpsProxy takes ("127.0.0.1:PORT", wb__relay_proxy()'s string, owned by
 * the relay).
 * Thread: any; blocks only to create the socket and its thread.
 * Returns WB_OK; WB_ERR_INVALID_ARGUMENT (the address is not numeric);
 * WB_ERR_IO (no socket or thread; *detail says why); WB_ERR_NO_MEMORY. */
wb_err wb__relay_start(const char *host, const char *address, unsigned port, wb__relay **out,
                       char **detail);
/* "127.0.0.1:PORT", for MQTTAsync_connectOptions.httpsProxy. */
const char *wb__relay_proxy(const wb__relay *r);
/* How many connections it has joined so far. */
unsigned long wb__relay_joined(const wb__relay *r);
/* Closes the listener and every connection, and waits for its thread.
 * NULL is accepted. */
void wb__relay_stop(wb__relay *r);

#endif
