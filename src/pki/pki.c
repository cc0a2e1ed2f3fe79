/* Certificates for the built-in broker, on OpenSSL 3. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wb_internal.h"

#define LEAF_DAYS 825
#define CA_DAYS   3650
/* certificates start a little in the past: clocks of peers differ */
#define BACKDATE_SECONDS (5 * 60)

static void set_detail(char **detail, const char *fmt, ...) WB__PRINTF(2, 3);

static void set_detail(char **detail, const char *fmt, ...)
{
    if (!detail)
        return;
    wb__buf b = WB__BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    wb__buf_vprintf(&b, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e) {
        char tmp[256];
        ERR_error_string_n(e, tmp, sizeof tmp);
        wb__buf_printf(&b, " (OpenSSL: %s)", tmp);
    }
    free(*detail);
    *detail = wb__buf_take(&b);
}

static EVP_PKEY *new_key(wb_pki_key_type type)
{
    switch (type) {
    case WB_PKI_KEY_EC_P256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case WB_PKI_KEY_RSA_4096:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    case WB_PKI_KEY_RSA_2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
    return NULL;
}

static bool set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    bool ok = bn && BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    return ok;
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool set_cn(X509_NAME *name, const char *cn)
{
    return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"workerbus",
                                      -1, -1, 0) == 1 &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                      0) == 1;
}

/* A new certificate for pubkey, signed by issuer_key (issuer NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *pubkey, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       unsigned days, const char *const *exts_nid_value, const int *nids)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    bool ok = X509_set_version(x, 2) == 1 && set_serial(x) &&
              X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) &&
              X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 24 * 3600) &&
              X509_set_pubkey(x, pubkey) == 1 && set_cn(X509_get_subject_name(x), cn);
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                              : X509_get_subject_name(x)) == 1;
    X509 *iss = issuer ? issuer : x;
    for (size_t i = 0; ok && nids[i]; i++)
        ok = add_ext(x, iss, nids[i], exts_nid_value[i]);
    ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static char *pem_of(int (*write)(BIO *, void *), void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    char *out = NULL;
    if (write(b, obj) == 1) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        out = wb__strndup(data, (size_t)n);
    }
    BIO_free(b);
    return out;
}

static int write_cert(BIO *b, void *x)
{
    return PEM_write_bio_X509(b, x);
}

static int write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int write_req(BIO *b, void *r)
{
    return PEM_write_bio_X509_REQ(b, r);
}

static wb_err write_file(const char *dir, const char *name, const char *text, mode_t mode,
                         bool overwrite, char **detail)
{
    char *path = wb__asprintf("%s/%s", dir, name);
    if (!path)
        return WB_ERR_NO_MEMORY;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
    int fd = open(path, flags, mode);
    wb_err err = WB_OK;
    if (fd < 0) {
        set_detail(detail, "cannot create %s: %s%s", path, strerror(errno),
                   errno == EEXIST ? " (use --force to overwrite)" : "");
        err = WB_ERR_IO;
    } else {
        size_t n = strlen(text);
        if (fchmod(fd, mode) != 0 || write(fd, text, n) != (ssize_t)n) {
            set_detail(detail, "cannot write %s: %s", path, strerror(errno));
            err = WB_ERR_IO;
        }
        close(fd);
    }
    free(path);
    return err;
}

static char *san_of(const char *const *hosts)
{
    wb__buf b = WB__BUF_INIT;
    for (size_t i = 0; hosts[i]; i++) {
        unsigned char addr[16];
        bool ip =
            inet_pton(AF_INET, hosts[i], addr) == 1 || inet_pton(AF_INET6, hosts[i], addr) == 1;
        wb__buf_printf(&b, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS", hosts[i]);
    }
    return wb__buf_take(&b);
}

/* A leaf certificate from the CA: the broker's (server authentication, its
 * host names in san) or the server's (client authentication). */
static X509 *make_leaf(EVP_PKEY *key, bool broker, const char *cn, const char *san, X509 *ca,
                       EVP_PKEY *ca_key)
{
    const int srv_nids[] = {NID_basic_constraints,
                            NID_key_usage,
                            NID_ext_key_usage,
                            NID_subject_alt_name,
                            NID_subject_key_identifier,
                            NID_authority_key_identifier,
                            0};
    const char *srv_vals[] = {
        "critical,CA:FALSE", "critical,digitalSignature,keyEncipherment", "serverAuth", san, "hash",
        "keyid:always"};
    static const int cli_nids[] = {NID_basic_constraints,
                                   NID_key_usage,
                                   NID_ext_key_usage,
                                   NID_subject_key_identifier,
                                   NID_authority_key_identifier,
                                   0};
    static const char *const cli_vals[] = {"critical,CA:FALSE",
                                           "critical,digitalSignature,keyEncipherment",
                                           "clientAuth", "hash", "keyid:always"};
    return broker ? make_cert(key, cn, ca, ca_key, LEAF_DAYS, srv_vals, srv_nids)
                  : make_cert(key, cn, ca, ca_key, LEAF_DAYS, cli_vals, cli_nids);
}

WB_API wb_err wb_pki_init(const char *dir, const wb_pki_init_opts *opts, char **detail)
{
    static const char *const default_hosts[] = {"localhost", "127.0.0.1", "::1", NULL};
    wb_pki_init_opts o = WB_PKI_INIT_OPTS_INIT;
    if (detail)
        *detail = NULL;
    if (opts) {
        if (opts->version != WB_PKI_INIT_OPTS_VERSION)
            return WB_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (!dir || !*dir || (unsigned)o.key_type > WB_PKI_KEY_RSA_2048)
        return WB_ERR_INVALID_ARGUMENT;
    const char *const *hosts = o.broker_hosts ? o.broker_hosts : default_hosts;
    if (!hosts[0]) {
        set_detail(detail, "at least one broker host name is needed");
        return WB_ERR_INVALID_ARGUMENT;
    }
    for (size_t i = 0; hosts[i]; i++) {
        unsigned char addr[16];
        if (inet_pton(AF_INET6, hosts[i], addr) == 1)
            continue;
        const char *why = wb__host_check(hosts[i], strlen(hosts[i]), NULL);
        if (why) {
            set_detail(detail, "broker host \"%s\": %s", hosts[i], why);
            return WB_ERR_INVALID_ARGUMENT;
        }
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        set_detail(detail, "cannot create the directory %s: %s", dir, strerror(errno));
        return WB_ERR_IO;
    }

    ERR_clear_error();
    wb_err err = WB_ERR_BACKEND;
    EVP_PKEY *ca_key = new_key(o.key_type), *broker_key = new_key(o.key_type),
             *server_key = new_key(o.key_type);
    X509 *ca = NULL, *broker = NULL, *server = NULL;
    char *san = san_of(hosts);
    char *pems[6] = {NULL};
    if (!ca_key || !broker_key || !server_key || !san) {
        set_detail(detail, "cannot generate keys");
        goto out;
    }
    static const int ca_nids[] = {NID_basic_constraints, NID_key_usage, NID_subject_key_identifier,
                                  0};
    static const char *const ca_vals[] = {"critical,CA:TRUE,pathlen:0",
                                          "critical,keyCertSign,cRLSign", "hash"};
    ca = make_cert(ca_key, "workerbus CA", NULL, ca_key, o.ca_days ? o.ca_days : CA_DAYS, ca_vals,
                   ca_nids);
    broker = ca ? make_leaf(broker_key, true, hosts[0], san, ca, ca_key) : NULL;
    server = ca ? make_leaf(server_key, false, WB_PKI_SERVER_IDENTITY, NULL, ca, ca_key) : NULL;
    if (!ca || !broker || !server) {
        set_detail(detail, "cannot create the certificates");
        goto out;
    }
    pems[0] = pem_of(write_cert, ca);
    pems[1] = pem_of(write_key, ca_key);
    pems[2] = pem_of(write_cert, broker);
    pems[3] = pem_of(write_key, broker_key);
    pems[4] = pem_of(write_cert, server);
    pems[5] = pem_of(write_key, server_key);
    for (int i = 0; i < 6; i++) {
        if (!pems[i]) {
            err = WB_ERR_NO_MEMORY;
            goto out;
        }
    }
    static const char *const names[6] = {WB_PKI_CA_CERT,    WB_PKI_CA_KEY,      WB_PKI_BROKER_CERT,
                                         WB_PKI_BROKER_KEY, WB_PKI_SERVER_CERT, WB_PKI_SERVER_KEY};
    err = WB_OK;
    for (int i = 0; i < 6 && !err; i++)
        err = write_file(dir, names[i], pems[i], (i % 2) ? 0600 : 0644, o.overwrite, detail);
    if (!err) {
        unsigned char raw[32];
        char hex[2 * sizeof raw + 2];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            set_detail(detail, "cannot draw random bytes for the token key");
            err = WB_ERR_BACKEND;
        } else {
            for (size_t i = 0; i < sizeof raw; i++)
                snprintf(hex + 2 * i, 3, "%02x", raw[i]);
            strcat(hex, "\n");
            err = write_file(dir, WB_PKI_TOKEN_KEY, hex, 0600, o.overwrite, detail);
            OPENSSL_cleanse(raw, sizeof raw);
            OPENSSL_cleanse(hex, sizeof hex);
        }
    }
out:
    for (int i = 0; i < 6; i++) {
        if (pems[i])
            OPENSSL_cleanse(pems[i], strlen(pems[i]));
        free(pems[i]);
    }
    free(san);
    X509_free(ca);
    X509_free(broker);
    X509_free(server);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(broker_key);
    EVP_PKEY_free(server_key);
    return err;
}

static FILE *open_pem(const char *file, char **detail)
{
    FILE *f = fopen(file, "r");
    if (!f)
        set_detail(detail, "cannot open %s: %s", file, strerror(errno));
    return f;
}

static wb_err read_cert(const char *file, X509 **out, char **detail)
{
    FILE *f = open_pem(file, detail);
    if (!f)
        return WB_ERR_IO;
    *out = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!*out) {
        set_detail(detail, "%s does not hold a PEM certificate", file);
        return WB_ERR_IO;
    }
    return WB_OK;
}

static wb_err read_key(const char *file, EVP_PKEY **out, char **detail)
{
    FILE *f = open_pem(file, detail);
    if (!f)
        return WB_ERR_IO;
    *out = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!*out) {
        set_detail(detail, "%s does not hold an unencrypted PEM private key", file);
        return WB_ERR_IO;
    }
    return WB_OK;
}

/* RSA >= 2048 bits, or EC on P-256 / P-384. */
static const char *key_refusal(EVP_PKEY *k)
{
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_RSA)
        return EVP_PKEY_get_bits(k) >= 2048 ? NULL : "an RSA key shorter than 2048 bits";
    if (id == EVP_PKEY_EC) {
        char group[64];
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &gl))
            return "an EC key of unknown curve";
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
            strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
            return NULL;
        return "an EC key on a curve other than P-256 or P-384";
    }
    return "a key that is neither RSA nor EC";
}

WB_API wb_err wb_pki_sign_csr(const char *ca_cert_file, const char *ca_key_file, const char *pool,
                              const char *csr_pem, size_t csr_len, unsigned int days,
                              char **cert_pem, char **detail)
{
    if (cert_pem)
        *cert_pem = NULL;
    if (detail)
        *detail = NULL;
    if (!ca_cert_file || !ca_key_file || !csr_pem || !cert_pem)
        return WB_ERR_INVALID_ARGUMENT;
    char pool_c[WB_ULID_STR_SIZE];
    if (wb_ulid_canonical(pool, pool_c) != WB_OK) {
        set_detail(detail,
                   "\"%s\" is not a pool ULID (26 characters of Crockford base32, first 0-7)",
                   pool ? pool : "(null)");
        return WB_ERR_INVALID_ARGUMENT;
    }
    ERR_clear_error();
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL, *req_key = NULL;
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    wb_err err = read_cert(ca_cert_file, &ca, detail);
    if (!err)
        err = read_key(ca_key_file, &ca_key, detail);
    if (err)
        goto out;
    if (X509_check_private_key(ca, ca_key) != 1) {
        set_detail(detail, "the CA key %s does not belong to the CA certificate %s", ca_key_file,
                   ca_cert_file);
        err = WB_ERR_AUTH_REFUSED;
        goto out;
    }
    BIO *b = csr_len <= INT32_MAX ? BIO_new_mem_buf(csr_pem, (int)csr_len) : NULL;
    req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!req) {
        set_detail(detail, "the CSR is not a PEM certificate request "
                           "(-----BEGIN CERTIFICATE REQUEST-----)");
        err = WB_ERR_INVALID_ARGUMENT;
        goto out;
    }
    req_key = X509_REQ_get_pubkey(req);
    if (!req_key || X509_REQ_verify(req, req_key) != 1) {
        set_detail(detail, "the CSR's signature does not verify: it was not made with its key");
        err = WB_ERR_INVALID_ARGUMENT;
        goto out;
    }
    const char *why = key_refusal(req_key);
    if (why) {
        set_detail(detail,
                   "the CSR holds %s; accepted: RSA of 2048 bits or more (4096 "
                   "recommended), or EC on P-256 or P-384",
                   why);
        err = WB_ERR_INVALID_ARGUMENT;
        goto out;
    }
    static const int nids[] = {NID_basic_constraints,
                               NID_key_usage,
                               NID_ext_key_usage,
                               NID_subject_key_identifier,
                               NID_authority_key_identifier,
                               0};
    const char *vals[] = {"critical,CA:FALSE",
                          EVP_PKEY_get_base_id(req_key) == EVP_PKEY_RSA
                              ? "critical,digitalSignature,keyEncipherment"
                              : "critical,digitalSignature",
                          "clientAuth", "hash", "keyid:always"};
    cert = make_cert(req_key, pool_c, ca, ca_key, days ? days : LEAF_DAYS, vals, nids);
    if (!cert) {
        set_detail(detail, "cannot create the certificate");
        err = WB_ERR_BACKEND;
        goto out;
    }
    *cert_pem = pem_of(write_cert, cert);
    err = *cert_pem ? WB_OK : WB_ERR_NO_MEMORY;
out:
    X509_free(cert);
    X509_REQ_free(req);
    EVP_PKEY_free(req_key);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    return err;
}

WB_API wb_err wb_pki_new_csr(wb_pki_key_type type, const char *common_name, char **key_pem,
                             char **csr_pem, char **detail)
{
    if (detail)
        *detail = NULL;
    if (!key_pem || !csr_pem || !common_name || !*common_name ||
        (unsigned)type > WB_PKI_KEY_RSA_2048)
        return WB_ERR_INVALID_ARGUMENT;
    *key_pem = *csr_pem = NULL;
    ERR_clear_error();
    EVP_PKEY *k = new_key(type);
    X509_REQ *req = X509_REQ_new();
    wb_err err = WB_ERR_BACKEND;
    if (!k || !req || X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_pubkey(req, k) != 1 ||
        !set_cn(X509_REQ_get_subject_name(req), common_name) ||
        X509_REQ_sign(req, k, EVP_sha256()) <= 0) {
        set_detail(detail, "cannot make the key and CSR");
        goto out;
    }
    *key_pem = pem_of(write_key, k);
    *csr_pem = pem_of(write_req, req);
    err = (*key_pem && *csr_pem) ? WB_OK : WB_ERR_NO_MEMORY;
    if (err) {
        free(*key_pem);
        free(*csr_pem);
        *key_pem = *csr_pem = NULL;
    }
out:
    X509_REQ_free(req);
    EVP_PKEY_free(k);
    return err;
}

static wb_err check_dates(X509 *x, const char *file, char **detail)
{
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        set_detail(detail, "the certificate %s is not valid yet", file);
        return WB_ERR_AUTH_REFUSED;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        set_detail(detail, "the certificate %s has expired", file);
        return WB_ERR_AUTH_REFUSED;
    }
    return WB_OK;
}

WB_API wb_err wb_pki_check_pair(const char *cert_file, const char *key_file, char **detail)
{
    if (detail)
        *detail = NULL;
    if (!cert_file || !key_file)
        return WB_ERR_INVALID_ARGUMENT;
    ERR_clear_error();
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    wb_err err = read_cert(cert_file, &x, detail);
    if (!err)
        err = read_key(key_file, &k, detail);
    if (!err && X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        set_detail(detail, "the key %s does not belong to the certificate %s", key_file, cert_file);
        err = WB_ERR_AUTH_REFUSED;
    }
    if (!err)
        err = check_dates(x, cert_file, detail);
    EVP_PKEY_free(k);
    X509_free(x);
    return err;
}

WB_API wb_err wb_pki_check_issued_by(const char *cert_file, const char *ca_file, char **detail)
{
    if (detail)
        *detail = NULL;
    if (!cert_file || !ca_file)
        return WB_ERR_INVALID_ARGUMENT;
    ERR_clear_error();
    X509 *x = NULL, *ca = NULL;
    wb_err err = read_cert(cert_file, &x, detail);
    if (!err)
        err = read_cert(ca_file, &ca, detail);
    X509_STORE *store = err ? NULL : X509_STORE_new();
    X509_STORE_CTX *ctx = store ? X509_STORE_CTX_new() : NULL;
    if (!err && (!store || !ctx))
        err = WB_ERR_NO_MEMORY;
    if (!err &&
        (X509_STORE_add_cert(store, ca) != 1 || X509_STORE_CTX_init(ctx, store, x, NULL) != 1)) {
        err = WB_ERR_BACKEND;
        set_detail(detail, "cannot set up the verification of %s", cert_file);
    }
    if (!err && X509_verify_cert(ctx) != 1) {
        int v = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        set_detail(detail, "the certificate %s is not accepted by the CA %s: %s", cert_file,
                   ca_file, X509_verify_cert_error_string(v));
        err = WB_ERR_AUTH_REFUSED;
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    X509_free(x);
    return err;
}

WB_API wb_err wb_pki_token(const char *token_key_file, const char *pool,
                           char out[WB_PKI_TOKEN_LEN + 1], char **detail)
{
    if (detail)
        *detail = NULL;
    if (!token_key_file || !out)
        return WB_ERR_INVALID_ARGUMENT;
    char subject[64];
    if (pool) {
        char c[WB_ULID_STR_SIZE];
        if (wb_ulid_canonical(pool, c) != WB_OK) {
            set_detail(detail, "\"%s\" is not a pool ULID", pool);
            return WB_ERR_INVALID_ARGUMENT;
        }
        snprintf(subject, sizeof subject, "pool:%s", c);
    } else {
        snprintf(subject, sizeof subject, "server:%s", WB_PKI_SERVER_IDENTITY);
    }
    FILE *f = fopen(token_key_file, "r");
    if (!f) {
        set_detail(detail, "cannot open the token key %s: %s", token_key_file, strerror(errno));
        return WB_ERR_IO;
    }
    char key[256];
    size_t n = fread(key, 1, sizeof key - 1, f);
    fclose(f);
    key[n] = '\0';
    while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' '))
        key[--n] = '\0';
    bool hex = n >= WB_PKI_TOKEN_LEN;
    for (size_t i = 0; hex && i < n; i++)
        hex = strchr("0123456789abcdefABCDEF", key[i]) != NULL;
    if (!hex) {
        OPENSSL_cleanse(key, sizeof key);
        set_detail(detail,
                   "the token key %s must hold at least 64 hexadecimal characters "
                   "(workerbus pki init writes one)",
                   token_key_file);
        return WB_ERR_IO;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    ERR_clear_error();
    unsigned char *r =
        HMAC(EVP_sha256(), key, (int)n, (const unsigned char *)subject, strlen(subject), mac, &ml);
    OPENSSL_cleanse(key, sizeof key);
    if (!r || ml != 32) {
        set_detail(detail, "HMAC-SHA256 failed");
        return WB_ERR_BACKEND;
    }
    for (unsigned i = 0; i < ml; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return WB_OK;
}

char *wb__pki_cert_cn(const char *cert_file)
{
    X509 *x = NULL;
    if (read_cert(cert_file, &x, NULL) != WB_OK)
        return NULL;
    char cn[256] = "";
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    X509_free(x);
    return n >= 0 ? wb__strdup(cn) : NULL;
}

int wb__pki_cert_matches_host(const char *cert_file, const char *host)
{
    X509 *x = NULL;
    if (read_cert(cert_file, &x, NULL) != WB_OK)
        return -1;
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    int r = ip ? X509_check_ip_asc(x, host, 0) : X509_check_host(x, host, 0, 0, NULL);
    X509_free(x);
    ERR_clear_error();
    return r == 1;
}

/* ---- the life cycle: issuing a leaf again, reading what expires ------------ */

/* Writes text into dir/name through dir/name.new and a rename: a reader sees
 * the old file or the new one, never half of one. */
static wb_err replace_file(const char *dir, const char *name, const char *text, mode_t mode,
                           char **detail)
{
    char *tmp = wb__asprintf("%s.new", name);
    char *from = wb__asprintf("%s/%s.new", dir, name), *to = wb__asprintf("%s/%s", dir, name);
    wb_err err =
        tmp && from && to ? write_file(dir, tmp, text, mode, true, detail) : WB_ERR_NO_MEMORY;
    if (!err && rename(from, to) != 0) {
        set_detail(detail, "cannot replace %s: %s", to, strerror(errno));
        unlink(from);
        err = WB_ERR_IO;
    }
    free(tmp);
    free(from);
    free(to);
    return err;
}

/* The DNS names and IP addresses a certificate is valid for, as
 * a NULL-terminated array (wb__strv_free()); NULL when it has none. */
static char **san_hosts(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens ? sk_GENERAL_NAME_num(gens) : 0;
    char **out = n > 0 ? calloc((size_t)n + 1, sizeof *out) : NULL;
    size_t k = 0;
    for (int i = 0; out && i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char buf[INET6_ADDRSTRLEN] = "";
        if (g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            out[k] = wb__strndup((const char *)d, (size_t)ASN1_STRING_length(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            if (inet_ntop(len == 16 ? AF_INET6 : AF_INET, a, buf, sizeof buf))
                out[k] = wb__strdup(buf);
        } else {
            continue;
        }
        if (out[k])
            k++;
    }
    GENERAL_NAMES_free(gens);
    if (out && k == 0) {
        free(out);
        out = NULL;
    }
    return out;
}

WB_API wb_err wb_pki_reissue(const char *dir, wb_pki_leaf which, const char *const *broker_hosts,
                             char **detail)
{
    if (detail)
        *detail = NULL;
    if (!dir || !*dir || (which != WB_PKI_LEAF_BROKER && which != WB_PKI_LEAF_SERVER))
        return WB_ERR_INVALID_ARGUMENT;
    bool broker = which == WB_PKI_LEAF_BROKER;
    char *ca_file = wb__asprintf("%s/%s", dir, WB_PKI_CA_CERT);
    char *ca_key_file = wb__asprintf("%s/%s", dir, WB_PKI_CA_KEY);
    char *old_file = wb__asprintf("%s/%s", dir, broker ? WB_PKI_BROKER_CERT : WB_PKI_SERVER_CERT);
    X509 *ca = NULL, *old = NULL, *cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    char **kept = NULL, *san = NULL, *pem_cert = NULL, *pem_key = NULL;
    wb_err err = ca_file && ca_key_file && old_file ? WB_OK : WB_ERR_NO_MEMORY;
    ERR_clear_error();
    if (!err)
        err = read_cert(ca_file, &ca, detail);
    if (!err)
        err = read_key(ca_key_file, &ca_key, detail);
    if (!err && X509_check_private_key(ca, ca_key) != 1) {
        set_detail(detail, "%s does not belong to %s", ca_key_file, ca_file);
        err = WB_ERR_IO;
    }
    const char *const *hosts = broker_hosts;
    if (!err && broker && !hosts) { /* the names of the certificate it replaces */
        if (read_cert(old_file, &old, detail) != WB_OK)
            err = WB_ERR_IO;
        else if (!(kept = san_hosts(old))) {
            set_detail(detail, "%s names no host: give the broker's host names", old_file);
            err = WB_ERR_INVALID_ARGUMENT;
        }
        hosts = (const char *const *)kept;
    }
    for (size_t i = 0; !err && broker && hosts[i]; i++) {
        unsigned char addr[16];
        const char *why = inet_pton(AF_INET6, hosts[i], addr) == 1
                              ? NULL
                              : wb__host_check(hosts[i], strlen(hosts[i]), NULL);
        if (why) {
            set_detail(detail, "broker host \"%s\": %s", hosts[i], why);
            err = WB_ERR_INVALID_ARGUMENT;
        }
    }
    if (!err && broker && !hosts[0]) {
        set_detail(detail, "at least one broker host name is needed");
        err = WB_ERR_INVALID_ARGUMENT;
    }
    if (!err) {
        /* a key of the CA's kind */
        key = new_key(EVP_PKEY_get_base_id(ca_key) == EVP_PKEY_RSA ? WB_PKI_KEY_RSA_2048
                                                                   : WB_PKI_KEY_EC_P256);
        san = broker ? san_of(hosts) : NULL;
        if (!key || (broker && !san)) {
            set_detail(detail, "cannot generate the key");
            err = WB_ERR_BACKEND;
        }
    }
    if (!err) {
        cert = make_leaf(key, broker, broker ? hosts[0] : WB_PKI_SERVER_IDENTITY, san, ca, ca_key);
        pem_cert = cert ? pem_of(write_cert, cert) : NULL;
        pem_key = cert ? pem_of(write_key, key) : NULL;
        if (!pem_cert || !pem_key) {
            set_detail(detail, "cannot create the certificate");
            err = WB_ERR_BACKEND;
        }
    }
    /* the key first: a reader of the pair between the two renames sees the
     * new key with the old certificate and refuses it, rather than the
     * other way round with a certificate nobody can use */
    if (!err)
        err = replace_file(dir, broker ? WB_PKI_BROKER_KEY : WB_PKI_SERVER_KEY, pem_key, 0600,
                           detail);
    if (!err)
        err = replace_file(dir, broker ? WB_PKI_BROKER_CERT : WB_PKI_SERVER_CERT, pem_cert, 0644,
                           detail);
    if (pem_key)
        OPENSSL_cleanse(pem_key, strlen(pem_key));
    free(pem_key);
    free(pem_cert);
    free(san);
    wb__strv_free(kept);
    X509_free(ca);
    X509_free(old);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    free(ca_file);
    free(ca_key_file);
    free(old_file);
    ERR_clear_error();
    return err;
}

static int64_t unix_of(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

WB_API wb_err wb_pki_cert_info_get(const char *cert_file, wb_pki_cert_info *out, char **detail)
{
    if (detail)
        *detail = NULL;
    if (!cert_file || !out)
        return WB_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    X509 *x = NULL;
    wb_err err = read_cert(cert_file, &x, detail);
    if (err)
        return err;
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out->subject_cn,
                              sizeof out->subject_cn);
    X509_NAME_get_text_by_NID(X509_get_issuer_name(x), NID_commonName, out->issuer_cn,
                              sizeof out->issuer_cn);
    out->not_before = unix_of(X509_get0_notBefore(x));
    out->not_after = unix_of(X509_get0_notAfter(x));
    X509_free(x);
    ERR_clear_error();
    return WB_OK;
}
