"""Closed-loop adaptive measurement with OCSClient: the OBE agent picks each setting, the
instrument agent measures it, and the measurement goes back to the OBE agent.

Then the same number of measurements as a uniform sweep and at random settings, for
comparison (the measurements the adaptive run saves against each), and a PNG.

    python clients/examples/adaptive_scan.py --steps 60 --png adaptive_scan.png
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from clients.examples import resonance
from clients.ocs_client import OCSClient
from ocs_core.runtime.codes import ResponseCode


def check(reply, what: str) -> dict:
    """The session data of a finished Task, or a clear error."""
    if reply.status != ResponseCode.OK or not reply.session or not reply.session.get("success"):
        last = reply.session["messages"][-2][1] if reply.session and reply.session.get("messages") else reply.msg
        raise RuntimeError(f"{what} failed: {last}")
    return reply.session["data"]


def measure(instrument: OCSClient, x: float) -> float:
    return float(check(instrument.measure(x=x), f"measure(x={x:.4f})")["value"])


def centre(data: dict) -> tuple[float, float]:
    i = data["parameters"].index("x0")
    return data["mean"][i], data["std"][i]


def adaptive_run(obe: OCSClient, instrument: OCSClient, config: dict, steps: int,
                 quiet: bool = False) -> dict:
    check(obe.newrun(**config), "newrun")
    out = {"x": [], "y": [], "std": [], "mean": [], "seconds": []}
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x = check(obe.optset(), "optset")["setting"][0]
        y = measure(instrument, x)
        mean, std = centre(check(obe.newdat(x=[x], y=y, s=config["noise_std"]), "newdat"))
        out["seconds"].append(time.perf_counter() - t0)
        for key, value in zip(("x", "y", "mean", "std"), (x, y, mean, std)):
            out[key].append(value)
        if not quiet:
            print(f"step {step:3d}  x = {x:6.4f}  value = {y:8.4f}  centre = {mean:.4f} +- {std:.4f}"
                  f"  ({1000 * out['seconds'][-1]:.1f} ms)", flush=True)
    return out


def fixed_run(obe: OCSClient, instrument: OCSClient, config: dict, settings: list[float],
              what: str) -> dict:
    """The same measurements at given settings (a uniform sweep, random settings)."""
    check(obe.newrun(**config), f"newrun ({what})")
    out = {"x": [], "y": [], "std": [], "mean": []}
    for x in settings:
        y = measure(instrument, float(x))
        mean, std = centre(check(obe.newdat(x=[float(x)], y=y, s=config["noise_std"]), f"newdat ({what})"))
        for key, value in zip(("x", "y", "mean", "std"), (float(x), y, mean, std)):
            out[key].append(value)
    return out


def sweep_run(obe: OCSClient, instrument: OCSClient, config: dict, steps: int) -> dict:
    return fixed_run(obe, instrument, config, list(np.linspace(resonance.X_START, resonance.X_STOP, steps)),
                     "sweep")


def random_run(obe: OCSClient, instrument: OCSClient, config: dict, steps: int, seed: int = 7) -> dict:
    grid = np.linspace(resonance.X_START, resonance.X_STOP, resonance.X_NUM)
    return fixed_run(obe, instrument, config, list(np.random.default_rng(seed).choice(grid, steps)),
                     "random")


def first_reaching(stds: list[float], target: float) -> int | None:
    return next((i + 1 for i, s in enumerate(stds) if s <= target), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="measurements per strategy")
    parser.add_argument("--obe", default="obe-1", help="instance-id of the OBE agent")
    parser.add_argument("--instrument", default="instrument-1", help="instance-id of the instrument agent")
    parser.add_argument("--particles", type=int, default=20000)
    parser.add_argument("--png", default=None, help="write the summary plot here")
    parser.add_argument("--site-file", default=None)
    parser.add_argument("--site-host", default=None)
    args = parser.parse_args(argv)

    site = {"site_file": args.site_file, "site_host": args.site_host}
    obe = OCSClient(args.obe, **site)
    instrument = OCSClient(args.instrument, **site)
    truth = resonance.instrument_truth(instrument)
    config = resonance.run_config(truth, n_particles=args.particles)
    print(f"Adaptive measurement of a resonance: {args.steps} steps, {args.particles} particles, "
          f"{resonance.X_NUM} candidate settings in [{resonance.X_START}, {resonance.X_STOP}]", flush=True)
    t0 = time.monotonic()
    adaptive = adaptive_run(obe, instrument, config, args.steps)
    t_adaptive = time.monotonic() - t0
    sweep = sweep_run(obe, instrument, config, args.steps)
    rand = random_run(obe, instrument, config, args.steps)

    print()
    print(f"{'strategy':<16}{'measurements':>13}{'centre':>10}{'error':>10}{'std':>10}")
    for name, run in (("OBE (adaptive)", adaptive), ("uniform sweep", sweep), ("random settings", rand)):
        err = run["mean"][-1] - truth["center"]
        print(f"{name:<16}{len(run['x']):>13d}{run['mean'][-1]:>10.4f}{err:>+10.4f}{run['std'][-1]:>10.4f}")
    for name, other in (("uniform sweep", sweep), ("random selection", rand)):
        reach = first_reaching(adaptive["std"], other["std"][-1])
        if reach is not None:
            print(f"The adaptive run reached the {name}'s final precision after {reach} of "
                  f"{args.steps} measurements ({args.steps / reach:.1f}x fewer, "
                  f"{args.steps - reach} measurements saved).")
    step_ms = 1000 * np.array(adaptive["seconds"])
    print(f"true centre {truth['center']}; adaptive loop took {t_adaptive:.1f} s; per step "
          f"(optset + measure + newdat, three Task calls): median {np.median(step_ms):.1f} ms, "
          f"min {step_ms.min():.1f} ms")
    if args.png:
        if resonance.plot(args.png, truth, adaptive, sweep):
            print(f"plot written to {args.png}")
        else:
            print("matplotlib is not installed (pip install 'ocs-core[plot]'); no plot written")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one clear line for the demo runner
        print(f"adaptive_scan: error: {exc}", file=sys.stderr)
        sys.exit(1)
