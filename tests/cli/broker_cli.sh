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
# serve with its bundled broker: SIGHUP after `pki reissue-broker` makes the
# running broker present the new certificate, and serve says so and goes on.
# Started with a soft open-file limit of 512 (a shell's default is 1024):
# serve raises it to the hard limit.
hard=$(ulimit -Hn)
( ulimit -Sn 512; exec "$wb" serve --env-file "$tmp/env" >"$tmp/serve.out" 2>"$tmp/serve.log" ) &
serve=$!
pids+=("$serve")
for _ in $(seq 150); do grep -q "draining iot" "$tmp/serve.log" && break; sleep 0.1; done
grep -q "draining iot" "$tmp/serve.log" || fail "serve did not start"
soft=$(awk '/^Max open files/ {print $4}' "/proc/$serve/limits")
[ "$hard" = unlimited ] || [ "$soft" = "$hard" ] ||
  fail "serve's soft open-file limit is $soft, not raised to the hard limit $hard"
enddate() {
  openssl s_client -connect "127.0.0.1:$port" -CAfile "$tmp/pki/ca.crt" -cert "$tmp/pool.crt" \
    -key "$tmp/pool.key" </dev/null 2>/dev/null | openssl x509 -noout -enddate
}
before=$(enddate)
sleep 1
"$wb" pki reissue-broker "$tmp/pki" >/dev/null || fail "pki reissue-broker"
want=$(openssl x509 -in "$tmp/pki/broker.crt" -noout -enddate)
[ "$before" != "$want" ] || fail "the reissued certificate ends when the old one did"
kill -HUP "$serve"
for _ in $(seq 50); do grep -q "SIGHUP: the bundled broker" "$tmp/serve.log" && break; sleep 0.1; done
grep -q "SIGHUP: the bundled broker (mosquitto pid [0-9]*) reloaded" "$tmp/serve.log" ||
  fail "serve did not say what SIGHUP did"
for _ in $(seq 50); do [ "$(enddate)" = "$want" ] && break; sleep 0.1; done
[ "$(enddate)" = "$want" ] || fail "after SIGHUP the broker presents '$(enddate)', not '$want'"
kill -0 "$serve" || fail "serve died on SIGHUP"
# the log level follows WORKERBUS_LOG_LEVEL at each SIGHUP: to debug, then
# to error, after which serve's info lines (its stop among them) are gone
reload_level() { # LEVEL WAS
  grep -v '^WORKERBUS_LOG_LEVEL=' "$tmp/env" >"$tmp/env.next"
  echo "WORKERBUS_LOG_LEVEL=$1" >>"$tmp/env.next"
  mv "$tmp/env.next" "$tmp/env"
  kill -HUP "$serve"
  for _ in $(seq 50); do grep -q "SIGHUP: log level $1, was $2" "$tmp/serve.log" && break; sleep 0.1; done
  grep -q "SIGHUP: log level $1, was $2" "$tmp/serve.log" ||
    fail "serve did not take WORKERBUS_LOG_LEVEL=$1 on SIGHUP: $(tail -3 "$tmp/serve.log")"
}
reload_level debug info
reload_level error debug
kill -TERM "$serve"
wait "$serve" || fail "serve exited with $? on SIGTERM after SIGHUP"
grep -q "stopping" "$tmp/serve.log" && fail "serve logged at info after WORKERBUS_LOG_LEVEL=error was reloaded"
echo "broker_cli: ok (3 messages through broker run, worker --echo and publish; clean stop; serve reloads its broker's certificate and its log level on SIGHUP)"
