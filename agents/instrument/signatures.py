"""Command signatures for the instrument agent: usage parsing, Task params, reply decoding.

Pure logic (no Twisted, no network). A signature is written the way the server's ``help`` prints
it — ``name <a:float> [b:str] ...`` (``<>`` required, ``[]`` optional, ``...`` any number of extra
arguments) — and becomes the ``@param`` declarations of the Task that sends the command::

    >>> sig = parse_usage("measure <x:float>")
    >>> sig.arguments({"x": 2.5})
    ['2.5']
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ocs_core.runtime.params import ParamError, ParamSpec
from ocs_core.runtime.text import brief

__all__ = ["Arg", "Signature", "parse_usage", "parse_command_specs", "parse_help", "decode_value",
           "KNOWN_USAGES", "DEFAULT_COMMANDS", "RESERVED"]

#: Usages of the built-in commands and of the simulated instrument's commands.
KNOWN_USAGES: dict[str, str] = {
    "ping": "ping",
    "connect_hardware": "connect_hardware",
    "disconnect_hardware": "disconnect_hardware",
    "shutdown": "shutdown",
    "command_list": "command_list",
    "help": "help [name:str]",
    "measure": "measure <x:float>",
    "read": "read",
    "set": "set <x:float>",
    "set_noise": "set_noise <sigma:float>",
    "set_delay": "set_delay <seconds:float>",
    "get_config": "get_config",
}
#: The Tasks an instrument agent exposes when the site config gives no ``--commands``.
DEFAULT_COMMANDS = ("ping,measure,read,set,set_noise,set_delay,get_config,"
                    "connect_hardware,disconnect_hardware")
#: Op names the agent uses itself: no server command may be exposed under them.
RESERVED = frozenset({"command", "acq"})

_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARG = re.compile(r"^(<([A-Za-z_][A-Za-z0-9_]*):([a-z]+)>|\[([A-Za-z_][A-Za-z0-9_]*):([a-z]+)\])$")


@dataclass(frozen=True)
class Arg:
    """One positional argument of a command."""

    name: str
    type_name: str = "str"
    required: bool = True

    @property
    def usage(self) -> str:
        text = f"{self.name}:{self.type_name}"
        return f"<{text}>" if self.required else f"[{text}]"


@dataclass(frozen=True)
class Signature:
    """A command's name and arguments, and how a Task's params map onto them.

    ``varargs`` commands take a list param ``args`` after the named ones. A command declared by
    bare name that the agent does not know (``declared=False``) also takes ``args``, passed as is.
    """

    name: str
    args: tuple[Arg, ...] = ()
    varargs: bool = False
    declared: bool = True
    description: str = field(default="", compare=False)

    def usage(self) -> str:
        """The usage text, as the server's ``help`` prints it."""
        parts = [self.name, *(a.usage for a in self.args)]
        if self.varargs:
            parts.append("...")
        return " ".join(parts)

    def call_form(self) -> str:
        """``name(x, y=None, args=[])``: the first docstring line, as ocs agents write it."""
        parts = [a.name if a.required else f"{a.name}=None" for a in self.args]
        if self.varargs:
            parts.append("args=[]")
        return f"{self.name}({', '.join(parts)})"

    def docstring(self, description: str | None = None) -> str:
        """The Task's docstring: call form, what it does, the server usage."""
        text = description if description is not None else self.description
        body = text or f"Send {self.name!r} to the instrument server."
        return (f"{self.call_form()}\n\n**Task** - {body}\n\n"
                f"Server command: ``{self.usage()}``. ``session.data`` holds the params, "
                f"``value`` (the decoded reply), ``reply`` (its raw text) and ``timestamp``.")

    def param_specs(self) -> list[ParamSpec]:
        """The ``@param`` declarations of the Task."""
        specs = [ParamSpec(a.name, type=_TYPES[a.type_name]) if a.required
                 else ParamSpec(a.name, default=None, type=_TYPES[a.type_name]) for a in self.args]
        if self.varargs:
            specs.append(ParamSpec("args", default=None, type=list))
        if not specs:
            specs.append(ParamSpec("_"))  # takes no params: reject any
        return specs

    def arguments(self, params: dict[str, Any]) -> list[str]:
        """The request arguments for checked ``params`` (strings, in order).

        Raises:
            ParamError: an optional argument is given after one that was left out, or an
                ``args`` item is not a number, string or boolean.
        """
        out: list[str] = []
        skipped: str | None = None
        for a in self.args:
            value = params.get(a.name)
            if value is None:
                if a.required:
                    raise ParamError(f"Param '{a.name}' is required and must not be None")
                skipped = skipped or a.name
                continue
            if skipped is not None:
                raise ParamError(f"Param '{a.name}' needs '{skipped}' too: {self.name} takes its "
                                 f"arguments in order ({self.usage()})")
            out.append(_text(a.name, value))
        extra = params.get("args") or []
        if extra and skipped is not None:
            raise ParamError(f"Param 'args' needs '{skipped}' too ({self.usage()})")
        out.extend(_text(f"args[{i}]", v) for i, v in enumerate(extra))
        return out


def _text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamError(f"Param '{name}'={brief(value)} is not a finite number")
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    raise ParamError(f"Param '{name}'={brief(value)} must be a number, string or boolean")


def parse_usage(text: str) -> Signature:
    """Parse ``name <a:float> [b:str] ...``.

    Raises:
        ValueError: naming the part that is malformed.
    """
    tokens = text.split()
    if not tokens:
        raise ValueError("empty command signature")
    name, rest = tokens[0], tokens[1:]
    if not _NAME.match(name):
        raise ValueError(f"bad command name {name!r} in {text!r} (letters, digits and _ only)")
    args: list[Arg] = []
    varargs = False
    for i, token in enumerate(rest):
        if token == "..." and i == len(rest) - 1:
            varargs = True
            continue
        m = _ARG.match(token)
        if m is None:
            raise ValueError(f"bad argument {token!r} in {text!r}: write <name:type> (required), "
                             f"[name:type] (optional) or a final ...")
        required = m.group(2) is not None
        arg_name, type_name = (m.group(2), m.group(3)) if required else (m.group(4), m.group(5))
        if type_name not in _TYPES:
            raise ValueError(f"bad type {type_name!r} of argument {arg_name!r} in {text!r} "
                             f"(one of {', '.join(_TYPES)})")
        if required and args and not args[-1].required:
            raise ValueError(f"required argument {arg_name!r} after an optional one in {text!r}")
        if arg_name == "args" or any(a.name == arg_name for a in args):
            raise ValueError(f"argument name {arg_name!r} repeated or reserved in {text!r}")
        args.append(Arg(arg_name, type_name, required))
    return Signature(name, tuple(args), varargs)


def parse_command_specs(items: Iterable[str]) -> list[Signature]:
    """The agent's ``--commands``: items separated by commas, each a bare name or a usage.

    A bare name takes its usage from :data:`KNOWN_USAGES`; an unknown bare name becomes a command
    with a free ``args`` list.

    Raises:
        ValueError: a malformed usage, a duplicate, or a reserved name (``command``, ``acq``).
    """
    out: list[Signature] = []
    seen: set[str] = set()
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if " " not in part and part not in KNOWN_USAGES:
                sig = parse_usage(part)
                sig = Signature(sig.name, varargs=True, declared=False)
            else:
                sig = parse_usage(KNOWN_USAGES.get(part, part))
            if sig.name in RESERVED:
                raise ValueError(f"command {sig.name!r} cannot be a Task of its own ({', '.join(sorted(RESERVED))} "
                                 "are the agent's ops); call it with the 'command' Task")
            if sig.name in seen:
                raise ValueError(f"command {sig.name!r} is listed twice")
            seen.add(sig.name)
            out.append(sig)
    return out


def parse_help(fields: Sequence[str]) -> dict[str, tuple[str, str]]:
    """The server's ``help`` reply as ``{name: (usage, description)}`` (unreadable lines skipped)."""
    out: dict[str, tuple[str, str]] = {}
    for line in fields:
        usage, _, description = line.partition(": ")
        name = usage.split(" ", 1)[0].strip()
        if name:
            out[name] = (usage.strip(), description.strip())
    return out


def decode_value(fields: Sequence[str]) -> Any:
    """A reply's data as a value: ``None`` (no data), a number, a JSON object, text, or a list of these."""
    if not fields or fields == ("",) or fields == [""]:
        return None
    if len(fields) > 1:
        return [_decode_one(f) for f in fields]
    return _decode_one(fields[0])


def _decode_one(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return int(number) if re.fullmatch(r"[+-]?\d+", text.strip()) else number
        return text
    if text.startswith("{") and text.endswith("}"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
