#!/usr/bin/env bash
# The Debian packages: built from the source tree by dpkg-buildpackage,
# installed with dpkg, and used as an operator and a test suite would:
# workerbus check, harness up --workers 2, a serve whose /healthz, /readyz
# and /metrics answer, SIGHUP then SIGTERM, harness down. Then nothing of it
# runs, nothing is left in /tmp, and the packages are purged.
#   check-debian.sh SOURCE_DIR
set -euo pipefail
src="$1"
# dpkg -i needs root: elsewhere the test is skipped (77), and says so
[ "$(id -u)" = 0 ] || { echo "check-debian: skipped: installing packages needs root" >&2; exit 77; }
work="$(mktemp -d /tmp/wbdeb-XXXXXX)"
chmod 755 "$work"
h="$work/harness"
standin=/usr/share/workerbus/sqs-standin
installed=0
cleanup() {
  [ -x /usr/bin/workerbus ] && /usr/bin/workerbus harness down --dir "$h" >/dev/null 2>&1 || true
  if [ "$installed" = 1 ]; then
    rm -rf "$standin/node_modules" "$standin/package-lock.json.npm" 2>/dev/null || true
    dpkg --purge workerbus libworkerbus-dev libworkerbus0 >/dev/null 2>&1 || true
    getent passwd workerbus >/dev/null && deluser --system workerbus >/dev/null 2>&1 || true
    getent group workerbus >/dev/null && delgroup --system workerbus >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-debian: $*" >&2; for f in "$work"/*.log "$h/harness.log"; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done >&2; exit 1; }
if dpkg -s workerbus >/dev/null 2>&1; then fail "a workerbus package is installed already: purge it first"; fi

# the source as git has it, in a tree of its own (dpkg-buildpackage writes there)
mkdir "$work/src"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar cf -) |
  tar xf - -C "$work/src" || fail "cannot copy the source tree"
(cd "$work/src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || fail "dpkg-buildpackage failed"
debs=("$work"/libworkerbus0_*.deb "$work"/libworkerbus-dev_*.deb "$work"/workerbus_*.deb)
for d in "${debs[@]}"; do [ -f "$d" ] || fail "no package $d"; done
installed=1
dpkg -i "${debs[@]}" >"$work/dpkg.log" 2>&1 || fail "dpkg -i failed"
getent passwd workerbus >/dev/null || fail "the package did not create the workerbus user"
[ -f /usr/lib/systemd/system/workerbus.service ] || fail "no systemd unit"
man -w workerbus-serve >/dev/null 2>&1 || fail "no man page workerbus-serve"
grep -q RUNPATH <<<"$(readelf -d /usr/bin/workerbus)" && fail "a /usr install carries a RUNPATH"

# what /tmp holds before the installed files run: after them, nothing new
tmp_before="$(ls -A /tmp | sort)"

# an operator: the configuration, checked by the installed tool
cd /
/usr/bin/workerbus pki init "$work/pki" --host 127.0.0.1 >/dev/null || fail "pki init"
/usr/bin/workerbus check --quiet --set MQTT_BROKER_TYPE=builtin --set MQTT_BROKER_ENDPOINT=tls://127.0.0.1:18883 \
  --set MQTT_BROKER_BUILTIN_PKI_DIR="$work/pki" --set MQTT_BROKER_BUILTIN_RUNTIME_DIR="$work/run" \
  --set MESSAGE_QUEUE_TYPE=postgres --set DATABASE_URL=postgres://u@127.0.0.1/db \
  >"$work/check.log" 2>&1 || fail "workerbus check refused a valid configuration"

# a test suite: the harness from the installed files (the stand-in's npm
# package installed as documented, from npm's cache)
npm install --omit=dev --offline --no-audit --no-fund --loglevel=error --prefix "$standin" \
  >"$work/npm.log" 2>&1 || fail "npm install of the stand-in"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" /usr/bin/workerbus harness up --dir "$h" \
  --workers 2 --heartbeat-ms 200 >"$work/up.env" 2>"$work/up.log" || fail "harness up"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
( eval "$(cat "$work/up.env")"; exec /usr/bin/workerbus serve --no-bundled --wait 1 --http "$port" ) \
  >"$work/serve.out" 2>"$work/serve.log" &
serve=$!
for _ in $(seq 100); do grep -q "serves /healthz" "$work/serve.log" && break; sleep 0.1; done
sleep 2
python3 - "$port" <<'PY' || fail "the installed serve's endpoint answered wrongly"
import sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for path, want in (("/healthz", "ok"), ("/readyz", "ready")):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        assert r.status == 200 and r.read().decode().startswith(want), path
with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
    body = r.read().decode()
assert "workerbus_broker_connected 1" in body
received = [l for l in body.splitlines() if l.startswith("workerbus_drain_received_total ")]
assert received and float(received[0].split()[1]) > 0, received
PY
kill -HUP "$serve"
for _ in $(seq 50); do grep -q "SIGHUP: no bundled broker here" "$work/serve.log" && break; sleep 0.1; done
grep -q "SIGHUP: no bundled broker here" "$work/serve.log" || fail "serve did not answer SIGHUP"
kill -TERM "$serve"
wait "$serve" || fail "serve did not exit 0 on SIGTERM"
[ -s "$work/serve.out" ] || fail "serve printed no worker message"
/usr/bin/workerbus harness down --dir "$h" 2>/dev/null || fail "harness down"
[ ! -e "$h" ] || fail "harness down left $h"
if pgrep -f "$h" >/dev/null; then fail "processes are left: $(pgrep -af "$h")"; fi
left="$(comm -13 <(printf '%s\n' "$tmp_before") <(ls -A /tmp | sort) | grep -vxF "$(basename "$work")" || true)"
[ -z "$left" ] || fail "files left in /tmp: $(tr '\n' ' ' <<<"$left")"
echo "check-debian: ok (3 packages built and installed; check, harness up/down, serve probes, SIGHUP, SIGTERM from the installed files; nothing left running or in /tmp)"
