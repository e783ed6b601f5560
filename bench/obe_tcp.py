"""Benchmark: round-trip cost of the classic OBE TCP server with a trivial backend (framework share only).

Usage: PYTHONPATH=. python bench/obe_tcp.py [n]
"""
from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

from agents.obe.run_store import RunStore
from ocs_core.framing.length_prefixed import encode


class TrivialBackend:
    """Instant answers, so the figures are the protocol's own cost."""

    def has_run(self): return True
    def getset(self): return [[1.0, 2.0]]
    def getpar(self): return self.particles
    def getcon(self): return []
    def getwgt(self): return [1.0]
    def getmean(self): return [1.0, 2.0, 3.0]
    def getstd(self): return [0.1, 0.2, 0.3]
    def getcov(self): return [[1.0]]
    def optset(self): return [2.0]
    def goodset(self, pickiness): return [2.0]
    def newdat(self, x, y, s): return None
    def newrun(self, message): return None

    particles = np.random.default_rng(0).normal(size=(3, 10_000))


def frame(obj) -> bytes:
    body = json.dumps(obj).encode()
    return b"%010d" % len(body) + body


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(n - len(out), 1 << 20))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return bytes(out)


def exchange(sock, data):
    sock.sendall(data)
    head = recv_exact(sock, 10)
    return recv_exact(sock, int(head))


def timed(fn, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main(n: int = 2000) -> None:
    from twisted.internet import reactor
    from agents.obe.classic.server import listen

    started = threading.Event()
    holder = {}

    def start():
        holder["port"] = listen(TrivialBackend(), port=0)
        started.set()

    reactor.callWhenRunning(start)
    thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
    thread.start()
    started.wait(10)
    port = holder["port"].getHost().port
    ready, getmean = frame({"command": "ready"}), frame({"command": "getmean"})
    newdat = frame({"command": "newdat", "x": [2.0], "y": 1.0, "s": 0.5})

    def per_connection(data):
        def go():
            with socket.create_connection(("127.0.0.1", port)) as sock:
                exchange(sock, data)
        return go

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rows = [
        ("ready, persistent connection (no thread)", timed(lambda: exchange(sock, ready), n)),
        ("getmean, persistent connection (deferToThread)", timed(lambda: exchange(sock, getmean), n)),
        ("newdat, persistent connection (deferToThread)", timed(lambda: exchange(sock, newdat), n)),
        ("ready, one connection per request", timed(per_connection(ready), n // 4)),
        ("getpar 3x1e4 particles, persistent (580 kB reply)",
         timed(lambda: exchange(sock, frame({"command": "getpar"})), max(n // 40, 10))),
    ]
    sock.close()
    with tempfile.TemporaryDirectory() as tmp:
        for durable, name in ((True, "FULL, an fsync per commit"),
                              (False, "NORMAL, the default: no fsync, checkpoints in a thread")):
            store = RunStore(f"{tmp}/bench-{durable}.sqlite", durable=durable)
            run = store.new_run({})
            rows.append((f"store.append_measurements, 1 record (synchronous={name})",
                         timed(lambda: store.append_measurements(run, [([2.0], 1.0, 0.5)]), n // 4)))
            store.close()
    reactor.callFromThread(reactor.stop)
    thread.join(10)
    rows.append(("encode() of a 3x1e5 float64 array (6 MB body)",
                 timed(lambda: encode(np.random.default_rng(1).normal(size=(3, 100_000))), 5)))
    print(f"| operation (median; n={n}, fewer for the slow rows) | time |")
    print("| --- | --- |")
    for name, us in rows:
        print(f"| {name} | {us:.0f} µs |" if us < 10_000 else f"| {name} | {us / 1000:.1f} ms |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
