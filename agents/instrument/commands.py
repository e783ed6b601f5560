"""The command registry of instrument servers: the ``@command`` decorator, argument checks, results.

Pure Python (no Twisted). A command is a callable taking the request's string arguments. Its
parameters' annotations say how to convert them: ``float`` (finite numbers only), ``int``,
``bool`` (``1/0, true/false, yes/no, on/off``) or ``str`` (the default); a wrong count or an
unconvertible value is a :class:`CommandError` that names the parameter and the value.
"""
from __future__ import annotations

import inspect
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ocs_core.runtime.text import brief

_MARK = "_instrument_command"


class CommandError(Exception):
    """Raise in a command to reply ``0\\t<command>: <message>`` (an expected, clean failure)."""


@dataclass(frozen=True)
class _Param:
    name: str
    convert: Callable[[str], Any]
    type_name: str
    required: bool


@dataclass(frozen=True)
class CommandSpec:
    """One registered command.

    Attributes:
        name: the command word on the wire.
        func: the callable (bound, for methods).
        hardware: True: runs in a worker thread holding the hardware lock, and only while the
            hardware is connected. False: runs in the reactor thread and must not block; it may
            return a Deferred or be a coroutine function.
        timeout: its deadline in seconds (None: the server's default).
        help: one line shown by ``command_list``.
    """

    name: str
    func: Callable[..., Any]
    hardware: bool = True
    timeout: float | None = None
    help: str = ""
    params: tuple[_Param, ...] = field(default=(), repr=False)
    varargs: bool = field(default=False, repr=False)

    def usage(self) -> str:
        """``name <a:float> [b:str] ...`` for help texts and error messages."""
        parts = [self.name]
        for p in self.params:
            parts.append(f"<{p.name}:{p.type_name}>" if p.required else f"[{p.name}:{p.type_name}]")
        if self.varargs:
            parts.append("...")
        return " ".join(parts)

    def bind(self, args: Sequence[str]) -> list[Any]:
        """Check the argument count and convert each argument; raise :class:`CommandError`."""
        n_req = sum(p.required for p in self.params)
        if len(args) < n_req or (len(args) > len(self.params) and not self.varargs):
            want = f"{n_req}" if n_req == len(self.params) else f"{n_req} to {len(self.params)}"
            if self.varargs:
                want = f"at least {n_req}"
            raise CommandError(f"takes {want} argument(s), got {len(args)} (usage: {self.usage()})")
        out: list[Any] = []
        for i, raw in enumerate(args):
            if i >= len(self.params):
                out.append(raw)
                continue
            p = self.params[i]
            try:
                out.append(p.convert(raw))
            except (TypeError, ValueError):
                raise CommandError(f"argument {p.name} must be {_ARTICLE[p.type_name]}, got {brief(raw)}") from None
        return out


def command(name: str | None = None, *, hardware: bool = True, timeout: float | None = None,
            help: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method of an :class:`~agents.instrument.server.InstrumentServer` as a command.

    Args:
        name: the command word (default: the method's name).
        hardware: see :class:`CommandSpec` (default True: a blocking call in a worker thread).
        timeout: deadline in seconds (default: the server's).
        help: one-line description (default: the first line of the docstring).
    """
    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, _MARK, {"name": name or func.__name__, "hardware": hardware,
                              "timeout": timeout, "help": help})
        return func
    return mark


def make_spec(func: Callable[..., Any], name: str, *, hardware: bool = True,
              timeout: float | None = None, help: str | None = None) -> CommandSpec:
    """Build a :class:`CommandSpec` from a callable (a bound method or a plain function)."""
    if not name or any(ch.isspace() for ch in name):
        raise ValueError(f"command name {name!r} must be a non-empty word without whitespace")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout of command {name!r} must be positive, got {timeout!r}")
    sig = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: treat every argument as a string
        hints = {}
    params: list[_Param] = []
    varargs = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            varargs = True
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            convert, type_name = _converter(hints.get(p.name, str))
            params.append(_Param(p.name, convert, type_name, p.default is p.empty))
    doc = inspect.getdoc(func) or ""
    return CommandSpec(name, func, hardware, timeout, help if help is not None else doc.split("\n")[0],
                       tuple(params), varargs)


def collect(obj: object) -> dict[str, CommandSpec]:
    """The commands marked with :func:`command` on ``obj``'s class and its bases, bound to ``obj``.

    A subclass may redefine a command name; the most derived definition wins.
    """
    found: dict[str, CommandSpec] = {}
    for klass in reversed(type(obj).__mro__):
        for attr, value in vars(klass).items():
            mark = getattr(value, _MARK, None)
            if mark is not None:
                found[mark["name"]] = make_spec(getattr(obj, attr), mark["name"], hardware=mark["hardware"],
                                                timeout=mark["timeout"], help=mark["help"])
    return found


def format_result(value: Any) -> tuple[object, ...]:
    """Turn a command's return value into reply fields.

    ``None`` -> no field; a list or tuple -> one field per item; a dict -> one JSON field;
    a float -> its shortest round-trip text; numpy scalars like Python numbers; bool -> 1 or 0.
    """
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(_scalar(v) for v in value)
    if isinstance(value, dict):
        return (json.dumps(value, sort_keys=True, default=_scalar),)
    return (_scalar(value),)


def _scalar(v: Any) -> object:
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        try:
            v = v.item()  # numpy scalar -> Python scalar
        except (TypeError, ValueError):
            pass
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return v


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


_CONVERTERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    float: (_finite_float, "float"), int: (lambda s: int(s.strip()), "int"),
    bool: (_bool, "bool"), str: (str, "str"),
}
_ARTICLE = {"float": "a finite number", "int": "an integer", "bool": "a boolean (1/0, true/false)",
            "str": "a string"}


def _converter(annotation: Any) -> tuple[Callable[[str], Any], str]:
    if annotation in _CONVERTERS:
        return _CONVERTERS[annotation]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and args[0] in _CONVERTERS:  # Optional[float] and the like
        return _CONVERTERS[args[0]]
    return _CONVERTERS[str]
