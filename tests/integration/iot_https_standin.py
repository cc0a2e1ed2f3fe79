#!/usr/bin/env python3
"""The IoT Core data-plane HTTPS Publish API, standing in for IoT Core in tests.

POST /topics/<topic>?qos=<0|1> over TLS with the stand-in's certificate; the
request's SigV4 signature (service iotdata) is checked with botocore against
the credentials given, and the message is handed to the stand-in's Mosquitto
with mosquitto_pub as the server's identity. Answers as IoT Core does: 200
with {"message":"OK"}, 403 {"message": ...} for a bad signature, 400 for a
bad request. Prints "ready <port>" once it listens.

iot_https_standin.py ADDR PORT CERT KEY REGION ACCESS_KEY SECRET BROKER_HOST
                     BROKER_PORT CA CLIENT_CERT CLIENT_KEY
"""
import datetime
import http.server
import json
import os
import ssl
import subprocess
import sys
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials

(ADDR, PORT, CERT, KEY, REGION, AKID, SECRET, BHOST, BPORT, CA, CCERT, CKEY) = sys.argv[1:13]


def expected_authorization(method, host, path, query, headers, body, amz_date, signed):
    """botocore's Authorization for the request as received."""
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    hdrs = {name: headers[name] for name in signed if name in headers}
    req = botocore.awsrequest.AWSRequest(method=method, url=url, headers=hdrs, data=body)
    stamp = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")

    class Clock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return stamp

    saved = botocore.auth.datetime.datetime
    botocore.auth.datetime.datetime = Clock
    try:
        creds = botocore.credentials.Credentials(AKID, SECRET,
                                                 headers.get("x-amz-security-token"))
        botocore.auth.SigV4Auth(creds, "iotdata", REGION).add_auth(req)
    finally:
        botocore.auth.datetime.datetime = saved
    return req.headers["Authorization"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, message):
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        split = urllib.parse.urlsplit(self.path)
        if not split.path.startswith("/topics/"):
            return self.answer(404, "no such API")
        headers = {k.lower(): v for k, v in self.headers.items()}
        auth = headers.get("authorization", "")
        amz_date = headers.get("x-amz-date", "")
        try:
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            want = expected_authorization("POST", headers.get("host", ""), split.path,
                                          split.query, headers, body, amz_date, signed)
        except (IndexError, ValueError) as e:
            return self.answer(403, f"missing or malformed signature: {e}")
        if auth != want:
            return self.answer(403, "The request signature we calculated does not match the "
                                    "signature you provided.")
        topic = urllib.parse.unquote(split.path[len("/topics/"):])
        qos = urllib.parse.parse_qs(split.query).get("qos", ["0"])[0]
        if qos not in ("0", "1"):
            return self.answer(400, f"qos {qos} is not supported")
        pub = subprocess.run(["mosquitto_pub", "-h", BHOST, "-p", BPORT, "--cafile", CA,
                              "--cert", CCERT, "--key", CKEY, "-i",
                              "iot-https-standin", "-q", qos, "-t", topic, "-s"],
                             input=body, capture_output=True, timeout=15)
        if pub.returncode != 0:
            return self.answer(500, "the broker did not take it: " + pub.stderr.decode())
        self.answer(200, "OK")

    def log_message(self, fmt, *args):
        sys.stderr.write("iot-https-standin: " + fmt % args + "\n")


server = http.server.ThreadingHTTPServer((ADDR, int(PORT)), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_cert_chain(CERT, KEY)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
os.write(1, f"ready {PORT}\n".encode())  # one write: the reader may close after it
server.serve_forever()
