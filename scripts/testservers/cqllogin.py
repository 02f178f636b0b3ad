#!/usr/bin/env python3
"""Readiness check for the test Cassandra: logs in over the CQL native
protocol (v4, SASL PLAIN) and exits 0 only if the server accepts the
credentials. Cassandra listens before its default superuser exists, so an
open port is not enough.  usage: cqllogin.py HOST PORT USER PASSWORD"""
import socket
import struct
import sys


def frame(opcode, body, stream=0):
    return struct.pack(">BBhBi", 0x04, 0, stream, opcode, len(body)) + body


def read_frame(sock):
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            raise EOFError("connection closed")
        head += chunk
    _, _, _, opcode, length = struct.unpack(">BBhBi", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return opcode, body


def short_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(frame(0x01, struct.pack(">H", 1) + short_string("CQL_VERSION") + short_string("3.0.0")))
        opcode, body = read_frame(sock)
        if opcode == 0x02:  # READY: no login required
            return 0
        if opcode != 0x03:  # AUTHENTICATE
            print(f"unexpected answer to STARTUP: opcode {opcode:#x} {body[6:]!r}", file=sys.stderr)
            return 1
        token = b"\0" + user.encode() + b"\0" + password.encode()
        sock.sendall(frame(0x0F, struct.pack(">i", len(token)) + token))
        opcode, body = read_frame(sock)
        if opcode == 0x10:  # AUTH_SUCCESS
            return 0
        print(f"login refused: {body[6:].decode(errors='replace')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, EOFError) as e:
        print(f"cql login: {e}", file=sys.stderr)
        sys.exit(1)
