"""Benchmark of the client side: OCSClient construction, and status() against a bare bridge call.

Run: ``PYTHONPATH=. python bench/client_construction.py [N]`` (starts its own router and FakeDataAgent on
loopback; compares with ocs 0.12.1's OCSClient when ``ocs`` is installed).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from clients.ocs_client import OCSClient  # noqa: E402
from ocs_core.testing import running_router  # noqa: E402


def timed(funcs: list, n: int) -> list[list[float]]:
    """Seconds per call of each of ``funcs``, ``n`` rounds, interleaved (so that load from other
    processes hits all of them alike), after 20 warm-up rounds."""
    for _ in range(20):
        for func in funcs:
            func()
    out: list[list[float]] = [[] for _ in funcs]
    for _ in range(n):
        for func, samples in zip(funcs, out):
            t0 = time.perf_counter()
            func()
            samples.append(time.perf_counter() - t0)
    return out


def row(name: str, samples: list[float]) -> None:
    med, mean = statistics.median(samples), statistics.fmean(samples)
    print(f"| {name} | {med * 1e3:.2f} ms | {mean * 1e3:.2f} ms | {len(samples)} |", flush=True)


def main(n: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_router(tmp) as router:
        router.add_instance("FakeDataAgent", "bench-faker")
        agent = router.agent("bench-faker")
        try:
            agent.wait_registered(30)
            site = ["--site-file", str(router.site_file), "--site-host", "localhost"]
            print("| what | median | mean | n |\n| --- | --- | --- | --- |")
            try:
                from ocs import ocs_client as theirs
            except ImportError:
                theirs = None
            m = max(50, n // 10)
            ours_new = lambda: OCSClient("bench-faker", args=site).close()  # noqa: E731
            if theirs is None:
                samples = timed([ours_new], m)
            else:
                samples = timed([ours_new, lambda: theirs.OCSClient("bench-faker", args=site)], m)
            row("`OCSClient(...)` construction (site file, get_api, new connection)", samples[0])
            if theirs is not None:
                row("ocs 0.12.1 `OCSClient(...)` construction", samples[1])
            client = OCSClient("bench-faker", args=site)
            http = requests.Session()
            body = json.dumps({"procedure": f"{router.address_root}.bench-faker.ops",
                               "args": ["status", "count", {}], "kwargs": {}})

            def bare():
                reply = http.post(router.http_url, data=body, timeout=10).json()
                assert "args" in reply

            funcs = [client.count.status, bare]
            if theirs is not None:
                funcs.append(theirs.OCSClient("bench-faker", args=site).count.status)
            samples = timed(funcs, n)
            row("`client.count.status()` (our OCSClient, keep-alive)", samples[0])
            row("bare keep-alive `requests` POST of the same call", samples[1])
            if theirs is not None:
                row("ocs 0.12.1 `client.count.status()`", samples[2])
            client.close()
        finally:
            agent.terminate()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
