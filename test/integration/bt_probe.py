"""Talks BitTorrent to a peer from outside, for libtorrent.test.ts: proves a forward reaches libtorrent.

    /usr/bin/python3 bt_probe.py tcp HOST PORT INFO_HASH   BitTorrent handshake over TCP
    /usr/bin/python3 bt_probe.py utp HOST PORT              uTP connection request (ST_SYN) over UDP

Prints one JSON line and exits 0 when the peer answered as a BitTorrent peer does: for tcp, its own
handshake for the same info hash; for utp, an ST_STATE for our connection id. Exits 1 otherwise
(with what it got). Bounded: 3 s per attempt, 3 attempts for utp (UDP may be lost), about 10 s
overall. Standard library only.
"""

import json
import os
import socket
import struct
import sys
import time

WAIT_S = 3.0
PROTOCOL = b"BitTorrent protocol"
ST_SYN, ST_STATE, UTP_VERSION = 4, 2, 1


def out(ok, **fields):
    print(json.dumps(dict(ok=ok, **fields), sort_keys=True), flush=True)
    return 0 if ok else 1


def tcp_handshake(host, port, info_hash_hex):
    info_hash = bytes.fromhex(info_hash_hex)
    peer_id = b"-WG0001-" + os.urandom(12)
    hs = bytes([len(PROTOCOL)]) + PROTOCOL + bytes(8) + info_hash + peer_id
    try:
        with socket.create_connection((host, port), timeout=WAIT_S) as s:
            s.settimeout(WAIT_S)
            s.sendall(hs)
            got = b""
            deadline = time.monotonic() + WAIT_S
            while len(got) < 68 and time.monotonic() < deadline:
                chunk = s.recv(68 - len(got))
                if not chunk:
                    break
                got += chunk
    except OSError as e:
        return out(False, stage="tcp", error=str(e))
    ok = len(got) == 68 and got[:20] == hs[:20] and got[28:48] == info_hash
    return out(ok, stage="tcp", connected=True, reply_len=len(got), reply_hex=got.hex(),
               peer_id=got[48:68].decode("latin-1") if len(got) == 68 else None)


def utp_syn(host, port):
    conn_id = struct.unpack("!H", os.urandom(2))[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(WAIT_S)
        for attempt in range(1, 4):
            ts = int(time.monotonic() * 1e6) & 0xFFFFFFFF
            syn = struct.pack("!BBHIIIHH", (ST_SYN << 4) | UTP_VERSION, 0, conn_id, ts, 0, 1 << 20, 1, 0)
            s.sendto(syn, (host, port))
            try:
                data, src = s.recvfrom(1500)
            except socket.timeout:
                continue
            if len(data) < 20:
                continue
            kind, version, cid = data[0] >> 4, data[0] & 0xF, struct.unpack("!H", data[2:4])[0]
            ok = kind == ST_STATE and version == UTP_VERSION and cid == conn_id
            return out(ok, stage="utp", attempt=attempt, source="%s:%d" % src, reply_hex=data[:20].hex(),
                       type=kind, conn_id=cid, sent_conn_id=conn_id)
    return out(False, stage="utp", error="no reply")


def main(argv):
    if len(argv) >= 4 and argv[1] == "tcp" and len(argv) == 5:
        return tcp_handshake(argv[2], int(argv[3]), argv[4])
    if len(argv) == 4 and argv[1] == "utp":
        return utp_syn(argv[2], int(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
