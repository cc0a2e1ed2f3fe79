#!/usr/bin/env bash
# Runs a command with real services up on loopback for its whole duration:
#   with-services.sh SOURCE_DIR postgres|sqs|all COMMAND [ARG]...
# Starts them with scripts/services in a new directory, exports their
# environment (and WBT_SERVICES_DIR), runs COMMAND, stops them whatever
# happens, and exits with COMMAND's status.
set -euo pipefail
src="$1"
what="$2"
shift 2
dir="$(mktemp -d /tmp/wbq-XXXXXX)"
chmod 755 "$dir"
cleanup() { "$src/scripts/services" stop --dir "$dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$src/scripts/services" start "$what" --dir "$dir" >"$dir.env" 2>"$dir.log" ||
  { cat "$dir.log" >&2; rm -f "$dir.env" "$dir.log"; echo "with-services: $what did not start" >&2; exit 1; }
set -a
# shellcheck disable=SC1090
. "$dir.env"
set +a
rm -f "$dir.env" "$dir.log"
export WBT_SERVICES_DIR="$dir"
status=0
"$@" || status=$?
exit "$status"
