"""Measure crossbar's start time through ocs_core.router.process: launch to ready, and stop.

Usage: python bench/router_start.py [RUNS]. Each run starts a router on a free loopback port
(fresh node directory on the first run, reused afterwards), waits until the HTTP bridge's
session is joined, then stops it by process group.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocs_core.router.process import Router  # noqa: E402
from ocs_core.site.config import load_site_config  # noqa: E402
from ocs_core.testing import free_port, write_site_config  # noqa: E402


def main(runs: int = 5) -> None:
    starts, stops = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            site = write_site_config(Path(tmp) / f"s{i}", free_port())
            router = Router(load_site_config(site).hub, Path(tmp) / "node")
            t0 = time.perf_counter()
            router.start(timeout=60)
            t1 = time.perf_counter()
            router.stop()
            t2 = time.perf_counter()
            starts.append(t1 - t0)
            stops.append(t2 - t1)
            print(f"run {i + 1}: start-to-ready {t1 - t0:.2f} s, stop {t2 - t1:.2f} s", flush=True)
    print(f"start-to-ready: median {statistics.median(starts):.2f} s, min {min(starts):.2f} s, "
          f"max {max(starts):.2f} s; stop: median {statistics.median(stops):.2f} s ({runs} runs)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
