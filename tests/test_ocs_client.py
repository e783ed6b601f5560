"""OCSClient through a real router and real agents: replies, errors, keep-alive, op attributes,
and agent-to-agent control with client_t inside an op."""
from __future__ import annotations

import socket
import time

import pytest

import clients_agents
from clients.client_http import ControlClient, ControlClientError
from clients.ocs_client import ERROR, OK, TIMEOUT, OCSClient, OCSReply
from helpers_clients import CountingProxy, start_agents
from ocs_core.testing import free_port

FAKER, DRIVER = "cl-faker", "cl-driver"


@pytest.fixture(scope="module")
def agents(router):
    started = start_agents(router, [("FakeDataAgent", FAKER), ("DriverAgent", DRIVER)],
                           env=clients_agents.subprocess_env())
    yield started
    for agent in started:
        agent.terminate()


@pytest.fixture
def client(router, agents):
    c = OCSClient(FAKER, args=["--site-file", str(router.site_file)])
    yield c
    c.close()


def _site(router):
    return ["--site-file", str(router.site_file)]


def _settle(op, timeout=10.0):
    """Let an op finish (stopping or aborting it) so each test starts from idle."""
    reply = op.status()
    if reply.session and reply.session.get("status") != "done":
        (getattr(op, "stop", None) or op.abort)()
        op.wait(timeout)


# -- attributes ------------------------------------------------------------------------------
def test_attributes_docstrings_and_repr(router, agents):
    c = OCSClient(DRIVER, args=_site(router))
    try:
        assert repr(c) == f"OCSClient('{DRIVER}')"
        assert c.agent_address == f"{router.address_root}.{DRIVER}"
        for name in ("drive", "many_msgs", "slow_proc"):
            assert name in dir(c)
        assert hasattr(c.many_msgs, "abort") and not hasattr(c.many_msgs, "stop")
        assert hasattr(c.slow_proc, "stop") and not hasattr(c.slow_proc, "abort")
        assert c.many_msgs.start.__doc__.startswith("many-msgs(count=7)")
        assert "Run until stopped" in c.slow_proc.start.__doc__
        reply = c.many_msgs(count=7)
        assert reply.status == OK and reply.session["success"] is True
        assert reply.session["op_name"] == "many-msgs"
        lines = repr(reply).splitlines()
        assert lines[1].startswith("  many-msgs[session=")
        texts = [m[1] for m in reply.session["messages"]]
        assert [t for t in texts if t.startswith("message ")] == [f"message {i}" for i in range(7)]
        assert lines[2] == f"  messages (5 of {len(texts)}):"
        assert len(lines) == 4 + len(texts)  # every message is printed
    finally:
        c.close()


def test_fake_data_attributes(client):
    assert sorted(client._ops) == ["acq", "count", "delay_task", "set_heartbeat"]
    assert client.delay_task.start.__doc__.startswith("delay_task(delay=5, succeed=True)")
    assert client.api["agent_class"] == "FakeDataAgent"


# -- reply codes -----------------------------------------------------------------------------
def test_task_ok_timeout_abort(client):
    _settle(client.delay_task)
    started = client.delay_task.start(delay=3)
    assert isinstance(started, OCSReply)
    assert started.status == OK and started.msg == 'Started task "delay_task".'
    assert repr(started).startswith('OCSReply: OK : Started task "delay_task".\n  delay_task[session=')
    t0 = time.monotonic()
    timed_out = client.delay_task.wait(timeout=0.3)  # returns, does not raise
    assert time.monotonic() - t0 < 2.5
    assert timed_out.status == TIMEOUT
    assert timed_out.msg == 'Operation "delay_task" still running; wait timed out.'
    assert repr(timed_out).startswith("OCSReply: TIMEOUT : ")
    assert "; status=running for " in repr(timed_out)
    again = client.delay_task.start(delay=1)
    assert again.status == ERROR and again.msg == 'Operation "delay_task" already in progress.'
    aborted = client.delay_task.abort()
    assert aborted.status == OK and aborted.msg == 'Requested abort on task delay_task".'
    done = client.delay_task.wait(10)
    assert done.status == OK and done.session["status"] == "done"
    assert done.session["success"] is False
    assert done.msg == 'Operation "delay_task" is currently not running (FAILED).'
    assert " status=done with ERROR " in repr(done)


def test_task_call_is_start_then_wait(client):
    _settle(client.delay_task)
    reply = client.delay_task(delay=0.3)
    assert reply.status == OK
    assert reply.msg == 'Operation "delay_task" is currently not running (SUCCEEDED).'
    session = reply.session
    assert session["status"] == "done" and session["success"] is True
    assert session["data"]["requested_delay"] == 0.3
    text = repr(reply)
    assert " status=done without error " in text and ", took " in text
    assert text.splitlines()[-1] == "  other keys in .session: op_code, cred_level, degraded, data"
    # a start that fails is returned as is (no wait)
    bad = client.delay_task(delay=-1)
    assert bad.status == ERROR and "delay" in bad.msg
    assert repr(bad).endswith("(no session in this reply: the request was refused; "
                              "the op's own session is unchanged)")


def test_task_call_is_one_request_to_an_ocs_core_agent(router, agents):
    c = OCSClient(FAKER, args=_site(router))
    calls = []
    original = c._client.call
    c._client.call = lambda procedure, *a, **kw: calls.append((procedure, a[0])) or original(
        procedure, *a, **kw)
    try:
        _settle(c.delay_task)
        calls.clear()
        for _ in range(3):
            reply = c.delay_task(delay=0)
            assert reply.status == OK and reply.session["success"] is True
        ops = f"{c.agent_address}.ops"
        # the features are asked once; then one request per Task call
        assert calls == [(c.agent_address, "ocs_core.features")] + [(ops, "start_and_wait")] * 3
        assert c._client.features() == {"ops_actions": ["start_and_wait"]}
        # the combined call makes every check start makes
        bad = c.delay_task(delay=-1)
        assert bad.status == ERROR and "delay" in bad.msg and bad.session == {}
        assert calls[-1] == (ops, "start_and_wait")
        assert c.delay_task.start(delay=5).status == OK
        busy = c.delay_task(delay=0)
        assert busy.status == ERROR and busy.msg == 'Operation "delay_task" already in progress.'
        c.delay_task.abort()
        c.delay_task.wait(10)
    finally:
        c.close()


def test_param_errors_and_unknown_op(client, router):
    bad = client.delay_task.start(delay="soon")
    assert bad.status == ERROR and "delay" in bad.msg and bad.session == {}
    raw = ControlClient(client.agent_address, router.http_url)
    assert OCSReply(*raw.request("status", "nope")) == (ERROR, 'No task or process called "nope"', {})
    assert raw.request("wait", "nope", timeout=0)[0] == ERROR


def test_process_start_status_call_stop(client):
    _settle(client.acq)
    started = client.acq.start()
    assert started.status == OK and started.msg == 'Started process "acq".'
    deadline = time.monotonic() + 10
    while True:  # poll until acq has published a sample
        reply = client.acq()  # a Process call is its status
        assert reply.msg == "Session active."
        if reply.session.get("data", {}).get("fields"):
            break
        assert time.monotonic() < deadline, reply
        time.sleep(0.05)
    assert set(reply.session["data"]["fields"]) == {"channel_00", "channel_01"}
    assert client.acq.status().session["session_id"] == reply.session["session_id"]
    stopped = client.acq.stop()
    assert stopped.status == OK and stopped.msg == 'Requested stop on process acq".'
    done = client.acq.wait(10)
    assert done.status == OK and done.session["success"] is True
    assert "Acquisition exited cleanly." in [m[1] for m in done.session["messages"]]
    assert client.acq.stop().status == ERROR  # already done


def test_long_wait_is_split_into_short_requests(router, agents):
    c = OCSClient(FAKER, args=_site(router), timeout=2.5)  # requests of 0.5 s of waiting
    calls = []
    original = c._client.call

    def counting(procedure, *args, **kw):
        calls.append((args[0] if args else None, kw.get("timeout")))
        return original(procedure, *args, **kw)

    c._client.call = counting
    try:
        _settle(c.delay_task)
        calls.clear()
        reply = c.delay_task(delay=1.6)
        assert reply.status == OK and reply.session["success"] is True
        assert [a for a, _ in calls[:2]] == ["ocs_core.features", "start_and_wait"]
        waits = [t for action, t in calls if action in ("wait", "start_and_wait")]
        assert len(waits) >= 3 and all(t is not None and t <= 0.5 for t in waits)
    finally:
        c.close()


# -- keep-alive ------------------------------------------------------------------------------
def test_one_tcp_connection_for_many_calls(router, agents):
    proxy = CountingProxy(router.port)
    try:
        c = OCSClient(FAKER, args=_site(router) + ["--site-http", f"http://127.0.0.1:{proxy.port}/call"])
        for _ in range(5):
            assert c.count.status().status == OK
        c.delay_task.wait(timeout=0)
        assert proxy.connections == 1  # get_api and 6 requests over one TCP connection
        c.close()
    finally:
        proxy.close()


# -- errors ----------------------------------------------------------------------------------
def test_router_down_fails_fast_with_clear_message(router):
    port = free_port()
    url = f"http://127.0.0.1:{port}/call"
    t0 = time.monotonic()
    with pytest.raises(ControlClientError) as info:
        OCSClient(FAKER, args=_site(router) + ["--site-http", url])
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert url in message and "is the router running?" in message
    assert info.value.error_uri == "client_http.error.connection_error"


def test_silent_server_times_out_instead_of_hanging():
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/call"
        client = ControlClient("observatory.x", url, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(ControlClientError) as info:
            client.get_api()
        assert time.monotonic() - t0 < 5
        assert info.value.error_uri == "client_http.error.timeout"
        assert url in str(info.value) and "0.5 s" in str(info.value)
    finally:
        server.close()


def test_unknown_instance_names_it(router):
    with pytest.raises(ControlClientError) as info:
        OCSClient("no-such-agent", args=_site(router))
    assert "no-such-agent" in str(info.value) and "is the agent running?" in str(info.value)
    assert info.value.error_uri == "wamp.error.no_such_procedure"


def test_bridge_errors_in_http_200(router, agents):
    raw = ControlClient(f"{router.address_root}.{FAKER}", router.http_url)
    with pytest.raises(ControlClientError) as info:  # the agent's handler raises
        raw.call(f"{raw.agent_address}.ops", "status", "acq", timeoutt=1)
    assert info.value.error_uri == "wamp.error.runtime_error"
    assert "timeoutt" in str(info.value) and raw.agent_address in str(info.value)
    outside = ControlClient("elsewhere.x", router.http_url)
    with pytest.raises(ControlClientError) as info:
        outside.get_api()
    assert info.value.error_uri == "wamp.error.not_authorized"
    assert "address_root" in str(info.value)


def test_bad_http_status_is_reported(router):
    raw = ControlClient("observatory.x", router.http_url.replace("/call", "/nothing-here"))
    with pytest.raises(ControlClientError) as info:
        raw.get_api()
    assert info.value.error_uri == "client_http.error.request_error"
    assert "HTTP 404" in str(info.value)


# -- agent-to-agent ----------------------------------------------------------------------------
def test_agent_drives_another_agent_with_client_t(router, agents):
    c = OCSClient(DRIVER, args=_site(router))
    try:
        reply = c.drive(target=FAKER, delay=0.3)
        assert reply.status == OK, reply
        assert reply.session["success"] is True, reply
        driven = reply.session["data"]["driven"]
        assert driven["op_name"] == "delay_task" and driven["success"] is True
        assert reply.session["data"]["features"]["ops_actions"] == ["start_and_wait"]
        assert driven["data"]["requested_delay"] == 0.3
        failed = c.drive(target="no-such-agent")
        assert failed.session["success"] is False
        assert "no callee" in failed.session["messages"][-2][1] or \
            "no_such_procedure" in failed.session["messages"][-2][1]
    finally:
        c.close()


def test_password_is_sent_to_access_controlled_agents(router, agents):
    c = OCSClient(FAKER, privs="secret", args=_site(router))
    sent = []
    original = c._client.call
    c._client.call = lambda procedure, *a, **kw: sent.append(kw) or original(procedure, *a, **kw)
    try:
        assert "access_control" in c.api
        assert c.count.status().status == OK
        assert sent[-1].get("password") == "secret"
    finally:
        c.close()
