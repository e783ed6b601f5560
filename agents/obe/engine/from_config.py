"""Check an OBE engine's JSON-able configuration, every key and size, and turn it into arguments.

:meth:`OBEEngine.from_config <agents.obe.engine.obe_engine.OBEEngine.from_config>` builds the
engine from what :func:`engine_arguments` returns. This is what a network ``newrun`` request goes
through, so it evaluates nothing, accepts only
registered model names, known keys and plain JSON values, and refuses sizes above the limits.

Configuration keys (only ``model`` is required)::

    model                str, a registered model name
    settings             axes: a list of numbers, {"start", "stop", "num"}, or a list of those
                         (one per setting axis); default: the model has none, so required
    priors               {parameter name: {"uniform": [lo, hi]} | {"normal": [mu, sd]} |
                         {"loguniform": [lo, hi]} | {"fixed": value}}; missing names take the
                         model's default prior
    particles            explicit prior samples instead of priors: one list of N numbers per
                         parameter, as a list in the model's order or {name: list}; then
                         n_particles is N (n_particles, if given, must equal it)
    weights              with particles: N non-negative numbers (normalised), default uniform
                         (weights turn the resample-move step off)
    prior_density        with particles: {parameter name: prior spec} (as in priors), the density
                         the samples were drawn from; it lets the resample-move step run
    constants            list of numbers in the model's order, or {name: value}
    n_particles          int, default 10000, at most MAX_PARTICLES
    n_draws              int 2..MAX_DRAWS, or null (default): more draws where cheap (OBEEngine)
    utility              "variance_approx" | "pseudo_utility" | "max_min" | "full_kld"
    selection            "optimal" | "good" | "random"
    pickiness            number in [0, 1000], default 15
    noise_std            number or list per channel (alias default_noise_std), default 1
    noise_parameter      parameter name (or list, one per channel) holding the unknown noise std
    choke                number in (0, 1] or null
    a_param              number in (0, 1], default 0.98
    resample_threshold   number in [0, 1], default 0.5
    scale                bool, default true
    resampler            "systematic" | "residual" | "multinomial"
    cost                 positive number, or a list with one value per grid setting
    seed                 int >= 0, or null for a fresh one (recorded in engine.config["seed"])
    likelihood_precision "double" (default) | "single" | "auto" (see OBEEngine)
    utility_precision    "double" | "single" (see OBEEngine)
    move_steps           int 0..MAX_MOVE_STEPS, default 1: Metropolis-Hastings steps per resample
                         against the exact posterior (needs priors or prior_density; 0: off)
    move_budget          int 0..MAX_WORK, default MOVE_BUDGET: model values per resample for them
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .models import get_model
from .move import MOVE_BUDGET
from .posterior import RESAMPLERS
from .priors import check_prior_spec
from .quoting import show as _show
from .utility import SELECTIONS, UTILITIES

__all__ = ["engine_arguments", "MAX_PARTICLES", "MAX_SETTINGS", "MAX_DRAWS", "MAX_WORK", "MAX_MOVE_STEPS"]

MAX_PARTICLES = 1_000_000
MAX_SETTINGS = 100_000
MAX_DRAWS = 1000
MAX_WORK = 20_000_000  # n_particles * n_params, and n_draws * settings * channels
MAX_SEED = 2 ** 63
MAX_MOVE_STEPS = 100

_KEYS = ("model", "settings", "priors", "particles", "weights", "constants", "n_particles", "n_draws", "utility",
         "selection", "pickiness", "noise_std", "default_noise_std", "noise_parameter", "choke",
         "a_param", "resample_threshold", "scale", "resampler", "cost", "seed",
         "likelihood_precision", "utility_precision", "prior_density", "move_steps", "move_budget")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(cfg: Mapping, key: str, default: float, lo: float, hi: float, *,
         lo_open: bool = False) -> float:
    v = cfg.get(key, default)
    if not _is_num(v) or not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ValueError(f"config key {_show(key)} must be a number in {bound}, got {_show(v)}")
    return float(v)


def _int(cfg: Mapping, key: str, default: int, lo: int, hi: int) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"config key {_show(key)} must be an integer in [{lo}, {hi}], got {_show(v)}")
    return v


def _choice(cfg: Mapping, key: str, default: str, options: tuple[str, ...]) -> str:
    v = cfg.get(key, default)
    if v not in options:
        raise ValueError(f"config key {_show(key)} must be one of {list(options)}, got {_show(v)}")
    return v


def _axis(spec: Any, k: int) -> np.ndarray:
    where = f"config key 'settings' axis {k}"
    if isinstance(spec, Mapping):
        if set(spec) != {"start", "stop", "num"}:
            raise ValueError(f"{where} must have exactly the keys start, stop, num; got {_show(sorted(spec))}")
        start, stop, num = spec["start"], spec["stop"], spec["num"]
        if not (_is_num(start) and _is_num(stop) and math.isfinite(start) and math.isfinite(stop)):
            raise ValueError(f"{where}: start and stop must be finite numbers, got {_show(start)}, {_show(stop)}")
        if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= MAX_SETTINGS:
            raise ValueError(f"{where}: num must be an integer in [1, {MAX_SETTINGS}], got {_show(num)}")
        return np.linspace(float(start), float(stop), num)
    if isinstance(spec, (list, tuple)):
        if not 1 <= len(spec) <= MAX_SETTINGS:
            raise ValueError(f"{where} must list 1 to {MAX_SETTINGS} values, got {len(spec)}")
        if not all(_is_num(v) and math.isfinite(v) for v in spec):
            bad = next(v for v in spec if not (_is_num(v) and math.isfinite(v)))
            raise ValueError(f"{where} must contain finite numbers only, got {_show(bad)}")
        return np.array(spec, dtype=float)
    raise ValueError(f"{where} must be a list of numbers or {{start, stop, num}}, got {_show(spec)}")


def _settings(cfg: Mapping) -> list[np.ndarray]:
    if "settings" not in cfg:
        raise ValueError("config key 'settings' is required")
    s = cfg["settings"]
    if isinstance(s, Mapping) or (isinstance(s, (list, tuple)) and s and all(_is_num(v) for v in s)):
        axes = [_axis(s, 0)]
    elif isinstance(s, (list, tuple)) and 1 <= len(s) <= 8:
        axes = [_axis(a, k) for k, a in enumerate(s)]
    else:
        raise ValueError(f"config key 'settings' must be an axis or a list of 1-8 axes, got {_show(s)}")
    total = math.prod(a.size for a in axes)
    if total > MAX_SETTINGS:
        raise ValueError(f"config key 'settings': the grid has {total} settings, limit {MAX_SETTINGS}")
    return axes


def _constants(cfg: Mapping, names: tuple[str, ...], defaults: tuple[float, ...]) -> tuple[float, ...]:
    c = cfg.get("constants")
    if c is None:
        return tuple(defaults)
    if isinstance(c, Mapping):
        unknown = [k for k in c if k not in names]
        if unknown:
            raise ValueError(f"config key 'constants': unknown constant(s) {_show(unknown)}; "
                             f"the model's constants are {list(names)}")
        vals = [c.get(n, d) for n, d in zip(names, defaults)]
    elif isinstance(c, (list, tuple)):
        if len(c) != len(names):
            raise ValueError(f"config key 'constants' must list {len(names)} value(s) "
                             f"{list(names)}, got {len(c)}")
        vals = list(c)
    else:
        raise ValueError(f"config key 'constants' must be a list or an object, got {_show(c)}")
    for n, v in zip(names, vals):
        if not (_is_num(v) and math.isfinite(v)):
            raise ValueError(f"config key 'constants': {_show(n)} must be a finite number, got {_show(v)}")
    return tuple(float(v) for v in vals)


def _numbers(value: Any, where: str, n: int | None) -> np.ndarray:
    """A list of finite numbers (of length ``n`` if given) as a float array."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where} must be a non-empty list of numbers, got {type(value).__name__}")
    if len(value) > MAX_PARTICLES:
        raise ValueError(f"{where} has {len(value)} values, limit {MAX_PARTICLES}")
    if n is not None and len(value) != n:
        raise ValueError(f"{where} has {len(value)} values; expected {n} (one per particle)")
    if not all(_is_num(v) for v in value):
        bad = next(v for v in value if not _is_num(v))
        raise ValueError(f"{where} must contain numbers only, got {bad!r}")
    arr = np.array(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} must contain finite numbers only")
    return arr


def _explicit_particles(cfg: Mapping, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``particles`` key as a ``(P, N)`` array, and the ``weights`` key (or None)."""
    if "priors" in cfg:
        raise ValueError("give config key 'priors' or 'particles', not both")
    rows = cfg["particles"]
    if isinstance(rows, Mapping):
        missing = [n for n in names if n not in rows]
        extra = [k for k in rows if k not in names]
        if missing or extra:
            raise ValueError(f"config key 'particles' must have one list per parameter {list(names)}; "
                             f"missing {missing}, unknown {extra}")
        rows = [rows[n] for n in names]
    elif not isinstance(rows, (list, tuple)) or len(rows) != len(names):
        raise ValueError(f"config key 'particles' must be {len(names)} lists (one per parameter "
                         f"{list(names)}) or an object of them")
    n = len(rows[0]) if isinstance(rows[0], (list, tuple)) else None
    if n is not None and n * len(names) > MAX_WORK:
        raise ValueError(f"config key 'particles': {n} particles x {len(names)} parameters exceeds "
                         f"the limit {MAX_WORK}")
    x = np.stack([_numbers(r, f"config key 'particles' ({name})", n) for r, name in zip(rows, names)])
    if "n_particles" in cfg and cfg["n_particles"] != x.shape[1]:
        raise ValueError(f"config key 'n_particles' is {cfg['n_particles']!r} but 'particles' has "
                         f"{x.shape[1]} per parameter")
    w = cfg.get("weights")
    if w is None:
        return x, None
    w = _numbers(w, "config key 'weights'", x.shape[1])
    if np.any(w < 0) or not w.sum() > 0:
        raise ValueError("config key 'weights' must be non-negative and not all zero")
    return x, w


def engine_arguments(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate ``config``: the engine's keyword arguments and the configuration to record.

    Raises ValueError naming the offending key and value. The recorded configuration is
    ``config`` with the seed filled in, so the run can be replayed. With explicit
    ``particles`` and ``weights``, the weights are ``kwargs["weights"]`` (not an engine
    argument: ``from_config`` applies them).
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be an object, got {type(config).__name__}")
    unknown = [k for k in config if k not in _KEYS]
    if unknown:
        raise ValueError(f"unknown config key(s) {_show(unknown)}; known keys: {list(_KEYS)}")
    if "model" not in config:
        raise ValueError("config key 'model' is required")
    spec = get_model(config["model"])
    axes = _settings(config)
    n_settings = math.prod(a.size for a in axes)
    constants = _constants(config, spec.constants, spec.default_constants)

    explicit = _explicit_particles(config, spec.parameters) if "particles" in config else None
    if "weights" in config and explicit is None:
        raise ValueError("config key 'weights' goes with 'particles'")
    priors_in = {} if explicit is not None else config.get("priors", {})
    if not isinstance(priors_in, Mapping):
        raise ValueError(f"config key 'priors' must be an object, got {_show(priors_in)}")
    extra = [k for k in priors_in if k not in spec.parameters]
    if extra:
        raise ValueError(f"config key 'priors': unknown parameter(s) {_show(extra)}; model "
                         f"{_show(spec.name)} has {list(spec.parameters)}")
    priors: dict[str, Any] = {}
    for name in spec.parameters if explicit is None else ():
        if name in priors_in:
            priors[name] = priors_in[name]
        elif name in spec.default_priors:
            priors[name] = spec.default_priors[name]
        else:
            raise ValueError(f"config key 'priors' lacks parameter {_show(name)} (no default)")
        check_prior_spec(name, priors[name])

    density = config.get("prior_density")
    if density is not None:
        if explicit is None:
            raise ValueError("config key 'prior_density' goes with 'particles' (priors give it already)")
        if not isinstance(density, Mapping) or sorted(density) != sorted(spec.parameters):
            raise ValueError(f"config key 'prior_density' must give one prior spec per parameter "
                             f"{list(spec.parameters)}, got {_show(density)}")
        for name in spec.parameters:
            check_prior_spec(name, density[name])
    n_particles = _int(config, "n_particles", 10000, 1, MAX_PARTICLES) if explicit is None \
        else explicit[0].shape[1]
    if n_particles * len(spec.parameters) > MAX_WORK:
        raise ValueError(f"config key 'n_particles': {n_particles} particles x "
                         f"{len(spec.parameters)} parameters exceeds the limit {MAX_WORK}")
    n_draws = None if config.get("n_draws") is None else _int(config, "n_draws", 30, 2, MAX_DRAWS)
    if n_draws is not None and n_draws * n_settings * spec.n_channels > MAX_WORK:
        raise ValueError(f"config key 'n_draws': {n_draws} draws x {n_settings} settings "
                         f"exceeds the limit {MAX_WORK}")
    if "noise_std" in config and "default_noise_std" in config:
        raise ValueError("give only one of config keys 'noise_std' and 'default_noise_std'")
    nkey = "noise_std" if "noise_std" in config else "default_noise_std"
    noise = config.get(nkey, 1.0)
    nvals = noise if isinstance(noise, (list, tuple)) else [noise]
    if len(nvals) not in (1, spec.n_channels) or not all(
            _is_num(v) and math.isfinite(v) and v > 0 for v in nvals):
        raise ValueError(f"config key {_show(nkey)} must be a positive number or {spec.n_channels} "
                         f"positive numbers, got {_show(noise)}")
    noise_index = None
    if config.get("noise_parameter") is not None:
        names = config["noise_parameter"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, (list, tuple)) or not all(n in spec.parameters for n in names):
            raise ValueError(f"config key 'noise_parameter' must name parameter(s) of "
                             f"{list(spec.parameters)}, got {_show(config['noise_parameter'])}")
        noise_index = [spec.parameters.index(n) for n in names]
    choke = config.get("choke")
    if choke is not None:
        choke = _num(config, "choke", 1.0, 0.0, 1.0, lo_open=True)
    cost = config.get("cost", 1.0)
    if isinstance(cost, (list, tuple)):
        if len(cost) != n_settings or not all(_is_num(v) and math.isfinite(v) and v > 0 for v in cost):
            raise ValueError(f"config key 'cost' must be a positive number or {n_settings} "
                             f"positive numbers")
    elif not (_is_num(cost) and math.isfinite(cost) and cost > 0):
        raise ValueError(f"config key 'cost' must be a positive number, got {_show(cost)}")
    scale = config.get("scale", True)
    if not isinstance(scale, bool):
        raise ValueError(f"config key 'scale' must be true or false, got {_show(scale)}")
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or not 0 <= seed < MAX_SEED):
        raise ValueError(f"config key 'seed' must be null or an integer in [0, 2**63), got {_show(seed)}")
    if seed is None:  # pick one now and record it in engine.config, so the run can be replayed
        seed = int(np.random.SeedSequence().entropy % MAX_SEED)

    kwargs = dict(
        model=spec, settings=tuple(axes), prior=priors if explicit is None else explicit[0],
        constants=constants, n_particles=n_particles, n_draws=n_draws,
        utility=_choice(config, "utility", "variance_approx", UTILITIES),
        selection=_choice(config, "selection", "optimal", SELECTIONS),
        pickiness=_num(config, "pickiness", 15.0, 0.0, 1000.0), choke=choke,
        a_param=_num(config, "a_param", 0.98, 0.0, 1.0, lo_open=True),
        resample_threshold=_num(config, "resample_threshold", 0.5, 0.0, 1.0), scale=scale,
        resampler=_choice(config, "resampler", "systematic", RESAMPLERS),
        default_noise_std=nvals, cost=cost, noise_parameter_index=noise_index,
        likelihood_precision=_choice(config, "likelihood_precision", "double", ("auto", "double", "single")),
        utility_precision=_choice(config, "utility_precision", "double", ("double", "single")),
        log_prior=density, move_steps=_int(config, "move_steps", 1, 0, MAX_MOVE_STEPS),
        move_budget=_int(config, "move_budget", MOVE_BUDGET, 0, MAX_WORK), seed=seed)
    if explicit is not None and explicit[1] is not None:
        kwargs["weights"] = explicit[1]
    return kwargs, {**config, "seed": seed}
