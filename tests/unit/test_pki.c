/* Certificates: the CA, the broker's and server's certificates, CSR signing. */
#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workerbus/workerbus.h"

#define POOL_LOWER "01arz3ndektsv4rrffq69g5fav"
#define POOL       "01ARZ3NDEKTSV4RRFFQ69G5FAV"

static char dir[64];
static char path_buf[8][128];

static const char *p(int slot, const char *name)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static void make_pki(void)
{
    strcpy(dir, "/tmp/wbpki-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char *detail = NULL;
    wb_err err = wb_pki_init(dir, NULL, &detail);
    cr_assert_eq(err, WB_OK, "%s", detail ? detail : "");
}

static void remove_pki(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(pki, .init = make_pki, .fini = remove_pki);

static X509 *load(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    cr_assert_not_null(x);
    return x;
}

static void cn_of(X509 *x, char *out, size_t n)
{
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)n);
}

Test(pki, init_writes_a_consistent_set)
{
    const char *files[] = {WB_PKI_CA_CERT,    WB_PKI_CA_KEY,      WB_PKI_BROKER_CERT,
                           WB_PKI_BROKER_KEY, WB_PKI_SERVER_CERT, WB_PKI_SERVER_KEY};
    for (int i = 0; i < 6; i++) {
        struct stat st;
        cr_assert_eq(stat(p(0, files[i]), &st), 0, "%s missing", files[i]);
        if (strstr(files[i], ".key"))
            cr_assert_eq(st.st_mode & 0777, 0600, "%s mode %o", files[i], st.st_mode & 0777);
    }
    char *d = NULL;
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_BROKER_CERT), p(1, WB_PKI_BROKER_KEY), &d), WB_OK);
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_SERVER_CERT), p(1, WB_PKI_SERVER_KEY), &d), WB_OK);
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_CA_CERT), p(1, WB_PKI_CA_KEY), &d), WB_OK);
    cr_assert_eq(wb_pki_check_issued_by(p(0, WB_PKI_BROKER_CERT), p(1, WB_PKI_CA_CERT), &d), WB_OK,
                 "%s", d ? d : "");
    cr_assert_eq(wb_pki_check_issued_by(p(0, WB_PKI_SERVER_CERT), p(1, WB_PKI_CA_CERT), &d), WB_OK);

    /* the server's identity and the broker's names */
    FILE *f = fopen(p(0, WB_PKI_SERVER_CERT), "r");
    X509 *srv = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    char cn[128];
    cn_of(srv, cn, sizeof cn);
    cr_assert_str_eq(cn, WB_PKI_SERVER_IDENTITY);
    X509_free(srv);
    f = fopen(p(0, WB_PKI_BROKER_CERT), "r");
    X509 *brk = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_eq(X509_check_host(brk, "localhost", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(brk, "127.0.0.1", 0), 1);
    cr_assert_eq(X509_check_ip_asc(brk, "::1", 0), 1);
    cr_assert_neq(X509_check_host(brk, "example.com", 0, 0, NULL), 1);
    X509_free(brk);
}

Test(pki, init_refuses_to_overwrite)
{
    char *d = NULL;
    cr_assert_eq(wb_pki_init(dir, NULL, &d), WB_ERR_IO);
    cr_assert(strstr(d, "File exists"), "%s", d);
    wb_free(d);
    wb_pki_init_opts o = WB_PKI_INIT_OPTS_INIT;
    o.overwrite = 1;
    const char *hosts[] = {"broker.example.com", "10.1.2.3", NULL};
    o.broker_hosts = hosts;
    cr_assert_eq(wb_pki_init(dir, &o, &d), WB_OK);
    FILE *f = fopen(p(0, WB_PKI_BROKER_CERT), "r");
    X509 *brk = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    cr_assert_eq(X509_check_host(brk, "broker.example.com", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(brk, "10.1.2.3", 0), 1);
    X509_free(brk);
    const char *bad[] = {"bad_host!", NULL};
    o.broker_hosts = bad;
    cr_assert_eq(wb_pki_init(dir, &o, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "bad_host!"), "%s", d);
    wb_free(d);
}

static void sign_and_check(wb_pki_key_type type)
{
    char *key = NULL, *csr = NULL, *d = NULL, *cert = NULL;
    cr_assert_eq(wb_pki_new_csr(type, "my pool", &key, &csr, &d), WB_OK);
    cr_assert(strstr(csr, "BEGIN CERTIFICATE REQUEST"));
    cr_assert_eq(wb_pki_sign_csr(p(0, WB_PKI_CA_CERT), p(1, WB_PKI_CA_KEY), POOL_LOWER, csr,
                                 strlen(csr), 30, &cert, &d),
                 WB_OK, "%s", d ? d : "");
    X509 *x = load(cert);
    char cn[128];
    cn_of(x, cn, sizeof cn);
    cr_assert_str_eq(cn, POOL, "the subject is replaced by the canonical pool ULID");
    cr_assert_eq(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
    cr_assert_neq(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
    X509_free(x);
    /* the pair works as files, and chains to the CA */
    FILE *f = fopen(p(2, "w.crt"), "w");
    fputs(cert, f);
    fclose(f);
    f = fopen(p(3, "w.key"), "w");
    fputs(key, f);
    fclose(f);
    cr_assert_eq(wb_pki_check_pair(p(2, "w.crt"), p(3, "w.key"), &d), WB_OK, "%s", d ? d : "");
    cr_assert_eq(wb_pki_check_issued_by(p(2, "w.crt"), p(1, WB_PKI_CA_CERT), &d), WB_OK);
    wb_free(key);
    wb_free(csr);
    wb_free(cert);
}

Test(pki, sign_ec_p256_csr)
{
    sign_and_check(WB_PKI_KEY_EC_P256);
}

Test(pki, sign_rsa_4096_csr, .timeout = 120)
{
    sign_and_check(WB_PKI_KEY_RSA_4096);
}

Test(pki, sign_refusals)
{
    char *key = NULL, *csr = NULL, *d = NULL, *cert = NULL;
    cr_assert_eq(wb_pki_new_csr(WB_PKI_KEY_EC_P256, "x", &key, &csr, &d), WB_OK);
    const char *ca = p(0, WB_PKI_CA_CERT), *cak = p(1, WB_PKI_CA_KEY);

    cr_assert_eq(wb_pki_sign_csr(ca, cak, "not-a-ulid", csr, strlen(csr), 0, &cert, &d),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "not-a-ulid"), "%s", d);
    cr_assert_null(cert);
    wb_free(d);

    cr_assert_eq(wb_pki_sign_csr(ca, cak, POOL, "garbage", 7, 0, &cert, &d),
                 WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "CERTIFICATE REQUEST"), "%s", d);
    wb_free(d);

    /* the CA key of another CA */
    cr_assert_eq(wb_pki_sign_csr(ca, p(2, WB_PKI_BROKER_KEY), POOL, csr, strlen(csr), 0, &cert, &d),
                 WB_ERR_AUTH_REFUSED);
    cr_assert(strstr(d, "does not belong"), "%s", d);
    wb_free(d);

    cr_assert_eq(wb_pki_sign_csr("/nonexistent/ca.crt", cak, POOL, csr, strlen(csr), 0, &cert, &d),
                 WB_ERR_IO);
    cr_assert(strstr(d, "/nonexistent/ca.crt"), "%s", d);
    wb_free(d);

    /* a CSR whose signature was tampered with */
    char *bad = strdup(csr);
    char *body = strstr(bad, "\n") + 1;
    size_t len = strlen(body);
    char *victim = body + len - 60; /* inside the signature, in the base64 text */
    *victim = *victim == 'A' ? 'B' : 'A';
    wb_err err = wb_pki_sign_csr(ca, cak, POOL, bad, strlen(bad), 0, &cert, &d);
    cr_assert_eq(err, WB_ERR_INVALID_ARGUMENT, "%s", wb_err_name(err));
    wb_free(d);
    free(bad);
    wb_free(key);
    wb_free(csr);
}

Test(pki, check_pair_mismatch_and_other_ca)
{
    char *d = NULL;
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_SERVER_CERT), p(1, WB_PKI_BROKER_KEY), &d),
                 WB_ERR_AUTH_REFUSED);
    cr_assert(strstr(d, "does not belong"), "%s", d);
    wb_free(d);
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_SERVER_KEY), p(1, WB_PKI_SERVER_KEY), &d),
                 WB_ERR_IO);
    cr_assert(strstr(d, "PEM certificate"), "%s", d);
    wb_free(d);

    /* a second, unrelated CA */
    char other[80];
    snprintf(other, sizeof other, "%s/other", dir);
    cr_assert_eq(wb_pki_init(other, NULL, NULL), WB_OK);
    char oca[128];
    snprintf(oca, sizeof oca, "%s/%s", other, WB_PKI_CA_CERT);
    cr_assert_eq(wb_pki_check_issued_by(p(0, WB_PKI_SERVER_CERT), oca, &d), WB_ERR_AUTH_REFUSED);
    cr_assert(strstr(d, "not accepted by the CA"), "%s", d);
    wb_free(d);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    (void)n;
    fclose(f);
    return buf;
}

/* The broker's certificate issued again: a new key, the same CA, the names
 * kept or replaced; a pool certificate signed before keeps verifying. */
Test(pki, reissue_broker_keeps_the_ca)
{
    char *key = NULL, *csr = NULL, *cert = NULL, *d = NULL;
    cr_assert_eq(wb_pki_new_csr(WB_PKI_KEY_EC_P256, "pool", &key, &csr, &d), WB_OK);
    cr_assert_eq(wb_pki_sign_csr(p(0, WB_PKI_CA_CERT), p(1, WB_PKI_CA_KEY), POOL, csr, strlen(csr),
                                 0, &cert, &d),
                 WB_OK);
    FILE *f = fopen(p(2, "pool.crt"), "w");
    fputs(cert, f);
    fclose(f);
    char *ca_before = slurp(p(0, WB_PKI_CA_CERT));
    char *key_before = slurp(p(3, WB_PKI_BROKER_KEY));
    char *crt_before = slurp(p(4, WB_PKI_BROKER_CERT));

    cr_assert_eq(wb_pki_reissue(dir, WB_PKI_LEAF_BROKER, NULL, &d), WB_OK, "%s", d ? d : "");
    char *ca_after = slurp(p(0, WB_PKI_CA_CERT));
    char *key_after = slurp(p(3, WB_PKI_BROKER_KEY));
    char *crt_after = slurp(p(4, WB_PKI_BROKER_CERT));
    cr_assert_str_eq(ca_after, ca_before, "the CA changed");
    cr_assert_str_neq(key_after, key_before, "the broker's key was not renewed");
    cr_assert_str_neq(crt_after, crt_before);
    /* the default names kept: localhost, 127.0.0.1, ::1 */
    X509 *x = load(crt_after);
    cr_assert_eq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(x, "::1", 0), 1);
    X509_free(x);
    cr_assert_eq(wb_pki_check_pair(p(4, WB_PKI_BROKER_CERT), p(3, WB_PKI_BROKER_KEY), &d), WB_OK);
    cr_assert_eq(wb_pki_check_issued_by(p(4, WB_PKI_BROKER_CERT), p(0, WB_PKI_CA_CERT), &d), WB_OK);
    cr_assert_eq(wb_pki_check_issued_by(p(2, "pool.crt"), p(0, WB_PKI_CA_CERT), &d), WB_OK,
                 "the pool certificate no longer verifies");
    struct stat st;
    cr_assert_eq(stat(p(3, WB_PKI_BROKER_KEY), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_neq(access(p(5, WB_PKI_BROKER_KEY ".new"), F_OK), 0, "a temporary file was left");

    /* new names */
    const char *hosts[] = {"mqtt.example.org", "192.0.2.7", NULL};
    cr_assert_eq(wb_pki_reissue(dir, WB_PKI_LEAF_BROKER, hosts, &d), WB_OK);
    char *named = slurp(p(4, WB_PKI_BROKER_CERT));
    x = load(named);
    cr_assert_eq(X509_check_host(x, "mqtt.example.org", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_ip_asc(x, "192.0.2.7", 0), 1);
    cr_assert_neq(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    X509_free(x);
    const char *bad[] = {"no spaces allowed", NULL};
    cr_assert_eq(wb_pki_reissue(dir, WB_PKI_LEAF_BROKER, bad, &d), WB_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d, "no spaces allowed"), "%s", d);
    wb_free(d);
    free(named);
    free(ca_before);
    free(key_before);
    free(crt_before);
    free(ca_after);
    free(key_after);
    free(crt_after);
    wb_free(key);
    wb_free(csr);
    wb_free(cert);
}

Test(pki, renew_server_and_read_expiry)
{
    char *d = NULL;
    wb_pki_cert_info before, after;
    cr_assert_eq(wb_pki_cert_info_get(p(0, WB_PKI_SERVER_CERT), &before, &d), WB_OK);
    cr_assert_str_eq(before.subject_cn, WB_PKI_SERVER_IDENTITY);
    cr_assert_str_eq(before.issuer_cn, "workerbus CA");
    /* 825 days, backdated 5 minutes */
    long long span = (long long)(before.not_after - before.not_before);
    cr_assert(span >= 825LL * 86400 && span <= 825LL * 86400 + 3600, "%lld s", span);
    sleep(1);
    cr_assert_eq(wb_pki_reissue(dir, WB_PKI_LEAF_SERVER, NULL, &d), WB_OK, "%s", d ? d : "");
    cr_assert_eq(wb_pki_cert_info_get(p(0, WB_PKI_SERVER_CERT), &after, &d), WB_OK);
    cr_assert_str_eq(after.subject_cn, WB_PKI_SERVER_IDENTITY);
    cr_assert_gt(after.not_after, before.not_after);
    cr_assert_eq(wb_pki_check_pair(p(0, WB_PKI_SERVER_CERT), p(1, WB_PKI_SERVER_KEY), &d), WB_OK);
    /* without the CA's key nothing is issued, and nothing is touched */
    char *crt = slurp(p(0, WB_PKI_SERVER_CERT));
    cr_assert_eq(rename(p(2, WB_PKI_CA_KEY), p(3, "ca.key.away")), 0);
    cr_assert_eq(wb_pki_reissue(dir, WB_PKI_LEAF_SERVER, NULL, &d), WB_ERR_IO);
    cr_assert(strstr(d, WB_PKI_CA_KEY), "%s", d);
    wb_free(d);
    char *same = slurp(p(0, WB_PKI_SERVER_CERT));
    cr_assert_str_eq(same, crt);
    free(crt);
    free(same);
    cr_assert_eq(wb_pki_cert_info_get(p(4, "nothing.crt"), &after, &d), WB_ERR_IO);
    wb_free(d);
}
