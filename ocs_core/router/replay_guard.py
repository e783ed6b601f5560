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
forgotten first).

:class:`NonceMemory` is the pure part; :func:`install` touches crossbar internals and does
nothing (returning False) when they are not as expected: crossbar's own check then applies,
without replay refusal.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable

from ocs_core.framing.http_signing import SIGNED_FIELDS, SignatureCheck

__all__ = ["NonceMemory", "install", "MEMORY_S", "MAX_REMEMBERED"]

#: Longer than the whole acceptance span of a timestamp (window on both sides, see
#: ocs_core.router.auth.SIGNED_WINDOW_S = 10 s) plus margin.
MEMORY_S = 30.0
MAX_REMEMBERED = 200_000


class NonceMemory:
    """The ``(key, nonce)`` pairs accepted in the last ``memory_s`` seconds."""

    def __init__(self, memory_s: float = MEMORY_S, limit: int = MAX_REMEMBERED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.memory_s, self.limit, self._clock = memory_s, limit, clock
        self._seen: OrderedDict[tuple[bytes, bytes], float] = OrderedDict()

    def accept(self, key: bytes, nonce: bytes) -> bool:
        """Remember the pair and return True, or False if it was accepted within the span."""
        now, seen = self._clock(), self._seen
        self._forget_old(now)
        pair = (key, nonce)
        if pair in seen:
            return False
        seen[pair] = now
        if len(seen) > self.limit:
            seen.popitem(last=False)
        return True

    def seen(self, key: bytes, nonce: bytes) -> bool:
        """Whether this pair was accepted within the memory span."""
        self._forget_old()
        return (key, nonce) in self._seen

    def remember(self, key: bytes, nonce: bytes) -> None:
        self._seen[(key, nonce)] = self._clock()
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def _forget_old(self, now: float | None = None) -> None:
        horizon = (self._clock() if now is None else now) - self.memory_s
        seen = self._seen
        while seen:
            pair = next(iter(seen))
            if seen[pair] >= horizon:
                break
            del seen[pair]

    def __len__(self) -> int:
        return len(self._seen)


def install(memory: NonceMemory | None = None) -> bool:
    """Put the fast check and the replay refusal in front of crossbar's bridge handler; True if done."""
    try:
        from crossbar.bridge.rest.common import _CommonResource
    except ImportError:
        return False
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
        for name in SIGNED_FIELDS:
            args.pop(name, None)
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
