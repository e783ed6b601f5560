"""Benchmark: the three closed loops of issue 15, each beside its floor, in one run; ratios quoted.

Not a test. One real crossbar router on a free loopback port and real agent processes:

1. **optbayesexpt's own demo client** (``demos/server/instrument_controller.py`` of the reference,
   imported, its plotting stubbed out): its three ``measurement_run`` calls (801 one-connection
   requests each: newrun, then 200 x goodset / newdat / getmean / getstd) against our OBE agent's
   classic TCP port and against the reference's own ``server_script.py`` (a subprocess, port
   patched), timed without the servers' start-up, the two interleaved run by run. Floors: the
   engine alone doing the same 200 x (goodset, update, mean, std) in-process, and 801 bare TCP
   exchanges (a one-connection request to a trivial server answering ``"OK"``).
2. **The demo's adaptive step through OCSClient** (``clients/examples/adaptive_scan.py``:
   optset, the instrument's measure, newdat: three Task calls) against one bare bridge call (a
   plain autobahn callee answering a constant, ``bench/rpc_bare_callee.py``), interleaved.
0. **The Task call itself**: ``delay_task(delay=0)`` on our FakeDataAgent as one
   ``start_and_wait`` request, and as ``start`` then ``wait``, against one bare call, over the
   HTTP bridge (and through ``OCSClient``) and over WebSocket (``bench/rpc_ws_client.py``).
3. **The agent-to-agent ``adaptive_scan`` Process** (the OBE agent drives the instrument agent
   over WAMP): seconds per step, beside the engine alone; and the instrument agent's ``measure``
   Task round trip (OCSClient) beside a bare TCP exchange with the instrument server.

    PYTHONPATH=. python bench/closed_loop.py [--runs 2] [--steps 100] [--scan-steps 200]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
REFERENCE = Path(os.environ.get("OPTBAYESEXPT_PATH", "/work/shared/peers/optbayesexpt-1.2.0"))

from clients.examples import adaptive_scan, resonance  # noqa: E402
from clients.ocs_client import OCSClient  # noqa: E402
from ocs_core.testing import free_port, project_env, running_router, wait_listening  # noqa: E402
from rpc_support import OP, Bridge, Launched, check_ok, http_cases, interleaved  # noqa: E402

import closed_loop_model  # noqa: E402
from agents.obe.engine.obe_engine import OBEEngine  # noqa: E402

MS = 1e3
DEMO_RUNS = ((2, 3, 25), (2, 3, 200), (1, 4, 200))
TARGETS = {"classic": 0.7, "ocsclient_bare_calls": 3.5, "scan_ms": 4.0}
OBE_ARGS: list[str] = []  # extra OBE agent options (--inline-budget-ms)

_REFERENCE_SERVER = """
import os, runpy, sys
sys.path.insert(0, os.environ["REF_PATH"])
from optbayesexpt import obe_server
_init = obe_server.OBE_Server.__init__
def _init_on_port(self, *args, **kwargs):
    kwargs["port"] = int(os.environ["REF_PORT"])
    _init(self, *args, **kwargs)
obe_server.OBE_Server.__init__ = _init_on_port
runpy.run_path(os.path.join(os.environ["REF_PATH"], "demos", "server", "server_script.py"),
               run_name="__main__")
"""


def median(xs) -> float:
    return statistics.median(xs)


# -- loop 1: the reference's demo client -----------------------------------------------------
class _NoPlot:
    """Stands in for matplotlib.pyplot in the reference's demo client: plotting is not timed."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def demo_client():
    sys.path.insert(0, str(REFERENCE / "demos" / "server"))
    sys.path.insert(0, str(REFERENCE))
    import instrument_controller
    instrument_controller.plt = _NoPlot()
    instrument_controller.print = lambda *a, **k: None
    return instrument_controller


def time_demo_client(client, port: int, seed: int) -> float:
    """The three measurement runs of the reference's demo client against ``port``; seconds."""
    client.default_port = port
    np.random.seed(seed)
    t0 = time.perf_counter()
    for lo, hi, steps in DEMO_RUNS:
        client.measurement_run(lo, hi, steps)
    return time.perf_counter() - t0


def wait_ready(client, port: int, ref: subprocess.Popen, timeout: float = 60.0) -> None:
    client.default_port = port
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.tcpcmd({"command": "ready"})
            return
        except ConnectionRefusedError:
            if ref.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no server ready on port {port}") from None
            time.sleep(0.1)


_BARE_SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    data = b""
    while len(data) < 10 or len(data) < 10 + int(data[:10]):
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    conn.sendall(b'0000000004"OK"')
    conn.close()
"""


_TWISTED_SERVER = """
from twisted.internet import protocol, reactor
class Answer(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(b'0000000004"OK"')
factory = protocol.ServerFactory()
factory.protocol, factory.noisy = Answer, False
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


def bare_tcp_exchanges(client, n: int, server: str = _BARE_SERVER) -> float:
    """Seconds for ``n`` one-connection requests to a serial server (its own process) that
    answers "OK" at once: the floor of the transport alone (``_TWISTED_SERVER``: the floor of
    a minimal Twisted server, no framing, no backend)."""
    proc = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True,
                            env=project_env())
    try:
        client.default_port = int(proc.stdout.readline())
        t0 = time.perf_counter()
        for _ in range(n):
            client.tcpcmd({"command": "ready"})
        return time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def engine_demo_loop(seed: int) -> float:
    """Our engine alone, in-process, doing the demo client's work (no TCP, no store)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for lo, hi, steps in DEMO_RUNS:
        eng = OBEEngine.from_config({**closed_loop_model.RUN_CONFIG,
                                     "settings": {"start": lo, "stop": hi, "num": steps}})
        f0 = rng.random() * 0.8 + 2.1
        for _ in range(200):
            x = eng.good_setting(6)
            y = 1 - 0.02 / (((x[0] - f0) * 2 / 0.04) ** 2 + 1) + 0.005 * rng.standard_normal()
            eng.update(x, y, 0.005)
            eng.mean(), eng.std()
    return time.perf_counter() - t0


def loop_classic(router, tmp: Path, runs: int) -> dict:
    client = demo_client()
    run_file = tmp / "demo-run.json"
    run_file.write_text(json.dumps(closed_loop_model.RUN_CONFIG))
    port = free_port()
    router.add_instance("OBEAgent", "cl-obe-tcp", [
        "--db", str(tmp / "cl-obe-tcp.sqlite3"), "--tcp-port", str(port), "--run-config", str(run_file),
        "--newrun-handler", "closed_loop_model:newrun"] + OBE_ARGS)
    ours = router.agent("cl-obe-tcp", env={"PYTHONPATH": str(BENCH)})
    ref_port = free_port()
    env = project_env({"REF_PATH": str(REFERENCE), "REF_PORT": str(ref_port)})
    with open(tmp / "reference-server.out", "wb") as log:
        ref = subprocess.Popen([sys.executable, "-c", _REFERENCE_SERVER], env=env, stdout=log,
                               stderr=log, stdin=subprocess.DEVNULL, cwd=tmp)
    out = {"ours": [], "reference": [], "engine": [], "bare": [], "twisted": []}
    try:
        ours.wait_registered(30)
        for p in (port, ref_port):  # as the demo client does (a bare probe would crash the reference)
            wait_ready(client, p, ref)
        client.default_port = port
        client.tcpcmd({"command": "newrun"})  # warm-up: the first run builds imports and caches
        client.default_port = ref_port
        client.tcpcmd({"command": "newrun", "lolim": 2, "hilim": 3, "steps": 25})
        for rep in range(runs):
            order = (("ours", port), ("reference", ref_port))
            for name, p in (order if rep % 2 == 0 else order[::-1]):
                out[name].append(time_demo_client(client, p, seed=rep))
                print(f"  demo client run {rep + 1} against {name}: {out[name][-1]:.2f} s",
                      file=sys.stderr, flush=True)
            out["engine"].append(engine_demo_loop(rep))
            out["bare"].append(bare_tcp_exchanges(client, 801 * len(DEMO_RUNS)))
            out["twisted"].append(bare_tcp_exchanges(client, 801 * len(DEMO_RUNS), _TWISTED_SERVER))
        client.default_port = ref_port
        client.tcpcmd({"command": "done"})
        obe = OCSClient("cl-obe-tcp", site_file=str(router.site_file))
        out["inline"] = obe.ready().session["data"]["inline"]
        obe.close()
    finally:
        ours.terminate()
        if ref.poll() is None:
            ref.terminate()
            ref.wait(10)
    return out


# -- loops 2 and 3: OCSClient and adaptive_scan --------------------------------------------------
def loop_agents(router, tmp: Path, steps: int, scan_steps: int) -> dict:
    bridge = Bridge(router.http_url)
    bare = Launched("bare", "cl-bare", router)
    bare.start()
    inst_port = free_port()
    router.add_instance("SimulatedInstrument", "cl-sim", [
        "--port", str(inst_port), "--seed", "1", "--center", "2.5", "--width", "0.1", "--noise", "0.05"])
    sim = router.agent("cl-sim")
    router.add_instance("InstrumentAgent", "cl-inst", ["--port", str(inst_port), "--mode", "idle"])
    inst = router.agent("cl-inst")
    router.add_instance("OBEAgent", "cl-obe", ["--db", str(tmp / "cl-obe.sqlite3"), "--no-tcp"] + OBE_ARGS)
    obe_agent = router.agent("cl-obe")
    out: dict = {}
    try:
        bare.wait_callable(bridge)
        wait_listening(inst_port, 30.0)
        inst.wait_registered(30)
        obe_agent.wait_registered(30)
        site = {"site_file": str(router.site_file)}
        obe, instrument = OCSClient("cl-obe", **site), OCSClient("cl-inst", **site)
        deadline = time.monotonic() + 30
        while True:  # the instrument agent registers before its link to the server is up
            try:
                truth = resonance.instrument_truth(instrument)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        config = resonance.run_config(truth)
        status = bridge.body(f"{bare.address}.ops", "status", OP, {})
        bare_times, step_times, measure_times, tcp_times = [], [], [], []
        with socket.create_connection(("127.0.0.1", inst_port), timeout=10) as raw:
            reader = raw.makefile("rb")

            def tcp_exchange() -> float:
                t0 = time.perf_counter()
                raw.sendall(b"measure\t2.5\n")
                reader.readline()
                return time.perf_counter() - t0

            for i in range(steps):  # interleaved: a loop of `steps` adaptive steps, one at a time
                t0 = time.perf_counter()
                check_ok(bridge.post(status), "bare status")
                bare_times.append(time.perf_counter() - t0)
                if i == 0:
                    adaptive_scan.check(obe.newrun(**config), "newrun")
                t0 = time.perf_counter()
                x = adaptive_scan.check(obe.optset(), "optset")["setting"][0]
                y = adaptive_scan.measure(instrument, x)
                adaptive_scan.check(obe.newdat(x=[x], y=y, s=config["noise_std"]), "newdat")
                step_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                adaptive_scan.measure(instrument, 2.5)
                measure_times.append(time.perf_counter() - t0)
                tcp_times.append(tcp_exchange())
        out.update(bare=bare_times, step=step_times, measure=measure_times, tcp=tcp_times)
        engine = OBEEngine.from_config(config)
        rng = np.random.default_rng(3)
        eng_times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            x = engine.optimal_setting()
            engine.update(x, resonance.lorentzian(x[0], truth) + truth["noise"] * rng.standard_normal(),
                          truth["noise"])
            eng_times.append(time.perf_counter() - t0)
        out["engine"] = eng_times
        out["inline"] = obe.ready().session["data"]["inline"]
        adaptive_scan.check(obe.newrun(**config), "newrun (scan)")
        started = obe.adaptive_scan.start(instrument="cl-inst", max_steps=scan_steps, sigma=truth["noise"])
        assert started.status == 0, started
        reply = obe.adaptive_scan.wait(timeout=600)
        s = reply.session
        assert s and s.get("success"), reply
        out["scan_ms"] = MS * (s["end_time"] - s["start_time"]) / s["data"]["step"]
        obe.close()
        instrument.close()
    finally:
        for agent in (obe_agent, inst, sim):
            agent.terminate()
        bare.terminate()
    return out


# -- the Task call itself: one request (start_and_wait) against one bare call --------------------
def loop_task_call(router, tmp: Path, iterations: int) -> dict:
    bridge = Bridge(router.http_url)
    router.add_instance("FakeDataAgent", "tc-faker", ["--mode", "idle"])
    bare, ours = Launched("bare", "tc-bare", router), Launched("ours", "tc-faker", router)
    for agent in (bare, ours):
        agent.start()
    try:
        for agent in (bare, ours):
            agent.wait_callable(bridge)
        client = OCSClient("tc-faker", site_file=str(router.site_file))

        def ocsclient_call() -> float:
            t0 = time.perf_counter()
            reply = client.delay_task(delay=0)
            dt = time.perf_counter() - t0
            assert reply.status == 0 and reply.session["success"], reply
            return dt

        funcs = {"bare": http_cases(bridge, bare.address)["status"],
                 "combined": http_cases(bridge, ours.address)["combined"],
                 "start+wait": http_cases(bridge, ours.address)["cycle"],
                 "OCSClient": ocsclient_call}
        interleaved(funcs, 0, 30)
        http = interleaved(funcs, iterations, 0)
        client.close()
        out_file = tmp / "ws_times.json"
        cmd = [sys.executable, str(BENCH / "rpc_ws_client.py"), "--url", router.ws_url,
               "--realm", router.hub.wamp_realm, "--targets", f"{bare.address},{ours.address}",
               "--cases", "status,combined,cycle", "--iterations", str(iterations), "--warmup", "30",
               "--out", str(out_file)]
        done = subprocess.run(cmd, env=project_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"rpc_ws_client failed: {done.stderr[-2000:]}")
        ws = json.loads(out_file.read_text())
        return {"http": http, "ws": {"bare": ws["status"][bare.address],
                                     "combined": ws["combined"][ours.address],
                                     "start+wait": ws["cycle"][ours.address]}}
    finally:
        ours.terminate()
        bare.terminate()


def report(classic: dict | None, agents: dict | None, calls: dict | None = None) -> str:
    lines = ["| loop | time | floor | ratio | target |", "|---|---|---|---|---|"]
    if calls:
        for transport, target in (("http", 1.15), ("ws", 1.3)):
            t = {k: median(v) for k, v in calls[transport].items()}
            lines.append(f"| {transport}: bare call (constant callee) | {MS * t['bare']:.2f} ms | | 1.00 | |")
            lines.append(f"| {transport}: Task call delay_task(0), one start_and_wait | "
                         f"{MS * t['combined']:.2f} ms | one bare call | **{t['combined'] / t['bare']:.2f}x** | "
                         f"<= {target}x |")
            lines.append(f"| {transport}: the same as start then wait (ocs's two calls) | "
                         f"{MS * t['start+wait']:.2f} ms | | {t['start+wait'] / t['bare']:.2f}x | |")
            if "OCSClient" in t:
                lines.append(f"| http: `OCSClient(...).delay_task(delay=0)` | {MS * t['OCSClient']:.2f} ms | | "
                             f"{t['OCSClient'] / t['bare']:.2f}x | |")
    if classic:
        ours, ref = median(classic["ours"]), median(classic["reference"])
        eng, bare = median(classic["engine"]), median(classic["bare"])
        n = 801 * len(DEMO_RUNS)
        lines += [
            f"| reference demo client ({n} one-connection requests) against optbayesexpt's server | "
            f"{ref:.2f} s | | 1.00 | |",
            f"| the same client against our classic TCP port | {ours:.2f} s | engine alone {eng:.2f} s "
            f"+ {n} bare TCP exchanges {bare:.2f} s = {eng + bare:.2f} s ({(eng + bare) / ref:.2f}x the "
            f"reference) | **{ours / ref:.2f}x** the reference | <= {TARGETS['classic']}x |"]
        if classic.get("twisted"):
            tw = median(classic["twisted"])
            lines.append(f"| the same {n} exchanges with a minimal Twisted server (answers at once) | "
                         f"{tw:.2f} s | + engine alone = {tw + eng:.2f} s | {(tw + eng) / ref:.2f}x the "
                         f"reference | |")
    if agents:
        bare, step = median(agents["bare"]), median(agents["step"])
        eng = median(agents["engine"])
        lines += [
            f"| bare bridge call (constant callee) | {MS * bare:.2f} ms | | 1.00 | |",
            f"| demo adaptive step through OCSClient (optset + measure + newdat) | {MS * step:.2f} ms | "
            f"3 bare calls + engine {MS * (3 * bare + eng):.2f} ms | **{step / bare:.2f}** bare calls | "
            f"<= {TARGETS['ocsclient_bare_calls']} |",
            f"| engine alone (optimal_setting + update, the demo's run) | {MS * eng:.2f} ms | | | |",
            f"| agent-to-agent adaptive_scan Process, per step | {agents['scan_ms']:.2f} ms | "
            f"engine {MS * eng:.2f} ms | {agents['scan_ms'] / (MS * eng):.1f}x the engine | "
            f"<= {TARGETS['scan_ms']} ms |",
            f"| instrument agent measure Task through OCSClient | {MS * median(agents['measure']):.2f} ms | "
            f"bare TCP exchange with the instrument server {MS * median(agents['tcp']):.3f} ms | "
            f"{median(agents['measure']) / bare:.2f} bare bridge calls | |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="repetitions of the reference demo client")
    p.add_argument("--steps", type=int, default=100, help="adaptive steps through OCSClient")
    p.add_argument("--scan-steps", type=int, default=200, help="steps of the adaptive_scan Process")
    p.add_argument("--calls", type=int, default=300, help="interleaved iterations of the Task-call case")
    p.add_argument("--loops", default="calls,classic,agents")
    p.add_argument("--inline-budget-ms", default=None, help="the OBE agents' --inline-budget-ms")
    args = p.parse_args(argv)
    if args.inline_budget_ms is not None:
        OBE_ARGS[:] = ["--inline-budget-ms", args.inline_budget_ms]
    loops = args.loops.split(",")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with running_router(tmp / "router") as router:
            calls = loop_task_call(router, tmp, args.calls) if "calls" in loops else None
            agents = loop_agents(router, tmp, args.steps, args.scan_steps) if "agents" in loops else None
            classic = loop_classic(router, tmp, args.runs) if "classic" in loops else None
    load = os.getloadavg()
    print(f"closed loops, {os.cpu_count()} cores, load average {load[0]:.1f} at the end\n")
    print(report(classic, agents, calls))
    for name, loop in (("classic", classic), ("OCSClient step", agents)):
        if loop and "inline" in loop:  # the OBE agent's measured engine costs (its ready Task)
            print(f"\nOBE agent after the {name} loop, inline budget: {loop['inline']}")


if __name__ == "__main__":
    main()
