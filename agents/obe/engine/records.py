"""Input checks of the OBE engine (settings, y, sigma, noise, cost, pickiness); shaping model output.

Everything here raises ValueError with what was wrong before the engine changes any state.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .quoting import show

__all__ = ["as_channels", "check_setting", "check_y", "check_sigma", "check_positive_per_channel",
           "check_cost", "check_pickiness"]


def as_channels(out: Any, shape: tuple[int, ...], n_channels: int) -> np.ndarray:
    """Model output as a ``(C,) + shape`` float64 array this engine owns."""
    if n_channels == 1 and not isinstance(out, (tuple, list)):
        arr = out if isinstance(out, np.ndarray) else np.asarray(out, dtype=float)
        if arr.shape != shape or arr.dtype not in (np.float64, np.float32) or arr.base is not None \
                or not arr.flags.writeable:
            arr = np.array(np.broadcast_to(arr, shape), dtype=float)
        return arr[None]
    chans = list(out) if isinstance(out, (tuple, list)) else list(np.asarray(out))
    if len(chans) != n_channels:
        raise ValueError(f"model returned {len(chans)} channels, expected {n_channels}")
    res = np.empty((n_channels,) + shape)
    for c, ch in enumerate(chans):
        res[c] = np.broadcast_to(np.asarray(ch, dtype=float), shape)
    return res


def check_setting(settings: Any, n_knobs: int) -> tuple[float, ...]:
    """Settings as a tuple of n_knobs finite floats; ValueError otherwise."""
    if type(settings) is tuple and len(settings) == n_knobs and all(
            type(v) is float and math.isfinite(v) for v in settings):
        return settings  # the fast path: what the selection methods return
    try:
        vals = np.asarray(settings, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"settings must be {n_knobs} number(s), got {show(settings)}") from None
    if vals.size != n_knobs:
        raise ValueError(f"settings must have {n_knobs} value(s), got {show(settings)}")
    if not np.isfinite(vals).all():
        raise ValueError(f"settings must be finite, got {show(settings)}")
    return tuple(vals.tolist())


def check_y(y: Any, n_channels: int) -> list[float]:
    """A measured value per channel as a list of finite floats; ValueError otherwise."""
    if n_channels == 1 and type(y) in (float, int) and math.isfinite(y):
        return [float(y)]
    try:
        vals = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"y must be {n_channels} number(s), got {show(y)}") from None
    if vals.size != n_channels:
        raise ValueError(f"y must have {n_channels} value(s), got {show(y)}")
    if not np.isfinite(vals).all():
        raise ValueError(f"y must be finite, got {show(y)}")
    return vals.tolist()


def check_sigma(sigma: Any, c: int, n: int) -> list[float] | np.ndarray:
    """Sigma as a list of C floats (per channel) or a ``(C, N)`` array (per particle)."""
    if type(sigma) in (float, int) and math.isfinite(sigma) and sigma > 0:
        return [float(sigma)] * c
    if sigma is None:
        raise ValueError("sigma is required (the model has no noise parameter)")
    try:
        s = np.asarray(sigma, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be numbers, got {show(sigma)}") from None
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError("sigma must be finite and positive")
    if s.ndim == 0 or (s.ndim == 1 and s.size == c):
        return np.broadcast_to(s, (c,)).tolist()
    if s.ndim == 1 and s.size == n:
        return np.broadcast_to(s, (c, n))
    if s.shape != (c, n):
        raise ValueError(f"sigma must be a scalar, {c} per-channel values, {n} per-particle "
                         f"values or shape ({c}, {n}); got shape {s.shape}")
    return s


def check_positive_per_channel(value: Any, c: int, what: str) -> np.ndarray:
    """One positive finite number, or ``c`` of them, as a ``(c,)`` array."""
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, c)
    if arr.size != c or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{what} must be a positive number or {c} positive numbers, got {show(value)}")
    return arr


def check_pickiness(p: Any) -> float:
    """``good_setting``'s pickiness: a number in [0, 1000]."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(p)) or not 0.0 <= float(p) <= 1000.0:
        raise ValueError(f"pickiness must be a number in [0, 1000], got {show(p)}")
    return float(p)


def check_cost(cost: Any, n_settings: int) -> float | np.ndarray:
    """A measurement cost: one positive number, or one per grid setting."""
    arr = np.asarray(cost, dtype=float)
    if arr.ndim == 0:
        if not (math.isfinite(float(arr)) and arr > 0):
            raise ValueError(f"cost must be positive and finite, got {show(cost)}")
        return float(arr)
    arr = arr.ravel()
    if arr.size != n_settings or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"cost must be a positive number or {n_settings} positive values")
    return arr
