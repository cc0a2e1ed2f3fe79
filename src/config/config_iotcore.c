/* IoT Core's variables: the transport, the server's thing certificate and
 * key (mutual TLS), the CA that IoT Core's certificate must chain to, and
 * the connect-to override of tests and the harness. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

static const char *const transports[] = {"https", "mqtts", "mqtts-alpn", "wss", NULL};

static bool is_iotcore(const wb__loader *L)
{
    return L->broker_known && L->cfg->broker == WB_BROKER_IOTCORE;
}

/* The transport, or -1 when unknown (invalid). */
static int transport(const wb__loader *L)
{
    const char *t = wb__cfg_effective(L, WB__V_I_TRANSPORT);
    for (int i = 0; t && transports[i]; i++) {
        if (strcmp(t, transports[i]) == 0)
            return i;
    }
    return -1;
}

static bool mutual_tls(int t)
{
    return t == WB_IOT_MQTTS || t == WB_IOT_MQTTS_ALPN;
}

bool wb__cfg_iotcore_var_used(const wb__loader *L, enum wb__var v)
{
    if (!L->broker_known)
        return true;
    if (!is_iotcore(L))
        return false;
    int t = transport(L);
    if ((v == WB__V_I_CERT_FILE || v == WB__V_I_KEY_FILE) && t >= 0)
        return mutual_tls(t);
    return true;
}

static bool readable_file(wb__loader *L, enum wb__var v, const char *what)
{
    const char *path = wb__cfg_effective(L, v);
    struct stat st;
    if (path[0] != '/') {
        wb__cfg_problem(L, WB__ERR, v, "must be an absolute path to %s", what);
        return false;
    }
    if (stat(path, &st) != 0) {
        wb__cfg_problem(L, WB__ERR, v, "%s cannot be used: %s (%s)", path, strerror(errno), what);
        return false;
    }
    if (!S_ISREG(st.st_mode) || access(path, R_OK) != 0) {
        wb__cfg_problem(L, WB__ERR, v, "%s is not a readable file (%s)", path, what);
        return false;
    }
    return true;
}

static void check_credentials(wb__loader *L, int t)
{
    const enum wb__var C = WB__V_I_CERT_FILE, K = WB__V_I_KEY_FILE;
    if (!mutual_tls(t)) {
        for (enum wb__var v = C; v <= K; v = (enum wb__var)(v + 1)) {
            if (wb__cfg_raw(L, v))
                wb__cfg_problem(L, WB__WARN, v,
                                "is not used with MQTT_BROKER_IOTCORE_TRANSPORT=%s, which signs "
                                "with AWS credentials instead of a certificate",
                                transports[t]);
        }
        return;
    }
    bool ok = true;
    for (enum wb__var v = C; v <= K; v = (enum wb__var)(v + 1)) {
        if (!wb__cfg_raw(L, v)) {
            wb__cfg_problem_hint(
                L, WB__ERR, v,
                wb__strdup("create a thing certificate for the server (aws iot "
                           "create-keys-and-certificate) and attach a policy allowing "
                           "iot:Connect and iot:Publish; or use "
                           "MQTT_BROKER_IOTCORE_TRANSPORT=https or wss, which need no "
                           "certificate"),
                "is required with MQTT_BROKER_IOTCORE_TRANSPORT=%s (mutual TLS)", transports[t]);
            ok = false;
        } else if (!L->bad[v] &&
                   !readable_file(L, v, v == C ? "the server's IoT certificate" : "its key")) {
            ok = false;
        }
    }
    if (!ok)
        return;
    char *d = NULL;
    if (wb_pki_check_pair(wb__cfg_raw(L, C), wb__cfg_raw(L, K), &d) != WB_OK)
        wb__cfg_problem(L, WB__ERR, K, "%s", d ? d : "does not match the certificate");
    free(d);
}

static void check_connect_to(wb__loader *L)
{
    const enum wb__var V = WB__V_I_CONNECT_TO, A = WB__V_I_ALLOW_CONNECT_TO;
    const char *allow = wb__cfg_effective(L, A);
    bool allowed = false;
    if (strcmp(allow, "true") == 0)
        allowed = true;
    else if (strcmp(allow, "false") != 0)
        wb__cfg_problem(L, WB__ERR, A, "must be \"true\" or \"false\"");
    const char *to = wb__cfg_raw(L, V);
    if (!to || L->bad[V]) {
        if (allowed && !to)
            wb__cfg_problem(L, WB__WARN, A, "is true but MQTT_BROKER_IOTCORE_CONNECT_TO is unset");
        return;
    }
    char *host = NULL;
    unsigned port = 0;
    const char *why = wb__hostport_parse(to, false, &host, &port, NULL);
    if (why) {
        wb__cfg_problem(L, WB__ERR, V, "%s; expected HOST:PORT, e.g. 127.0.0.1:8883", why);
        free(host);
        return;
    }
    if (!allowed) {
        wb__cfg_problem_hint(L, WB__ERR, V,
                             wb__strdup("set MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true to use "
                                        "it (tests and the harness); unset it in production"),
                             "sends IoT Core's connections to another address and is refused "
                             "unless explicitly allowed");
        free(host);
        return;
    }
    wb__cfg_problem(L, WB__WARN, V,
                    "connections go to %s:%u instead of the endpoint's address; TLS still checks "
                    "the endpoint's name. For tests and the harness only",
                    host, port);
    L->cfg->connect_host = host;
    L->cfg->connect_port = port;
}

void wb__cfg_check_iotcore(wb__loader *L)
{
    if (!L->broker_known)
        return;
    if (!is_iotcore(L)) {
        for (int v = WB__V_I_TRANSPORT; v <= WB__V_I_ALLOW_CONNECT_TO; v++) {
            if (wb__cfg_raw(L, (enum wb__var)v))
                wb__cfg_problem(L, WB__WARN, (enum wb__var)v,
                                "is only used with MQTT_BROKER_TYPE=iotcore; it has no effect "
                                "with the built-in broker");
        }
        return;
    }
    int t = transport(L);
    if (t < 0) {
        wb__cfg_problem(L, WB__ERR, WB__V_I_TRANSPORT,
                        "must be \"https\" (the data-plane Publish API), \"mqtts\" (8883), "
                        "\"mqtts-alpn\" (443) or \"wss\" (443, WebSocket)");
        L->bad[WB__V_I_TRANSPORT] = true;
    } else {
        L->cfg->iot_transport = t;
        check_credentials(L, t);
    }
    if (!L->bad[WB__V_I_CA_FILE])
        readable_file(L, WB__V_I_CA_FILE, "the CA IoT Core's certificate chains to");
    check_connect_to(L);
}
