"""OBE engine: sequential Bayesian experiment design on a particle-filter posterior.

Pure numpy; imports nothing from Twisted. :class:`OBEEngine` turns each measurement into a
Bayesian update of :class:`~agents.obe.engine.posterior.ParticlePosterior` and picks the next setting
from a utility computed on a few weighted parameter draws. See ``docs/obe.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import utility as _util
from .models import ModelSpec, get_model
from .posterior import ParticlePosterior, ZeroLikelihoodError, as_particle_array
from .priors import sample_prior
from .from_config import engine_arguments
from .records import (as_channels, check_cost, check_pickiness, check_positive_per_channel,
                      check_setting, check_sigma, check_y)
from .move import MOVE_BUDGET, ExactMove, log_prior_from_specs
from .selection import SettingSelection
from .views import PosteriorViews
from .snapshot import STATE_FORMAT, check_state, join_state, split_state

__all__ = ["OBEEngine", "ZeroLikelihoodError", "SELECTIONS", "UTILITIES", "split_state",
           "join_state", "auto_draws"]

SELECTIONS = _util.SELECTIONS
UTILITIES = _util.UTILITIES
SINGLE_PRECISION_MIN = 4096
#: ``auto_draws``: draws x settings x channels up to this many model values per setting choice.
AUTO_DRAW_BUDGET = 20_000
AUTO_DRAWS_MIN, AUTO_DRAWS_MAX = 30, 100
#: Model values per call when the utility's draws are evaluated in chunks (64 kB of float64).
DRAW_CHUNK_VALUES = 8192
_EXP_UNDERFLOW = -745.13  # exp(x) == 0.0 in float64 below this


def auto_draws(n_settings: int, n_channels: int = 1) -> int:
    """Draws per utility evaluation by default: as many as AUTO_DRAW_BUDGET model values allow,
    between AUTO_DRAWS_MIN (the reference's 30) and AUTO_DRAWS_MAX. On find_peak (200 settings)
    100 draws gave gain 6.25x against 5.77x with 30 (80 seeds, docs/benchmarks.md)."""
    budget = AUTO_DRAW_BUDGET // max(1, n_settings * n_channels)
    return int(min(AUTO_DRAWS_MAX, max(AUTO_DRAWS_MIN, budget)))


class OBEEngine(SettingSelection, PosteriorViews):
    """Particle-filter posterior plus setting selection for one model.

    Args:
        model: a function ``f(settings, params, constants)``, a :class:`ModelSpec` or the name
            of a registered model.
        settings: one 1-D array of values per setting axis (a single array for one axis);
            the candidate settings are their Cartesian grid.
        prior: prior samples (a tuple of per-parameter arrays or an ``(n_params, N)`` array), or
            a mapping parameter name -> prior spec (then ``n_particles`` and names are needed).
        constants: model constants; default: the ModelSpec's defaults (else ``()``).
        parameter_names: names of the parameters (default from the ModelSpec, else p0, p1...).
        n_particles: particle count when ``prior`` is a mapping of specs.
        n_draws: parameter draws per utility evaluation; None (default): more draws where they
            are cheap, ``auto_draws(S, C)`` (100 up to 200 settings, down to 30 at 667+).
        utility: ``variance_approx``, ``pseudo_utility``, ``max_min`` or ``full_kld``.
        selection: what :meth:`next_setting` does: ``optimal``, ``good`` or ``random``.
        pickiness: exponent of the utility for ``good`` selection.
        choke: likelihood exponent in (0, 1], or None for 1.
        a_param, resample_threshold, scale, resampler: see :class:`ParticlePosterior`.
        default_noise_std: measurement noise std per channel assumed by the utility.
        cost: cost of a measurement, scalar or one value per grid setting.
        noise_parameter_index: parameter index (one per channel) holding the unknown noise
            std; then ``update`` ignores its sigma argument.
        likelihood_precision: ``"double"`` (default: the normalised weights of an update agree
            with the exact Bayesian product to ~1e-15 relative), ``"single"`` or ``"auto"``
            (single from SINGLE_PRECISION_MIN particles on). Single evaluates the exponential in
            float32, relative to the best particle (faster at 1e5 particles; measured: the
            normalised weights of one update differ from double's by up to ~1e-6 relative, see
            docs/obe.md). The exponent, the weights and everything else stay float64.
        utility_precision: ``"double"`` (default) or ``"single"``: evaluate the model for the
            utility's draws in float32 (about 2x faster at thousands of settings). Only for
            models whose outputs vary across the posterior by more than ~1e-6 of their size.
        log_prior: the prior's log density for the resample-move step: a mapping parameter
            name -> prior spec, or ``f(params tuple) -> (N,)``; default: from ``prior`` when
            that is a mapping of specs, else none (prior samples have no density).
        move_steps: Metropolis-Hastings steps per resample against the exact posterior
            (:mod:`agents.obe.engine.move`), when a log prior is known; 0 turns them off.
        move_budget: at most this many model values (particles x distinct measured settings
            x steps) per resample for the moves; past it, fewer steps, then plain Liu-West.
        seed: an int seed, a ``numpy.random.Generator``, or None (fresh entropy).
    """

    def __init__(self, model: Callable | ModelSpec | str, settings: Any, prior: Any,
                 constants: Sequence[float] | None = None, *,
                 parameter_names: Sequence[str] | None = None, n_particles: int | None = None,
                 n_draws: int | None = None, utility: str = "variance_approx", selection: str = "optimal",
                 pickiness: float = 15.0, choke: float | None = None, a_param: float = 0.98,
                 resample_threshold: float = 0.5, scale: bool = True,
                 resampler: str = "systematic", default_noise_std: Any = 1.0, cost: Any = 1.0,
                 noise_parameter_index: int | Sequence[int] | None = None,
                 likelihood_precision: str = "double", utility_precision: str = "double",
                 log_prior: Any = None, move_steps: int = 1, move_budget: int = MOVE_BUDGET,
                 seed: int | np.random.Generator | None = None) -> None:
        spec = get_model(model) if isinstance(model, str) else model
        self.model_spec = spec if isinstance(spec, ModelSpec) else None
        self.model = spec.function if isinstance(spec, ModelSpec) else spec
        if not callable(self.model):
            raise ValueError(f"model must be callable, a ModelSpec or a model name, got {model!r}")
        if constants is None:
            constants = self.model_spec.default_constants if self.model_spec else ()
        self.constants = tuple(float(c) for c in constants)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

        axes = [settings] if np.ndim(settings[0]) == 0 else list(settings)
        self.setting_axes = tuple(np.asarray(a, dtype=float).ravel() for a in axes)
        for k, ax in enumerate(self.setting_axes):
            if ax.size == 0 or not np.all(np.isfinite(ax)):
                raise ValueError(f"setting axis {k} must be non-empty and finite")
        mesh = np.meshgrid(*self.setting_axes, indexing="ij")
        self._grid = np.stack([m.ravel() for m in mesh])
        self._grid_rows = tuple(row[None, :] for row in self._grid)
        self.n_knobs, self.n_settings = self._grid.shape

        if parameter_names is None and self.model_spec is not None:
            parameter_names = self.model_spec.parameters
        if isinstance(prior, Mapping):
            if parameter_names is None or n_particles is None:
                raise ValueError("prior specs need parameter_names (or a ModelSpec) and n_particles")
            particles = sample_prior(prior, list(parameter_names), int(n_particles), self.rng)
        else:
            particles = as_particle_array(prior)
        if parameter_names is None:
            parameter_names = [f"p{i}" for i in range(particles.shape[0])]
        self.parameter_names = tuple(parameter_names)
        if len(self.parameter_names) != particles.shape[0]:
            raise ValueError(f"{particles.shape[0]} prior rows but {len(self.parameter_names)} "
                             f"parameter names {self.parameter_names}")
        self.posterior = ParticlePosterior(particles, rng=self.rng, a_param=a_param,
                                           resample_threshold=resample_threshold, scale=scale,
                                           resampler=resampler)
        if utility not in UTILITIES:
            raise ValueError(f"utility must be one of {UTILITIES}, got {utility!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if n_draws is None:
            n_draws = auto_draws(self.n_settings, self._detect_channels())
        if int(n_draws) < 2:
            raise ValueError(f"n_draws must be at least 2, got {n_draws!r}")
        if utility in ("pseudo_utility", "full_kld") and int(n_draws) < 5:
            raise ValueError(f"utility {utility!r} estimates entropies and needs n_draws >= 5, "
                             f"got {n_draws!r}")
        if choke is not None and not 0.0 < float(choke) <= 1.0:
            raise ValueError(f"choke must be in (0, 1] or None, got {choke!r}")
        self.utility_method = utility
        self.selection = selection
        self.n_draws = int(n_draws)
        self.pickiness = check_pickiness(pickiness)
        self.choke = 1.0 if choke is None else float(choke)
        self.n_channels = self._detect_channels()
        self.default_noise_std = check_positive_per_channel(default_noise_std, self.n_channels,
                                                            "default_noise_std")
        self._noise_var_default = self.default_noise_std ** 2
        self.cost = check_cost(cost, self.n_settings)
        self.noise_parameter_index: tuple[int, ...] | None = None
        if noise_parameter_index is not None:
            idx = tuple(int(i) for i in np.atleast_1d(noise_parameter_index))
            if len(idx) != self.n_channels or not all(0 <= i < particles.shape[0] for i in idx):
                raise ValueError(f"noise_parameter_index needs one parameter index per channel "
                                 f"({self.n_channels}), got {noise_parameter_index!r}")
            self.noise_parameter_index = idx
            self.posterior.positive_dims = tuple(sorted(set(idx)))
        if likelihood_precision not in ("auto", "double", "single"):
            raise ValueError(f"likelihood_precision must be 'auto', 'double' or 'single', "
                             f"got {likelihood_precision!r}")
        self.likelihood_precision = likelihood_precision
        if utility_precision not in ("double", "single"):
            raise ValueError(f"utility_precision must be 'double' or 'single', got {utility_precision!r}")
        self.utility_precision = utility_precision
        if utility_precision == "single":
            self._grid_rows = tuple(r.astype(np.float32) for r in self._grid_rows)
        self._draw_buf: np.ndarray | None = None
        self._alloc_buffers()
        #: Resample after an update when the effective sample size is low (see
        #: ParticlePosterior); False leaves that to explicit :meth:`resample` calls.
        self.auto_resample = True
        self.n_measurements = 0
        self.last_setting_index: int | None = None
        self.config: dict | None = None  # set by from_config
        self._check_model_shapes()
        if isinstance(log_prior, Mapping) or (log_prior is None and isinstance(prior, Mapping)):
            log_prior = log_prior_from_specs(log_prior or prior, self.parameter_names)
        if log_prior is not None and not callable(log_prior):
            raise ValueError(f"log_prior must be a mapping of prior specs or a function, got {log_prior!r}")
        if isinstance(move_steps, bool) or not isinstance(move_steps, int) or move_steps < 0 \
                or isinstance(move_budget, bool) or not isinstance(move_budget, int) or move_budget < 0:
            raise ValueError(f"move_steps and move_budget must be integers >= 0, got "
                             f"{move_steps!r}, {move_budget!r}")
        #: The resample-move step (None without a log prior or per-particle noise parameters).
        self.mover = None if log_prior is None or noise_parameter_index is not None else ExactMove(
            log_prior, self._eval_at, self.n_channels, self.choke, move_steps, move_budget)
        self.posterior.mover = self.mover

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "OBEEngine":
        """Build an engine from a JSON-able configuration (see :mod:`agents.obe.engine.from_config`).

        Raises ValueError naming the offending key and value. ``engine.config`` records the
        configuration, with the seed that was used.
        """
        kwargs, recorded = engine_arguments(config)
        weights = kwargs.pop("weights", None)
        engine = cls(**kwargs)
        if weights is not None:
            engine.set_weights(weights)
        engine.config = recorded
        return engine

    def _alloc_buffers(self) -> None:
        n = self.posterior.n_particles
        self._buf = np.empty(n)
        self._tmp = np.empty(n)
        p = self.likelihood_precision
        self._single = p == "single" or (p == "auto" and n >= SINGLE_PRECISION_MIN)
        self._buf32 = np.empty(n, dtype=np.float32) if self._single else None

    def _detect_channels(self) -> int:
        out = self.model(tuple(self._grid[:, 0].tolist()),
                         tuple(self.posterior.particles[:, 0].tolist()), self.constants)
        if isinstance(out, (tuple, list)):
            return len(out)
        arr = np.asarray(out)
        return 1 if arr.ndim == 0 else int(arr.shape[0])

    def _check_model_shapes(self) -> None:
        self._eval_particles(tuple(self._grid[:, 0].tolist()))
        self._eval_draws(self.posterior.particles[:, :2])

    # ------------------------------------------------------------------ model evaluation
    def _eval_particles(self, setting: tuple[float, ...]) -> np.ndarray:
        """Model at one setting for every particle: ``(C, N)``."""
        x = self.posterior._x
        try:
            out = self.model(setting, tuple(x), self.constants)
            return as_channels(out, (x.shape[1],), self.n_channels)
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"model evaluation over particles failed: {exc}") from exc

    def _eval_at(self, grid: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Model at the settings ``grid`` (K, u) for the particles ``x`` (P, N): ``(C, N, u)``."""
        out = self.model(tuple(row[None, :] for row in grid), tuple(row[:, None] for row in x),
                         self.constants)
        return as_channels(out, (x.shape[1], grid.shape[1]), self.n_channels)

    def _eval_draws(self, theta: np.ndarray) -> np.ndarray:
        """Model for each column of ``theta`` at every grid setting: ``(C, n, S)``.

        Above DRAW_CHUNK_VALUES model values the draws go to the model in chunks, into a
        buffer kept between calls: every temporary the model makes then stays small (fresh
        arrays of ~0.5 MB per call cost page faults that doubled the setting choice at
        1e4 x 2000 in a running loop)."""
        if self.utility_precision == "single":
            theta = theta.astype(np.float32)
        n, s = theta.shape[1], self.n_settings
        per = max(1, DRAW_CHUNK_VALUES // s)
        try:
            if n <= per:
                out = self.model(self._grid_rows, tuple(row[:, None] for row in theta), self.constants)
                return as_channels(out, (n, s), self.n_channels)
            shape = (self.n_channels, n, s)
            buf = self._draw_buf
            if buf is None or buf.shape != shape or buf.dtype != theta.dtype:
                buf = self._draw_buf = np.empty(shape, dtype=theta.dtype)
            for i in range(0, n, per):
                part = theta[:, i:i + per]
                out = self.model(self._grid_rows, tuple(row[:, None] for row in part), self.constants)
                buf[:, i:i + part.shape[1]] = as_channels(out, (part.shape[1], s), self.n_channels)
            return buf
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"model evaluation over settings failed: {exc}") from exc

    # ------------------------------------------------------------------ input checks
    def _check_setting(self, settings: Any) -> tuple[float, ...]:
        return check_setting(settings, self.n_knobs)

    def _check_y(self, y: Any) -> list[float]:
        return check_y(y, self.n_channels)

    def _check_sigma(self, sigma: Any) -> list[float] | np.ndarray:
        """Sigma as a list of C floats (per channel) or a ``(C, N)`` array (per particle)."""
        if self.noise_parameter_index is not None:
            return np.stack([self.posterior._x[i] for i in self.noise_parameter_index])
        return check_sigma(sigma, self.n_channels, self.posterior.n_particles)

    # ------------------------------------------------------------------ likelihood and update
    def _exponent(self, ym: np.ndarray, y: list[float], sig: list[float] | np.ndarray,
                  out: np.ndarray) -> None:
        """``out = -choke * sum_c ((ym_c - y_c) / sigma_c)**2 / 2`` (plus the 1/sigma factor
        as ``-choke * log sigma`` when sigma is per particle)."""
        k = -0.5 * self.choke
        tmp = self._tmp
        for c in range(self.n_channels):
            target = out if c == 0 else tmp
            np.subtract(ym[c], y[c], out=target)
            np.square(target, out=target)
            if isinstance(sig, list):
                target *= k / (sig[c] * sig[c])
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    target /= np.square(sig[c])
                target *= k
                target -= self.choke * np.log(np.where(sig[c] > 0, sig[c], np.nan))
            if c:
                out += tmp

    def likelihood(self, settings: Any, y: Any, sigma: Any = None) -> np.ndarray:
        """The reference's likelihood ``prod_c exp(-((f_c - y_c)/sigma_c)**2 / 2) / sigma_c``,
        raised to ``choke``, for every particle (a new array)."""
        x, yv, sig = self._check_setting(settings), self._check_y(y), self._check_sigma(sigma)
        out = np.empty(self.posterior.n_particles)
        self._exponent(self._eval_particles(x), yv, sig, out)
        if isinstance(sig, list):
            out -= self.choke * float(np.sum(np.log(sig)))
        np.exp(out, out=out)
        return np.nan_to_num(out, nan=0.0)

    def update(self, settings: Any, y: Any, sigma: Any = None) -> bool:
        """Bayesian update with one measurement; returns True if it resampled.

        Raises ValueError (bad input) or ZeroLikelihoodError (every particle rejected); in both
        cases the posterior, the counters and the generator are unchanged.
        """
        x, yv, sig = self._check_setting(settings), self._check_y(y), self._check_sigma(sigma)
        if self._buf.size != self.posterior.n_particles:
            self._alloc_buffers()
        buf = self._buf
        self._exponent(self._eval_particles(x), yv, sig, buf)
        top = float(np.fmax.reduce(buf))
        if not top > _EXP_UNDERFLOW:  # float64 would give 0 for every particle (or all NaN)
            raise ZeroLikelihoodError(
                "the measurement has zero likelihood under every particle (every model "
                "value is more than ~38 sigma from y); posterior left unchanged")
        token = None
        if self.mover is not None and isinstance(sig, list):
            token = self.mover.record(x, yv, sig, buf)
        if self._single:
            lik = self._buf32
            np.subtract(buf, top, out=lik, casting="same_kind")
            np.exp(lik, out=lik)
        else:
            lik = buf
            np.exp(buf, out=buf)
        try:
            resampled = self.posterior.apply_likelihood(lik, auto_resample=self.auto_resample)
        except ZeroLikelihoodError:
            if token is not None:
                self.mover.undo(token)
            raise
        if self.mover is not None and not isinstance(sig, list):
            self.mover.disable()  # per-particle sigma: the target is no longer known
        self.n_measurements += 1
        return resampled

    def update_many(self, settings: Sequence[Any], ys: Sequence[Any], sigmas: Any = None) -> int:
        """Apply several measurements in order, all or nothing; returns how many resampled.

        ``sigmas`` is one sigma per record or a single value for all. Every record is checked
        before the first update; if one is rejected the state from before the call is restored.
        """
        n = len(settings)
        if len(ys) != n:
            raise ValueError(f"{n} settings but {len(ys)} y values")
        if sigmas is None or isinstance(sigmas, (int, float, np.number)):
            sigmas = [sigmas] * n
        elif not isinstance(sigmas, (list, tuple, np.ndarray)) or len(sigmas) != n:
            raise ValueError(f"{n} settings but {len(sigmas)} sigma values")
        for i in range(n):
            try:
                self._check_setting(settings[i]), self._check_y(ys[i]), self._check_sigma(sigmas[i])
            except ValueError as exc:
                raise ValueError(f"record {i}: {exc}") from None
        saved = self.get_state()
        count = 0
        try:
            for i in range(n):
                count += bool(self.update(settings[i], ys[i], sigmas[i]))
        except ZeroLikelihoodError as exc:
            self.set_state(saved)
            raise ZeroLikelihoodError(f"record {i}: {exc}; no record of this batch was applied") from None
        return count

    # ------------------------------------------------------------------ replacing the posterior
    def set_particles(self, particles: Any, weights: Any = None) -> None:
        """Replace the particle cloud (optbayesexpt's ``set_pdf``): ``(n_params, N)`` samples, or
        one array per parameter, with optional weights (normalised here; uniform when None).

        N may differ from the current count. Everything is checked before anything changes;
        the measurement count and the generator are kept.

        Raises:
            ValueError: wrong number of parameters, non-finite values, bad weights.
        """
        x = as_particle_array(particles)
        if x.shape[0] != len(self.parameter_names):
            raise ValueError(f"particles must have {len(self.parameter_names)} rows (one per "
                             f"parameter {self.parameter_names}), got {x.shape[0]}")
        if not np.all(np.isfinite(x)):
            raise ValueError("particles contain non-finite values")
        n = x.shape[1]
        w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"weights must be {n} finite non-negative values, not all zero")
        self.posterior.set_state(x, w / w.sum(), self.posterior.n_resamples)
        self._alloc_buffers()
        if self.mover is not None:
            self.mover.disable()  # the new cloud is not the prior times the likelihood

    def set_weights(self, weights: Any) -> None:
        """Replace the weights of the current particles (normalised here); this turns the
        resample-move step off (the weighted cloud no longer follows the known prior)."""
        self.posterior.set_weights(weights)
        if self.mover is not None:
            self.mover.disable()

    def resample(self) -> None:
        """Resample now (Liu-West: draw by weight, shrink, jitter), whatever the ESS."""
        self.posterior.resample()

    # ------------------------------------------------------------------ snapshot / restore
    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue a run exactly: arrays plus JSON-able fields."""
        st = self.posterior.get_state()
        st.update(format=STATE_FORMAT, rng_state=self.rng.bit_generator.state,
                  n_measurements=int(self.n_measurements),
                  last_setting_index=self.last_setting_index,
                  parameter_names=list(self.parameter_names))
        if self.mover is not None:
            st.update(self.mover.get_state())
        return st

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` output; validated before anything changes."""
        rs, n_meas, last = check_state(state, type(self.rng.bit_generator), self.n_settings)
        moves = None if self.mover is None else self.mover.check_state(state)
        self.posterior.set_state(state["particles"], state["weights"], state.get("n_resamples", 0))
        self.rng.bit_generator.state = rs
        self.n_measurements = n_meas
        self.last_setting_index = last
        self._alloc_buffers()
        if self.mover is not None:
            self.mover.set_state(moves)
