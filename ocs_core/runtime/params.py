"""Declarative operation parameters: ``@param`` specs and the checks run before an op starts.

Pure logic. Error texts follow ocs 0.12 where ocs has one, so scripts see familiar messages;
numeric bounds (``min``/``max``) are ours and name the bound that was broken.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ocs_core.runtime.text import brief

_MISSING = object()
PARAMS_ATTR = "_ocs_core_params"


class ParamError(Exception):
    """A parameter failed its declaration; the message says which and why."""


@dataclass
class ParamSpec:
    """One declared parameter of an operation."""

    key: str
    default: Any = _MISSING
    type: type | None = None
    cast: Callable[[Any], Any] | None = None
    choices: list[Any] | None = None
    check: Callable[[Any], bool] | None = None
    min: float | None = None
    max: float | None = None
    treat_none_as_missing: bool = True
    doc: str | None = field(default=None, compare=False)

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def apply(self, params: dict[str, Any]) -> Any:
        """Return the checked value of this parameter from ``params`` (default filled in)."""
        value = params.get(self.key, _MISSING)
        if value is None and self.treat_none_as_missing:
            value = _MISSING
        if value is _MISSING:
            if self.required:
                raise ParamError(f"Param '{self.key}' is required and must not be None")
            value = self.default
        if value is None:
            return None
        return self.check_value(value)

    def check_value(self, value: Any) -> Any:
        key = self.key
        if self.cast is not None:
            try:
                value = self.cast(value)
            except Exception:
                raise ParamError(f"Param '{key}'={brief(value)} could not be cast to {self.cast!r}.") from None
        if self.type is not None:
            value = _coerce_type(key, value, self.type)
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"Param '{key}'={brief(value)} is not a finite number")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"Param '{key}'={brief(value)} is not in allowed set ({self.choices!r})")
        if self.min is not None and value < self.min:
            raise ParamError(f"Param '{key}'={brief(value)} is below the minimum ({self.min!r})")
        if self.max is not None and value > self.max:
            raise ParamError(f"Param '{key}'={brief(value)} is above the maximum ({self.max!r})")
        if self.check is not None:
            try:
                ok = self.check(value)
            except Exception:
                ok = False
            if not ok:
                raise ParamError(f"Param '{key}' failed validity check (see docs?).")
        return value


def _coerce_type(key: str, value: Any, want: type) -> Any:
    if want is float and isinstance(value, (int, float)):
        return float(value)
    if want is int and isinstance(value, bool):
        return int(value)
    if want is tuple and isinstance(value, list):
        return tuple(value)
    if want is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, want):
        raise ParamError(f"Param '{key}'={brief(value)} is not of required type ({want!r})")
    return value


def param(key: str, default: Any = _MISSING, *, type: type | None = None,
          cast: Callable[[Any], Any] | None = None, choices: list[Any] | None = None,
          check: Callable[[Any], bool] | None = None, min: float | None = None,
          max: float | None = None, treat_none_as_missing: bool = True,
          doc: str | None = None) -> Callable[[Callable], Callable]:
    """Declare a parameter of an operation's start function.

    A parameter without ``default`` is required. ``param('_')`` declares that the op takes no
    parameters; ``param('_no_check_strays')`` drops undeclared parameters instead of rejecting them.
    The declaration is checked here: a default that breaks its own rules raises at import time.
    """
    spec = ParamSpec(key, default, type, cast, choices, check, min, max, treat_none_as_missing, doc)
    if not key.startswith("_") and not spec.required and spec.default is not None:
        try:
            spec.check_value(spec.default)
        except ParamError as exc:
            raise ValueError(f"default of param '{key}' breaks its own declaration: {exc}") from None

    def decorate(func: Callable) -> Callable:
        specs = getattr(func, PARAMS_ATTR, None)
        if specs is None:
            specs = []
            setattr(func, PARAMS_ATTR, specs)
        specs.insert(0, spec)  # decorators apply bottom-up; keep the written order
        return func

    return decorate


def declared_params(func: Callable) -> list[ParamSpec] | None:
    """The specs declared on ``func`` (or on the function behind a bound method), or None."""
    return getattr(func, PARAMS_ATTR, None)


def non_finite(value: Any, name: str = "params") -> str | None:
    """Where ``value`` holds a NaN or an infinity (e.g. ``params['x'][2]``), or None.

    JSON has no such numbers; crossbar's HTTP bridge accepts them (Python's ``json`` does) and
    CBOR carries them, so they are refused at the op boundary, before any state holds them.
    """
    stack: list[Any] = [value]
    while stack:  # fast pass: is there one at all?
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                break
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    else:
        return None
    paths: list[tuple[Any, str]] = [(value, name)]
    while paths:  # slow pass: name it
        item, path = paths.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path
        if isinstance(item, dict):
            paths.extend((v, f"{path}[{brief(k)}]") for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            paths.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def validate_params(specs: list[ParamSpec], params: Any) -> dict[str, Any]:
    """Check ``params`` against ``specs`` and return exactly the declared keys, defaults filled in.

    Raises:
        ParamError: naming the parameter and the rule it broke, or the unexpected keys.
    """
    if params is None or params == []:
        params = {}
    if not isinstance(params, dict):
        raise ParamError(f"params must be an object of name: value pairs, not {type(params).__name__}")
    keys = {s.key for s in specs}
    no_params = "_" in keys
    drop_strays = "_no_check_strays" in keys
    strays = sorted(k for k in params if k not in keys)
    if strays and not drop_strays:
        raise ParamError(f"params included unexpected values: {brief(strays)}")
    if no_params:
        return {}
    return {s.key: s.apply(params) for s in specs if not s.key.startswith("_")}
