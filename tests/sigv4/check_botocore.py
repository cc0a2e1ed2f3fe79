#!/usr/bin/env python3
"""Compares workerbus's SigV4 for IoT Core with botocore's, on fixed inputs.

botocore (Debian's python3-botocore) is the independent signer: for the
HTTPS Publish request its real iot-data client builds and signs the request;
for the WebSocket URL its SigV4QueryAuth presigns GET /mqtt. IoT Core wants a
session token appended after the signature rather than signed, so the URL is
presigned without the token and the token compared as the last parameter.

Usage: check_botocore.py PATH-TO-iot-sign-emit
"""
import datetime
import subprocess
import sys
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.session

EMIT = sys.argv[1]
ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
REGION = "eu-west-1"
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//token+with/odd=chars"
TIMES = [1440938160, 1700000000, 1735689599]  # 2015-08-30, 2023-11-14, 2024-12-31

failures = 0


def fixed_clock(epoch):
    class Clock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return datetime.datetime.utcfromtimestamp(epoch)

    return Clock


def emit(*args):
    out = subprocess.run([EMIT, *map(str, args)], check=True, capture_output=True, text=True)
    url, headers = None, {}
    for line in out.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "url":
            url = rest
        else:
            name, _, value = rest.partition(": ")
            headers[name.lower()] = value
    return url, headers


def check(what, ours, theirs):
    global failures
    if ours == theirs:
        print(f"ok   {what}")
    else:
        failures += 1
        print(f"FAIL {what}\n     workerbus: {ours}\n     botocore:  {theirs}")


def botocore_wss(epoch, token):
    creds = botocore.credentials.Credentials(AKID, SECRET)  # token appended, not signed
    req = botocore.awsrequest.AWSRequest(method="GET", url=f"https://{ENDPOINT}/mqtt")
    botocore.auth.datetime.datetime = fixed_clock(epoch)
    botocore.auth.SigV4QueryAuth(creds, "iotdevicegateway", REGION, expires=86400).add_auth(req)
    url = req.prepare().url
    if token:
        url += "&X-Amz-Security-Token=" + urllib.parse.quote(token, safe="")
    return urllib.parse.urlsplit(url)


def check_wss(epoch, token):
    ours, _ = emit("wss", ENDPOINT, REGION, AKID, SECRET, token or "-", epoch)
    o = urllib.parse.urlsplit(ours)
    t = botocore_wss(epoch, token)
    tag = f"wss {epoch} {'token' if token else 'no token'}"
    check(f"{tag}: scheme, host, port, path", (o.scheme, o.netloc, o.path),
          ("wss", f"{ENDPOINT}:443", "/mqtt"))
    oq = urllib.parse.parse_qsl(o.query, keep_blank_values=True)
    tq = urllib.parse.parse_qsl(t.query, keep_blank_values=True)
    check(f"{tag}: query parameters", sorted(oq), sorted(tq))
    check(f"{tag}: signature", dict(oq).get("X-Amz-Signature"), dict(tq).get("X-Amz-Signature"))
    if token:
        check(f"{tag}: token is the last parameter", oq[-1], ("X-Amz-Security-Token", token))


def botocore_publish(epoch, token, topic, qos, payload):
    session = botocore.session.get_session()
    session.set_credentials(AKID, SECRET, token)
    client = session.create_client("iot-data", region_name=REGION,
                                   endpoint_url=f"https://{ENDPOINT}")
    captured = {}

    class Raw:
        def stream(self, **kwargs):
            return iter([b""])

    def grab(request, **kwargs):
        captured["req"] = request  # sent nowhere: an empty 200 answers
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, Raw())

    client.meta.events.register("before-send.iot-data.Publish", grab)
    botocore.auth.datetime.datetime = fixed_clock(epoch)
    client.publish(topic=topic, qos=qos, payload=payload.encode())
    return captured["req"]


def check_publish(epoch, token, topic, qos, payload):
    ours_url, ours_h = emit("publish", ENDPOINT, REGION, AKID, SECRET, token or "-", epoch, topic,
                            qos, payload)
    r = botocore_publish(epoch, token, topic, qos, payload)
    th = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in r.headers.items()}
    tag = f"publish {epoch} {topic!r} qos {qos} {'token' if token else 'no token'}"
    check(f"{tag}: URL", ours_url, r.url)
    check(f"{tag}: X-Amz-Date", ours_h.get("x-amz-date"), th.get("x-amz-date"))
    check(f"{tag}: Authorization", ours_h.get("authorization"), th.get("authorization"))
    check(f"{tag}: X-Amz-Security-Token", ours_h.get("x-amz-security-token"),
          th.get("x-amz-security-token"))


for t in TIMES:
    for tok in (None, TOKEN):
        check_wss(t, tok)
topics = ["spacelift/readonly/01HZX3V4B2M6P8Q9R0S1T2V3W4/01HZX3V4B2M6P8Q9R0S1T2V3W5",
          "ns/with space/ünï+cødé~x"]
for t in TIMES[:2]:
    for tok in (None, TOKEN):
        for topic in topics:
            for qos in (0, 1):
                check_publish(t, tok, topic, qos, '{"run":"01HZ","state":"ok"}')
check_publish(TIMES[2], None, topics[0], 1, "")

print(f"{failures} mismatch(es)")
sys.exit(1 if failures else 0)
