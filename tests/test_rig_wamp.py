"""Rig events over WAMP: the feed payload format (pure) and round trips through the real router."""
from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from agents.rig.events import ExpMessage, ExpStatus
from agents.rig.feed_format import (FEED_NAME, REMOTE_FEED_NAME, addressed_to, decode_event,
                                    encode_payload, publisher_of, rig_topic, rig_topics)
from agents.rig.messages import MessageError, RemoteError, make_message

DEADLINE = 10.0


def with_deadline(d: defer.Deferred, seconds: float = DEADLINE) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


# -- pure: topics and payloads -------------------------------------------------------------
def test_topics():
    assert rig_topic("observatory", "rig-1") == "observatory.rig-1.feeds.rig_events"
    assert rig_topic("observatory") == "observatory..feeds.rig_events"
    assert rig_topic("observatory", "*", REMOTE_FEED_NAME) == "observatory..feeds.rig_events_remote"
    assert rig_topics("obs", ["a", "*"], [FEED_NAME, REMOTE_FEED_NAME]) == [
        ("obs.a.feeds.rig_events", "exact"), ("obs..feeds.rig_events", "wildcard"),
        ("obs.a.feeds.rig_events_remote", "exact"), ("obs..feeds.rig_events_remote", "wildcard")]
    for bad in [("", "a"), ("obs.", "a"), ("obs", "a.b"), ("obs", "a b"), ("obs", "")]:
        with pytest.raises(ValueError):
            rig_topic(*bad)


def test_payload_round_trip():
    msg = make_message("EXPSTART", "2026-11-23_1_mouse", {"n": 1})
    payload = encode_payload(msg, "observatory.rig-1")
    assert payload["event"] == "EXPSTART" and payload["value"] == 2
    assert payload["exp_ref"] == "2026-11-23_1_mouse" and payload["data"] == {"n": 1}
    assert payload["rig"] == "observatory.rig-1" and payload["protocol"] == "1.0.0"
    assert "source" not in payload
    info = {"agent_address": "observatory.rig-1", "feed_name": FEED_NAME}
    back = decode_event([payload, info])
    assert back == msg and back.source == "observatory.rig-1"
    assert publisher_of([payload, info]) == "observatory.rig-1"

    status = make_message("EXPINFO", "running", [1, 2])
    p = encode_payload(status, "observatory.rig-1", source=("10.0.0.2", 11001))
    assert p["status"] == "RUNNING" and p["source"] == "udp://10.0.0.2:11001"
    back = decode_event([p, info])
    assert back.status is ExpStatus.RUNNING and back.source == "udp://10.0.0.2:11001"


def test_error_report_payload():
    report = RemoteError("KeyError: 'x'", 2)
    p = encode_payload(report, "observatory.rig-2", to="observatory.rig-1")
    event = [p, {"agent_address": "observatory.rig-2"}]
    back = decode_event(event)
    assert isinstance(back, RemoteError) and back.error == "KeyError: 'x'" and back.event == 2
    assert back.source == "observatory.rig-2" and addressed_to(event) == "observatory.rig-1"


@pytest.mark.parametrize("event, why", [
    ("nope", "feed event"),
    ([1, 2, 3], "feed event"),
    (["x", {}], "payload must be an object"),
    ([{"value": "2", "args": []}, {}], "integer event"),
    ([{"value": True, "args": [None]}, {}], "integer event"),
    ([{"value": 1}, {}], "'args'"),
    ([{"value": 1, "args": [1, 2, 3, 4]}, {}], "'args'"),
    ([{"value": 3, "args": [None]}, {}], "unknown event"),
    ([{"value": 512, "args": [None]}, {}], "unknown event"),
    ([{"value": 2, "args": ["2026-13-01_1_m", None]}, {}], "exp_ref"),
    ([{"value": 32, "args": [7]}, {}], "status"),
    ([{"value": 1, "args": []}, {}], "takes 1 element"),
    ([{"value": 0, "args": ["x"]}, {}], "error report"),
])
def test_bad_events_rejected(event, why):
    with pytest.raises(MessageError, match=why):
        decode_event(event)


# -- through the real router ---------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_wamp_round_trip(router):
    from agents.rig.wamp import join_router, wamp_communicator

    url, realm, root = router.ws_url, router.hub.wamp_realm, router.address_root
    s1 = yield with_deadline(join_router(url, realm))
    s2 = yield with_deadline(join_router(url, realm))
    s3 = yield with_deadline(join_router(url, realm))
    try:
        rig1 = yield with_deadline(wamp_communicator(s1, f"{root}.wrig-1", listen="wrig-2"))
        rig2 = yield with_deadline(wamp_communicator(s2, f"{root}.wrig-2", listen="wrig-1"))
        everyone = yield with_deadline(wamp_communicator(s3, f"{root}.wrig-watch", listen="*"))
        own: list = []
        rig1.assign_callback(ExpMessage.any(), own.append)  # rig-1 must not hear itself
        seen_all: list = []
        everyone.assign_callback(ExpMessage.any(), seen_all.append)

        got = rig2.on_event("EXPSTART")
        yield with_deadline(rig1.start("2026-11-23_1_mouse", {"protocol": "biased"}))  # router acked
        msg = yield with_deadline(got)
        assert msg.event is ExpMessage.EXPSTART and msg.exp_ref == "2026-11-23_1_mouse"
        assert msg.data == {"protocol": "biased"} and msg.source == f"{root}.wrig-1"

        # and back: rig-1 hears rig-2 (status); a wildcard listener heard both
        back = rig1.on_event("EXPSTATUS|EXPINFO")
        yield with_deadline(rig2.status("RUNNING"))
        msg = yield with_deadline(back)
        assert msg.event is ExpMessage.EXPSTATUS and msg.status is ExpStatus.RUNNING
        end = rig1.on_event("EXPEND|EXPINTERRUPT")
        yield with_deadline(rig2.stop(immediately=True))
        msg = yield with_deadline(end)
        assert msg.event is ExpMessage.EXPINTERRUPT
        assert [m.event for m in own] == [ExpMessage.EXPSTATUS, ExpMessage.EXPINTERRUPT]
        deadline = reactor.seconds() + DEADLINE
        while len(seen_all) < 3 and reactor.seconds() < deadline:
            yield _tick()
        assert [(m.event, m.source) for m in seen_all] == [
            (ExpMessage.EXPSTART, f"{root}.wrig-1"), (ExpMessage.EXPSTATUS, f"{root}.wrig-2"),
            (ExpMessage.EXPINTERRUPT, f"{root}.wrig-2")]

        # a bad exp_ref is refused before anything is published; addr makes no sense on WAMP
        with pytest.raises(MessageError, match="exp_ref"):
            rig1.start("yesterday")
        with pytest.raises(ValueError, match="broadcast"):
            rig1.init(addr=("127.0.0.1", 1))
        for c in (rig1, rig2, everyone):
            c.close()
        assert not rig1.is_connected
        with pytest.raises(ConnectionError):
            yield rig1.init()
    finally:
        for s in (s1, s2, s3):
            if s.is_attached():
                yield s.leave()


@pytest_twisted.inlineCallbacks
def test_callback_error_reported_to_sender_only(router):
    """A failing callback on the listener is reported back over WAMP to the sender."""
    from agents.rig.wamp import join_router, wamp_communicator

    url, realm, root = router.ws_url, router.hub.wamp_realm, router.address_root
    s1 = yield with_deadline(join_router(url, realm))
    s2 = yield with_deadline(join_router(url, realm))
    try:
        sender = yield with_deadline(wamp_communicator(s1, f"{root}.erig-1", listen="erig-2"))
        listener = yield with_deadline(wamp_communicator(s2, f"{root}.erig-2", listen="erig-1"))
        reports: list = []
        sender.receive_orig = sender.receive

        def spy(message):
            if isinstance(message, RemoteError):
                reports.append(message)
            sender.receive_orig(message)

        sender.receive = spy

        def boom(_msg):
            raise KeyError("missing")

        listener.assign_callback("EXPINIT", boom)
        yield with_deadline(sender.init())
        deadline = reactor.seconds() + DEADLINE
        while not reports and reactor.seconds() < deadline:
            yield _tick()
        assert reports and reports[0].error == "KeyError: 'missing'" and reports[0].event == 1
        assert reports[0].source == f"{root}.erig-2"
    finally:
        for s in (s1, s2):
            if s.is_attached():
                yield s.leave()


def _tick() -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(0.02, d.callback, None)
    return d


# -- WampTransport against a fake endpoint (no network) ------------------------------------
class FakeEndpoint:
    def __init__(self, address="observatory.me"):
        self.address = address
        self.published: list = []
        self.handlers: list = []
        self.connected = True

    def publish(self, payload):
        self.published.append(payload)
        return defer.succeed(None)

    def subscribe(self, handler, topic, match):
        self.handlers.append((handler, topic, match))

    def unsubscribe_all(self):
        self.handlers.clear()

    @property
    def is_connected(self):
        return self.connected


def _fake_rig():
    from agents.rig.communicator import Communicator
    from agents.rig.wamp import WampTransport

    endpoint = FakeEndpoint()
    transport = WampTransport(endpoint, rig_topics("observatory", ["other", "*"]))
    rig = Communicator(transport, name="me")
    transport.listen()
    return endpoint, transport, rig


def test_transport_filters_and_rejects(caplog):
    endpoint, transport, rig = _fake_rig()
    assert [(t, m) for _, t, m in endpoint.handlers] == [
        ("observatory.other.feeds.rig_events", "exact"), ("observatory..feeds.rig_events", "wildcard")]
    handler = endpoint.handlers[0][0]
    heard: list = []
    rig.assign_callback(ExpMessage.any(), heard.append)

    def event(msg, publisher, **kw):
        return [encode_payload(msg, publisher, **kw), {"agent_address": publisher}]

    handler(event(make_message("EXPINIT", None), "observatory.me"))  # our own: dropped
    handler(event(make_message("EXPINIT", 1), "observatory.other"))
    assert [m.data for m in heard] == [1]
    # error reports: only those for us are delivered (logged as one error line)
    caplog.set_level("ERROR", logger="agents.rig")
    handler(event(RemoteError("E: x", 1), "observatory.other", to="observatory.third"))
    handler(event(RemoteError("E: y", 1), "observatory.other", to="observatory.me"))
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "E: y" in errors[0]
    # a bad event is logged, nothing delivered, the rig keeps working
    handler([{"value": 2, "args": ["bad", None]}, {"agent_address": "observatory.other"}])
    assert "rejected rig event from observatory.other" in caplog.records[-1].getMessage()
    handler(event(make_message("EXPEND", None), "observatory.other"))
    assert [m.event for m in heard] == [ExpMessage.EXPINIT, ExpMessage.EXPEND]

    # sending: payload names us; too large or non-JSON data raises before publishing
    rig.start("2026-11-23_1_mouse")
    assert endpoint.published[-1]["rig"] == "observatory.me" and endpoint.published[-1]["value"] == 2
    with pytest.raises(MessageError, match="exceeds"):
        rig.init("x" * 70_000)
    with pytest.raises(MessageError, match="JSON"):
        rig.init({1, 2})
    assert len(endpoint.published) == 1
    rig.close()
    handler(event(make_message("EXPEND", None), "observatory.other"))
    assert len(heard) == 2 and endpoint.handlers == []


def test_agent_endpoint_without_router():
    """An agent that is not connected refuses at once (nothing queued); recorded feeds are refused."""
    from twisted.internet.testing import MemoryReactorClock

    from agents.rig.wamp import agent_communicator
    from ocs_core.runtime.agent import AgentConfig, OCSAgent
    from ocs_core.runtime.feeds import FeedError

    agent = OCSAgent(AgentConfig("rig-x"), reactor=MemoryReactorClock())
    rig = agent_communicator(agent, listen=["rig-y", "*"])
    assert "rig_events" in agent.feeds and not agent.feeds["rig_events"].record
    assert [(topic, opts) for _, topic, opts in agent._subscriptions] == [
        ("observatory.rig-y.feeds.rig_events", None), ("observatory..feeds.rig_events", {"match": "wildcard"})]
    assert not rig.is_connected
    failures: list = []
    rig.init().addErrback(failures.append)
    assert failures and failures[0].check(ConnectionError)
    assert "rig-x is not connected" in str(failures[0].value)
    assert not agent.feeds["rig_events"].outbox  # not queued
    agent.register_feed("recorded", record=True)
    with pytest.raises(FeedError, match="recorded"):
        agent.publish_to_feed_acked("recorded", {})


def test_feed_events_with_non_finite_numbers_are_refused():
    from agents.rig.feed_format import decode_event
    from agents.rig.messages import MessageError as _MessageError

    info = {"agent_address": "observatory.rig-x"}
    good = [{"value": 64, "args": [30, {"t": 1.5}], "rig": "rig-x"}, info]
    assert decode_event(good).data == {"t": 1.5}
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(_MessageError, match="not a finite number"):
            decode_event([{"value": 64, "args": [30, {"t": [1, bad]}], "rig": "rig-x"}, info])
