"""Interop with the real sm-bluesky 1.4.0: its client against our server, our agent against its server.

sm-bluesky (``pip install "sm-bluesky[server]==1.4.0"``) lives in a venv of its own named by
OCS_CORE_SMBLUESKY_PYTHON; ``make test`` makes it (``.venv-smbluesky``). In CI (CI=true) these
tests fail when it is missing; elsewhere they are skipped with the reason. Its peers:
``peers/smbluesky_server.py`` (a server on its ``AbstractInstrumentServer``) and
``peers/smbluesky_client.py`` (its ``InstrumentClient``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads

from ci import unavailable
from agents.instrument.commands import command
from agents.instrument.simulated import SimulatedInstrument
from clients.ocs_client import OCSClient
from ocs_core.testing import free_port, wait_listening

PEERS = Path(__file__).parent / "peers"
ENV = "OCS_CORE_SMBLUESKY_PYTHON"
AGENT = "smb-agent"
PATH = "C:\\temp\\new"


@pytest.fixture(scope="module")
def smb_python() -> str:
    python = os.environ.get(ENV)
    problem = None
    if not python:
        problem = f"{ENV} is not set: `make test` makes .venv-smbluesky with sm-bluesky[server]==1.4.0"
    else:
        probe = subprocess.run([python, "-c", "import sm_bluesky.common.servers, sm_bluesky.common.clients"],
                               capture_output=True, text=True, timeout=120)
        if probe.returncode != 0:
            problem = f"{ENV}={python} cannot import sm_bluesky: {probe.stderr.strip()[-300:]}"
    if problem:
        unavailable(problem)
    return python


def its_client(python: str, port: int, calls: list[list], timeout: float = 2.0) -> list[dict]:
    """Run sm-bluesky's InstrumentClient over ``calls``; one result per call."""
    result = subprocess.run([python, str(PEERS / "smbluesky_client.py"), str(port), str(timeout)],
                            input=json.dumps(calls), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# -- its client against our server -----------------------------------------------------------------
class PathInstrument(SimulatedInstrument):
    @command("path", hardware=False)
    def path(self) -> str:
        """A Windows path: sent as it is."""
        return PATH


@pytest_twisted.ensureDeferred
async def test_its_client_against_our_server(smb_python):
    server = PathInstrument(reactor, seed=1)
    await server.connect()
    port = server.listen(0).getHost().port
    calls = [["ping"], ["command_list"], ["help", "measure"], ["measure", 2.5], ["read"], ["set", 2.6],
             ["set_noise", 0.0], ["measure", 2.5], ["get_config"], ["path"], ["disconnect_hardware"],
             ["read"], ["connect_hardware"], ["read"], ["nope"], ["measure", "abc"], ["measure"],
             ["set_delay", 2.5], ["measure", 2.5], ["set_delay", 0], ["help"], ["ping"], ["shutdown"]]
    try:
        results = await threads.deferToThread(its_client, smb_python, port, calls)
    finally:
        await server.stop()
    assert len(results) == len(calls) == 23
    ok = [r.get("ok") for r in results]
    err = [r.get("error", "") for r in results]
    assert ok[0] == "" and ok[1] == "\t".join(sorted(server.commands))
    assert ok[2] == "measure <x:float>: Set x, wait the delay, return one noisy value of the curve there."
    assert float(ok[3]) > 0.5 and float(ok[4]) > 0 and ok[5] == "2.6"
    assert float(ok[7]) == pytest.approx(1.0)  # the noise is off
    assert json.loads(ok[8])["setpoint"] == 2.5
    assert ok[9] == PATH  # byte-for-byte: no escaping on our side
    assert ok[10] == "" and ok[12] == "simulated resonance ready" and float(ok[13]) == pytest.approx(1.0)
    prefix = "ConnectionError: Communication layer failure: Server Error: "
    assert err[11] == prefix + "read: hardware not connected (send connect_hardware)"
    assert err[14] == prefix + "unknown command 'nope'; send command_list for the known ones"
    assert err[15] == prefix + "measure: argument x must be a finite number, got 'abc'"
    assert err[16].startswith(prefix + "measure: takes 1 argument(s), got 0")
    assert ok[17] == "2.5"
    assert err[18] == "ConnectionError: Communication layer failure: timed out"  # its 2 s timeout
    assert ok[19] == "0.0" and any(f.startswith("ping: Reply 1 with no data") for f in ok[20].split("\t"))
    assert ok[21] == "" and ok[22] == "shutting down"


# -- our agent against its server ------------------------------------------------------------------
class ItsServer:
    """The sm-bluesky server peer as a process; its stdout (sm-bluesky's log) goes to a file."""

    def __init__(self, python: str, port: int, log: Path) -> None:
        self.python, self.port, self.log = python, port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([self.python, str(PEERS / "smbluesky_server.py"), str(self.port)],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_listening(self.port, 60.0, alive=self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def bluesky(router, smb_python, tmp_path_factory):
    port = free_port()
    server = ItsServer(smb_python, port, tmp_path_factory.mktemp("smb") / "server.log")
    server.start()
    router.add_instance("InstrumentAgent", AGENT, [
        "--port", port, "--profile", "sm-bluesky", "--timeout", "5", "--max-backoff", "0.5",
        "--poll-command", "read", "--poll-interval", "0.2", "--commands",
        "ping,command_list,connect_hardware,disconnect_hardware,path,set <value:float>,read,counts,fail,"
        "slow <seconds:float>,shutdown"])
    agent = router.agent(AGENT)
    client = None
    try:
        agent.wait_registered(30)
        client = OCSClient(AGENT, site_file=str(router.site_file))
        yield {"server": server, "agent": agent, "client": client, "python": smb_python}
    finally:
        if client is not None:
            client.close()
        agent.terminate()
        server.kill()


def done(reply) -> dict:
    assert reply.status == 0, reply
    session = reply.session
    assert session["success"] is True, session["messages"]
    return session["data"]


def failed(reply) -> str:
    assert reply.status == 0 and reply.session["success"] is False, reply
    return reply.session["messages"][-2][1]


def until(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


def test_every_command_including_the_silent_ones(bluesky):
    c = bluesky["client"]
    data = done(c.ping())
    assert data["value"] is None and data["profile"] == "sm-bluesky"
    names = done(c.command_list())["value"]
    assert {"ping", "command_list", "connect_hardware", "disconnect_hardware", "shutdown", "path"} <= set(names)
    assert done(c.counts())["value"] == [1, 0]  # the server connected its hardware at start-up
    assert done(c.connect_hardware())["value"] is None  # no reply: the ping fence says it finished
    assert done(c.disconnect_hardware())["value"] is None
    assert done(c.counts())["value"] == [2, 1]
    path = done(c.path())
    assert path["value"] == PATH and path["reply"] == PATH  # byte-for-byte
    assert done(c.set(value=2.5))["value"] == 2.5 and done(c.read())["value"] == 2.5
    assert failed(c.fail()) == "Error handling command 'fail': the device refused"
    assert done(c.slow(seconds=0.1))["value"] == "done"
    refused = c.set(value=True)
    assert refused.status != 0 and "a boolean is not a number" in refused.msg
    assert "unknown command" not in bluesky["server"].text()  # no help asked: it has none


def test_its_client_shares_the_server_with_our_polling_agent(bluesky):
    c = bluesky["client"]
    assert c.acq.start().status == 0
    try:
        until(lambda: (c.acq.status().session.get("data") or {}).get("value") is not None, what="a poll")
        calls = [["path"], ["read"], ["set", 1.5], ["read"], ["counts"]] * 4
        results = its_client(bluesky["python"], bluesky["server"].port, calls)
        assert [r.get("error") for r in results] == [None] * len(calls)
        assert results[0]["ok"] == PATH and results[3]["ok"] == "1.5"
        seen = until(lambda: (c.acq.status().session.get("data") or {}).get("value") == 1.5, what="a poll of 1.5")
        assert seen
        assert c.acq.status().session["degraded"] is False
    finally:
        c.acq.stop()
        c.acq.wait(timeout=10)


def test_server_restart_on_the_same_port(bluesky):
    c, server = bluesky["client"], bluesky["server"]
    server.kill()
    message = failed(c.ping())
    assert "not reachable" in message or "cannot connect" in message, message
    server.start()
    until(lambda: c.ping().session["success"], what="the agent reaching the restarted server")
    assert done(c.path())["value"] == PATH


def test_shutdown_succeeds_and_stops_the_server(bluesky):
    c, server = bluesky["client"], bluesky["server"]
    data = done(c.shutdown())
    assert data["value"] is None and data["profile"] == "sm-bluesky"
    server.proc.wait(timeout=30)
    assert "Server stopped successfully" in server.text()
    message = failed(c.ping())
    assert "not reachable" in message or "cannot connect" in message, message
