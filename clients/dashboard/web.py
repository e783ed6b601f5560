"""The dashboard's HTTP side: the page, its script, the plotting library, an event stream, a JSON API.

| path | what |
| --- | --- |
| ``/`` | the page (``static/index.html``); ``/?key=KEY`` logs in (see :mod:`clients.dashboard.web_login`) |
| ``/auth/session``, ``POST /auth/login``, ``POST /auth/logout`` | the login |
| ``/static/<file>`` | the page's script and style |
| ``/lib/dygraph.js``, ``/lib/dygraph.css`` | dygraphs, served from the installed ``dygraphs`` wheel |
| ``/events?watch=ADDRESS`` | server-sent events: ``hello``, ``router``, ``agent``, ``api``, ``points`` |
| ``/api/site`` | the router state and every agent |
| ``/api/agent?agent=ID`` | an agent's ``get_api`` and ``@param`` declarations |
| ``/api/feed?agent=ID&feed=NAME`` | the samples kept of a recorded feed |
| ``/api/history?address=&feed=&start=&stop=&max_points=&fields=a,b`` | the archive's history |
| ``POST /api/op`` | ``{"agent", "op", "action", "params", "password"}``: an op request |

Request bodies are bounded (:data:`MAX_BODY`), POSTs must be JSON from the page's own origin,
and at most :data:`MAX_STREAMS` event streams are open at once. When the dashboard has a key,
``/events`` and ``/api/*`` need a logged-in session (401 otherwise); the page and its scripts do not.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from clients.dashboard.history import HistoryUnavailable
from clients.dashboard.login import LoginGate
from clients.dashboard.responses import arg, clean, json_reply, refuse_post, set_headers
from clients.dashboard.service import Dashboard, DashboardError
from clients.dashboard.web_login import AuthApi, IndexPage, refuse_unless_logged_in, session_token

__all__ = ["make_site", "plot_library", "BoundedRequest", "SseStream", "MAX_BODY", "MAX_STREAMS"]

log = Logger(namespace="clients.dashboard.web")

STATIC = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {"app.js": "text/javascript", "panels.js": "text/javascript", "plots.js": "text/javascript",
                 "login.js": "text/javascript",
                 "app.css": "text/css"}
#: Largest request body (bytes) and most open event streams.
MAX_BODY = 64 * 1024
MAX_STREAMS = 32
#: Bytes an event stream may fall behind a page that does not read before it is closed.
MAX_BEHIND = 8 * 1024 * 1024


def plot_library() -> dict[str, Path]:
    """The files of the plotting library in the installed ``dygraphs`` package.

    Raises:
        RuntimeError: the package is not installed (``pip install 'ocs-core[web]'``).
    """
    spec = importlib.util.find_spec("dygraphs")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard's plotting library is missing: pip install 'ocs-core[web]' "
                           "(it installs the dygraphs package, which ships dygraph-combined.js)")
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    files = {"dygraph.js": assets / "dygraph-combined.js", "dygraph.css": assets / "dygraph.css"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"the dygraphs package has no {', '.join(missing)}; reinstall ocs-core[web]")
    return files


class BoundedRequest(server.Request):
    """A request whose body may not exceed :data:`MAX_BODY` bytes (413 otherwise)."""

    _received = 0
    _refused = False

    def gotLength(self, length):  # noqa: N802 (Twisted's name)
        if length is not None and length > MAX_BODY:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data):  # noqa: N802
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        self._refused = True
        transport = self.channel.transport
        body = f"request body larger than {MAX_BODY} bytes\n".encode()
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        transport.loseConnection()


def _async_json(request: server.Request, coro: Any) -> int:
    """Answer ``request`` with the JSON result of ``coro`` (errors: 400/503 with ``{"error"}``)."""
    d = defer.ensureDeferred(coro)
    finished = request.notifyFinish()
    finished.addErrback(lambda _: None)

    def write(body: bytes) -> None:
        if not finished.called:
            request.write(body)
            request.finish()

    def ok(doc: Any) -> None:
        write(json_reply(request, clean(doc)))

    def failed(failure: Any) -> None:
        if failure.check(DashboardError):
            write(json_reply(request, {"error": str(failure.value)}, 400))
        elif failure.check(HistoryUnavailable):
            write(json_reply(request, {"error": str(failure.value)}, 503))
        else:
            log.error("dashboard request {uri} failed: {why}", uri=request.uri, why=failure.getTraceback())
            write(json_reply(request, {"error": f"internal error: {failure.getErrorMessage()}"}, 500))

    d.addCallbacks(ok, failed)
    return server.NOT_DONE_YET


class _File(resource.Resource):
    isLeaf = True

    def __init__(self, path: Path, content_type: str) -> None:
        super().__init__()
        self.body = path.read_bytes()
        self.content_type = content_type.encode()

    def render_GET(self, request):  # noqa: N802
        set_headers(request, self.content_type)
        request.setHeader(b"cache-control", b"max-age=3600" if b"javascript" in self.content_type else b"no-store")
        return self.body


class _Static(resource.Resource):
    def __init__(self, files: dict[str, tuple[Path, str]]) -> None:
        super().__init__()
        for name, (path, ctype) in files.items():
            self.putChild(name.encode(), _File(path, ctype))

    def getChild(self, path, request):  # noqa: N802
        return resource.NoResource("no such file")


class SseStream:
    """One open page's server-sent event stream.

    A page that stops reading (its socket's buffer full) gets at most :data:`MAX_BEHIND` more
    bytes; then the stream is closed, and the page's EventSource opens a new one.
    """

    def __init__(self, request: server.Request, watch: str | None,
                 allowed: Callable[[], bool] | None = None) -> None:
        self.request = request
        self.watch = watch
        self.allowed = allowed  #: asked at every keepalive: False (a logout) ends the stream
        self.closed = False
        self.behind: int | None = None  # bytes written since the transport asked us to pause
        request.registerProducer(self, True)

    # IPushProducer: the transport says when its buffer is full and when it drained
    def pauseProducing(self) -> None:  # noqa: N802
        if self.behind is None:
            self.behind = 0

    def resumeProducing(self) -> None:  # noqa: N802
        self.behind = None

    def stopProducing(self) -> None:  # noqa: N802
        self.closed = True

    def _write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.behind is not None:
            self.behind += len(data)
            if self.behind > MAX_BEHIND:
                self._drop()
                return
        self.request.write(data)

    def _drop(self) -> None:
        self.closed = True
        transport = self.request.channel.transport
        abort = getattr(transport, "abortConnection", None) or transport.loseConnection
        abort()  # drop the backlog now, not once it is written

    def send(self, event: str, data: Any) -> None:
        body = json.dumps(clean(data), allow_nan=False, separators=(",", ":"), default=str)
        self._write(f"event: {event}\ndata: {body}\n\n".encode())

    def keepalive(self) -> None:
        if self.allowed is not None and not self.allowed():
            self._drop()  # its session ended (logout elsewhere, expiry): the page finds out
            return
        self._write(b": keepalive\n\n")


class _Events(resource.Resource):
    isLeaf = True

    def __init__(self, dashboard: Dashboard, gate: LoginGate) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.gate = gate

    def render_GET(self, request):  # noqa: N802
        refused = refuse_unless_logged_in(self.gate, request)
        if refused is not None:
            return refused
        if len(self.dashboard.streams) >= MAX_STREAMS:
            return json_reply(request, {"error": f"too many open pages (at most {MAX_STREAMS})"}, 503)
        watch = arg(request, "watch") or None
        if watch is not None and len(watch) > 255:
            return json_reply(request, {"error": "watch: an agent address of at most 255 characters"}, 400)
        set_headers(request, b"text/event-stream")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 1000\n\n")
        token = session_token(request)
        stream = SseStream(request, watch, (lambda: self.gate.valid(token)) if self.gate.required else None)
        self.dashboard.add_stream(stream)

        def closed(_: Any) -> None:
            stream.closed = True
            self.dashboard.remove_stream(stream)

        request.notifyFinish().addBoth(closed)
        return server.NOT_DONE_YET


class _Api(resource.Resource):
    isLeaf = True

    def __init__(self, dashboard: Dashboard, gate: LoginGate) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.gate = gate

    def render(self, request):
        refused = refuse_unless_logged_in(self.gate, request)
        return refused if refused is not None else super().render(request)

    def render_GET(self, request):  # noqa: N802
        name = request.postpath[0].decode("utf-8", "replace") if request.postpath else ""
        d = self.dashboard
        try:
            if name == "site":
                return json_reply(request, clean(d.hello()))
            if name == "agent":
                return _async_json(request, d.agent_info(arg(request, "agent")))
            if name == "feed":
                max_points = _int(arg(request, "max_points"), "max_points")
                return json_reply(request, clean(d.feed_points(arg(request, "agent"), arg(request, "feed"),
                                                            max_points)))
            if name == "history":
                fields = arg(request, "fields")
                return _async_json(request, d.history.query(
                    arg(request, "address"), arg(request, "feed"),
                    [f for f in fields.split(",") if f] if fields else None,
                    _float(arg(request, "start"), "start"), _float(arg(request, "stop"), "stop"),
                    _int(arg(request, "max_points"), "max_points") or 2000))
        except DashboardError as exc:
            return json_reply(request, {"error": str(exc)}, 400)
        except HistoryUnavailable as exc:
            return json_reply(request, {"error": str(exc)}, 503)
        return json_reply(request, {"error": f"no API {name!r}"}, 404)

    def render_POST(self, request):  # noqa: N802
        name = request.postpath[0].decode("utf-8", "replace") if request.postpath else ""
        if name != "op":
            return json_reply(request, {"error": f"no API {name!r} for POST"}, 404)
        refused = refuse_post(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return json_reply(request, {"error": f"the body is not JSON: {exc}"}, 400)
        return _async_json(request, self.dashboard.op_request(body))


def _float(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise DashboardError(f"{name}={text!r} is not a number") from None


def _int(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise DashboardError(f"{name}={text!r} is not an integer") from None


def make_site(dashboard: Dashboard, gate: LoginGate | None = None) -> server.Site:
    """The Twisted web site of ``dashboard``; ``gate`` holds its key and logins (default: none
    needed)."""
    gate = gate if gate is not None else LoginGate(None)
    root = resource.Resource()
    root.putChild(b"", IndexPage(STATIC / "index.html", gate))
    root.putChild(b"auth", AuthApi(gate))
    root.putChild(b"static", _Static({n: (STATIC / n, t) for n, t in _STATIC_FILES.items()}))
    lib = plot_library()
    root.putChild(b"lib", _Static({"dygraph.js": (lib["dygraph.js"], "text/javascript"),
                                   "dygraph.css": (lib["dygraph.css"], "text/css")}))
    root.putChild(b"events", _Events(dashboard, gate))
    root.putChild(b"api", _Api(dashboard, gate))
    site = server.Site(root)
    site.requestFactory = BoundedRequest
    site.displayTracebacks = False
    site.log = lambda request: None  # no access log: one line per log event is the rule
    return site

