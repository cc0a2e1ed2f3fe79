#!/usr/bin/env bash
# workerbus queue send|receive|delete|stats as processes, against the
# PostgreSQL that with-services.sh started (DATABASE_URL).
#   queue_cli.sh WORKERBUS
set -euo pipefail
wb="$1"
dir="$(mktemp -d /tmp/wbqcli-XXXXXX)"
trap 'rm -rf "$dir"' EXIT
fail() { echo "queue-cli: $*" >&2; exit 1; }
"$wb" pki init "$dir/pki" --host 127.0.0.1 >/dev/null 2>&1 || fail "pki init"
export MQTT_BROKER_TYPE=builtin MQTT_BROKER_ENDPOINT=tls://127.0.0.1:8883 MESSAGE_QUEUE_TYPE=postgres
export MQTT_BROKER_BUILTIN_PKI_DIR="$dir/pki" MQTT_BROKER_BUILTIN_RUNTIME_DIR="$dir/run"

id=$("$wb" queue send async-jobs '{"job":1}') || fail "send"
[ -n "$id" ] || fail "send printed no id"
echo '{"job":2}' | "$wb" queue send async-jobs >/dev/null || fail "send from stdin"
fifo1=$("$wb" queue send async-jobs.fifo --group g '{"same":true}')
fifo2=$("$wb" queue send async-jobs.fifo --group g '{"same":true}')
[ "$fifo1" = "$fifo2" ] || fail "a FIFO duplicate got a new id ($fifo1, $fifo2)"

stats=$("$wb" queue stats --json async-jobs)
case "$stats" in *'"async-jobs":{"delayed":0,"in_flight":0,"visible":2}'*'"backend":"postgres"'*) ;;
  *) fail "stats: $stats" ;; esac

out=$("$wb" queue receive async-jobs --max 10 --wait 1)
[ "$(echo "$out" | wc -l)" = 2 ] || fail "receive gave: $out"
receipt=$(echo "$out" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["receipt"])')
"$wb" queue delete async-jobs "$receipt" || fail "delete"
body=$("$wb" queue receive async-jobs.fifo --body --delete --wait 1)
[ "$body" = '{"same":true}' ] || fail "receive --body gave: $body"

# refusals: usage 64, refused input 65
set +e
"$wb" queue send no-such-queue x 2>"$dir/err"; rc=$?
[ $rc = 64 ] && grep -q "not a logical queue" "$dir/err" || fail "bad queue: rc $rc, $(cat "$dir/err")"
"$wb" queue receive iot --max 11 2>"$dir/err"; rc=$?
[ $rc = 64 ] || fail "--max 11: rc $rc"
head -c 300000 /dev/zero | tr '\0' 'x' | "$wb" queue send iot 2>"$dir/err"; rc=$?
[ $rc = 65 ] && grep -q "300000 bytes" "$dir/err" || fail "large body: rc $rc, $(cat "$dir/err")"
"$wb" queue send async-jobs.fifo nogroup 2>"$dir/err"; rc=$?
[ $rc = 65 ] && grep -q "message group id is required" "$dir/err" || fail "no group: rc $rc, $(cat "$dir/err")"
DATABASE_URL=postgres://u:hunter2pw@127.0.0.1:1/x "$wb" queue stats 2>"$dir/err"; rc=$?
[ $rc = 69 ] && ! grep -q hunter2pw "$dir/err" && grep -q DATABASE_URL "$dir/err" ||
  fail "unreachable database: rc $rc, $(cat "$dir/err")"
set -e
# check --probe measures this PostgreSQL: round trips and commits flushed to
# disk, and the rate of worker messages they allow; the password stays out.
DATABASE_URL="${DATABASE_URL/postgres@/postgres:probe-pw@}" "$wb" check --probe >"$dir/out" 2>&1 ||
  fail "check --probe: $(cat "$dir/out")"
grep -q "commit, flushed to disk: *p50 [0-9.]* ms, p99 [0-9.]* ms" "$dir/out" &&
  grep -q "one replica takes at most" "$dir/out" && grep -q "Probe of DATABASE_URL=postgres://postgres:\*\*\*\*@" "$dir/out" &&
  ! grep -q probe-pw "$dir/out" || fail "check --probe printed: $(cat "$dir/out")"
"$wb" check --probe --json | python3 -c '
import json, sys
p = json.load(sys.stdin)["probe"]
assert p["runs"] == 200 and p["durable"] is True, p
assert 0 < p["round_trip"]["p50_ms"] <= p["round_trip"]["max_ms"], p
assert 0 < p["commit"]["p50_ms"] <= p["commit"]["p99_ms"] <= p["commit"]["max_ms"], p
assert p["topic_rule_msgs_per_s_per_replica"] > 0, p
' || fail "check --probe --json"
set +e
DATABASE_URL=postgres://u:hunter2pw@127.0.0.1:1/x "$wb" check --probe >/dev/null 2>"$dir/err"; rc=$?
[ $rc = 69 ] && ! grep -q hunter2pw "$dir/err" && grep -q "DATABASE_URL=postgres://u:\*\*\*\*@127.0.0.1:1/x: cannot connect" "$dir/err" ||
  fail "check --probe, unreachable database: rc $rc, $(cat "$dir/err")"
set -e
# The queue commands read the queue's variables only: a broker setting they
# do not use (a plain endpoint without its token key, no PKI at all) does not
# stop them; a bad queue setting still does, by name.
( unset MQTT_BROKER_BUILTIN_PKI_DIR
  export MQTT_BROKER_ENDPOINT=127.0.0.1:1884
  "$wb" queue stats iot >/dev/null 2>"$dir/err" || fail "queue stats refused a broker setting it does not use: $(cat "$dir/err")"
  set +e
  MESSAGE_QUEUE_TYPE=postgresql "$wb" queue stats iot 2>"$dir/err"; rc=$?
  [ $rc = 78 ] && grep -q MESSAGE_QUEUE_TYPE "$dir/err" || fail "a bad MESSAGE_QUEUE_TYPE: rc $rc, $(cat "$dir/err")"
) || exit 1
echo "queue-cli: ok (send, stdin, FIFO dedup, stats, receive, delete, --body --delete, exit codes 64/65/69/78, password kept out, the queue's variables only, check --probe)"
