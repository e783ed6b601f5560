"""The adaptive measurement as an asynchronous control program (run_control_script).

The same loop as adaptive_scan.py — OBE agent's optset, instrument's measure, OBE agent's
newdat — written with TaskClient over one WebSocket session.

    python clients/examples/adaptive_scan_twisted.py --steps 20
"""
from __future__ import annotations

import argparse
import json

from clients import client_t
from clients.examples import resonance


async def call(task: client_t.TaskClient, **params) -> dict:
    """Run a Task (start and wait: one call to an ocs-core agent) and return its session data
    (or raise with its message)."""
    code, msg, session = await task.run(params, timeout=30)
    if code != 0 or not session:
        raise RuntimeError(f"{task.op_name}: {msg}")
    if not session.get("success"):
        raise RuntimeError(f"{task.op_name} failed: {session['messages'][-2][1]}")
    return session["data"]


async def scan(app, args) -> None:
    root = args.address_root
    obe = {op: client_t.TaskClient(app, f"{root}.{args.obe}", op) for op in ("newrun", "optset", "newdat")}
    measure = client_t.TaskClient(app, f"{root}.{args.instrument}", "measure")
    config_data = await call(client_t.TaskClient(app, f"{root}.{args.instrument}", "get_config"))
    value = config_data["value"]
    truth = json.loads(value) if isinstance(value, str) else value
    config = resonance.run_config(truth, n_particles=args.particles, seed=2)
    await call(obe["newrun"], **config)
    for step in range(1, args.steps + 1):
        x = (await call(obe["optset"]))["setting"][0]
        y = (await call(measure, x=x))["value"]
        data = await call(obe["newdat"], x=[x], y=y, s=truth["noise"])
        i = data["parameters"].index("x0")
        print(f"step {step:3d}  x = {x:6.4f}  value = {y:8.4f}  "
              f"centre = {data['mean'][i]:.4f} +- {data['std'][i]:.4f}", flush=True)
    print(f"true centre {truth['center']}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--obe", default="obe-1")
    parser.add_argument("--instrument", default="instrument-1")
    parser.add_argument("--particles", type=int, default=20000)
    client_t.run_control_script(scan, parser=parser)
