/* The AWS credential chain, source by source, with loopback stand-ins for
 * the endpoints that exist only inside AWS (tests/unit/data/fake_aws.py).
 * Each Criterion test runs in its own process: the environment is its own. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws_creds.h"
#include "fake_aws.h"

static char home[64];
static unsigned fake_port;

static void clean_env(void)
{
    static const char *const vars[] = {"AWS_ACCESS_KEY_ID",
                                       "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",
                                       "AWS_PROFILE",
                                       "AWS_SHARED_CREDENTIALS_FILE",
                                       "AWS_CONFIG_FILE",
                                       "AWS_WEB_IDENTITY_TOKEN_FILE",
                                       "AWS_ROLE_ARN",
                                       "AWS_ROLE_SESSION_NAME",
                                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                       "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                       "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                                       "AWS_ENDPOINT_URL_STS",
                                       "AWS_ENDPOINT_URL"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    strcpy(home, "/tmp/wbcreds-XXXXXX");
    cr_assert_not_null(mkdtemp(home));
    setenv("HOME", home, 1);
    /* no metadata service unless a test points at the stand-in */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void teardown(void)
{
    wbt_fake_aws_stop();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", home);
}

TestSuite(creds, .init = clean_env, .fini = teardown, .timeout = 30);

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* Resolves the chain; on success, checks the access key and the source. */
static wb_err get(wb__aws_creds *c, char **detail)
{
    wb__aws_provider *p = wb__aws_provider_new("us-east-1");
    cr_assert_not_null(p);
    *detail = NULL;
    wb_err err = wb__aws_provider_get(p, c, detail);
    wb__aws_provider_free(p);
    return err;
}

static void expect(const char *ak, const char *sk, const char *tok, const char *source)
{
    wb__aws_creds c;
    char *d;
    wb_err err = get(&c, &d);
    cr_assert_eq(err, WB_OK, "%s", d ? d : "");
    cr_assert_str_eq(c.access_key, ak);
    cr_assert_str_eq(c.secret_key, sk);
    if (tok)
        cr_assert_str_eq(c.session_token, tok);
    else
        cr_assert_null(c.session_token);
    cr_assert_str_eq(c.source, source);
    wb__aws_creds_clear(&c);
}

static char *expect_error(void)
{
    wb__aws_creds c;
    static char msg[2048];
    char *d;
    wb_err err = get(&c, &d);
    cr_assert_neq(err, WB_OK);
    snprintf(msg, sizeof msg, "%s", d ? d : "");
    free(d);
    cr_log_info("%s", msg);
    return msg;
}

Test(creds, environment_first)
{
    setenv("AWS_ACCESS_KEY_ID", "ENVAKID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
    setenv("AWS_SESSION_TOKEN", "env-token", 1);
    char path[128];
    snprintf(path, sizeof path, "%s/creds", home);
    write_file(path, "[default]\naws_access_key_id = FILEAKID\naws_secret_access_key = x\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    expect("ENVAKID", "env-secret", "env-token", "environment");
}

Test(creds, half_an_environment_is_an_error)
{
    setenv("AWS_ACCESS_KEY_ID", "ENVAKID", 1);
    char *m = expect_error();
    cr_assert(strstr(m, "AWS_SECRET_ACCESS_KEY is not"), "%s", m);
}

Test(creds, shared_credentials_file_default_profile)
{
    char dir[128], path[160];
    snprintf(dir, sizeof dir, "%s/.aws", home);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/credentials", dir);
    write_file(path, "# comment\n[other]\naws_access_key_id=OTHER\naws_secret_access_key=o\n\n"
                     "[default]\n  aws_access_key_id = FILEAKID  \naws_secret_access_key = "
                     "file/secret+key\n");
    expect("FILEAKID", "file/secret+key", NULL, "shared files");
}

Test(creds, profile_from_config_file)
{
    char conf[160];
    snprintf(conf, sizeof conf, "%s/config", home);
    write_file(conf, "[default]\nregion = us-east-1\n[profile ci]\naws_access_key_id = CIAKID\n"
                     "aws_secret_access_key = ci-secret\naws_session_token = ci-token\n");
    setenv("AWS_CONFIG_FILE", conf, 1);
    setenv("AWS_PROFILE", "ci", 1);
    expect("CIAKID", "ci-secret", "ci-token", "shared files");
}

Test(creds, a_named_profile_that_does_not_exist)
{
    setenv("AWS_PROFILE", "nope", 1);
    char *m = expect_error();
    cr_assert(strstr(m, "AWS_PROFILE is \"nope\""), "%s", m);
}

/* Web identity against the loopback STS, with this token in the file. */
static void web_identity_env(const char *token)
{
    fake_port = wbt_fake_aws_start("3600");
    char tf[160], url[64];
    snprintf(tf, sizeof tf, "%s/token", home);
    write_file(tf, token);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", fake_port);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tf, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/workerbus", 1);
    setenv("AWS_ENDPOINT_URL_STS", url, 1);
}

Test(creds, web_identity_through_sts)
{
    web_identity_env("web-identity-jwt\n");
    expect("WEBAKID", "web-secret", "web-token", "web identity");
}

Test(creds, web_identity_refused_says_so)
{
    web_identity_env("a-forged-token");
    char *m = expect_error();
    cr_assert(strstr(m, "InvalidIdentityToken"), "%s", m);
}

Test(creds, container_credentials_with_a_token_file)
{
    fake_port = wbt_fake_aws_start("3600");
    char url[96], tf[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/container/creds", fake_port);
    snprintf(tf, sizeof tf, "%s/ecs-token", home);
    write_file(tf, "container-secret-token\n");
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf, 1);
    expect("CONTAINERAKID", "CONTAINER-secret", "CONTAINER-token", "container credentials");
}

Test(creds, container_full_uri_must_be_local_or_https)
{
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://203.0.113.9/creds", 1);
    char *m = expect_error();
    cr_assert(strstr(m, "must use https"), "%s", m);
}

Test(creds, imds_v2)
{
    fake_port = wbt_fake_aws_start("3600");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", fake_port);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url, 1);
    expect("IMDSAKID", "IMDS-secret", "IMDS-token", "IMDSv2");
}

Test(creds, nothing_found_lists_what_was_tried)
{
    char *m = expect_error();
    cr_assert(strstr(m, "no AWS credentials found"), "%s", m);
    cr_assert(strstr(m, "AWS_ACCESS_KEY_ID"), "%s", m);
    cr_assert(strstr(m, "shared files"), "%s", m);
    cr_assert(strstr(m, "web identity"), "%s", m);
    cr_assert(strstr(m, "container"), "%s", m);
    cr_assert(strstr(m, "IMDSv2"), "%s", m);
}

/* Cached while valid; fetched again once within 5 minutes of expiring. */
static int fetches_for_two_gets(const char *expires_in)
{
    fake_port = wbt_fake_aws_start(expires_in);
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/container/creds", fake_port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-secret-token", 1);
    wb__aws_provider *p = wb__aws_provider_new(NULL);
    for (int i = 0; i < 2; i++) {
        wb__aws_creds c;
        char *d = NULL;
        cr_assert_eq(wb__aws_provider_get(p, &c, &d), WB_OK, "%s", d ? d : "");
        wb__aws_creds_clear(&c);
    }
    wb__aws_provider_free(p);
    return wbt_fake_aws_count("/container/creds");
}

Test(creds, cached_while_valid)
{
    cr_assert_eq(fetches_for_two_gets("3600"), 1);
}

Test(creds, refreshed_before_expiry)
{
    cr_assert_eq(fetches_for_two_gets("120"), 2);
}

Test(creds, iso_times)
{
    cr_assert_eq(wb__aws_parse_time("1970-01-01T00:01:40Z"), 100);
    cr_assert_eq(wb__aws_parse_time("2015-08-30T12:36:00Z"), 1440938160);
    cr_assert_eq(wb__aws_parse_time("yesterday"), -1);
}
