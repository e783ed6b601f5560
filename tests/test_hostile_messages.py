"""Hostile WAMP messages: deep nesting never crashes the router nor knocks an agent off.

A router of its own (a crash must not take the session-wide one down with it) and one
FakeDataAgent. Before the fix, one HTTP call nested 8,000 deep segfaulted the router worker
(crossbar exited), and a call nested 400+ deep (cbor2's limit, hit in the agent) dropped the
agent's connection. See docs/security.md, "Hostile messages".
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from ocs_core.runtime.wire import MAX_DEPTH, Undecodable, read_header
from ocs_core.testing import AgentProcess, http_call, project_env, running_router
from raw_wamp_client import RawWampClient, _cbor_text, cbor_call, deep_cbor, deep_json

AGENT = "hostile-target"
OPS = f"observatory.{AGENT}.ops"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    with running_router(directory, instances=[{"agent-class": "FakeDataAgent", "instance-id": AGENT}]) as rt:
        agent = AgentProcess(AGENT, rt.site_file, log_path=directory / f"{AGENT}.out")
        try:
            agent.wait_registered(20)
            yield rt, agent
        finally:
            agent.terminate()


def _bridge_raw(rt, body: str) -> dict:
    request = urllib.request.Request(rt.http_url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def _deep_status_call(depth: int) -> str:
    return '{"procedure": "%s", "args": ["status", "acq", %s]}' % (OPS, deep_json(depth))


def _assert_healthy(rt, agent):
    assert rt.is_running(), f"the router died: {rt.router.log_tail()}"
    assert rt.router.is_ready()
    reply = http_call(rt.http_url, OPS, "status", "acq")
    assert reply["args"][0][0] == 0, reply
    assert agent.is_running()
    assert "lost the router" not in agent.log_text(), agent.log_text()[-2000:]


@pytest.mark.parametrize("depth", [8_000, 100_000])
def test_deep_http_call_gets_an_error_and_the_router_lives(target, depth):
    rt, agent = target
    reply = _bridge_raw(rt, _deep_status_call(depth))
    assert "error" in reply, reply
    _assert_healthy(rt, agent)


def test_the_router_does_not_offer_msgpack(target):
    """MsgPack decodes 1,024 levels whatever the recursion limit: deep enough for a small stack."""
    rt, _agent = target
    with pytest.raises(OSError, match="refused"):
        RawWampClient("127.0.0.1", rt.port, "ws", "msgpack")


@pytest.mark.parametrize("serializer", ["json", "cbor"])
@pytest.mark.parametrize("depth", [8_000, 100_000])
def test_deep_websocket_call_never_crashes_the_router(target, serializer, depth):
    rt, agent = target
    log_before = rt.log_path.stat().st_size
    with RawWampClient("127.0.0.1", rt.port, "ws", serializer) as client:
        client.join()
        if serializer == "json":
            client.send('[48, 7, {}, "%s", ["status", "acq", %s]]' % (OPS, deep_json(depth)))
        else:
            client.send(cbor_call(7, OPS, [_cbor_text("status"), _cbor_text("acq"), deep_cbor(depth)]))
        client.receive(timeout=10)  # an error, or the router drops this client
    _assert_healthy(rt, agent)
    # the refusal is logged, briefly (it was ~60 KB of traceback per message; 18 MB once)
    assert rt.log_path.stat().st_size - log_before < 20_000


@pytest.mark.parametrize("depth", [MAX_DEPTH, 300, 500, 561])
def test_call_deeper_than_the_agent_decodes_gets_an_error_reply_over_http(target, depth):
    rt, agent = target
    reply = _bridge_raw(rt, _deep_status_call(depth))
    assert reply["error"] in ("wamp.error.invalid_argument", "wamp.error.invalid_payload") \
        or "invalid JSON" in reply["error"], reply
    if reply["error"] == "wamp.error.invalid_argument":
        assert "nested deeper than this agent decodes" in reply["args"][0]
    _assert_healthy(rt, agent)


@pytest.mark.parametrize("serializer", ["json", "cbor"])
def test_call_deeper_than_the_agent_decodes_gets_an_error_reply_over_websocket(target, serializer):
    rt, agent = target
    with RawWampClient("127.0.0.1", rt.port, "ws", serializer) as client:
        client.join()
        if serializer == "json":  # the router decodes 278 levels of websocket JSON; the agent 100
            client.send('[48, 9, {}, "%s", ["status", "acq", %s]]' % (OPS, deep_json(150)))
            reply = client.receive(timeout=10)
            assert reply[:2] == [8, 48] and reply[4] == "wamp.error.invalid_argument", reply
        else:  # the router decodes 400 levels of CBOR
            client.send(cbor_call(9, OPS, [_cbor_text("status"), _cbor_text("acq"), deep_cbor(350)]))
            reply = client.receive(timeout=10)
            assert reply[:2] == b"\x86\x08" and b"wamp.error.invalid_argument" in reply, reply
    _assert_healthy(rt, agent)


def test_a_call_just_within_the_bound_is_served(target):
    rt, agent = target
    reply = _bridge_raw(rt, _deep_status_call(MAX_DEPTH - 5))
    assert reply["args"][0][0] == 0, reply  # status ignores params: served normally
    _assert_healthy(rt, agent)


def test_a_call_with_invalid_unicode_is_answered(target):
    """JSON can spell a lone surrogate; the router could not encode it for the agent and never
    answered (an HTTP request hung until its client gave up). Now it arrives as U+FFFD."""
    rt, agent = target
    reply = _bridge_raw(rt, '{"procedure": "%s", "args": ["status", "\\ud800x"]}' % OPS)
    assert reply["args"][0][1] == 'No task or process called "\ufffdx"', reply
    with RawWampClient("127.0.0.1", rt.port, "ws", "json") as client:
        client.join()
        client.send('[48, 11, {}, "%s", ["status", "\\udc00"], {"\\ud800": 1}]' % OPS)
        reply = client.receive(timeout=10)
        assert reply[:2] == [50, 11] or reply[:2] == [8, 48], reply
        client.send('[16, 12, {"acknowledge": true}, "observatory.x.feeds.y", ["\\ud800"]]')
        assert client.receive(timeout=10)[:2] == [17, 12]
    _assert_healthy(rt, agent)


def test_scrub_lone_surrogates_is_iterative_and_keeps_valid_text():
    from ocs_core.router._crossbar_worker import scrub_lone_surrogates

    deep: list = ["\ud800"]
    for _ in range(5000):
        deep = [deep]
    out = scrub_lone_surrogates([{"k\udc00": ("a\ud800b", "\U0001d11e é")}, deep])
    assert out[0] == {"k\ufffd": ["a\ufffdb", "\U0001d11e é"]}
    inner = out[1]
    for _ in range(5000):
        inner = inner[0]
    assert inner == ["\ufffd"]


def test_the_router_worker_runs_with_a_sane_recursion_limit():
    probe = ("import sys\n"
             "from ocs_core.router._crossbar_worker import cap_recursion_limit\n"
             "import py_ecc\n"
             "cap_recursion_limit()\n"
             "sys.setrecursionlimit(100000)\n"
             "import importlib; importlib.reload(py_ecc)\n"
             "print(sys.getrecursionlimit(), sys.tracebacklimit)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=project_env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["600", "40"]


# -- reading the header of a message that does not decode (pure) ------------------------------
def test_read_header_cbor_and_json():
    invocation = b"\x86\x18\x44\x1a\x00\x01\x00\x00\x19\x01\x00\xa0" + deep_cbor(500)
    assert read_header(invocation, "cbor") == (68, (65536, 256))
    assert read_header(b"\x85\x18\x32\x05\xa0" + deep_cbor(500), "cbor") == (50, (5,))
    assert read_header(b'[68, 12, 34, {}, [' + deep_json(900).encode() + b"]]", "json") == (68, (12, 34))
    assert read_header(b'[36,1,2,{},' + deep_json(5).encode() + b"]", "json") == (36, (1, 2))
    assert read_header(b'[8, 48, 7, {}, "x"]', "json") == (8, (48, 7))
    for junk in (b"", b"\xff", b"\x81", b"\x86\x02\x01", b'{"a": 1}', b'["x", 1]', b"[68, 1]"):
        assert read_header(junk, "cbor") is None and read_header(junk, "json") is None
    assert "type=68" in str(Undecodable(68, (1, 2), "too deep", 10))


def test_the_router_worker_gets_a_stack_deep_enough_for_cbor2(tmp_path):
    """cbor2.dumps recurses in C without a limit: on a 1 MB stack ~800 levels crash the worker."""
    from ocs_core.router.process import WORKER_STACK_KB
    from ocs_core.testing import RouterFixture

    rt = RouterFixture(tmp_path)
    rt.router.write_config()
    wrapper = rt.router.node_dir / "python-worker"
    probe = 'import resource; print(resource.getrlimit(resource.RLIMIT_STACK)[0])'
    out = subprocess.run(["/bin/sh", "-c", f"ulimit -S -s 1024; exec {wrapper} -c '{probe}'"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= WORKER_STACK_KB * 1024
