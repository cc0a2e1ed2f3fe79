/* SigV4 for IoT Core: the WebSocket URL and the HTTPS Publish request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotsign.h"
#include "wb_internal.h"

char *wb__iot_wss_url(const char *endpoint, unsigned port, const char *region,
                      const wb__aws_creds *creds, time_t now, char **detail)
{
    wb__sigv4_header h[] = {{"host", endpoint}};
    wb__sigv4_request r = {.method = "GET",
                           .path = "/mqtt",
                           .headers = h,
                           .n_headers = 1,
                           .region = region,
                           .service = "iotdevicegateway",
                           .now = now};
    char *q = wb__sigv4_presign_query(&r, creds, 86400, 1, detail);
    char *uri = q ? wb__asprintf("wss://%s:%u/mqtt?%s", endpoint, port, q) : NULL;
    free(q);
    return uri;
}

void wb__iot_publish_req_free(wb__iot_publish_req *r)
{
    free(r->url);
    for (size_t i = 0; i < WB__ARRAY_LEN(r->headers); i++)
        free(r->headers[i]);
    memset(r, 0, sizeof *r);
}

wb_err wb__iot_publish_sign(const char *endpoint, const char *region, const char *topic, int qos,
                            const void *payload, size_t len, const wb__aws_creds *creds, time_t now,
                            wb__iot_publish_req *out, char **detail)
{
    memset(out, 0, sizeof *out);
    /* the topic is one URI label: '/' is encoded too; the signer encodes
     * the path once more, SigV4's rule for every service but S3 */
    char *etopic = wb__uri_encode(topic, strlen(topic), 0);
    char *path = etopic ? wb__asprintf("/topics/%s", etopic) : NULL;
    free(etopic);
    char qs[16];
    snprintf(qs, sizeof qs, "qos=%d", qos);
    if (!path)
        return WB_ERR_NO_MEMORY;
    wb__sigv4_header h[] = {{"Host", endpoint}};
    wb__sigv4_request r = {.method = "POST",
                           .path = path,
                           .query = qs,
                           .headers = h,
                           .n_headers = 1,
                           .body = payload,
                           .body_len = len,
                           .region = region,
                           .service = "iotdata",
                           .now = now};
    wb__sigv4_result sig = {0};
    wb_err err = wb__sigv4_sign(&r, creds, &sig, detail);
    if (!err) {
        out->url = wb__asprintf("https://%s%s?%s", endpoint, path, qs);
        out->headers[0] = wb__asprintf("Authorization: %s", sig.authorization);
        out->headers[1] = wb__asprintf("X-Amz-Date: %s", sig.amz_date);
        out->headers[2] = wb__strdup("Content-Type: application/octet-stream");
        if (creds->session_token && *creds->session_token)
            out->headers[3] = wb__asprintf("X-Amz-Security-Token: %s", creds->session_token);
        if (!out->url || !out->headers[0] || !out->headers[1] || !out->headers[2] ||
            (creds->session_token && *creds->session_token && !out->headers[3]))
            err = WB_ERR_NO_MEMORY;
    }
    wb__sigv4_result_free(&sig);
    free(path);
    if (err)
        wb__iot_publish_req_free(out);
    return err;
}
