"""The dashboard's login over HTTP: the key in the address, ``/auth/*``, the session cookie.

| request | what |
| --- | --- |
| ``GET /?key=KEY`` | logs in and redirects to ``/`` (the key leaves the address bar and the history); a wrong key redirects to ``/?login=refused`` |
| ``GET /auth/session`` | ``{"required", "logged_in"}`` (public: the page asks it first) |
| ``POST /auth/login`` ``{"key"}`` | sets the session cookie; 401 wrong key, 429 too many wrong keys |
| ``POST /auth/logout`` | forgets the session and clears the cookie |

The cookie holds a random session token (never the key), HttpOnly and SameSite=Strict, and is
named after the dashboard's port (browsers share cookies across the ports of a host). Every
``/api/*`` and ``/events`` request without a live session gets 401 (:func:`refuse_unless_logged_in`);
the page and its scripts stay public, so the page can show its login form.
"""
from __future__ import annotations

import json
from pathlib import Path

from twisted.web import resource, server

from clients.dashboard.login import LoginGate, LoginRefused
from clients.dashboard.responses import arg, json_reply, refuse_post, set_headers

__all__ = ["IndexPage", "AuthApi", "refuse_unless_logged_in", "cookie_name", "session_token", "NOT_LOGGED_IN"]

NOT_LOGGED_IN = ("not logged in: this dashboard needs its key (open the address that ocs-core web "
                 "printed, or type the key on the page)")


def cookie_name(request: server.Request) -> bytes:
    """The session cookie's name: one per dashboard port."""
    return b"ocs_dashboard_%d" % request.getHost().port


def session_token(request: server.Request) -> str | None:
    """The session token of the request's cookie, or None."""
    value = request.getCookie(cookie_name(request))
    return value.decode("ascii", "replace") if value else None


def _client(request: server.Request) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


def _set_session(request: server.Request, token: str) -> None:
    request.addCookie(cookie_name(request), token.encode("ascii"), path=b"/", httpOnly=True,
                      sameSite="strict")


def _clear_session(request: server.Request) -> None:
    request.addCookie(cookie_name(request), b"", path=b"/", max_age=b"0", httpOnly=True, sameSite="strict")


def refuse_unless_logged_in(gate: LoginGate, request: server.Request) -> bytes | None:
    """A 401 reply for a request without a live session, else None (also when no login is needed)."""
    if gate.valid(session_token(request)):
        return None
    return json_reply(request, {"error": NOT_LOGGED_IN}, 401)


def _redirect(request: server.Request, location: bytes) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"location", location)
    set_headers(request, b"text/plain; charset=utf-8")
    return b""


class IndexPage(resource.Resource):
    """The page (``/``); with ``?key=`` a login and a redirect to ``/``."""

    isLeaf = True

    def __init__(self, path: Path, gate: LoginGate) -> None:
        super().__init__()
        self.body = path.read_bytes()
        self.gate = gate

    def render_GET(self, request):  # noqa: N802 (Twisted's name)
        key = arg(request, "key")
        if key is None:
            set_headers(request, b"text/html; charset=utf-8")
            return self.body
        if not self.gate.required:
            return _redirect(request, b"/")
        try:
            _set_session(request, self.gate.login(key, _client(request)))
        except LoginRefused as exc:
            return _redirect(request, b"/?login=too-many" if exc.code == 429 else b"/?login=refused")
        return _redirect(request, b"/")


class AuthApi(resource.Resource):
    """``/auth/session``, ``/auth/login``, ``/auth/logout``."""

    isLeaf = True

    def __init__(self, gate: LoginGate) -> None:
        super().__init__()
        self.gate = gate

    def _name(self, request: server.Request) -> str:
        return request.postpath[0].decode("utf-8", "replace") if request.postpath else ""

    def render_GET(self, request):  # noqa: N802
        if self._name(request) != "session":
            return json_reply(request, {"error": "GET /auth/session; POST /auth/login or /auth/logout"}, 404)
        return json_reply(request, {"required": self.gate.required, "logged_in": self.gate.valid(session_token(request))})

    def render_POST(self, request):  # noqa: N802
        name = self._name(request)
        if name not in ("login", "logout"):
            return json_reply(request, {"error": f"no POST /auth/{name}"}, 404)
        refused = refuse_post(request)
        if refused is not None:
            return refused
        if name == "logout":
            self.gate.logout(session_token(request))
            _clear_session(request)
            return json_reply(request, {"logged_in": False})
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return json_reply(request, {"error": f"the body is not JSON: {exc}"}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            return json_reply(request, {"error": 'expected {"key": "..."}'}, 400)
        try:
            token = self.gate.login(body["key"], _client(request))
        except LoginRefused as exc:
            return json_reply(request, {"error": str(exc)}, exc.code)
        _set_session(request, token)
        return json_reply(request, {"logged_in": True})
