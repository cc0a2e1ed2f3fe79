#!/usr/bin/env bash
# An installed workerbus brings the harness up with no source tree: a build
# configured for a prefix of its own is installed there, the SQS stand-in's
# npm package is installed as docs/operations.md says, and `harness up`,
# `env` and `down` run from that prefix, from /, with a bare environment.
#   check-installed-harness.sh SOURCE_DIR
set -euo pipefail
src="$1"
tmp="$(mktemp -d /tmp/wbinst-XXXXXX)"
chmod 755 "$tmp" # the broker runs as the mosquitto user: it enters the prefix
prefix="$tmp/prefix"
cleanup() { "$prefix/bin/workerbus" harness down --dir "$tmp/h" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "check-installed-harness: $*" >&2; [ -f "$tmp/h/harness.log" ] && tail -20 "$tmp/h/harness.log" >&2; exit 1; }

meson setup "$tmp/build" "$src" --prefix="$prefix" --buildtype=release -Db_sanitize=none \
  -Dtests=disabled -Dbench=disabled >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; fail "meson setup"; }
ninja -C "$tmp/build" install >"$tmp/install.log" 2>&1 || { tail -20 "$tmp/install.log" >&2; fail "ninja install"; }
standin="$prefix/share/workerbus/sqs-standin"
[ -f "$standin/sqs-standin.mjs" ] && [ -x "$prefix/libexec/workerbus/services" ] ||
  fail "the harness's files are not installed"
# the documented step, from npm's cache (scripts/bootstrap filled it)
npm install --omit=dev --offline --no-audit --no-fund --loglevel=error --prefix "$standin" \
  >"$tmp/npm.log" 2>&1 || { cat "$tmp/npm.log" >&2; fail "npm install of the stand-in"; }
cd /
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$tmp" \
  "$prefix/bin/workerbus" harness up --dir "$tmp/h" --workers 1 >"$tmp/up.env" 2>"$tmp/up.err" ||
  { cat "$tmp/up.err" >&2; fail "the installed harness did not come up"; }
grep -q "^export WB_HARNESS_POOL=" "$tmp/up.env" || fail "up printed no identities"
# the stand-in that runs is the installed one, not the source tree's
pgrep -f "$standin/sqs-standin.mjs" >/dev/null || fail "the running SQS stand-in is not the installed one: $(pgrep -af sqs-standin)"
env -i PATH=/usr/bin:/bin "$prefix/bin/workerbus" harness env --dir "$tmp/h" --mode iotcore >/dev/null ||
  fail "harness env"
env -i PATH=/usr/bin:/bin "$prefix/bin/workerbus" harness down --dir "$tmp/h" 2>/dev/null ||
  fail "harness down"
[ ! -e "$tmp/h" ] || fail "harness down left $tmp/h"
echo "check-installed-harness: ok (installed under a prefix of its own; harness up, env and down with no source tree)"
