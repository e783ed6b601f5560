"""The OBE engine's resample-move step: Metropolis-Hastings against the exact posterior."""
import numpy as np
import pytest

from agents.obe.engine.obe_engine import OBEEngine, ZeroLikelihoodError
from agents.obe.engine.snapshot import join_state, split_state

NORMAL_PRIOR = {"m": {"normal": [0.0, 1.0]}, "b": {"normal": [0.0, 1.0]}}
SIGMA = 0.5
RECORDS = [(0.0, 0.3), (1.0, 1.1), (0.5, 0.2), (1.0, 0.9), (0.0, -0.1), (0.25, 0.4)]


def line_engine(**kw):
    return OBEEngine("line", np.linspace(0.0, 1.0, 5), NORMAL_PRIOR, n_particles=20000, seed=3, **kw)


def analytic_line_posterior():
    """Conjugate Gaussian posterior of (m, b) for y = m x + b, prior N(0, I), noise SIGMA."""
    phi = np.array([[x, 1.0] for x, _ in RECORDS])
    y = np.array([v for _, v in RECORDS])
    cov = np.linalg.inv(np.eye(2) + phi.T @ phi / SIGMA ** 2)
    return cov @ phi.T @ y / SIGMA ** 2, cov


@pytest.mark.parametrize("scale", [False, True])
def test_moves_keep_the_exact_posterior_through_many_resamples(scale):
    mean, cov = analytic_line_posterior()
    moved, plain = line_engine(scale=scale), line_engine(scale=scale, move_steps=0)
    for eng in (moved, plain):
        for x, y in RECORDS:
            eng.update((x,), y, SIGMA)
        for _ in range(30):  # each Liu-West step alone widens by 2 - a**2 without scale
            eng.resample()
    assert moved.mover.n_moves >= 30 and 0.5 < moved.mover.acceptance < 1.0
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(moved.mean(), mean, atol=0.05 * sd.max())
    np.testing.assert_allclose(moved.std(), sd, rtol=0.06)
    np.testing.assert_allclose(moved.covariance()[0, 1], cov[0, 1], atol=0.1 * sd.prod())
    if not scale:
        assert np.all(plain.std() > 1.5 * sd)  # the inflation that the moves remove


def test_move_respects_the_prior_support():
    eng = OBEEngine("line", [0.0, 1.0], {"m": {"uniform": [0.0, 1.0]}, "b": {"uniform": [0.0, 1.0]}},
                    n_particles=4000, scale=False, seed=1)
    for _ in range(3):
        eng.update((1.0,), 2.2, 0.3)  # pushes the particles against m, b <= 1
        for _ in range(5):
            eng.resample()
    assert eng.particles.max() <= 1.0 and eng.particles.min() >= 0.0


def test_snapshot_continues_bit_for_bit():
    a, b = line_engine(scale=False), line_engine(scale=False)
    for x, y in RECORDS[:3]:
        a.update((x,), y, SIGMA)
        b.update((x,), y, SIGMA)
    a.resample()
    b.resample()
    arrays, meta = split_state(b.get_state())
    assert "move_logpost" in arrays and isinstance(meta["move_offset"], float)
    c = line_engine(scale=False)
    c.set_state(join_state(arrays, meta))
    for eng in (a, c):
        for x, y in RECORDS[3:]:
            eng.update((x,), y, SIGMA)
        eng.resample()
    np.testing.assert_array_equal(a.particles, c.particles)
    assert a.mover.n_settings == c.mover.n_settings == 4


def test_rejected_measurement_leaves_the_statistics():
    eng = line_engine()
    eng.update((0.0,), 0.3, SIGMA)
    before = {k: v for k, v in eng.get_state().items() if k.startswith("move_")}
    with pytest.raises(ZeroLikelihoodError):
        eng.update((1.0,), 1e6, 1e-3)
    after = {k: v for k, v in eng.get_state().items() if k.startswith("move_")}
    assert sorted(before) == sorted(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_over_budget_falls_back_to_liu_west():
    eng = line_engine(move_budget=1000)
    eng.update((0.0,), 0.3, SIGMA)
    eng.resample()
    assert eng.mover.n_moves == 0 and eng.mover.n_skipped == 1


def test_moves_off_without_a_known_density():
    samples = np.random.default_rng(0).normal(size=(2, 1000))
    assert OBEEngine("line", [0.0, 1.0], samples).mover is None  # samples alone: no density
    eng = OBEEngine("line", [0.0, 1.0], samples, log_prior=NORMAL_PRIOR)
    assert eng.mover.enabled
    eng.update((1.0,), 0.5, np.full(1000, 0.5))  # per-particle sigma: the target is unknown
    assert not eng.mover.enabled and "move_w" not in eng.get_state()
    eng = OBEEngine("line", [0.0, 1.0], samples, log_prior=NORMAL_PRIOR)
    eng.set_particles(samples[:, :500])
    assert not eng.mover.enabled
    with pytest.raises(ValueError, match="one prior spec per parameter"):
        OBEEngine("line", [0.0, 1.0], samples, log_prior={"m": {"normal": [0, 1]}})
    with pytest.raises(ValueError, match="move_steps"):
        OBEEngine("line", [0.0, 1.0], samples, move_steps=-1)


def test_configuration_keys():
    cfg = {"model": "line", "settings": [0.0, 1.0], "particles": [[0.1, 0.2, 0.3], [0.0, 0.1, 0.2]]}
    assert OBEEngine.from_config(cfg).mover is None
    eng = OBEEngine.from_config({**cfg, "prior_density": {"m": {"uniform": [-1, 1]}, "b": {"uniform": [-1, 1]}},
                                 "move_steps": 2, "move_budget": 10 ** 6})
    assert eng.mover.steps == 2 and eng.mover.budget == 10 ** 6
    with pytest.raises(ValueError, match="prior_density"):
        OBEEngine.from_config({**cfg, "prior_density": {"m": {"uniform": [-1, 1]}}})
    with pytest.raises(ValueError, match="'move_steps'"):
        OBEEngine.from_config({"model": "line", "settings": [0, 1], "move_steps": 1000})


def test_hastings_ratio_of_the_shrinking_kernel():
    # A flat posterior (uniform prior, an uninformative measurement) must stay uniform through
    # resamples with a strong shrink (a = 0.8, scale=True); without the kernel's Hastings
    # ratio the cloud would contract towards the mean (std 0.16 instead of 1/sqrt(12)).
    eng = OBEEngine("line", [0.0, 1.0], {"m": {"uniform": [0, 1]}, "b": {"uniform": [0, 1]}},
                    n_particles=20000, a_param=0.8, scale=True, seed=2)
    eng.update((1.0,), 0.0, 1e3)
    for _ in range(30):
        eng.resample()
    np.testing.assert_allclose(eng.std(), 1 / np.sqrt(12), rtol=0.03)
    np.testing.assert_allclose(eng.mean(), 0.5, atol=0.01)


def test_a_failing_model_leaves_the_resample_plain():
    broken = {"now": False}

    def fragile(settings, params, constants):
        if broken["now"]:
            raise ValueError("no")
        return params[0] * settings[0] + params[1]

    eng = OBEEngine(fragile, [0.0, 1.0], np.random.default_rng(0).normal(size=(2, 500)),
                    log_prior=lambda p: -0.5 * (p[0] ** 2 + p[1] ** 2), seed=0)
    eng.update((1.0,), 0.5, SIGMA)
    broken["now"] = True  # the proposals' evaluation fails
    resamples, moves = eng.posterior.n_resamples, eng.mover.n_moves
    eng.resample()
    assert eng.posterior.n_resamples == resamples + 1 and eng.mover.n_moves == moves
    assert eng.mover.n_skipped == 1 and eng.mover.logpost is None
