"""The demo's measurement problem: find the centre of a resonance measured by an instrument agent.

Shared by the adaptive-scan examples: the OBE run configuration that matches the simulated
instrument, reading the instrument's true configuration, and the summary plot.
"""
from __future__ import annotations

import json
from typing import Any

#: Setting axis the OBE agent chooses from (the instrument's x), and the sweep's range.
X_START, X_STOP, X_NUM = 1.5, 3.5, 201


def instrument_truth(instrument: Any) -> dict[str, float]:
    """The simulated instrument's resonance (centre, width, amplitude, background, noise).

    Args:
        instrument: an ``OCSClient`` of an InstrumentAgent connected to a SimulatedInstrument.
    """
    reply = instrument.get_config()
    if not reply.session or not reply.session.get("success"):
        raise RuntimeError(f"get_config on the instrument failed: {reply.msg}")
    value = reply.session["data"].get("value")
    return json.loads(value) if isinstance(value, str) else dict(value)


def run_config(truth: dict[str, float], n_particles: int = 20000, seed: int = 1) -> dict[str, Any]:
    """The OBE agent's ``newrun`` parameters for this problem.

    The model is the library's Lorentzian ``b + a / (((x - x0) / d)**2 + 1)`` with the
    instrument's width as the constant d; the priors are broad around what an experimenter
    would know before measuring (a peak somewhere in the scan range, of unknown height).
    """
    return {
        "model": "lorentzian",
        "settings": {"start": X_START, "stop": X_STOP, "num": X_NUM},
        "priors": {"x0": {"uniform": [X_START + 0.1, X_STOP - 0.1]},
                   "a": {"uniform": [0.2, 3.0]},
                   "b": {"normal": [0.0, 0.2]}},
        "constants": [truth["width"]],
        "noise_std": truth["noise"],
        "n_particles": n_particles,
        "seed": seed,
    }


def lorentzian(x: Any, truth: dict[str, float]) -> Any:
    return truth["background"] + truth["amplitude"] / (((x - truth["center"]) / truth["width"]) ** 2 + 1)


def plot(path: str, truth: dict[str, float], adaptive: dict[str, list], sweep: dict[str, list]) -> bool:
    """Write the summary PNG; False (and nothing written) when matplotlib is not installed.

    ``adaptive`` and ``sweep`` hold lists ``x``, ``y`` and ``std`` (the centre's std after each
    measurement).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    xs = np.linspace(X_START, X_STOP, 600)
    ax = axes[0]
    ax.plot(xs, lorentzian(xs, truth), color="0.6", lw=1, label="true curve")
    ax.plot(sweep["x"], sweep["y"], ".", color="tab:orange", ms=4, label="uniform sweep")
    ax.plot(adaptive["x"], adaptive["y"], "o", color="tab:blue", ms=3, label="OBE (adaptive)")
    ax.set(xlabel="setting x", ylabel="measured value", title="Measurements")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(range(1, len(adaptive["x"]) + 1), adaptive["x"], "o-", color="tab:blue", ms=3, lw=0.6)
    ax.axhline(truth["center"], color="0.6", lw=1, ls="--", label="true centre")
    ax.set(xlabel="step", ylabel="chosen setting x", title="Settings chosen by the OBE agent")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.semilogy(range(1, len(adaptive["std"]) + 1), adaptive["std"], color="tab:blue", label="OBE (adaptive)")
    ax.semilogy(range(1, len(sweep["std"]) + 1), sweep["std"], color="tab:orange", label="uniform sweep")
    ax.set(xlabel="measurements", ylabel="std of the centre", title="Uncertainty of the centre")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
