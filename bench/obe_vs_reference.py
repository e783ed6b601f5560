"""Side by side: our OBE engine and optbayesexpt 1.2.0 (the reference itself) on find_peak.

Not a test. The reference is imported from ``../shared/peers/optbayesexpt-1.2.0`` (or
``$OPTBAYESEXPT_PATH``), never copied. Both engines get, per seed, the same prior samples, the
same noise draws (measurement k of seed s adds ``noise[s][k]``) and, for random selection, the
same settings; the reference runs in its optimal mode (``opt_setting``), numpy without numba
(``use_jit=False``), ``scale=False``; its generators are seeded.

Problem (docs/obe-method.md 1.11): Lorentzian b + a / (((x - x0)/0.1)^2 + 1), noise 500, settings
linspace(1.5, 4.5, 200), 20,000 particles, x0 ~ U(2, 4), a ~ U(-2000, -400), b ~ N(50000, 1000);
the truth of each seed drawn as the demo does, each parameter independently from its prior
sample (``--fixed-truth``: x0, a, b = 2.7777, -1000, 50300 for every seed, as bench/obe.py).

Definitions (issue 15): *precision* = the median over seeds of the posterior std of x0;
*gain* = 300 / (the number of optimal measurements after which the median std falls to random
selection's median std after 300); *found* = |error of x0| < 3 std and std < 0.02 (after 30
measurements, share of runs); *calibration* = share of runs with |error| < 1.96 std after 100
measurements, per parameter, against the 95 % binomial interval around 95 %. Timing: mean time
per iteration (setting choice + update) of both engines, interleaved run by run.

    PYTHONPATH=. python bench/obe_vs_reference.py                 # 40 seeds (gain), 200 (found, calibration)
    PYTHONPATH=. python bench/obe_vs_reference.py --quick         # 6 / 20 seeds, a smoke run
    PYTHONPATH=. python bench/obe_vs_reference.py --options '{"n_draws": 30}'   # our engine's config
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import warnings

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REFERENCE = Path(os.environ.get("OPTBAYESEXPT_PATH") or "/work/shared/peers/optbayesexpt-1.2.0")
if not REFERENCE.is_dir():
    sys.exit(f"optbayesexpt 1.2.0 not found at {REFERENCE}; set OPTBAYESEXPT_PATH to its folder")
sys.path.insert(0, str(REFERENCE))

import optbayesexpt  # noqa: E402
from optbayesexpt import obe_base  # noqa: E402

from agents.obe.engine.obe_engine import OBEEngine  # noqa: E402

warnings.filterwarnings("ignore", message=r"\s*Particle filter rejected", category=RuntimeWarning)

TRUTH = np.array([2.7777, -1000.0, 50300.0])
NOISE, D, N_SETTINGS = 500.0, 0.1, 200
SETTINGS = np.linspace(1.5, 4.5, N_SETTINGS)
NAMES = ("x0", "a", "b")
#: The prior's density, for our engine's resample-move step (the same distributions as prior()).
PRIOR_SPECS = {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
               "b": {"normal": [50000.0, 1000.0]}}


def lorentzian(settings, params, constants):
    x, = settings
    x0, a, b = params
    d, = constants
    return b + a / (((x - x0) / d) ** 2 + 1.0)


def prior(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(2.0, 4.0, n), rng.uniform(-2000.0, -400.0, n),
                     rng.normal(50000.0, 1000.0, n)])


def noise(seed: int, m: int) -> np.ndarray:
    return NOISE * np.random.default_rng(10_000 + seed).standard_normal(m)


def random_indices(seed: int, m: int) -> np.ndarray:
    return np.random.default_rng(20_000 + seed).integers(N_SETTINGS, size=m)


class Ours:
    name = "ocs-core"

    def __init__(self, particles: np.ndarray, seed: int, options: dict, settings=SETTINGS) -> None:
        self.e = OBEEngine(lorentzian, (settings,), particles, (D,), parameter_names=NAMES,
                           default_noise_std=NOISE, scale=False, seed=seed,
                           **{"log_prior": PRIOR_SPECS, **options})

    def choose(self) -> float:
        return self.e.optimal_setting()[0]

    def update(self, x: float, y: float) -> None:
        self.e.update((x,), y, NOISE)

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return self.e.mean(), self.e.std()


class Reference:
    name = "optbayesexpt"

    def __init__(self, particles: np.ndarray, seed: int, options: dict, settings=SETTINGS) -> None:
        obe_base.rng = np.random.default_rng(30_000 + seed)
        self.e = optbayesexpt.OptBayesExpt(lorentzian, (settings,), tuple(particles.copy()), (D,),
                                           scale=False, use_jit=False, default_noise_std=NOISE)
        self.e.rng = np.random.default_rng(seed)

    def choose(self) -> float:
        return float(self.e.opt_setting()[0])

    def update(self, x: float, y: float) -> None:
        self.e.pdf_update(((x,), y, NOISE))

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.e.mean()), np.asarray(self.e.std())


FIXED_TRUTH = False


def truth(seed: int, particles: np.ndarray) -> np.ndarray:
    """The seed's true parameters: each drawn from its own prior sample (or the fixed truth)."""
    if FIXED_TRUTH:
        return TRUTH
    rng = np.random.default_rng(40_000 + seed)
    return np.array([row[rng.integers(row.size)] for row in particles])


def run(kind, seed: int, m: int, selection: str, n: int, options: dict) -> dict:
    """One run: per measurement k (1..m) the x0 std and error, and the final per-parameter z."""
    particles = prior(seed, n)
    true = truth(seed, particles)
    eng = kind(particles, seed, options)
    eps, idx = noise(seed, m), random_indices(seed, m)
    std = np.empty(m)
    err = np.empty(m)
    z100 = None
    t0 = time.perf_counter()
    for k in range(m):
        x = eng.choose() if selection == "optimal" else float(SETTINGS[idx[k]])
        y = float(lorentzian((x,), true, (D,))) + float(eps[k])
        eng.update(x, y)
        mean, sd = eng.stats()
        std[k], err[k] = sd[0], mean[0] - true[0]
        if k == 99:
            z100 = np.abs(mean - true) / sd
    return {"std": std, "err": err, "z100": z100, "seconds": time.perf_counter() - t0}


def gain(opt_std: np.ndarray, rnd_std: np.ndarray) -> tuple[float, int | None]:
    """300 / the first k at which the optimal median std reaches random's median after 300."""
    target = float(np.median(rnd_std[:, 299]))
    med = np.median(opt_std, axis=0)
    below = np.nonzero(med <= target)[0]
    if below.size == 0:
        return float("nan"), None
    k = int(below[0]) + 1
    return 300.0 / k, k


def binomial_interval(n: int, p: float = 0.95) -> tuple[float, float]:
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def accuracy(args, options: dict) -> dict:
    out = {}
    for kind in [k for k in (Ours, Reference) if k.name in args.engines]:
        opt = [run(kind, s, 300, "optimal", args.particles, options) for s in range(args.seeds)]
        rnd = [run(kind, s, 300, "random", args.particles, options) for s in range(args.seeds)]
        more = [run(kind, s, 100, "optimal", args.particles, options)
                for s in range(args.seeds, args.seeds_found)]
        opt_std = np.array([r["std"] for r in opt])
        rnd_std = np.array([r["std"] for r in rnd])
        g, k = gain(opt_std, rnd_std)
        at30 = [(r["std"][29], r["err"][29]) for r in opt] + [(r["std"][29], r["err"][29]) for r in more]
        found = np.mean([abs(e) < 3 * s and s < 0.02 for s, e in at30])
        z = np.array([r["z100"] for r in opt] + [r["z100"] for r in more])
        seconds = sum(r["seconds"] for r in opt + more) / (len(opt) * 300 + len(more) * 100)
        out[kind.name] = {
            "gain": g, "k": k, "random_median_std_300": float(np.median(rnd_std[:, 299])),
            "optimal_median_std": {k_: float(np.median(opt_std[:, k_ - 1])) for k_ in (10, 30, 50, 100, 300)},
            "found_30": float(found), "calibration_100": (np.mean(z < 1.96, axis=0)).tolist(),
            "runs_found": len(at30), "ms_per_iteration": 1e3 * seconds}
        print(f"  {kind.name}: gain {g:.2f}x (k={k}), found {found:.0%}, calibration "
              f"{', '.join(f'{c:.1%}' for c in out[kind.name]['calibration_100'])}, "
              f"{1e3 * seconds:.2f} ms/iteration", file=sys.stderr, flush=True)
    return out


def timing(args, options: dict) -> list[dict]:
    """Per size, the median over repeats of the mean time per iteration, engines interleaved
    (ours also without the resample-move step, ``move_steps`` 0, to show its cost)."""
    rows = []
    variants = [("ocs-core", Ours, options), ("optbayesexpt", Reference, options),
                ("ocs-core without moves", Ours, {**options, "move_steps": 0})]
    for n, s in ((1000, 200), (10000, 2000), (100000, 2000)):
        settings = np.linspace(1.5, 4.5, s)
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for rep in range(args.repeats):
            for name, kind, opts in (variants if rep % 2 == 0 else variants[::-1]):
                eng = kind(prior(rep, n), rep, opts, settings)
                eps = noise(rep, args.iters)
                t0 = time.perf_counter()
                for k in range(args.iters):
                    x = eng.choose()
                    eng.update(x, float(lorentzian((x,), TRUTH, (D,))) + float(eps[k]))
                times[name].append(1e3 * (time.perf_counter() - t0) / args.iters)
        med = {name: float(np.median(v)) for name, v in times.items()}
        ours, ref, plain = med["ocs-core"], med["optbayesexpt"], med["ocs-core without moves"]
        rows.append({"particles": n, "settings": s, "ours_ms": ours, "reference_ms": ref,
                     "ratio": ours / ref, "no_moves_ms": plain})
        print(f"  {n} x {s}: ours {ours:.3f} ms, reference {ref:.3f} ms ({ours / ref:.2f}x), "
              f"ours without moves {plain:.3f} ms", file=sys.stderr, flush=True)
    return rows


def report(acc: dict | None, rows: list[dict] | None, args, options: dict) -> str:
    lines = [f"Options of our engine: {json.dumps(options) if options else 'defaults'}; "
             f"truth {'fixed' if FIXED_TRUTH else 'drawn from the prior per seed'}; "
             f"{args.particles} particles, {args.seeds} seeds for the gain, {args.seeds_found} for "
             "found and calibration.", ""]
    if acc:
        lo, hi = binomial_interval(acc["ocs-core"]["runs_found"])
        lines += ["| | ocs-core | optbayesexpt 1.2.0 | target |", "|---|---|---|---|"]
        o, r = acc["ocs-core"], acc["optbayesexpt"]
        lines.append(f"| gain (optimal reaches random's 300-measurement median std after k) | "
                     f"**{o['gain']:.2f}x** (k={o['k']}) | {r['gain']:.2f}x (k={r['k']}) | >= 8x |")
        lines.append(f"| found after 30 measurements | **{o['found_30']:.0%}** | {r['found_30']:.0%} | >= 60% |")
        cal = lambda c: " / ".join(f"{v:.1%}" for v in c)  # noqa: E731
        lines.append(f"| calibration after 100, x0 / a / b | {cal(o['calibration_100'])} | "
                     f"{cal(r['calibration_100'])} | {lo:.1%}-{hi:.1%} |")
        for k in (10, 30, 50, 100, 300):
            lines.append(f"| median std of x0 after {k} (optimal) | {o['optimal_median_std'][k]:.4f} | "
                         f"{r['optimal_median_std'][k]:.4f} | |")
        lines.append(f"| median std of x0 after 300 (random) | {o['random_median_std_300']:.4f} | "
                     f"{r['random_median_std_300']:.4f} | |")
        lines.append(f"| mean time per iteration in these runs | {o['ms_per_iteration']:.2f} ms | "
                     f"{r['ms_per_iteration']:.2f} ms | |")
    if rows:
        lines += ["", "| particles x settings | ocs-core | optbayesexpt 1.2.0 | ratio | ocs-core, "
                  "move_steps 0 |", "|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['particles']:.0e} x {row['settings']} | {row['ours_ms']:.3f} ms | "
                         f"{row['reference_ms']:.3f} ms | {row['ratio']:.2f}x | {row['no_moves_ms']:.3f} ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="accuracy,timing")
    p.add_argument("--seeds", type=int, default=40, help="seeds of the gain (300 measurements each)")
    p.add_argument("--seeds-found", type=int, default=200, help="seeds of found and calibration")
    p.add_argument("--particles", type=int, default=20000)
    p.add_argument("--iters", type=int, default=200, help="iterations per timing run")
    p.add_argument("--repeats", type=int, default=4, help="timing runs per engine and size")
    p.add_argument("--options", default="{}", help="JSON object of OBEEngine keyword arguments")
    p.add_argument("--quick", action="store_true", help="6 / 20 seeds, 50 iterations x 2")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--fixed-truth", action="store_true",
                   help="the same truth (2.7777, -1000, 50300) for every seed")
    p.add_argument("--engines", default="ocs-core,optbayesexpt",
                   help="which engines run the accuracy case (the report needs both)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.seeds_found, args.iters, args.repeats = 6, 20, 50, 2
    options = json.loads(args.options)
    global FIXED_TRUTH
    FIXED_TRUTH = args.fixed_truth
    cases = args.cases.split(",")
    acc = accuracy(args, options) if "accuracy" in cases else None
    rows = timing(args, options) if "timing" in cases else None
    if acc is None or len(acc) == 2:
        print(report(acc, rows, args, options))
    if args.json:
        Path(args.json).write_text(json.dumps({"accuracy": acc, "timing": rows, "options": options},
                                              indent=1, default=float))


if __name__ == "__main__":
    main()
