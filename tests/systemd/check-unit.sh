#!/usr/bin/env bash
# systemd-analyze verify accepts the unit of `workerbus serve` (the one the
# build made, its ExecStart pointed at this build's binary so that the
# check does not need an installed workerbus), with no warning at all.
#   check-unit.sh UNIT_FILE WORKERBUS
set -euo pipefail
unit="$1"
wb="$2"
dir="$(mktemp -d /tmp/wbunit-XXXXXX)"
trap 'rm -rf "$dir"' EXIT
fail() { echo "check-unit: $*" >&2; exit 1; }
grep -q '^Type=notify$' "$unit" || fail "the unit is not Type=notify"
grep -q '^WatchdogSec=' "$unit" || fail "the unit sets no watchdog"
sed "s|^ExecStart=[^ ]*/workerbus |ExecStart=$wb |" "$unit" >"$dir/workerbus.service"
grep -q "^ExecStart=$wb serve" "$dir/workerbus.service" || fail "ExecStart is not 'workerbus serve'"
if ! systemd-analyze verify --man=no "$dir/workerbus.service" >"$dir/out" 2>&1; then
  cat "$dir/out" >&2
  fail "systemd-analyze verify refused the unit"
fi
[ ! -s "$dir/out" ] || { cat "$dir/out" >&2; fail "systemd-analyze verify warned"; }
echo "check-unit: ok (systemd-analyze verify: no warning; Type=notify, watchdog)"
