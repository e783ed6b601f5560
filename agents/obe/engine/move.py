"""Resample-move for the OBE engine: a Metropolis-Hastings correction of the Liu-West kernel.

Pure numpy. After a resample, each particle's Liu-West proposal is accepted or rejected
against the full posterior ``prior x prod_k L_k**choke`` over every accepted measurement, so
the cloud keeps the posterior instead of the kernel's smoothed (and, with ``scale=False``,
widened) version. The likelihood of all measurements is kept as sufficient statistics per
distinct setting: for Gaussian noise ``sum_k w_k (f - y_k)**2 = W (f - ybar)**2 + const``
with ``w = 1 / sigma**2``, so one step costs N x (distinct settings) model values, whatever
the number of measurements. Each particle's log target is carried along (every update adds
its log likelihood), so only the proposals are evaluated.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .priors import check_prior_spec

__all__ = ["ExactMove", "log_prior_from_specs", "MOVE_BUDGET"]

#: Model values (particles x distinct settings x steps) one resample may spend on moves.
MOVE_BUDGET = 4_000_000
_BLOCK_VALUES = 16384  # model values per model call (128 kB of float64: faster than 64 or 512 kB here)

LogPrior = Callable[[tuple], np.ndarray]


def log_prior_from_specs(specs: Mapping[str, Any], names: Sequence[str]) -> LogPrior:
    """The log density (up to a constant) of independent prior specs, parameters in ``names``
    order: a function of a tuple of arrays returning ``(N,)``, ``-inf`` outside the support."""
    if sorted(specs) != sorted(names):
        raise ValueError(f"log_prior must give one prior spec per parameter {list(names)}, "
                         f"got {sorted(specs)}")
    parts = [(i, *check_prior_spec(name, specs[name])) for i, name in enumerate(names)]

    def log_prior(params: tuple) -> np.ndarray:
        out = np.zeros(np.shape(params[0]))
        for i, kind, args in parts:
            x = params[i]
            if kind == "normal":
                out -= 0.5 * ((x - args[0]) / args[1]) ** 2
            elif kind == "fixed":
                out[np.abs(x - args[0]) > 1e-9 * max(1.0, abs(args[0]))] = -np.inf
            else:
                out[(x < args[0]) | (x > args[1])] = -np.inf
                if kind == "loguniform":
                    with np.errstate(divide="ignore", invalid="ignore"):
                        out -= np.log(np.where(x > 0, x, np.nan))
        return np.nan_to_num(out, nan=-np.inf)

    return log_prior


class ExactMove:
    """The log posterior of every particle, and the Metropolis-Hastings step of a resample.

    Args:
        log_prior: ``f(params tuple) -> (N,)`` log prior density (constant offsets do not matter).
        evaluate: ``f(settings (K, u), x (P, N)) -> (C, N, u)``: model values of the particles
            at u settings at once (the grid broadcast of the model functions).
        n_channels, choke: as in the engine.
        steps: MH steps per resample (0: off).
        budget: at most this many model values per resample; fewer steps when the distinct
            settings make a step dearer, none (plain Liu-West, counted in ``n_skipped``) when
            one step would exceed it.
    """

    def __init__(self, log_prior: LogPrior, evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 n_channels: int, choke: float, steps: int = 1, budget: int = MOVE_BUDGET) -> None:
        self.log_prior = log_prior
        self._evaluate = evaluate
        self.n_channels = int(n_channels)
        self.choke = float(choke)
        self.steps = int(steps)
        self.budget = int(budget)
        self.enabled = self.steps > 0
        self._index: dict[tuple, int] = {}
        self._settings: list[tuple] = []
        self._w = np.zeros((0, self.n_channels))     # sum of 1/sigma**2 per setting and channel
        self._ybar = np.zeros((0, self.n_channels))  # weighted mean of y per setting and channel
        self._offset = 0.0  # carried log target minus (log prior + sufficient-statistics form)
        self.logpost: np.ndarray | None = None  # per particle, aligned with the posterior's
        self.n_moves = self.n_skipped = 0
        self.n_proposed = self.n_accepted = 0

    @property
    def n_settings(self) -> int:
        """Distinct settings measured so far."""
        return len(self._settings)

    def disable(self) -> None:
        """Stop moving: the target no longer describes the particles (e.g. a replaced cloud,
        per-particle sigma)."""
        self.enabled = False
        self.logpost = None

    # ------------------------------------------------------------------ measurements
    def record(self, setting: tuple, y: Sequence[float], sigma: Sequence[float],
               exponent: np.ndarray) -> tuple | None:
        """Add one measurement; ``exponent`` is its log likelihood per particle (what the
        engine computed). Returns a token for :meth:`undo`."""
        if not self.enabled:
            return None
        w = np.array([1.0 / (s * s) for s in sigma])
        yv = np.asarray(y, dtype=float)
        i = self._index.get(setting)
        token = (setting, i, None if i is None else (self._w[i].copy(), self._ybar[i].copy()),
                 self._offset, self.logpost is not None)
        if i is None:
            i = self._index[setting] = len(self._settings)
            self._settings.append(setting)
            self._w = np.vstack([self._w, np.zeros(self.n_channels)])
            self._ybar = np.vstack([self._ybar, np.zeros(self.n_channels)])
        w_old, ybar_old = self._w[i].copy(), self._ybar[i]
        w_new = w_old + w
        self._ybar[i] = (w_old * ybar_old + w * yv) / w_new
        self._w[i] = w_new
        # W'(f - ybar')^2 = W (f - ybar)^2 + w (f - y)^2 - W w / W' (ybar - y)^2
        self._offset -= 0.5 * self.choke * float(np.sum(w_old * w / w_new * (ybar_old - yv) ** 2))
        if self.logpost is not None:
            self.logpost += exponent
        return token

    def undo(self, token: tuple | None) -> None:
        """Take back the measurement of :meth:`record` (it was not applied)."""
        if token is None:
            return
        setting, i, old, offset, _ = token
        if i is None:
            j = self._index.pop(setting)
            self._settings.pop(j)
            self._w, self._ybar = self._w[:j], self._ybar[:j]
        else:
            self._w[i], self._ybar[i] = old
        self._offset = offset
        self.logpost = None  # recomputed at the next resample

    def log_target(self, x: np.ndarray) -> np.ndarray:
        """Log posterior (up to the carried constant) of particles ``x`` (P, N)."""
        with np.errstate(all="ignore"):  # proposals outside the support: -inf, no warnings
            out = np.array(np.broadcast_to(self.log_prior(tuple(x)), (x.shape[1],)), dtype=float)
            k = -0.5 * self.choke
            u = len(self._settings)
            per = max(1, _BLOCK_VALUES // x.shape[1])  # settings per model call
            grid = np.array(self._settings, dtype=float).T if u else None
            for i in range(0, u, per):
                f = self._evaluate(grid[:, i:i + per], x)  # (C, N, block)
                for c in range(self.n_channels):
                    d = f[c]
                    d -= self._ybar[i:i + per, c]
                    np.square(d, out=d)
                    out += np.einsum("nu,u->n", d, k * self._w[i:i + per, c])  # no threaded BLAS
            out += self._offset
        return np.nan_to_num(out, nan=-np.inf, posinf=-np.inf)

    # ------------------------------------------------------------------ the move
    def move(self, parents: np.ndarray, idx: np.ndarray, proposal: np.ndarray,
             propose: Callable[[np.ndarray], np.ndarray], mu: np.ndarray, cov: np.ndarray,
             shrink: bool, rng: np.random.Generator) -> np.ndarray:
        """Metropolis-Hastings over the resampled ``parents`` (the particles ``idx`` of the old
        cloud): the first proposal is ``proposal`` (their Liu-West jitter), later steps use
        ``propose(x)``. With ``shrink`` (Liu-West's scale) the kernel is reversible for
        N(mu, cov), and the Hastings ratio is that density's ratio. Returns the new particles."""
        n = parents.shape[1]
        per_step = n * max(1, self.n_settings)
        cached = self.logpost is not None and self.logpost.shape == (n,)
        spend = 0 if cached else per_step
        steps = min(self.steps, (self.budget - spend) // per_step)
        if steps < 1:
            self.n_skipped += 1
            self.logpost = None
            return proposal
        try:
            lp = self.logpost[idx] if cached else self.log_target(parents)
            prec = np.linalg.pinv(cov) if shrink else None
            x = parents
            for step in range(steps):
                prop = proposal if step == 0 else propose(x)
                lp_prop = self.log_target(prop)
                log_alpha = lp_prop - lp
                if prec is not None:
                    log_alpha += 0.5 * (_mahalanobis(prop, mu, prec) - _mahalanobis(x, mu, prec))
                with np.errstate(invalid="ignore"):
                    take = np.log(rng.random(n)) < log_alpha  # NaN (inf - inf) rejects
                x = np.where(take, prop, x)
                lp = np.where(take, lp_prop, lp)
                self.n_proposed += n
                self.n_accepted += int(take.sum())
        except (ValueError, TypeError, IndexError, ArithmeticError, np.linalg.LinAlgError):
            # the model failed on a proposal: this resample stays plain Liu-West
            self.n_skipped += 1
            self.logpost = None
            return proposal
        self.logpost = lp
        self.n_moves += 1
        return np.ascontiguousarray(x)

    @property
    def acceptance(self) -> float:
        """Share of accepted proposals so far (NaN before the first move)."""
        return self.n_accepted / self.n_proposed if self.n_proposed else math.nan

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        """The sufficient statistics and carried log targets (for the engine's snapshot); empty
        when the moves are off."""
        if not self.enabled:
            return {}
        grid = np.array(self._settings, dtype=float) if self._settings else np.zeros((0, 1))
        st = {"move_settings": grid,
              "move_w": self._w.copy(), "move_ybar": self._ybar.copy(),
              "move_offset": float(self._offset)}
        if self.logpost is not None:
            st["move_logpost"] = self.logpost.copy()
        return st

    def check_state(self, state: Mapping[str, Any]) -> tuple | None:
        """The move part of an engine state, checked (ValueError); None when it has none."""
        if "move_w" not in state:
            return None
        s = np.asarray(state["move_settings"], dtype=float)
        w = np.asarray(state["move_w"], dtype=float).reshape(-1, self.n_channels)
        ybar = np.asarray(state["move_ybar"], dtype=float).reshape(-1, self.n_channels)
        lp = state.get("move_logpost")
        lp = None if lp is None else np.array(lp, dtype=float).ravel()
        offset = state.get("move_offset", 0.0)
        if s.ndim != 2 or s.shape[0] != w.shape[0] or ybar.shape != w.shape \
                or not np.all(np.isfinite(w)) or not np.all(np.isfinite(ybar)) or np.any(w <= 0) \
                or not isinstance(offset, (int, float)) or not math.isfinite(offset):
            raise ValueError("state move statistics (move_settings, move_w, move_ybar, "
                             "move_offset) are inconsistent")
        return [tuple(row.tolist()) for row in s], w.copy(), ybar.copy(), lp, float(offset)

    def set_state(self, parsed: tuple | None) -> None:
        """Restore what :meth:`check_state` returned; None (a state without move statistics)
        turns the moves off."""
        if parsed is None:
            self._index, self._settings = {}, []
            self._w = self._ybar = np.zeros((0, self.n_channels))
            self.disable()
            return
        self._settings, self._w, self._ybar, self.logpost, self._offset = parsed
        self._index = {k: i for i, k in enumerate(self._settings)}
        self.enabled = self.steps > 0


def _mahalanobis(x: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> np.ndarray:
    u = x - mu[:, None]
    return np.einsum("in,ij,jn->n", u, prec, u)
