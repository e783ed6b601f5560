"""Quoting values in error texts and log lines, boundedly (pure: no Twisted).

An error reply that echoes the bad value in full lets one request make the reply (and the
log) as large as the request: a 1 MB ``delay`` string made a 5 MB reply. :func:`brief` quotes
at most about :data:`QUOTE_LIMIT` characters of any value, without ever walking a deep or large
structure (``reprlib`` stops at a few levels and a few items).
"""
from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["QUOTE_LIMIT", "brief"]

#: Characters of a bad value an error text quotes.
QUOTE_LIMIT = 100

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = QUOTE_LIMIT
_REPR.maxother = QUOTE_LIMIT
_REPR.maxlong = 40
for _name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_REPR, _name, 8)

_UNITS = {str: "characters", bytes: "bytes", bytearray: "bytes"}


def brief(value: Any, limit: int = QUOTE_LIMIT, *, quote: bool = True) -> str:
    """``repr(value)`` (or the string itself, with ``quote=False``) cut to about ``limit`` characters.

    A cut text ends with ``...`` and, for strings, bytes and containers, their full size, e.g.
    ``'xxxxxxxx...' (1048576 characters)``.
    """
    if isinstance(value, str) and not quote:
        text = value
    else:
        try:
            text = _REPR.repr(value)
        except Exception:  # noqa: BLE001 - a broken __repr__ must not break an error message
            text = f"<{type(value).__name__} object>"
    suffix = ""
    if isinstance(value, (str, bytes, bytearray)) and len(value) > limit:
        suffix = f" ({len(value)} {_UNITS[type(value)]})"
    elif isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > 8:
        suffix = f" ({len(value)} items)"
    if len(text) > limit:
        text = text[:max(limit - 3, 1)] + "..."
    return text + suffix
