#!/usr/bin/env bash
# Debian 12's own Node.js 18 (the `nodejs` package as bookworm ships it), unpacked beside the system
# one so that tests can run the daemon under it. Prints the path of a `node` wrapper on its last line.
#
#   scripts/node18.sh [CACHE_DIR]      default CACHE_DIR: .cache/node18 in the clone (git-ignored)
#
# How: `apt-get download` of nodejs 18.x, libnode108, the node-* packages whose files Debian's node
# loads as builtins from /usr/share/nodejs (cjs-module-lexer, acorn, undici and their dependencies)
# and any shared library libnode108 needs that the host lacks; `dpkg -x` each into CACHE_DIR/root.
# Nothing is installed and nothing outside CACHE_DIR is written: the wrapper runs node in a private
# mount namespace (`unshare -m`) with a read-only overlay of CACHE_DIR/root/usr/share over
# /usr/share, so the absolute /usr/share/nodejs/... paths compiled into libnode resolve, and
# LD_LIBRARY_PATH pointing at the unpacked libraries. The wrapper needs root (mount); so do the tests.
# Idempotent: a second run with a working wrapper downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$(realpath -m "${1:-.cache/node18}")
root="$cache/root"
wrapper="$cache/node"

[ "$(id -u)" -eq 0 ] || { echo "node18: needs root (the wrapper mounts an overlay in a private mount namespace)" >&2; exit 1; }

if [ -x "$wrapper" ] && v=$("$wrapper" --version 2>/dev/null) && [[ "$v" == v18.* ]] \
  && "$wrapper" -e 'require("node:assert").ok(true)' 2>/dev/null; then
  echo "node18: cached $v" >&2
  echo "$wrapper"
  exit 0
fi

ver=$(apt-cache madison nodejs | awk '$3 ~ /^18\./ { print $3; exit }')
[ -n "$ver" ] || { echo "node18: no nodejs 18.x in the apt sources (a Debian 12 'bookworm' source is needed; run apt-get update)" >&2; exit 1; }
echo "node18: nodejs $ver from the apt sources" >&2

rm -rf "$cache"
mkdir -p "$cache/debs" "$root"
dl() { (cd "$cache/debs" && apt-get download -qq -o APT::Sandbox::User=root "$@" >/dev/null); }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# Package names of a .deb's Depends (first alternative of each, version constraints dropped).
depends() { dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | grep -v '^$' || true; }

dl "nodejs=$ver" "libnode108=$ver"
# Closure over Depends: node-* packages always (they are what libnode loads from /usr/share/nodejs),
# shared libraries only when the host does not have them. Bounded: a few rounds suffice.
declare -A seen=([nodejs]=1 [libnode108]=1)
for _round in 1 2 3 4 5 6; do
  want=()
  for deb in "$cache"/debs/*.deb; do
    for p in $(depends "$deb"); do
      [ -n "${seen[$p]:-}" ] && continue
      seen[$p]=1
      case "$p" in
        nodejs) ;;
        node-*) want+=("$p") ;;
        *) installed "$p" || want+=("$p") ;;
      esac
    done
  done
  [ "${#want[@]}" -gt 0 ] || break
  echo "node18: apt-get download ${want[*]}" >&2
  dl "${want[@]}"
done
for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$root"; done

libnode=$(find "$root/usr/lib" -name 'libnode.so.108' -print -quit)
[ -n "$libnode" ] || { echo "node18: libnode.so.108 not found in the unpacked tree" >&2; exit 1; }
libdir=$(dirname "$libnode")
missing=$(LD_LIBRARY_PATH="$libdir" ldd "$root/usr/bin/node" | awk '/not found/ { print $1 }')
[ -z "$missing" ] || { echo "node18: shared libraries still missing: $missing" >&2; exit 1; }

cat >"$wrapper" <<EOF
#!/bin/sh
# Debian 12's node $ver unpacked by scripts/node18.sh; runs it in a private mount namespace where
# $root/usr/share overlays /usr/share (read-only), so its builtins under /usr/share/nodejs load.
exec unshare --mount --propagation private sh -c '
  mount -t overlay wgpmp-node18 -o "lowerdir=\$0/usr/share:/usr/share" /usr/share || exit 127
  LD_LIBRARY_PATH="$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$0/usr/bin/node" "\$@"' '$root' "\$@"
EOF
chmod 755 "$wrapper"
v=$("$wrapper" --version)
[[ "$v" == v18.* ]] || { echo "node18: the wrapper runs $v, not 18" >&2; exit 1; }
"$wrapper" -e 'import("node:fs").then(() => process.exit(0))'
echo "node18: ready: $v ($(du -sh "$root" | cut -f1) unpacked)" >&2
echo "$wrapper"
