"""Support for bench/rpc.py: statistics, the result table, raw bridge calls, callee processes.

``Bridge`` posts raw JSON to crossbar's HTTP caller bridge over one keep-alive session;
``Launched`` runs a callee (ocs-core's FakeDataAgent, ocs 0.12.1's, or the bare autobahn one)
as a subprocess and measures when it is callable, its RSS, CPU time and how fast it goes away.
"""
from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

from ocs_core.testing import RouterFixture, project_env

ROOT = Path(__file__).resolve().parent.parent
OP = "delay_task"
MS = 1e3


# -- statistics ------------------------------------------------------------------------------
def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


@dataclass
class Row:
    """One line of the result table."""

    what: str
    value: str
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, what: str, value: str, target: str = "", ok: bool | None = None,
            note: str = "") -> None:
        self.rows.append(Row(what, value, target, ok, note))
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"  {what:<58} {value:>22}  {target:<14} {verdict:<4} {note}", flush=True)

    def markdown(self) -> str:
        out = ["| measurement | figure | target | verdict |", "|---|---|---|---|"]
        for r in self.rows:
            verdict = "" if r.ok is None else ("pass" if r.ok else "**FAIL**")
            value = r.value + (f" ({r.note})" if r.note else "")
            out.append(f"| {r.what} | {value} | {r.target} | {verdict} |")
        return "\n".join(out)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by every thread of ``pid`` (scheduler statistics, ns resolution)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total / 1e9


# -- calls over the HTTP bridge --------------------------------------------------------------
class Bridge:
    """Raw JSON POSTs to crossbar's caller bridge over one keep-alive session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.headers = {"Content-Type": "application/json"}

    def body(self, procedure: str, *args: Any, **kwargs: Any) -> bytes:
        return json.dumps({"procedure": procedure, "args": list(args), "kwargs": kwargs}).encode()

    def post(self, body: bytes) -> Any:
        reply = self.http.post(self.url, data=body, headers=self.headers, timeout=10).json()
        if "error" in reply:
            raise RuntimeError(f"bridge error: {reply}")
        return reply["args"][0]

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        return self.post(self.body(procedure, *args, **kwargs))


def check_ok(reply: Any, what: str) -> None:
    if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == 0):
        raise RuntimeError(f"{what} answered {reply!r}")


def http_cases(bridge: Bridge, address: str) -> dict[str, Callable[[], float]]:
    """Timed closures for one target: ``status`` and ``cycle`` (start + wait)."""
    status = bridge.body(f"{address}.ops", "status", OP, {})
    start = bridge.body(f"{address}.ops", "start", OP, {"delay": 0})
    wait = bridge.body(f"{address}.ops", "wait", OP, {}, timeout=5)
    post = bridge.post
    clock = time.perf_counter

    def do_status() -> float:
        t0 = clock()
        reply = post(status)
        dt = clock() - t0
        check_ok(reply, f"status on {address}")
        return dt

    def do_cycle() -> float:
        t0 = clock()
        started = post(start)
        done = post(wait)
        dt = clock() - t0
        check_ok(started, f"start on {address}")
        check_ok(done, f"wait on {address}")
        if done[2].get("status") != "done" or not done[2].get("success"):
            raise RuntimeError(f"delay_task on {address} did not end done/ok: {done!r}")
        return dt

    combined = bridge.body(f"{address}.ops", "start_and_wait", OP, {"delay": 0}, timeout=5)

    def do_combined() -> float:  # ocs-core's one-request Task call (the bare callee: one call)
        t0 = clock()
        done = post(combined)
        dt = clock() - t0
        check_ok(done, f"start_and_wait on {address}")
        return dt

    return {"status": do_status, "cycle": do_cycle, "combined": do_combined}


def interleaved(funcs: dict[str, Callable[[], float]], iterations: int,
                warmup: int, seed: int | None = None) -> dict[str, list[float]]:
    """Call every function once per iteration and return the timings. The order rotates, or
    with ``seed`` is shuffled (seeded) every iteration, so that each case follows every other
    equally often (a case right after a call to the same process runs warmer)."""
    names = list(funcs)
    rng = random.Random(seed) if seed is not None else None
    for _ in range(warmup):
        for n in names:
            funcs[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iterations):
        if rng is not None:
            rng.shuffle(names)
            order = names
        else:
            k = i % len(names)
            order = names[k:] + names[:k]
        for n in order:
            times[n].append(funcs[n]())
    return times


# -- agent processes -------------------------------------------------------------------------
class Launched:
    """A callee subprocess (ours, ocs's or the bare one) with its address."""

    def __init__(self, kind: str, instance_id: str, fixture: RouterFixture,
                 reply_file: Path | None = None) -> None:
        self.kind, self.instance_id = kind, instance_id
        self.address = fixture.address(instance_id)
        self.log_path = fixture.log_dir / f"{instance_id}.out"
        py = sys.executable
        if kind == "ours":
            self.cmd = [py, "-m", "ocs_core.cli", "agent", instance_id,
                        "--site-file", str(fixture.site_file)]
        elif kind == "ocs":
            self.cmd = [py, "-m", "ocs.agents.fake_data.agent", "--site-file",
                        str(fixture.site_file), "--instance-id", instance_id, "--mode", "idle",
                        "--crossbar-timeout", "0"]
        else:
            self.cmd = [py, str(ROOT / "bench" / "rpc_bare_callee.py"), "--url", fixture.ws_url,
                        "--realm", fixture.hub.wamp_realm, "--root", fixture.address_root,
                        "--instance-id", instance_id]
            if reply_file is not None:
                self.cmd += ["--reply-file", str(reply_file)]
        self.proc: subprocess.Popen | None = None
        self.t_launch = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
            self.t_launch = time.perf_counter()
            self.proc = subprocess.Popen(self.cmd, stdin=devnull, stdout=log, stderr=log,
                                         env=project_env(), start_new_session=True, cwd=ROOT)

    def wait_callable(self, bridge: Bridge, timeout: float = 20.0, poll: float = 0.01) -> float:
        """Poll until both procedures answer; return seconds since launch."""
        deadline = time.monotonic() + timeout
        body = bridge.body(self.address, "get_agent_class")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} agent {self.instance_id} exited "
                                   f"({self.proc.returncode}); see {self.log_path}")
            try:
                bridge.post(body)
                break
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} agent {self.instance_id} not callable in "
                                   f"{timeout} s; see {self.log_path}")
            time.sleep(poll)
        took = time.perf_counter() - self.t_launch
        check_ok(bridge.call(f"{self.address}.ops", "status", OP, {}), f"status on {self.address}")
        return took

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def wait_unregistered(self, bridge: Bridge, timeout: float = 10.0) -> None:
        """Poll until the router no longer knows the agent (so its id can be launched again)."""
        deadline = time.monotonic() + timeout
        body = bridge.body(self.address, "get_agent_class")
        while time.monotonic() < deadline:
            try:
                bridge.post(body)
            except RuntimeError:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{self.address} still registered {timeout} s after its process ended")

    def terminate(self, timeout: float = 20.0) -> float:
        """SIGTERM; return seconds until the process is gone (SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return float("inf")
        return time.perf_counter() - t0
