/**
 * @file pki.h
 * Credentials for the built-in broker: a certificate authority, the broker's
 * TLS certificate, the server's own client identity, and worker-pool client
 * certificates signed from a pool's certificate signing request (CSR).
 *
 * Identity mapping (see docs/builtin-broker.md): a worker certificate's
 * subject common name is its pool's ULID; the worker's MQTT client id is its
 * worker ULID. The server's certificate has the common name
 * ::WB_PKI_SERVER_IDENTITY, which can never be a ULID.
 *
 * Functions here take no handle; where they fail they can return a detail
 * string (`char **detail`, may be NULL) that the caller frees with wb_free().
 * All functions are thread-safe.
 */
#ifndef WORKERBUS_PKI_H
#define WORKERBUS_PKI_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The common name of the server's own client certificate. */
#define WB_PKI_SERVER_IDENTITY "workerbus-server"

/** Key types for keys that workerbus generates. */
typedef enum wb_pki_key_type {
    WB_PKI_KEY_EC_P256 = 0, /**< ECDSA on P-256 (fast; the default) */
    WB_PKI_KEY_RSA_4096 = 1,
    WB_PKI_KEY_RSA_2048 = 2,
} wb_pki_key_type;

/** File names that wb_pki_init() writes into its directory. */
#define WB_PKI_CA_CERT     "ca.crt"
#define WB_PKI_CA_KEY      "ca.key"
#define WB_PKI_BROKER_CERT "broker.crt"
#define WB_PKI_BROKER_KEY  "broker.key"
#define WB_PKI_SERVER_CERT "server.crt"
#define WB_PKI_SERVER_KEY  "server.key"
#define WB_PKI_TOKEN_KEY   "token.key"

/** Options of wb_pki_init(). Initialize with ::WB_PKI_INIT_OPTS_INIT. */
typedef struct wb_pki_init_opts {
    unsigned int version; /**< ::WB_PKI_INIT_OPTS_VERSION */
    /** Names the broker's certificate is valid for (DNS names or IP
     *  addresses), NULL-terminated; NULL means {"localhost", "127.0.0.1",
     *  "::1"}. Use the host of MQTT_BROKER_ENDPOINT. */
    const char *const *broker_hosts;
    /** Validity of the CA in days (0: 3650). Other certificates: 825 days. */
    unsigned int ca_days;
    wb_pki_key_type key_type;
    /** Overwrite existing files (otherwise an existing file is an error). */
    int overwrite;
} wb_pki_init_opts;

#define WB_PKI_INIT_OPTS_VERSION 1
#define WB_PKI_INIT_OPTS_INIT                                                                      \
    {                                                                                              \
        WB_PKI_INIT_OPTS_VERSION, NULL, 0, WB_PKI_KEY_EC_P256, 0                                   \
    }

/**
 * Creates dir (mode 0700) if needed and writes a new CA, the broker's
 * certificate and key, the server's client certificate and key, and the
 * token key of plain (non-TLS) listeners into it. Keys are written with
 * mode 0600.
 * @param opts NULL: the defaults of ::WB_PKI_INIT_OPTS_INIT.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (bad option or host name);
 *         ::WB_ERR_IO (a file exists, or cannot be written; see detail);
 *         ::WB_ERR_BACKEND (OpenSSL failed; see detail); ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_pki_init(const char *dir, const wb_pki_init_opts *opts, char **detail);

/** The leaf certificates of a PKI directory that can be issued again. */
typedef enum wb_pki_leaf {
    WB_PKI_LEAF_BROKER = 0, /**< broker.crt and broker.key: the broker's TLS identity */
    WB_PKI_LEAF_SERVER = 1, /**< server.crt and server.key: the server's client identity */
} wb_pki_leaf;

/**
 * Issues a leaf certificate of dir again, with a new key, from the CA of dir
 * (ca.crt and ca.key), which stays: every certificate it signed, the worker
 * pools' among them, keeps verifying. Valid 825 days, like the first.
 * @param broker_hosts  for the broker: the names it is valid for
 *                      (NULL-terminated); NULL keeps those of the current
 *                      certificate. Ignored for the server.
 * The new key and certificate replace the old ones, each written aside and
 * renamed over it. A running bundled broker reads them at its next start.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (a bad host name);
 *         ::WB_ERR_IO (the CA, its key or a file cannot be read or written;
 *         see detail); ::WB_ERR_BACKEND (OpenSSL failed); ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_pki_reissue(const char *dir, wb_pki_leaf which, const char *const *broker_hosts,
                             char **detail);

/** What a certificate says of itself (wb_pki_cert_info_get()). */
typedef struct wb_pki_cert_info {
    char subject_cn[256]; /**< its common name ("" when it has none) */
    char issuer_cn[256];
    int64_t not_before; /**< Unix seconds */
    int64_t not_after;  /**< Unix seconds */
} wb_pki_cert_info;

/**
 * Reads a PEM certificate's names and validity.
 * @return ::WB_OK; ::WB_ERR_IO (unreadable, not a certificate; see detail).
 */
WB_API wb_err wb_pki_cert_info_get(const char *cert_file, wb_pki_cert_info *out, char **detail);

/**
 * Signs a worker pool's CSR (PEM) into a client certificate for that pool.
 * The CSR's signature is verified; its key must be RSA of at least 2048 bits
 * or EC on P-256 or P-384; its subject is replaced by CN=<pool ULID>.
 * @param pool     the pool's ULID (any case; written in canonical form)
 * @param days     validity in days; 0 means 825
 * @param cert_pem receives the new certificate (PEM), owned by the caller
 *                 (wb_free()); NULL on error.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (bad ULID, malformed CSR, bad
 *         signature, refused key type); ::WB_ERR_IO (CA files unreadable);
 *         ::WB_ERR_AUTH_REFUSED (the CA key does not match the CA
 *         certificate); ::WB_ERR_BACKEND; ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_pki_sign_csr(const char *ca_cert_file, const char *ca_key_file, const char *pool,
                              const char *csr_pem, size_t csr_len, unsigned int days,
                              char **cert_pem, char **detail);

/**
 * Makes a new private key and a CSR for it (what a worker pool owner does;
 * used by tests, the harness and `workerbus pki new-pool`).
 * @param key_pem, csr_pem receive PEM text owned by the caller (wb_free()).
 * @return ::WB_OK, ::WB_ERR_INVALID_ARGUMENT, ::WB_ERR_BACKEND, ::WB_ERR_NO_MEMORY.
 */
WB_API wb_err wb_pki_new_csr(wb_pki_key_type type, const char *common_name, char **key_pem,
                             char **csr_pem, char **detail);

/**
 * Checks that a certificate file and a key file can be read and belong
 * together, and that the certificate is valid now.
 * @return ::WB_OK; ::WB_ERR_IO (unreadable, or not PEM); ::WB_ERR_AUTH_REFUSED
 *         (the key does not match, or the certificate has expired or is not
 *         yet valid); ::WB_ERR_NO_MEMORY. detail says which.
 */
WB_API wb_err wb_pki_check_pair(const char *cert_file, const char *key_file, char **detail);

/**
 * Checks that a certificate file was issued by the CA in ca_file.
 * @return ::WB_OK, ::WB_ERR_IO, ::WB_ERR_AUTH_REFUSED (detail says why).
 */
WB_API wb_err wb_pki_check_issued_by(const char *cert_file, const char *ca_file, char **detail);

/** Characters of a token (hex of HMAC-SHA256), without the NUL. */
#define WB_PKI_TOKEN_LEN 64

/**
 * The password of a pool's workers on a plain (non-TLS) listener of the
 * built-in broker: hex(HMAC-SHA256(token key, "pool:" + canonical pool
 * ULID)). Pass pool NULL for the server's own password. The MQTT user name
 * is the pool ULID (or ::WB_PKI_SERVER_IDENTITY for the server).
 * @param out receives WB_PKI_TOKEN_LEN hex characters and a NUL.
 * @return ::WB_OK; ::WB_ERR_INVALID_ARGUMENT (bad pool ULID); ::WB_ERR_IO
 *         (the key file cannot be read or holds fewer than 64 hex
 *         characters); ::WB_ERR_BACKEND.
 */
WB_API wb_err wb_pki_token(const char *token_key_file, const char *pool,
                           char out[WB_PKI_TOKEN_LEN + 1], char **detail);

#ifdef __cplusplus
}
#endif
#endif
