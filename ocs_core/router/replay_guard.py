"""Check signed requests at crossbar's HTTP bridge, faster than crossbar, and refuse replays.

crossbar 26.10.1 checks a signed request's timestamp window but not its ``nonce`` or ``seq``,
so a captured request is accepted again within the window. :func:`install` (run in the router
worker process) **replaces** crossbar's signature check of a signed bridge path with
:class:`~ocs_core.framing.http_signing.SignatureCheck` (the same checks, order and replies,
~4x faster), then refuses a request whose ``(key, nonce)`` it accepted within
:data:`MEMORY_S` (HTTP 400, ``REST bridge signature was invalid (replayed nonce).``), then
hands the request, without its signing parameters, to crossbar's own handler with signing off
for that one synchronous call (content type, body length, UTF-8, JSON: crossbar's checks).
Only requests whose signature verified are remembered, so unsigned or badly signed traffic
cannot fill the memory; it holds at most :data:`MAX_REMEMBERED` nonces (the oldest are
forgotten first), each for at least :data:`MEMORY_S`. It also has twisted parse a query with
nothing to unquote (a signed request's, from ``Signer``) without unquoting each field
(:func:`parse_plain_query`; the same result, in half the time), and check a request line's
target with one regular expression instead of a Python loop over its bytes
(:func:`install_request_line_parser`; the same lines accepted and refused).

:class:`NonceMemory` and :func:`parse_plain_query` are the pure parts; :func:`install` touches
crossbar internals and does nothing (returning False) when they are not as expected: crossbar's
own check then applies, without replay refusal.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from ocs_core.framing.http_signing import SIGNED_FIELDS, SignatureCheck

__all__ = ["NonceMemory", "install", "install_query_parser", "install_request_line_parser",
           "parse_plain_query", "MEMORY_S", "MAX_REMEMBERED"]

#: Longer than the whole acceptance span of a timestamp (window on both sides, see
#: ocs_core.router.auth.SIGNED_WINDOW_S = 10 s) plus margin.
MEMORY_S = 30.0
MAX_REMEMBERED = 200_000


class NonceMemory:
    """The ``(key, nonce)`` pairs accepted in the last ``memory_s`` seconds, at least.

    Two generations of pairs: new ones join the current generation, which becomes the
    previous one after ``memory_s`` (or when it holds half of ``limit``), and the previous
    one is then dropped whole. So a pair is remembered between ``memory_s`` and twice that
    (unless the memory fills: the oldest are forgotten first), at the cost of two set lookups
    per request: no timestamp, order or deletion per pair.
    """

    def __init__(self, memory_s: float = MEMORY_S, limit: int = MAX_REMEMBERED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.memory_s, self._clock = memory_s, clock
        self._generation_size = max(1, limit // 2)
        self._current: set[tuple[bytes, bytes]] = set()
        self._previous: set[tuple[bytes, bytes]] = set()
        self._since = clock()

    def accept(self, key: bytes, nonce: bytes) -> bool:
        """Remember the pair and return True, or False if it was accepted within the span."""
        if self._clock() - self._since >= self.memory_s:  # (per request: no call when not due)
            self._turn()
        pair = (key, nonce)
        if pair in self._current or pair in self._previous:
            return False
        if len(self._current) >= self._generation_size:
            self._previous, self._current = self._current, set()  # full: the oldest go first
        self._current.add(pair)
        return True

    def seen(self, key: bytes, nonce: bytes) -> bool:
        """Whether this pair is remembered."""
        self._turn()
        return (key, nonce) in self._current or (key, nonce) in self._previous

    def _turn(self) -> None:
        now = self._clock()
        if now - self._since >= self.memory_s:
            # the previous generation's pairs are all older than memory_s now; if the current
            # one is too (nothing accepted for a whole span), it goes as well
            stale = now - self._since >= 2 * self.memory_s
            self._previous, self._current = (set() if stale else self._current), set()
            self._since = now

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)


def parse_plain_query(qs: bytes, keep_blank_values: int = 0) -> dict[bytes, list[bytes]] | None:
    """``twisted.web.http.parse_qs(qs, keep_blank_values)`` for a query with nothing to unquote
    (no ``%`` or ``+``) and no ``;`` separators, as ``Signer``'s are, without its two unquotes
    and two replaces per field; None for any other query."""
    if b"%" in qs or b"+" in qs or b";" in qs:
        return None
    parsed: dict[bytes, list[bytes]] = {}
    for item in qs.split(b"&"):
        name, has_value, value = item.partition(b"=")
        if has_value and (value or keep_blank_values):
            if name in parsed:
                parsed[name].append(value)
            else:
                parsed[name] = [value]
    return parsed


def install_query_parser() -> None:
    """Make twisted parse request queries with :func:`parse_plain_query` when it can (the
    bridge's only requests with a query are signed ones) and its own ``parse_qs`` otherwise."""
    from twisted.web import http

    general = getattr(http.parse_qs, "_ocs_general", http.parse_qs)

    def parse_qs(qs: bytes, keep_blank_values: int = 0, strict_parsing: int = 0) -> dict:
        parsed = None if strict_parsing else parse_plain_query(qs, keep_blank_values)
        return general(qs, keep_blank_values, strict_parsing) if parsed is None else parsed

    parse_qs._ocs_general = general  # type: ignore[attr-defined]
    http.parse_qs = parse_qs


#: A request target as twisted accepts it: one or more bytes from ``!`` (33) to 176.
_REQUEST_TARGET = re.compile(rb"[\x21-\xb0]+")


def install_request_line_parser() -> None:
    """Make twisted check a request line's target with one regular expression instead of a
    Python loop over its bytes (~50 ns a byte; a signed request's target is ~140 bytes longer
    than an unsigned one's). The same lines are accepted and refused, for the same reason."""
    from twisted.web import http

    general = getattr(http, "_parseRequestLine", None)
    istoken = getattr(http, "_istoken", None)
    if general is None or istoken is None or getattr(general, "_ocs_fast", False):
        return  # not twisted's as known (left alone), or done already

    def parse_request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
        method, target, version = line.split(b" ")
        if not istoken(method):
            raise ValueError("Invalid method")
        if _REQUEST_TARGET.fullmatch(target) is None:
            raise ValueError("Empty request-target" if target == b"" else "Invalid request-target")
        if version != b"HTTP/1.1" and version != b"HTTP/1.0":
            raise ValueError("Invalid version")
        return method, target, version

    parse_request_line._ocs_fast = True  # type: ignore[attr-defined]
    parse_request_line._ocs_general = general  # type: ignore[attr-defined]
    http._parseRequestLine = parse_request_line


def install(memory: NonceMemory | None = None) -> bool:
    """Put the fast check and the replay refusal in front of crossbar's bridge handler; True if done."""
    try:
        from crossbar.bridge.rest.common import _CommonResource
    except ImportError:
        return False
    install_query_parser()
    install_request_line_parser()
    original = getattr(_CommonResource, "_render_request", None)
    if original is None or getattr(original, "_ocs_replay_guard", False):
        return original is not None
    memory = memory or NonceMemory()

    def _render_request(self: Any, request: Any) -> Any:
        secret = getattr(self, "_secret", None)
        if not secret:
            return original(self, request)
        check = getattr(self, "_ocs_check", None)
        if check is None:
            check = self._ocs_check = SignatureCheck(self._key or b"", secret, self._timestamp_delta_limit)
        body = request.content.read()
        request.content.seek(0)
        if self._post_body_limit and len(body) > self._post_body_limit:
            return original(self, request)  # crossbar refuses it (413) before any signature check
        args = request.args
        refusal = check.verify(args, body)
        if refusal is not None:
            return self._deny_request(request, refusal.code, reason=refusal.reason,
                                      log_category=refusal.category)
        if not memory.accept(args[b"key"][0], args[b"nonce"][0]):
            return self._deny_request(request, 400, reason="replayed nonce", log_category="AR462")
        request.args = {name: values for name, values in args.items() if name not in SIGNED_FIELDS}
        # Verified: crossbar's handler makes its other checks and the call; with its secret
        # set it would check the signature again. The handler runs synchronously up to the
        # call (one reactor thread), so signing is off for this call only.
        self._secret = None
        try:
            return original(self, request)
        finally:
            self._secret = secret

    _render_request._ocs_replay_guard = True  # type: ignore[attr-defined]
    _CommonResource._render_request = _render_request
    return True
