"""Interop: our UDP rig communicator and the real iblutil EchoProtocol exchange messages both ways.

iblutil (and its heavy dependencies: numba, pandas, pyarrow, scipy) lives in a separate Python
environment named by OCS_CORE_IBLUTIL_PYTHON, e.g.::

    python3 -m venv /tmp/iblvenv && /tmp/iblvenv/bin/pip install iblutil
    OCS_CORE_IBLUTIL_PYTHON=/tmp/iblvenv/bin/python pytest tests/test_rig_iblutil_interop.py
"""
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from ci import unavailable
from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.udp import udp_communicator

PEER = Path(__file__).parent / "peers" / "iblutil_rig.py"
ENV = "OCS_CORE_IBLUTIL_PYTHON"
DEADLINE = 20.0


def _unavailable(why: str):
    """Skip outside CI; in CI (``make test`` makes the iblutil venv) the peer must be there."""
    unavailable(f"{why}; `make test` makes .venv-iblutil")


def _iblutil_python():
    python = os.environ.get(ENV)
    if not python:
        _unavailable(f"{ENV} is not set: point it at a Python with iblutil installed to run the interop test")
    try:
        probe = subprocess.run(
            [python, "-c", "import iblutil.io.net.app"], capture_output=True, timeout=60, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"{ENV}={python} cannot run: {exc}")
    if probe.returncode != 0:
        _unavailable(f"{ENV}={python} cannot import iblutil.io.net.app: {probe.stderr.strip()[-200:]}")
    return python


class _Peer(protocol.ProcessProtocol):
    """Collects the peer's JSON lines; each waiter gets the next line."""

    def __init__(self):
        self.buffer = b""
        self.lines = defer.DeferredQueue()
        self.stderr = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.lines.put(json.loads(line))

    def errReceived(self, data):
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.interop
@pytest_twisted.ensureDeferred
async def test_round_trip_with_real_iblutil():
    python = _iblutil_python()
    ibl_port = _free_udp_port()
    ours = await udp_communicator(remote=("127.0.0.1", ibl_port), name="ours")
    peer = _Peer()
    process = reactor.spawnProcess(
        peer, python, [python, str(PEER), str(ibl_port), str(ours.transport.local_address[1])], env=dict(os.environ)
    )

    async def line():
        return await peer.lines.get().addTimeout(DEADLINE, reactor)

    try:
        assert (await line()) == {"step": "ready", "version": "1.0.0"}
        # ours -> iblutil server: EXPSTART confirmed by iblutil's echo
        info = ours.on_event("EXPINFO")
        init_d = ours.on_event(ExpMessage.EXPINIT)  # listen before iblutil's client can send
        await ours.start("2022-01-01_1_mouse", {"from": "ours"}).addTimeout(DEADLINE, reactor)
        got = await line()
        assert got["step"] == "server-got" and got["event"] == "EXPSTART"
        assert got["data"] == ["2022-01-01_1_mouse", {"from": "ours"}]
        assert got["addr"] == list(ours.transport.local_address)
        # iblutil server -> ours: EXPINFO, confirmed by our echo
        msg = await info.addTimeout(DEADLINE, reactor)
        assert msg.status is ExpStatus.RUNNING and msg.data == {"from": "iblutil"}
        assert (await line()) == {"step": "server-confirmed"}
        # iblutil client -> ours: EXPINIT; then ours -> iblutil client: EXPEND
        init = await init_d.addTimeout(DEADLINE, reactor)
        assert init.data == {"hello": "from iblutil"}
        assert (await line()) == {"step": "client-confirmed"}
        await ours.stop({"trials": 3}, addr=init.source).addTimeout(DEADLINE, reactor)
        assert (await line()) == {"step": "client-got", "event": "EXPEND", "data": [{"trials": 3}]}
        assert (await peer.ended.addTimeout(DEADLINE, reactor)) == 0
    except BaseException:
        print(peer.stderr.decode(errors="replace")[-4000:])
        if process.pid:
            process.signalProcess("KILL")
        raise
    finally:
        ours.close()


@pytest.mark.interop
@pytest_twisted.inlineCallbacks
def test_rig_agent_bridges_real_iblutil(router, start_agent):
    """OCSClient.start reaches an iblutil rig (--udp-peer); its EXPINIT reaches a WAMP listener."""
    from twisted.internet import threads

    from agents.rig.feed_format import FEED_NAME, REMOTE_FEED_NAME
    from agents.rig.wamp import join_router, wamp_communicator
    from clients.ocs_client import OCSClient

    python = _iblutil_python()
    ibl_port, agent_port = _free_udp_port(), _free_udp_port()
    peer = _Peer()
    script = str(Path(__file__).parent / "peers" / "iblutil_bridge_rig.py")
    process = reactor.spawnProcess(peer, python, [python, script, str(ibl_port), str(agent_port)],
                                   env=dict(os.environ))

    def line():
        return peer.lines.get().addTimeout(DEADLINE, reactor)

    session = None
    try:
        assert (yield line()) == {"step": "ready"}
        yield threads.deferToThread(
            start_agent, "rig-ibl", agent_class="RigAgent",
            env={"OCS_CORE_AGENTS": "RigAgent=agents.rig.agent:main"},
            arguments=["--udp-port", agent_port, "--udp-peer", f"udp://127.0.0.1:{ibl_port}"])
        session = yield join_router(router.ws_url, router.hub.wamp_realm).addTimeout(DEADLINE, reactor)
        listener = yield wamp_communicator(session, f"{router.address_root}.ibl-listener", listen="rig-ibl",
                                           listen_feeds=(FEED_NAME, REMOTE_FEED_NAME))
        relayed = listener.on_event("EXPINIT")
        client = yield threads.deferToThread(OCSClient, "rig-ibl", site_file=str(router.site_file))
        reply = yield threads.deferToThread(client.start, exp_ref="2026-11-23_1_mouse")
        client.close()
        assert reply.session["success"], reply
        assert (yield line()) == {"step": "server-got", "event": "EXPSTART", "data": ["2026-11-23_1_mouse", None]}
        assert (yield line()) == {"step": "client-confirmed"}
        msg = yield relayed.addTimeout(DEADLINE, reactor)
        assert msg.data == {"hello": "from iblutil"} and msg.source.startswith("udp://127.0.0.1:")
        assert (yield peer.ended.addTimeout(DEADLINE, reactor)) == 0
    except BaseException:
        print(peer.stderr.decode(errors="replace")[-4000:])
        if process.pid:
            process.signalProcess("KILL")
        raise
    finally:
        if session is not None and session.is_attached():
            yield session.leave()
