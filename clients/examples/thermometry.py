"""Thermometry control program: start acquisition, watch the temperatures, stop, run a delay task.

The seed's Twisted control program, rewritten against ocs-core's FakeDataAgent::

    python -m clients.examples.thermometry --site-file site-config.yaml --target fake-data1

It starts the ``acq`` Process, prints the latest temperatures from the process session's data
for a few seconds, stops ``acq``, then runs ``delay_task`` and waits for it. It exits non-zero
when any step fails.
"""
from __future__ import annotations

import argparse

from clients import client_t
from clients.site import add_site_arguments


class StepFailed(ValueError):
    """An agent refused a request or an operation failed (reported in one line, exit status 1)."""


def _check(reply, what: str) -> dict:
    code, msg, session = reply
    if code != 0:
        raise StepFailed(f"{what}: {msg}")
    return session


def thermometry(app, pargs):
    """The control program (an ``inlineCallbacks``-style generator)."""
    address = f"{pargs.address_root}.{pargs.target}"
    therm_ops = {
        "acq": client_t.ProcessClient(app, address, "acq"),
        "delay": client_t.TaskClient(app, address, "delay_task"),
    }

    print(f"Starting data acquisition on {address}", flush=True)
    _check((yield therm_ops["acq"].start()), "start acq")
    for _ in range(int(round(pargs.watch / pargs.interval))):
        yield client_t.dsleep(pargs.interval)
        session = _check((yield therm_ops["acq"].status()), "acq status")
        fields = (session.get("data") or {}).get("fields")
        if fields:
            readings = ", ".join(f"{name}={value:.4f} K" for name, value in sorted(fields.items()))
            print(f"latest temperatures: {readings}", flush=True)
        else:
            print("latest temperatures: (none yet)", flush=True)

    _check((yield therm_ops["acq"].stop()), "stop acq")
    session = _check((yield therm_ops["acq"].wait(timeout=10)), "wait for acq")
    print(f"acq stopped: {session['messages'][-2][1]}", flush=True)

    print(f"Running delay_task(delay={pargs.delay})", flush=True)
    _check((yield therm_ops["delay"].start(delay=pargs.delay)), "start delay_task")
    session = _check((yield therm_ops["delay"].wait()), "wait for delay_task")
    if not session.get("success"):
        raise StepFailed(f"delay_task failed: {session['messages'][-2][1]}")
    print(f"delay_task done: {session['messages'][-2][1]}", flush=True)


def make_parser() -> argparse.ArgumentParser:
    """The program's options, with the site options (``--site-file``, ...)."""
    parser = add_site_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--target", default="fake-data1", help="the FakeDataAgent's instance-id")
    parser.add_argument("--watch", type=float, default=3.0, help="seconds to watch temperatures")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    parser.add_argument("--delay", type=float, default=1.0, help="delay_task's delay")
    return parser


if __name__ == "__main__":
    client_t.run_control_script(thermometry, parser=make_parser())
