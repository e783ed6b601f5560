"""Particle-filter posterior for the OBE engine: weights, statistics, draws and resampling.

Pure numpy. Particles are a float64 array of shape ``(n_dims, n_particles)``; weights are
normalised float64. One ``numpy.random.Generator`` (owned by the engine) drives every draw.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["ParticlePosterior", "ZeroLikelihoodError", "RESAMPLERS"]

RESAMPLERS = ("systematic", "residual", "multinomial")

# Below this particle count a plain cumulative sum is cheaper than the two-level draw.
_BLOCK_DRAW_MIN = 20000


class ZeroLikelihoodError(RuntimeError):
    """A measurement has zero likelihood under every particle; the posterior was not changed."""


# OpenBLAS runs dot products above ~10,000 elements on several threads; on a loaded machine
# those threads spin and one call can take milliseconds. Chunks below that size stay on the
# calling thread and keep the figures steady.
_DOT_CHUNK = 8192


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` for 1-D arrays, single-threaded."""
    n = a.shape[0]
    if n <= _DOT_CHUNK:
        return float(np.dot(a, b))
    return float(sum(np.dot(a[i:i + _DOT_CHUNK], b[i:i + _DOT_CHUNK])
                     for i in range(0, n, _DOT_CHUNK)))


def _matvec(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for ``x`` of shape (D, N), single-threaded."""
    return np.array([_dot(row, w) for row in x])


def _kernel_root(cov: np.ndarray) -> np.ndarray:
    """A matrix R with R R^T = cov: Cholesky (lower triangular, fewer passes) when cov is
    positive definite, else a symmetric root from the eigendecomposition (zero for no spread)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(cov)
        return vecs * np.sqrt(np.clip(vals, 0.0, None))


def _kernel_normals(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` with standard normals for the Liu-West kernel.

    Box-Muller on float32 uniforms: about twice as fast as ``standard_normal`` here, with
    tails cut at 5.8 sd, which does not matter for a smoothing kernel."""
    flat = out.reshape(-1)
    total = flat.size
    half = (total + 1) // 2
    u = rng.random((2, half), dtype=np.float32)
    r = np.subtract(np.float32(1.0), u[0])  # in (0, 1]: the log stays finite
    np.log(r, out=r)
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    theta = u[1]
    theta *= np.float32(2.0 * np.pi)
    c = np.cos(theta)
    c *= r
    flat[:half] = c
    np.sin(theta, out=theta)
    theta *= r
    flat[half:] = theta[: total - half]
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class ParticlePosterior:
    """Weighted particles with Bayesian reweighting and Liu-West resampling.

    Args:
        particles: ``(n_dims, n_particles)`` samples of the prior (copied, made float64).
        weights: optional prior weights (normalised here); uniform when None.
        rng: the generator used for draws and resampling.
        a_param: Liu-West shrink factor a; the jitter covariance is ``(1 - a**2) * cov``.
        resample_threshold: resample when ESS / N falls below this (and always below 0.1).
        scale: shrink towards the mean before jittering (textbook Liu-West, keeps the
            covariance); False jitters without shrinking (covariance grows by ``2 - a**2``).
        resampler: ``"systematic"`` (default), ``"residual"`` or ``"multinomial"``.
    """

    def __init__(self, particles: Any, weights: Any = None, *, rng: np.random.Generator,
                 a_param: float = 0.98, resample_threshold: float = 0.5, scale: bool = True,
                 resampler: str = "systematic") -> None:
        x = np.array(particles, dtype=float, copy=True)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] < 1 or x.shape[0] < 1:
            raise ValueError(f"particles must have shape (n_dims, n_particles), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("particles contain non-finite values")
        if not 0.0 < a_param <= 1.0:
            raise ValueError(f"a_param must be in (0, 1], got {a_param!r}")
        if not 0.0 <= resample_threshold <= 1.0:
            raise ValueError(f"resample_threshold must be in [0, 1], got {resample_threshold!r}")
        if resampler not in RESAMPLERS:
            raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
        self.rng = rng
        self.a_param = float(a_param)
        self.resample_threshold = float(resample_threshold)
        self.scale = bool(scale)
        self.resampler = resampler
        self.positive_dims: tuple[int, ...] = ()  # dims that must stay > 0 after a resample
        self.n_resamples = 0
        self.just_resampled = False
        self.mover: Any = None  # an ExactMove, set by the engine
        self._x = np.ascontiguousarray(x)
        self._w = np.empty(x.shape[1])
        self._scratch = np.empty(x.shape[1])
        self._cbuf: np.ndarray | None = None  # work buffers (n_dims, N), reused
        self._noise: np.ndarray | None = None
        self.set_weights(weights)

    # ----------------------------------------------------------------- basic views
    @property
    def n_particles(self) -> int:
        return self._x.shape[1]

    @property
    def n_dims(self) -> int:
        return self._x.shape[0]

    @property
    def particles(self) -> np.ndarray:
        """Read-only view ``(n_dims, n_particles)``."""
        return _readonly(self._x)

    @property
    def weights(self) -> np.ndarray:
        """A copy of the normalised weights ``(n_particles,)``."""
        return self._w.copy()

    def set_weights(self, weights: Any = None) -> None:
        """Replace the weights (uniform when None); they are normalised."""
        n = self.n_particles
        if weights is None:
            self._w.fill(1.0 / n)
            return
        w = np.asarray(weights, dtype=float)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
        total = w.sum()
        if not total > 0:
            raise ValueError("weights must not all be zero")
        np.divide(w, total, out=self._w)

    # ----------------------------------------------------------------- statistics
    @property
    def effective_sample_size(self) -> float:
        """``1 / sum(w**2)``."""
        return 1.0 / _dot(self._w, self._w)

    def mean(self) -> np.ndarray:
        """Weighted mean per parameter, shape ``(n_dims,)``."""
        return _matvec(self._x, self._w)

    def _centered(self) -> np.ndarray:
        """``x - mean`` in a reused work buffer (valid until the next call)."""
        if self._cbuf is None or self._cbuf.shape != self._x.shape:
            self._cbuf = np.empty_like(self._x)
        np.subtract(self._x, _matvec(self._x, self._w)[:, None], out=self._cbuf)
        return self._cbuf

    def covariance(self) -> np.ndarray:
        """Weighted, bias-corrected covariance ``(n_dims, n_dims)`` (numpy ``cov`` with aweights)."""
        w = self._w
        xc = self._centered()
        d = self.n_dims
        cov = np.empty((d, d))
        wx = self._scratch  # free between updates
        for i in range(d):
            np.multiply(xc[i], w, out=wx)
            for j in range(i + 1):
                cov[i, j] = cov[j, i] = _dot(wx, xc[j])
        denom = 1.0 - _dot(w, w)
        if denom <= 0.0:  # every weight on one particle: no spread left
            return np.zeros_like(cov)
        return cov / denom

    def std(self) -> np.ndarray:
        """Population standard deviation per parameter, ``sqrt(sum w x^2 - (sum w x)^2)``."""
        xc = self._centered()
        np.square(xc, out=xc)
        return np.sqrt(_matvec(xc, self._w))

    def quantiles(self, q: Any) -> np.ndarray:
        """Weighted marginal quantiles: shape ``(n_dims, len(q))`` (``(n_dims,)`` for scalar q).

        Uses the inverse of the weighted empirical CDF (the smallest x whose cumulative weight
        reaches q).
        """
        qa = np.asarray(q, dtype=float)
        if not np.all(np.isfinite(qa)) or np.any(qa < 0) or np.any(qa > 1):
            raise ValueError(f"quantiles must lie in [0, 1], got {q!r}")
        flat = np.atleast_1d(qa)
        out = np.empty((self.n_dims, flat.size))
        for d in range(self.n_dims):
            order = np.argsort(self._x[d], kind="stable")
            cw = np.cumsum(self._w[order])
            cw /= cw[-1]
            k = np.searchsorted(cw, flat, side="left")
            np.minimum(k, self.n_particles - 1, out=k)
            out[d] = self._x[d, order[k]]
        return out[:, 0] if qa.ndim == 0 else out

    def credible_interval(self, level: float = 0.95) -> np.ndarray:
        """Central credible interval per parameter, shape ``(n_dims, 2)``."""
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"credible level must be in (0, 1), got {level!r}")
        tail = (1.0 - float(level)) / 2.0
        return self.quantiles([tail, 1.0 - tail])

    # ----------------------------------------------------------------- draws
    def draw_indices(self, n: int) -> np.ndarray:
        """``n`` particle indices drawn with replacement, probability = weight."""
        w = self._w
        size = w.size
        if size < _BLOCK_DRAW_MIN:
            cw = w.cumsum()
            idx = cw.searchsorted(self.rng.random(n) * cw[-1], side="right")
            return np.minimum(idx, size - 1, out=idx)
        # Two-level inverse CDF without an O(N) cumulative sum: the particles are split into
        # k strided blocks {j, j+k, j+2k, ...} (plus a short contiguous tail block k), whose
        # sums are one vectorised reduction; a block is drawn from their cumulative sum, then a
        # particle inside it. Any fixed order of the particles gives the same distribution.
        m = max(16, int(np.sqrt(size / max(n, 1))))
        k = size // m
        tail = size - k * m
        sums = np.empty(k + 1)
        w[: k * m].reshape(m, k).sum(axis=0, out=sums[:k])
        sums[k] = w[k * m:].sum()
        cb = np.cumsum(sums)
        u = self.rng.random(n) * cb[-1]
        b = np.searchsorted(cb, u, side="right")
        np.minimum(b, k, out=b)
        u -= cb[b] - sums[b]
        ar = np.arange(m)
        in_tail = (b == k)[:, None]
        cols = np.where(in_tail, k * m + ar, b[:, None] + k * ar)
        np.minimum(cols, size - 1, out=cols)
        blk = w[cols]
        if tail:
            blk[in_tail & (ar >= tail)] = 0.0  # the tail block is shorter than m
        np.cumsum(blk, axis=1, out=blk)
        j = np.count_nonzero(blk <= u[:, None], axis=1)
        np.minimum(j, np.where(b == k, tail, m) - 1, out=j)
        np.maximum(j, 0, out=j)
        return cols[np.arange(n), j]

    def draw(self, n: int) -> np.ndarray:
        """``n`` weighted draws of parameter vectors, shape ``(n_dims, n)``."""
        return self._x[:, self.draw_indices(int(n))]

    # ----------------------------------------------------------------- update
    def apply_likelihood(self, likelihood: np.ndarray, *, auto_resample: bool = True) -> bool:
        """Multiply the weights by ``likelihood`` (length N), normalise, resample if due.

        NaN likelihoods count as zero. Raises ZeroLikelihoodError, leaving everything as it
        was, when the product is zero for every particle. Returns True when it resampled.
        """
        new = self._scratch
        np.multiply(self._w, likelihood, out=new)
        total = float(new.sum())
        if not np.isfinite(total):
            np.nan_to_num(new, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            total = float(new.sum())
        if not total > 0.0:
            raise ZeroLikelihoodError(
                "the measurement has zero likelihood under every particle (it is far outside "
                "what the posterior allows, or sigma is too small); posterior left unchanged")
        new *= 1.0 / total
        self._w, self._scratch = new, self._w
        self.just_resampled = False
        if auto_resample:
            self.resample_test()
        return self.just_resampled

    def resample_test(self) -> bool:
        """Resample when ESS < max(threshold, 0.1) * N."""
        n = self.n_particles
        ess = self.effective_sample_size
        if ess < 0.1 * n or ess < self.resample_threshold * n:
            self.resample()
        return self.just_resampled

    def _resample_indices(self) -> np.ndarray:
        n = self.n_particles
        w = self._w
        if self.resampler == "multinomial":
            cw = np.cumsum(w)
            idx = np.searchsorted(cw, self.rng.random(n) * cw[-1], side="right")
            return np.minimum(idx, n - 1, out=idx)
        if self.resampler == "residual":
            nw = w * n
            copies = np.floor(nw).astype(np.intp)
            det = np.repeat(np.arange(n), copies)
            rest = n - det.size
            if rest == 0:
                return det
            nw -= copies
            cw = np.cumsum(nw)
            pos = (self.rng.random() + np.arange(rest)) * (cw[-1] / rest)
            extra = np.searchsorted(cw, pos, side="right")
            np.minimum(extra, n - 1, out=extra)
            return np.concatenate([det, extra])
        # systematic: u_j = (u0 + j) / N; particle i takes the u_j in [c_{i-1}, c_i).
        cw = np.cumsum(w)
        cw *= n / cw[-1]
        cw -= self.rng.random()
        np.ceil(cw, out=cw)
        np.clip(cw, 0, n, out=cw)
        below = cw.astype(np.intp)  # below[i] = #{j : u_j < c_i}
        idx = np.cumsum(np.bincount(below, minlength=n + 1)[:n])  # idx[j] = #{i : c_i <= u_j}
        return np.minimum(idx, n - 1, out=idx)

    def _jitter(self, x: np.ndarray, mu: np.ndarray, root: np.ndarray | None) -> np.ndarray:
        """The Liu-West kernel applied in place to ``x``: shrink towards ``mu`` (with scale),
        then add ``root @ normals``."""
        a = self.a_param
        if self.scale:
            x *= a
            x += ((1.0 - a) * mu)[:, None]
        if root is not None:
            if self._noise is None or self._noise.shape != x.shape:
                self._noise = np.empty_like(x)
            noise = _kernel_normals(self.rng, self._noise)
            tmp = self._scratch  # free during a resample; explicit loops avoid threaded BLAS
            for i in range(self.n_dims):
                for j in range(self.n_dims):
                    if root[i, j] != 0.0:
                        np.multiply(noise[j], root[i, j], out=tmp)
                        x[i] += tmp
        return x

    def resample(self) -> None:
        """Liu-West resampling: pick particles by weight, shrink, jitter; weights 1/N. With a
        ``mover`` (:class:`~agents.obe.engine.move.ExactMove`), the jittered particles are then
        accepted or rejected against the exact posterior."""
        mu = _matvec(self._x, self._w)
        cov = self.covariance()
        idx = self._resample_indices()
        x = np.take(self._x, idx, axis=1)  # a new array: views handed out earlier stay valid
        h2 = 1.0 - self.a_param ** 2
        root = _kernel_root(h2 * cov) if h2 > 0.0 else None
        mover = self.mover if self.mover is not None and self.mover.enabled else None
        parents = x.copy() if mover is not None else None
        x = self._jitter(x, mu, root)
        if mover is not None:
            x = mover.move(parents, idx, x, lambda p: self._jitter(p.copy(), mu, root), mu, cov,
                           self.scale, self.rng)
        self._x = x
        self._w.fill(1.0 / self.n_particles)
        for d in self.positive_dims:
            bad = x[d] <= 0.0
            if bad.any():
                self._w[bad] = 0.0
                self._w /= self._w.sum()
        self.n_resamples += 1
        self.just_resampled = True

    # ----------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """Particles and weights (copies) plus counters."""
        return {"particles": self._x.copy(), "weights": self._w.copy(),
                "n_resamples": int(self.n_resamples)}

    def set_state(self, particles: Any, weights: Any, n_resamples: int = 0) -> None:
        """Restore particles and weights (validated before anything changes)."""
        x = np.array(particles, dtype=float)
        if x.ndim != 2 or x.shape[0] != self.n_dims or x.shape[1] < 1:
            raise ValueError(f"state particles must have shape ({self.n_dims}, N), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("state particles contain non-finite values")
        w = np.asarray(weights, dtype=float)
        if w.shape != (x.shape[1],) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"state weights must be {x.shape[1]} finite non-negative values, not all zero")
        self._x = np.ascontiguousarray(x)
        total = float(w.sum())
        # weights saved by get_state are normalised already: keep them bit for bit
        self._w = w.copy() if abs(total - 1.0) <= 1e-9 else w / total
        self._scratch = np.empty_like(self._w)
        self._cbuf = self._noise = None
        self.n_resamples = int(n_resamples)


def as_particle_array(samples: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Stack a tuple of per-parameter sample arrays (or a 2-D array) as ``(n_dims, N)`` float64."""
    if isinstance(samples, np.ndarray):
        x = samples.astype(float)
    else:
        rows = [np.asarray(s, dtype=float).ravel() for s in samples]
        if not rows or len({r.size for r in rows}) != 1:
            raise ValueError("prior samples must be one equally long array per parameter")
        x = np.stack(rows)
    return np.atleast_2d(x)
