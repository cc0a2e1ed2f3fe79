/* Prints what the iotcore backend would send, for fixed inputs, so that
 * check_botocore.py can compare it with botocore's signer.
 *
 *   iot-sign-emit wss ENDPOINT REGION ACCESS SECRET TOKEN|- EPOCH
 *   iot-sign-emit publish ENDPOINT REGION ACCESS SECRET TOKEN|- EPOCH TOPIC QOS PAYLOAD
 *
 * Output: "url <url>" then one "header <name>: <value>" line per header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iotsign.h"
#include "wb_internal.h"

int main(int argc, char **argv)
{
    bool wss = argc == 8 && strcmp(argv[1], "wss") == 0;
    bool pub = argc == 11 && strcmp(argv[1], "publish") == 0;
    if (!wss && !pub) {
        fprintf(stderr, "usage: see the comment at the top of iot_sign_emit.c\n");
        return 64;
    }
    wb__aws_creds cr = {.access_key = argv[4],
                        .secret_key = argv[5],
                        .session_token = strcmp(argv[6], "-") ? argv[6] : NULL};
    time_t now = (time_t)strtoll(argv[7], NULL, 10);
    char *detail = NULL;
    if (wss) {
        char *url = wb__iot_wss_url(argv[2], 443, argv[3], &cr, now, &detail);
        if (!url) {
            fprintf(stderr, "%s\n", detail ? detail : "failed");
            return 1;
        }
        printf("url %s\n", url);
        free(url);
        return 0;
    }
    wb__iot_publish_req req;
    const char *payload = argv[10];
    wb_err err = wb__iot_publish_sign(argv[2], argv[3], argv[8], atoi(argv[9]), payload,
                                      strlen(payload), &cr, now, &req, &detail);
    if (err) {
        fprintf(stderr, "%s\n", detail ? detail : wb_strerror(err));
        return 1;
    }
    printf("url %s\n", req.url);
    for (size_t i = 0; i < WB__ARRAY_LEN(req.headers) && req.headers[i]; i++)
        printf("header %s\n", req.headers[i]);
    wb__iot_publish_req_free(&req);
    return 0;
}
