"""Chaos and fuzz: hostile input on every surface of a running site, router kills and NAT-style cuts.

One real router on a free loopback port and, as real processes, a FakeDataAgent (connected through a
TCP proxy that cuts it NAT-style), the OBE agent (with its classic TCP port), a simulated
instrument server with its InstrumentAgent, and a RigAgent (with its UDP port). While they run:

* randomized WAMP calls over the HTTP bridge and over raw WebSocket connections (JSON, CBOR,
  MsgPack): every type, sizes up to ~1 MB, nesting up to 100,000, unicode (lone surrogates
  included), NaN, wrong arities, unknown procedures and topics, garbage frames;
* malformed OBE frames, malformed instrument lines, malformed (and NaN-bearing) rig datagrams;
* slow readers on the OBE TCP port and the instrument server (requests sent, replies never read);
* every cycle (``--cycle-seconds``, 20 s by default) the router is killed (SIGKILL) and started
  again, and half a cycle later the FakeDataAgent's connection is cut NAT-style (its side reset,
  the router's side left open and silent) for 2 s.

Nothing hostile may change anything: it prints router crashes (deaths we did not cause), unplanned
agent disconnects (a "lost the router" outside the planned kills and cuts), agent deaths, state
changes (every op's session id and status, the OBE posterior, the instrument configuration), feed
gaps and duplicates (the FakeDataAgent's ``false_temperatures``), the time from each router restart
to every agent being callable, and each process's RSS per cycle. Target: 0, 0, 0, 0, no gaps, RSS
flat across cycles.

Bounded: ``--cycles`` cycles (default 6: about two and a half minutes), loopback only, every
count printed. Not part of ``make test``.

Usage: PYTHONPATH=. python bench/chaos.py [--cycles N] [--cycle-seconds S] [--seed N] [--markdown]
"""
from __future__ import annotations

import argparse
import calendar
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the raw clients and the proxy of the test suite

import cbor2  # noqa: E402  (autobahn's, installed with it)
import msgpack  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from ocs_core.testing import AgentProcess, RouterFixture, free_port, project_env  # noqa: E402
from raw_wamp_client import RawWampClient, deep_cbor, deep_json, deep_msgpack  # noqa: E402

ROOT_URI = "observatory"
FAKER, OBE, INST, RIG = "chaos-faker", "chaos-obe", "chaos-inst", "chaos-rig"
AGENTS = (FAKER, OBE, INST, RIG)
GHOST = "chaos-ghost"  # a rig the RigAgent listens to: the fuzzer publishes its "events"
RUN = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 100},
       "priors": {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
                  "b": {"normal": [50000.0, 1000.0]}},
       "n_particles": 20000, "noise_std": 100.0, "seed": 5}
# ops a fuzzed "start" may name: each declares its params, so a stray key is always refused
DECLARED = {FAKER: ["delay_task", "set_heartbeat", "acq"],
            OBE: ["newdat", "newrun", "goodset", "getmean", "getwgt", "measurements", "run_info"],
            INST: ["command", "set", "set_noise", "set_delay", "measure"],
            RIG: ["start", "stop", "status", "info", "init"]}


def _finite(text: str) -> bool:
    try:
        return abs(float(text)) < float("inf")
    except ValueError:
        return False


# -- random values ----------------------------------------------------------------------------
def rand_text(rng: random.Random, n: int | None = None) -> str:
    n = rng.choice([0, 1, 5, 20, 200]) if n is None else n
    pools = ["abc", "é€𝄞中文", "\u202e\u200b\ufeff", "\t\n\r\\\"'", "\x00\x01\x7f", "\ud800\udfff"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(n))


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(13 if depth < 4 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -2**63, 2**64 + 5, 10**30])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e-320, float("nan"), float("inf"), -float("inf"), 3.0])
    if kind in (4, 5):
        return rand_text(rng)
    if kind == 6:
        return "x" * rng.choice([1000, 50_000, 300_000])
    if kind == 7:
        return rng.choice(["start", "status", "stop", "abort", "wait", "get_api", "get_tasks", ""])
    if kind == 8:
        return [rng.random() for _ in range(rng.choice([0, 3, 1000]))]
    if kind in (9, 10):
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rand_text(rng, rng.randint(0, 8)): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def hostile_call(rng: random.Random) -> tuple[str, list, dict]:
    """A procedure and arguments no agent may act on (nothing valid that changes state)."""
    agent = rng.choice(AGENTS)
    r = rng.random()
    if r < 0.15:  # management queries: read-only, any arguments
        return f"{ROOT_URI}.{agent}", [rng.choice(["get_api", "get_tasks", rand_text(rng)])] + \
            [rand_value(rng) for _ in range(rng.randint(0, 2))], {}
    if r < 0.25:  # unknown procedures, odd URIs
        return rng.choice([f"{ROOT_URI}.{rand_text(rng, 6)}", f"{ROOT_URI}..x", "", "wamp.session.list",
                           f"{ROOT_URI}.{agent}.ops.x"]), [rand_value(rng)], {}
    ops = f"{ROOT_URI}.{agent}.ops"
    if r < 0.5:  # start a declared op with a stray param (refused), or non-dict params (refused)
        params = rng.choice([{f"zz_{rand_text(rng, 3)}": rand_value(rng)}, rand_value(rng), [1, 2], "x" * 1000])
        if isinstance(params, dict) or params in (None, [], {}):
            params = {f"zz_{rng.randrange(10**6)}": rand_value(rng)}
        return ops, ["start", rng.choice(DECLARED[agent]), params], {}
    if r < 0.65:  # status of anything
        return ops, ["status", rng.choice(DECLARED[agent] + [rand_text(rng)])], {}
    if r < 0.75:  # wait with a bad or tiny timeout
        return ops, ["wait", rng.choice(DECLARED[agent]), None, rng.choice(["x", -1, 0.01, [1], {"a": 1}])], {}
    if r < 0.85:  # stop/abort what does not exist, unknown actions, wrong types
        return ops, [rng.choice(["stop", "abort", rand_text(rng), 7, None, ["start"]]),
                     rng.choice([f"zz{rng.randrange(1000)}", 5, None, {"a": 1}])], {}
    if r < 0.95:  # keyword arguments ocs never sends
        return ops, ["status", "x"], {rand_text(rng, 4) or "k": rand_value(rng)}
    return ops, [rand_value(rng) for _ in range(rng.randint(0, 6))], {}


# -- a site that runs for the whole chaos -------------------------------------------------------
class Site:
    def __init__(self, directory: Path, seed: int) -> None:
        self.dir = directory
        self.rng = random.Random(seed)
        self.inst_port, self.obe_port, self.rig_port = free_port(), free_port(), free_port()
        run_file = directory / "run.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        run_file.write_text(yaml.safe_dump(RUN))
        instances = [
            {"agent-class": "FakeDataAgent", "instance-id": FAKER,
             "arguments": ["--sample-rate", "10", "--buffer-time", "0"]},
            {"agent-class": "OBEAgent", "instance-id": OBE,
             "arguments": ["--db", str(directory / "obe.sqlite3"), "--tcp-port", str(self.obe_port),
                           "--run-config", str(run_file)]},
            {"agent-class": "InstrumentAgent", "instance-id": INST,
             "arguments": ["--port", str(self.inst_port), "--max-backoff", "0.5"]},
            {"agent-class": "RigAgent", "instance-id": RIG,
             "arguments": ["--udp-port", str(self.rig_port), "--listen", GHOST]},
        ]
        self.rt = RouterFixture(directory / "router", instances=instances)
        self.port = self.rt.port
        self.proc_server: subprocess.Popen | None = None
        self.agents: dict[str, AgentProcess] = {}
        self.proxy_port: int | None = None

    def start(self, reactor_thread: "ReactorThread") -> None:
        self.proc_server = subprocess.Popen(
            [sys.executable, "-m", "agents.instrument.simulated", "--port", str(self.inst_port), "--seed", "7",
             "--log-level", "warn"], stdout=subprocess.PIPE, stderr=open(self.dir / "instrument.out", "ab"),
            cwd=ROOT, env=project_env())
        self.proc_server.stdout.readline()  # its ready line
        self.rt.start()
        self.proxy_port = reactor_thread.start_proxy(self.port)
        faker_site = self.dir / "faker-site.yaml"
        faker_site.write_text(self.rt.site_file.read_text().replace(
            f"ws://127.0.0.1:{self.port}/ws", f"ws://127.0.0.1:{self.proxy_port}/ws"))
        for name in AGENTS:
            site = faker_site if name == FAKER else self.rt.site_file
            self.agents[name] = AgentProcess(name, site, log_path=self.dir / f"{name}.out")
        for agent in self.agents.values():
            agent.wait_registered(60)
        self.call(FAKER, "start", "acq", {})
        assert obe_tcp(self.obe_port, {"command": "newrun"}) == "OK"

    def call(self, agent: str, *args: Any, timeout: float = 10.0) -> Any:
        from ocs_core.testing import http_call
        reply = http_call(self.rt.http_url, f"{ROOT_URI}.{agent}.ops", *args, timeout=timeout)
        return reply.get("args", [None])[0] if "error" not in reply else reply

    def management(self, agent: str, q: str) -> Any:
        """A read-only management query; retried (a call may land on a session the router
        still holds after a NAT-style cut, which never answers)."""
        from ocs_core.testing import http_call
        for attempt in range(20):
            try:
                reply = http_call(self.rt.http_url, f"{ROOT_URI}.{agent}", q, timeout=3)
            except OSError:
                continue
            if "error" not in reply:
                return reply["args"][0]
            time.sleep(0.5)
        raise RuntimeError(f"{agent} does not answer {q}")

    def state(self) -> dict[str, Any]:
        """What no hostile input may change."""
        out: dict[str, Any] = {}
        for name in AGENTS:
            ops = []
            for q in ("get_tasks", "get_processes"):
                for op_name, session, _info in self.management(name, q):
                    ops.append((op_name, session.get("session_id"), session.get("status")))
            out[name] = sorted(ops, key=repr)
        out["obe posterior"] = [obe_tcp(self.obe_port, {"command": c}) for c in ("getmean", "getstd", "getcov")]
        out["instrument config"] = line_exchange(self.inst_port, b"get_config\n")
        return out

    def pids(self) -> dict[str, int]:
        pids = {name: a.pid for name, a in self.agents.items() if a.pid}
        if self.proc_server is not None:
            pids["instrument server"] = self.proc_server.pid
        return pids

    def stop(self) -> None:
        for agent in self.agents.values():
            agent.terminate()
        if self.proc_server is not None and self.proc_server.poll() is None:
            self.proc_server.terminate()
            self.proc_server.wait(10)
        self.rt.stop()


class ReactorThread:
    """A Twisted reactor in a thread: the NAT-cutting proxy and the feed subscriber live there."""

    def __init__(self) -> None:
        from twisted.internet import reactor
        self.reactor = reactor
        self.thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        self.thread.start()
        self.proxy = None
        self.subscriber = None

    def call(self, f: Callable, *args: Any) -> Any:
        from twisted.internet.threads import blockingCallFromThread
        return blockingCallFromThread(self.reactor, f, *args)

    def start_proxy(self, router_port: int) -> int:
        from wamp_helpers import CuttableProxy

        def make() -> int:
            self.proxy = CuttableProxy(router_port)
            return self.proxy.listen()
        return self.call(make)

    def start_subscriber(self, ws_url: str, topic: str) -> None:
        from wamp_helpers import Subscriber

        def make():
            self.subscriber = Subscriber(ws_url, topic)
            return self.subscriber.start()
        self.call(make)

    def nat_cut(self) -> None:
        self.call(self.proxy.nat_cut)

    def restore(self) -> None:
        self.call(self.proxy.restore)

    def feed_seqs(self) -> list[int]:
        return self.call(lambda: [e[1]["seq"] for e in self.subscriber.events])

    def stop(self) -> None:
        try:
            if self.proxy is not None:
                self.call(self.proxy.release_silenced)
            if self.subscriber is not None:
                self.call(self.subscriber.stop)
        finally:
            self.reactor.callFromThread(self.reactor.stop)
            self.thread.join(5)


# -- raw peers (standard library) ------------------------------------------------------------------
def frame(body: bytes) -> bytes:
    return b"%010d" % len(body) + body


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def obe_tcp(port: int, request: Any) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame(json.dumps(request).encode()))
        return json.loads(recv_exact(sock, int(recv_exact(sock, 10))))


def line_exchange(port: int, line: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- the fuzzers ---------------------------------------------------------------------------------
class Fuzzer(threading.Thread):
    name_ = "fuzzer"

    def __init__(self, site: Site, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.site, self.stop_event, self.rng = site, stop, random.Random(seed)
        self.sent = 0
        self.counts: collections.Counter = collections.Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.step()
            except (OSError, ConnectionError, requests.RequestException) as exc:
                self.counts[f"connection: {type(exc).__name__}"] += 1
                time.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer, not of the site
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                time.sleep(0.05)

    def step(self) -> None:
        raise NotImplementedError


class HttpFuzzer(Fuzzer):
    name_ = "WAMP calls over the HTTP bridge"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.http = requests.Session()
        self.http.trust_env = False

    def body(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.75:
            procedure, args, kwargs = hostile_call(rng)
            return json.dumps({"procedure": procedure, "args": args, "kwargs": kwargs}).encode()
        if r < 0.85:  # deep nesting, up to 100,000
            depth = rng.choice([50, 99, 101, 300, 500, 990, 2000, 8000, 100_000])
            agent = rng.choice(AGENTS)
            return ('{"procedure": "%s.%s.ops", "args": ["status", "x", %s]}'
                    % (ROOT_URI, agent, deep_json(depth))).encode()
        if r < 0.92:  # not JSON, not UTF-8, wrong shapes
            return rng.choice([b"", b"{", b"\xff\xfe", b"[1, 2]", b'{"procedure": 5}', b"null", b'"x"',
                               b'{"procedure": "observatory.chaos-faker.ops", "args": "status"}',
                               bytes(rng.getrandbits(8) for _ in range(50))])
        return ('{"procedure": "%s.%s.ops", "args": ["start", "%s", {"zz": NaN, "x": Infinity}]}'
                % (ROOT_URI, rng.choice(AGENTS), rng.choice(DECLARED[FAKER]))).encode()

    def step(self) -> None:
        body = self.body()
        reply = self.http.post(self.site.rt.http_url, data=body, timeout=15,
                               headers={"Content-Type": "application/json"})
        self.sent += 1
        try:
            answer = reply.json()
            self.counts["error reply" if isinstance(answer, dict) and "error" in answer else "result"] += 1
        except ValueError:
            self.counts["not JSON"] += 1
        if len(reply.content) > 20_000:
            self.counts["reply > 20 kB"] += 1


class WsFuzzer(Fuzzer):
    name_ = "WAMP messages over WebSocket"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.client: RawWampClient | None = None
        self.req = 1

    def encode(self, serializer: str, msg: list) -> bytes | str:
        if serializer == "json":
            return json.dumps(msg)
        if serializer == "cbor":
            return cbor2.dumps(msg)
        return msgpack.packb(msg, use_bin_type=True, strict_types=False)

    def message(self, serializer: str) -> bytes | str:
        rng = self.rng
        self.req += 1
        r = rng.random()
        if r < 0.6:
            procedure, args, kwargs = hostile_call(rng)
            msg = [48, self.req, {}, procedure, args, kwargs]
        elif r < 0.7:  # deep nesting, up to 100,000
            depth = rng.choice([90, 99, 150, 300, 399, 500, 1000, 5000, 100_000])
            proc = f"{ROOT_URI}.{rng.choice(AGENTS)}.ops"
            if serializer == "json":
                return '[48, %d, {}, "%s", ["status", "x", %s]]' % (self.req, proc, deep_json(depth))
            head = [48, self.req, {}, proc]
            if serializer == "cbor":
                return b"\x85" + cbor2.dumps(head)[1:] + b"\x83" + cbor2.dumps("status") + cbor2.dumps("x") + \
                    deep_cbor(depth)
            return b"\x95" + msgpack.packb(head)[1:] + b"\x93" + msgpack.packb("status") + msgpack.packb("x") + \
                deep_msgpack(depth)
        elif r < 0.8:  # events on a topic the RigAgent listens to, and on others
            topic = rng.choice([f"{ROOT_URI}.{GHOST}.feeds.rig_events", f"{ROOT_URI}.{FAKER}.feeds.x",
                                f"{ROOT_URI}.{rand_text(rng, 5)}"])
            payload = rng.choice([rand_value(rng), {"value": rng.choice([2, 64, 0, "x"]),
                                                    "args": [rand_value(rng)], "rig": GHOST}])
            msg = [16, self.req, {"acknowledge": rng.random() < 0.5}, topic, [payload, {"agent_address": GHOST}]]
        elif r < 0.9:  # wrong WAMP: unknown types, wrong arity, garbage
            msg = rng.choice([[999], [48], [48, "x"], [1, "test_realm", {}], [70, self.req, {}],
                              [32, self.req, {}, f"{ROOT_URI}.zz"], [rand_value(rng)]])
        elif r < 0.95:  # huge strings
            msg = [48, self.req, {}, f"{ROOT_URI}.{rng.choice(AGENTS)}.ops", ["status", "x" * rng.choice(
                [100_000, 1_000_000, 2_000_000])]]
        else:
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 64)))
        try:
            return self.encode(serializer, msg)
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
            return json.dumps(msg, default=str)

    def step(self) -> None:
        if self.client is None:
            serializer = self.rng.choice(["json", "cbor", "msgpack"])
            self.client = RawWampClient("127.0.0.1", self.site.port, "ws", serializer, timeout=5)
            self.client.join()
            self.counts[f"joined ({serializer})"] += 1
        client = self.client
        try:
            client.sock.settimeout(10)
            client.send(self.message(client.serializer))
            self.sent += 1
            time.sleep(0.002)
            if not self._drain(client):  # replies are not read: only whether the router hung up
                self.counts["closed by the router (protocol error, or no pong)"] += 1
                client.close()
                self.client = None
        except (OSError, ConnectionError):
            self.counts["closed by the router (protocol error, or no pong)"] += 1
            client.close()
            self.client = None

    @staticmethod
    def _drain(client: RawWampClient) -> bool:
        """Read and drop whatever arrived; False once the router has closed the connection."""
        client.sock.setblocking(False)
        try:
            while True:
                data = client.sock.recv(1 << 20)
                if not data:
                    return False
        except BlockingIOError:
            return True
        except OSError:
            return False


class ObeFrameFuzzer(Fuzzer):
    name_ = "malformed OBE frames"

    def bad_frame(self) -> tuple[bytes, bool]:
        """(bytes, fatal): a frame the OBE agent must refuse."""
        rng = self.rng
        r = rng.random()
        if r < 0.08:  # a bad prefix or an oversized declared length: the connection ends
            prefix = bytearray(b"%010d" % rng.randint(0, 99))
            prefix[rng.randrange(10)] = rng.choice(b"abc -+.x\x00\xff{")
            oversized = b"%010d" % rng.randint(2**20 + 1, 10**10 - 1)
            return rng.choice([bytes(prefix) + b'{"command": "ready"}', oversized]), True
        bodies = [
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
            json.dumps({"command": "newdat", "x": [2.0], "y": 1.0, "s": 1.0})[:rng.randint(0, 40)].encode(),
            ('{"command": "newdat", "x": [%s], "y": 1.0, "s": 1.0}' % rng.choice(
                ["NaN", "Infinity", "-Infinity", "1e999"])).encode(),
            deep_json(rng.choice([100, 1000, 5000, 100_000])).encode(),
            json.dumps(rng.choice([
                "ready", 42, None, [], {}, {"cmd": "ready"}, {"command": None}, {"command": ["ready"]},
                {"command": "xx" + rand_text(rng, 5)}, {"command": "newdat"},
                {"command": "newdat", "x": [2.0], "y": 1.0},
                {"command": "newdat", "x": "1", "y": 1.0, "s": 1.0},
                {"command": "newdat", "x": [2.0], "y": 1.0, "s": -1.0},
                {"command": "newdat", "x": [2.0], "y": 1.0, "s": 0},
                {"command": "newdat", "x": [2.0, 3.0], "y": 1.0, "s": 1.0},
                {"command": "newdat", "x": [2.0], "y": "x" * 100_000, "s": 1.0},
                {"command": "newdat", "x": [True], "y": 1, "s": 1},
                {"command": "goodset", "pickiness": "x"}, {"command": "goodset", "pickiness": -3},
                {"command": "newrun", "bad": True}, {"command": "newrun", "n_particles": -1},
                {"command": "newrun", "model": "x" * 10_000},
                {"command": "newrun", "priors": rng.choice(["x", 5, [1, 2], {"x0": "bad"}])},
                {"command": rand_value(rng)},
            ])).encode(),
        ]
        return frame(rng.choice(bodies)), False

    def step(self) -> None:
        with socket.create_connection(("127.0.0.1", self.site.obe_port), timeout=20) as sock:
            for _ in range(self.rng.randint(1, 50)):
                data, fatal = self.bad_frame()
                sock.sendall(data)
                self.sent += 1
                reply = json.loads(recv_exact(sock, int(recv_exact(sock, 10))))
                self.counts["error reply" if isinstance(reply, dict) and "error" in reply else "NOT AN ERROR"] += 1
                if fatal:
                    break
        time.sleep(0.05)


class InstrumentLineFuzzer(Fuzzer):
    name_ = "malformed instrument lines"

    def bad_line(self) -> bytes:
        rng = self.rng
        cmd = rng.choice(["set", "set_noise", "set_delay", "measure", "help", "zz" + rand_text(rng, 4),
                          "Set", "", " ", "get_config\tx", "ping\textra\targs"])
        arg = rng.choice(["abc", "nan", "inf", "-inf", "1e999", "-1", "", "9" * 400, "\x00", "1\t2\t3",
                          rand_text(rng, 30), "x" * 3000])
        if cmd in ("set", "set_noise", "set_delay", "measure") and _finite(arg):
            arg = "abc"  # a number would be a valid command: it would change the configuration
        line = (cmd + "\t" + arg).encode("utf-8", "surrogatepass")
        r = rng.random()
        if r < 0.1:
            line = b"\xff\xfe" + line
        elif r < 0.15:
            line = b"x" * 5000
        elif r < 0.2:
            line = b"\t\t"
        return line + rng.choice([b"\n", b"\r\n"])

    def step(self) -> None:
        with socket.create_connection(("127.0.0.1", self.site.inst_port), timeout=20) as sock:
            lines = [self.bad_line() for _ in range(self.rng.randint(1, 100))]
            sock.sendall(b"".join(lines))
            data = b""
            while data.count(b"\n") < len(lines):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            replies = data.split(b"\n")[:-1]
            self.sent += len(replies)  # one per line the server read (a line may hold an LF of its own)
            self.counts["error reply"] += sum(r.startswith(b"0\t") for r in replies)
            self.counts["ok reply (help, get_config, ping)"] += sum(r.startswith(b"1\t") for r in replies)
        time.sleep(0.2)  # ~250 lines/s: enough, and CPU left for the rest


class RigDatagramFuzzer(Fuzzer):
    name_ = "rig datagrams"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    def datagram(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.02:  # valid, with non-finite numbers: stored as null
            return b'[64, 30, {"t": NaN, "v": [Infinity, -Infinity, 1e999]}]'
        return rng.choice([
            b"not json", b"\xff\xfe", b"{}", b"[]", b'["EXPSTART"]', b"[256, null]", b"[3, null]", b"[1]",
            b'[2, "2022-01-01_1_m", null, "extra"]', b"[32, 15]", b'[2, "yesterday_1_mouse", null]',
            b"[" * rng.choice([100, 1000, 20000]), b"[0, 5]", b"[32, NaN]", b'[2, NaN, null]',
            json.dumps([rng.choice([1, 2, 4, 32, 64]), rand_value(rng), rand_value(rng), 5]).encode()[:60000],
            bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 100))),
        ])

    def step(self) -> None:
        for _ in range(50):
            try:
                self.sock.sendto(self.datagram(), ("127.0.0.1", self.site.rig_port))
                self.sent += 1
            except BlockingIOError:
                self.counts["send buffer full"] += 1
        try:
            while self.sock.recv(65535):
                self.counts["echoes (valid datagrams)"] += 1
        except (BlockingIOError, ConnectionRefusedError):
            pass
        time.sleep(0.2)  # ~250 datagrams/s


class SlowReaders(Fuzzer):
    name_ = "slow readers (no reply read)"

    def step(self) -> None:
        body = json.dumps({"command": "getpar"}).encode()
        target = self.rng.choice([(self.site.obe_port, frame(body) * 200),
                                  (self.site.inst_port, b"help\n" * 50_000)])
        sock = socket.create_connection(("127.0.0.1", target[0]), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        sent, deadline = 0, time.monotonic() + 2.0
        try:
            while time.monotonic() < deadline and not self.stop_event.is_set():
                if sent < len(target[1]):
                    try:
                        sent += sock.send(target[1][sent:sent + 65536])
                        continue
                    except BlockingIOError:
                        pass
                time.sleep(0.02)
        finally:
            sock.close()
        self.sent += 1
        time.sleep(1.0)


# -- the run ------------------------------------------------------------------------------------
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)? ")


def log_events(path: Path, text: str) -> list[float]:
    """The times (epoch seconds) of log lines containing ``text``."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if text in line:
            m = _STAMP.match(line)
            if m:
                t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)
                out.append(t)
    return out


def kill_router(site: Site) -> None:
    info = site.rt.router._running_info()  # noqa: SLF001 - the bench kills what it started
    if info is not None:
        try:
            os.killpg(int(info["pgid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    site.rt.stop(timeout=2)


def callable_lag(site: Site, names: list[str], limit: float = 30.0) -> dict[str, float]:
    from ocs_core.testing import http_call
    t0, lags, pending = time.monotonic(), {}, set(names)
    while pending and time.monotonic() - t0 < limit:
        for name in list(pending):
            try:
                if "error" not in http_call(site.rt.http_url, f"{ROOT_URI}.{name}", "get_agent_class", timeout=2):
                    lags[name] = time.monotonic() - t0
                    pending.discard(name)
            except OSError:
                pass
        time.sleep(0.01)
    for name in pending:
        lags[name] = float("inf")
    return lags


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the site, run the chaos, and stop everything (whatever happens)."""
    work = Path(tempfile.mkdtemp(prefix="ocs-chaos-"))
    site = Site(work, args.seed)
    reactor_thread = ReactorThread()
    try:
        return _chaos(args, work, site, reactor_thread)
    finally:
        try:
            reactor_thread.stop()
        except Exception as exc:  # noqa: BLE001 - still stop the processes
            print(f"stopping the proxy and subscriber failed: {exc}", flush=True)
        site.stop()


def _chaos(args: argparse.Namespace, work: Path, site: Site, reactor_thread: ReactorThread) -> dict[str, Any]:
    print(f"site in {work}; starting the router and {len(AGENTS)} agents ...", flush=True)
    site.start(reactor_thread)
    reactor_thread.start_subscriber(site.rt.ws_url, f"{ROOT_URI}.{FAKER}.feeds.false_temperatures")
    time.sleep(1.0)
    before = site.state()
    stop = threading.Event()
    fuzzers: list[Fuzzer] = [HttpFuzzer(site, stop, args.seed + 1), HttpFuzzer(site, stop, args.seed + 2),
                             HttpFuzzer(site, stop, args.seed + 9),
                             WsFuzzer(site, stop, args.seed + 3), WsFuzzer(site, stop, args.seed + 4),
                             ObeFrameFuzzer(site, stop, args.seed + 5),
                             InstrumentLineFuzzer(site, stop, args.seed + 6),
                             RigDatagramFuzzer(site, stop, args.seed + 7), SlowReaders(site, stop, args.seed + 8)]
    planned: list[tuple[float, float, set[str]]] = []  # (from, to, agents it may disconnect)
    crashes, lags, rss, deaths = 0, [], [], {}
    started = time.time()
    for f in fuzzers:
        f.start()
    print(f"{len(fuzzers)} fuzzers running; {args.cycles} cycles of {args.cycle_seconds:g} s", flush=True)
    try:
        for cycle in range(1, args.cycles + 1):
            t_cycle = time.monotonic()
            # the planned router kill
            t_kill = time.time()
            kill_router(site)
            time.sleep(0.5)
            site.rt.start(timeout=60)
            lag = callable_lag(site, list(AGENTS))
            planned.append((t_kill - 0.5, time.time() + 3.0, set(AGENTS)))
            lags.append(lag)
            # half a cycle later, the NAT-style cut of the FakeDataAgent's connection
            while time.monotonic() - t_cycle < args.cycle_seconds / 2:
                crashes += watch_router(site, 0.2)
            t_cut = time.time()
            reactor_thread.nat_cut()
            time.sleep(2.0)
            reactor_thread.restore()
            planned.append((t_cut - 0.5, time.time() + 3.0, {FAKER}))
            while time.monotonic() - t_cycle < args.cycle_seconds:
                crashes += watch_router(site, 0.2)
            rss.append({name: rss_mb(pid) for name, pid in site.pids().items()})
            for name, agent in site.agents.items():
                if not agent.is_running() and name not in deaths:
                    deaths[name] = agent.returncode
            sent = {f.name_: 0 for f in fuzzers}
            for f in fuzzers:
                sent[f.name_] += f.sent
            print(f"cycle {cycle}: callable {max(lag.values()):.2f} s after ready (max over agents); "
                  f"RSS " + ", ".join(f"{k} {v:.0f}" for k, v in rss[-1].items() if v) + " MB; sent "
                  + ", ".join(f"{v} {k.split(' ')[0]}" for k, v in sent.items()), flush=True)
    finally:
        stop.set()
        for f in fuzzers:
            f.join(30)
    # settle: the faker's queued events are replayed after its (possibly slow, NAT) rejoin
    callable_lag(site, list(AGENTS), limit=30)
    time.sleep(3.0)
    after = site.state()
    seqs = reactor_thread.feed_seqs()
    elapsed = time.time() - started
    unplanned: dict[str, list[float]] = {}
    for name in AGENTS:
        for t in log_events(site.agents[name].log_path, "lost the router"):
            if not any(a <= t <= b and name in who for a, b, who in planned):
                unplanned.setdefault(name, []).append(t)
    knocked = {name: len(log_events(site.agents[name].log_path, "failing WebSocket connection"))
               for name in AGENTS}
    refused = {name: len(log_events(site.agents[name].log_path, "could not decode")) for name in AGENTS}
    counter = collections.Counter(seqs)
    gaps = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs)) if seqs else []
    dups = sum(c - 1 for c in counter.values() if c > 1)
    changes = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    result = {
        "work": str(work), "seconds": elapsed, "cycles": args.cycles, "crashes": crashes,
        "unplanned": unplanned, "knocked": knocked, "refused": refused, "deaths": deaths,
        "changes": changes, "feed": {"events": len(seqs), "gaps": len(gaps), "duplicates": dups,
                                     "outages": len(planned)},
        "lags": lags, "rss": rss,
        "fuzzers": [(f.name_, f.sent, dict(f.counts), f.errors[:5]) for f in fuzzers],
    }
    for name, agent in site.agents.items():
        if not agent.is_running() and name not in deaths:
            deaths[name] = agent.returncode
    return result


def watch_router(site: Site, seconds: float) -> int:
    """Sleep ``seconds``; if the router died meanwhile (we did not kill it), restart it and count it."""
    time.sleep(seconds)
    if site.rt.is_running():
        return 0
    print("ROUTER CRASH: crossbar died unasked; log tail: " + site.rt.router.log_tail(5), flush=True)
    site.rt.stop(timeout=2)
    site.rt.start(timeout=60)
    return 1


def report(result: dict[str, Any], markdown: bool) -> None:
    totals = collections.Counter()
    for name, sent, _counts, _errors in result["fuzzers"]:
        totals[name] += sent
    lag_max = max(max(v for v in lag.values()) for lag in result["lags"])
    lag_by_agent = {a: max(lag[a] for lag in result["lags"]) for a in AGENTS}
    rss = result["rss"]
    print()
    print(f"chaos: {result['cycles']} cycles in {result['seconds']:.0f} s (site in {result['work']})")
    for name, n in totals.items():
        print(f"  {n:>8}  {name}")
    print(f"router crashes: {result['crashes']}")
    unplanned = sum(len(v) for v in result["unplanned"].values())
    print(f"unplanned agent disconnects: {unplanned} {result['unplanned'] or ''}")
    print(f"agents knocked off by a message (autobahn protocol errors): {sum(result['knocked'].values())}")
    print(f"undecodable calls answered with an error (agent logs): {result['refused']}")
    print(f"agent deaths: {len(result['deaths'])} {result['deaths'] or ''}")
    print(f"state changes: {len(result['changes'])} {list(result['changes']) or ''}")
    feed = result["feed"]
    print(f"feed: {feed['events']} events, {feed['gaps']} gaps, {feed['duplicates']} duplicates "
          f"({feed['outages']} planned outages)")
    print(f"callable after the router is ready: max {lag_max:.2f} s; per agent "
          + ", ".join(f"{a} {v:.2f}" for a, v in lag_by_agent.items()))
    print("RSS per cycle (MB): " + "; ".join(
        f"{name} " + " ".join(f"{r.get(name) or 0:.0f}" for r in rss) for name in rss[0]))
    for name, sent, counts, errors in result["fuzzers"]:
        print(f"  {name}: {sent} sent; {dict(counts)}" + (f"; fuzzer errors {errors}" if errors else ""))
    if markdown:
        print()
        print("| what | count |")
        print("| --- | --- |")
        for name, n in totals.items():
            print(f"| {name} | {n:,} |")
        print(f"| router crashes | {result['crashes']} |")
        print(f"| unplanned agent disconnects | {sum(len(v) for v in result['unplanned'].values())} |")
        print(f"| agent deaths | {len(result['deaths'])} |")
        print(f"| state changes | {len(result['changes'])} |")
        print(f"| feed gaps / duplicates | {feed['gaps']} / {feed['duplicates']} ({feed['events']:,} events, "
              f"{feed['outages']} planned outages) |")
        print(f"| callable after router ready (max) | {lag_max:.2f} s |")
        first, last = rss[0], rss[-1]
        for name in first:
            if first.get(name) and last.get(name):
                print(f"| RSS {name}, cycle 1 -> {len(rss)} | {first[name]:.0f} -> {last[name]:.0f} MB |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=6)
    p.add_argument("--cycle-seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if not 1 <= args.cycles <= 100 or not 8 <= args.cycle_seconds <= 120:
        p.error("--cycles in 1..100 and --cycle-seconds in 8..120 (the run is bounded)")
    result = run(args)
    report(result, args.markdown)
    bad = (result["crashes"] or sum(len(v) for v in result["unplanned"].values()) or result["deaths"]
           or result["changes"] or result["feed"]["gaps"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
