"""Back-pressure: a client that sends requests but never reads the replies keeps server memory bounded.

Each server runs as a real process; each cycle a client pipelines many requests whose replies are
large, reads nothing for a while, then closes. Before the fix every reply was buffered (OBE TCP:
+110 MB per 200 ``getpar``; instrument line server: +82 MB per 100,000 ``help``). Now a connection
with more than a bounded amount of unsent replies is neither served nor read until they are sent.
Checked as RSS: during any cycle within a bound of the start, and after 10 cycles within a few MB
of after 1 (glibc rarely returns freed memory, so growth across cycles is the leak signal).
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

import raw_obe_client as raw
from ocs_core.testing import AgentProcess, free_port, project_env, wait_listening, write_site_config

ROOT = Path(__file__).resolve().parent.parent
CYCLES = 10


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def slow_client(port: int, payload: bytes, seconds: float, before_close=lambda: None) -> int:
    """Send as much of ``payload`` as the server reads within ``seconds``, read nothing, close.

    ``before_close()`` runs while the connection is still open (to sample the server's memory).
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sent < len(payload):
                try:
                    sent += sock.send(payload[sent:sent + 65536])
                    continue
                except BlockingIOError:
                    pass
            time.sleep(0.02)
        before_close()
    finally:
        sock.close()
    return sent


def cycles(pid: int, port: int, payload: bytes, seconds: float) -> tuple[float, list[float], list[float]]:
    time.sleep(0.5)
    start = rss_mb(pid)
    during, after = [], []
    for _ in range(CYCLES):
        slow_client(port, payload, seconds, lambda: during.append(rss_mb(pid)))  # the peak
        time.sleep(0.3)
        after.append(rss_mb(pid))
    return start, during, after


def check(start: float, during: list[float], after: list[float], bound_mb: float) -> None:
    report = f"start {start:.1f} MB, during {[round(x) for x in during]}, after {[round(x) for x in after]}"
    assert max(during) - start < bound_mb, report
    assert after[-1] - after[0] < 5, report


def test_instrument_line_server_memory_stays_bounded_under_slow_readers():
    proc = subprocess.Popen([sys.executable, "-m", "agents.instrument.simulated", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=project_env())
    try:
        line = proc.stdout.readline().decode()
        port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
        payload = b"help\n" * 100_000  # ~1.5 KB of reply each
        start, during, after = cycles(proc.pid, port, payload, seconds=1.0)
        check(start, during, after, bound_mb=15)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # still serving
            sock.sendall(b"ping\n")
            assert sock.recv(100) == b"1\t\n"
    finally:
        proc.terminate()
        proc.wait(10)


def test_obe_tcp_memory_stays_bounded_under_slow_readers(tmp_path):
    run = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
           "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                      "b": {"normal": [50000.0, 1000.0]}},
           "n_particles": 20000, "seed": 3}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    port = free_port()
    site = write_site_config(tmp_path, free_port(), [{  # no router: the TCP port does not need one
        "agent-class": "OBEAgent", "instance-id": "obe-slow",
        "arguments": ["--db", ":memory:", "--tcp-port", str(port), "--run-config", str(tmp_path / "run.yaml")]}])
    with AgentProcess("obe-slow", site, log_path=tmp_path / "obe.out") as agent:
        wait_listening(port, 20, alive=agent)
        assert raw.tcpcmd(port, {"command": "newrun"}) == "OK"
        assert len(raw.tcpcmd(port, {"command": "getpar"})[0]) == 20000
        body = json.dumps({"command": "getpar"}).encode()
        payload = (b"%010d" % len(body) + body) * 200  # ~1 MB of reply each
        start, during, after = cycles(agent.pid, port, payload, seconds=2.0)
        check(start, during, after, bound_mb=10)
        assert agent.is_running()
        assert raw.tcpcmd(port, {"command": "ready"}) == "OK"  # still serving
