#!/usr/bin/env bash
# Builds the Debian package: scripts/build-deb.sh [OUTDIR]  ->  OUTDIR/wgpmp_<version>_all.deb
# (OUTDIR default dist/). Prints the package's path on its last line.
#
# From a built tree with dpkg-deb, no debhelper: the compiled daemon (dist/src) and its production
# dependencies (`npm ci --omit=dev` from the lockfile, into a staging directory; the npm cache of a
# full `npm ci` serves it offline) under /usr/lib/wgpmp, /usr/bin/wgpmp, the units, the man page,
# /etc/wgpmp/config.json as a conffile (the example config, disabled). Needs node, npm, dpkg-deb.
#
# Architecture "all": the only native code is koffi (the FFI that calls libnftables in-process),
# which ships one prebuilt koffi.node per platform in optional packages. The package carries the
# glibc Linux builds for Debian's main architectures (KOFFI_ARCHS, default "x64 arm64 arm ia32");
# the ones other than the build host's are fetched with `npm pack` (npm cache, else the registry)
# and skipped with a warning if that fails. On an architecture without one the nft driver falls back
# from "library" to "session" mode (one long-lived `nft -j -i`), as it logs at start.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
outdir=$(realpath -m "${1:-dist}")
version=$(node -p 'require("./package.json").version')
maintainer=${WGPMP_MAINTAINER:-"wgpmp developers <wgpmp@example.org>"}
koffi_archs=${KOFFI_ARCHS:-"x64 arm64 arm ia32"}
# Reproducible timestamps: the last commit's time unless SOURCE_DATE_EPOCH is set.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
say() { echo "build-deb: $*" >&2; }

stage=$(mktemp -d /tmp/wgpmp-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
lib="$pkg/usr/lib/wgpmp"
doc="$pkg/usr/share/doc/wgpmp"
mkdir -p "$lib" "$doc" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/wgpmp" "$pkg/usr/share/man/man1" "$pkg/DEBIAN"

say "building the daemon (tsc)"
npx tsc -p tsconfig.json
cp -r dist/src "$lib/dist-src.tmp" && mkdir -p "$lib/dist" && mv "$lib/dist-src.tmp" "$lib/dist/src"
find "$lib/dist" -name '*.map' -delete
cp -r nft "$lib/nft"
# package.json: "type": "module" and the version (--version) are read at run time; no scripts, no devDependencies.
node -e '
  const p = require("./package.json")
  const out = { name: p.name, version: p.version, description: p.description, license: p.license, type: p.type,
    engines: p.engines, bin: p.bin, dependencies: p.dependencies }
  process.stdout.write(JSON.stringify(out, null, 2) + "\n")' >"$lib/package.json"
cp package-lock.json "$lib/package-lock.json"

say "production dependencies (npm ci --omit=dev)"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"

koffi_version=$(node -p "require('$lib/node_modules/koffi/package.json').version")
for a in $koffi_archs; do
  dest="$lib/node_modules/@koromix/koffi-linux-$a"
  [ -d "$dest" ] && continue
  tgz_dir="$stage/koffi-$a"
  mkdir -p "$tgz_dir"
  if (cd "$tgz_dir" && npm pack --silent --prefer-offline "@koromix/koffi-linux-$a@$koffi_version" >/dev/null 2>&1); then
    mkdir -p "$dest" && tar -xzf "$tgz_dir"/*.tgz -C "$dest" --strip-components=1
  else
    say "warning: koffi for linux-$a not available (npm pack failed): the package works there in nft session mode"
  fi
done

# Trim what a server never runs: koffi's C++ sources and headers (prebuilt binaries are used), musl
# builds (Debian is glibc), TypeScript declarations, source maps, markdown docs.
rm -rf "$lib/node_modules/koffi/vendor" "$lib/node_modules/koffi/doc" "$lib/node_modules/koffi/src/koffi/CMakeLists.txt"
find "$lib/node_modules/koffi/src" -type f \( -name '*.cc' -o -name '*.hh' -o -name '*.h' -o -name '*.c' -o -name '*.inc' -o -name '*.S' -o -name '*.asm' -o -name 'CMakeLists.txt' \) -delete
find "$lib/node_modules/@koromix" -mindepth 2 -maxdepth 2 -type d -name 'musl_*' -exec rm -rf {} +
find "$lib/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' -o -name '*.markdown' \
  -o -name '.npmignore' -o -name '.eslintrc*' -o -name '.prettierrc*' -o -name '.editorconfig' -o -name '.travis.yml' -o -name 'tsconfig.json' \) -type f -delete
find "$lib/node_modules" -type d \( -name test -o -name tests -o -name '__tests__' -o -name '.github' -o -name example -o -name examples -o -name benchmarks \) -prune -exec rm -rf {} +
find "$lib/node_modules" \( -name '*.sh' -o -name '.gitattributes' -o -name 'index.html' \) -type f -delete
rm -rf "$lib/node_modules"/*/.husky "$lib/node_modules/koffi/cnoke.cjs"
find "$lib/node_modules" -type d -empty -delete
(cd "$lib" && node -e 'import("koffi").then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1) })') \
  || { say "koffi does not load from the staged tree"; exit 1; }

cat >"$pkg/usr/bin/wgpmp" <<'EOF'
#!/bin/sh
# wgpmp: see wgpmp(1). The daemon and its dependencies live in /usr/lib/wgpmp.
exec /usr/bin/node /usr/lib/wgpmp/dist/src/main.js "$@"
EOF
cp scripts/wgpmp.service scripts/wgpmp@.service "$pkg/lib/systemd/system/"
node -e '
  const c = JSON.parse(require("fs").readFileSync("scripts/config.example.json", "utf8"))
  c.port_forward_enabled = false
  process.stdout.write(JSON.stringify(c, null, 2) + "\n")' >"$pkg/etc/wgpmp/config.json"
gzip -9n <packaging/wgpmp.1 >"$pkg/usr/share/man/man1/wgpmp.1.gz"
gzip -9n <README.md >"$doc/README.md.gz"
gzip -9n <CHANGELOG.md >"$doc/CHANGELOG.md.gz"
{
  echo "wgpmp ($version) unstable; urgency=medium"
  echo
  echo "  * Release $version; see /usr/share/doc/wgpmp/CHANGELOG.md.gz."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: wgpmp
Comment: /usr/lib/wgpmp/node_modules holds wgpmp's npm dependencies as the lockfile pins them;
 each module's licence text is in its own directory. Their licences: $(cd "$lib" && node -e '
  const fs = require("fs"), path = require("path"), seen = new Set()
  const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    if (!e.isDirectory()) continue
    const p = path.join(d, e.name)
    if (e.name.startsWith("@")) { walk(p); continue }
    try { const l = JSON.parse(fs.readFileSync(path.join(p, "package.json"), "utf8")).license; if (l) seen.add(l) } catch {}
    if (fs.existsSync(path.join(p, "node_modules"))) walk(path.join(p, "node_modules"))
  } }
  walk("node_modules"); process.stdout.write([...seen].sort().join(", "))').

Files: *
Copyright: 2026 wgpmp developers
License: Expat

License: Expat
EOF
  sed 's/^$/./; s/^/ /' "$repo/packaging/LICENSE.Expat"
} >"$doc/copyright"

cp packaging/postinst packaging/prerm packaging/postrm "$pkg/DEBIAN/"
echo /etc/wgpmp/config.json >"$pkg/DEBIAN/conffiles"

# Modes: directories and programs 755, the rest 644; owner root:root (dpkg-deb --root-owner-group).
find "$pkg" -type d -exec chmod 755 {} +
find "$pkg" -type f -exec chmod 644 {} +
chmod 755 "$pkg/usr/bin/wgpmp" "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm" "$pkg/DEBIAN/postrm"
# Scripts with a #! line (npm's bins, main.js) keep their x bit, as npm would install them.
find "$lib" -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' -o -path '*/bin/*' \) -exec sh -c 'for f; do [ "$(head -c 2 "$f")" = "#!" ] && chmod 755 "$f"; done; true' sh {} +
mkdir -p "$pkg/usr/share/lintian/overrides" && install -m 644 packaging/lintian-overrides "$pkg/usr/share/lintian/overrides/wgpmp"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<EOF
Package: wgpmp
Version: $version
Architecture: all
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: nodejs (>= 18.19), nftables, wireguard-tools
Recommends: conntrack
Section: net
Priority: optional
Description: NAT-PMP/PCP port forwarding for WireGuard servers
 wgpmp answers NAT-PMP (RFC 6886) and PCP (RFC 6887) requests from the
 peers of a WireGuard interface and forwards the public ports it grants to
 them, as elements of one nftables map. Torrent clients, game servers and
 anything else that speaks NAT-PMP or PCP get reachable ports through the
 VPN server. It runs on the distribution's own Node.js (18.19 or later).
 .
 The shipped /etc/wgpmp/config.json is disabled: edit it, then enable
 wgpmp.service (or wgpmp@<interface>.service for wg-quick).
EOF
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p "$outdir"
out="$outdir/wgpmp_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
say "$(du -h "$out" | cut -f1) package, ${installed_size} kB installed: $out"
echo "$out"
