"""ControlClient: calls WAMP procedures through crossbar's HTTP caller bridge, over one keep-alive session.

Every request has a timeout, and every failure — router down, agent not registered, an error the
bridge reports inside an HTTP 200 — raises :class:`ControlClientError` with a message that names
the URL or instance and what to check.
"""
from __future__ import annotations

import itertools
import json
from typing import Any, Iterator

import requests
import requests.adapters

from ocs_core.runtime.codes import FEATURES_QUERY, START_AND_WAIT
from ocs_core.framing.http_signing import Signer

#: Seconds any single HTTP request may take (long waits are split into requests of this size).
DEFAULT_TIMEOUT = 10.0


class ControlClientError(RuntimeError):
    """A call through the HTTP bridge failed; ``str(exc)`` says what and what to check.

    Attributes:
        error_uri: the WAMP error URI (e.g. ``wamp.error.no_such_procedure``), or a
            ``client_http.error.*`` URI for transport problems.
        error_args: the error's positional arguments as the router sent them.
    """

    def __init__(self, message: str, error_uri: str, error_args: list | None = None,
                 error_kwargs: dict | None = None) -> None:
        super().__init__(message)
        self.error_uri = error_uri
        self.error_args = list(error_args or [])
        self.error_kwargs = dict(error_kwargs or {})


class ControlClient:
    """Calls on one agent (``<address_root>.<instance_id>``) through the HTTP bridge.

    Args:
        agent_address: e.g. ``observatory.fake-data1``.
        url: the bridge, e.g. ``http://127.0.0.1:8001/call``.
        timeout: seconds for each request.
        session: a ``requests.Session`` to share (one is made otherwise, ignoring proxy
            settings of the environment: the router is reached directly).
        signing: ``(key, secret)`` when the bridge requires signed requests (``hub.http_key``).
    """

    def __init__(self, agent_address: str, url: str, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None,
                 signing: tuple[str, str] | None = None) -> None:
        self.agent_address = agent_address
        self.url = url
        self.timeout = timeout
        self._signer = Signer(*signing) if signing else None
        self._seq = itertools.count(1)
        # On its own session the client signs in the session's adapter; on a shared one
        # (whose other requests must not be signed) it signs each POST itself.
        self._sign_each_post = session is not None and self._signer is not None
        if session is None:
            session = requests.Session()
            # Talk to the router directly: no proxy or netrc from the environment (a lab's
            # http_proxy would otherwise route bridge calls through the proxy), and no per-call
            # scan of os.environ (~0.4 ms a request).
            session.trust_env = False
            if self._signer is not None:
                adapter = _SigningAdapter(self._signer, self._seq)
                for prefix in ("http://", "https://"):
                    session.mount(prefix, adapter)
        self.http = session
        self._features: dict[str, Any] | None = None

    def features(self) -> dict[str, Any]:
        """What the agent serves beyond ocs 0.12 (management query ``ocs_core.features``).

        Asked once per client and cached; an ocs agent answers null, which gives ``{}``.
        """
        if self._features is None:
            answer = self.call(self.agent_address, FEATURES_QUERY)
            self._features = answer if isinstance(answer, dict) else {}
        return self._features

    def supports(self, action: str) -> bool:
        """True if the agent's ``.ops`` serves ``action`` beyond ocs's five."""
        actions = self.features().get("ops_actions")
        return isinstance(actions, list) and action in actions

    def call(self, procedure: str, *args: Any, request_timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Call ``procedure`` and return its single result; raise ControlClientError on failure."""
        body = json.dumps({"procedure": procedure, "args": list(args), "kwargs": kwargs}).encode()
        timeout = self.timeout if request_timeout is None else request_timeout
        try:
            # no Content-Type header, like ocs: the bridge allows that and checking one costs it
            # about 0.15 ms per call
            if self._sign_each_post:
                response = self._post_signed(body, timeout)
            else:
                response = self.http.post(self.url, data=body, timeout=timeout)
        except requests.Timeout:
            raise ControlClientError(f"no answer from {self.url} within {timeout:g} s calling "
                                     f"{procedure}; is the router overloaded or the agent stuck?",
                                     "client_http.error.timeout") from None
        except requests.RequestException as exc:
            raise ControlClientError(f"cannot reach the router's HTTP bridge at {self.url} "
                                     f"({type(exc).__name__}); is the router running? "
                                     "(`ocs-core router status`)",
                                     "client_http.error.connection_error",
                                     [f"Failed to connect to {self.url}"]) from None
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if response.status_code in (400, 401) and isinstance(reply, dict) and _refusal(reply):
            raise ControlClientError(f"the HTTP bridge at {self.url} refused the request: "
                                     f"{_refusal(reply)} ({reply.get('error')})",
                                     "client_http.error.request_refused",
                                     [f"Server replied with code {response.status_code}"])
        if response.status_code != 200 or not isinstance(reply, dict):
            raise ControlClientError(f"the HTTP bridge at {self.url} answered HTTP "
                                     f"{response.status_code}: {response.text[:200]!r}",
                                     "client_http.error.request_error",
                                     [f"Server replied with code {response.status_code}"])
        if "error" in reply:
            raise self._bridge_error(procedure, reply)
        result = reply.get("args") or [None]
        return result[0]

    def _post_signed(self, body: bytes, timeout: float) -> requests.Response:
        """POST ``body`` on a shared session with the signature's query parameters appended
        to the URL, sent as ``Session.request`` sends (its environment settings, not
        ``send``'s own proxy lookup; requests' own ``params=`` costs ~0.05 ms a call more)."""
        assert self._signer is not None
        prepared = self.http.prepare_request(requests.Request("POST", self.url, data=body))
        prepared.url = f"{prepared.url}?{self._signer.query(body, next(self._seq))}"
        settings = self.http.merge_environment_settings(prepared.url, {}, None, None, None)
        return self.http.send(prepared, timeout=timeout, allow_redirects=True, **settings)

    def _bridge_error(self, procedure: str, reply: dict) -> ControlClientError:
        uri = reply.get("error")
        args = reply.get("args") or []
        kwargs = reply.get("kwargs") or {}
        if uri == "wamp.error.no_such_procedure":
            msg = (f"agent {self.agent_address!r} is not registered on the router at {self.url} "
                   f"(no callee for {procedure}); is the agent running? (`ocs-core scan`)")
        elif uri == "wamp.error.not_authorized":
            msg = (f"the router at {self.url} refused {procedure}: the address_root or realm of "
                   "the site config does not match the router's")
        else:
            detail = "; ".join(str(a) for a in args) or "no detail"
            msg = f"{procedure} failed at {self.url}: {uri}: {detail}"
        return ControlClientError(msg, str(uri), args, kwargs)

    def special(self, name: str, **kwargs: Any) -> Any:
        """Call the agent's procedure ``<agent>.<name>`` with keyword arguments (ocs's name)."""
        return self.call(f"{self.agent_address}.{name}", **kwargs)

    def get_api(self) -> dict[str, Any]:
        """The agent's ``get_api`` description."""
        return self.call(self.agent_address, "get_api")

    def request(self, action: str, op_name: str, params: Any = None, timeout: float | None = None,
                request_timeout: float | None = None, **kwargs: Any) -> list:
        """One control request on ``<agent>.ops``; returns ``[code, message, session]``."""
        if action in ("wait", START_AND_WAIT):
            kwargs["timeout"] = timeout
        return self.call(f"{self.agent_address}.ops", action, op_name,
                         params if params is not None else {},
                         request_timeout=request_timeout, **kwargs)

    def close(self) -> None:
        self.http.close()


class _SigningAdapter(requests.adapters.HTTPAdapter):
    """Signs each request it sends: the signature's query goes into the target of the request
    line only (the ``request_url`` hook requests documents for subclasses). The request's own
    URL stays the same, so the ~8 parses requests and urllib3 make of it hit
    ``urllib.parse``'s cache (a URL that differed on every request cost ~25 µs a call)."""

    def __init__(self, signer: Signer, seq: Iterator[int]) -> None:
        super().__init__()
        self._signer, self._seq = signer, seq

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        return f"{super().request_url(request, proxies)}?{self._signer.query(body, next(self._seq))}"


def _refusal(reply: dict) -> str | None:
    """What to do about a bridge refusal of signing or address (None for other 400s)."""
    text = str(reply.get("error", ""))
    if "replayed nonce" in text:
        return "this signed request was already used (a replay)"
    if "signature" in text:
        return ("it requires signed requests (hub.http_key) and this one was unsigned, stale "
                "or signed with another secret; check the credentials file and the clock")
    if "IP address" in text:
        return ("it accepts loopback clients only (the site names no hub.http_key); run on "
                "the router's host or sign requests")
    return None
