"""Prior specifications for the OBE engine: checking them and drawing prior particles.

A prior spec is a one-key mapping: ``{"uniform": [lo, hi]}``, ``{"normal": [mu, sd]}``,
``{"loguniform": [lo, hi]}`` (0 < lo < hi) or ``{"fixed": value}``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .quoting import show

__all__ = ["PRIOR_KINDS", "check_prior_spec", "sample_prior"]

PRIOR_KINDS = ("uniform", "normal", "loguniform", "fixed")


def _real(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {show(value)}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {show(value)}")
    return v


def check_prior_spec(name: str, spec: Any) -> tuple[str, tuple[float, ...]]:
    """Validate one prior spec; returns ``(kind, numbers)``. ValueError names the parameter."""
    where = f"prior for parameter {show(name)}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ValueError(f"{where} must be a one-key object such as {{\"uniform\": [lo, hi]}}, "
                         f"got {show(spec)}")
    (kind, args), = spec.items()
    if kind not in PRIOR_KINDS:
        raise ValueError(f"{where}: unknown distribution {show(kind)}; use one of {', '.join(PRIOR_KINDS)}")
    if kind == "fixed":
        return kind, (_real(args, f"{where} 'fixed' value"),)
    if not isinstance(args, Sequence) or isinstance(args, str) or len(args) != 2:
        raise ValueError(f"{where}: {show(kind)} needs a list of two numbers, got {show(args)}")
    p, q = (_real(a, f"{where} {show(kind)} argument") for a in args)
    if kind in ("uniform", "loguniform") and not p < q:
        raise ValueError(f"{where}: {show(kind)} needs lo < hi, got [{p}, {q}]")
    if kind == "loguniform" and not p > 0:
        raise ValueError(f"{where}: 'loguniform' needs 0 < lo, got lo = {p}")
    if kind == "normal" and not q > 0:
        raise ValueError(f"{where}: 'normal' needs sd > 0, got sd = {q}")
    return kind, (p, q)


def sample_prior(specs: Mapping[str, Any], names: Sequence[str], n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` particles, parameters in the order of ``names``; shape ``(len(names), n)``."""
    missing = [p for p in names if p not in specs]
    if missing:
        raise ValueError(f"no prior given for parameter(s) {missing}")
    extra = [p for p in specs if p not in names]
    if extra:
        raise ValueError(f"prior given for unknown parameter(s) {show(extra)}; parameters are {list(names)}")
    out = np.empty((len(names), n))
    for row, name in enumerate(names):
        kind, args = check_prior_spec(name, specs[name])
        if kind == "uniform":
            out[row] = rng.uniform(args[0], args[1], n)
        elif kind == "normal":
            out[row] = rng.normal(args[0], args[1], n)
        elif kind == "loguniform":
            out[row] = np.exp(rng.uniform(math.log(args[0]), math.log(args[1]), n))
        else:
            out[row] = args[0]
    return out
