#!/usr/bin/env bash
# The man pages (one per command, made from the tool's help) render with no
# groff warning and name every option the help names; the bash completion
# loads and completes commands and subcommands.
#   check-docs.sh BUILD_DIR SOURCE_DIR WORKERBUS
set -euo pipefail
build="$1"
src="$2"
wb="$3"
fail() { echo "check-docs: $*" >&2; exit 1; }
n=0
for cmd in "" check pki broker publish worker queue serve harness demo; do
  page="$build/workerbus${cmd:+-$cmd}.1"
  [ -s "$page" ] || fail "no man page $page"
  warn=$(groff -man -ww -z "$page" 2>&1 || true)
  [ -z "$warn" ] || fail "groff warns about $page: $warn"
  text=$(MANWIDTH=200 man -l "$page" 2>/dev/null | col -b)
  help=$(if [ -n "$cmd" ]; then "$wb" help "$cmd"; else "$wb" --help; fi 2>&1)
  for opt in $(echo "$help" | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    # a here-string, not a pipe: grep -q stops reading at the first match,
    # and under pipefail the writer's SIGPIPE would read as a failure
    grep -q -- "$opt" <<<"$text" || fail "$page does not name $opt, which the help does"
  done
  n=$((n + 1))
done
# shellcheck disable=SC1091
out=$(bash -c "source '$src/packaging/bash-completion/workerbus'
  COMP_WORDS=(workerbus pk); COMP_CWORD=1; _workerbus; echo \"\${COMPREPLY[*]}\"
  COMP_WORDS=(workerbus pki re); COMP_CWORD=2; _workerbus; echo \"\${COMPREPLY[*]}\"
  COMP_WORDS=(workerbus serve --log-format j); COMP_CWORD=3; _workerbus; echo \"\${COMPREPLY[*]}\"")
[ "$out" = "$(printf 'pki\nreissue-broker renew-server\njson journal')" ] ||
  fail "the completion answered: $out"
echo "check-docs: ok ($n man pages render without warnings and name every option; completion works)"
