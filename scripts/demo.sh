#!/usr/bin/env bash
# wgpmp demo: builds a lab of network namespaces with real WireGuard (wireguard-go), starts wgpmp
# in the server namespace, maps a port with natpmpc from a VPN client, fetches a page from the
# "internet" through the forward, deletes it, stops the daemon, and removes everything.
# Runs as root; touches nothing outside its own namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo $0)" >&2; exit 1; }
scripts/install-deps.sh

ID=d$(printf '%04x' "$RANDOM")
DIR=/tmp/wgpmp-lab-$ID
DAEMON_PID=
WEB_PID=
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  set +e
  [ -n "$WEB_PID" ] && kill "$WEB_PID" 2>/dev/null
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
  scripts/lab.sh down "$ID" >/dev/null 2>&1
}
trap cleanup EXIT INT TERM

step "1. Build the lab: internet router, WireGuard server, two WireGuard clients (id $ID)"
scripts/lab.sh up "$ID"
# shellcheck disable=SC1091
. "$DIR/env"
lab() { scripts/lab.sh exec "$ID" "$@"; }

step "2. Start wgpmp in the server namespace"
cat >"$DIR/config.json" <<JSON
{
  "port_forward_enabled": true,
  "wg_interface": "$WG_SRV",
  "wg_address_v4": "$WG_SRV_IP/24",
  "public_interface": "eth0",
  "state_file": "$DIR/state.json",
  "port_forward_min_port": 20000,
  "port_forward_max_port": 30000
}
JSON
cat "$DIR/config.json"
ip netns exec "$NS_SRV" node dist/src/main.js --config "$DIR/config.json" >"$DIR/wgpmp.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 50); do grep -q 'NAT-PMP listening' "$DIR/wgpmp.log" && break; sleep 0.1; done
grep 'NAT-PMP listening' "$DIR/wgpmp.log" || { cat "$DIR/wgpmp.log"; exit 1; }

step "3. A web server on client 1 ($C1_IP:8080), reachable only through the tunnel"
mkdir -p "$DIR/www" && echo "hello from client 1 behind the VPN" >"$DIR/www/index.html"
ip netns exec "$NS_C1" python3 -m http.server 8080 --bind "$C1_IP" --directory "$DIR/www" >/dev/null 2>&1 &
WEB_PID=$!
sleep 0.5

step "4. Client 1 asks the gateway for its public address, then maps TCP 8080 (natpmpc)"
lab c1 natpmpc -g "$WG_SRV_IP"
out=$(lab c1 natpmpc -g "$WG_SRV_IP" -a 0 8080 tcp 3600)
echo "$out"
PORT=$(echo "$out" | sed -n 's/.*Mapped public port \([0-9]*\) protocol TCP.*/\1/p')
[ -n "$PORT" ] || { echo "demo: no port mapped"; exit 1; }

step "5. The forward, as an operator sees it: nft list table inet wgpmp"
lab srv nft list table inet wgpmp | sed -n '/map forwards_v4/,/^\t}/p'

step "6. From the internet ($INET_IP): curl http://$PUBLIC_IP:$PORT/"
lab inet curl -sS --max-time 5 "http://$PUBLIC_IP:$PORT/"

step "7. Client 1 deletes the mapping (lifetime 0); the same fetch now fails"
lab c1 natpmpc -g "$WG_SRV_IP" -a 0 8080 tcp 0 | tail -n 2
if lab inet curl -sS --max-time 2 "http://$PUBLIC_IP:$PORT/" 2>&1; then echo "demo: still reachable?"; exit 1; else echo "(refused or timed out, as it should)"; fi

step "8. Stop wgpmp (SIGTERM): its table is gone"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
lab srv nft list tables
lab srv nft list table inet wgpmp 2>/dev/null && { echo "demo: table still there"; exit 1; } || echo "(no table inet wgpmp)"

step "Daemon log (JSON, pino)"
cat "$DIR/wgpmp.log"
step "Done: cleaning up the lab"
