/* SigV4 against AWS's published test suite (tests/unit/data/sigv4-suite.txt)
 * and the signing-key examples of AWS's documentation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sigv4.h"

#define SUITE_TIME 1440938160 /* 2015-08-30T12:36:00Z */

/* A request of the suite's shape (us-east-1, "service", its date). */
static wb__sigv4_request suite_request(const char *method, const wb__sigv4_header *h, size_t n)
{
    wb__sigv4_request r = {.method = method,
                           .path = "/",
                           .headers = h,
                           .n_headers = n,
                           .region = "us-east-1",
                           .service = "service",
                           .now = SUITE_TIME};
    return r;
}

static wb__aws_creds suite_creds(void)
{
    wb__aws_creds c = {0};
    c.access_key = "AKIDEXAMPLE";
    c.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    return c;
}

typedef struct vcase {
    char name[96];
    char method[16];
    char target[512];
    char hname[16][64];
    char hvalue[16][256];
    size_t nh;
    char body[256];
    char authz[512];
} vcase;

static char *read_suite(void)
{
    const char *root = getenv("WB_SOURCE_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/unit/data/sigv4-suite.txt", root ? root : ".");
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Parses every case of the suite file into cases[]; returns the count. */
static size_t parse_suite(vcase *cases, size_t max)
{
    char *p = read_suite();
    size_t n = 0;
    vcase *c = NULL;
    enum { NONE, REQLINE, HEAD, BODY } state = NONE;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        char *line = p;
        p = nl ? nl + 1 : p + strlen(p);
        if (line[0] == '#')
            continue;
        if (strncmp(line, "== ", 3) == 0) {
            cr_assert_lt(n, max);
            c = &cases[n++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s", line + 3);
            state = REQLINE;
        } else if (!c || state == NONE) {
            continue;
        } else if (strncmp(line, "authz ", 6) == 0) {
            snprintf(c->authz, sizeof c->authz, "%s", line + 6);
            state = NONE;
        } else if (state == REQLINE) {
            char *sp1 = strchr(line, ' ');
            char *sp2 = strrchr(line, ' ');
            cr_assert(sp1 && sp2 && sp1 != sp2, "%s: bad request line", c->name);
            *sp1 = '\0';
            *sp2 = '\0';
            snprintf(c->method, sizeof c->method, "%s", line);
            snprintf(c->target, sizeof c->target, "%s", sp1 + 1);
            state = HEAD;
        } else if (state == HEAD && line[0] == '\0') {
            state = BODY;
        } else if (state == HEAD && (line[0] == ' ' || line[0] == '\t')) {
            cr_assert_gt(c->nh, 0);
            char *v = line;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t l = strlen(c->hvalue[c->nh - 1]);
            snprintf(c->hvalue[c->nh - 1] + l, sizeof c->hvalue[0] - l, ",%s", v);
        } else if (state == HEAD) {
            char *colon = strchr(line, ':');
            cr_assert_not_null(colon, "%s: bad header line %s", c->name, line);
            *colon = '\0';
            cr_assert_lt(c->nh, 16);
            snprintf(c->hname[c->nh], sizeof c->hname[0], "%s", line);
            snprintf(c->hvalue[c->nh], sizeof c->hvalue[0], "%s", colon + 1);
            c->nh++;
        } else {
            size_t l = strlen(c->body);
            snprintf(c->body + l, sizeof c->body - l, "%s%s", l ? "\n" : "", line);
        }
    }
    return n;
}

static void sign_case(const vcase *c, wb__sigv4_result *res)
{
    wb__sigv4_header hs[16];
    size_t nh = 0;
    for (size_t i = 0; i < c->nh; i++) {
        if (strcasecmp(c->hname[i], "x-amz-date") == 0) {
            cr_assert_str_eq(c->hvalue[i], "20150830T123600Z");
            continue;
        }
        hs[nh++] = (wb__sigv4_header){c->hname[i], c->hvalue[i]};
    }
    char path[512];
    snprintf(path, sizeof path, "%s", c->target);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    wb__aws_creds cr = suite_creds();
    wb__sigv4_request r = {
        .method = c->method,
        .path = path,
        .query = q,
        .headers = hs,
        .n_headers = nh,
        .body = c->body,
        .body_len = strlen(c->body),
        .region = "us-east-1",
        .service = "service",
        .now = SUITE_TIME,
    };
    char *detail = NULL;
    wb_err err = wb__sigv4_sign(&r, &cr, res, &detail);
    cr_assert_eq(err, WB_OK, "%s: %s", c->name, detail ? detail : "");
}

Test(sigv4, published_suite)
{
    static vcase cases[64];
    size_t n = parse_suite(cases, 64);
    cr_assert_geq(n, 22, "the suite file holds %zu cases", n);
    size_t passed = 0;
    for (size_t i = 0; i < n; i++) {
        wb__sigv4_result res;
        sign_case(&cases[i], &res);
        cr_expect_str_eq(res.authorization, cases[i].authz, "%s:\ncanonical request:\n%s",
                         cases[i].name, res.canonical);
        passed += strcmp(res.authorization, cases[i].authz) == 0;
        wb__sigv4_result_free(&res);
    }
    cr_log_info("sigv4: %zu of %zu published cases match", passed, n);
}

Test(sigv4, canonical_request_of_get_vanilla)
{
    vcase c = {.method = "GET", .target = "/", .nh = 1};
    strcpy(c.hname[0], "Host");
    strcpy(c.hvalue[0], "example.amazonaws.com");
    wb__sigv4_result res;
    sign_case(&c, &res);
    cr_assert_str_eq(res.canonical,
                     "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                     "host;x-amz-date\n"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert_str_eq(res.string_to_sign,
                     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
                     "aws4_request\n"
                     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    cr_assert_str_eq(res.amz_date, "20150830T123600Z");
    wb__sigv4_result_free(&res);
}

static void hex32(const unsigned char k[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", k[i]);
}

/* The signing-key derivations AWS's documentation publishes. */
Test(sigv4, documented_signing_keys)
{
    unsigned char k[32];
    char hex[65];
    wb__sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1",
                          "iam", k);
    hex32(k, hex);
    cr_assert_str_eq(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    wb__sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1",
                          "iam", k);
    hex32(k, hex);
    cr_assert_str_eq(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

Test(sigv4, session_token_is_signed)
{
    wb__aws_creds cr = suite_creds();
    cr.session_token = "AQoDYXdzEPT//////////"
                       "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeo"
                       "IYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/"
                       "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HF"
                       "vlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"
                       "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    wb__sigv4_header h[] = {{"Host", "example.amazonaws.com"}};
    wb__sigv4_request r = suite_request("POST", h, 1);
    wb__sigv4_result res;
    char *d = NULL;
    cr_assert_eq(wb__sigv4_sign(&r, &cr, &res, &d), WB_OK);
    cr_assert_str_eq(res.signed_headers, "host;x-amz-date;x-amz-security-token");
    cr_assert(strstr(res.canonical, "x-amz-security-token:AQoDYXdz"));
    wb__sigv4_result_free(&res);
}

Test(sigv4, refusals_say_why)
{
    wb__aws_creds cr = suite_creds();
    wb__sigv4_header h[] = {{"X-Amz-Date", "20150830T123600Z"}};
    wb__sigv4_request r = suite_request("GET", h, 1);
    wb__sigv4_result res;
    char *d = NULL;
    cr_assert_eq(wb__sigv4_sign(&r, &cr, &res, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "Host"), "%s", d);
    free(d);
    d = NULL;
    cr.secret_key = "";
    wb__sigv4_header h2[] = {{"Host", "x"}};
    r.headers = h2;
    cr_assert_eq(wb__sigv4_sign(&r, &cr, &res, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "secret"), "%s", d);
    free(d);
}

/* The presigned form (IoT's WebSocket URL): every X-Amz-* parameter present,
 * the signature covering the query, the token appended after it. */
Test(sigv4, presigned_query)
{
    wb__aws_creds cr = suite_creds();
    cr.session_token = "tok/en+=";
    wb__sigv4_header h[] = {{"host", "abc-ats.iot.us-east-1.amazonaws.com"}};
    wb__sigv4_request r = {.method = "GET",
                           .path = "/mqtt",
                           .headers = h,
                           .n_headers = 1,
                           .region = "us-east-1",
                           .service = "iotdevicegateway",
                           .now = SUITE_TIME};
    char *d = NULL;
    char *q = wb__sigv4_presign_query(&r, &cr, 0, 1, &d);
    cr_assert_not_null(q, "%s", d ? d : "");
    cr_assert(strstr(q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830"
                        "%2Fus-east-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20150830T123600Z"
                        "&X-Amz-SignedHeaders=host&X-Amz-Signature="),
              "%s", q);
    cr_assert(strstr(q, "&X-Amz-Security-Token=tok%2Fen%2B%3D"), "%s", q);
    free(q);
}
