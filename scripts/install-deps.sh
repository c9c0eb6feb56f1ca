#!/usr/bin/env bash
# DEVELOPMENT AND TEST setup, not for servers (they install the .deb: scripts/build-deb.sh, README).
# Installs what wgpmp's demo and tests need on Debian 12 / Ubuntu 22.04+: Debian packages, then
# node_modules (npm ci) and the build. Idempotent. Needs root (apt-get) and Node.js >= 20.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { [ "$(id -u)" -eq 0 ] || { echo "install-deps: run as root (sudo $0)" >&2; exit 1; }; }
need_root

pkgs=(nftables iptables wireguard-tools wireguard-go natpmpc miniupnpc iproute2 iputils-ping socat ncat conntrack procps curl python3 python3-libtorrent python3-aiosmtpd ca-certificates lintian systemd debootstrap podman runc)
[ "${WGPMP_NO_BROWSER:-}" = 1 ] || pkgs+=(chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "install-deps: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))." >&2
  echo "  Debian 12 ships 18; install 20+ from NodeSource or your distribution's backports." >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
