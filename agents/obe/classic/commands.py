"""Pure dispatcher for optbayesexpt's classic TCP commands: validate a request, call the backend.

No Twisted here. The TCP protocol (:mod:`agents.obe.classic.server`) feeds decoded JSON values to
:meth:`LegacyDispatcher.prepare`, which validates them on the caller's thread and returns either
an immediate :class:`Reply` (``ready``, ``done``, any validation error) or a :class:`BackendCall`
whose :meth:`BackendCall.run` does the (possibly slow) backend work and may run in a worker thread.

Commands match exactly (no substring matching). Reply values follow the reference: ``"OK"`` for
``ready``, ``done``, ``newdat`` and ``newrun``; whatever the backend returns for the getters and the
setting choices. Any bad request gets ``{"error": "<what was wrong>"}``; nothing is changed.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ocs_core.runtime.text import brief

__all__ = ["OBEBackend", "Reply", "BackendCall", "LegacyDispatcher", "COMMANDS", "ErrorLogger", "error"]

_log = logging.getLogger(__name__)

ErrorLogger = Callable[[str, BaseException], None]
"""Called once per unexpected backend exception with the command and the exception (traceback
in ``exc.__traceback__``), from the thread that ran the call."""


def _log_with_stdlib(command: str, exc: BaseException) -> None:
    _log.error("OBE backend failed on %r", command, exc_info=(type(exc), exc, exc.__traceback__))


@runtime_checkable
class OBEBackend(Protocol):
    """What the classic TCP commands need from an OBE engine holder.

    Return values may be numpy arrays or scalars; the encoder converts them (NaN/inf -> null).
    A method raises ``ValueError`` for bad input (e.g. wrong lengths); the message is sent back.
    The dispatcher may call these from worker threads: the owner makes them thread-safe.
    """

    def has_run(self) -> bool:
        """True once a run (an engine) exists."""

    def getset(self) -> Any:
        """All settings, ``(n_knobs, S)`` nested list."""

    def getpar(self) -> Any:
        """The particles, ``(n_dims, N)`` nested list."""

    def getcon(self) -> Any:
        """The model constants, as a list."""

    def getwgt(self) -> Any:
        """The particle weights, list of N."""

    def getmean(self) -> Any:
        """The posterior mean, list of n_dims."""

    def getstd(self) -> Any:
        """The posterior (population) standard deviation, list of n_dims."""

    def getcov(self) -> Any:
        """The posterior covariance, n_dims x n_dims nested list."""

    def optset(self) -> Any:
        """The optimal next setting, a list with one value per knob."""

    def goodset(self, pickiness: float | None) -> Any:
        """A utility-weighted random next setting (None: the run's default pickiness)."""

    def newdat(self, x: list[float], y: float | list[float], s: float | list[float]) -> Any:
        """Apply one measurement; raises ValueError for inconsistent lengths."""

    def newrun(self, message: dict[str, Any]) -> Any:
        """Start a new run from the whole request object (the site's newrun handler)."""


@dataclass(frozen=True)
class Reply:
    """A reply value to encode and send; ``done`` asks the owner to run its done-action."""

    value: Any
    done: bool = False


def error(message: str) -> Reply:
    """The error reply ``{"error": message}``."""
    return Reply({"error": message})


@dataclass(frozen=True)
class BackendCall:
    """A validated request that needs the backend; :meth:`run` may be called from any thread."""

    command: str
    function: Callable[[], Any]
    needs_run: bool
    backend: OBEBackend
    wrap: Callable[[Any], Any] | None = None
    log_error: ErrorLogger = _log_with_stdlib

    def run(self) -> Reply:
        """Call the backend and return the reply; never raises."""
        try:
            if self.needs_run and not self.backend.has_run():
                return error(f"{self.command}: no run exists yet; send newrun first")
            result = self.function()
        except ValueError as exc:
            return error(f"{self.command}: {exc}")
        except Exception as exc:  # noqa: BLE001 - report, log once, keep serving
            try:
                self.log_error(self.command, exc)
            except Exception:  # noqa: BLE001 - a broken logger must not break the reply
                pass
            return error(f"{self.command} failed: internal error in the OBE backend (logged)")
        return Reply(self.wrap(result) if self.wrap else result)


def _number(value: Any, name: str) -> float:
    """Return ``value`` as a finite float or raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large: {_show(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def _numbers(value: Any, name: str, *, scalar_ok: bool) -> float | list[float]:
    """A finite number (if ``scalar_ok``) or a non-empty list of finite numbers."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{name} must not be an empty list")
        return [_number(item, f"{name}[{i}]") for i, item in enumerate(value)]
    if scalar_ok:
        return _number(value, name)
    raise ValueError(f"{name} must be a list of numbers, got {_show(value)}")


def _show(value: Any) -> str:
    return brief(value, 60)


COMMANDS = ("getset", "getpar", "getpdf", "getcon", "getwgt", "getmean", "getstd", "getcov",
            "optset", "goodset", "newdat", "newrun", "ready", "done")
"""Every command the classic protocol knows."""

_GETTERS = {"getset": "getset", "getpar": "getpar", "getpdf": "getpar", "getcon": "getcon",
            "getwgt": "getwgt", "getmean": "getmean", "getstd": "getstd", "getcov": "getcov",
            "optset": "optset"}


class LegacyDispatcher:
    """Validates classic-protocol requests and turns them into backend calls.

    Args:
        backend: the object that owns the engine (see :class:`OBEBackend`).
        log_error: how unexpected backend exceptions are logged (default: the standard
            :mod:`logging` module, with the traceback).
    """

    def __init__(self, backend: OBEBackend, log_error: ErrorLogger | None = None) -> None:
        self.backend = backend
        self.log_error = log_error or _log_with_stdlib

    def _call(self, command: str, function: Callable[[], Any], needs_run: bool,
              wrap: Callable[[Any], Any] | None = None) -> BackendCall:
        return BackendCall(command, function, needs_run, self.backend, wrap, self.log_error)

    def prepare(self, request: Any) -> Reply | BackendCall:
        """Validate one decoded request; cheap, touches no backend state.

        Returns:
            A :class:`Reply` to send at once, or a :class:`BackendCall` to run (maybe in a thread).
        """
        if not isinstance(request, dict):
            return error(f"request must be a JSON object with a \"command\" key, got {type(request).__name__}")
        if "command" not in request:
            return error("request has no \"command\" key")
        command = request["command"]
        if not isinstance(command, str):
            return error(f"\"command\" must be a string, got {_show(command)}")
        backend = self.backend
        if command == "ready":
            return Reply("OK")
        if command == "done":
            return Reply("OK", done=True)
        if command in _GETTERS:
            return self._call(command, getattr(backend, _GETTERS[command]), True)
        if command == "goodset":
            pickiness = request.get("pickiness")
            if pickiness is not None:
                try:
                    pickiness = _number(pickiness, "pickiness")
                except ValueError as exc:
                    return error(f"goodset: {exc}")
                if pickiness < 0:
                    return error(f"goodset: pickiness must be >= 0, got {pickiness}")
            return self._call(command, lambda: backend.goodset(pickiness), True)
        if command == "newdat":
            missing = [key for key in ("x", "y", "s") if key not in request]
            if missing:
                return error(f"newdat: missing key(s) {', '.join(missing)}; needs x, y and s")
            try:
                x = _numbers(request["x"], "x", scalar_ok=True)
                y = _numbers(request["y"], "y", scalar_ok=True)
                s = _numbers(request["s"], "s", scalar_ok=True)
            except ValueError as exc:
                return error(f"newdat: {exc}")
            if any(value <= 0 for value in (s if isinstance(s, list) else [s])):
                return error(f"newdat: s (the uncertainty) must be > 0, got {_show(s)}")
            x_list = x if isinstance(x, list) else [x]
            return self._call(command, lambda: backend.newdat(x_list, y, s), True, lambda _result: "OK")
        if command == "newrun":
            message = dict(request)
            return self._call(command, lambda: backend.newrun(message), False, lambda _result: "OK")
        return error(f"unknown command {_show(command)}; known: {', '.join(COMMANDS)}")

    def handle(self, request: Any) -> Reply:
        """Validate and execute one request synchronously (convenience for callers without threads)."""
        prepared = self.prepare(request)
        return prepared.run() if isinstance(prepared, BackendCall) else prepared
