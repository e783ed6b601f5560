"""RigAgent: its state machine and param checks (pure), and the agent on the real router with UDP peers."""
from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from agents.rig.agent import RigAgent, make_parser
from agents.rig.events import ExpStatus
from agents.rig.feed_format import FEED_NAME, REMOTE_FEED_NAME
from agents.rig.messages import make_message
from agents.rig.state import RigState
from ocs_core.runtime.codes import ResponseCode
from ocs_core.runtime.params import ParamError, declared_params, validate_params

DEADLINE = 10.0
AGENTS_ENV = {"OCS_CORE_AGENTS": "RigAgent=agents.rig.agent:main"}


# -- pure ------------------------------------------------------------------------------------
def test_state_follows_events():
    t = iter(range(100))
    state = RigState(clock=lambda: float(next(t)))
    assert state.snapshot()["status"] == "CONNECTED"
    state.apply(make_message("EXPINIT", None))
    assert state.status is ExpStatus.INITIALIZED
    state.apply(make_message("EXPSTART", "2026-11-23_1_mouse", {"a": 1}))
    snap = state.snapshot()
    assert snap["status"] == "RUNNING" and snap["exp_ref"] == "2026-11-23_1_mouse"
    assert snap["last_event"] == "EXPSTART" and snap["last_data"] == {"a": 1} and snap["last_time"] == 1.0
    state.apply(make_message("EXPCLEANUP", None))
    assert state.status is ExpStatus.RUNNING
    state.apply(make_message("EXPINTERRUPT", None))
    assert state.status is ExpStatus.STOPPED
    state.apply(make_message("EXPINFO", "initialized", None))
    assert state.status is ExpStatus.INITIALIZED and state.exp_ref == "2026-11-23_1_mouse"

    state.heard(make_message("EXPSTART", "2026-11-23_2_rat", None, source=("10.0.0.2", 11001)))
    state.heard(make_message("EXPEND", None, source=("10.0.0.2", 11001)))
    state.heard(make_message("EXPSTATUS", 10, source="observatory.rig-2"))
    remotes = state.snapshot()["remotes"]
    assert remotes["udp://10.0.0.2:11001"]["status"] == "STOPPED"
    assert remotes["udp://10.0.0.2:11001"]["exp_ref"] == "2026-11-23_2_rat"
    assert remotes["observatory.rig-2"]["status"] == "INITIALIZED"


def test_remotes_are_bounded():
    from agents.rig import state as state_mod

    state = RigState()
    for i in range(state_mod.MAX_REMOTES + 10):
        state.heard(make_message("EXPINIT", None, source=f"observatory.r{i}"))
    assert len(state.remotes) == state_mod.MAX_REMOTES
    assert "observatory.r0" not in state.remotes


def test_task_params_name_what_is_wrong():
    start = declared_params(RigAgent.start)
    assert validate_params(start, {"exp_ref": "2026-11-23_1_mouse"}) == {"exp_ref": "2026-11-23_1_mouse", "data": None}
    assert validate_params(start, {"exp_ref": {"date": "2026-11-23", "sequence": 2, "subject": "m"}})["exp_ref"] \
        == "2026-11-23_2_m"
    with pytest.raises(ParamError, match=r"Param 'exp_ref'='2026-13-01_1_mouse'.*yyyy-mm-dd_n_subject"):
        validate_params(start, {"exp_ref": "2026-13-01_1_mouse"})
    with pytest.raises(ParamError, match="'exp_ref' is required"):
        validate_params(start, {})
    with pytest.raises(ParamError, match="unexpected"):
        validate_params(start, {"exp_ref": "2026-11-23_1_mouse", "exp": 1})
    status = declared_params(RigAgent.status)
    assert validate_params(status, {"status": "running"}) == {"status": 20}
    assert validate_params(status, {}) == {"status": None}
    with pytest.raises(ParamError, match="ExpStatus"):
        validate_params(status, {"status": "sleeping"})
    stop = declared_params(RigAgent.stop)
    with pytest.raises(ParamError, match="immediately"):
        validate_params(stop, {"immediately": "yes"})


def test_parser_rejects_bad_options(capsys):
    parser = make_parser()
    for bad in (["--udp-peer", "tcp://1.2.3.4:5"], ["--udp-port", "70000"], ["--udp-interface", "localhost"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["rig-1", *bad])
    assert "udp://" in capsys.readouterr().err


# -- with the real router ----------------------------------------------------------------------
def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_deadline(d: defer.Deferred, seconds: float = DEADLINE) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


@pytest_twisted.inlineCallbacks
def test_rig_agent_over_wamp_and_udp(router, start_agent):
    from agents.rig.udp import udp_communicator
    from agents.rig.wamp import join_router, wamp_communicator
    from clients.ocs_client import OCSClient

    root = router.address_root
    peer = yield udp_communicator(port=0, name="peer")  # an iblutil-style rig the agent informs
    peer_port = peer.transport.local_address[1]
    agent_port = free_udp_port()
    yield threads.deferToThread(
        start_agent, "rig-a", agent_class="RigAgent", env=AGENTS_ENV,
        arguments=["--udp-port", agent_port, "--udp-peer", f"udp://127.0.0.1:{peer_port}",
                   "--echo-timeout", "0.3"])
    yield threads.deferToThread(start_agent, "rig-b", agent_class="RigAgent", env=AGENTS_ENV,
                                arguments=["--listen", "rig-a"])
    session = yield with_deadline(join_router(router.ws_url, router.hub.wamp_realm))
    sender = None
    try:
        listener = yield with_deadline(wamp_communicator(
            session, f"{root}.rig-listener", listen="rig-a", listen_feeds=(FEED_NAME, REMOTE_FEED_NAME)))
        client = yield threads.deferToThread(OCSClient, "rig-a", site_file=str(router.site_file))

        # start(exp_ref) through OCSClient: the WAMP listener and the UDP peer both hear it
        heard_wamp = listener.on_event("EXPSTART")
        heard_udp = peer.on_event("EXPSTART")
        reply = yield threads.deferToThread(client.start, exp_ref="2026-11-23_1_mouse", data={"n": 1})
        assert reply.status == ResponseCode.OK and reply.session["success"], reply
        msg = yield with_deadline(heard_wamp)
        assert msg.exp_ref == "2026-11-23_1_mouse" and msg.data == {"n": 1} and msg.source == f"{root}.rig-a"
        msg = yield with_deadline(heard_udp)
        assert msg.exp_ref == "2026-11-23_1_mouse" and msg.source[0] == "127.0.0.1"
        data = reply.session["data"]
        assert data["status"] == "RUNNING" and data["failed"] == {}
        assert data["delivered"] == [f"feed {FEED_NAME}", f"udp://127.0.0.1:{peer_port}"]

        # a bad exp_ref is refused at start, with an ERROR naming it; nothing is announced
        reply = yield threads.deferToThread(client.start.start, exp_ref="2026-13-01_1_mouse")
        assert reply.status == ResponseCode.ERROR
        assert "exp_ref" in reply.msg and "2026-13-01_1_mouse" in reply.msg and "yyyy-mm-dd_n_subject" in reply.msg
        reply = yield threads.deferToThread(client.status.start, status="sleeping")
        assert reply.status == ResponseCode.ERROR and "ExpStatus" in reply.msg

        # the UDP bridge: our UDP rig sends EXPINIT to the agent's port; the WAMP listener sees it
        sender = yield udp_communicator(remote=("127.0.0.1", agent_port), name="sender")
        sender_port = sender.transport.local_address[1]
        relayed = listener.on_event("EXPINIT")
        yield with_deadline(sender.init({"protocol": "biased"}))  # the agent echoed it
        msg = yield with_deadline(relayed)
        assert msg.data == {"protocol": "biased"} and msg.source == f"udp://127.0.0.1:{sender_port}"

        # status() announces the current status and returns the state, remotes included
        heard = listener.on_event("EXPSTATUS")
        reply = yield threads.deferToThread(client.status)
        assert reply.session["success"], reply
        state = reply.session["data"]
        assert state["status"] == "RUNNING" and state["exp_ref"] == "2026-11-23_1_mouse"
        assert state["remotes"][f"udp://127.0.0.1:{sender_port}"]["last_event"] == "EXPINIT"
        msg = yield with_deadline(heard)
        assert msg.status is ExpStatus.RUNNING

        # rig-b listens to rig-a over WAMP and keeps its state
        client_b = yield threads.deferToThread(OCSClient, "rig-b", site_file=str(router.site_file))
        reply = yield threads.deferToThread(client_b.status)
        remote_a = reply.session["data"]["remotes"][f"{root}.rig-a"]
        assert remote_a["status"] == "RUNNING" and remote_a["exp_ref"] == "2026-11-23_1_mouse"

        # a UDP peer that no longer answers: the Task fails and names it; the state still moves
        peer.close()
        reply = yield threads.deferToThread(client.stop, immediately=True)
        assert not reply.session["success"]
        texts = " ".join(m[1] for m in reply.session["messages"])
        assert f"not delivered to udp://127.0.0.1:{peer_port} (TimeoutError" in texts
        assert reply.session["data"]["status"] == "STOPPED"
        assert reply.session["data"]["delivered"] == [f"feed {FEED_NAME}"]
        client.close()
        client_b.close()
    finally:
        if sender is not None:
            sender.close()
        peer.close()
        if session.is_attached():
            yield session.leave()
