"""Benchmark of the OBE agent: one optset + newdat cycle through OCSClient and the TCP port,
against the engine alone and the run service (engine + lock + SQLite commit), at 1e4 particles.

Not a test: starts a real router and a real OBEAgent on loopback, prints a Markdown table.

    PYTHONPATH=. python bench/obe_agent.py [--cycles 300] [--particles 10000] [--settings 200]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from agents.obe.service import OBEService  # noqa: E402
from agents.obe.run_store import RunStore  # noqa: E402
from agents.obe.engine.obe_engine import OBEEngine  # noqa: E402
from ocs_core.testing import free_port, running_router  # noqa: E402

TRUTH, D, NOISE = (2.7777, -1000.0, 50300.0), 0.1, 500.0


def config(n: int, s: int) -> dict:
    return {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": s},
            "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                       "b": {"normal": [50000.0, 1000.0]}},
            "n_particles": n, "noise_std": NOISE, "seed": 1}


def measure(x: float, rng: np.random.Generator) -> float:
    x0, a, b = TRUTH
    return b + a / (((x - x0) / D) ** 2 + 1.0) + NOISE * float(rng.standard_normal())


def timed(cycle, n: int) -> list[float]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        cycle(rng)
        out.append(time.perf_counter() - t0)
    return out


def frame(obj) -> bytes:
    body = json.dumps(obj).encode()
    return b"%010d" % len(body) + body


def recv_frame(sock: socket.socket):
    def exact(k):
        buf = b""
        while len(buf) < k:
            chunk = sock.recv(k - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf
    return json.loads(exact(int(exact(10))))


def tcp_request(sock, obj):
    sock.sendall(frame(obj))
    return recv_frame(sock)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=300)
    p.add_argument("--particles", type=int, default=10_000)
    p.add_argument("--settings", type=int, default=200)
    args = p.parse_args(argv)
    cfg = config(args.particles, args.settings)
    n = args.cycles
    results = {}

    engine = OBEEngine.from_config(cfg)
    results["engine alone (optimal_setting + update)"] = timed(
        lambda rng: _engine_cycle(engine, rng), n)

    with tempfile.TemporaryDirectory() as tmp:
        for durable in (True, False):
            svc = OBEService(RunStore(Path(tmp) / f"svc{durable}.sqlite3", durable=durable))
            svc.start_run(cfg)
            label = f"OBEService (engine + lock + SQLite commit, synchronous={'FULL' if durable else 'NORMAL'})"
            results[label] = timed(lambda rng, s=svc: _svc_cycle(s, rng), n)

        run_file = Path(tmp) / "run.yaml"
        run_file.write_text(yaml.safe_dump(cfg))
        with running_router(Path(tmp) / "router") as router:
            for sync in ("full", "normal"):
                _agent_cases(router, Path(tmp), run_file, sync, n, results)

    base = statistics.median(results["engine alone (optimal_setting + update)"])
    print(f"OBE agent cycle (optset + newdat), {args.particles} particles, {args.settings} settings, "
          f"{platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cores\n")
    print("| path | median ms | p90 ms | framework share (median - engine) |")
    print("|---|---|---|---|")
    for label, ts in results.items():
        med = statistics.median(ts) * 1e3
        p90 = f"{sorted(ts)[int(0.9 * (len(ts) - 1))] * 1e3:.2f}" if len(ts) > 1 else "(mean)"
        print(f"| {label} | {med:.2f} | {p90} | {med - base * 1e3:+.2f} ms |")


def _agent_cases(router, tmp: Path, run_file: Path, sync: str, n: int, results: dict) -> None:
    port = free_port()
    instance = f"obe-bench-{sync}"
    router.add_instance("OBEAgent", instance, [
        "--db", str(tmp / f"{instance}.sqlite3"), "--tcp-port", str(port),
        "--run-config", str(run_file), "--sync", sync])
    agent = router.agent(instance)
    try:
        agent.wait_registered(30)
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with sock:
            assert tcp_request(sock, {"command": "newrun"}) == "OK"

            def tcp_cycle(rng):
                x = tcp_request(sock, {"command": "optset"})
                assert tcp_request(sock, {"command": "newdat", "x": x, "y": measure(x[0], rng),
                                          "s": NOISE}) == "OK"
            results[f"agent --sync {sync}: TCP port, one connection"] = timed(tcp_cycle, n)

        def tcp_new_conn(rng):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s1:
                x = tcp_request(s1, {"command": "optset"})
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s2:
                tcp_request(s2, {"command": "newdat", "x": x, "y": measure(x[0], rng), "s": NOISE})
        results[f"agent --sync {sync}: TCP port, a connection per request (as the reference)"] = \
            timed(tcp_new_conn, n)

        from clients.ocs_client import OCSClient
        client = OCSClient(instance, site_file=str(router.site_file))

        def ocs_cycle(rng):
            x = client.optset().session["data"]["setting"]
            reply = client.newdat(x=x, y=measure(x[0], rng), s=NOISE)
            assert reply.session["success"], reply
        results[f"agent --sync {sync}: OCSClient over the HTTP bridge"] = timed(ocs_cycle, max(50, n // 3))
        if sync == "full":
            _scan_case(router, client, n, results)
        client.close()
    finally:
        agent.terminate()


def _scan_case(router, client, n: int, results: dict) -> None:
    """adaptive_scan against the tests' simulated instrument agent: seconds per step."""
    tests_dir = str(Path(__file__).resolve().parent.parent / "tests")
    router.add_instance("SimInstrumentAgent", "bench-inst", ["--noise", "500"])
    inst = router.agent("bench-inst", env={"OCS_CORE_AGENTS": "SimInstrumentAgent=sim_instrument_agent:main",
                                           "PYTHONPATH": tests_dir})
    try:
        inst.wait_registered(30)
        client.newrun()
        client.adaptive_scan.start(instrument="bench-inst", max_steps=n, sigma=NOISE)
        s = client.adaptive_scan.wait(timeout=600).session
        assert s["success"], s["messages"]
        per_step = (s["end_time"] - s["start_time"]) / s["data"]["step"]
        results["adaptive_scan step (optset + instrument measure Task over WAMP + newdat), --sync full"] = \
            [per_step]
    finally:
        inst.terminate()


def _engine_cycle(engine: OBEEngine, rng) -> None:
    x = engine.optimal_setting()
    engine.update(x, measure(x[0], rng), NOISE)


def _svc_cycle(svc: OBEService, rng) -> None:
    x = svc.optset()
    svc.newdat(x, measure(x[0], rng), NOISE)


if __name__ == "__main__":
    main()
