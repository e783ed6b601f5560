"""Snapshots of an OBE engine's posterior: format, checks, and the split for the run store.

A state is a dict: ``particles`` and ``weights`` (numpy arrays) plus JSON-able fields
(``format``, ``rng_state`` from ``Generator.bit_generator.state``, ``n_measurements``,
``n_resamples``, ``last_setting_index``, ``parameter_names``); with the resample-move step on,
also its statistics (arrays ``move_settings``, ``move_w``, ``move_ybar``, ``move_logpost`` and
the number ``move_offset``; a state without them turns the moves off).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["STATE_FORMAT", "check_state", "split_state", "join_state"]

STATE_FORMAT = "ocs-core-obe-state/1"
_STATE_ARRAYS = ("particles", "weights", "move_settings", "move_w", "move_ybar", "move_logpost")


def check_state(state: Any, bit_generator_type: type, n_settings: int) -> tuple[dict, int, int | None]:
    """Check the non-array part of a state; returns (rng_state, n_measurements, last index).

    The arrays are checked by ``ParticlePosterior.set_state``. Raises ValueError naming the field.
    """
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"state must be a mapping with format {STATE_FORMAT!r}")
    for key in ("particles", "weights", "rng_state", "n_measurements"):
        if key not in state:
            raise ValueError(f"state lacks {key!r}")
    rs = state["rng_state"]
    probe = bit_generator_type()
    try:
        probe.state = rs
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"state 'rng_state' does not fit {bit_generator_type.__name__}: {exc}") from None
    n_meas = state["n_measurements"]
    if isinstance(n_meas, bool) or not isinstance(n_meas, (int, np.integer)) or n_meas < 0:
        raise ValueError(f"state 'n_measurements' must be a non-negative int, got {n_meas!r}")
    last = state.get("last_setting_index")
    if last is not None and (isinstance(last, bool) or not isinstance(last, (int, np.integer))
                             or not 0 <= last < n_settings):
        raise ValueError(f"state 'last_setting_index' out of range: {last!r}")
    return rs, int(n_meas), None if last is None else int(last)


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split an engine state into (numpy arrays, JSON-able rest), e.g. for
    ``RunStore.save_snapshot(run_id, n, arrays, meta)``."""
    arrays = {k: np.asarray(state[k]) for k in _STATE_ARRAYS if k in state}
    return arrays, {k: v for k, v in state.items() if k not in _STATE_ARRAYS}


def join_state(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`split_state`."""
    return {**dict(meta), **{k: arrays[k] for k in _STATE_ARRAYS if k in arrays}}
