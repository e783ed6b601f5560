"""The dashboard's key and logins: the pure gate (fake clock), the key file, and the HTTP side
through Twisted's real HTTP parser on a StringTransport (no network, no router)."""
from __future__ import annotations

import json
import os
import stat

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure

from clients.dashboard import login
from clients.dashboard.login import KeyFileError, LoginGate, LoginRefused, read_key_file
from clients.site import Hub

KEY = "k" * 20 + "-right-key"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refused(gate, key, client="127.0.0.1"):
    with pytest.raises(LoginRefused) as info:
        gate.login(key, client)
    return info.value


# -- the gate ---------------------------------------------------------------------------------
def test_an_open_gate_needs_no_login():
    gate = LoginGate(None)
    assert not gate.required and gate.valid(None) and gate.valid("anything")
    assert refused(gate, "x").code == 400


def test_the_right_key_makes_a_session_a_wrong_one_does_not():
    gate = LoginGate(KEY, clock=Clock())
    assert gate.required and not gate.valid(None) and not gate.valid("")
    e = refused(gate, "wrong")
    assert e.code == 401 and str(e).startswith("wrong key")
    for not_a_key in (None, 12, ["k"], ""):
        assert refused(gate, not_a_key, "10.0.0.9").code == 401
    token = gate.login(KEY, "127.0.0.1")
    assert token != KEY and len(token) >= 40 and gate.valid(token)
    assert not gate.valid(token[:-1] + ("A" if token[-1] != "A" else "B"))
    other = gate.login(KEY, "127.0.0.1")
    assert other != token and gate.session_count == 2
    gate.logout(token)
    assert not gate.valid(token) and gate.valid(other)


def test_sessions_are_bounded_and_expire_when_unused():
    clock = Clock()
    gate = LoginGate(KEY, clock=clock)
    first = gate.login(KEY, "a")
    kept = gate.login(KEY, "a")
    for _ in range(login.MAX_SESSIONS - 2):
        gate.login(KEY, "a")
    assert gate.valid(first)  # using it keeps it: now the most recently used
    gate.login(KEY, "a")
    assert gate.session_count == login.MAX_SESSIONS
    assert gate.valid(first) and not gate.valid(kept)  # the least recently used one went
    clock.now += login.IDLE_SECONDS - 1
    assert gate.valid(first)
    clock.now += login.IDLE_SECONDS - 1
    assert gate.valid(first)  # used within the idle time: alive
    clock.now += login.IDLE_SECONDS
    assert not gate.valid(first) and gate.session_count == 0


def test_wrong_keys_are_limited_per_client_and_in_all():
    clock = Clock()
    gate = LoginGate(KEY, clock=clock)
    for _ in range(login.MAX_FAILURES):
        assert refused(gate, "guess", "10.0.0.1").code == 401
    e = refused(gate, KEY, "10.0.0.1")  # locked out: the right key too
    assert e.code == 429 and str(e) == f"too many wrong keys lately; try again in {int(login.FAILURE_WINDOW)} s"
    assert gate.valid(gate.login(KEY, "10.0.0.2"))  # another client is not
    clock.now += login.FAILURE_WINDOW / 2
    assert "try again in 30 s" in str(refused(gate, KEY, "10.0.0.1"))
    clock.now += login.FAILURE_WINDOW / 2
    assert gate.valid(gate.login(KEY, "10.0.0.1"))
    # many clients: at most MAX_FAILURES_ALL wrong keys a window in all
    for i in range(login.MAX_FAILURES_ALL):
        assert refused(gate, "guess", f"10.1.{i // 250}.{i % 250}").code == 401
    assert refused(gate, KEY, "10.9.9.9").code == 429
    clock.now += login.FAILURE_WINDOW
    assert gate.valid(gate.login(KEY, "10.9.9.9"))


# -- the key file -----------------------------------------------------------------------------
def test_key_file_is_created_private_then_read(tmp_path):
    path = tmp_path / "dashboard-key"
    key, created = read_key_file(path)
    assert created and len(key) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == (key, False)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=r"readable by group or others \(mode 0644\); run: chmod 600"):
        read_key_file(path)
    os.chmod(path, 0o600)
    path.write_text("short\n")
    with pytest.raises(KeyFileError, match="expected one key of 16 to 256 printable characters"):
        read_key_file(path)
    path.write_text("a key with spaces in it\n")
    with pytest.raises(KeyFileError, match="without spaces"):
        read_key_file(path)
    with pytest.raises(KeyFileError, match="cannot create"):
        read_key_file(tmp_path / "no-such-dir" / "key")


# -- over HTTP --------------------------------------------------------------------------------
@pytest.fixture
def site():
    from clients.dashboard.service import Dashboard
    from clients.dashboard.web import make_site
    hub = Hub("ws://127.0.0.1:1/ws", "http://127.0.0.1:1/call", "r", "observatory", authenticated=True)
    site = make_site(Dashboard(hub, MemoryReactor()), LoginGate(KEY))
    site.timeOut = None  # no idle-timeout timers on the global reactor
    return site


def request(site, method, path, body=None, headers=None):
    """One HTTP/1.1 request through the site's real parser: (status, headers, body)."""
    client = IPv4Address("TCP", "127.0.0.1", 40000)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8002), peerAddress=client)
    channel = site.buildProtocol(client)
    channel.makeConnection(transport)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8002", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    if data:
        lines.append(f"Content-Length: {len(data)}")
    channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    head, _, payload = transport.value().partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    found: dict[str, list[str]] = {}
    for line in header_lines:
        k, _, v = line.partition(": ")
        found.setdefault(k.lower(), []).append(v)
    channel.connectionLost(None)
    return int(status_line.split()[1]), found, payload


def cookie_of(headers):
    (cookie,) = [c for c in headers.get("set-cookie", []) if c.startswith("ocs_dashboard_8002=")]
    return cookie


JSON = {"Content-Type": "application/json"}


def test_api_and_events_need_a_session_the_page_does_not(site):
    for path in ("/api/site", "/api/agent?agent=x", "/events"):
        code, headers, body = request(site, "GET", path)
        assert code == 401 and json.loads(body)["error"].startswith("not logged in: this dashboard needs its key")
    code, _, body = request(site, "POST", "/api/op", {"agent": "x"}, JSON)
    assert code == 401
    for path in ("/", "/static/app.js", "/static/login.js", "/lib/dygraph.js"):
        assert request(site, "GET", path)[0] == 200, path
    code, _, body = request(site, "GET", "/auth/session")
    assert code == 200 and json.loads(body) == {"required": True, "logged_in": False}


def test_login_sets_an_httponly_strict_cookie_and_logout_clears_it(site):
    code, headers, body = request(site, "POST", "/auth/login", {"key": "nope"}, JSON)
    assert code == 401 and json.loads(body)["error"].startswith("wrong key") and "set-cookie" not in headers
    code, headers, body = request(site, "POST", "/auth/login", {"key": KEY}, JSON)
    assert code == 200 and json.loads(body) == {"logged_in": True}
    cookie = cookie_of(headers)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and KEY not in cookie
    session = {"Cookie": cookie.split(";")[0]}
    code, _, body = request(site, "GET", "/api/site", headers=session)
    assert code == 200 and json.loads(body)["address_root"] == "observatory"
    assert json.loads(request(site, "GET", "/auth/session", headers=session)[2])["logged_in"] is True
    code, headers, _ = request(site, "POST", "/auth/logout", {}, {**JSON, **session})
    assert code == 200 and "Max-Age=0" in cookie_of(headers)
    assert request(site, "GET", "/api/site", headers=session)[0] == 401


def test_login_posts_are_checked_like_op_requests(site):
    assert request(site, "POST", "/auth/login", {"key": KEY}, {"Content-Type": "text/plain"})[0] == 415
    code, _, body = request(site, "POST", "/auth/login", {"key": KEY}, {**JSON, "Origin": "http://evil.example"})
    assert code == 403 and "not accepted" in json.loads(body)["error"]
    code, _, body = request(site, "POST", "/auth/login", {"token": KEY}, JSON)
    assert code == 400 and json.loads(body)["error"] == 'expected {"key": "..."}'
    assert request(site, "POST", "/auth/login", b"x" * (65 * 1024), JSON)[0] == 413


def test_key_in_the_address_logs_in_and_redirects_without_it(site):
    code, headers, _ = request(site, "GET", f"/?key={KEY}")
    assert code == 303 and headers["location"] == ["/"]
    session = {"Cookie": cookie_of(headers).split(";")[0]}
    assert request(site, "GET", "/api/site", headers=session)[0] == 200
    code, headers, _ = request(site, "GET", "/?key=wrong")
    assert code == 303 and headers["location"] == ["/?login=refused"] and "set-cookie" not in headers
    for _ in range(login.MAX_FAILURES):
        request(site, "GET", "/?key=wrong")
    assert request(site, "GET", f"/?key={KEY}")[1]["location"] == ["/?login=too-many"]


def test_an_open_event_stream_ends_at_the_keepalive_after_its_session_ends(site):
    code, headers, _ = request(site, "POST", "/auth/login", {"key": KEY}, JSON)
    cookie = cookie_of(headers).split(";")[0]
    client = IPv4Address("TCP", "127.0.0.1", 40001)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8002), peerAddress=client)
    channel = site.buildProtocol(client)
    channel.makeConnection(transport)
    channel.dataReceived(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:8002\r\nCookie: {cookie}\r\n\r\n".encode())
    assert transport.value().startswith(b"HTTP/1.1 200 ") and b"event: hello" in transport.value()
    dashboard = site.resource.children[b"events"].dashboard
    (stream,) = dashboard.streams
    stream.keepalive()
    assert transport.value().endswith(b": keepalive\n\n\r\n") and not stream.closed  # chunked
    gate = site.resource.children[b"events"].gate
    gate.logout(cookie.split("=", 1)[1])  # e.g. the Log out button of another tab
    stream.keepalive()
    assert stream.closed and transport.disconnecting
    channel.connectionLost(Failure(ConnectionDone()))
    assert not dashboard.streams
