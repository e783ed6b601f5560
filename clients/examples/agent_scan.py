"""Agent-to-agent: the OBE agent runs the loop itself (its adaptive_scan Process drives the
instrument agent over its own WAMP session); this script starts it and follows its progress.

    python clients/examples/agent_scan.py --steps 30
"""
from __future__ import annotations

import argparse
import sys

from clients.examples import resonance
from clients.ocs_client import OCSClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--obe", default="obe-1")
    parser.add_argument("--instrument", default="instrument-1")
    parser.add_argument("--particles", type=int, default=20000)
    parser.add_argument("--site-file", default=None)
    parser.add_argument("--site-host", default=None)
    args = parser.parse_args(argv)
    site = {"site_file": args.site_file, "site_host": args.site_host}
    obe = OCSClient(args.obe, **site)
    truth = resonance.instrument_truth(OCSClient(args.instrument, **site))
    reply = obe.newrun(**resonance.run_config(truth, n_particles=args.particles, seed=3))
    if not reply.session.get("success"):
        raise RuntimeError(f"newrun failed: {reply.msg}")
    reply = obe.adaptive_scan.start(instrument=args.instrument, max_steps=args.steps,
                                    sigma=truth["noise"])
    if reply.status != 0:
        raise RuntimeError(f"adaptive_scan did not start: {reply.msg}")
    print(f"adaptive_scan started on {args.obe}, driving {args.instrument}", flush=True)
    shown = 0
    while True:
        reply = obe.adaptive_scan.wait(timeout=0.5)
        data = reply.session.get("data") or {}
        step = data.get("step", 0)
        if step > shown and "mean" in data:
            shown = step
            print(f"step {step:3d}  x = {data['last_setting'][0]:6.4f}  value = {data['last_value']:8.4f}  "
                  f"centre = {data['mean']['x0']:.4f} +- {data['std']['x0']:.4f}", flush=True)
        if reply.session.get("status") == "done":
            break
    last = reply.session["messages"][-2][1]
    print(f"adaptive_scan ended: {last}")
    return 0 if reply.session.get("success") else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:
        print(f"agent_scan: error: {exc}", file=sys.stderr)
        sys.exit(1)
