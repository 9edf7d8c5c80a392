#!/usr/bin/env python3
"""Tell one guest it was restored, from the hypervisor host (Python 3, standard library only).

Sends the host channel's RESTORED notice with 64 fresh bytes from this host's RNG, then WAIT until every
watcher in the guest has re-adjusted (docs/backends/host.md, docs/PROTOCOL.md "The host channel").

    host_notice.py serial PATH [--min N]                a QEMU chardev socket (virtio-serial port)
    host_notice.py firecracker PATH [--port P] [--min N] Firecracker's vsock Unix socket (uds_path)
    host_notice.py vsock CID [--port P] [--min N]        AF_VSOCK (QEMU vhost-vsock, cloud-hypervisor)

Prints the new generation; exit 0 when the guest moved, reseeded its kernel CRNG and every watcher
re-adjusted, 1 otherwise.
"""
import argparse
import json
import os
import socket
import sys


def lines(sock):
    buf = b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode("latin-1").rstrip("\r")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the guest closed the connection")
        buf += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["serial", "firecracker", "vsock"])
    ap.add_argument("target")
    ap.add_argument("--port", type=int, default=7744)
    ap.add_argument("--min", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=30000, help="ms to wait for the watchers")
    a = ap.parse_args()
    if a.kind == "vsock":
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        sock.connect((int(a.target), a.port))
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(a.target)
    sock.settimeout(a.timeout / 1000 + 10)
    replies = lines(sock)
    if a.kind == "firecracker":
        sock.sendall(b"CONNECT %d\n" % a.port)
        answer = next(replies)
        if not answer.startswith("OK "):
            sys.exit("Firecracker refused CONNECT %d: %r" % (a.port, answer))
    elif a.kind == "serial":
        sock.sendall(b"\n")  # end a partial line an earlier connection may have left on the port
    entropy = os.urandom(64)
    sock.sendall(b"RESTORED %d %s\nWAIT %d\n" % (a.min, entropy.hex().encode(), a.timeout))
    notice, waited = next(replies), next(replies)
    if not notice.startswith("OK "):
        sys.exit("notice refused: " + notice)
    reply = json.loads(notice[3:])
    print("generation %d, bumped %s, kernel CRNG reseeded %s%s" % (
        reply["generation"], reply["bumped"], reply["reseeded"],
        "" if reply["reseeded"] else " (" + reply.get("reseedError", "") + ")"), file=sys.stderr)
    print("watchers: " + waited, file=sys.stderr)
    print(reply["generation"])
    sys.exit(0 if reply["reseeded"] and waited == "OK" else 1)


if __name__ == "__main__":
    main()
