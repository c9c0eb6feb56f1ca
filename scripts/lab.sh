#!/usr/bin/env bash
# wgpmp network-namespace lab: one "internet" router, one WireGuard server, two WireGuard clients;
# dual-stack (IPv4 and IPv6, always both).
#
#   lab.sh up ID              build the lab (ID: 1-6 chars [a-z0-9]); writes /tmp/wgpmp-lab-ID/env;
#                             exit 3 if anything of ID exists already (then nothing is touched)
#   lab.sh down ID            remove everything of ID, even half-built; idempotent; never fails
#   lab.sh exec ID NAME cmd…  run cmd in namespace NAME ∈ {srv,c1,c2,inet}
#
# Topology (every namespace, WireGuard interface and temp path contains ID):
#
#   wgpmp-c1-ID  eth0 192.0.2.2/30 ──── ic1-ID 192.0.2.1/30 ┐
#                wgc1-ID 10.8.0.2/24                        │  wgpmp-inet-ID (router, ip_forward=1)
#   wgpmp-c2-ID  eth0 192.0.2.6/30 ──── ic2-ID 192.0.2.5/30 ┤
#                wgc2-ID 10.8.0.3/24                        │
#   wgpmp-srv-ID eth0 198.51.100.1/24 ─ isrv-ID 198.51.100.254/24
#                wgs-ID 10.8.0.1/24, udp 51820; ip_forward=1; default via 198.51.100.254;
#                table `ip labnat` masquerades 10.8.0.0/24 out eth0 (table inet wgpmp is the daemon's)
#
# IPv6 (the tunnel still runs over IPv4: WireGuard's endpoint is 198.51.100.1):
#
#   wgpmp-srv-ID eth0 2001:db8:100::1/64 ─ isrv-ID 2001:db8:100::254/64 (the internet host)
#                wgs-ID fd42:42::1/64 (ULA, like wg-easy v15) and 2001:db8:200::1/64 (routed global);
#                forwarding=1; default via 2001:db8:100::254; table `ip6 labnat6` masquerades
#                fd42:42::/64 out eth0 (NAT66, like wg-easy v15)
#   wgpmp-c1-ID  wgc1-ID fd42:42::2/64   ULA only: its outgoing IPv6 appears from 2001:db8:100::1
#   wgpmp-c2-ID  wgc2-ID 2001:db8:200::3/64   global: reachable from the internet, no NAT
#   wgpmp-inet-ID forwarding=1; 2001:db8:200::/64 via 2001:db8:100::1
#
# Server peers: c1 AllowedIPs 10.8.0.2/32, fd42:42::2/128; c2 10.8.0.3/32, 2001:db8:200::3/128.
# Every IPv6 address is added `nodad` (usable at once), accept_ra=0 and accept_dad=0 everywhere.
#
# Clients route like wg-quick with AllowedIPs 0.0.0.0/0: the main table's default route is the
# WireGuard interface, and the host route to the server's endpoint 198.51.100.1 via the underlay
# gateway sits in table 51820, which only WireGuard's own packets (fwmark 51820) use. So every
# other packet, including one to 198.51.100.1 itself (hairpin), goes through the tunnel. Like
# wg-quick, the main-table default route has no gateway: natpmpc needs `-g 10.8.0.1`.
# Clients have AllowedIPs 0.0.0.0/0, ::/0 and an IPv6 main-table default dev wgX; IPv6 needs no
# policy routing, since no WireGuard packet is IPv6 (the endpoint is IPv4) and so none can loop.
#
# WireGuard is wireguard-go (userspace). Its control socket /var/run/wireguard/IFNAME.sock is
# shared by all namespaces, which is why the interface names contain ID. Nothing here touches the
# root namespace: veth pairs are created directly inside the lab namespaces.
#
# Needs root, IPv6 in the kernel (with nft NAT for ip6), iproute2, wg, wireguard-go, nft, and
# ping (iputils, or busybox's; both take -6).
set -euo pipefail
umask 077

readonly WG_PORT=51820
readonly WG_MARK=51820
readonly KEEPALIVE=5
readonly PING_TRIES=10
readonly WG_SOCK_DIR=/var/run/wireguard

say() { printf 'lab: %s\n' "$*"; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }
# Exit 3: something of this ID exists already. Nothing was touched; the caller must not run down
# on a lab it did not build.
die_exists() { printf 'lab: error: %s exists: run '"'"'lab.sh down %s'"'"' first\n' "$1" "$ID" >&2; exit 3; }

usage() {
  cat >&2 <<'EOF'
usage: lab.sh up ID | down ID | exec ID {srv|c1|c2|inet} cmd [args...]
  ID: 1-6 characters [a-z0-9]
EOF
  exit 2
}

check_id() {
  [[ ${1:-} =~ ^[a-z0-9]{1,6}$ ]] || die "bad lab ID '${1:-}': want 1-6 characters [a-z0-9]"
}

# Names for one ID, shared by up, down and exec.
set_names() {
  ID=$1
  NS_INET=wgpmp-inet-$ID
  NS_SRV=wgpmp-srv-$ID
  NS_C1=wgpmp-c1-$ID
  NS_C2=wgpmp-c2-$ID
  WG_SRV=wgs-$ID
  WG_C1=wgc1-$ID
  WG_C2=wgc2-$ID
  DIR=/tmp/wgpmp-lab-$ID
  ALL_NS=("$NS_SRV" "$NS_C1" "$NS_C2" "$NS_INET")
}

ns_exists() { [[ -e /var/run/netns/$1 ]]; }

# Whether PID is a wireguard-go process whose argv names IFNAME.
is_wg_for() {
  local pid=$1 ifname=$2
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == wireguard-go ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$ifname"
}

# The wireguard-go process serving IFNAME inside NS, if any: looked up among the namespace's own
# pids, never by a name pattern over the whole system.
wg_pid_in_ns() {
  local ns=$1 ifname=$2 pid
  ns_exists "$ns" || return 0
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    if is_wg_for "$pid" "$ifname"; then
      echo "$pid"
      return 0
    fi
  done
}

# ---------------------------------------------------------------------------------------- up --

wg_up() { # NS IFNAME ADDR/PLEN [ADDR6/PLEN...]: start wireguard-go for IFNAME inside NS, record its pid
  local ns=$1 ifname=$2 addr=$3 pid a
  shift 3
  [[ ! -e $WG_SOCK_DIR/$ifname.sock ]] || die "$WG_SOCK_DIR/$ifname.sock already exists"
  # wireguard-go creates the tun in the namespace it runs in, then daemonizes; the parent exits
  # once the tun and the control socket exist. setsid: a Ctrl-C meant for the caller must not
  # reach it.
  ip netns exec "$ns" setsid -w env LOG_LEVEL=error wireguard-go "$ifname" >>"$DIR/wireguard-go.log" 2>&1 \
    || die "wireguard-go $ifname failed in $ns: $(tail -n 5 "$DIR/wireguard-go.log")"
  pid=$(wg_pid_in_ns "$ns" "$ifname")
  [[ -n $pid ]] || die "wireguard-go for $ifname is not running in $ns"
  echo "$pid" >"$DIR/$ifname.pid"
  ip -n "$ns" link show "$ifname" >/dev/null || die "$ifname did not appear in $ns"
  ip -n "$ns" address add "$addr" dev "$ifname"
  for a in "$@"; do
    ip -n "$ns" -6 address add "$a" dev "$ifname" nodad
  done
  say "  $ns: $ifname $addr${*:+ $*} (wireguard-go pid $pid)"
}

# IPv6 settings of a new namespace, before any link exists in it (new links copy `default`):
# IPv6 on, no router advertisements, no DAD (every address is added nodad anyway; this also
# covers the kernel's own link-local addresses). FORWARDING 1 for a router.
ns6_init() { # NS FORWARDING
  local ns=$1 fwd=$2 c
  for c in all default; do
    ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$c.disable_ipv6=0" "net.ipv6.conf.$c.accept_ra=0" \
      "net.ipv6.conf.$c.accept_dad=0"
  done
  ip netns exec "$ns" sysctl -qw "net.ipv6.conf.all.forwarding=$fwd"
}

ping_until() { # NS DST: bounded ping loop (IPv4 or, for an address with a colon, IPv6)
  local ns=$1 dst=$2 i fam=()
  [[ $dst != *:* ]] || fam=(-6)
  for ((i = 1; i <= PING_TRIES; i++)); do
    # Never redirect a function call here: its redirection is active in this shell, so a trap
    # firing meanwhile would print into /dev/null.
    if ip netns exec "$ns" "${PING[@]}" "${fam[@]}" -q -c1 -W2 "$dst" >/dev/null 2>&1; then
      say "  $ns -> $dst ok (try $i)"
      return 0
    fi
  done
  die "$ns cannot ping $dst after $PING_TRIES tries"
}

client_up() { # N NS IFNAME WG_ADDR WG_ADDR6 UNDERLAY_ADDR UNDERLAY_GW INET_SIDE_IFNAME
  local n=$1 ns=$2 ifname=$3 wgaddr=$4 wgaddr6=$5 uaddr=$6 ugw=$7 iside=$8
  say "client c$n: namespace $ns, underlay $uaddr via $ugw"
  ip netns add "$ns"
  ns6_init "$ns" 0
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "$iside" netns "$NS_INET"
  ip -n "$ns" address add "$uaddr/30" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$NS_INET" address add "$ugw/30" dev "$iside"
  ip -n "$NS_INET" link set "$iside" up

  wg genkey >"$DIR/c$n.key"
  wg pubkey <"$DIR/c$n.key" >"$DIR/c$n.pub"
  wg_up "$ns" "$ifname" "$wgaddr/24" "$wgaddr6/64"
  ip netns exec "$ns" wg set "$ifname" private-key "$DIR/c$n.key" fwmark "$WG_MARK" \
    peer "$(cat "$DIR/srv.pub")" endpoint "$PUBLIC_IP:$WG_PORT" allowed-ips 0.0.0.0/0,::/0 \
    persistent-keepalive "$KEEPALIVE"
  ip -n "$ns" link set "$ifname" up
  # wg-quick style: WireGuard's own packets (fwmark) reach the endpoint over the underlay;
  # everything else, 198.51.100.1 included, takes the tunnel.
  ip -n "$ns" route add "$PUBLIC_IP/32" via "$ugw" dev eth0 table "$WG_MARK"
  ip -n "$ns" rule add fwmark "$WG_MARK" table "$WG_MARK" priority 100
  ip -n "$ns" route add default dev "$ifname"
  # IPv6: only the default route. WireGuard's own packets are IPv4, so no ip -6 rule is needed.
  ip -n "$ns" -6 route add default dev "$ifname"
  say "  $ns: default dev $ifname (IPv4 and IPv6); $PUBLIC_IP via $ugw for fwmark $WG_MARK (WireGuard's own packets)"
}

cmd_up() {
  local id=$1
  set_names "$id"
  local ns
  for ns in "${ALL_NS[@]}"; do
    ! ns_exists "$ns" || die_exists "namespace $ns"
  done
  for ns in "$WG_SRV" "$WG_C1" "$WG_C2"; do
    [[ ! -e $WG_SOCK_DIR/$ns.sock ]] || die_exists "$WG_SOCK_DIR/$ns.sock"
  done
  [[ ! -e $DIR ]] || die_exists "$DIR"
  for ns in ip wg wireguard-go nft; do
    command -v "$ns" >/dev/null || die "missing tool: $ns"
  done
  [[ -d /proc/sys/net/ipv6 ]] || die "this kernel has no IPv6 (no /proc/sys/net/ipv6)"
  if command -v ping >/dev/null; then
    PING=(ping)
  elif command -v busybox >/dev/null; then
    PING=(busybox ping)
  else
    die "missing tool: ping (iputils-ping or busybox)"
  fi

  # From here on, any failure (or Ctrl-C) removes whatever was built.
  trap 'rc=$?; trap - EXIT; trap "" INT TERM; say "up failed (exit $rc); cleaning up"; cmd_down "$ID" >&2; exit "$rc"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  PUBLIC_IP=198.51.100.1
  INET_IP=198.51.100.254
  WG_SRV_IP=10.8.0.1
  C1_IP=10.8.0.2
  C2_IP=10.8.0.3
  C1_UNDERLAY=192.0.2.2
  C1_GW=192.0.2.1
  C2_UNDERLAY=192.0.2.6
  C2_GW=192.0.2.5
  PUBLIC_IP6=2001:db8:100::1
  INET_IP6=2001:db8:100::254
  WG_SRV_IP6=fd42:42::1
  WG_SRV_GLOBAL6=2001:db8:200::1
  C1_IP6=fd42:42::2
  C2_IP6=2001:db8:200::3
  WG_PREFIX6=fd42:42::/64
  GLOBAL_PREFIX6=2001:db8:200::/64

  say "building lab '$id' (namespaces ${ALL_NS[*]})"
  mkdir -m 0700 "$DIR"

  say "internet: namespace $NS_INET, router, $INET_IP/24, $INET_IP6/64"
  ip netns add "$NS_INET"
  ns6_init "$NS_INET" 1
  ip -n "$NS_INET" link set lo up
  ip netns exec "$NS_INET" sysctl -qw net.ipv4.ip_forward=1

  say "server: namespace $NS_SRV, eth0 $PUBLIC_IP/24 $PUBLIC_IP6/64, default via $INET_IP, $INET_IP6"
  ip netns add "$NS_SRV"
  ns6_init "$NS_SRV" 1
  ip -n "$NS_SRV" link set lo up
  ip -n "$NS_SRV" link add eth0 type veth peer name "isrv-$id" netns "$NS_INET"
  ip -n "$NS_SRV" address add "$PUBLIC_IP/24" dev eth0
  ip -n "$NS_SRV" -6 address add "$PUBLIC_IP6/64" dev eth0 nodad
  ip -n "$NS_SRV" link set eth0 up
  ip -n "$NS_INET" address add "$INET_IP/24" dev "isrv-$id"
  ip -n "$NS_INET" -6 address add "$INET_IP6/64" dev "isrv-$id" nodad
  ip -n "$NS_INET" link set "isrv-$id" up
  ip -n "$NS_SRV" route add default via "$INET_IP" dev eth0
  ip -n "$NS_SRV" -6 route add default via "$INET_IP6" dev eth0
  ip netns exec "$NS_SRV" sysctl -qw net.ipv4.ip_forward=1
  # The internet reaches the clients' global addresses through the server (no NAT).
  ip -n "$NS_INET" -6 route add "$GLOBAL_PREFIX6" via "$PUBLIC_IP6" dev "isrv-$id"

  say "server: WireGuard $WG_SRV $WG_SRV_IP/24 $WG_SRV_IP6/64 $WG_SRV_GLOBAL6/64, udp $WG_PORT"
  wg genkey >"$DIR/srv.key"
  wg pubkey <"$DIR/srv.key" >"$DIR/srv.pub"
  wg_up "$NS_SRV" "$WG_SRV" "$WG_SRV_IP/24" "$WG_SRV_IP6/64" "$WG_SRV_GLOBAL6/64"
  ip netns exec "$NS_SRV" wg set "$WG_SRV" private-key "$DIR/srv.key" listen-port "$WG_PORT"
  ip -n "$NS_SRV" link set "$WG_SRV" up

  say "server: masquerade 10.8.0.0/24 out eth0 (table ip labnat; table inet wgpmp is left to the daemon)"
  ip netns exec "$NS_SRV" nft -f - <<'EOF'
table ip labnat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" ip saddr 10.8.0.0/24 masquerade
	}
}
EOF

  say "server: NAT66, masquerade $WG_PREFIX6 out eth0 (table ip6 labnat6)"
  ip netns exec "$NS_SRV" nft -f - <<EOF
table ip6 labnat6 {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" ip6 saddr $WG_PREFIX6 masquerade
	}
}
EOF

  client_up 1 "$NS_C1" "$WG_C1" "$C1_IP" "$C1_IP6" "$C1_UNDERLAY" "$C1_GW" "ic1-$id"
  client_up 2 "$NS_C2" "$WG_C2" "$C2_IP" "$C2_IP6" "$C2_UNDERLAY" "$C2_GW" "ic2-$id"

  say "server: peers c1 = $C1_IP/32 $C1_IP6/128, c2 = $C2_IP/32 $C2_IP6/128"
  ip netns exec "$NS_SRV" wg set "$WG_SRV" \
    peer "$(cat "$DIR/c1.pub")" allowed-ips "$C1_IP/32,$C1_IP6/128" \
    peer "$(cat "$DIR/c2.pub")" allowed-ips "$C2_IP/32,$C2_IP6/128"

  say "checking: underlay, then each tunnel, IPv4 then IPv6 (ping, at most $PING_TRIES tries each)"
  ping_until "$NS_INET" "$PUBLIC_IP"
  ping_until "$NS_C1" "$WG_SRV_IP"
  ping_until "$NS_C2" "$WG_SRV_IP"
  ping_until "$NS_INET" "$PUBLIC_IP6"
  ping_until "$NS_C1" "$WG_SRV_IP6"
  ping_until "$NS_C2" "$WG_SRV_GLOBAL6"

  local env=$DIR/env
  {
    echo "# wgpmp lab $id, written by scripts/lab.sh up; source it or parse KEY='value' lines"
    echo "LAB_ID='$id'"
    echo "LAB_DIR='$DIR'"
    echo "NS_SRV='$NS_SRV'"
    echo "NS_C1='$NS_C1'"
    echo "NS_C2='$NS_C2'"
    echo "NS_INET='$NS_INET'"
    echo "SRV_PUBLIC_IF='eth0'"
    echo "WG_SRV='$WG_SRV'"
    echo "WG_C1='$WG_C1'"
    echo "WG_C2='$WG_C2'"
    echo "WG_PORT='$WG_PORT'"
    echo "PUBLIC_IP='$PUBLIC_IP'"
    echo "INET_IP='$INET_IP'"
    echo "WG_SRV_IP='$WG_SRV_IP'"
    echo "C1_IP='$C1_IP'"
    echo "C2_IP='$C2_IP'"
    echo "C1_UNDERLAY_IP='$C1_UNDERLAY'"
    echo "C2_UNDERLAY_IP='$C2_UNDERLAY'"
    echo "WG_SRV_PUBKEY='$(cat "$DIR/srv.pub")'"
    echo "WG_C1_PUBKEY='$(cat "$DIR/c1.pub")'"
    echo "WG_C2_PUBKEY='$(cat "$DIR/c2.pub")'"
    echo "WG_SRV_PID='$(cat "$DIR/$WG_SRV.pid")'"
    echo "WG_C1_PID='$(cat "$DIR/$WG_C1.pid")'"
    echo "WG_C2_PID='$(cat "$DIR/$WG_C2.pid")'"
    echo "PUBLIC_IP6='$PUBLIC_IP6'"
    echo "INET_IP6='$INET_IP6'"
    echo "WG_SRV_IP6='$WG_SRV_IP6'"
    echo "WG_SRV_GLOBAL6='$WG_SRV_GLOBAL6'"
    echo "C1_IP6='$C1_IP6'"
    echo "C2_IP6='$C2_IP6'"
    echo "WG_PREFIX6='$WG_PREFIX6'"
    echo "GLOBAL_PREFIX6='$GLOBAL_PREFIX6'"
  } >"$env.tmp"
  mv "$env.tmp" "$env"

  trap - EXIT INT TERM
  say "lab '$id' is up; variables in $env"
  say "  try: bash scripts/lab.sh exec $id srv wg show"
}

# -------------------------------------------------------------------------------------- down --

# Whether PID runs (a zombie does not: a daemonized wireguard-go is reaped by whoever adopted it).
alive() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ -n $stat && ${stat%% *} != Z ]]
}

# Stops processes by pid: TERM to all, wait up to 3 s for all, then KILL the rest.
# Arguments are "pid:what" pairs.
stop_pids() {
  local pair pid i left
  local pids=()
  for pair in "$@"; do
    pid=${pair%%:*}
    alive "$pid" || continue
    say "  stopping ${pair#*:} (pid $pid)"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for ((i = 0; i < 30; i++)); do
    left=0
    for pid in "${pids[@]}"; do
      ! alive "$pid" || left=1
    done
    ((left)) || return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    ! alive "$pid" || { say "  pid $pid ignored TERM; KILL"; kill -KILL "$pid" 2>/dev/null; }
  done
  return 0
}

cmd_down() {
  set +e # down never fails: every step is best effort
  local id=$1
  set_names "$id"
  local pairs=("$NS_SRV:$WG_SRV" "$NS_C1:$WG_C1" "$NS_C2:$WG_C2")
  local pair ns ifname pid comm
  local victims=()
  say "tearing down lab '$id'"
  for pair in "${pairs[@]}"; do
    ns=${pair%%:*} ifname=${pair#*:}
    # The pid recorded at up, if it is still a wireguard-go serving this lab's interface (the
    # name contains ID and is unique system-wide), else found through the namespace (up may have
    # died before recording it).
    pid=$(cat "$DIR/$ifname.pid" 2>/dev/null)
    is_wg_for "$pid" "$ifname" || pid=$(wg_pid_in_ns "$ns" "$ifname")
    [[ -z $pid ]] || victims+=("$pid:wireguard-go $ifname")
  done
  stop_pids "${victims[@]}"
  for pair in "${pairs[@]}"; do
    ns=${pair%%:*} ifname=${pair#*:}
    if ns_exists "$ns" && ip -n "$ns" link show "$ifname" >/dev/null 2>&1; then
      ip -n "$ns" link del "$ifname" 2>/dev/null
    fi
  done
  # Anything still running in a lab namespace (a daemon or listener a test left behind) would
  # keep the namespace alive after `ip netns del`; stop it by pid.
  victims=()
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
      victims+=("$pid:$comm left in $ns")
    done
  done
  stop_pids "${victims[@]}"
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    say "  deleting namespace $ns"
    ip netns del "$ns" 2>/dev/null
  done
  for ifname in "$WG_SRV" "$WG_C1" "$WG_C2"; do
    # wireguard-go removes its socket on TERM; after a KILL it stays behind.
    rm -f -- "$WG_SOCK_DIR/$ifname.sock"
  done
  rm -rf -- "$DIR"
  say "lab '$id' is down"
  return 0
}

# -------------------------------------------------------------------------------------- exec --

cmd_exec() {
  local id=$1 name=$2
  shift 2
  set_names "$id"
  local ns
  case $name in
    srv) ns=$NS_SRV ;;
    c1) ns=$NS_C1 ;;
    c2) ns=$NS_C2 ;;
    inet) ns=$NS_INET ;;
    *) die "unknown namespace '$name': want srv, c1, c2 or inet" ;;
  esac
  (($# > 0)) || usage
  ns_exists "$ns" || die "namespace $ns does not exist: run 'lab.sh up $id' first"
  exec ip netns exec "$ns" "$@"
}

main() {
  (($# >= 2)) || usage
  local cmd=$1 id=$2
  shift 2
  check_id "$id"
  [[ $(id -u) == 0 ]] || die "must run as root"
  case $cmd in
    up) (($# == 0)) || usage; cmd_up "$id" ;;
    down) (($# == 0)) || usage; cmd_down "$id" ;;
    exec) (($# >= 2)) || usage; cmd_exec "$id" "$@" ;;
    *) usage ;;
  esac
}

main "$@"
