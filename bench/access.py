"""Benchmark: the cost of router authentication, signed HTTP requests and the access check.

Two real routers on free loopback ports, started afresh for each of ``--rounds`` rounds:
**open** (``hub.auth: none``, as ocs) and **auth** (``hub.auth: cryptosign``, agents joined with
their keys, signed bridge ``hub.http_key``: the site as shipped). Each serves two caller paths:
its own, and for this benchmark only the other kind, so that every router has an **unsigned**
path (open mode's options) and a **signed** one (a signed site's options: key, secret, 10 s
window). On each router a FakeDataAgent without access policy (``none``) and one under
``override:pw2,pw3`` (its ``delay_task`` then needs level 2; the client sends ``pw2``).

A case is a router, an agent and a path, e.g. ``open none unsigned`` (the baseline: open mode
exactly) or ``auth override signed`` (everything on). All eight are measured, through our
``ControlClient`` (which signs when given the key): ``status()`` of ``delay_task``, and a task
cycle (``start`` of ``delay_task(delay=0)`` and ``wait``). Every router, agent and path gets
the same share of the calls, so none is warmer than another.

Latency: every case once per iteration, in an order shuffled (seeded) every iteration. CPU per
call: this client thread + the router's process group + the agent (``/proc/*/task/*/schedstat``),
read around each call in a second loop shuffled the same way: per call and per process, so
other load on a shared machine does not enter it, and no case runs warmer than another.
Reported: each case's overhead over the baseline, and each part's cost between cases that
differ in it alone (signing: the two paths of one router and agent; the access check: the two
agents of one router and path; authentication: the two routers), as the median and range over
the rounds.

Usage: PYTHONPATH=. python bench/access.py [--rounds N] [--iterations N] [--cpu-iterations N] [--markdown]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import ocs_core.router.process as router_process  # noqa: E402
from clients.client_http import ControlClient  # noqa: E402
from clients.site import resolve_hub  # noqa: E402
from ocs_core.framing.http_signing import new_secret  # noqa: E402
from ocs_core.router.auth import SIGNED_WINDOW_S  # noqa: E402
from ocs_core.router.config import hub_endpoint  # noqa: E402
from ocs_core.supervisor.process_group import group_members  # noqa: E402
from ocs_core.testing import running_router  # noqa: E402
from rpc_support import MS, OP, Report, cpu_seconds, interleaved, median, p95  # noqa: E402

POLICY = "override:pw2,pw3"
TARGET_OVERHEAD = 0.05
ROUTERS, POLICIES, PATHS = ("open", "auth"), ("none", "override"), ("unsigned", "signed")
CASES = [f"{r} {p} {b}" for r in ROUTERS for p in POLICIES for b in PATHS]
BASELINE = "open none unsigned"
#: The parts measured between cases that differ in one alone: (part, position in the case
#: name, without it, with it).
PARTS = [("signing", 2, "unsigned", "signed"), ("access check", 1, "none", "override"),
         ("authentication", 0, "open", "auth")]
#: What the target is judged on: the site as shipped, without and with a policy; the access
#: check in open mode.
JUDGED = ("auth none signed", "auth override signed", "open override unsigned")
#: The benchmark's own second bridge path (a suffix of the site's path) and the open router's key.
SECOND_SUFFIX, BENCH_KEY = "-second", "bench-http"


def render_with_second_path(secret: str, render: Callable[..., dict]) -> Callable[..., dict]:
    """``render_config`` plus, beside the site's bridge path, the same path with open mode's
    options (on a signed site) or a signed site's options (on an open one)."""
    def rendered(hub: Any, endpoint: Any = None, **kwargs: Any) -> dict:
        config = render(hub, endpoint, **kwargs)
        ep = endpoint or hub_endpoint(hub)
        paths = config["workers"][0]["transports"][0]["paths"]
        bridge = paths[ep.http_path]
        options = {"post_body_limit": bridge["options"]["post_body_limit"]}
        if "secret" not in bridge["options"]:
            options.update(key=BENCH_KEY, secret=secret, timestamp_delta_limit=SIGNED_WINDOW_S)
        paths[ep.http_path + SECOND_SUFFIX] = {**bridge, "options": options}
        return config
    return rendered


def calls(client: ControlClient, password: str | None) -> dict[str, Callable[[], float]]:
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


def cpu_per_call(funcs: dict[str, Callable[[], float]], pids: dict[str, list[int]],
                 iterations: int, seed: int) -> dict[str, list[float]]:
    """CPU seconds of each call: this thread's (``thread_time``) and every thread of the
    case's router and agent (schedstat), read just before and after the call. Every case once
    per iteration, in an order shuffled (seeded) every iteration, like the latency's. Reading
    takes ~0.2 ms, by which time the router and agent have finished their part of the call
    (measured: < 1 µs of their CPU falls in the next 1 ms)."""
    names = list(funcs)
    rng = random.Random(seed)
    out: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(iterations):
        rng.shuffle(names)
        for name in names:
            others = sum(cpu_seconds(p) for p in pids[name])
            mine = time.thread_time()
            funcs[name]()
            mine = time.thread_time() - mine
            out[name].append(mine + sum(cpu_seconds(p) for p in pids[name]) - others)
    return out


def one_round(tmp: Path, args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:
    """Fresh routers and agents; the median latency, p95 and CPU of every call of every case."""
    instances = [{"agent-class": "FakeDataAgent", "instance-id": "none", "arguments": []},
                 {"agent-class": "FakeDataAgent", "instance-id": "override",
                  "arguments": ["--access-policy", POLICY]}]
    with ExitStack() as stack:
        routers = {"open": stack.enter_context(running_router(tmp / "open", instances=instances)),
                   "auth": stack.enter_context(running_router(tmp / "auth", instances=instances,
                                                              auth=True))}
        agents = {(r, p): routers[r].agent(p) for r in ROUTERS for p in POLICIES}
        for agent in agents.values():
            stack.callback(agent.terminate)
        for agent in agents.values():
            agent.wait_registered(30)
        funcs, pids = {}, {}
        for case in CASES:
            r, policy, path = case.split()
            hub = resolve_hub(["--site-file", str(routers[r].site_file)])
            own_signed = hub.signing is not None
            if (path == "signed") == own_signed:
                url, signing = hub.wamp_http, hub.signing
            else:
                url, signing = hub.wamp_http + SECOND_SUFFIX, (
                    (BENCH_KEY, args.secret) if path == "signed" else None)
            client = ControlClient(f"{hub.address_root}.{policy}", url, signing=signing)
            members = [agents[r, policy].pid, *(group_members(routers[r].router.pid) or [])]
            for op, func in calls(client, "pw2" if policy == "override" else None).items():
                funcs[f"{op} {case}"] = func
                pids[f"{op} {case}"] = members
        times = interleaved(funcs, args.iterations, args.warmup, seed=seed)
        cpu = cpu_per_call(funcs, pids, args.cpu_iterations, seed)
    return {name: {"median": median(times[name]), "p95": p95(times[name]), "cpu": median(cpu[name])}
            for name in funcs}


def part_costs(rnd: dict[str, dict[str, float]], op: str, position: int, without: str, with_: str,
               key: str) -> list[float]:
    """The part's relative cost between every pair of cases that differ in it alone."""
    out = []
    for case in CASES:
        words = case.split()
        if words[position] == without:
            words[position] = with_
            out.append(rnd[f"{op} {' '.join(words)}"][key] / rnd[f"{op} {case}"][key] - 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh routers and agents each round")
    parser.add_argument("--iterations", type=int, default=600, help="latency iterations per round")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--cpu-iterations", type=int, default=300,
                        help="CPU iterations per round (each case once, its CPU read around it)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    args.secret = new_secret()
    router_process.render_config = render_with_second_path(args.secret, router_process.render_config)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t0 = time.monotonic()
            rounds.append(one_round(Path(tmp) / f"round{r}", args, args.seed + r))
            latency = {case: rounds[-1][f"status {case}"]["median"] for case in CASES}
            print(f"round {r + 1}/{args.rounds} in {time.monotonic() - t0:.0f} s, status latency "
                  "over the baseline: " + ", ".join(
                      f"{case} {latency[case] / latency[BASELINE] - 1:+.1%}" for case in CASES[1:]),
                  flush=True)
    report = Report()
    for op in ("status", "cycle"):
        base = f"{op} {BASELINE}"
        report.add(f"{base} (median latency / p95 / CPU per call)",
                   f"{median([rd[base]['median'] for rd in rounds]) * MS:.3f} / "
                   f"{median([rd[base]['p95'] for rd in rounds]) * MS:.3f} / "
                   f"{median([rd[base]['cpu'] for rd in rounds]) * MS:.3f} ms", note="baseline")
        for case in CASES[1:]:
            for what, key in (("latency", "median"), ("CPU", "cpu")):
                over = [rd[f"{op} {case}"][key] / rd[base][key] - 1 for rd in rounds]
                m = median(over)
                judged = case in JUDGED
                report.add(f"{op} {case}: {what} over the baseline", f"{m:+.1%}",
                           f"< +{TARGET_OVERHEAD:.0%}" if judged else "",
                           m < TARGET_OVERHEAD if judged else None,
                           f"rounds {min(over):+.1%} to {max(over):+.1%}")
        for part, position, without, with_ in PARTS:
            for what, key in (("latency", "median"), ("CPU", "cpu")):
                per_round = [median(part_costs(rd, op, position, without, with_, key)) for rd in rounds]
                every = [c for rd in rounds for c in part_costs(rd, op, position, without, with_, key)]
                m = median(per_round)
                report.add(f"{op} {part} alone: {what}", f"{m:+.1%}", f"< +{TARGET_OVERHEAD:.0%}",
                           m < TARGET_OVERHEAD, f"{len(every)} pairs {min(every):+.1%} to {max(every):+.1%}")
    if args.markdown:
        print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
