#!/usr/bin/env bash
# scripts/services brings up a real PostgreSQL 15 and the SQS stand-in on
# loopback, gives an environment that workerbus accepts, and leaves nothing
# behind when stopped.
#   check-services.sh SOURCE_DIR WORKERBUS
set -euo pipefail
src="$1"
wb="$2"
dir="$(mktemp -d /tmp/wbsvc-XXXXXX)"
trap '"$src/scripts/services" stop --dir "$dir" >/dev/null 2>&1 || true' EXIT
fail() { echo "check-services: $*" >&2; exit 1; }

"$src/scripts/services" start --dir "$dir" >"$dir.env" 2>"$dir.log" || { cat "$dir.log" >&2; fail "start"; }
set -a
# shellcheck disable=SC1090
. "$dir.env"
set +a
rm -f "$dir.env" "$dir.log"

# PostgreSQL: a real server, durable settings on
out=$(psql "$DATABASE_URL" -qAtc "create table t(x int); insert into t values (42); select x from t; show fsync; show synchronous_commit;")
[ "$(echo "$out" | tr '\n' ' ')" = "42 on on " ] || fail "postgres answered: $out"

# SQS through Debian's aws CLI (the Query protocol)
aws="aws --endpoint-url $AWS_ENDPOINT_URL_SQS --region $AWS_REGION --output text"
$aws sqs send-message --queue-url "$MESSAGE_QUEUE_SQS_IOT_URL" --message-body "hello-iot" >/dev/null
body=$($aws sqs receive-message --queue-url "$MESSAGE_QUEUE_SQS_IOT_URL" --query 'Messages[0].Body')
[ "$body" = "hello-iot" ] || fail "the iot queue gave back '$body'"
redrive=$($aws sqs get-queue-attributes --queue-url "$MESSAGE_QUEUE_SQS_ASYNC_URL" \
  --attribute-names RedrivePolicy --query 'Attributes.RedrivePolicy')
case "$redrive" in *'"maxReceiveCount":3'*dlq*|*dlq*'"maxReceiveCount":3'*) ;; *) fail "async-jobs redrive policy: $redrive" ;; esac
vis=$($aws sqs get-queue-attributes --queue-url "$MESSAGE_QUEUE_SQS_IOT_URL" \
  --attribute-names VisibilityTimeout --query 'Attributes.VisibilityTimeout')
[ "$vis" = "45" ] || fail "iot visibility timeout is $vis, expected 45"

# the stand-in's URLs and the cluster's URL pass workerbus's own validation
# (the SQS environment by a build that has the sqs and iotcore backends; a
# reduced build refuses it by name, which the backends unit test checks)
case " ${WB_BUILT_BACKENDS:-builtin iotcore postgres sqs} " in
  *" iotcore "*" sqs "*)
    "$wb" check --quiet --set MQTT_BROKER_TYPE=iotcore \
      --set MQTT_BROKER_ENDPOINT=a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com \
      --set MESSAGE_QUEUE_TYPE=sqs || fail "workerbus check refused the SQS stand-in's environment" ;;
esac

pg_pid=$(head -1 "$dir/pg/postmaster.pid")
sqs_pid=$(cat "$dir/sqs.pid")
"$src/scripts/services" stop --dir "$dir" 2>/dev/null
# gone, or a zombie waiting for its new parent: allow a moment to exit
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
for _ in $(seq 50); do alive "$pg_pid" || alive "$sqs_pid" || break; sleep 0.1; done
alive "$pg_pid" && fail "postgres (pid $pg_pid) still runs"
alive "$sqs_pid" && fail "the SQS stand-in (pid $sqs_pid) still runs"
[ ! -e "$dir" ] || fail "$dir was not removed"
# A start that fails part way (the SQS stand-in cannot run: `node` is a
# program that fails) stops the PostgreSQL it had started, and says so.
fake="$(mktemp -d /tmp/wbsvc-fake-XXXXXX)"
dir3="$(mktemp -d /tmp/wbsvc-XXXXXX)"
trap '"$src/scripts/services" stop --dir "$dir3" >/dev/null 2>&1 || true; rm -rf "$fake"' EXIT
printf '#!/bin/sh\necho "node: refusing on purpose" >&2\nexit 1\n' >"$fake/node"
chmod +x "$fake/node"
set +e
PATH="$fake:$PATH" "$src/scripts/services" start all --dir "$dir3" >/dev/null 2>"$dir3.err"
rc=$?
set -e
[ "$rc" != 0 ] || fail "a start whose SQS stand-in cannot run succeeded"
grep -q "stopped what it had started ( postgres" "$dir3.err" || fail "the failed start does not say what it stopped: $(cat "$dir3.err")"
for _ in $(seq 50); do pgrep -f "$dir3/pg" >/dev/null || break; sleep 0.1; done
if pgrep -f "$dir3/pg" >/dev/null; then fail "the failed start left PostgreSQL running: $(pgrep -af "$dir3/pg")"; fi
rm -f "$dir3.err"
echo "check-services: ok (postgres round trip, SQS round trip with the aws CLI, redrive and visibility, workerbus check, clean stop, a failed start undone)"
