/* The AWS credential chain, in the order of facts.md and the AWS SDKs:
 * environment; shared credentials and config files (AWS_PROFILE); web
 * identity (STS AssumeRoleWithWebIdentity); container credentials; IMDSv2.
 * Results are cached and fetched again 5 minutes before they expire; if a
 * refresh fails while the old credentials are still valid, they are kept.
 * Every source reads the process environment, as the AWS SDKs do. */
#include "aws_creds.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "wb_internal.h"

#define REFRESH_MARGIN_S 300
#define IMDS_DEFAULT     "http://169.254.169.254"
#define ECS_HOST         "http://169.254.170.2"

struct wb__aws_provider {
    pthread_mutex_t lock;
    char *region;
    wb__aws_creds cached;
    bool have;
};

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

wb__aws_provider *wb__aws_provider_new(const char *region)
{
    wb__aws_provider *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    p->region = wb__strdup(region && *region ? region : "us-east-1");
    if (!p->region) {
        free(p);
        return NULL;
    }
    return p;
}

void wb__aws_provider_free(wb__aws_provider *p)
{
    if (!p)
        return;
    wb__aws_creds_clear(&p->cached);
    free(p->region);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static bool set_creds(wb__aws_creds *c, const char *ak, const char *sk, const char *tok,
                      int64_t exp, const char *source)
{
    memset(c, 0, sizeof *c);
    c->access_key = wb__strdup(ak);
    c->secret_key = wb__strdup(sk);
    c->session_token = tok && *tok ? wb__strdup(tok) : NULL;
    c->expires = exp;
    snprintf(c->source, sizeof c->source, "%s", source);
    if (!c->access_key || !c->secret_key || (tok && *tok && !c->session_token)) {
        wb__aws_creds_clear(c);
        return false;
    }
    return true;
}

/* "2024-01-02T03:04:05Z" (fractions and offsets Z only) to Unix seconds. */
int64_t wb__aws_parse_time(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, se;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    return (int64_t)timegm(&tm);
}

/* ---- environment ---------------------------------------------------------- */

static int from_env(wb__aws_creds *c, wb__buf *tried, char **detail)
{
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (!ak && !sk) {
        wb__buf_puts(tried, "the environment (AWS_ACCESS_KEY_ID is not set)");
        return 0;
    }
    if (!ak || !sk) {
        *detail = wb__asprintf("%s is set but %s is not: set both, or neither to use another "
                               "source of credentials",
                               ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                               ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    return set_creds(c, ak, sk, env("AWS_SESSION_TOKEN"), 0, "environment") ? 1 : -1;
}

/* ---- shared files ----------------------------------------------------------- */

/* The profile keys workerbus reads from the shared files. */
enum { K_AKID, K_SECRET, K_TOKEN, K_ROLE, K_TOKEN_FILE, K__COUNT };
static const char *const ini_keys[K__COUNT] = {"aws_access_key_id", "aws_secret_access_key",
                                               "aws_session_token", "role_arn",
                                               "web_identity_token_file"};

/* Reads every key of ini_keys in [section] of an INI file, in one pass;
 * out[i] is the value (heap) or NULL. */
static void ini_read(const char *path, const char *section, char *out[K__COUNT])
{
    for (int i = 0; i < K__COUNT; i++)
        out[i] = NULL;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return;
    char line[4096];
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
            s[--n] = '\0';
        if (*s == '#' || *s == ';' || !*s)
            continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e)
                continue;
            *e = '\0';
            char *name = s + 1;
            while (isspace((unsigned char)*name))
                name++;
            size_t nl = strlen(name);
            while (nl && isspace((unsigned char)name[nl - 1]))
                name[--nl] = '\0';
            in = strcmp(name, section) == 0;
            continue;
        }
        char *eq = in ? strchr(s, '=') : NULL;
        if (!eq)
            continue;
        char *ke = eq;
        while (ke > s && isspace((unsigned char)ke[-1]))
            ke--;
        char *v = eq + 1;
        while (isspace((unsigned char)*v))
            v++;
        for (int i = 0; i < K__COUNT; i++) {
            if (!out[i] && (size_t)(ke - s) == strlen(ini_keys[i]) &&
                strncmp(s, ini_keys[i], (size_t)(ke - s)) == 0)
                out[i] = wb__strdup(v);
        }
    }
    fclose(f);
}

static void ini_free(char *v[K__COUNT])
{
    if (v[K_SECRET])
        OPENSSL_cleanse(v[K_SECRET], strlen(v[K_SECRET]));
    for (int i = 0; i < K__COUNT; i++)
        free(v[i]);
}

static char *home_path(const char *rel)
{
    const char *home = env("HOME");
    return home ? wb__asprintf("%s/%s", home, rel) : NULL;
}

static int web_identity(wb__aws_provider *p, const char *role, const char *token_file,
                        const char *session, wb__aws_creds *c, char **detail);

static int from_files(wb__aws_provider *p, wb__aws_creds *c, wb__buf *tried, char **detail)
{
    const char *profile = env("AWS_PROFILE");
    bool explicit_profile = profile != NULL;
    if (!profile)
        profile = "default";
    char *cred_path = env("AWS_SHARED_CREDENTIALS_FILE")
                          ? wb__strdup(env("AWS_SHARED_CREDENTIALS_FILE"))
                          : home_path(".aws/credentials");
    char *conf_path =
        env("AWS_CONFIG_FILE") ? wb__strdup(env("AWS_CONFIG_FILE")) : home_path(".aws/config");
    char *conf_section = strcmp(profile, "default") == 0 ? wb__strdup("default")
                                                         : wb__asprintf("profile %s", profile);
    int rc = 0;
    /* keys from the credentials file; the config file's profile when that
     * file has no key pair (roles are read from the config file only) */
    char *v[K__COUNT];
    ini_read(cred_path, profile, v);
    free(v[K_ROLE]);
    free(v[K_TOKEN_FILE]);
    v[K_ROLE] = v[K_TOKEN_FILE] = NULL;
    if (!v[K_AKID] && !v[K_SECRET] && conf_section) {
        ini_free(v);
        ini_read(conf_path, conf_section, v);
    }
    const char *ak = v[K_AKID], *sk = v[K_SECRET];
    if (ak && sk) {
        rc = set_creds(c, ak, sk, v[K_TOKEN], 0, "shared files") ? 1 : -1;
    } else if (ak || sk) {
        *detail = wb__asprintf("profile \"%s\" of %s has %s but not %s", profile,
                               cred_path ? cred_path : "the credentials file",
                               ak ? "aws_access_key_id" : "aws_secret_access_key",
                               ak ? "aws_secret_access_key" : "aws_access_key_id");
        rc = -1;
    } else if (v[K_ROLE] && v[K_TOKEN_FILE]) {
        rc = web_identity(p, v[K_ROLE], v[K_TOKEN_FILE], NULL, c, detail);
    } else if (explicit_profile) {
        *detail = wb__asprintf("AWS_PROFILE is \"%s\", but neither %s nor %s has credentials "
                               "for that profile",
                               profile, cred_path ? cred_path : "~/.aws/credentials",
                               conf_path ? conf_path : "~/.aws/config");
        rc = -1;
    } else {
        wb__buf_printf(tried, "; the shared files (%s, %s: no profile \"%s\" with keys)",
                       cred_path ? cred_path : "~/.aws/credentials",
                       conf_path ? conf_path : "~/.aws/config", profile);
    }
    ini_free(v);
    free(cred_path);
    free(conf_path);
    free(conf_section);
    return rc;
}

/* ---- web identity ------------------------------------------------------ */

/* The text of the first <tag>...</tag> in xml. */
static char *xml_text(const char *xml, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = strstr(xml, open);
    if (!a)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    return b ? wb__strndup(a, (size_t)(b - a)) : NULL;
}

static char *read_small_file(const char *path, char **detail, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *detail = wb__asprintf("%s (%s) cannot be read", what, path);
        return NULL;
    }
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n == 0) {
        *detail = wb__asprintf("%s (%s) is empty", what, path);
        return NULL;
    }
    return wb__strndup(buf, n);
}

static char *sts_endpoint(const char *region)
{
    const char *e = env("AWS_ENDPOINT_URL_STS");
    if (!e)
        e = env("AWS_ENDPOINT_URL");
    if (e)
        return wb__strdup(e);
    return wb__asprintf("https://sts.%s.amazonaws.com%s", region,
                        strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
}

static int web_identity(wb__aws_provider *p, const char *role, const char *token_file,
                        const char *session, wb__aws_creds *c, char **detail)
{
    char *token = read_small_file(token_file, detail, "the web identity token file");
    if (!token)
        return -1;
    char *er = wb__uri_encode(role, strlen(role), 0);
    char *et = wb__uri_encode(token, strlen(token), 0);
    const char *sn = session ? session : "workerbus";
    char *es = wb__uri_encode(sn, strlen(sn), 0);
    char *body = wb__asprintf("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=%s"
                              "&RoleSessionName=%s&WebIdentityToken=%s",
                              er ? er : "", es ? es : "", et ? et : "");
    free(er);
    free(et);
    free(es);
    free(token);
    char *url = sts_endpoint(p->region);
    wb__http *h = wb__http_new();
    int rc = -1;
    if (body && url && h) {
        const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
        wb__http_response r;
        char *d = NULL;
        wb_err err =
            wb__http_request(h, "POST", url, hdrs, body, strlen(body), 3000, 10000, &r, &d);
        if (err) {
            *detail = wb__asprintf("web identity (AWS_ROLE_ARN %s): %s", role, d ? d : "");
        } else if (r.status != 200) {
            char *code = xml_text(r.body, "Code"), *msg = xml_text(r.body, "Message");
            *detail = wb__asprintf("web identity: STS refused AssumeRoleWithWebIdentity for %s "
                                   "(HTTP %ld%s%s%s%s)",
                                   role, r.status, code ? ", " : "", code ? code : "",
                                   msg ? ": " : "", msg ? msg : "");
            free(code);
            free(msg);
        } else {
            char *ak = xml_text(r.body, "AccessKeyId"), *sk = xml_text(r.body, "SecretAccessKey"),
                 *tok = xml_text(r.body, "SessionToken"), *exp = xml_text(r.body, "Expiration");
            if (ak && sk)
                rc = set_creds(c, ak, sk, tok, exp ? wb__aws_parse_time(exp) : 0, "web identity")
                         ? 1
                         : -1;
            else
                *detail = wb__strdup("web identity: STS's answer has no credentials");
            free(ak);
            free(sk);
            free(tok);
            free(exp);
        }
        free(d);
        wb__http_response_free(&r);
    }
    wb__http_free(h);
    free(body);
    free(url);
    return rc;
}

static int from_web_identity(wb__aws_provider *p, wb__aws_creds *c, wb__buf *tried, char **detail)
{
    const char *tf = env("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = env("AWS_ROLE_ARN");
    if (!tf && !role) {
        wb__buf_puts(tried, "; web identity (AWS_WEB_IDENTITY_TOKEN_FILE is not set)");
        return 0;
    }
    if (!tf || !role) {
        *detail = wb__asprintf("%s is set but %s is not: web identity needs both",
                               tf ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
                               tf ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
        return -1;
    }
    return web_identity(p, role, tf, env("AWS_ROLE_SESSION_NAME"), c, detail);
}

/* ---- container and instance credentials (JSON documents) ----------------- */

static int parse_json_creds(const char *body, const char *source, wb__aws_creds *c, char **detail)
{
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    const char *ak = j ? json_string_value(json_object_get(j, "AccessKeyId")) : NULL;
    const char *sk = j ? json_string_value(json_object_get(j, "SecretAccessKey")) : NULL;
    const char *tok = j ? json_string_value(json_object_get(j, "Token")) : NULL;
    const char *exp = j ? json_string_value(json_object_get(j, "Expiration")) : NULL;
    int rc = -1;
    if (ak && sk)
        rc = set_creds(c, ak, sk, tok, exp ? wb__aws_parse_time(exp) : 0, source) ? 1 : -1;
    else
        *detail = wb__asprintf("%s: the answer is not a credentials document (no AccessKeyId "
                               "and SecretAccessKey)",
                               source);
    json_decref(j);
    return rc;
}

static bool full_uri_allowed(const char *uri)
{
    if (strncmp(uri, "https://", 8) == 0)
        return true;
    static const char *const ok[] = {
        "http://127.",          "http://localhost:",     "http://localhost/",    "http://[::1]",
        "http://169.254.170.2", "http://169.254.170.23", "http://[fd00:ec2::23]"};
    for (size_t i = 0; i < WB__ARRAY_LEN(ok); i++) {
        if (strncmp(uri, ok[i], strlen(ok[i])) == 0)
            return true;
    }
    return false;
}

static int from_container(wb__aws_creds *c, wb__buf *tried, char **detail)
{
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (!rel && !full) {
        wb__buf_puts(tried, "; container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI "
                            "and _FULL_URI are not set)");
        return 0;
    }
    if (!rel && !full_uri_allowed(full)) {
        *detail = wb__asprintf("AWS_CONTAINER_CREDENTIALS_FULL_URI (%s) must use https, or http "
                               "to a loopback address or the container agent (169.254.170.2, "
                               "169.254.170.23, fd00:ec2::23)",
                               full);
        return -1;
    }
    char *url = rel ? wb__asprintf("%s%s", ECS_HOST, rel) : wb__strdup(full);
    char *auth = NULL;
    const char *tf = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    if (tf) {
        char *t = read_small_file(tf, detail, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
        if (!t) {
            free(url);
            return -1;
        }
        auth = wb__asprintf("Authorization: %s", t);
        free(t);
    } else if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
        auth = wb__asprintf("Authorization: %s", env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    }
    const char *hdrs[] = {auth, NULL};
    wb__http *h = wb__http_new();
    int rc = -1;
    if (url && h) {
        wb__http_response r;
        char *d = NULL;
        wb_err err =
            wb__http_request(h, "GET", url, auth ? hdrs : NULL, NULL, 0, 2000, 5000, &r, &d);
        if (err)
            *detail = wb__asprintf("container credentials: %s", d ? d : "");
        else if (r.status != 200)
            *detail = wb__asprintf("container credentials: %s answered HTTP %ld", url, r.status);
        else
            rc = parse_json_creds(r.body, "container credentials", c, detail);
        free(d);
        wb__http_response_free(&r);
    }
    wb__http_free(h);
    free(url);
    free(auth);
    return rc;
}

static int from_imds(wb__aws_creds *c, wb__buf *tried, char **detail)
{
    const char *dis = env("AWS_EC2_METADATA_DISABLED");
    if (dis && strcasecmp(dis, "true") == 0) {
        wb__buf_puts(tried, "; IMDSv2 (AWS_EC2_METADATA_DISABLED=true)");
        return 0;
    }
    const char *base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!base)
        base = IMDS_DEFAULT;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    wb__http *h = wb__http_new();
    if (!h)
        return -1;
    char *url = wb__asprintf("%.*s/latest/api/token", (int)bl, base);
    const char *th[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    wb__http_response r;
    char *d = NULL;
    int rc = 0;
    char *tokhdr = NULL, *role = NULL;
    wb_err err =
        url ? wb__http_request(h, "PUT", url, th, "", 0, 1000, 2000, &r, &d) : WB_ERR_NO_MEMORY;
    if (err || r.status != 200) {
        wb__buf_printf(tried, "; IMDSv2 (%.*s: %s)", (int)bl, base,
                       err ? (d ? d : "no answer") : "no token");
        if (!err)
            wb__http_response_free(&r);
        goto out;
    }
    tokhdr = wb__asprintf("X-aws-ec2-metadata-token: %s", r.body);
    wb__http_response_free(&r);
    free(url);
    url = wb__asprintf("%.*s/latest/meta-data/iam/security-credentials/", (int)bl, base);
    const char *gh[] = {tokhdr, NULL};
    err = wb__http_request(h, "GET", url, gh, NULL, 0, 1000, 2000, &r, &d);
    if (err || r.status != 200) {
        *detail = wb__asprintf("IMDSv2: no instance role (%s)",
                               err ? (d ? d : "") : "the instance has no IAM role");
        rc = -1;
        if (!err)
            wb__http_response_free(&r);
        goto out;
    }
    role = wb__strndup(r.body, strcspn(r.body, "\r\n"));
    wb__http_response_free(&r);
    free(url);
    url = wb__asprintf("%.*s/latest/meta-data/iam/security-credentials/%s", (int)bl, base, role);
    err = wb__http_request(h, "GET", url, gh, NULL, 0, 1000, 2000, &r, &d);
    if (err || r.status != 200) {
        *detail = wb__asprintf("IMDSv2: the credentials of role %s could not be read (%s)", role,
                               err ? (d ? d : "") : "HTTP error");
        rc = -1;
        if (!err)
            wb__http_response_free(&r);
        goto out;
    }
    rc = parse_json_creds(r.body, "IMDSv2", c, detail);
    wb__http_response_free(&r);
out:
    free(d);
    free(url);
    free(tokhdr);
    free(role);
    wb__http_free(h);
    return rc;
}

/* ---- the chain ----------------------------------------------------------- */

static wb_err resolve(wb__aws_provider *p, wb__aws_creds *c, char **detail)
{
    wb__buf tried = WB__BUF_INIT;
    int rc = from_env(c, &tried, detail);
    if (rc == 0)
        rc = from_files(p, c, &tried, detail);
    if (rc == 0)
        rc = from_web_identity(p, c, &tried, detail);
    if (rc == 0)
        rc = from_container(c, &tried, detail);
    if (rc == 0)
        rc = from_imds(c, &tried, detail);
    if (rc == 0)
        *detail = wb__asprintf("no AWS credentials found; tried %s",
                               tried.data ? tried.data : "every source");
    wb__buf_free(&tried);
    return rc == 1 ? WB_OK : WB_ERR_AUTH_REFUSED;
}

wb_err wb__aws_provider_get(wb__aws_provider *p, wb__aws_creds *out, char **detail)
{
    pthread_mutex_lock(&p->lock);
    int64_t now = (int64_t)time(NULL);
    wb_err err = WB_OK;
    if (!p->have || (p->cached.expires && now >= p->cached.expires - REFRESH_MARGIN_S)) {
        wb__aws_creds fresh;
        char *d = NULL;
        err = resolve(p, &fresh, &d);
        if (!err) {
            wb__aws_creds_clear(&p->cached);
            p->cached = fresh;
            p->have = true;
            wb__log(WB_LOG_DEBUG, "aws", "credentials from %s%s", fresh.source,
                    fresh.expires ? " (temporary)" : "");
            free(d);
        } else if (p->have && now < p->cached.expires) {
            wb__log(WB_LOG_WARN, "aws",
                    "refreshing credentials failed (%s); the current ones "
                    "stay valid for %lld s",
                    d ? d : "", (long long)(p->cached.expires - now));
            free(d);
            err = WB_OK;
        } else {
            *detail = d;
        }
    }
    if (!err && !wb__aws_creds_copy(out, &p->cached))
        err = WB_ERR_NO_MEMORY;
    pthread_mutex_unlock(&p->lock);
    return err;
}
