#!/usr/bin/env bash
# The layering rules, checked on every #include "..." of the library's
# folders. Run by the build (it fails when a rule is broken) and as a test.
#   - src/util sees only itself and the public headers;
#   - the portable core (src/util, src/pki, src/config, src/broker,
#     src/queue, src/mqtt, src/bundled) never includes a header of
#     backends/, of src/aws (the AWS backends' helpers), of src/pg (the
#     PostgreSQL helpers) or of plugin/;
#   - a backend never includes another backend's header;
#   - the plugin never includes a backend's header;
#   - outside src/config, only its typed views (config_views.h) are seen:
#     nobody but the configuration reads its internals.
# Only backends/list.c.in (the list of compiled-in backends), src/harness
# and src/cli may reach into backends/.
# Usage: check-layers.sh SOURCE_ROOT [STAMP_FILE]
set -euo pipefail
root="$1"
stamp="${2:-}"
# the stamp's path is relative to where the build runs this
[ -z "$stamp" ] || case "$stamp" in /*) ;; *) stamp="$PWD/$stamp" ;; esac
cd "$root"

# where each header lives, by name
declare -A home
while IFS= read -r h; do
  name="${h##*/}"
  home["$name"]="${h%/*}"
done < <(find src backends plugin -name '*.h' | sort)

bad=0
complain() {
  echo "$1:$2: includes \"$3\" ($4/$3): $5" >&2
  bad=$((bad + 1))
}

check_file() {
  local file="$1" dir="${1%/*}" lineno=0 line inc where
  while IFS= read -r line; do
    lineno=$((lineno + 1))
    [[ "$line" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
    inc="${BASH_REMATCH[1]}"
    case "$inc" in workerbus/*) continue ;; esac
    where="${home[${inc##*/}]:-}"
    [ -n "$where" ] || continue # generated (wb_paths.h) or a system header
    [ "$where" = "$dir" ] && continue
    if [ "$where" = src/config ] && [ "${inc##*/}" != config_views.h ]; then
      complain "$file" "$lineno" "$inc" "$where" \
        "only the configuration's typed views (config_views.h) are for other layers"
      continue
    fi
    case "$dir" in
      src/util)
        complain "$file" "$lineno" "$inc" "$where" \
          "src/util uses nothing but itself and the public headers" ;;
      src/pki | src/config | src/broker | src/queue | src/mqtt | src/bundled)
        case "$where" in
          backends/* | src/aws | src/pg | plugin)
            complain "$file" "$lineno" "$inc" "$where" \
              "the portable core may not include a backend's header (only backends/list.c.in, src/harness and src/cli reach into backends/)" ;;
        esac ;;
      src/aws | src/pg)
        case "$where" in
          backends/* | plugin)
            complain "$file" "$lineno" "$inc" "$where" \
              "$dir serves the backends and may not include their headers" ;;
        esac ;;
      backends/*)
        case "$where" in
          backends/* | plugin)
            complain "$file" "$lineno" "$inc" "$where" \
              "a backend may not include another backend's header" ;;
        esac ;;
      plugin)
        case "$where" in
          backends/*)
            complain "$file" "$lineno" "$inc" "$where" \
              "the plugin reaches the queue backends through the queue interface only" ;;
        esac ;;
    esac
  done < "$file"
}

files=0
while IFS= read -r f; do
  check_file "$f"
  files=$((files + 1))
done < <(find src/util src/pki src/config src/broker src/queue src/mqtt src/bundled src/aws \
  src/pg backends plugin -name '*.c' -o -name '*.h' -o -name '*.c.in' | sort)

if [ "$bad" -gt 0 ]; then
  echo "check-layers: $bad include(s) cross a layer; see docs/architecture.md" >&2
  exit 1
fi
echo "check-layers: $files files keep to their layers"
if [ -n "$stamp" ]; then
  : > "$stamp"
fi
