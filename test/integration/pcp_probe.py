"""Hand-built PCP (RFC 6887) requests from a lab client, for libtorrent.test.ts.

    /usr/bin/python3 pcp_probe.py SERVER CLIENT_ADDRESS 'JSON list of requests'

Each request is an object:
    {"op": "announce"}
    {"op": "map",  "protocol": 6, "internal": 7000, "external": 0, "lifetime": 60,
     "third_party": "10.8.0.2", "prefer_failure": true, "filter": "198.51.100.254",
     "nonce": "24 hex digits", "version": 2}
    {"op": "peer", ...map fields..., "peer": "198.51.100.254", "peer_port": 80}
Every field but "op" is optional. SERVER and CLIENT_ADDRESS may be IPv6 (then the socket is
IPv6). The requests are sent in order from one UDP socket bound to CLIENT_ADDRESS (the PCP client address field says the same address) to SERVER:5351, each resent
up to 3 times 1 s apart until a reply comes from SERVER:5351. One JSON line per request:

    {"op", "request_hex", "reply_hex", "len", "version", "r_opcode", "result", "lifetime", "epoch",
     and for a MAP/PEER reply: "nonce_echoed", "protocol", "internal", "external", "address"}

or {"op", "request_hex", "reply_hex": null} when nothing came back. Standard library only.
"""

import ipaddress
import json
import os
import socket
import struct
import sys

PCP_PORT = 5351
OPCODES = {"announce": 0, "map": 1, "peer": 2}
OPT_THIRD_PARTY, OPT_PREFER_FAILURE, OPT_FILTER = 1, 2, 3
TRIES, WAIT_S = 3, 1.0


def addr16(text):
    """16-byte PCP address: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), RFC 6887 section 5."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return bytes(10) + b"\xff\xff" + ip.packed
    return ip.packed


def text16(b):
    ip = ipaddress.IPv6Address(b)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def option(code, data):
    pad = (-len(data)) % 4
    return struct.pack("!BBH", code, 0, len(data)) + data + bytes(pad)


def build(req, client):
    op = OPCODES[req["op"]]
    lifetime = req.get("lifetime", 0 if op == 0 else 60)
    out = struct.pack("!BBHI", req.get("version", 2), op, 0, lifetime) + addr16(client)
    nonce = bytes.fromhex(req["nonce"]) if "nonce" in req else os.urandom(12)
    if op in (1, 2):
        out += nonce + struct.pack("!B3xHH", req.get("protocol", 6), req.get("internal", 0), req.get("external", 0))
        out += addr16(req.get("external_address", "0.0.0.0"))
    if op == 2:
        out += struct.pack("!H2x", req.get("peer_port", 80)) + addr16(req.get("peer", "198.51.100.254"))
    if "third_party" in req:
        out += option(OPT_THIRD_PARTY, addr16(req["third_party"]))
    if req.get("prefer_failure"):
        out += option(OPT_PREFER_FAILURE, b"")
    if "filter" in req:
        out += option(OPT_FILTER, struct.pack("!xBH", 128, 0) + addr16(req["filter"]))
    return out, nonce


def parse(reply, nonce):
    r = {"len": len(reply)}
    if len(reply) >= 24:
        version, r_op, _, result, lifetime, epoch = struct.unpack("!BBBBII", reply[:12])
        r.update(version=version, r_opcode=r_op, result=result, lifetime=lifetime, epoch=epoch)
        if r_op & 0x7F in (1, 2) and len(reply) >= 60:
            body = reply[24:60]
            proto, internal, external = struct.unpack("!B3xHH", body[12:20])
            r.update(nonce_echoed=body[:12] == nonce, protocol=proto, internal=internal, external=external,
                     address=text16(body[20:36]))
    return r


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    server, client, reqs = argv[1], argv[2], json.loads(argv[3])
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((client, 0))
        s.settimeout(WAIT_S)
        for req in reqs:
            pkt, nonce = build(req, client)
            line = {"op": req["op"], "request_hex": pkt.hex(), "reply_hex": None}
            for _ in range(TRIES):
                s.sendto(pkt, (server, PCP_PORT))
                try:
                    while True:
                        data, src = s.recvfrom(2048)
                        if ipaddress.ip_address(src[0]) == ipaddress.ip_address(server) and src[1] == PCP_PORT:
                            break
                except socket.timeout:
                    continue
                line.update(reply_hex=data.hex(), **parse(data, nonce))
                break
            print(json.dumps(line, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
