"""OBE engine: exact small cases, resampling, calibration, convergence, determinism, errors."""
import json
import math

import numpy as np
import pytest

from agents.obe.engine.obe_engine import OBEEngine, ZeroLikelihoodError
from agents.obe.engine.models import lorentzian
from agents.obe.engine.posterior import ParticlePosterior

RTOL = 1e-12


def line(settings, params, constants):
    x, = settings
    m, b = params
    return m * x + b


def two_channel(settings, params, constants):
    x, = settings
    m, b = params
    return (m * x + b, m - b * x)


M = [0.0, 1.0, 2.0, 3.0]
B = [0.0, 0.0, 1.0, 1.0]


def small_engine(**kw):
    return OBEEngine(line, (np.array([0.0, 1.0, 2.0]),), (M, B), (), seed=1,
                     resample_threshold=0.0, **kw)


def hand_posterior(x, y, sigma):
    """Weights, mean, population std and unbiased covariance written out in plain Python."""
    lik = [math.exp(-((m * x + b - y) / sigma) ** 2 / 2) / sigma for m, b in zip(M, B)]
    w = [v / sum(lik) for v in lik]
    mean = [sum(wi * p for wi, p in zip(w, P)) for P in (M, B)]
    std = [math.sqrt(sum(wi * (p - mu) ** 2 for wi, p in zip(w, P))) for P, mu in zip((M, B), mean)]
    s2 = sum(wi * wi for wi in w)
    cov = [[sum(wi * (p - mp) * (q - mq) for wi, p, q in zip(w, P, Q)) / (1 - s2)
            for Q, mq in zip((M, B), mean)] for P, mp in zip((M, B), mean)]
    return lik, w, mean, std, cov


def test_uniform_four_particles_statistics():
    eng = OBEEngine(line, (np.array([0.0]),), ([1.0, 2.0, 3.0, 4.0], [0.0] * 4), (), seed=0)
    np.testing.assert_allclose(eng.mean(), [2.5, 0.0], rtol=RTOL)
    np.testing.assert_allclose(eng.std()[0] ** 2, 1.25, rtol=RTOL)
    np.testing.assert_allclose(eng.covariance()[0, 0], 5.0 / 3.0, rtol=RTOL)
    assert eng.effective_sample_size == pytest.approx(4.0, rel=RTOL)


@pytest.mark.parametrize("x,y,sigma", [(1.0, 1.5, 1.0), (2.0, 3.0, 0.7), (0.0, 0.4, 2.0)])
def test_hand_computed_update(x, y, sigma):
    eng = small_engine()
    lik, w, mean, std, cov = hand_posterior(x, y, sigma)
    np.testing.assert_allclose(eng.likelihood((x,), y, sigma), lik, rtol=RTOL)
    eng.update((x,), y, sigma)
    np.testing.assert_allclose(eng.weights, w, rtol=RTOL)
    np.testing.assert_allclose(eng.mean(), mean, rtol=RTOL)
    np.testing.assert_allclose(eng.std(), std, rtol=RTOL)
    np.testing.assert_allclose(eng.covariance(), cov, rtol=RTOL)
    assert eng.effective_sample_size == pytest.approx(1 / sum(v * v for v in w), rel=RTOL)
    assert eng.n_measurements == 1


def test_two_updates_multiply_likelihoods():
    eng = small_engine()
    eng.update((1.0,), 1.5, 1.0)
    eng.update((2.0,), 2.0, 1.0)
    lik = [math.exp(-((m + b - 1.5) ** 2) / 2 - ((2 * m + b - 2.0) ** 2) / 2) for m, b in zip(M, B)]
    np.testing.assert_allclose(eng.weights, [v / sum(lik) for v in lik], rtol=RTOL)


def test_choke_and_per_particle_sigma():
    eng = small_engine(choke=0.5)
    sig = np.array([0.5, 1.0, 2.0, 4.0])
    lik = [(math.exp(-((m + b - 1.5) / s) ** 2 / 2) / s) ** 0.5 for m, b, s in zip(M, B, sig)]
    np.testing.assert_allclose(eng.likelihood((1.0,), 1.5, sig), lik, rtol=RTOL)
    eng.update((1.0,), 1.5, sig)
    np.testing.assert_allclose(eng.weights, np.array(lik) / sum(lik), rtol=RTOL)


def test_two_channels_scalar_sigma_applies_to_both():
    eng = OBEEngine(two_channel, (np.array([0.0, 1.0]),), (M, B), (), seed=0, resample_threshold=0)
    assert eng.n_channels == 2
    lik = [math.exp(-(((m * 2 + b) - 2.5) / 0.8) ** 2 / 2) / 0.8 * math.exp(-(((m - 2 * b) - 0.5) / 0.8) ** 2 / 2) / 0.8
           for m, b in zip(M, B)]
    np.testing.assert_allclose(eng.likelihood((2.0,), [2.5, 0.5], 0.8), lik, rtol=RTOL)
    lik2 = [math.exp(-(((m * 2 + b) - 2.5) / 0.8) ** 2 / 2) / 0.8 * math.exp(-(((m - 2 * b) - 0.5) / 3.0) ** 2 / 2) / 3.0
            for m, b in zip(M, B)]
    eng.update((2.0,), [2.5, 0.5], [0.8, 3.0])
    np.testing.assert_allclose(eng.weights, np.array(lik2) / sum(lik2), rtol=RTOL)
    with pytest.raises(ValueError, match="y must have 2"):
        eng.update((2.0,), 2.5, 0.8)


def test_quantiles_and_credible_interval():
    eng = OBEEngine(line, (np.array([0.0]),), ([4.0, 1.0, 3.0, 2.0], [0.0] * 4), (), seed=0)
    np.testing.assert_array_equal(eng.quantiles([0.25, 0.5, 0.75, 1.0])[0], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(eng.credible_interval(0.5)[0], [1.0, 3.0])
    with pytest.raises(ValueError):
        eng.credible_interval(1.5)


@pytest.mark.parametrize("resampler", ["systematic", "residual", "multinomial"])
def test_resampling_keeps_mean_and_covariance(resampler):
    rng = np.random.default_rng(5)
    n = 40000
    x = rng.multivariate_normal([1.0, -2.0], [[1.0, 0.6], [0.6, 2.0]], size=n).T
    w = np.exp(-0.5 * (x[0] - 1.5) ** 2)  # a reweighted posterior, ESS well below N
    post = ParticlePosterior(x, w, rng=rng, resampler=resampler)
    mu, cov = post.mean(), post.covariance()
    sd = np.sqrt(np.diag(cov))
    post.resample()
    assert post.effective_sample_size == pytest.approx(n)
    # stated tolerance: mean within 0.03 sd, covariance entries within 4% of sd_i*sd_j
    assert np.all(np.abs(post.mean() - mu) < 0.03 * sd)
    assert np.all(np.abs(post.covariance() - cov) < 0.04 * np.outer(sd, sd))


def test_resampling_without_scale_inflates_by_two_minus_a_squared():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 100000))
    post = ParticlePosterior(x, rng=rng, scale=False)
    v0 = post.covariance()[0, 0]
    post.resample()
    assert post.covariance()[0, 0] / v0 == pytest.approx(2 - 0.98 ** 2, rel=0.02)


def test_weighted_draws_follow_weights():
    rng = np.random.default_rng(7)
    for n in (50, 40000):  # plain and two-level inverse CDF
        w = np.zeros(n)
        w[[3, n // 2, n - 1]] = [0.2, 0.3, 0.5]
        post = ParticlePosterior(np.arange(n, dtype=float), w, rng=rng)
        idx = post.draw_indices(20000)
        counts = np.bincount(idx, minlength=n)
        assert set(np.flatnonzero(counts)) == {3, n // 2, n - 1}
        np.testing.assert_allclose(counts[[3, n // 2, n - 1]] / 20000, [0.2, 0.3, 0.5], atol=0.02)


def run_one_parameter(seed, n_particles=400, n_meas=8):
    """Truth drawn from the prior, so the 95% credible interval should cover it 95% of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, 1.0)
    eng = OBEEngine(lambda s, p, c: p[0] * s[0], (np.linspace(0.2, 1.0, 5),),
                    rng.normal(0.0, 1.0, (1, n_particles)), (), seed=rng)
    for _ in range(n_meas):
        x = eng.optimal_setting()
        eng.update(x, truth * x[0] + rng.normal(0.0, 1.0), 1.0)
    lo, hi = eng.credible_interval(0.95)[0]
    return lo <= truth <= hi, eng.posterior.n_resamples


def test_calibration_coverage_of_95_percent_interval():
    results = [run_one_parameter(seed) for seed in range(600)]
    coverage = np.mean([r[0] for r in results])
    assert sum(r[1] for r in results) > 600  # resampling is exercised
    assert 0.925 <= coverage <= 0.975, coverage


def lorentz_run(seed, selection, n_meas, n_particles=6000):
    rng = np.random.default_rng(seed)
    truth = (2.7777, -1000.0, 50300.0)
    eng = OBEEngine("lorentzian", (np.linspace(1.5, 4.5, 200),),
                    {"x0": {"uniform": [2, 4]}, "a": {"uniform": [-2000, -400]},
                     "b": {"normal": [50000, 1000]}}, n_particles=n_particles,
                    default_noise_std=500.0, seed=seed)
    for _ in range(n_meas):
        x = eng.optimal_setting() if selection == "optimal" else eng.random_setting()
        eng.update(x, float(lorentzian(x, truth, (0.1,))) + rng.normal(0, 500.0), 500.0)
    return eng, truth


def test_converges_on_lorentzian():
    eng, truth = lorentz_run(3, "optimal", 150)
    err = np.abs(eng.mean() - truth)
    assert np.all(err < 4 * eng.std()), (eng.mean(), eng.std())
    assert eng.std()[0] < 0.02 and eng.std()[1] < 250


def test_optimal_beats_random():
    opt = [abs(lorentz_run(s, "optimal", 60, 3000)[0].mean()[0] - 2.7777) for s in range(6)]
    rnd = [abs(lorentz_run(s, "random", 60, 3000)[0].mean()[0] - 2.7777) for s in range(6)]
    assert np.median(opt) < np.median(rnd) / 2, (opt, rnd)


def test_same_seed_same_run_and_state_restore():
    def run(eng, k, seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(k):
            x = eng.good_setting()
            eng.update(x, float(lorentzian(x, (2.8, -900.0, 50200.0), (0.1,))) + rng.normal(0, 500), 500)
            out.append(x)
        return out
    cfg = dict(model="lorentzian", settings={"start": 1.5, "stop": 4.5, "num": 100},
               n_particles=2000, seed=11, noise_std=500)
    a, b = OBEEngine.from_config(cfg), OBEEngine.from_config(cfg)
    assert run(a, 30, 1) == run(b, 30, 1)
    np.testing.assert_array_equal(a.particles, b.particles)
    np.testing.assert_array_equal(a.weights, b.weights)
    state = a.get_state()
    state["rng_state"] = json.loads(json.dumps(state["rng_state"]))
    c = OBEEngine.from_config(cfg)
    c.set_state(state)
    assert c.n_measurements == 30
    assert run(a, 20, 2) == run(c, 20, 2)
    np.testing.assert_array_equal(a.particles, c.particles)


def snapshot(eng):
    return (eng.particles.copy(), eng.weights.copy(), eng.rng.bit_generator.state, eng.n_measurements)


def assert_unchanged(eng, snap):
    np.testing.assert_array_equal(eng.particles, snap[0])
    np.testing.assert_array_equal(eng.weights, snap[1])
    assert eng.rng.bit_generator.state == snap[2] and eng.n_measurements == snap[3]


@pytest.mark.parametrize("n,precision", [(4, "double"), (5000, "double"), (5000, "single")])
def test_zero_likelihood_raises_and_leaves_posterior(n, precision):
    eng = OBEEngine(line, (np.array([0.0, 1.0]),), np.random.default_rng(0).normal(0, 1, (2, n)),
                    (), seed=0, likelihood_precision=precision)
    eng.update((1.0,), 0.5, 1.0)
    snap = snapshot(eng)
    with pytest.raises(ZeroLikelihoodError, match="every particle"):
        eng.update((1.0,), 1e6, 1.0)
    assert_unchanged(eng, snap)
    with pytest.raises(ZeroLikelihoodError):
        eng.update_many([(1.0,), (1.0,)], [0.2, 1e6], 1.0)
    assert_unchanged(eng, snap)


@pytest.mark.parametrize("args,match", [
    (((float("nan"),), 1.0, 1.0), "settings must be finite"),
    (((1.0, 2.0), 1.0, 1.0), "settings must have 1"),
    (((1.0,), float("inf"), 1.0), "y must be finite"),
    (((1.0,), [1.0, 2.0], 1.0), "y must have 1"),
    (((1.0,), 1.0, 0.0), "sigma must be finite and positive"),
    (((1.0,), 1.0, float("nan")), "sigma must be finite and positive"),
    (((1.0,), 1.0, [1.0, 2.0, 3.0]), "sigma must be"),
    (((1.0,), 1.0, None), "sigma is required"),
])
def test_bad_input_rejected_before_change(args, match):
    eng = small_engine()
    eng.update((1.0,), 1.5, 1.0)
    snap = snapshot(eng)
    with pytest.raises(ValueError, match=match):
        eng.update(*args)
    with pytest.raises(ValueError, match="record 1"):
        eng.update_many([(1.0,), args[0]], [1.0, args[1]], [1.0, args[2]])
    assert_unchanged(eng, snap)


def test_selection_returns_tuples_of_floats_on_two_axes():
    eng = OBEEngine(lambda s, p, c: p[0] * s[0] + p[1] * s[1], (np.arange(3), np.arange(4)),
                    np.random.default_rng(1).normal(size=(2, 500)), (), seed=2, n_draws=30)
    assert eng.settings_grid.shape == (2, 12)
    for choose in (eng.optimal_setting, eng.good_setting, eng.random_setting, eng.next_setting):
        x = choose()
        assert isinstance(x, tuple) and len(x) == 2 and all(type(v) is float for v in x)
    assert eng.utility().shape == (12,)
    assert eng.optimal_setting() == (2.0, 3.0)  # largest spread at the largest settings


@pytest.mark.parametrize("utility", ["variance_approx", "pseudo_utility", "max_min", "full_kld"])
def test_utilities_prefer_informative_settings(utility):
    eng = OBEEngine(line, (np.linspace(0, 5, 11),), np.random.default_rng(3).normal(size=(2, 3000)),
                    (), utility=utility, seed=4)
    u = eng.utility()
    assert u.shape == (11,) and np.all(np.isfinite(u))
    assert np.argmax(u) == 10  # |x| largest: the line's value spreads most


def test_max_min_with_two_draws_is_four_variances():
    a = OBEEngine(line, (np.linspace(0, 5, 11),), np.random.default_rng(3).normal(size=(2, 300)),
                  (), utility="max_min", n_draws=2, seed=4)
    b = OBEEngine(line, (np.linspace(0, 5, 11),), np.random.default_rng(3).normal(size=(2, 300)),
                  (), utility="variance_approx", n_draws=2, seed=4)
    np.testing.assert_allclose(a.utility(), 4 * b.utility(), rtol=1e-12)


def test_unknown_noise_as_parameter():
    rng = np.random.default_rng(8)
    prior = (rng.uniform(-1, 1, 20000), rng.uniform(-1, 1, 20000), rng.uniform(0.01, 0.5, 20000))
    eng = OBEEngine(lambda s, p, c: p[0] * s[0] + p[1], (np.linspace(0, 1, 21),), prior, (),
                    noise_parameter_index=2, seed=9)
    for _ in range(80):
        x = eng.optimal_setting()
        eng.update(x, 0.3 * x[0] - 0.2 + rng.normal(0, 0.1))
    mean, std = eng.mean(), eng.std()
    assert abs(mean[0] - 0.3) < 4 * std[0] and abs(mean[1] + 0.2) < 4 * std[1]
    assert abs(mean[2] - 0.1) < 0.04


def test_kernel_normals_are_standard():
    from agents.obe.engine.posterior import _kernel_normals
    z = _kernel_normals(np.random.default_rng(12), np.empty((3, 100001)))
    assert np.all(np.isfinite(z))
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01
    assert abs(np.mean(z ** 4) - 3) < 0.05
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.01


def test_single_precision_likelihood_matches_double():
    prior = np.random.default_rng(13).normal(0, 1, (2, 5000))
    a = OBEEngine(line, (np.array([0.0, 1.0, 2.0]),), prior, (), seed=1, likelihood_precision="double",
                  resample_threshold=0.0)
    b = OBEEngine(line, (np.array([0.0, 1.0, 2.0]),), prior, (), seed=1, likelihood_precision="single",
                  resample_threshold=0.0)
    for x, y in ((1.0, 0.3), (2.0, 1.1), (0.0, -0.2)):
        a.update((x,), y, 0.5)
        b.update((x,), y, 0.5)
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(b.mean(), a.mean(), rtol=1e-6)


def test_default_likelihood_is_exact_to_1e_12_on_the_normalised_weights():
    """20 updates of 20,000 particles against the product of likelihoods in extended precision."""
    eng = OBEEngine.from_config({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 50},
                                 "n_particles": 20000, "noise_std": 500.0, "seed": 3,
                                 "resample_threshold": 0.0})
    assert eng.likelihood_precision == "double"
    eng.auto_resample = False
    rng = np.random.default_rng(3)
    log_lik = np.zeros(eng.n_particles, dtype=np.longdouble)
    for _ in range(20):
        x = (float(rng.uniform(1.5, 4.5)),)
        y = float(lorentzian(x, (2.7777, -1000.0, 50300.0), (0.1,))) + 500.0 * rng.standard_normal()
        f = np.asarray(lorentzian(x, tuple(eng.particles), (0.1,))).astype(np.longdouble)
        log_lik += -((f - y) / np.longdouble(500.0)) ** 2 / 2
        eng.update(x, y, 500.0)
    exact = np.exp(log_lik - log_lik.max())
    exact /= exact.sum()
    keep = exact > 1e-250
    rel = np.abs(eng.weights[keep] - exact[keep]) / exact[keep]
    assert rel.max() < 1e-12, rel.max()


def test_single_precision_utility_ranks_like_double():
    kw = dict(model="lorentzian", settings={"start": 1.5, "stop": 4.5, "num": 300}, n_particles=3000,
              noise_std=500, seed=5)
    a = OBEEngine.from_config(kw)
    b = OBEEngine.from_config({**kw, "utility_precision": "single"})
    ua, ub = a.utility(), b.utility()  # same draws: same generator state
    np.testing.assert_allclose(ub, ua, rtol=1e-3)
    assert a.optimal_setting() == b.optimal_setting()


def test_state_round_trip_through_run_store(tmp_path):
    from agents.obe.engine.obe_engine import join_state, split_state
    from agents.obe.run_store import RunStore
    cfg = {"model": "line", "settings": [0.0, 0.5, 1.0], "n_particles": 3000, "seed": 21}
    a = OBEEngine.from_config(cfg)
    rng = np.random.default_rng(0)
    for _ in range(15):
        x = a.optimal_setting()
        a.update(x, 0.4 * x[0] - 0.1 + rng.normal(0, 0.05), 0.05)
    with RunStore(tmp_path / "obe.sqlite") as store:
        run = store.new_run(a.config)
        arrays, meta = split_state(a.get_state())
        store.save_snapshot(run, a.n_measurements, arrays, meta)
        snap = store.latest_snapshot(run)
        b = OBEEngine.from_config(store.run(run)["config"])
    b.set_state(join_state(snap.arrays, snap.meta))
    assert b.n_measurements == 15
    assert [a.good_setting() for _ in range(5)] == [b.good_setting() for _ in range(5)]
    np.testing.assert_array_equal(a.weights, b.weights)


def test_cost_per_setting_steers_the_choice():
    prior = np.random.default_rng(3).normal(size=(2, 2000))
    cheap = OBEEngine(line, (np.linspace(0, 5, 11),), prior, (), seed=4)
    assert cheap.optimal_setting() == (5.0,)
    cost = np.ones(11)
    cost[-3:] = 100.0
    dear = OBEEngine(line, (np.linspace(0, 5, 11),), prior, (), seed=4, cost=cost)
    assert dear.optimal_setting() == (3.5,)
    with pytest.raises(ValueError, match="cost"):
        OBEEngine(line, (np.linspace(0, 5, 11),), prior, (), cost=np.ones(3))


def test_two_channel_utility_weights_channels_by_noise():
    prior = np.random.default_rng(3).normal(size=(2, 2000))
    eng = OBEEngine(two_channel, (np.linspace(0, 5, 11),), prior, (), seed=4,
                    default_noise_std=[1.0, 1e6])
    only_first = OBEEngine(line, (np.linspace(0, 5, 11),), prior, (), seed=4)
    np.testing.assert_allclose(eng.utility(), only_first.utility(), rtol=1e-6)


@pytest.mark.parametrize("change,match", [
    ({"format": "x"}, "format"),
    ({"rng_state": {"bit_generator": "MT19937"}}, "rng_state"),
    ({"n_measurements": -1}, "n_measurements"),
    ({"last_setting_index": 99}, "last_setting_index"),
    ({"weights": np.zeros(300)}, "weights"),
    ({"particles": np.full((2, 300), np.nan)}, "non-finite"),
    ({"particles": np.zeros((3, 300))}, "shape"),
])
def test_bad_state_rejected_before_change(change, match):
    eng = OBEEngine(line, (np.array([0.0, 1.0]),), np.random.default_rng(0).normal(size=(2, 300)), (), seed=0)
    eng.update((1.0,), 0.5, 1.0)
    state = {**eng.get_state(), **change}
    snap = snapshot(eng)
    with pytest.raises(ValueError, match=match):
        eng.set_state(state)
    assert_unchanged(eng, snap)


def test_nan_model_values_neither_crash_nor_win():
    def sqrt_model(settings, params, constants):
        x, = settings
        return np.sqrt(x) * params[0]  # NaN for x < 0

    with np.errstate(invalid="ignore"):
        eng = OBEEngine(sqrt_model, (np.array([-1.0, 1.0, 4.0]),),
                        np.random.default_rng(0).normal(size=(1, 500)), (), seed=0)
        u = eng.utility()
        assert u[0] == 0.0 and np.all(np.isfinite(u))
        assert eng.optimal_setting() == (4.0,)
        with pytest.raises(ZeroLikelihoodError):
            eng.update((-1.0,), 0.0, 1.0)  # every particle predicts NaN


# -- replacing the cloud, forced and automatic resampling -------------------------------------

def test_set_particles_with_weights_replaces_the_cloud():
    eng = small_engine()
    eng.update((1.0,), 1.5, 1.0)
    n_before, state = eng.n_measurements, eng.rng.bit_generator.state
    eng.set_particles(([0.0, 1.0, 2.0], [1.0, 1.0, 1.0]), weights=[1.0, 1.0, 2.0])
    assert eng.n_particles == 3 and eng.n_measurements == n_before
    np.testing.assert_allclose(eng.weights, [0.25, 0.25, 0.5], rtol=RTOL)
    np.testing.assert_allclose(eng.mean(), [1.25, 1.0], rtol=RTOL)
    assert eng.rng.bit_generator.state == state
    eng.update((1.0,), 1.0, 1.0)  # buffers follow the new size
    eng.set_particles(np.array([[0.0, 2.0], [0.0, 0.0]]))
    np.testing.assert_allclose(eng.weights, [0.5, 0.5], rtol=RTOL)
    snap = snapshot(eng)
    for bad, match in ((([0.0, 1.0],), "2 rows"), (([0.0, np.nan], [0.0, 0.0]), "non-finite"),
                       (([0.0, 1.0], [0.0, 0.0], [1.0, -1.0]), "weights")):
        particles, weights = (bad, None) if len(bad) < 3 else (bad[:2], bad[2])
        with pytest.raises(ValueError, match=match):
            eng.set_particles(particles, weights)
    assert_unchanged(eng, snap)


def test_more_draws_where_they_are_cheap():
    from agents.obe.engine.obe_engine import auto_draws
    assert auto_draws(200) == 100 and auto_draws(2000) == 30 and auto_draws(400) == 50
    assert auto_draws(100, 2) == 100 and auto_draws(5) == 100
    eng = OBEEngine.from_config({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
                                 "n_particles": 100, "seed": 1})
    assert eng.n_draws == 100
    assert OBEEngine.from_config({**eng.config, "n_draws": 30}).n_draws == 30


def test_forced_resample_and_auto_resampling_off_and_on():
    eng = OBEEngine(line, (np.array([0.0, 1.0, 2.0]),), np.random.default_rng(4).normal(0, 1, (2, 2000)),
                    (), seed=4)
    eng.auto_resample = False
    for _ in range(6):
        assert eng.update((2.0,), 0.3, 0.05) is False
    assert eng.effective_sample_size < 0.1 * eng.n_particles and eng.posterior.n_resamples == 0
    mean = eng.mean()
    eng.resample()
    assert eng.posterior.n_resamples == 1
    np.testing.assert_allclose(eng.weights, np.full(2000, 1 / 2000))
    np.testing.assert_allclose(eng.mean(), mean, atol=0.05)
    eng.auto_resample = True
    resampled = [eng.update((0.0,), 0.0, 0.02) for _ in range(4)]
    assert any(resampled) and eng.posterior.n_resamples > 1


def test_explicit_particles_in_the_configuration():
    rng = np.random.default_rng(8)
    rows = [rng.uniform(2, 4, 500).tolist(), rng.uniform(-2000, -400, 500).tolist(),
            rng.normal(50000, 1000, 500).tolist()]
    base = {"model": "lorentzian", "settings": [2.0, 3.0], "seed": 1}
    eng = OBEEngine.from_config({**base, "particles": rows, "weights": [2.0] * 250 + [1.0] * 250})
    assert eng.n_particles == 500
    np.testing.assert_array_equal(eng.particles, np.array(rows))
    np.testing.assert_allclose(eng.weights[:2], [2 / 750, 2 / 750], rtol=RTOL)
    named = OBEEngine.from_config({**base, "particles": dict(zip(("x0", "a", "b"), rows))})
    np.testing.assert_array_equal(named.particles, eng.particles)
    for change, match in (({"particles": rows[:2]}, "3 lists"),
                          ({"particles": [rows[0], rows[1], rows[2][:-1]]}, "expected 500"),
                          ({"particles": [rows[0], rows[1], ["x"] * 500]}, "numbers only"),
                          ({"particles": rows, "priors": {}}, "not both"),
                          ({"particles": rows, "n_particles": 10}, "n_particles"),
                          ({"particles": rows, "weights": [1.0]}, "expected 500"),
                          ({"particles": rows, "weights": [-1.0] * 500}, "non-negative"),
                          ({"weights": [1.0]}, "goes with 'particles'"),
                          ({"particles": {"x0": rows[0]}}, "missing")):
        with pytest.raises(ValueError, match=match):
            OBEEngine.from_config({**base, **change})


def test_draws_evaluated_in_chunks_give_the_same_utility(monkeypatch):
    import agents.obe.engine.obe_engine as module
    kw = dict(model="lorentzian", settings={"start": 1.5, "stop": 4.5, "num": 300}, n_particles=2000,
              noise_std=500, seed=5, n_draws=40)
    whole = OBEEngine.from_config(kw).utility()
    monkeypatch.setattr(module, "DRAW_CHUNK_VALUES", 1000)  # 3 draws per model call
    eng = OBEEngine.from_config(kw)
    np.testing.assert_array_equal(eng.utility(), whole)
    assert eng._draw_buf is not None and eng._draw_buf.shape == (1, 40, 300)
    def two_channel_engine():
        return OBEEngine(two_channel, (np.linspace(0, 2, 500),),
                         np.random.default_rng(2).normal(size=(2, 300)), (), seed=1, n_draws=7)
    chunked = two_channel_engine().utility()  # 2 draws per model call
    monkeypatch.setattr(module, "DRAW_CHUNK_VALUES", 8192)
    np.testing.assert_array_equal(chunked, two_channel_engine().utility())
