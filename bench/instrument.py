"""Benchmark of the instrument server and link: round trips per second on loopback.

Run: ``PYTHONPATH=. python bench/instrument.py`` (the simulated server runs as a child process).
"""
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twisted.internet import defer, task, threads  # noqa: E402

from agents.instrument.link import InstrumentLink  # noqa: E402
from agents.instrument.testing import ServerProcess  # noqa: E402


def raw_one_per_command(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"measure\t%f\n" % (2 + i / n))
            data = b""
            while not data.endswith(b"\n"):
                data += s.recv(4096)
    return time.perf_counter() - t0


async def run(reactor) -> None:
    proc = ServerProcess(reactor, ["--port", "0", "--seed", "1", "--log-level", "warn"])
    port = await proc.start()
    link = InstrumentLink(reactor, "127.0.0.1", port, timeout=30)
    link.start()
    try:
        await link.when_connected(timeout=10)
        for _ in range(200):  # warm up
            await link.call("measure", 2.5)
        n = 3000
        t0 = time.perf_counter()
        for i in range(n):
            await link.call("measure", 2 + i / n)
        dt = time.perf_counter() - t0
        print(f"link, one call at a time : {n / dt:8.0f} calls/s  ({dt / n * 1e3:.3f} ms per round trip)")
        n = 10000
        t0 = time.perf_counter()
        await defer.gatherResults([link.call("measure", 2 + i / n) for i in range(n)])
        dt = time.perf_counter() - t0
        print(f"link, {n} pipelined   : {n / dt:8.0f} calls/s")
        t0 = time.perf_counter()
        await defer.gatherResults([link.call("ping") for i in range(n)])
        dt = time.perf_counter() - t0
        print(f"link, {n} pings pipel.: {n / dt:8.0f} calls/s  (no worker thread)")
        n = 500
        dt = await threads.deferToThread(raw_one_per_command, port, n)
        print(f"raw socket, new connection per command: {n / dt:8.0f} calls/s")
    finally:
        await link.stop()
        await proc.stop()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
