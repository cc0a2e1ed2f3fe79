#!/usr/bin/env bash
# workerbus harness up|env|down and workerbus serve, as a shell user runs
# them: the harness comes up, `serve` drains the simulated workers'
# heartbeats in both modes, `--exec` gets the JSON line and the variables,
# SIGUSR1 and the exit print the counters, and `harness down` leaves no
# process and no directory behind.
#   harness_cli.sh WORKERBUS
set -euo pipefail
wb="$1"
dir="$(mktemp -d /tmp/wbharness-cli-XXXXXX)"
rmdir "$dir"
out="$(mktemp -d /tmp/wbharness-out-XXXXXX)"
dir2="$dir-killed"
dir3="$dir-replicas"
cleanup() {
  for d in "$dir" "$dir2" "$dir3"; do "$wb" harness down --dir "$d" >/dev/null 2>&1 || true; done
  rm -rf "$out"
}
trap cleanup EXIT
fail() { echo "harness_cli: $*" >&2; for f in "$out"/* "$dir"/harness.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done >&2; exit 1; }

"$wb" harness up --dir "$dir" --workers 2 --heartbeat-ms 100 >"$out/up.env" 2>"$out/up.err" || fail "harness up failed"
grep -q "^export MQTT_BROKER_TYPE='builtin'" "$out/up.env" || fail "up did not print the builtin environment"
# the simulated workers' identities: shell and JSON agree, and the pool's
# certificate is the one its workers use (its common name is the pool)
grep -q "^export WB_HARNESS_POOL='[0-9A-Z]\{26\}'$" "$out/up.env" || fail "up did not print the pool's ULID"
( eval "$(cat "$out/up.env")"
  set -- $WB_HARNESS_WORKERS
  [ $# = 2 ] || fail "WB_HARNESS_WORKERS holds $# workers, not 2: '$WB_HARNESS_WORKERS'"
  "$wb" harness env --dir "$dir" --json >"$out/env.json" || fail "harness env --json failed"
  python3 - "$out/env.json" "$WB_HARNESS_POOL" "$1" "$2" <<'PY' || fail "harness env --json disagrees with the shell form"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["pool"] == sys.argv[2], j["pool"]
assert j["workers"] == sys.argv[3:5], j["workers"]
assert j["mode"] == "builtin" and j["environment"]["MQTT_BROKER_TYPE"] == "builtin", j
for k in ("ca_file", "pool_cert_file", "pool_key_file"):
    open(j[k]).read()
PY
  cn=$(openssl x509 -in "$WB_HARNESS_POOL_CERT_FILE" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p')
  [ "$cn" = "$WB_HARNESS_POOL" ] || fail "the pool certificate's name is '$cn', not the pool $WB_HARNESS_POOL"
  openssl verify -CAfile "$WB_HARNESS_CA_FILE" "$WB_HARNESS_POOL_CERT_FILE" >/dev/null || fail "the pool certificate does not verify against WB_HARNESS_CA_FILE"
) || exit 1
"$wb" harness up --dir "$dir" >/dev/null 2>"$out/twice.err" && fail "a second harness up in the same directory was accepted"

# The daemon keeps none of its caller's descriptors: a caller that holds a
# pipe (here as fd 9, besides stdout) sees EOF as soon as `up` returns, not
# when the harness goes down.
started=$(date +%s)
timeout 120 bash -c "\"$wb\" harness up --dir '$dir2' --workers 0 9>&1 2>/dev/null | cat >/dev/null" ||
  fail "the caller of harness up did not see EOF (status $?): the daemon holds its pipe"
"$wb" harness down --dir "$dir2" >/dev/null 2>&1 || fail "harness down after the pipe test"
echo "harness_cli: the pipe closed when up returned ($(($(date +%s) - started)) s including up and down)"
grep -q "already runs" "$out/twice.err" || fail "the second up does not say why: $(cat "$out/twice.err")"

serve_for() { # mode seconds args...
  local mode="$1" secs="$2"; shift 2
  (
    eval "$("$wb" harness env --dir "$dir" --mode "$mode")"
    exec "$wb" serve --wait 1 "$@"
  ) >"$out/$mode.out" 2>"$out/$mode.err" &
  local pid=$!
  sleep "$secs"
  kill -USR1 "$pid"; sleep 0.5
  kill -TERM "$pid"
  wait "$pid" || fail "serve ($mode) did not exit 0"
}

serve_for builtin 3 --no-bundled
lines=$(wc -l <"$out/builtin.out")
[ "$lines" -ge 10 ] || fail "builtin: only $lines worker messages in 3 s"
grep -q '"payload":{"kind":"heartbeat","seq":' "$out/builtin.out" || fail "builtin: no heartbeat line"
grep -q 'serve: counters: received' "$out/builtin.err" || fail "builtin: SIGUSR1 printed no counters"
grep -q 'serve: at exit: received [1-9]' "$out/builtin.err" || fail "builtin: no counters at exit"

# --http: liveness, readiness and Prometheus metrics, read as a scraper would
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(
  eval "$("$wb" harness env --dir "$dir" --mode builtin)"
  exec "$wb" serve --wait 1 --no-bundled --http "$hport"
) >"$out/http.out" 2>"$out/http.err" &
hpid=$!
for _ in $(seq 100); do grep -q "serves /healthz" "$out/http.err" && break; sleep 0.1; done
grep -q "http://127.0.0.1:$hport/ serves /healthz" "$out/http.err" || fail "serve --http did not start its endpoint"
sleep 2 # some heartbeats handled
python3 - "$hport" <<'PY' || fail "the HTTP endpoint answered wrongly"
import re, sys, urllib.request, urllib.error
base = f"http://127.0.0.1:{sys.argv[1]}"
def get(path, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, method=method), timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()
st, _, body = get("/healthz")
assert st == 200 and body == "ok\n", (st, body)
st, _, body = get("/readyz")
assert st == 200 and body.startswith("ready\n") and "broker (builtin): connected" in body, (st, body)
st, ctype, body = get("/metrics")
assert st == 200 and ctype.startswith("text/plain; version=0.0.4"), (st, ctype)
samples, types = {}, {}
for line in body.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split(" ")
        types[name] = kind
        continue
    if line.startswith("#") or not line:
        continue
    m = re.fullmatch(r'([a-z_]+)(\{[^}]*\})? (\S+)', line)
    assert m, "not a sample line: " + line
    float(m.group(3))
    family = re.sub(r"_(bucket|sum|count)$", "", m.group(1)) if m.group(1).startswith("workerbus_handler") else m.group(1)
    assert family in types, "no TYPE for " + m.group(1)
    samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
assert samples["workerbus_broker_connected"] == 1
assert samples["workerbus_drain_received_total"] >= 1, samples["workerbus_drain_received_total"]
assert samples["workerbus_drain_delivered_total"] >= 1
assert 'workerbus_queue_messages{queue="iot",state="visible"}' in samples
assert samples["workerbus_queue_reachable"] == 1
assert types["workerbus_handler_duration_seconds"] == "histogram"
buckets = [v for k, v in samples.items() if k.startswith("workerbus_handler_duration_seconds_bucket")]
assert buckets == sorted(buckets), buckets
assert samples['workerbus_handler_duration_seconds_bucket{le="+Inf"}'] == samples["workerbus_handler_duration_seconds_count"] >= 1
assert get("/nope")[0] == 404
assert get("/metrics", "POST")[0] == 405
PY
kill -TERM "$hpid"
wait "$hpid" || fail "serve --http did not exit 0 on SIGTERM"

# Under systemd (Type=notify): READY=1 once up, WATCHDOG=1 at half the
# watchdog interval, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on
# SIGTERM, on the socket NOTIFY_SOCKET names.
python3 - "$wb" "$dir" "$out" <<'PY' || fail "serve's sd_notify messages are not what systemd expects"
import os, signal, socket, subprocess, sys, time
wb, hdir, out = sys.argv[1:4]
path = os.path.join(out, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(20)
env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
envtext = subprocess.run([wb, "harness", "env", "--dir", hdir, "--mode", "builtin"],
                         capture_output=True, text=True, check=True).stdout
for line in envtext.splitlines():
    k, v = line[len("export "):].split("=", 1)
    env[k] = v.strip("'")
p = subprocess.Popen([wb, "serve", "--wait", "1", "--no-bundled"], env=env,
                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(out, "notify.err"), "w"))
def until(what, within=20):
    end = time.time() + within
    seen = []
    while time.time() < end:
        msg = s.recv(4096).decode()
        seen.append(msg)
        if what in msg.split("\n"):
            return seen
    raise SystemExit(f"no {what} in {seen}")
until("READY=1")
t0 = time.time()
until("WATCHDOG=1"); until("WATCHDOG=1")
assert time.time() - t0 < 3, "the watchdog is fed too rarely"
p.send_signal(signal.SIGHUP)
until("RELOADING=1"); until("READY=1")
p.send_signal(signal.SIGTERM)
until("STOPPING=1")
assert p.wait(30) == 0
PY

serve_for iotcore 3
grep -q '"payload":{"kind":"heartbeat"' "$out/iotcore.out" || fail "iotcore: no heartbeat line"

# --exec: the line on standard input and the variables
serve_for builtin 2 --no-bundled --exec "cat >>'$out/exec.jsonl'; echo \"\$WB_POOL \$WB_WORKER \$WB_RECEIVE_COUNT\" >>'$out/exec.vars'"
[ -s "$out/exec.jsonl" ] || fail "--exec got nothing"
read -r p w rc <"$out/exec.vars"
grep -q "\"pool\":\"$p\",\"worker\":\"$w\"" "$out/exec.jsonl" || fail "--exec variables do not match the line"
[ "$rc" = 1 ] || fail "WB_RECEIVE_COUNT is '$rc'"

# a failing --exec keeps the message: it comes back
serve_for builtin 2 --no-bundled --visibility 2 --exec "exit 3"
grep -q 'exited with 3' "$out/builtin.err" || fail "a failing --exec is not logged"
grep -q 'delivered 0, failed [1-9]' "$out/builtin.err" || fail "a failing --exec was counted as delivered"

running() { ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; } # PID 1 may reap late
# SIGTERM while PostgreSQL is down: serve's receives are retrying it (for up
# to 60 s), and the stop ends that at once, without calling it a failure of
# the receive (deletes that the outage made fail are counted, rightly)
(
  eval "$("$wb" harness env --dir "$dir" --mode builtin)"
  exec "$wb" serve --wait 20 --no-bundled
) >"$out/outage.out" 2>"$out/outage.err" &
opid=$!
for _ in $(seq 100); do grep -q "draining iot" "$out/outage.err" && break; sleep 0.1; done
services="${WB_SOURCE_ROOT:?}/scripts/services"
"$services" suspend postgres --dir "$dir/services" >/dev/null 2>&1 || fail "cannot stop PostgreSQL"
for _ in $(seq 200); do grep -q "receive on iot: .*retrying in" "$out/outage.err" && break; sleep 0.1; done
grep -q "receive on iot: .*retrying in" "$out/outage.err" || fail "serve did not retry the outage: $(tail -3 "$out/outage.err")"
kill -TERM "$opid"
for _ in $(seq 50); do running "$opid" || break; sleep 0.1; done
if running "$opid"; then fail "serve did not stop within 5 s of SIGTERM during the outage"; fi
wait "$opid" || fail "serve exited with $? on SIGTERM during the outage"
grep -q "stopped after .* retries, as asked" "$out/outage.err" || fail "the retries did not say they were stopped"
grep -q "drain: receiving from the iot queue" "$out/outage.err" && fail "the stop was reported as a failed receive"
"$services" resume postgres --dir "$dir/services" >/dev/null 2>&1 || fail "cannot start PostgreSQL again"
echo "harness_cli: serve stopped at once on SIGTERM during a PostgreSQL outage"

pid=$(cat "$dir/harness.pid")
"$wb" harness down --dir "$dir" 2>"$out/down.err" || fail "harness down failed"
[ ! -e "$dir" ] || fail "$dir is still there"
sleep 0.5
if pgrep -f "$dir" >/dev/null; then fail "processes of the harness are left: $(pgrep -af "$dir")"; fi
if ps -o stat= -p "$pid" 2>/dev/null | grep -qv Z; then fail "the harness process $pid is still running"; fi
"$wb" harness env --dir "$dir" >/dev/null 2>&1 && fail "harness env answered after down"
# A harness whose process dies without `down` (SIGKILL, as a crashed test
# suite): its watchdog stops the services and removes the directory.
"$wb" harness up --dir "$dir2" --workers 1 >/dev/null 2>"$out/up2.err" || fail "the second harness did not come up"
pg=$(head -1 "$dir2/services/pg/postmaster.pid")
running "$pg" || fail "no PostgreSQL ($pg) in the second harness"
kill -KILL "$(cat "$dir2/harness.pid")"
for _ in $(seq 300); do
  [ -e "$dir2" ] || pgrep -f "$dir2" >/dev/null || break
  sleep 0.1
done
[ ! -e "$dir2" ] || fail "30 s after the harness was killed, $dir2 is still there"
if running "$pg"; then fail "PostgreSQL ($pg) outlived the killed harness"; fi
if pgrep -f "$dir2" >/dev/null; then fail "processes of the killed harness are left: $(pgrep -af "$dir2")"; fi
# The demo leaves nothing: its last line names the directory it removed,
# and that directory is gone.
"$wb" demo --duration 2 --workers 2 --plain >"$out/demo.out" 2>"$out/demo.err" ||
  fail "the demo failed: $(tail -5 "$out/demo.err")"
last=$(tail -1 "$out/demo.err")
case "$last" in
  "demo: stopped; nothing left running, and "*" (its PKI and data) is removed") ;;
  *) fail "the demo's last line is: $last" ;;
esac
demo_dir=${last#demo: stopped; nothing left running, and }
demo_dir=${demo_dir% (its PKI and data) is removed}
[ ! -e "$demo_dir" ] || fail "the demo says it removed $demo_dir, which is still there"
if pgrep -f "$demo_dir" >/dev/null; then fail "the demo left processes: $(pgrep -af "$demo_dir")"; fi
# Replicas behind HAProxy from the shell: workers on the load balancer's
# endpoint, each replica's own environment, a publish from replica 2's
# server reaching a worker wherever it is, and nothing left after down.

"$wb" harness up --dir "$dir3" --workers 4 --heartbeat-ms 0 --replicas 2 --replica-timeout 3 \
  >"$out/up3.env" 2>"$out/up3.err" || fail "harness up --replicas 2 failed: $(cat "$out/up3.err")"
grep -q "the replicas behind HAProxy" "$out/up3.err" || fail "up did not say it runs replicas"
lb=$(sed -n "s/^export MQTT_BROKER_ENDPOINT='\(.*\)'$/\1/p" "$out/up3.env")
"$wb" harness env --dir "$dir3" --replica 2 >"$out/r2.env" || fail "harness env --replica 2 failed"
grep -q "^export MQTT_BROKER_BUILTIN_REPLICA_ID='replica-2'$" "$out/r2.env" || fail "replica 2's id: $(cat "$out/r2.env")"
grep -q "^export MQTT_BROKER_ENDPOINT='$lb'$" "$out/r2.env" || fail "replica 2's workers do not go through $lb"
l1=$(grep MQTT_BROKER_BUILTIN_LISTEN "$out/up3.env")
l2=$(grep MQTT_BROKER_BUILTIN_LISTEN "$out/r2.env")
[ -n "$l1" ] && [ "$l1" != "$l2" ] || fail "the replicas share a listen address: $l1 / $l2"
[ "$(pgrep -fc "broker run --env-file $dir3/replica-")" = 2 ] || fail "not two replica processes: $(pgrep -af "$dir3")"
pgrep -f "haproxy -db -f $dir3/haproxy.cfg" >/dev/null || fail "no HAProxy for $dir3"
"$wb" harness env --dir "$dir3" --replica 3 >/dev/null 2>&1 && fail "env --replica 3 of 2 replicas succeeded"
w=$(sed -n "s/^export WB_HARNESS_WORKERS='\([^ ']*\).*/\1/p" "$out/up3.env")
p=$(sed -n "s/^export WB_HARNESS_POOL='\(.*\)'$/\1/p" "$out/up3.env")
db=$(sed -n "s/^export DATABASE_URL='\(.*\)'$/\1/p" "$out/up3.env")
( set -a; . <(sed 's/^export //' "$out/r2.env"); set +a
  "$wb" publish --set MQTT_BROKER_BUILTIN_LOG_LEVEL=warn --pool "$p" --worker "$w" --message '{"via":"replica-2"}' ) \
  >"$out/pub3.out" 2>&1 || fail "publish from replica 2 failed: $(cat "$out/pub3.out")"
for _ in $(seq 100); do
  n=$(psql "$db" -Atc "select count(*) from message_queue_messages where convert_from(decode(body,'base64'),'UTF8') like '%replica-2%'" 2>/dev/null || echo 0)
  [ "$n" -ge 1 ] && break
  sleep 0.1
done
[ "$n" -ge 1 ] || fail "the worker's echo of replica 2's message never reached the iot queue"
"$wb" harness down --dir "$dir3" 2>/dev/null || fail "harness down of the replicas failed"
if pgrep -f "$dir3" >/dev/null; then fail "replicas left running: $(pgrep -af "$dir3")"; fi
echo "harness_cli: replicas: 2 behind HAProxy at $lb; replica 2's message reached worker $w"
echo "harness_cli: ok ($lines builtin lines in 3 s; the demo removed $demo_dir)"
