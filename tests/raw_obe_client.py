"""A classic-protocol client made of the standard library only (no import from this project).

It speaks optbayesexpt's framing as an instrument program in another language would: a 10-digit
zero-padded byte count, then the JSON text, in both directions.
"""
import json
import socket


def recv_exact(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(min(n, 65536))
        if not chunk:
            raise ConnectionError("connection closed before the full reply")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock):
    """One reply frame, prefix included, as bytes."""
    head = recv_exact(sock, 10)
    return head + recv_exact(sock, int(head))


def frame(obj):
    body = json.dumps(obj).encode()
    return b"%010d" % len(body) + body


def tcpcmd(port, obj, host="127.0.0.1"):
    """One request per connection, like optbayesexpt's Socket.tcpcmd; returns the decoded reply."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(frame(obj))
        return json.loads(recv_frame(sock)[10:])


def session(port, objs, host="127.0.0.1"):
    """Several requests on one connection (pipelined); returns the decoded replies in order."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(b"".join(frame(o) for o in objs))
        return [json.loads(recv_frame(sock)[10:]) for _ in objs]


def at_eof(sock):
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
