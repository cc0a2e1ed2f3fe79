#!/usr/bin/env bash
# Installs the build into a temporary DESTDIR, then checks what a user gets:
# headers, versioned shared library, static library, workerbus.pc, the tool,
# that only the public wb_* API is exported, and that a program builds
# against the installed files with pkg-config and runs.
#   check-install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
dest="$(mktemp -d)"
trap 'rm -rf "$dest"' EXIT
fail() { echo "check-install: $*" >&2; exit 1; }

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >/dev/null
read -r prefix libdir includedir bindir sanitize < <(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys
o={x["name"]:x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["libdir"], o["includedir"], o["bindir"], o["b_sanitize"])')
abs() { case "$1" in /*) echo "$dest$1" ;; *) echo "$dest$prefix/$1" ;; esac; }
L="$(abs "$libdir")"; I="$(abs "$includedir")"; B="$(abs "$bindir")"

for h in workerbus.h common.h error.h config.h topic.h pki.h log.h bundled.h broker.h worker.h queue.h version.h; do
  [ -f "$I/workerbus/$h" ] || fail "header workerbus/$h not installed"
done
[ -f "$L/libworkerbus.a" ] || fail "static library not installed"
[ -L "$L/libworkerbus.so" ] || fail "libworkerbus.so symlink missing"
real="$(readlink -f "$L/libworkerbus.so")"
soname="$(objdump -p "$real" | awk '/SONAME/ {print $2}')"
[ "$soname" = "libworkerbus.so.0" ] || fail "soname is '$soname', expected libworkerbus.so.0"
[ -e "$L/$soname" ] || fail "$soname not installed"
[ -x "$B/workerbus" ] || fail "workerbus executable not installed"
# outside /usr the tool finds the library by its RUNPATH, no ldconfig needed
runpath="$(readelf -d "$B/workerbus" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')"
case "$prefix" in
  /usr | /) [ -z "$runpath" ] || fail "a /usr install carries RUNPATH $runpath" ;;
  *) [ "$runpath" = "$(case "$libdir" in /*) echo "$libdir" ;; *) echo "$prefix/$libdir" ;; esac)" ] ||
    fail "the installed tool's RUNPATH is '$runpath', not $prefix/$libdir" ;;
esac
[ -f "$L/pkgconfig/workerbus.pc" ] || fail "workerbus.pc not installed"
M="$(abs "$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys
print({x["name"]:x["value"] for x in json.load(sys.stdin)}["mandir"])')")"
for page in workerbus workerbus-serve workerbus-pki workerbus-harness workerbus-queue; do
  [ -f "$M/man1/$page.1" ] || fail "man page $page.1 not installed"
done
[ -f "$dest$prefix/share/bash-completion/completions/workerbus" ] || fail "bash completion not installed"
[ -f "$dest$prefix/lib/systemd/system/workerbus.service" ] || fail "systemd unit not installed"

# Only the public API is exported: every defined dynamic symbol is wb_*,
# none is internal (wb__), with no exception.
exported="$(nm -D --defined-only "$real" | awk '{print $3}')"
[ -n "$exported" ] || fail "nm lists no symbol in $real"
leaked="$(echo "$exported" | grep -v '^wb_' || true)"
[ -z "$leaked" ] || fail "symbols outside the public API are exported: $(echo $leaked)"
grep -q '^wb__' <<<"$exported" && fail "internal wb__ symbols exported: $(grep '^wb__' <<<"$exported" | tr '\n' ' ')"
# No path of the build or the source tree is compiled into the installed
# library: its loaded sections, without debug information and symbol table,
# hold neither as an absolute path. (A sanitizer build keeps its source
# files' names for its reports, relative to the build directory.)
objcopy --strip-all "$real" "$dest/stripped.so" || fail "objcopy cannot strip $real"
strings -a "$dest/stripped.so" > "$dest/strings.txt"
for p in "$(cd "$build" && pwd)" "$(cd "$src" && pwd)"; do
  if grep -q "\(^\|[^./]\)$p" "$dest/strings.txt"; then
    fail "the library holds the path $p: $(grep "\(^\|[^./]\)$p" "$dest/strings.txt" | head -3 | tr '\n' ' ')"
  fi
done

flags="$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$L/pkgconfig" pkg-config --cflags --libs workerbus)"
san=""
[ "$sanitize" != "none" ] && san="-fsanitize=$sanitize"
cat > "$dest/app.c" <<'C'
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <workerbus/workerbus.h>
int main(void)
{
    char dir[] = "/tmp/wbinst-XXXXXX", pki[64], set[96];
    if (!mkdtemp(dir))
        return 1;
    snprintf(pki, sizeof pki, "%s/pki", dir);
    if (wb_pki_init(pki, NULL, NULL) != WB_OK)
        return 1;
    snprintf(set, sizeof set, "MQTT_BROKER_BUILTIN_PKI_DIR=%s", pki);
    const char *env[] = {"MQTT_BROKER_TYPE=builtin", "MQTT_BROKER_ENDPOINT=127.0.0.1:1984",
                         "MESSAGE_QUEUE_TYPE=postgres", "DATABASE_URL=postgres://h/db", set,
                         "MQTT_BROKER_BUILTIN_RUNTIME_DIR=/tmp/wbinst-run", NULL};
    wb_config_load_opts o = WB_CONFIG_LOAD_OPTS_INIT;
    o.env = env;
    wb_config *c = NULL;
    if (wb_config_load(&o, &c, NULL) != WB_OK)
        return 1;
    printf("%s %s %u\n", wb_version(), wb_config_broker_host(c), wb_config_broker_port(c));
    wb_config_free(c);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return strcmp(wb_version(), WB_VERSION_STRING) != 0;
}
C
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror $san -o "$dest/app" "$dest/app.c" $flags
out="$(LD_LIBRARY_PATH="$L" "$dest/app")"
[ "$out" = "$(meson introspect "$build" --projectinfo | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])') 127.0.0.1 1984" ] ||
  fail "the installed library answered '$out'"
echo "check-install: ok ($soname, $(echo "$exported" | wc -l) symbols all wb_*, $(echo "$flags" | wc -w) pkg-config flags, app printed: $out)"
