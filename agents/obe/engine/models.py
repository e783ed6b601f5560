"""Model library for the OBE engine: measurement models and a registry by name.

A model is a plain function ``f(settings, params, constants)``: ``settings`` is a tuple with
one entry per setting axis, ``params`` a tuple with one entry per parameter and ``constants`` a
tuple of numbers. Entries may be scalars or arrays; the function must broadcast them with numpy
rules, elementwise, so that the engine can evaluate

* one setting for all particles (scalars against ``(N,)`` arrays) and
* all settings for a few parameter draws (``(1, S)`` arrays against ``(D, 1)`` arrays)

in one call each. A single-channel model returns one array; a multi-channel model returns a
tuple or list of C arrays (one per output channel).

Models are registered in code with :func:`register_model`; a configuration received over the
network can only name a model that is already registered, never define one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .quoting import show

__all__ = [
    "ModelSpec",
    "register_model",
    "get_model",
    "available_models",
    "lorentzian",
    "gaussian",
    "line",
    "exponential_decay",
    "damped_sinusoid",
]

ModelFunction = Callable[[tuple, tuple, tuple], Any]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: the function plus the names a configuration may use.

    Attributes:
        name: registry name.
        function: ``f(settings, params, constants)``.
        parameters: parameter names, in the order ``params`` is passed.
        constants: constant names, in the order ``constants`` is passed.
        default_constants: value of each constant when a configuration omits it.
        default_priors: prior spec per parameter name, e.g. ``{"x0": {"uniform": [2, 4]}}``.
        setting_names: names of the setting axes (documentation only).
        n_channels: number of output channels.
        description: one line for listings.
    """

    name: str
    function: ModelFunction
    parameters: tuple[str, ...]
    constants: tuple[str, ...] = ()
    default_constants: tuple[float, ...] = ()
    default_priors: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    setting_names: tuple[str, ...] = ("x",)
    n_channels: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.constants) != len(self.default_constants):
            raise ValueError(f"model {self.name!r}: {len(self.constants)} constant names but "
                             f"{len(self.default_constants)} default values")
        unknown = set(self.default_priors) - set(self.parameters)
        if unknown:
            raise ValueError(f"model {self.name!r}: default priors for unknown parameters {sorted(unknown)}")


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry; refuses to overwrite a name unless ``replace``."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model expects a ModelSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Return the registered model ``name``; ValueError naming the known models otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown model {show(name)}; known models: {', '.join(available_models())}")
    return _REGISTRY[name]


def available_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def _work(a: Any) -> np.ndarray:
    """``a`` (the fresh result of a ufunc) as a float array we may modify in place.

    float32 inputs stay float32 (the engine's single-precision utility option)."""
    if isinstance(a, np.ndarray) and a.ndim > 0 and a.dtype in (np.float64, np.float32):
        return a
    return np.array(a, dtype=float)


# The library models compute in place on one fresh array: one allocation per call, which
# matters at 1e5 particles (see docs/benchmarks.md).

def lorentzian(settings: tuple, params: tuple, constants: tuple) -> np.ndarray:
    """Lorentzian peak ``b + a / (((x - x0) / d)**2 + 1)``; d (the HWHM) is a constant."""
    x, = settings
    x0, a, b = params
    d, = constants
    t = _work(np.subtract(x, x0))
    t *= 1.0 / d
    np.square(t, out=t)
    t += 1.0
    np.divide(a, t, out=t)
    t += b
    return t


def gaussian(settings: tuple, params: tuple, constants: tuple) -> np.ndarray:
    """Gaussian peak ``b + a * exp(-((x - x0) / w)**2 / 2)``; w (the std width) is a constant."""
    x, = settings
    x0, a, b = params
    w, = constants
    t = _work(np.subtract(x, x0))
    t *= 1.0 / w
    np.square(t, out=t)
    t *= -0.5
    np.exp(t, out=t)
    t *= a
    t += b
    return t


def line(settings: tuple, params: tuple, constants: tuple) -> np.ndarray:
    """Straight line ``m * x + b``."""
    x, = settings
    m, b = params
    t = _work(np.multiply(m, x))
    t += b
    return t


def exponential_decay(settings: tuple, params: tuple, constants: tuple) -> np.ndarray:
    """Exponential decay ``a * exp(-t / tau) + b``."""
    x, = settings
    a, tau, b = params
    t = _work(np.divide(x, tau))
    np.negative(t, out=t)
    np.exp(t, out=t)
    t *= a
    t += b
    return t


def damped_sinusoid(settings: tuple, params: tuple, constants: tuple) -> np.ndarray:
    """Damped sinusoid ``a * exp(-t / tau) * cos(2 pi f t + phase) + b``; phase is a constant."""
    x, = settings
    a, freq, tau, b = params
    phase, = constants
    t = _work(np.multiply(np.multiply(2.0 * np.pi, freq), x))
    t += phase
    np.cos(t, out=t)
    t *= a
    t *= np.exp(np.negative(np.divide(x, tau)))
    t += b
    return t


register_model(ModelSpec(
    "lorentzian", lorentzian, ("x0", "a", "b"), ("d",), (0.1,),
    {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
     "b": {"normal": [50000.0, 1000.0]}},
    description="Lorentzian peak b + a/(((x-x0)/d)^2+1), the reference's find_peak problem"))
register_model(ModelSpec(
    "gaussian", gaussian, ("x0", "a", "b"), ("w",), (0.1,),
    {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
     "b": {"normal": [50000.0, 1000.0]}},
    description="Gaussian peak b + a*exp(-((x-x0)/w)^2/2)"))
register_model(ModelSpec(
    "line", line, ("m", "b"), (), (),
    {"m": {"uniform": [-1.0, 1.0]}, "b": {"uniform": [-1.0, 1.0]}},
    description="straight line m*x + b"))
register_model(ModelSpec(
    "exponential_decay", exponential_decay, ("a", "tau", "b"), (), (),
    {"a": {"uniform": [0.5, 2.0]}, "tau": {"loguniform": [0.1, 10.0]},
     "b": {"uniform": [-0.5, 0.5]}},
    setting_names=("t",), description="exponential decay a*exp(-t/tau) + b"))
register_model(ModelSpec(
    "damped_sinusoid", damped_sinusoid, ("a", "freq", "tau", "b"), ("phase",), (0.0,),
    {"a": {"uniform": [0.5, 2.0]}, "freq": {"uniform": [0.5, 2.0]},
     "tau": {"loguniform": [0.5, 20.0]}, "b": {"uniform": [-0.5, 0.5]}},
    setting_names=("t",), description="damped sinusoid a*exp(-t/tau)*cos(2*pi*f*t+phase) + b"))
