"""Draw docs/images/obe_convergence.png: an OBE posterior converging on the Lorentzian problem.

    PYTHONPATH=. python bench/obe_plot.py [output.png]

Needs matplotlib (the ``plot`` extra). Deterministic: fixed seeds.
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from agents.obe.engine.obe_engine import OBEEngine  # noqa: E402
from agents.obe.engine.models import lorentzian  # noqa: E402

TRUTH = (2.7777, -1000.0, 50300.0)
NOISE = 500.0
SNAPSHOTS = (0, 5, 20, 80)


def run(selection: str, n_meas: int, seed: int = 4):
    eng = OBEEngine.from_config({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": 200},
                                 "n_particles": 20000, "noise_std": NOISE, "seed": seed})
    rng = np.random.default_rng(100 + seed)
    mean, std, xs, ys, snaps = [], [], [], [], {}
    for k in range(n_meas + 1):
        if k in SNAPSHOTS:
            snaps[k] = (eng.particles[0].copy(), eng.weights)
        mean.append(eng.mean()[0])
        std.append(eng.std()[0])
        if k == n_meas:
            break
        x = eng.optimal_setting() if selection == "optimal" else eng.random_setting()
        y = float(lorentzian(x, TRUTH, (0.1,))) + NOISE * rng.standard_normal()
        eng.update(x, y, NOISE)
        xs.append(x[0])
        ys.append(y)
    return np.array(mean), np.array(std), np.array(xs), np.array(ys), snaps


def main() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "docs", "images", "obe_convergence.png")
    n_meas = 150
    opt = run("optimal", n_meas)
    rnd = run("random", n_meas)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=80)

    ax = axes[0]
    grid = np.linspace(1.5, 4.5, 400)
    ax.plot(grid, lorentzian((grid,), TRUTH, (0.1,)), "k-", lw=1, label="true curve")
    ax.plot(opt[2], opt[3], ".", ms=3, color="C0", label="measurements (optimal)")
    ax.set_xlabel("setting x")
    ax.set_ylabel("y")
    ax.set_title("Measurements cluster where they inform")
    ax.legend(fontsize=7, loc="lower left")

    ax = axes[1]
    bins = np.linspace(2.0, 4.0, 161)
    for i, k in enumerate(SNAPSHOTS):
        x0, w = opt[4][k]
        ax.hist(x0, bins=bins, weights=w, histtype="step", color=f"C{i}", label=f"after {k}")
    ax.axvline(TRUTH[0], color="k", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.2)
    ax.set_xlabel("peak position x0")
    ax.set_ylabel("posterior weight per bin")
    ax.set_title("Posterior of x0 (optimal settings)")
    ax.legend(fontsize=7)

    ax = axes[2]
    k = np.arange(n_meas + 1)
    for (mean, std, *_), name, col in ((opt, "optimal", "C0"), (rnd, "random", "C1")):
        ax.plot(k, np.abs(mean - TRUTH[0]), color=col, lw=1, label=f"|error|, {name}")
        ax.plot(k, std, color=col, lw=1, ls="--", label=f"posterior std, {name}")
    ax.set_yscale("log")
    ax.set_xlabel("measurements")
    ax.set_ylabel("x0")
    ax.set_title("Convergence: error and reported std")
    ax.legend(fontsize=7)

    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
