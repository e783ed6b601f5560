"""Benchmark of the OBE engine on the reference's find_peak (Lorentzian) problem.

Not a test: prints a Markdown report (and optionally JSON) for docs/benchmarks.md. Cases are
functions registered in CASES; the OBE agent's round-trip cases can be added beside them.

    PYTHONPATH=. python bench/obe.py                      # all cases
    PYTHONPATH=. python bench/obe.py --cases timing       # one case
    PYTHONPATH=. python bench/obe.py --quick              # fewer repeats and seeds
    PYTHONPATH=. python bench/obe.py --cases reference    # accuracy beside optbayesexpt itself
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from agents.obe.engine.obe_engine import OBEEngine  # noqa: E402

TRUTH = (2.7777, -1000.0, 50300.0)  # x0, a, b (method section 1.11)
NOISE = 500.0
D = 0.1
PRIORS = {"x0": {"uniform": [2.0, 4.0]}, "a": {"uniform": [-2000.0, -400.0]},
          "b": {"normal": [50000.0, 1000.0]}}
REFERENCE_MS = {(1000, 200): 0.50, (10000, 2000): 1.06, (100000, 200): 5.7, (100000, 2000): 5.9}
SINGLE = {"utility_precision": "single"}
TARGET_MS = {(1000, 200): 0.15, (10000, 2000): 0.25, (100000, 2000): 1.5}


def make_engine(n: int, s: int, seed: int, **kw) -> OBEEngine:
    return OBEEngine.from_config({"model": "lorentzian", "settings": {"start": 1.5, "stop": 4.5, "num": s},
                                  "priors": PRIORS, "constants": [D], "n_particles": n,
                                  "noise_std": NOISE, "seed": seed, **kw})


def measure(x: float, rng: np.random.Generator) -> float:
    x0, a, b = TRUTH
    return b + a / (((x - x0) / D) ** 2 + 1.0) + NOISE * float(rng.standard_normal())


def run_loop(eng: OBEEngine, iters: int, seed: int, select: str = "optimal"):
    """Run ``iters`` full iterations; returns (select seconds, update seconds) summed."""
    rng = np.random.default_rng(10_000 + seed)
    choose = {"optimal": eng.optimal_setting, "random": eng.random_setting,
              "good": eng.good_setting}[select]
    clock = time.perf_counter
    t_sel = t_upd = 0.0
    for _ in range(iters):
        t0 = clock()
        x = choose()
        t1 = clock()
        y = measure(x[0], rng)
        t2 = clock()
        eng.update(x, y, NOISE)
        t3 = clock()
        t_sel += t1 - t0
        t_upd += t3 - t2
    return t_sel, t_upd


def per_iteration_times(eng: OBEEngine, iters: int, seed: int) -> np.ndarray:
    """Wall time of each iteration (choice + update), in ms."""
    rng = np.random.default_rng(10_000 + seed)
    clock = time.perf_counter
    out = np.empty(iters)
    for i in range(iters):
        t0 = clock()
        x = eng.optimal_setting()
        t1 = clock()
        y = measure(x[0], rng)
        t2 = clock()
        eng.update(x, y, NOISE)
        out[i] = (t1 - t0 + clock() - t2) * 1e3
    return out


def case_timing(args) -> dict:
    """Mean time per full iteration (optimal setting + update, resampling amortised)."""
    sizes = [(1000, 200, {}), (10000, 2000, {}), (100000, 200, {}), (100000, 2000, {}),
             (1000, 200, SINGLE), (10000, 2000, SINGLE), (100000, 2000, SINGLE)]
    rows = []
    for n, s, kw in sizes:
        per_iter, cpu, sel, upd, resamples = [], [], [], [], []
        for rep in range(args.repeats):
            eng = make_engine(n, s, seed=rep, **kw)
            c0 = time.process_time()
            a, b = run_loop(eng, args.iters, rep)
            cpu.append((time.process_time() - c0) / args.iters * 1e3)
            per_iter.append((a + b) / args.iters * 1e3)
            sel.append(a / args.iters * 1e3)
            upd.append(b / args.iters * 1e3)
            resamples.append(eng.posterior.n_resamples)
        # the same seeded run repeated: identical work per iteration, so the per-iteration
        # minimum over the repeats removes most of the interference of other processes
        same = np.min([per_iteration_times(make_engine(n, s, seed=0, **kw), args.iters, 0)
                       for _ in range(args.repeats)], axis=0)
        # peak memory: traced numpy allocations during a shorter run (tracing slows it down)
        eng = make_engine(n, s, seed=0, **kw)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        run_loop(eng, min(args.iters, 60), 0)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        rows.append({"particles": n, "settings": s, "options": kw, "ms_per_iteration": statistics.median(per_iter),
                     "ms_all_repeats": per_iter, "ms_best": min(per_iter),
                     "ms_min_per_iteration": float(same.mean()),
                     "ms_cpu_median": statistics.median(cpu), "ms_select": statistics.median(sel),
                     "ms_update": statistics.median(upd), "resamples": statistics.median(resamples),
                     "peak_traced_MB": peak / 1e6,
                     "reference_ms": REFERENCE_MS.get((n, s)), "target_ms": TARGET_MS.get((n, s))})
    return {"iterations": args.iters, "repeats": args.repeats, "rows": rows,
            "max_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}


def case_accuracy(args) -> dict:
    """Optimal vs random selection: x0 error over seeds; coverage of mean +- 2 std."""
    n, s, m = 50000, 200, 500
    seeds = range(args.seeds)
    err = {"optimal": np.empty((len(seeds), m)), "random": np.empty((len(seeds), m))}
    within = {"optimal": [], "random": []}
    opts = json.loads(args.options) if args.options else {}
    for sel in err:
        for i, seed in enumerate(seeds):
            eng = make_engine(n, s, seed=seed, **opts)
            rng = np.random.default_rng(10_000 + seed)
            choose = eng.optimal_setting if sel == "optimal" else eng.random_setting
            for k in range(m):
                x = choose()
                eng.update(x, measure(x[0], rng), NOISE)
                err[sel][i, k] = abs(eng.mean()[0] - TRUTH[0])
            mean, std = eng.mean(), eng.std()
            within[sel].append(np.abs(mean - TRUTH) < 2 * std)
    med = {k: np.median(v, axis=0) for k, v in err.items()}
    goal = float(med["random"][-1])
    reach = np.flatnonzero(med["optimal"] <= goal)
    return {"seeds": args.seeds, "measurements": m, "particles": n, "settings": s, "options": opts,
            "random_median_err_500": goal, "optimal_median_err_500": float(med["optimal"][-1]),
            "optimal_reaches_random_500_after": int(reach[0]) + 1 if reach.size else None,
            "median_err_at": {sel: {k: float(med[sel][k - 1]) for k in (10, 25, 50, 60, 70, 80, 100, 200, 500)}
                              for sel in med},
            "within_2std_per_param": {k: np.mean(within[k], axis=0).tolist() for k in within},
            "within_2std_all_three": {k: float(np.mean(np.all(within[k], axis=1))) for k in within}}


def case_components(args) -> dict:
    """Each part of an iteration timed alone (timeit, best of 41 short repeats: robust to load).

    The engine first runs 50 iterations so that its posterior is typical of a run. The update is
    timed with an uninformative sigma (no resampling); a resample is timed on its own and
    amortised with the resample count of the timing case (about one per 30 iterations).
    """
    import timeit
    rows = []
    for n, s, kw in [(1000, 200, {}), (10000, 2000, {}), (100000, 200, {}), (100000, 2000, {}),
                     (10000, 2000, SINGLE), (100000, 2000, SINGLE)]:
        eng = make_engine(n, s, seed=0, **kw)
        run_loop(eng, 50, 0)
        best = lambda f, k: min(timeit.repeat(f, number=k, repeat=41)) / k * 1e3  # noqa: E731
        choice = best(eng.optimal_setting, 5)
        update = best(lambda: eng.update((2.5,), 50000.0, 1e9), 5)
        n_res = eng.posterior.n_resamples
        resample = best(eng.posterior.resample, 1)
        run = make_engine(n, s, seed=0, **kw)
        run_loop(run, args.iters, 0)
        per_iter_resamples = run.posterior.n_resamples / args.iters
        rows.append({"particles": n, "settings": s, "options": kw, "ms_choice": choice,
                     "ms_update": update, "ms_resample": resample,
                     "resamples_per_iteration": per_iter_resamples,
                     "ms_estimate": choice + update + resample * per_iter_resamples,
                     "target_ms": TARGET_MS.get((n, s)), "reference_ms": REFERENCE_MS.get((n, s)),
                     "resamples_during_warmup": n_res})
    return {"rows": rows}


def case_reference(args) -> dict:
    """The accuracy comparison with optbayesexpt 1.2.0 itself (bench/obe_vs_reference.py): gain,
    found after 30, calibration after 100, same priors, noise draws and seeds for both."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import obe_vs_reference as side_by_side
    ns = argparse.Namespace(seeds=args.seeds, seeds_found=20 if args.quick else max(200, args.seeds),
                            particles=20000, engines="ocs-core,optbayesexpt")
    opts = json.loads(args.options) if args.options else {}
    acc = side_by_side.accuracy(ns, opts)
    return {"results": acc, "markdown": side_by_side.report(acc, None, ns, opts)}


CASES: dict[str, Callable[[argparse.Namespace], dict]] = {
    "timing": case_timing,
    "components": case_components,
    "accuracy": case_accuracy,
    "reference": case_reference,
}


def report(results: dict) -> str:
    out = []
    if "timing" in results:
        t = results["timing"]
        out += [f"Iterations per run: {t['iterations']}, median of {t['repeats']} runs "
                "(seeds 0..). Full iteration = `optimal_setting()` + `update()`.", "",
                "| particles | settings | options | full iteration (median) | best run | CPU time (median) "
                "| per-iteration minimum | of which setting choice | of which update "
                "(incl. resampling) | resamples/run | peak traced memory | reference | target |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            ref = f"{r['reference_ms']:.2f} ms" if r["reference_ms"] else "-"
            tgt = f"{r['target_ms']:.2f} ms" if r["target_ms"] else "-"
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
            out.append(f"| {r['particles']:.0e} | {r['settings']} | {opts} | {r['ms_per_iteration']:.3f} ms | "
                       f"{r['ms_best']:.3f} ms | {r['ms_cpu_median']:.3f} ms | "
                       f"{r['ms_min_per_iteration']:.3f} ms | "
                       f"{r['ms_select']:.3f} ms | {r['ms_update']:.3f} ms | {r['resamples']:.0f} | "
                       f"{r['peak_traced_MB']:.1f} MB | {ref} | {tgt} |")
        out += ["", f"Process max RSS: {t['max_rss_MB']:.0f} MB."]
    if "components" in results:
        out += ["", "Components (best of 41 short repeats each; the sum is an estimate of one iteration "
                "on an otherwise idle core):", "",
                "| particles | settings | options | setting choice | update (no resample) | one resample "
                "| resamples per iteration | estimated iteration | reference | target |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["components"]["rows"]:
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
            ref = f"{r['reference_ms']:.2f} ms" if r["reference_ms"] else "-"
            tgt = f"{r['target_ms']:.2f} ms" if r["target_ms"] else "-"
            out.append(f"| {r['particles']:.0e} | {r['settings']} | {opts} | {r['ms_choice']:.3f} ms | "
                       f"{r['ms_update']:.3f} ms | {r['ms_resample']:.2f} ms | "
                       f"{r['resamples_per_iteration']:.3f} | {r['ms_estimate']:.3f} ms | {ref} | {tgt} |")
    if "accuracy" in results:
        a = results["accuracy"]
        out += ["", f"Accuracy: {a['seeds']} seeds x {a['measurements']} measurements, "
                f"{a['particles']} particles, {a['settings']} settings, fixed truth.", "",
                f"- random selection, median |x0 error| after 500: {a['random_median_err_500']:.3g}",
                f"- optimal selection, median |x0 error| after 500: {a['optimal_median_err_500']:.3g}",
                f"- optimal reaches random's 500-measurement median after "
                f"{a['optimal_reaches_random_500_after']} measurements",
                "- median |x0 error| after k measurements, optimal / random: "
                + ", ".join(f"k={k}: {a['median_err_at']['optimal'][k]:.2g} / {a['median_err_at']['random'][k]:.2g}"
                            for k in a["median_err_at"]["optimal"]),
                "- runs ending within 2 std of the truth, per parameter (x0, a, b): optimal "
                + ", ".join(f"{v:.1%}" for v in a["within_2std_per_param"]["optimal"]) + "; random "
                + ", ".join(f"{v:.1%}" for v in a["within_2std_per_param"]["random"]),
                f"- runs with all three parameters within 2 std at once (0.954^3 = 87% if "
                f"calibrated): optimal {a['within_2std_all_three']['optimal']:.1%}, random "
                f"{a['within_2std_all_three']['random']:.1%}"]
        if a["options"]:
            out.append(f"- engine options: {json.dumps(a['options'])}")
    if "reference" in results:
        out += ["", "Side by side with optbayesexpt 1.2.0 (find_peak, 20,000 particles, scale=False; "
                "definitions in bench/obe_vs_reference.py):", "", results["reference"]["markdown"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    reference_found = any(os.path.isdir(d) for d in (os.environ.get("OPTBAYESEXPT_PATH", ""),
                                                      "/work/shared/peers/optbayesexpt-1.2.0"))
    default_cases = [c for c in CASES if c != "reference" or reference_found]
    p.add_argument("--cases", default=",".join(default_cases),
                   help="comma-separated: " + ", ".join(CASES) + " (reference: when optbayesexpt is found)")
    p.add_argument("--iters", type=int, default=500, help="iterations per timing run")
    p.add_argument("--repeats", type=int, default=5, help="timing runs per size")
    p.add_argument("--seeds", type=int, default=40, help="seeds for the accuracy case")
    p.add_argument("--quick", action="store_true", help="iters 100, repeats 2, seeds 4")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--options", help="JSON object of extra engine config for the accuracy case")
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.repeats, args.seeds = 100, 2, 4
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    print(f"# OBE engine benchmark: python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    results = {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = CASES[name](args)
        results[name]["wall_s"] = time.perf_counter() - t0
    print(report(results))
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
