#!/usr/bin/env python3
"""Loopback stand-ins for the AWS endpoints that cannot run here: IMDSv2, the
container credentials agent, STS AssumeRoleWithWebIdentity, and an SQS JSON
endpoint that misbehaves on purpose (throttling, 5xx, refusals) to exercise
retries and error reporting. Prints its port on the first line, then serves
until killed. GET /stats answers how many times each path (or SQS action)
was asked. Used by tests/unit/test_aws_creds.c and test_sqs_errors.c.

  fake_aws.py [--expires-in SECONDS]"""
import hashlib
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPIRES_IN = 3600
if "--expires-in" in sys.argv:
    EXPIRES_IN = int(sys.argv[sys.argv.index("--expires-in") + 1])
IMDS_TOKEN = "imds-session-token"
COUNTS = {}
LOCK = threading.Lock()


def expiration():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + EXPIRES_IN))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def count(self):
        with LOCK:
            COUNTS[self.path] = COUNTS.get(self.path, 0) + 1

    def creds(self, prefix):
        return json.dumps({"Code": "Success", "AccessKeyId": prefix + "AKID",
                           "SecretAccessKey": prefix + "-secret", "Token": prefix + "-token",
                           "Expiration": expiration()})

    def do_PUT(self):
        self.count()
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, IMDS_TOKEN, "text/plain")
        self.reply(400, "bad token request", "text/plain")

    def do_GET(self):
        self.count()
        if self.path == "/stats":
            with LOCK:
                return self.reply(200, json.dumps(COUNTS))
        if self.path.startswith("/latest/meta-data/"):
            if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                return self.reply(401, "no IMDSv2 token", "text/plain")
            if self.path == "/latest/meta-data/iam/security-credentials/":
                return self.reply(200, "workerbus-role", "text/plain")
            if self.path == "/latest/meta-data/iam/security-credentials/workerbus-role":
                return self.reply(200, self.creds("IMDS"))
            return self.reply(404, "not found", "text/plain")
        if self.path == "/container/creds":
            if self.headers.get("Authorization") != "container-secret-token":
                return self.reply(403, json.dumps({"message": "bad authorization"}))
            return self.reply(200, self.creds("CONTAINER"))
        self.reply(404, "not found", "text/plain")

    def sqs(self, action, body):
        with LOCK:
            COUNTS[action] = COUNTS.get(action, 0) + 1
            calls = COUNTS[action]
            if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 Credential="):
                COUNTS["unsigned"] = COUNTS.get("unsigned", 0) + 1
        req = json.loads(body or "{}")
        if action == "GetQueueAttributes":
            return self.reply(200, json.dumps({"Attributes": {"ApproximateNumberOfMessages": "7",
                                                              "ApproximateNumberOfMessagesNotVisible": "2",
                                                              "ApproximateNumberOfMessagesDelayed": "1"}}),
                              "application/x-amz-json-1.0")
        if action == "SendMessageBatch":
            first = req["Entries"][0]["MessageBody"]
            if first == "reject-me":
                return self.reply(400, json.dumps({"__type": "com.amazonaws.sqs#InvalidParameterValue",
                                                   "message": "the message was refused on purpose"}),
                                  "application/x-amz-json-1.0")
            if first == "always-503":
                return self.reply(503, "<html>unavailable</html>", "text/html")
            if first == "flaky" and calls <= 2:
                if calls == 1:
                    return self.reply(503, "<html>unavailable</html>", "text/html")
                return self.reply(400, json.dumps({"__type": "com.amazonaws.sqs#RequestThrottled",
                                                   "message": "slow down"}),
                                  "application/x-amz-json-1.0")
            ok = [{"Id": e["Id"], "MessageId": "fake-%d-%s" % (calls, e["Id"]),
                   "MD5OfMessageBody": hashlib.md5(e["MessageBody"].encode()).hexdigest()}
                  for e in req["Entries"]]
            return self.reply(200, json.dumps({"Successful": ok, "Failed": []}),
                              "application/x-amz-json-1.0")
        self.reply(400, json.dumps({"__type": "com.amazonaws.sqs#UnsupportedOperation",
                                    "message": action}), "application/x-amz-json-1.0")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode()
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith("AmazonSQS."):
            return self.sqs(target.split(".", 1)[1], raw)
        self.count()
        form = urllib.parse.parse_qs(raw)
        if (form.get("Action") == ["AssumeRoleWithWebIdentity"]
                and form.get("WebIdentityToken") == ["web-identity-jwt"]
                and form.get("RoleArn") == ["arn:aws:iam::123456789012:role/workerbus"]):
            body = ("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
                    "<Credentials><AccessKeyId>WEBAKID</AccessKeyId>"
                    "<SecretAccessKey>web-secret</SecretAccessKey>"
                    "<SessionToken>web-token</SessionToken>"
                    f"<Expiration>{expiration()}</Expiration></Credentials>"
                    "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")
            return self.reply(200, body, "text/xml")
        body = ("<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                "<Message>the token was not accepted</Message></Error></ErrorResponse>")
        self.reply(400, body, "text/xml")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
sys.stdout.write("%d\n" % server.server_address[1])
sys.stdout.flush()
sys.stdout.close()
server.serve_forever()
