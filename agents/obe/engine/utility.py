"""Utility functions of the OBE engine: how informative each setting is, from model draws.

Every function takes ``y`` of shape ``(C, D, S)`` (channels, parameter draws, settings; it may
be modified in place), the noise variance per channel ``(C,)`` and returns ``(S,)`` before the
cost is applied. Pure numpy, no scipy: the entropy estimators are written out here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["UTILITIES", "SELECTIONS", "differential_entropy", "variance_approx", "pseudo_utility", "max_min",
           "full_kld"]


def variance_approx(y: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """``sum_c Var_d[y] / sigma_c**2`` (population variance over the draws)."""
    c, d, s = y.shape
    out = None
    for ch in range(c):
        yc = y[ch]
        yc -= yc.sum(axis=0) * (1.0 / d)
        acc = np.einsum("ds,ds->s", yc, yc)  # one read pass, no temporary
        acc *= 1.0 / (d * float(noise_var[ch]))
        out = acc if out is None else out + acc
    return out


def max_min(y: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """``sum_c (max_d y - min_d y)**2 / sigma_c**2``."""
    out = np.zeros(y.shape[2])
    for ch in range(y.shape[0]):
        span = y[ch].max(axis=0) - y[ch].min(axis=0)
        out += span * span / noise_var[ch]
    return out


def _window(n: int) -> int:
    return int(np.floor(np.sqrt(n) + 0.5))


def differential_entropy(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample-spacing estimate of differential entropy along ``axis``.

    The estimator follows the usual automatic choice: van Es for n <= 10, Ebrahimi for
    11 <= n <= 1000, Vasicek above; the window is m = round(sqrt(n)).
    """
    xs = np.sort(np.moveaxis(np.asarray(x, dtype=float), axis, 0), axis=0)
    n = xs.shape[0]
    m = _window(n)
    if n < 3 or not 2 <= 2 * m < n:
        raise ValueError(f"entropy estimate needs 2 <= 2*m < n draws; n = {n}, m = {m}")
    with np.errstate(divide="ignore"):
        if n <= 10:  # van Es
            diffs = xs[m:] - xs[:-m]
            terms = np.log((n + 1) / m * diffs)
            return (terms.mean(axis=0) + np.sum(1.0 / np.arange(m, n + 1)) + np.log(m)
                    - np.log(n + 1))
        pad = np.concatenate([np.repeat(xs[:1], m, axis=0), xs, np.repeat(xs[-1:], m, axis=0)])
        diffs = pad[2 * m:] - pad[: -2 * m]
        shape = (n,) + (1,) * (xs.ndim - 1)
        if n <= 1000:  # Ebrahimi: boundary-corrected spacings
            i = np.arange(1, n + 1, dtype=float)
            ci = np.full(n, 2.0)
            ci[i <= m] = 1.0 + (i[i <= m] - 1.0) / m
            ci[i >= n - m + 1] = 1.0 + (n - i[i >= n - m + 1]) / m
            return np.log(n * diffs / (ci.reshape(shape) * m)).mean(axis=0)
        return np.log(n / (2.0 * m) * diffs).mean(axis=0)  # Vasicek


def pseudo_utility(y: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """``sum_c exp(2 H_d[y]) / (2 pi e) / sigma_c**2``: an entropy-based variance."""
    out = np.zeros(y.shape[2])
    for ch in range(y.shape[0]):
        h = differential_entropy(y[ch], axis=0)
        out += np.exp(2.0 * h) / (2.0 * np.pi * np.e) / noise_var[ch]
    return out


def full_kld(y: np.ndarray, noise_var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``sum_c exp(H[y + nu] - H[nu]) - 1`` with noise draws nu shared by all settings.

    The reference returns this per channel and ignores the cost; here the channels are summed
    so that every selection method can use it, and the engine divides by the cost as usual.
    """
    c, d, s = y.shape
    out = np.zeros(s)
    for ch in range(c):
        nu = rng.standard_normal(d) * np.sqrt(noise_var[ch])
        h_nu = differential_entropy(nu, axis=0)
        yc = y[ch]
        yc += nu[:, None]
        out += np.exp(differential_entropy(yc, axis=0) - h_nu) - 1.0
    return out


UTILITIES = ("variance_approx", "pseudo_utility", "max_min", "full_kld")
#: How the engine picks the next setting from the utility: its maximum, a weighted draw, or uniformly.
SELECTIONS = ("optimal", "good", "random")
