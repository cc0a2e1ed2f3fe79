/* Table-driven cases for every configuration rule, valid and invalid. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "helpers.h"

enum expect { OK, OKW, ERRV };

struct ccase {
    const char *name;
    const char *const *base;
    const char *over[10];
    enum expect expect;
    const char *var;    /* the variable the problem is on */
    const char *substr; /* in the message or the hint */
};

#define B wbt_base_builtin
#define I wbt_base_iotcore
#define S wbt_base_builtin_sqs

/* Criterion runs each parameter in a fresh worker process, where pointers
 * taken in the parent mean nothing: the parameters are indices into this
 * table instead. */
// clang-format off
static const struct ccase cases[] = {
        /* ---- the bases themselves ---- */
        {"builtin base", B, {NULL}, OK, NULL, NULL},
        {"iotcore base", I, {NULL}, OK, NULL, NULL},
        {"builtin+sqs base", S, {NULL}, OK, NULL, NULL},

        /* ---- MQTT_BROKER_TYPE ---- */
        {"type unset means iotcore", I, {"MQTT_BROKER_TYPE"}, OK, NULL, NULL},
        {"type empty means iotcore", I, {"MQTT_BROKER_TYPE="}, OK, NULL, NULL},
        {"type unknown", B, {"MQTT_BROKER_TYPE=mosquitto"}, ERRV, "MQTT_BROKER_TYPE", "\"iotcore\" or \"builtin\""},
        {"type wrong case", B, {"MQTT_BROKER_TYPE=Builtin"}, ERRV, "MQTT_BROKER_TYPE", "lower case"},
        {"type with space", B, {"MQTT_BROKER_TYPE=builtin "}, ERRV, "MQTT_BROKER_TYPE", "white space"},
        {"type typo", B, {"MQTT_BROKER_TYPE=bultin"}, ERRV, "MQTT_BROKER_TYPE", "did you mean \"builtin\""},

        /* ---- MQTT_BROKER_IOTCORE_* ---- */
        {"iot transport https default", I, {"MQTT_BROKER_IOTCORE_TRANSPORT"}, OK, NULL, NULL},
        {"iot transport wss", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=wss"}, OK, NULL, NULL},
        {"iot transport unknown", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=tcp"}, ERRV, "MQTT_BROKER_IOTCORE_TRANSPORT", "mqtts-alpn"},
        {"iot mqtts needs a cert", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=mqtts"}, ERRV, "MQTT_BROKER_IOTCORE_CERT_FILE", "is required"},
        {"iot mqtts with cert and key", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=mqtts", "MQTT_BROKER_IOTCORE_CERT_FILE=@PKI@/server.crt", "MQTT_BROKER_IOTCORE_KEY_FILE=@PKI@/server.key"}, OK, NULL, NULL},
        {"iot mqtts-alpn key of another cert", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=mqtts-alpn", "MQTT_BROKER_IOTCORE_CERT_FILE=@PKI@/server.crt", "MQTT_BROKER_IOTCORE_KEY_FILE=@PKI@/broker.key"}, ERRV, "MQTT_BROKER_IOTCORE_KEY_FILE", "does not belong"},
        {"iot mqtts cert missing file", I, {"MQTT_BROKER_IOTCORE_TRANSPORT=mqtts", "MQTT_BROKER_IOTCORE_CERT_FILE=/nonexistent/server.crt", "MQTT_BROKER_IOTCORE_KEY_FILE=@PKI@/server.key"}, ERRV, "MQTT_BROKER_IOTCORE_CERT_FILE", "No such file"},
        {"iot cert unused with https", I, {"MQTT_BROKER_IOTCORE_CERT_FILE=@PKI@/server.crt"}, OKW, "MQTT_BROKER_IOTCORE_CERT_FILE", "not used"},
        {"iot ca file missing", I, {"MQTT_BROKER_IOTCORE_CA_FILE=/nonexistent/ca.pem"}, ERRV, "MQTT_BROKER_IOTCORE_CA_FILE", "No such file"},
        {"iot ca file relative", I, {"MQTT_BROKER_IOTCORE_CA_FILE=ca.pem"}, ERRV, "MQTT_BROKER_IOTCORE_CA_FILE", "absolute"},
        {"iot connect-to refused", I, {"MQTT_BROKER_IOTCORE_CONNECT_TO=127.0.0.1:8883"}, ERRV, "MQTT_BROKER_IOTCORE_CONNECT_TO", "explicitly allowed"},
        {"iot connect-to allowed", I, {"MQTT_BROKER_IOTCORE_CONNECT_TO=127.0.0.1:8883", "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true"}, OKW, "MQTT_BROKER_IOTCORE_CONNECT_TO", "TLS still checks"},
        {"iot connect-to no port", I, {"MQTT_BROKER_IOTCORE_CONNECT_TO=127.0.0.1", "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=true"}, ERRV, "MQTT_BROKER_IOTCORE_CONNECT_TO", "HOST:PORT"},
        {"iot allow-connect-to bad", I, {"MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO=yes"}, ERRV, "MQTT_BROKER_IOTCORE_ALLOW_CONNECT_TO", "\"true\" or \"false\""},
        {"iot vars with builtin", B, {"MQTT_BROKER_IOTCORE_TRANSPORT=mqtts"}, OKW, "MQTT_BROKER_IOTCORE_TRANSPORT", "no effect"},

        /* ---- MQTT_BROKER_ENDPOINT, iotcore ---- */
        {"iot endpoint upper case", I, {"MQTT_BROKER_ENDPOINT=A1B2C3-ATS.IOT.EU-WEST-1.AMAZONAWS.COM"}, OK, NULL, NULL},
        {"iot endpoint us-gov", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.us-gov-west-1.amazonaws.com", "AWS_REGION"}, OK, NULL, NULL},
        {"iot endpoint china", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.cn-north-1.amazonaws.com.cn", "AWS_REGION"}, OK, NULL, NULL},
        {"iot endpoint fips", I, {"MQTT_BROKER_ENDPOINT=data.iot-fips.us-east-1.amazonaws.com", "AWS_REGION"}, OK, NULL, NULL},
        {"iot endpoint missing", I, {"MQTT_BROKER_ENDPOINT"}, ERRV, "MQTT_BROKER_ENDPOINT", "describe-endpoint"},
        {"iot endpoint empty", I, {"MQTT_BROKER_ENDPOINT="}, ERRV, "MQTT_BROKER_ENDPOINT", "is required"},
        {"iot endpoint scheme", I, {"MQTT_BROKER_ENDPOINT=https://abc-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "without a scheme"},
        {"iot endpoint port", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west-1.amazonaws.com:8883"}, ERRV, "MQTT_BROKER_ENDPOINT", "must not carry a port"},
        {"iot endpoint builtin-like", I, {"MQTT_BROKER_ENDPOINT=broker.example.com:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "MQTT_BROKER_TYPE=builtin"},
        {"iot endpoint path", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west-1.amazonaws.com/x"}, ERRV, "MQTT_BROKER_ENDPOINT", "without a path"},
        {"iot endpoint legacy", I, {"MQTT_BROKER_ENDPOINT=abc.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "legacy"},
        {"iot endpoint bad region", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "not an AWS region name"},
        {"iot endpoint region word", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.europe-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "not an AWS region name"},
        {"iot endpoint china region on .com", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.cn-north-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", ".amazonaws.com.cn"},
        {"iot endpoint .cn outside china", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west-1.amazonaws.com.cn"}, ERRV, "MQTT_BROKER_ENDPOINT", "only China regions"},
        {"iot endpoint not aws", I, {"MQTT_BROKER_ENDPOINT=broker.example.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "not an AWS IoT Core endpoint"},
        {"iot endpoint bad id", I, {"MQTT_BROKER_ENDPOINT=a-b-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "letters and digits"},
        {"iot endpoint bad host", I, {"MQTT_BROKER_ENDPOINT=a_b-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "not a valid host name"},
        {"iot endpoint extra label", I, {"MQTT_BROKER_ENDPOINT=x.abc-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "not an IoT Core endpoint"},
        {"iot endpoint space", I, {"MQTT_BROKER_ENDPOINT= abc-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "white space"},
        {"iot region differs from AWS_REGION", I, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.us-east-1.amazonaws.com"}, OKW, "MQTT_BROKER_ENDPOINT", "us-east-1"},

        /* ---- MQTT_BROKER_ENDPOINT, builtin ---- */
        {"builtin plain", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1984"}, OK, NULL, NULL},
        {"builtin tls upper scheme", B, {"MQTT_BROKER_ENDPOINT=TLS://broker.example.com:1984"}, OK, NULL, NULL},
        {"builtin port 1", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1"}, OK, NULL, NULL},
        {"builtin port 65535", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:65535"}, OK, NULL, NULL},
        {"builtin port 1982", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1982"}, OK, NULL, NULL},
        {"builtin port 1984", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1984"}, OK, NULL, NULL},
        {"builtin ipv4", B, {"MQTT_BROKER_ENDPOINT=tls://10.0.0.7:8883"}, OK, NULL, NULL},
        {"builtin ipv6", B, {"MQTT_BROKER_ENDPOINT=tls://[2001:db8::1]:1984"}, OK, NULL, NULL},
        {"builtin localhost", B, {"MQTT_BROKER_ENDPOINT=localhost:1984"}, OK, NULL, NULL},
        {"builtin port 0", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:0"}, ERRV, "MQTT_BROKER_ENDPOINT", "out of range"},
        {"builtin port 65536", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:65536"}, ERRV, "MQTT_BROKER_ENDPOINT", "out of range"},
        {"builtin port 1983", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1983"}, ERRV, "MQTT_BROKER_ENDPOINT", "reserved for the server's HTTP port"},
        {"builtin tls port 1983", B, {"MQTT_BROKER_ENDPOINT=tls://[::1]:1983"}, ERRV, "MQTT_BROKER_ENDPOINT", "1983"},
        {"builtin port huge", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:99999999999"}, ERRV, "MQTT_BROKER_ENDPOINT", "out of range"},
        {"builtin port sign", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:+1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "decimal"},
        {"builtin port empty", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:"}, ERRV, "MQTT_BROKER_ENDPOINT", "port is empty"},
        {"builtin no port", B, {"MQTT_BROKER_ENDPOINT=broker.example.com"}, ERRV, "MQTT_BROKER_ENDPOINT", ":1984"},
        {"builtin iot endpoint", B, {"MQTT_BROKER_ENDPOINT=abc-ats.iot.eu-west-1.amazonaws.com"}, ERRV, "MQTT_BROKER_ENDPOINT", "MQTT_BROKER_TYPE=iotcore"},
        {"builtin missing", B, {"MQTT_BROKER_ENDPOINT"}, ERRV, "MQTT_BROKER_ENDPOINT", "tls://broker.example.com:1984"},
        {"builtin bare ipv6", B, {"MQTT_BROKER_ENDPOINT=::1:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "brackets"},
        {"builtin ipv6 no port", B, {"MQTT_BROKER_ENDPOINT=[::1]"}, ERRV, "MQTT_BROKER_ENDPOINT", "no port"},
        {"builtin bad ipv6", B, {"MQTT_BROKER_ENDPOINT=[fe80::zz]:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "IPv6"},
        {"builtin unclosed ipv6", B, {"MQTT_BROKER_ENDPOINT=[::1:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "closing"},
        {"builtin bad ipv4", B, {"MQTT_BROKER_ENDPOINT=256.1.1.1:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "IPv4"},
        {"builtin mqtt scheme", B, {"MQTT_BROKER_ENDPOINT=mqtt://broker.example.com:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "unsupported scheme"},
        {"builtin path", B, {"MQTT_BROKER_ENDPOINT=broker.example.com:1984/mqtt"}, ERRV, "MQTT_BROKER_ENDPOINT", "path"},
        {"builtin bad label", B, {"MQTT_BROKER_ENDPOINT=-broker.example.com:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "starts with '-'"},
        {"builtin underscore", B, {"MQTT_BROKER_ENDPOINT=my_broker:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "letters, digits"},
        {"builtin empty host", B, {"MQTT_BROKER_ENDPOINT=:1984"}, ERRV, "MQTT_BROKER_ENDPOINT", "empty"},
        {"builtin wildcard address", B, {"MQTT_BROKER_ENDPOINT=0.0.0.0:1984"}, OKW, "MQTT_BROKER_ENDPOINT", "wildcard"},

        /* ---- MQTT_BROKER_BUILTIN_LOG_LEVEL ---- */
        {"log debug", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=debug"}, OK, NULL, NULL},
        {"log INFO", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=INFO"}, OK, NULL, NULL},
        {"log Warn", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=Warn"}, OK, NULL, NULL},
        {"log error", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=error"}, OK, NULL, NULL},
        {"log empty is default", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL="}, OK, NULL, NULL},
        {"log warning", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=warning"}, ERRV, "MQTT_BROKER_BUILTIN_LOG_LEVEL", "did you mean \"warn\""},
        {"log trace", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=trace"}, ERRV, "MQTT_BROKER_BUILTIN_LOG_LEVEL", "\"debug\", \"info\", \"warn\" or \"error\""},
        {"log with iotcore", I, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=debug"}, OKW, "MQTT_BROKER_BUILTIN_LOG_LEVEL", "only used by the built-in broker"},
        /* ---- WORKERBUS_LOG_LEVEL ---- */
        {"serve log debug", B, {"WORKERBUS_LOG_LEVEL=debug"}, OK, NULL, NULL},
        {"serve log ERROR with iotcore", I, {"WORKERBUS_LOG_LEVEL=ERROR"}, OK, NULL, NULL},
        {"serve log empty is default", B, {"WORKERBUS_LOG_LEVEL="}, OK, NULL, NULL},
        {"serve log warning", B, {"WORKERBUS_LOG_LEVEL=warning"}, ERRV, "WORKERBUS_LOG_LEVEL", "did you mean \"warn\""},
        {"serve log verbose", I, {"WORKERBUS_LOG_LEVEL=verbose"}, ERRV, "WORKERBUS_LOG_LEVEL", "\"debug\", \"info\", \"warn\" or \"error\""},

        /* ---- MQTT_BROKER_IOTCORE_NAMESPACE ---- */
        {"ns custom", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=acme"}, OK, NULL, NULL},
        {"ns 4 slashes", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a/b/c/d/e"}, OK, NULL, NULL},
        {"ns 5 slashes", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a/b/c/d/e/f"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "would have 8"},
        {"ns utf-8", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=d\xc3\xa9p\xc3\xb4t"}, OK, NULL, NULL},
        {"ns empty", I, {"MQTT_BROKER_IOTCORE_NAMESPACE="}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "empty"},
        {"ns plus", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a+b"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "wildcard"},
        {"ns hash", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a#"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "wildcard"},
        {"ns dollar", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=$aws"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "starts with '$'"},
        {"ns dollar inside ok", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a$b"}, OK, NULL, NULL},
        {"ns leading slash", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=/a"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "starts with '/'"},
        {"ns trailing slash", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a/"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "ends with '/'"},
        {"ns empty level", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a//b"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "empty level"},
        {"ns control", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a\tb"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "control character"},
        {"ns C1 control", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a\xc2\x85"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "control character"},
        {"ns bad utf-8", I, {"MQTT_BROKER_IOTCORE_NAMESPACE=a\xff"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "UTF-8"},
        {"ns used by builtin", B, {"MQTT_BROKER_IOTCORE_NAMESPACE=a+"}, ERRV, "MQTT_BROKER_IOTCORE_NAMESPACE", "wildcard"},

        /* ---- MQTT_BROKER_BUILTIN_* ---- */
        {"pki dir missing", B, {"MQTT_BROKER_BUILTIN_PKI_DIR"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "is required with a tls:// endpoint"},
        {"pki dir missing names the way out", B, {"MQTT_BROKER_BUILTIN_PKI_DIR"}, ERRV, "MQTT_BROKER_BUILTIN_CLIENT_KEY_FILE", "workerbus pki init"},
        {"pki dir not a dir", B, {"MQTT_BROKER_BUILTIN_PKI_DIR=/nonexistent/pki"}, ERRV, "MQTT_BROKER_BUILTIN_PKI_DIR", "workerbus pki init /nonexistent/pki"},
        {"files named one by one", B, {"MQTT_BROKER_BUILTIN_PKI_DIR", "MQTT_BROKER_BUILTIN_CA_FILE=@PKI@/ca.crt", "MQTT_BROKER_BUILTIN_CERT_FILE=@PKI@/broker.crt", "MQTT_BROKER_BUILTIN_KEY_FILE=@PKI@/broker.key", "MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE=@PKI@/server.crt", "MQTT_BROKER_BUILTIN_CLIENT_KEY_FILE=@PKI@/server.key"}, OK, NULL, NULL},
        {"cert file missing", B, {"MQTT_BROKER_BUILTIN_CERT_FILE=/nonexistent/broker.crt"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "No such file"},
        {"cert file relative", B, {"MQTT_BROKER_BUILTIN_CERT_FILE=broker.crt"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "absolute path"},
        {"key does not match", B, {"MQTT_BROKER_BUILTIN_KEY_FILE=@PKI@/server.key"}, ERRV, "MQTT_BROKER_BUILTIN_KEY_FILE", "does not belong"},
        {"key is not a key", B, {"MQTT_BROKER_BUILTIN_KEY_FILE=@PKI@/ca.crt"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "private key"},
        {"client cert is not the server", B, {"MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE=@PKI@/broker.crt", "MQTT_BROKER_BUILTIN_CLIENT_KEY_FILE=@PKI@/broker.key"}, ERRV, "MQTT_BROKER_BUILTIN_CLIENT_CERT_FILE", "workerbus-server"},
        {"cert not for the endpoint host", B, {"MQTT_BROKER_ENDPOINT=tls://other.example.com:1984"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "not valid for the endpoint's host \"other.example.com\""},
        {"cert from another CA", B, {"MQTT_BROKER_BUILTIN_CA_FILE=/etc/ssl/certs/ca-certificates.crt"}, ERRV, "MQTT_BROKER_BUILTIN_CERT_FILE", "not accepted by the CA"},
        {"ca key does not match", B, {"MQTT_BROKER_BUILTIN_CA_KEY_FILE=@PKI@/broker.key"}, ERRV, "MQTT_BROKER_BUILTIN_CA_KEY_FILE", "does not belong"},
        {"plain needs the token key", B, {"MQTT_BROKER_ENDPOINT=127.0.0.1:1984", "MQTT_BROKER_BUILTIN_PKI_DIR"}, ERRV, "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE", "plain"},
        {"token key unusable", B, {"MQTT_BROKER_ENDPOINT=127.0.0.1:1984", "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE=@PKI@/ca.crt"}, ERRV, "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE", "64 hexadecimal"},
        {"tls file with plain endpoint", B, {"MQTT_BROKER_ENDPOINT=127.0.0.1:1984", "MQTT_BROKER_BUILTIN_CERT_FILE=@PKI@/broker.crt"}, OKW, "MQTT_BROKER_BUILTIN_CERT_FILE", "not used with a plain"},
        {"token key with tls endpoint", B, {"MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE=@PKI@/token.key"}, OKW, "MQTT_BROKER_BUILTIN_TOKEN_KEY_FILE", "not used with a tls://"},
        {"builtin var with iotcore", I, {"MQTT_BROKER_BUILTIN_LISTEN=0.0.0.0:1984"}, OKW, "MQTT_BROKER_BUILTIN_LISTEN", "only used by the built-in broker"},
        {"listen all interfaces", B, {"MQTT_BROKER_BUILTIN_LISTEN=0.0.0.0:1984"}, OK, NULL, NULL},
        {"listen ipv6", B, {"MQTT_BROKER_BUILTIN_LISTEN=[::]:8883"}, OK, NULL, NULL},
        {"listen no port", B, {"MQTT_BROKER_BUILTIN_LISTEN=0.0.0.0"}, ERRV, "MQTT_BROKER_BUILTIN_LISTEN", "port is missing"},
        {"listen 1983", B, {"MQTT_BROKER_BUILTIN_LISTEN=0.0.0.0:1983"}, ERRV, "MQTT_BROKER_BUILTIN_LISTEN", "HTTP port"},
        {"listen bare ipv6", B, {"MQTT_BROKER_BUILTIN_LISTEN=::1:1984"}, ERRV, "MQTT_BROKER_BUILTIN_LISTEN", "brackets"},
        {"max payload", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=1024"}, OK, NULL, NULL},
        {"max payload at limit", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=196096"}, OK, NULL, NULL},
        {"max payload above limit", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=196097"}, ERRV, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "out of range; expected a number of bytes from 1 to 196096"},
        {"max payload zero", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=0"}, ERRV, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "out of range"},
        {"max payload huge", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=99999999999999999999999"}, ERRV, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "out of range"},
        {"max payload suffix", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=128k"}, ERRV, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "not a plain decimal number"},
        {"max payload hex", B, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=0x400"}, ERRV, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "not a plain decimal number"},
        {"max payload with iotcore", I, {"MQTT_BROKER_BUILTIN_MAX_PAYLOAD=1024"}, OKW, "MQTT_BROKER_BUILTIN_MAX_PAYLOAD", "only used by the built-in broker"},
        {"listen bad port", B, {"MQTT_BROKER_BUILTIN_LISTEN=0.0.0.0:http"}, ERRV, "MQTT_BROKER_BUILTIN_LISTEN", "decimal"},
        {"runtime dir relative", B, {"MQTT_BROKER_BUILTIN_RUNTIME_DIR=run/broker"}, ERRV, "MQTT_BROKER_BUILTIN_RUNTIME_DIR", "absolute"},
        {"runtime dir is a file", B, {"MQTT_BROKER_BUILTIN_RUNTIME_DIR=@PKI@/ca.crt"}, ERRV, "MQTT_BROKER_BUILTIN_RUNTIME_DIR", "not a directory"},
        {"runtime dir under a file", B, {"MQTT_BROKER_BUILTIN_RUNTIME_DIR=@PKI@/ca.crt/broker"}, ERRV, "MQTT_BROKER_BUILTIN_RUNTIME_DIR", "cannot be created"},
        {"runtime dir created later", B, {"MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbtest-new/a/b"}, OK, NULL, NULL},
        {"mosquitto a directory", B, {"MQTT_BROKER_BUILTIN_MOSQUITTO=@PKI@"}, ERRV, "MQTT_BROKER_BUILTIN_MOSQUITTO", "not an executable"},
        {"mosquitto missing", B, {"MQTT_BROKER_BUILTIN_MOSQUITTO=/nonexistent/mosquitto"}, ERRV, "MQTT_BROKER_BUILTIN_MOSQUITTO", "Debian package mosquitto"},
        {"mosquitto by name", B, {"MQTT_BROKER_BUILTIN_MOSQUITTO=mosquitto"}, OK, NULL, NULL},
        {"mosquitto not executable", B, {"MQTT_BROKER_BUILTIN_MOSQUITTO=@PKI@/ca.crt"}, ERRV, "MQTT_BROKER_BUILTIN_MOSQUITTO", "not an executable"},

        /* ---- MESSAGE_QUEUE_TYPE ---- */
        {"iotcore with postgres", I, {"MESSAGE_QUEUE_TYPE=postgres", "DATABASE_URL=postgres://h/db"}, ERRV, "MESSAGE_QUEUE_TYPE", "only to SQS"},
        {"iotcore default type with postgres", I, {"MQTT_BROKER_TYPE", "MESSAGE_QUEUE_TYPE=postgres"}, ERRV, "MESSAGE_QUEUE_TYPE", "MQTT_BROKER_TYPE=builtin"},
        {"queue type empty means sqs", I, {"MESSAGE_QUEUE_TYPE="}, OK, NULL, NULL},
        {"queue type unknown", B, {"MESSAGE_QUEUE_TYPE=rabbitmq"}, ERRV, "MESSAGE_QUEUE_TYPE", "\"sqs\" or \"postgres\""},
        {"queue type postgresql", B, {"MESSAGE_QUEUE_TYPE=postgresql"}, ERRV, "MESSAGE_QUEUE_TYPE", "did you mean \"postgres\""},
        {"queue type SQS", S, {"MESSAGE_QUEUE_TYPE=SQS"}, ERRV, "MESSAGE_QUEUE_TYPE", "lower case"},

        /* ---- DATABASE_URL ---- */
        {"db missing", B, {"DATABASE_URL"}, ERRV, "DATABASE_URL", "is required"},
        {"db postgresql scheme", B, {"DATABASE_URL=postgresql://localhost/db"}, OK, NULL, NULL},
        {"db keyword form", B, {"DATABASE_URL=host=localhost dbname=wb user=wb"}, OK, NULL, NULL},
        {"db unix socket", B, {"DATABASE_URL=postgresql://%2Fvar%2Frun%2Fpostgresql/db"}, OK, NULL, NULL},
        {"db bad param", B, {"DATABASE_URL=postgres://localhost/db?bogus=1"}, ERRV, "DATABASE_URL", "libpq"},
        {"db bad keyword", B, {"DATABASE_URL=host=localhost bogus=1"}, ERRV, "DATABASE_URL", "bogus"},
        {"db not a url", B, {"DATABASE_URL=localhost"}, ERRV, "DATABASE_URL", "libpq"},
        {"db bad sslmode", B, {"DATABASE_URL=postgres://localhost/db?sslmode=on"}, ERRV, "DATABASE_URL", "verify-full"},
        {"db unused but broken", I, {"DATABASE_URL=postgres://localhost/db?bogus=1"}, OKW, "DATABASE_URL", "not used"},
        {"db of the replicas broken", S, {"DATABASE_URL=postgres://localhost/db?bogus=1"}, ERRV, "DATABASE_URL", "replicas"},
        {"sqs replicas through the db", S, {"DATABASE_URL=postgres://localhost/db"}, OK, NULL, NULL},

        /* ---- replicas ---- */
        {"replica id set", B, {"MQTT_BROKER_BUILTIN_REPLICA_ID=server-0"}, OK, NULL, NULL},
        {"replica id pod name", B, {"MQTT_BROKER_BUILTIN_REPLICA_ID=workerbus-7d9f8-x2l.zone_a"}, OK, NULL, NULL},
        {"replica id bad char", B, {"MQTT_BROKER_BUILTIN_REPLICA_ID=a/b"}, ERRV, "MQTT_BROKER_BUILTIN_REPLICA_ID", "letters, digits"},
        {"replica id too long", B, {"MQTT_BROKER_BUILTIN_REPLICA_ID=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, ERRV, "MQTT_BROKER_BUILTIN_REPLICA_ID", "1 to 63"},
        {"replica id without db", S, {"MQTT_BROKER_BUILTIN_REPLICA_ID=server-0"}, ERRV, "MQTT_BROKER_BUILTIN_REPLICA_ID", "DATABASE_URL"},
        {"outbox without db", S, {"MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY=60"}, ERRV, "MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY", "PostgreSQL"},
        {"replica timeout low", B, {"MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT=2"}, ERRV, "MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT", "from 3 to 3600"},
        {"replica timeout hex", B, {"MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT=0x10"}, ERRV, "MQTT_BROKER_BUILTIN_REPLICA_TIMEOUT", "plain decimal"},
        {"outbox expiry 0", B, {"MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY=0"}, ERRV, "MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY", "out of range"},
        {"outbox expiry 15 days", B, {"MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY=1296000"}, ERRV, "MQTT_BROKER_BUILTIN_OUTBOX_EXPIRY", "14 days"},
        {"outbox per worker", B, {"MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER=50"}, OK, NULL, NULL},
        {"outbox per worker neg", B, {"MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER=-1"}, ERRV, "MQTT_BROKER_BUILTIN_OUTBOX_MAX_PER_WORKER", "plain decimal"},
        {"outbox total huge", B, {"MQTT_BROKER_BUILTIN_OUTBOX_MAX=99999999999"}, ERRV, "MQTT_BROKER_BUILTIN_OUTBOX_MAX", "out of range"},
        {"replica vars with iotcore", I, {"MQTT_BROKER_BUILTIN_REPLICA_ID=x"}, OKW, "MQTT_BROKER_BUILTIN_REPLICA_ID", "only used by the built-in broker"},
        {"ack committed", B, {"MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=Committed"}, OK, NULL, NULL},
        {"ack received warns", B, {"MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=received"}, OKW, "MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK", "before they are in the queue"},
        {"ack other word", B, {"MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK=async"}, ERRV, "MQTT_BROKER_BUILTIN_TOPIC_RULE_ACK", "\"committed\" or \"received\""},

        /* ---- MESSAGE_QUEUE_SQS_*_URL ---- */
        {"sqs one missing", I, {"MESSAGE_QUEUE_SQS_WEBHOOKS_URL"}, ERRV, "MESSAGE_QUEUE_SQS_WEBHOOKS_URL", "is required"},
        {"sqs 11-digit account", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/12345678901/iot"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "12-digit"},
        {"sqs ftp", I, {"MESSAGE_QUEUE_SQS_IOT_URL=ftp://sqs.eu-west-1.amazonaws.com/123456789012/iot"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "http or https"},
        {"sqs not a url", I, {"MESSAGE_QUEUE_SQS_IOT_URL=iot"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "not a valid queue URL"},
        {"sqs trailing slash", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/iot/"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "ends with '/'"},
        {"sqs no queue", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "12-digit"},
        {"sqs bad name", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/io t"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "not a valid queue URL"},
        {"sqs name chars", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/io.t"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "queue name"},
        {"sqs query", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/iot?x=1"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "query"},
        {"sqs credentials", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://me:pw@sqs.eu-west-1.amazonaws.com/123456789012/iot"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "credentials"},
        {"sqs fifo must be fifo", I, {"MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/async"}, ERRV, "MESSAGE_QUEUE_SQS_ASYNC_FIFO_URL", "must be a FIFO queue"},
        {"sqs dlq fifo must be fifo", I, {"MESSAGE_QUEUE_SQS_DLQ_FIFO_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/dlq"}, ERRV, "MESSAGE_QUEUE_SQS_DLQ_FIFO_URL", "must be a FIFO queue"},
        {"sqs iot not fifo", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/iot.fifo"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "cannot target FIFO"},
        {"sqs duplicate", I, {"MESSAGE_QUEUE_SQS_DLQ_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/sl-async-jobs"}, ERRV, "MESSAGE_QUEUE_SQS_DLQ_URL", "same queue as MESSAGE_QUEUE_SQS_ASYNC_URL"},
        {"sqs region vs AWS_REGION", I, {"AWS_REGION=us-east-1"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "signed for the wrong region"},
        {"sqs region vs AWS_DEFAULT_REGION", I, {"AWS_REGION", "AWS_DEFAULT_REGION=us-west-2"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "AWS_DEFAULT_REGION"},
        {"sqs region from urls", I, {"AWS_REGION"}, OK, NULL, NULL},
        {"sqs legacy host region", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://eu-west-1.queue.amazonaws.com/123456789012/iot"}, OK, NULL, NULL},
        {"sqs legacy host other region", I, {"MESSAGE_QUEUE_SQS_IOT_URL=https://us-east-2.queue.amazonaws.com/123456789012/iot"}, ERRV, "MESSAGE_QUEUE_SQS_IOT_URL", "us-east-2"},
        {"sqs http to aws", I, {"MESSAGE_QUEUE_SQS_IOT_URL=http://sqs.eu-west-1.amazonaws.com/123456789012/iot"}, OKW, "MESSAGE_QUEUE_SQS_IOT_URL", "plain http"},
        {"sqs stand-in without region", S, {"AWS_REGION"}, OKW, "AWS_REGION", "not set"},
        {"sqs stand-in ipv6", S, {"MESSAGE_QUEUE_SQS_IOT_URL=http://[::1]:4566/000000000000/iot"}, OK, NULL, NULL},
        {"sqs stand-in localhost", S, {"MESSAGE_QUEUE_SQS_IOT_URL=http://localhost:9324/000000000000/iot"}, OK, NULL, NULL},
        {"sqs unused with postgres", B, {"MESSAGE_QUEUE_SQS_IOT_URL=garbage"}, OK, NULL, NULL},

        /* ---- AWS_REGION / AWS_DEFAULT_REGION ---- */
        {"region malformed", I, {"AWS_REGION=Europe"}, ERRV, "AWS_REGION", "not an AWS region name"},
        {"default region malformed", I, {"AWS_DEFAULT_REGION=eu_west_1"}, ERRV, "AWS_DEFAULT_REGION", "not an AWS region name"},
        {"regions differ", I, {"AWS_DEFAULT_REGION=us-east-1"}, OKW, "AWS_DEFAULT_REGION", "takes precedence"},
        {"region isob", S, {"AWS_REGION=us-isob-east-1"}, OK, NULL, NULL},

        /* ---- unknown variables ---- */
        {"typo endpoint", B, {"MQTT_BROKER_ENDPIONT=x"}, OKW, "MQTT_BROKER_ENDPIONT", "did you mean MQTT_BROKER_ENDPOINT"},
        {"typo iot url", I, {"MESSAGE_QUEUE_SQS_IOT_ULR=x"}, OKW, "MESSAGE_QUEUE_SQS_IOT_ULR", "did you mean MESSAGE_QUEUE_SQS_IOT_URL"},
        {"typo case", B, {"mqtt_broker_type=builtin"}, OKW, "mqtt_broker_type", "case-sensitive"},
        {"typo database uri", B, {"DATABASE_URI=x"}, OKW, "DATABASE_URI", "did you mean DATABASE_URL"},
        {"typo region", I, {"AWS_REGOIN=eu-west-1"}, OKW, "AWS_REGOIN", "did you mean AWS_REGION"},
        {"unknown prefixed", B, {"MQTT_BROKER_FLAVOUR=x"}, OKW, "MQTT_BROKER_FLAVOUR", "not a variable workerbus knows"},
        {"unrelated variable", B, {"HOME=/root", "PATH=/usr/bin", "AWS_PROFILE=x"}, OK, NULL, NULL},

        /* ---- generic ---- */
        {"duplicate key", B, {"MQTT_BROKER_BUILTIN_LOG_LEVEL=info", "MQTT_BROKER_BUILTIN_LOG_LEVEL=debug"}, OKW, "MQTT_BROKER_BUILTIN_LOG_LEVEL", "set twice"},
};
// clang-format on

#define NCASES (sizeof cases / sizeof cases[0])

ParameterizedTestParameters(rules, table)
{
    static size_t idx[NCASES];
    for (size_t i = 0; i < NCASES; i++)
        idx[i] = i;
    return cr_make_param_array(size_t, idx, NCASES);
}

ParameterizedTest(size_t *i, rules, table)
{
    const struct ccase *c = &cases[*i];
    wb_config *cfg = NULL;
    wb_config_report *rep = NULL;
    wb_err err = wbt_load(c->base, c->over, &cfg, &rep);
    cr_assert_not_null(rep, "[%s] no report", c->name);
    size_t ne = wb_config_report_count(rep, WB_SEVERITY_ERROR);
    size_t nw = wb_config_report_count(rep, WB_SEVERITY_WARNING);
    switch (c->expect) {
    case OK:
        if (ne || nw)
            wbt_dump(rep);
        cr_assert_eq(err, WB_OK, "[%s] expected valid, got %s", c->name, wb_err_name(err));
        cr_assert_not_null(cfg, "[%s]", c->name);
        cr_assert_eq(nw, 0, "[%s] expected no warning, got %zu", c->name, nw);
        break;
    case OKW: {
        if (ne)
            wbt_dump(rep);
        cr_assert_eq(err, WB_OK, "[%s] expected valid, got %s", c->name, wb_err_name(err));
        const wb_config_issue *w = wbt_find(rep, WB_SEVERITY_WARNING, c->var);
        cr_assert_not_null(w, "[%s] expected a warning on %s", c->name, c->var);
        cr_assert(strstr(w->message, c->substr) || (w->hint && strstr(w->hint, c->substr)),
                  "[%s] warning on %s lacks \"%s\": %s / %s", c->name, c->var, c->substr,
                  w->message, w->hint ? w->hint : "(no hint)");
        break;
    }
    case ERRV: {
        cr_assert_eq(err, WB_ERR_CONFIG, "[%s] expected WB_ERR_CONFIG, got %s", c->name,
                     wb_err_name(err));
        cr_assert_null(cfg, "[%s] an invalid load must not return a configuration", c->name);
        const wb_config_issue *e = wbt_find(rep, WB_SEVERITY_ERROR, c->var);
        if (!e)
            wbt_dump(rep);
        cr_assert_not_null(e, "[%s] expected an error on %s", c->name, c->var);
        cr_assert(strstr(e->message, c->substr) || (e->hint && strstr(e->hint, c->substr)),
                  "[%s] error on %s lacks \"%s\": %s / %s", c->name, c->var, c->substr, e->message,
                  e->hint ? e->hint : "(no hint)");
        /* the value is shown, but never a password */
        if (e->value) {
            cr_assert_null(strstr(e->value, "hunter2secret"), "[%s]", c->name);
            cr_assert_null(strstr(e->value, ":pw@"), "[%s] password shown: %s", c->name, e->value);
        }
        break;
    }
    }
    wb_config_free(cfg);
    wb_config_report_free(rep);
}
