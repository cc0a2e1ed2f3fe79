/* workerbus pki: credentials for the built-in broker. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <time.h>

#include "cli.h"
#include "workerbus/workerbus.h"

static const char usage[] =
    "Usage: workerbus pki init DIR [--host NAME]... [--rsa] [--force]\n"
    "       workerbus pki sign-csr --pool ULID (--pki-dir DIR | --ca-cert FILE --ca-key FILE)\n"
    "                              [--days N] [--out FILE] [CSR_FILE | -]\n"
    "       workerbus pki new-csr --key-out FILE --csr-out FILE [--cn NAME] [--rsa]\n"
    "       workerbus pki token --token-key FILE (--pool ULID | --server)\n"
    "       workerbus pki reissue-broker DIR [--host NAME]...\n"
    "       workerbus pki renew-server DIR\n"
    "       workerbus pki status DIR [--json]\n"
    "\n"
    "init      creates DIR (0700) with a new CA (ca.crt, ca.key), the broker's TLS\n"
    "          certificate (broker.crt, broker.key) for each --host (default:\n"
    "          localhost, 127.0.0.1, ::1), the server's client identity\n"
    "          (server.crt, server.key, common name workerbus-server) and the\n"
    "          token key of plain listeners (token.key). Point\n"
    "          MQTT_BROKER_BUILTIN_PKI_DIR at DIR. Keys are EC P-256, or RSA-4096\n"
    "          with --rsa. Existing files are kept unless --force.\n"
    "sign-csr  signs a worker pool's certificate signing request (PEM, from\n"
    "          CSR_FILE or standard input) into a client certificate whose\n"
    "          common name is the pool's ULID; prints it or writes --out.\n"
    "          --days N: its validity, 1 to 36500 days (default 825).\n"
    "          Accepts RSA keys of 2048 bits or more and EC P-256/P-384 keys.\n"
    "new-csr   makes a private key and a CSR, as a worker pool owner would.\n"
    "token     prints the password of a pool's workers (user name: the pool\n"
    "          ULID), or of the server, on a plain (non-TLS) listener.\n"
    "reissue-broker  issues the broker's certificate and key again from DIR's\n"
    "          CA, which stays: pool certificates keep verifying. For new host\n"
    "          names (--host, each one; default: the current certificate's) or\n"
    "          before it expires. Restart the server (or its bundled broker).\n"
    "renew-server    the same for the server's client certificate.\n"
    "status    what each certificate of DIR is and when it expires; exit 1\n"
    "          when one has expired, 2 when one expires within 30 days.\n"
    "-- ends the options (a file name that starts with '-' follows it).\n"
    "\n"
    "Exit codes: 0 success, 64 usage error, 65 bad input (CSR, ULID),\n"
    "66 unreadable input, 73 cannot create output, 70 internal error;\n"
    "status: 1 a certificate has expired or is unreadable, 2 one expires within\n"
    "30 days.\n";

#define EX_DATAERR   65
#define EX_CANTCREAT 73

static int fail(wb_err err, char *detail)
{
    fprintf(stderr, "workerbus: pki: %s\n", detail ? detail : wb_strerror(err));
    wb_free(detail);
    switch (err) {
    case WB_ERR_INVALID_ARGUMENT:
    case WB_ERR_AUTH_REFUSED:
        return EX_DATAERR;
    case WB_ERR_IO:
        return WB_EXIT_NOINPUT;
    default:
        return WB_EXIT_SOFTWARE;
    }
}

/* The whole of a file (or standard input for "-"), at most 1 MiB. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 == cap) {
            char *nb = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb)
                break; /* larger than any CSR: what was read is refused later */
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    if (f != stdin)
        fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int write_out(const char *path, const char *text)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "workerbus: pki: cannot create %s: %s\n", path, strerror(errno));
        return EX_CANTCREAT;
    }
    fputs(text, f);
    if (path && fclose(f) != 0) {
        fprintf(stderr, "workerbus: pki: cannot write %s: %s\n", path, strerror(errno));
        return EX_CANTCREAT;
    }
    return WB_EXIT_OK;
}

static int cmd_init(int argc, char **argv)
{
    const char *dir = NULL;
    const char **hosts = calloc((size_t)argc + 1, sizeof *hosts);
    size_t nh = 0;
    wb_pki_init_opts o = WB_PKI_INIT_OPTS_INIT;
    int rc = WB_EXIT_OK;
    static const wb_cli_opt opts[] = {{"host", "a DNS name or IP address", 0},
                                      {"rsa", NULL, 0},
                                      {"force", NULL, 0},
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"pki init", argc, argv, opts, 0};
    const char *v;
    int k;
    while (hosts && (k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "host"))
            hosts[nh++] = v;
        else if (wb_cli_opt_is(&g, k, "rsa"))
            o.key_type = WB_PKI_KEY_RSA_4096;
        else if (wb_cli_opt_is(&g, k, "force"))
            o.overwrite = 1;
    }
    if (hosts && k == WB_CLI_GETOPT_BAD) {
        free(hosts);
        return WB_EXIT_USAGE;
    }
    int nargs = 0;
    char **args = hosts ? wb_cli_getopt_args(&g, &nargs) : NULL;
    if (nargs > 1) {
        free(hosts);
        return wb_cli_usage_error("pki init", "unexpected argument '%s'", args[1]);
    }
    dir = nargs ? args[0] : NULL;
    if (!hosts)
        return fail(WB_ERR_NO_MEMORY, NULL);
    if (!dir) {
        free(hosts);
        return wb_cli_usage_error("pki init", "the directory is missing");
    }
    o.broker_hosts = nh ? hosts : NULL;
    char *d = NULL;
    wb_err err = wb_pki_init(dir, &o, &d);
    if (err == WB_ERR_IO) { /* the files could not be created */
        fprintf(stderr, "workerbus: pki: %s\n", d ? d : wb_strerror(err));
        wb_free(d);
        rc = EX_CANTCREAT;
    } else if (err)
        rc = fail(err, d);
    else
        printf("workerbus: pki: wrote %s/{%s,%s,%s,%s,%s,%s,%s}\n"
               "Set MQTT_BROKER_BUILTIN_PKI_DIR=%s; keep %s/%s offline if you can.\n",
               dir, WB_PKI_CA_CERT, WB_PKI_CA_KEY, WB_PKI_BROKER_CERT, WB_PKI_BROKER_KEY,
               WB_PKI_SERVER_CERT, WB_PKI_SERVER_KEY, WB_PKI_TOKEN_KEY, dir, dir, WB_PKI_CA_KEY);
    free(hosts);
    return rc;
}

static int cmd_sign(int argc, char **argv)
{
    const char *pool = NULL, *pki_dir = NULL, *ca = NULL, *cakey = NULL, *out = NULL,
               *csr_file = NULL;
    unsigned days = 0;
    static const wb_cli_opt opts[] = {{"pool", "the pool's ULID", 0},
                                      {"pki-dir", "DIR", 0},
                                      {"ca-cert", "FILE", 0},
                                      {"ca-key", "FILE", 0},
                                      {"out", "FILE", 0},
                                      {"days", "1 to 36500", 0},
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"pki sign-csr", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "pool"))
            pool = v;
        else if (wb_cli_opt_is(&g, k, "pki-dir"))
            pki_dir = v;
        else if (wb_cli_opt_is(&g, k, "ca-cert"))
            ca = v;
        else if (wb_cli_opt_is(&g, k, "ca-key"))
            cakey = v;
        else if (wb_cli_opt_is(&g, k, "out"))
            out = v;
        else if (wb_cli_opt_is(&g, k, "days") && !wb_cli_parse_uint(v, 1, 36500, &days))
            return wb_cli_usage_error("pki sign-csr", "--days takes 1 to 36500, got '%s'", v);
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 1, &args, &nargs);
    if (bad)
        return bad;
    csr_file = nargs ? args[0] : NULL;
    if (!pool)
        return wb_cli_usage_error("pki sign-csr", "--pool ULID is required");
    if (!pki_dir && (!ca || !cakey))
        return wb_cli_usage_error("pki sign-csr",
                                  "give --pki-dir DIR, or both --ca-cert and --ca-key");
    char cab[4096], cakb[4096];
    if (pki_dir) {
        snprintf(cab, sizeof cab, "%s/%s", pki_dir, WB_PKI_CA_CERT);
        snprintf(cakb, sizeof cakb, "%s/%s", pki_dir, WB_PKI_CA_KEY);
        ca = ca ? ca : cab;
        cakey = cakey ? cakey : cakb;
    }
    size_t len = 0;
    char *csr = read_all(csr_file ? csr_file : "-", &len);
    if (!csr) {
        fprintf(stderr, "workerbus: pki: cannot read the CSR %s: %s\n",
                csr_file ? csr_file : "(standard input)", strerror(errno));
        return WB_EXIT_NOINPUT;
    }
    char *cert = NULL, *d = NULL;
    wb_err err = wb_pki_sign_csr(ca, cakey, pool, csr, len, days, &cert, &d);
    free(csr);
    if (err)
        return fail(err, d);
    int rc = write_out(out, cert);
    wb_free(cert);
    return rc;
}

static int cmd_new_csr(int argc, char **argv)
{
    const char *key_out = NULL, *csr_out = NULL, *cn = "workerbus worker pool";
    wb_pki_key_type type = WB_PKI_KEY_EC_P256;
    static const wb_cli_opt opts[] = {{"key-out", "FILE", 0},
                                      {"csr-out", "FILE", 0},
                                      {"cn", "a common name", 0},
                                      {"rsa", NULL, 0},
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"pki new-csr", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "key-out"))
            key_out = v;
        else if (wb_cli_opt_is(&g, k, "csr-out"))
            csr_out = v;
        else if (wb_cli_opt_is(&g, k, "cn"))
            cn = v;
        else if (wb_cli_opt_is(&g, k, "rsa"))
            type = WB_PKI_KEY_RSA_4096;
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 0, &args, &nargs);
    if (bad)
        return bad;
    if (!key_out || !csr_out)
        return wb_cli_usage_error("pki new-csr", "--key-out and --csr-out are required");
    char *key = NULL, *csr = NULL, *d = NULL;
    wb_err err = wb_pki_new_csr(type, cn, &key, &csr, &d);
    if (err)
        return fail(err, d);
    FILE *kf = fopen(key_out, "wx");
    int rc = WB_EXIT_OK;
    if (!kf) {
        fprintf(stderr, "workerbus: pki: cannot create %s: %s\n", key_out, strerror(errno));
        rc = EX_CANTCREAT;
    } else {
        fputs(key, kf);
        fclose(kf);
        rc = write_out(csr_out, csr);
    }
    wb_free(key);
    wb_free(csr);
    return rc;
}

static int cmd_token(int argc, char **argv)
{
    const char *key = NULL, *pool = NULL;
    bool server = false;
    static const wb_cli_opt opts[] = {{"token-key", "FILE", 0},
                                      {"pool", "a pool's ULID", 0},
                                      {"server", NULL, 0},
                                      {NULL, NULL, 0}};
    wb_cli_getopt g = {"pki token", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0) {
        if (wb_cli_opt_is(&g, k, "token-key"))
            key = v;
        else if (wb_cli_opt_is(&g, k, "pool"))
            pool = v;
        else if (wb_cli_opt_is(&g, k, "server"))
            server = true;
    }
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 0, &args, &nargs);
    if (bad)
        return bad;
    if (!key || (!pool == !server))
        return wb_cli_usage_error("pki token",
                                  "give --token-key FILE and one of --pool ULID or --server");
    char tok[WB_PKI_TOKEN_LEN + 1];
    char *d = NULL;
    wb_err err = wb_pki_token(key, pool, tok, &d);
    if (err)
        return fail(err, d);
    printf("%s\n", tok);
    return WB_EXIT_OK;
}

static int cmd_reissue(int argc, char **argv, wb_pki_leaf which)
{
    const char *what = which == WB_PKI_LEAF_BROKER ? "pki reissue-broker" : "pki renew-server";
    const char *dir = NULL;
    const char **hosts = calloc((size_t)argc + 1, sizeof *hosts);
    size_t nh = 0;
    if (!hosts)
        return fail(WB_ERR_NO_MEMORY, NULL);
    static const wb_cli_opt broker_opts[] = {{"host", "a DNS name or IP address", 0},
                                             {NULL, NULL, 0}};
    static const wb_cli_opt server_opts[] = {{NULL, NULL, 0}};
    wb_cli_getopt g = {what, argc, argv, which == WB_PKI_LEAF_BROKER ? broker_opts : server_opts,
                       0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0)
        hosts[nh++] = v; /* --host, the only option */
    int nargs;
    char **args = wb_cli_getopt_args(&g, &nargs);
    if (k == WB_CLI_GETOPT_BAD || nargs > 1) {
        free(hosts);
        return k == WB_CLI_GETOPT_BAD
                   ? WB_EXIT_USAGE
                   : wb_cli_usage_error(what, "unexpected argument '%s'", args[1]);
    }
    dir = nargs ? args[0] : NULL;
    if (!dir) {
        free(hosts);
        return wb_cli_usage_error(what, "the PKI directory is missing");
    }
    char *d = NULL;
    wb_err err = wb_pki_reissue(dir, which, nh ? hosts : NULL, &d);
    free(hosts);
    if (err)
        return err == WB_ERR_IO
                   ? (fprintf(stderr, "workerbus: pki: %s\n", d ? d : ""), wb_free(d), EX_CANTCREAT)
                   : fail(err, d);
    const char *crt = which == WB_PKI_LEAF_BROKER ? WB_PKI_BROKER_CERT : WB_PKI_SERVER_CERT;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, crt);
    wb_pki_cert_info info;
    if (wb_pki_cert_info_get(path, &info, NULL) == WB_OK) {
        char until[32];
        time_t t = (time_t)info.not_after;
        strftime(until, sizeof until, "%Y-%m-%d", gmtime(&t));
        printf("workerbus: pki: issued %s again from %s's CA (valid until %s); the CA and the "
               "pool certificates it signed are unchanged. Restart the server to use it.\n",
               path, dir, until);
    }
    return WB_EXIT_OK;
}

/* workerbus pki status: exit 0 all good, 1 one has expired, 2 one expires
 * within 30 days. */
static int cmd_status(int argc, char **argv)
{
    const char *dir = NULL;
    bool json = false;
    static const wb_cli_opt opts[] = {{"json", NULL, 0}, {NULL, NULL, 0}};
    wb_cli_getopt g = {"pki status", argc, argv, opts, 0};
    const char *v;
    int k;
    while ((k = wb_cli_getopt_next(&g, &v)) >= 0)
        json = true; /* --json, the only option */
    int nargs;
    char **args;
    int bad = wb_cli_getopt_rest(&g, k, 1, &args, &nargs);
    if (bad)
        return bad;
    dir = nargs ? args[0] : NULL;
    if (!dir)
        return wb_cli_usage_error("pki status", "the PKI directory is missing");
    static const char *const files[] = {WB_PKI_CA_CERT, WB_PKI_BROKER_CERT, WB_PKI_SERVER_CERT};
    static const char *const renew[] = {"a new CA: see docs/operations.md, CA rotation",
                                        "workerbus pki reissue-broker",
                                        "workerbus pki renew-server"};
    time_t now = time(NULL);
    int rc = 0;
    json_t *list = json ? json_array() : NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        wb_pki_cert_info info;
        char *d = NULL;
        wb_err err = wb_pki_cert_info_get(path, &info, &d);
        if (err) {
            if (json)
                json_array_append_new(list, json_pack("{s:s,s:s}", "file", files[i], "error",
                                                      d ? d : wb_strerror(err)));
            else
                printf("%-11s  unreadable: %s\n", files[i], d ? d : wb_strerror(err));
            wb_free(d);
            rc = rc ? rc : 1;
            continue;
        }
        long long days = ((long long)info.not_after - (long long)now) / 86400;
        const char *state = info.not_after <= now ? "expired" : days < 30 ? "expires soon" : "ok";
        if (info.not_after <= now)
            rc = 1;
        else if (days < 30 && rc == 0)
            rc = 2;
        char until[32];
        time_t t = (time_t)info.not_after;
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        if (json)
            json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "file", files[i],
                                                  "subject", info.subject_cn, "issuer",
                                                  info.issuer_cn, "not_after", until, "days_left",
                                                  (json_int_t)days, "state", state));
        else
            printf("%-11s  %-28s  until %s (%lld days)  %s%s%s\n", files[i], info.subject_cn, until,
                   days, state, strcmp(state, "ok") ? ": renew with " : "",
                   strcmp(state, "ok") ? renew[i] : "");
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:o}", "dir", dir, "certificates", list);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        puts(text ? text : "{}");
        free(text);
        json_decref(o);
    }
    return rc;
}

static int run(int argc, char **argv)
{
    if (argc < 2)
        return wb_cli_usage_error("pki", "a subcommand is required: init, sign-csr, new-csr, "
                                         "token, reissue-broker, renew-server, status");
    const char *sub = argv[1];
    if (strcmp(sub, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(sub, "sign-csr") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(sub, "new-csr") == 0)
        return cmd_new_csr(argc - 1, argv + 1);
    if (strcmp(sub, "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(sub, "reissue-broker") == 0)
        return cmd_reissue(argc - 1, argv + 1, WB_PKI_LEAF_BROKER);
    if (strcmp(sub, "renew-server") == 0)
        return cmd_reissue(argc - 1, argv + 1, WB_PKI_LEAF_SERVER);
    if (strcmp(sub, "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    return wb_cli_usage_error("pki", "unknown subcommand '%s'", sub);
}

const wb_cli_command wb_cli_pki = {
    .name = "pki",
    .summary = "create the built-in broker's CA and certificates; sign worker pools' CSRs",
    .usage = usage,
    .run = run,
};
