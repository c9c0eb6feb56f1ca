"""A libtorrent session that gets its listen port mapped by NAT-PMP/PCP, for libtorrent.test.ts.

Run with Debian's interpreter (/usr/bin/python3) inside a lab client namespace:

    ip netns exec NS /usr/bin/python3 libtorrent_client.py --listen 10.8.0.2:6881

It starts a session with NAT-PMP on (UPnP, LSD and DHT off), or with --upnp UPnP on and NAT-PMP
off (upnp.test.ts), listening on the given address only, and prints one JSON line per event, flushed at once:

    {"event": "listen", "address": ..., "port": ..., "socket_type": ...}
    {"event": "log", "msg": ...}                 portmap_log_alert: libtorrent's NAT-PMP/PCP/UPnP log
    {"event": "mapped", "mapping": N, "external_port": P, "protocol": "tcp"|"udp"}
    {"event": "error", "mapping": N, "error": ...}
    {"event": "ready", "tcp": P, "udp": P}       both protocols mapped
    {"event": "incoming", "endpoint": ..., "socket_type": ...}
    {"event": "timeout"}                         no TCP+UDP mapping within --map-timeout (exit 1)
    {"event": "exit"}

After "ready" it keeps running (so the forwards stay in use) until killed, or until --linger
seconds after start, whichever comes first. Every wait is bounded.
"""

import argparse
import faulthandler
import json
import signal
import sys
import time

import libtorrent as lt


def emit(**event):
    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
    sys.stdout.flush()


def main():
    # A crash inside libtorrent (a C++ extension) then leaves a stack on stderr for the test to show.
    faulthandler.enable()
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, help="IP:PORT, e.g. 10.8.0.2:6881")
    ap.add_argument("--map-timeout", type=float, default=20.0, help="seconds to wait for both mappings")
    ap.add_argument("--linger", type=float, default=60.0, help="exit by itself this many seconds after start")
    ap.add_argument("--info-hash", help="40 hex digits: add this (metadata-less) torrent, so that incoming peer "
                    "connections for it are accepted and answered with a handshake")
    ap.add_argument("--upnp", action="store_true", help="map by UPnP IGD instead of NAT-PMP/PCP")
    ap.add_argument("--save-path", default="/tmp", help="save path of that torrent (nothing is written without metadata)")
    args = ap.parse_args()

    stop = {"now": False}

    def on_term(_signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    started = time.monotonic()
    emit(event="start", version=lt.__version__)
    ses = lt.session(
        {
            "listen_interfaces": args.listen,
            "outgoing_interfaces": "",
            "enable_natpmp": not args.upnp,
            "enable_upnp": args.upnp,
            "enable_lsd": False,
            "enable_dht": False,
            "alert_mask": int(
                lt.alert_category.port_mapping
                | lt.alert_category.port_mapping_log
                | lt.alert_category.error
                | lt.alert_category.status
                | lt.alert_category.peer
            ),
        }
    )

    if args.info_hash:
        atp = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + args.info_hash)
        atp.save_path = args.save_path
        atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        ses.add_torrent(atp)

    mapped = {}
    ready = False
    try:
        while not stop["now"]:
            now = time.monotonic() - started
            if now >= args.linger:
                break
            if not ready and now >= args.map_timeout:
                emit(event="timeout", mapped=mapped)
                return 1
            ses.wait_for_alert(200)
            for a in ses.pop_alerts():
                if isinstance(a, lt.portmap_alert):
                    proto = "tcp" if a.map_protocol == lt.portmap_protocol.tcp else "udp"
                    mapped[proto] = a.external_port
                    emit(event="mapped", mapping=a.mapping, external_port=a.external_port, protocol=proto,
                         transport=str(a.map_transport), t=round(now, 3))
                elif isinstance(a, lt.portmap_log_alert):
                    emit(event="log", msg=a.log_message() if hasattr(a, "log_message") else a.msg,
                         transport=str(a.map_transport), t=round(now, 3))
                elif isinstance(a, lt.portmap_error_alert):
                    emit(event="error", mapping=a.mapping, error=a.message(), t=round(now, 3))
                elif isinstance(a, lt.listen_succeeded_alert):
                    emit(event="listen", address=str(a.address), port=a.port, socket_type=str(a.socket_type))
                elif isinstance(a, lt.listen_failed_alert):
                    emit(event="listen_failed", message=a.message())
                elif isinstance(a, lt.incoming_connection_alert):
                    emit(event="incoming", endpoint="%s:%d" % tuple(a.endpoint), socket_type=str(a.socket_type),
                         t=round(now, 3))
            if not ready and "tcp" in mapped and "udp" in mapped:
                ready = True
                emit(event="ready", tcp=mapped["tcp"], udp=mapped["udp"], t=round(now, 3))
    finally:
        emit(event="exit")
        # Dropping the session sends libtorrent's lifetime-0 MAPs (it does not wait for replies).
        del ses
    return 0


if __name__ == "__main__":
    sys.exit(main())
