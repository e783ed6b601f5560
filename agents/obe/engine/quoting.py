"""Quoting a bad value in an error text: at most ~100 characters, never a deep walk (numpy-free)."""
from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["show"]

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlevel = 3


def show(value: Any) -> str:
    """``repr(value)`` cut to about 100 characters (the engine's twin of ``ocs_core.runtime.text.brief``)."""
    text = _REPR.repr(value)
    return text if len(text) <= 100 else text[:97] + "..."
