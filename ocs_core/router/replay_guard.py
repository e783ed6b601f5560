"""Refuse replayed signed requests at crossbar's HTTP bridge (installed in the router worker).

crossbar 26.10.1 checks a signed request's timestamp window but not its ``nonce`` or ``seq``,
so a captured request is accepted again within the window. :func:`install` wraps the bridge's
request handler in the router worker process: a signed request whose ``(key, nonce)`` the
bridge already accepted within :data:`MEMORY_S` is refused (HTTP 400, ``REST bridge signature
was invalid (replayed nonce).``). Only requests that passed crossbar's own checks are
remembered, so unsigned or badly signed traffic cannot fill the memory; it holds at most
:data:`MAX_REMEMBERED` nonces (the oldest are forgotten first).

:class:`NonceMemory` is the pure part; :func:`install` touches crossbar internals and does
nothing (returning False) when they are not as expected.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable

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

    def seen(self, key: bytes, nonce: bytes) -> bool:
        """Whether this pair was accepted within the memory span."""
        self._forget_old()
        return (key, nonce) in self._seen

    def remember(self, key: bytes, nonce: bytes) -> None:
        self._seen[(key, nonce)] = self._clock()
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def _forget_old(self) -> None:
        horizon = self._clock() - self.memory_s
        while self._seen:
            pair, at = next(iter(self._seen.items()))
            if at >= horizon:
                break
            del self._seen[pair]

    def __len__(self) -> int:
        return len(self._seen)


def install(memory: NonceMemory | None = None) -> bool:
    """Wrap crossbar's bridge handler so replayed signed requests are refused; True if done."""
    try:
        from crossbar.bridge.rest.common import _CommonResource
        from twisted.web import server
    except ImportError:
        return False
    original = getattr(_CommonResource, "_render_request", None)
    if original is None or getattr(original, "_ocs_replay_guard", False):
        return original is not None
    memory = memory or NonceMemory()

    def _render_request(self: Any, request: Any) -> Any:
        if not getattr(self, "_secret", None):
            return original(self, request)
        key = (request.args.get(b"key") or [b""])[0]
        nonce = (request.args.get(b"nonce") or [None])[0]
        if nonce is not None and memory.seen(key, nonce):
            return self._deny_request(request, 400, reason="replayed nonce", log_category="AR462")
        result = original(self, request)
        if result is server.NOT_DONE_YET and nonce is not None:
            memory.remember(key, nonce)
        return result

    _render_request._ocs_replay_guard = True  # type: ignore[attr-defined]
    _CommonResource._render_request = _render_request
    return True
