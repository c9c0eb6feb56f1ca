#!/usr/bin/env bash
# Builds the wgpmp container image with podman, without any image registry (none is reachable from
# CI): a Debian 13 "trixie" base made by debootstrap from the Debian mirror (it ships nodejs 20,
# nftables, wireguard-tools, conntrack), imported into podman, then the repository's Dockerfile on
# top of it with the Debian package from scripts/build-deb.sh. Prints the image name on its last line.
#
#   scripts/container-image.sh [DEB]     DEB: a built wgpmp_*_all.deb (default: build one)
#
# Everything lives under .cache/container (git-ignored): the rootfs (built once, ~40 s), podman's
# storage (vfs driver, runc: what works inside a Docker-hosted CI machine without cgroup v2 or
# CAP_SYS_RESOURCE). `PODMAN` in the environment of callers: see podman_cmd below.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$(realpath -m .cache/container)
mkdir -p "$cache"
say() { echo "container-image: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (debootstrap, podman)"; exit 1; }
for t in debootstrap podman runc; do command -v "$t" >/dev/null || { say "missing $t (scripts/install-deps.sh installs it)"; exit 1; }; done

podman_cmd=(podman --root "$cache/storage" --runroot /tmp/wgpmp-podman-run --storage-driver vfs --cgroup-manager cgroupfs --events-backend file --runtime runc)
base=localhost/wgpmp-base:trixie
image=localhost/wgpmp:test

if [ ! -x "$cache/rootfs/usr/bin/node" ]; then
  say "debootstrap trixie (minbase + nodejs nftables wireguard-tools conntrack iproute2)"
  rm -rf "$cache/rootfs"
  start=$SECONDS
  debootstrap --variant=minbase --include=nodejs,nftables,wireguard-tools,iproute2,conntrack,ca-certificates \
    trixie "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
    || { say "debootstrap failed: see $cache/debootstrap.log"; tail -5 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$cache/rootfs/var/cache/apt/archives"/*.deb "$cache/rootfs/var/lib/apt/lists"/*
  say "rootfs ready in $((SECONDS - start)) s"
  "${podman_cmd[@]}" rmi -f "$base" >/dev/null 2>&1 || true
fi
if ! "${podman_cmd[@]}" image exists "$base"; then
  say "podman import $base"
  tar -C "$cache/rootfs" -c . | "${podman_cmd[@]}" import - "$base" >/dev/null
fi

deb=${1:-}
if [ -z "$deb" ]; then deb=$(scripts/build-deb.sh "$cache/deb" | tail -1); fi
ctx="$cache/context"
rm -rf "$ctx" && mkdir -p "$ctx/dist"
cp Dockerfile .dockerignore "$ctx/"
cp "$deb" "$ctx/dist/"
say "podman build $image (FROM $base)"
"${podman_cmd[@]}" build --quiet --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --build-arg BASE="$base" -t "$image" "$ctx" >/dev/null
echo "$image"
