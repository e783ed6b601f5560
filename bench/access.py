"""Benchmark: the cost of router authentication, signed HTTP requests and the access check.

Three real routers on free loopback ports, side by side: open (``hub.auth: none``), authenticated
with an unsigned, loopback-only HTTP bridge, and authenticated with a signed bridge
(``hub.http_key``). On each a FakeDataAgent without access policy (on the authenticated routers it
joined with its cryptosign key); on the open router also one under ``override:pw2,pw3`` (its
``delay_task`` then needs level 2; the client sends ``pw2``). Through our ``ControlClient``
(which signs when the site names a key), interleaved in one run (the order rotates every
iteration):

* ``status()`` of ``delay_task``;
* a task cycle: ``start`` of ``delay_task(delay=0)`` and ``wait``.

Reported: median and p95 per case, and the overhead of each case over open mode without policy;
and CPU per call (this client process + the router's process group + the agent, from
``/proc/*/task/*/schedstat``), measured in blocks of calls that rotate between the cases: CPU
time is much less sensitive than latency to other load on a shared machine.

Usage: PYTHONPATH=. python bench/access.py [--iterations N] [--markdown]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clients.client_http import ControlClient  # noqa: E402
from clients.site import resolve_hub  # noqa: E402
from ocs_core.testing import running_router  # noqa: E402
from ocs_core.supervisor.process_group import group_members  # noqa: E402
from rpc_support import MS, OP, Report, cpu_seconds, interleaved, median, p95  # noqa: E402

POLICY = "override:pw2,pw3"
TARGET_OVERHEAD = 0.05


def cases(client: ControlClient, password: str | None) -> dict:
    extra = {"password": password} if password else {}
    clock = time.perf_counter

    def status() -> float:
        t0 = clock()
        reply = client.request("status", OP, **extra)
        dt = clock() - t0
        assert reply[0] == 0, reply
        return dt

    def cycle() -> float:
        t0 = clock()
        started = client.request("start", OP, {"delay": 0}, **extra)
        done = client.request("wait", OP, timeout=5, **extra)
        dt = clock() - t0
        assert started[0] == 0 and done[2].get("success"), (started, done)
        return dt

    return {"status": status, "cycle": cycle}


def cpu_blocks(funcs: dict, pids: dict[str, list[int]], blocks: int, size: int) -> dict[str, list[float]]:
    """CPU seconds per call of each case, one figure per block of ``size`` calls; the case
    order rotates from block to block."""
    names = list(funcs)
    out: dict[str, list[float]] = {n: [] for n in names}
    for b in range(blocks):
        k = b % len(names)
        for name in names[k:] + names[:k]:
            before = sum(cpu_seconds(p) for p in pids[name])
            for _ in range(size):
                funcs[name]()
            out[name].append((sum(cpu_seconds(p) for p in pids[name]) - before) / size)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=20, help="CPU blocks per case")
    parser.add_argument("--block-size", type=int, default=100, help="calls per CPU block")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    plain = [{"agent-class": "FakeDataAgent", "instance-id": "plain", "arguments": []}]
    guarded = plain + [{"agent-class": "FakeDataAgent", "instance-id": "guarded",
                        "arguments": ["--access-policy", POLICY]}]
    with tempfile.TemporaryDirectory() as tmp, \
            running_router(Path(tmp) / "open", instances=guarded) as open_router, \
            running_router(Path(tmp) / "auth", instances=plain, auth=True, sign_http=False) as auth_router, \
            running_router(Path(tmp) / "signed", instances=plain, auth=True) as signed_router:
        setups = [("open", open_router, "none", "plain", None),
                  ("open", open_router, "override", "guarded", "pw2"),
                  ("auth", auth_router, "none", "plain", None),
                  ("signed", signed_router, "none", "plain", None)]
        agents = [router.agent(iid) for _, router, _, iid, _ in setups]
        try:
            for agent in agents:
                agent.wait_registered(30)
            funcs = {}
            for mode, router, policy, iid, password in setups:
                hub = resolve_hub(["--site-file", str(router.site_file)])
                client = ControlClient(f"{hub.address_root}.{iid}", hub.wamp_http, signing=hub.signing)
                for case, func in cases(client, password).items():
                    funcs[f"{case} {mode:6} {policy}"] = func
            print(f"{args.iterations} interleaved iterations of {len(funcs)} cases ...", flush=True)
            t0 = time.monotonic()
            times = interleaved(funcs, args.iterations, args.warmup)
            print(f"measured in {time.monotonic() - t0:.0f} s", flush=True)
            pids = {name: [os.getpid(), agent.pid, *(group_members(router.router.pid) or [])]
                    for (mode, router, policy, iid, _), agent in zip(setups, agents)
                    for name in funcs if name.endswith(f"{mode:6} {policy}")}
            cpu = cpu_blocks(funcs, pids, args.blocks, args.block_size)
        finally:
            for agent in agents:
                agent.terminate()
    report = Report()
    for case in ("status", "cycle"):
        base = median(times[f"{case} open   none"])
        for name in [n for n in times if n.startswith(case)]:
            m = median(times[name])
            over = m / base - 1
            is_base = name.endswith("open   none")
            report.add(f"{name} (median / p95)", f"{m * MS:.3f} / {p95(times[name]) * MS:.3f} ms",
                       "" if is_base else f"< +{TARGET_OVERHEAD:.0%}",
                       None if is_base else over < TARGET_OVERHEAD,
                       "baseline" if is_base else f"{over:+.1%} over open/none")
        for name in [n for n in cpu if n.startswith(case)]:
            c, cbase = median(cpu[name]), median(cpu[f"{case} open   none"])
            over = c / cbase - 1
            is_base = name.endswith("open   none")
            report.add(f"{name} CPU per call (client+router+agent)", f"{c * MS:.3f} ms", "" if is_base
                       else f"< +{TARGET_OVERHEAD:.0%}", None if is_base else over < TARGET_OVERHEAD,
                       "baseline" if is_base else f"{over:+.1%} over open/none")
    if args.markdown:
        print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
