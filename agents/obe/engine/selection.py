"""Setting choice for the OBE engine: the utility of every grid setting and the selection rules.

Pure numpy. :class:`SettingSelection` is a mixin of :class:`~agents.obe.engine.obe_engine.OBEEngine`;
it uses the engine's posterior, model evaluation (``_eval_draws``), grid and generator.
"""
from __future__ import annotations

import math

import numpy as np

from . import utility as _util
from .posterior import _dot
from .records import check_pickiness


class SettingSelection:
    """Utility and selection methods of :class:`~agents.obe.engine.obe_engine.OBEEngine`."""

    # ------------------------------------------------------------------ utility and selection
    def _noise_var(self) -> np.ndarray:
        if self.noise_parameter_index is None:
            return self._noise_var_default
        w, x = self.posterior._w, self.posterior._x
        return np.array([_dot(w, x[i] * x[i]) for i in self.noise_parameter_index])

    def utility(self) -> np.ndarray:
        """Utility of every grid setting, shape ``(S,)``, from fresh weighted draws."""
        y = self._eval_draws(self.posterior.draw(self.n_draws))
        nv = self._noise_var()
        m = self.utility_method
        if m == "variance_approx":
            u = _util.variance_approx(y, nv)
        elif m == "max_min":
            u = _util.max_min(y, nv)
        elif m == "pseudo_utility":
            u = _util.pseudo_utility(y, nv)
        else:
            u = _util.full_kld(y, nv, self.rng)
        if not (isinstance(self.cost, float) and self.cost == 1.0):
            u /= self.cost
        if not np.isfinite(u).all():  # NaN model values: such settings are worth nothing
            np.nan_to_num(u, copy=False, nan=0.0, posinf=np.finfo(float).max, neginf=0.0)
        return u

    def _setting_at(self, index: int) -> tuple[float, ...]:
        self.last_setting_index = int(index)
        return tuple(self._grid[:, index].tolist())

    def optimal_setting(self) -> tuple[float, ...]:
        """The grid setting of highest utility (first on ties)."""
        return self._setting_at(int(self.utility().argmax()))

    def good_setting(self, pickiness: float | None = None) -> tuple[float, ...]:
        """A grid setting drawn with probability proportional to ``utility**pickiness``."""
        p = self.pickiness if pickiness is None else check_pickiness(pickiness)
        u = self.utility()
        top = float(np.max(u)) if u.size else 0.0
        if not (top > 0.0 and math.isfinite(top)):
            return self.random_setting()
        u /= top
        np.nan_to_num(u, copy=False, nan=0.0)
        np.maximum(u, 0.0, out=u)
        np.power(u, p, out=u)
        cu = np.cumsum(u)
        i = int(np.searchsorted(cu, self.rng.random() * cu[-1], side="right"))
        return self._setting_at(min(i, self.n_settings - 1))

    def random_setting(self) -> tuple[float, ...]:
        """A grid setting drawn uniformly."""
        return self._setting_at(int(self.rng.integers(self.n_settings)))

    def next_setting(self) -> tuple[float, ...]:
        """The setting chosen by the configured selection method."""
        if self.selection == "optimal":
            return self.optimal_setting()
        if self.selection == "good":
            return self.good_setting()
        return self.random_setting()
