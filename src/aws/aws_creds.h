/* The AWS credential chain (not installed). */
#ifndef WB_AWS_CREDS_H
#define WB_AWS_CREDS_H

#include <stdint.h>

#include "sigv4.h"

typedef struct wb__aws_provider wb__aws_provider;

/* region: for STS (web identity); NULL: us-east-1. */
wb__aws_provider *wb__aws_provider_new(const char *region);
void wb__aws_provider_free(wb__aws_provider *p);

/* Current credentials (a copy: wb__aws_creds_clear() it). Resolves the chain
 * the first time and again 5 minutes before temporary ones expire.
 * WB_ERR_AUTH_REFUSED with a detail naming what was tried when none. */
wb_err wb__aws_provider_get(wb__aws_provider *p, wb__aws_creds *out, char **detail);

/* ISO 8601 UTC ("2024-01-02T03:04:05Z") to Unix seconds; -1 if malformed. */
int64_t wb__aws_parse_time(const char *s);

#endif
