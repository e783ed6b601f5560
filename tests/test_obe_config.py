"""OBE model registry and the JSON configuration builder (what a network newrun goes through)."""
import json

import numpy as np
import pytest

from agents.obe.engine.obe_engine import OBEEngine
from agents.obe.engine.models import ModelSpec, available_models, get_model, register_model
from agents.obe.engine.priors import sample_prior

LIBRARY = ["damped_sinusoid", "exponential_decay", "gaussian", "line", "lorentzian"]


def test_library_is_registered():
    assert set(LIBRARY) <= set(available_models())
    with pytest.raises(ValueError, match="unknown model 'nope'; known models: .*lorentzian"):
        get_model("nope")


@pytest.mark.parametrize("name", LIBRARY)
def test_models_broadcast_both_ways(name):
    spec = get_model(name)
    rng = np.random.default_rng(0)
    params = sample_prior(spec.default_priors, spec.parameters, 50, rng)
    grid = np.linspace(0.1, 3.0, 40)
    over_particles = spec.function((0.7,), tuple(params), spec.default_constants)
    over_settings = spec.function((grid[None, :],), tuple(p[:7, None] for p in params),
                                  spec.default_constants)
    assert np.shape(over_particles) == (50,) and np.shape(over_settings) == (7, 40)
    np.testing.assert_allclose(over_settings[:, 5], spec.function(
        (grid[5],), tuple(p[:7] for p in params), spec.default_constants), rtol=1e-12)
    scalar = spec.function((0.7,), tuple(float(p[0]) for p in params), spec.default_constants)
    assert np.ndim(scalar) == 0 and np.isfinite(scalar)


def test_lorentzian_values():
    f = get_model("lorentzian").function
    assert f((2.0,), (2.0, -1000.0, 50000.0), (0.1,)) == pytest.approx(49000.0)
    assert f((2.1,), (2.0, -1000.0, 50000.0), (0.1,)) == pytest.approx(49500.0)


def test_register_refuses_duplicates():
    spec = ModelSpec("test_quadratic", lambda s, p, c: p[0] * s[0] ** 2, ("k",),
                     default_priors={"k": {"uniform": [0, 1]}})
    register_model(spec)
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)
    eng = OBEEngine.from_config({"model": "test_quadratic", "settings": [1, 2, 3],
                                 "n_particles": 100, "seed": 1})
    assert eng.parameter_names == ("k",)


def test_full_config_builds_engine():
    cfg = {"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
           "priors": {"x0": {"uniform": [2, 4]}, "a": {"uniform": [-2000, -400]},
                      "b": {"normal": [50000, 1000]}},
           "constants": {"d": 0.1}, "n_particles": 5000, "n_draws": 20, "utility": "max_min",
           "selection": "good", "pickiness": 19, "noise_std": 500, "choke": 0.9, "a_param": 0.95,
           "resample_threshold": 0.4, "scale": False, "resampler": "residual", "cost": 2.0,
           "seed": 3}
    eng = OBEEngine.from_config(json.loads(json.dumps(cfg)))
    assert eng.particles.shape == (3, 5000) and eng.settings_grid.shape == (1, 200)
    assert eng.constants == (0.1,) and eng.n_draws == 20 and eng.selection == "good"
    assert eng.posterior.resampler == "residual" and eng.posterior.scale is False
    assert 2 <= eng.particles[0].min() and eng.particles[0].max() <= 4
    assert eng.config == cfg
    x = eng.next_setting()
    eng.update(x, 50000.0, 500.0)


def test_defaults_and_two_axes_and_loguniform():
    eng = OBEEngine.from_config({"model": "exponential_decay", "settings": [0.1, 0.5, 1, 2, 4],
                                 "priors": {"tau": {"loguniform": [0.1, 10]}}, "n_particles": 300,
                                 "seed": 0})
    assert eng.particles[1].min() >= 0.1 and eng.particles[1].max() <= 10
    two = OBEEngine(lambda s, p, c: p[0] * s[0] + s[1], ([0, 1], np.linspace(0, 1, 3)),
                    np.zeros((1, 5)), ())
    assert two.settings_grid.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0.5, 1, 0, 0.5, 1]]


def test_noise_parameter_by_name():
    spec = ModelSpec("test_line_noise", lambda s, p, c: p[0] * s[0] + p[1], ("m", "b", "sigma"),
                     default_priors={"m": {"uniform": [-1, 1]}, "b": {"uniform": [-1, 1]},
                                     "sigma": {"loguniform": [0.01, 1]}})
    register_model(spec, replace=True)
    eng = OBEEngine.from_config({"model": "test_line_noise", "settings": [0, 0.5, 1],
                                 "noise_parameter": "sigma", "n_particles": 1000, "seed": 2})
    assert eng.noise_parameter_index == (2,)
    eng.update((0.5,), 0.1)


BASE = {"model": "lorentzian", "settings": [1.0, 2.0, 3.0], "n_particles": 100}


@pytest.mark.parametrize("change,match", [
    ({"bogus": 1}, r"unknown config key\(s\) \['bogus'\]"),
    ({"model": "__import__('os')"}, "unknown model"),
    ({"model": 3}, "unknown model"),
    ({"settings": None}, "'settings'"),
    ({"settings": [1, float("nan")]}, "axis 0 must contain finite numbers only"),
    ({"settings": {"start": 0, "stop": 1}}, "start, stop, num"),
    ({"settings": {"start": 0, "stop": 1, "num": 10 ** 9}}, "num must be an integer"),
    ({"settings": [{"start": 0, "stop": 1, "num": 1000}] * 2}, "the grid has 1000000 settings"),
    ({"settings": "1,2,3"}, "'settings'"),
    ({"n_particles": 10 ** 8}, r"'n_particles' must be an integer in \[1, 1000000\]"),
    ({"n_particles": 2.5}, "'n_particles'"),
    ({"n_particles": True}, "'n_particles'"),
    ({"n_draws": 1}, "'n_draws'"),
    ({"n_draws": 1000, "settings": {"start": 0, "stop": 1, "num": 100000}}, "exceeds the limit"),
    ({"priors": {"x0": {"uniform": [4, 2]}}}, "parameter 'x0'.*lo < hi"),
    ({"priors": {"x0": {"cauchy": [0, 1]}}}, "unknown distribution 'cauchy'"),
    ({"priors": {"b": {"normal": [0, -1]}}}, "sd > 0"),
    ({"priors": {"a": {"loguniform": [-1, 1]}}}, "0 < lo"),
    ({"priors": {"zz": {"uniform": [0, 1]}}}, r"unknown parameter\(s\) \['zz'\]"),
    ({"priors": {"x0": {"uniform": ["a", 1]}}}, "must be a number"),
    ({"priors": [1, 2]}, "'priors' must be an object"),
    ({"constants": [1, 2]}, "'constants' must list 1"),
    ({"constants": {"q": 1}}, "unknown constant"),
    ({"constants": {"d": "x"}}, "'d' must be a finite number"),
    ({"utility": "exec"}, "'utility' must be one of"),
    ({"selection": "best"}, "'selection' must be one of"),
    ({"pickiness": -1}, "'pickiness'"),
    ({"noise_std": 0}, "'noise_std'"),
    ({"noise_std": 1, "default_noise_std": 1}, "only one"),
    ({"noise_parameter": "nope"}, "'noise_parameter'"),
    ({"choke": 0}, "'choke'"),
    ({"a_param": 1.5}, "'a_param'"),
    ({"resample_threshold": 2}, "'resample_threshold'"),
    ({"scale": "yes"}, "'scale'"),
    ({"resampler": "magic"}, "'resampler'"),
    ({"cost": [1, 2]}, "'cost'"),
    ({"cost": -1}, "'cost'"),
    ({"seed": -1}, "'seed'"),
    ({"seed": "abc"}, "'seed'"),
])
def test_bad_config_names_key_and_value(change, match):
    with pytest.raises(ValueError, match=match):
        OBEEngine.from_config({**BASE, **change})


def test_missing_seed_is_chosen_and_recorded():
    a = OBEEngine.from_config({**BASE})
    assert isinstance(a.config["seed"], int)
    b = OBEEngine.from_config(a.config)
    np.testing.assert_array_equal(a.particles, b.particles)
    assert a.optimal_setting() == b.optimal_setting()


def test_entropy_utilities_need_five_draws():
    with pytest.raises(ValueError, match="n_draws >= 5"):
        OBEEngine.from_config({**BASE, "utility": "pseudo_utility", "n_draws": 4})


def test_config_must_be_object_and_name_model():
    with pytest.raises(ValueError, match="config must be an object"):
        OBEEngine.from_config(["model"])
    with pytest.raises(ValueError, match="'model' is required"):
        OBEEngine.from_config({"settings": [1]})
