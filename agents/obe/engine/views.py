"""Read-only views of an OBE engine's posterior: particles, weights, statistics, intervals.

:class:`PosteriorViews` is a mixin of :class:`~agents.obe.engine.obe_engine.OBEEngine`; it reads
the engine's ``posterior`` (a :class:`~agents.obe.engine.posterior.ParticlePosterior`) and grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class PosteriorViews:
    """Posterior views of :class:`~agents.obe.engine.obe_engine.OBEEngine`."""

    @property
    def particles(self) -> np.ndarray:
        """Read-only ``(n_params, N)`` view of the particles."""
        return self.posterior.particles

    @property
    def weights(self) -> np.ndarray:
        """A copy of the normalised weights."""
        return self.posterior.weights

    @property
    def settings_grid(self) -> np.ndarray:
        """Read-only ``(n_knobs, S)`` grid of candidate settings."""
        g = self._grid.view()
        g.flags.writeable = False
        return g

    @property
    def effective_sample_size(self) -> float:
        """``1 / sum(w**2)``: how many equally weighted particles the posterior is worth."""
        return self.posterior.effective_sample_size

    @property
    def n_particles(self) -> int:
        """Number of particles N."""
        return self.posterior.n_particles

    def mean(self) -> np.ndarray:
        """Posterior mean per parameter ``(P,)``."""
        return self.posterior.mean()

    def std(self) -> np.ndarray:
        """Posterior standard deviation per parameter ``(P,)`` (population formula)."""
        return self.posterior.std()

    def covariance(self) -> np.ndarray:
        """Weighted, bias-corrected posterior covariance ``(P, P)``."""
        return self.posterior.covariance()

    def quantiles(self, q: Any) -> np.ndarray:
        """Marginal quantiles ``(P, len(q))`` (``(P,)`` for a scalar q)."""
        return self.posterior.quantiles(q)

    def credible_interval(self, level: float = 0.95) -> np.ndarray:
        """Central credible interval per parameter ``(P, 2)``."""
        return self.posterior.credible_interval(level)
