/* The two SigV4-signed requests of the iotcore backend (not installed),
 * apart from any transport so that tests can check them against an
 * independent signer on fixed inputs. */
#ifndef WB_IOTSIGN_H
#define WB_IOTSIGN_H

#include <stddef.h>
#include <time.h>

#include "sigv4.h"

/* The MQTT-over-WebSocket URL: wss://<endpoint>:<port>/mqtt (port 443 but
 * under a connect-to override) with a SigV4 presigned query (service
 * iotdevicegateway, host the endpoint, valid 24 h; a session token is
 * appended after the signature, as IoT Core expects). NULL on failure, with
 * *detail set. */
char *wb__iot_wss_url(const char *endpoint, unsigned port, const char *region,
                      const wb__aws_creds *creds, time_t now, char **detail);

/* The data-plane HTTPS Publish request: POST /topics/<topic>?qos=<qos>,
 * signed for iotdata. headers[] ends with NULL; every string is heap. */
typedef struct wb__iot_publish_req {
    char *url;
    char *headers[5];
} wb__iot_publish_req;

wb_err wb__iot_publish_sign(const char *endpoint, const char *region, const char *topic, int qos,
                            const void *payload, size_t len, const wb__aws_creds *creds, time_t now,
                            wb__iot_publish_req *out, char **detail);
void wb__iot_publish_req_free(wb__iot_publish_req *r);

#endif
