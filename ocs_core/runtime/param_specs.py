"""The ``ocs_core.param_specs`` management query: each op's ``@param`` declarations as JSON (pure).

A form (the dashboard's start form) needs each parameter's name, type, default, bounds and
choices. ocs 0.12's management procedure answers ``null`` to queries it does not know, so an
ocs agent answers this one with ``null`` and a client falls back to a free JSON field.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable

from ocs_core.runtime.params import ParamSpec

__all__ = ["PARAM_SPECS_QUERY", "encode_spec", "encode_param_specs"]

PARAM_SPECS_QUERY = "ocs_core.param_specs"

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict",
               tuple: "list"}


def _json_value(value: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` travels as JSON unchanged, else ``(False, repr(value))``."""
    if isinstance(value, float) and not math.isfinite(value):
        return False, repr(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, repr(value)
    return True, list(value) if isinstance(value, tuple) else value


def encode_spec(spec: ParamSpec) -> dict[str, Any]:
    """One declaration: ``{"name", "required", "default", "type", "choices", "min", "max",
    "doc", "cast", "check", "none_is_missing"}``; a default or choice that JSON cannot carry is
    given as its ``repr`` with ``"default_repr": true``."""
    out: dict[str, Any] = {"name": spec.key, "required": spec.required}
    if not spec.required:
        ok, value = _json_value(spec.default)
        out["default"] = value
        if not ok:
            out["default_repr"] = True
    else:
        out["default"] = None
    out["type"] = _TYPE_NAMES.get(spec.type, getattr(spec.type, "__name__", None)) if spec.type else None
    if spec.choices is not None:
        out["choices"] = [_json_value(c)[1] for c in spec.choices]
    else:
        out["choices"] = None
    out["min"], out["max"] = spec.min, spec.max
    out["doc"] = spec.doc
    out["cast"] = getattr(spec.cast, "__name__", repr(spec.cast)) if spec.cast else None
    out["check"] = spec.check is not None
    out["none_is_missing"] = spec.treat_none_as_missing
    return out


def encode_param_specs(ops: Iterable[Any]) -> dict[str, Any]:
    """``{op_name: {"params": [spec, ...] | None, "no_params": bool, "strays_dropped": bool}}``
    for objects with ``name`` and ``params`` (a list of :class:`ParamSpec`, or None when the op
    declares nothing and takes any params)."""
    out: dict[str, Any] = {}
    for op in ops:
        specs = op.params
        if specs is None:
            out[op.name] = {"params": None, "no_params": False, "strays_dropped": False}
            continue
        keys = {s.key for s in specs}
        out[op.name] = {"params": [encode_spec(s) for s in specs if not s.key.startswith("_")],
                        "no_params": "_" in keys, "strays_dropped": "_no_check_strays" in keys}
    return out
