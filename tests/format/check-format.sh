#!/usr/bin/env bash
# Fails when a C source or header differs from what .clang-format asks for.
#   check-format.sh SOURCE_DIR
set -euo pipefail
cd "$1"
files="$(git ls-files '*.c' '*.h' 2>/dev/null || find include src backends tests bench -name '*.[ch]')"
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files
echo "check-format: $(echo "$files" | wc -w) files formatted as .clang-format asks"
