#!/usr/bin/env bash
# The built-in broker through the workerbus command: pki, broker run, worker
# --echo, publish; the worker gets every message, the broker stops on SIGINT
# and leaves no mosquitto behind. The echoes are not JSON objects: the topic
# rule keeps them in the dlq of the PostgreSQL that with-services.sh started.
#   with-services.sh ROOT postgres broker_cli.sh WORKERBUS
set -euo pipefail
wb="$1"
tmp="$(mktemp -d /tmp/wbcli-e2e-XXXXXX)"
chmod 711 "$tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "broker_cli: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f"; cat "$f"; done >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$wb" pki init "$tmp/pki" --host 127.0.0.1 >/dev/null
cat >"$tmp/env" <<ENV
MQTT_BROKER_TYPE=builtin
MQTT_BROKER_ENDPOINT=tls://127.0.0.1:$port
MQTT_BROKER_BUILTIN_PKI_DIR=$tmp/pki
MQTT_BROKER_BUILTIN_RUNTIME_DIR=$tmp/run
MESSAGE_QUEUE_TYPE=postgres
DATABASE_URL=${DATABASE_URL:?run through with-services.sh postgres}
ENV
pool=01ARZ3NDEKTSV4RRFFQ69G5FAV
worker=01BX5ZZKBKACTAV9WEVGEMMVRZ
"$wb" pki new-csr --key-out "$tmp/pool.key" --csr-out "$tmp/pool.csr"
"$wb" pki sign-csr --pool "$pool" --pki-dir "$tmp/pki" --out "$tmp/pool.crt" "$tmp/pool.csr"

"$wb" broker run --env-file "$tmp/env" 2>"$tmp/broker.log" &
broker=$!
pids+=("$broker")
for _ in $(seq 150); do grep -q "broker running" "$tmp/broker.log" && break; sleep 0.1; done
grep -q "broker running" "$tmp/broker.log" || fail "the broker did not start"
mpid=$(grep -o 'mosquitto (pid [0-9]*)' "$tmp/broker.log" | grep -o '[0-9]*' | head -1)

"$wb" worker --env-file "$tmp/env" --pool "$pool" --worker "$worker" --cert "$tmp/pool.crt" \
  --key "$tmp/pool.key" --echo --count 3 >"$tmp/worker.out" 2>"$tmp/worker.log" &
wpid=$!
pids+=("$wpid")
for _ in $(seq 150); do grep -q "listening on" "$tmp/worker.log" && break; sleep 0.1; done
grep -q "listening on" "$tmp/worker.log" || fail "the worker did not connect"

"$wb" publish --env-file "$tmp/env" --pool "$pool" --worker "$worker" --message one 2>"$tmp/pub1.log"
echo -n two | "$wb" publish --env-file "$tmp/env" --pool "$pool" --worker "$worker" 2>"$tmp/pub2.log"
"$wb" publish --env-file "$tmp/env" --pool "$pool" --worker "$worker" --qos 0 --message three \
  2>"$tmp/pub3.log"
wait "$wpid" || fail "the worker exited with $?"
[ "$(cat "$tmp/worker.out")" = "$(printf 'one\ntwo\nthree')" ] ||
  fail "the worker got: $(cat "$tmp/worker.out")"

kill -INT "$broker"
wait "$broker" || fail "broker run exited with $? on SIGINT"
grep -q "stopping the broker" "$tmp/broker.log" || fail "no clean stop"
if kill -0 "$mpid" 2>/dev/null; then fail "mosquitto (pid $mpid) is still running"; fi
echo "broker_cli: ok (3 messages through broker run, worker --echo and publish; clean stop)"
