"""A simulated instrument server: a Lorentzian resonance with seeded Gaussian noise.

``measure\\t<x>`` returns ``background + amplitude / (((x - center) / width)**2 + 1)`` plus noise
of standard deviation ``noise``, after an optional blocking ``delay`` (in a worker thread, as a
real device would be). Run it as a process::

    python -m agents.instrument.simulated --port 0 --seed 1 --center 2.5 --width 0.1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np

from agents.instrument.commands import CommandError, command
from agents.instrument.runner import make_parser, run
from agents.instrument.server import InstrumentServer


@dataclass
class Resonance:
    """Parameters of the simulated resonance and its measurement."""

    center: float = 2.5
    width: float = 0.1
    amplitude: float = 1.0
    background: float = 0.0
    noise: float = 0.05
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width!r}")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0, got {self.noise!r}")
        if not self.delay >= 0:
            raise ValueError(f"delay must be >= 0, got {self.delay!r}")

    def model(self, x: float | np.ndarray) -> float | np.ndarray:
        """The noiseless curve at ``x``."""
        return self.background + self.amplitude / (((np.asarray(x) - self.center) / self.width) ** 2 + 1)


class SimulatedInstrument(InstrumentServer):
    """An instrument server measuring a noisy Lorentzian.

    Args:
        reactor: the Twisted reactor (default: the global one).
        resonance: its parameters (default: :class:`Resonance` defaults).
        seed: seed of the noise generator (``numpy.random.default_rng``).
        **kwargs: passed to :class:`InstrumentServer` (``timeout``, ``max_line``, ``name``).
    """

    def __init__(self, reactor: Any = None, resonance: Resonance | None = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(reactor, **kwargs)
        self.resonance = resonance or Resonance()
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.setpoint = self.resonance.center
        self.count = 0

    def connect_hardware(self) -> str:
        return "simulated resonance ready"

    def _sample(self, x: float) -> float:
        if self.resonance.delay:
            time.sleep(self.resonance.delay)
        value = float(self.resonance.model(x))
        if self.resonance.noise:
            value += float(self.rng.normal(0.0, self.resonance.noise))
        self.count += 1
        return value

    @command("measure")
    def measure(self, x: float) -> float:
        """Set x, wait the delay, return one noisy value of the curve there."""
        self.setpoint = x
        return self._sample(x)

    @command("set")
    def set_x(self, x: float) -> float:
        """Move the setpoint to x without measuring; returns x."""
        self.setpoint = x
        return x

    @command("read")
    def read(self) -> float:
        """One noisy value at the current setpoint (for polling)."""
        return self._sample(self.setpoint)

    @command("set_noise")
    def set_noise(self, sigma: float) -> float:
        """Change the noise standard deviation (>= 0)."""
        if sigma < 0:
            raise CommandError(f"sigma must be >= 0, got {sigma!r}")
        self.resonance.noise = sigma
        return sigma

    @command("set_delay")
    def set_delay(self, seconds: float) -> float:
        """Change the delay per measurement (>= 0, seconds)."""
        if seconds < 0:
            raise CommandError(f"seconds must be >= 0, got {seconds!r}")
        self.resonance.delay = seconds
        return seconds

    @command("get_config", hardware=False)
    def get_config(self) -> str:
        """The resonance parameters, setpoint, seed and measurement count as one JSON object."""
        return json.dumps({**asdict(self.resonance), "setpoint": self.setpoint, "seed": self.seed,
                           "count": self.count}, sort_keys=True)


def make_argument_parser() -> argparse.ArgumentParser:
    """The process's arguments: the runner's plus the resonance parameters and ``--seed``."""
    p = make_parser("Simulated instrument server (a noisy Lorentzian resonance).")
    p.add_argument("--seed", type=int, default=None, help="seed of the noise generator")
    for f in fields(Resonance):
        p.add_argument(f"--{f.name}", type=float, default=f.default, help=f"{f.name} (default {f.default})")
    return p


#: Options that mean "resolve my arguments against the site file" (``ocs-core agent ID`` passes them).
_SITE_FLAGS = ("--instance-id", "--site-file")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m agents.instrument.simulated`` and of ``ocs-core agent ID``.

    With ``--instance-id`` or ``--site-file`` (as ``ocs-core agent`` passes them), the options are
    the instance's ``arguments`` in the site file merged with the command line (agent class
    ``SimulatedInstrument``). The server does not join the router: it only listens on its port.
    """
    parser = make_argument_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = None
    if any(a == f or a.startswith(f + "=") for a in argv for f in _SITE_FLAGS):
        from ocs_core.site import args as site_args
        from ocs_core.site.config import SiteConfigError
        try:
            parsed = site_args.parse_args("SimulatedInstrument", parser, argv)
        except SiteConfigError as exc:
            parser.error(str(exc))

    def make(args: argparse.Namespace) -> SimulatedInstrument:
        try:
            resonance = Resonance(**{f.name: getattr(args, f.name) for f in fields(Resonance)})
        except ValueError as exc:
            parser.error(str(exc))
        return SimulatedInstrument(resonance=resonance, seed=args.seed, timeout=args.timeout)
    return run(make, argv, parser, parsed=parsed)


if __name__ == "__main__":
    sys.exit(main())


def _port_accepts(arguments: Sequence[str]) -> bool:
    """Launcher readiness for a server that never joins the router: its ``--port`` accepts."""
    import socket
    args = list(arguments)
    port = host = None
    for i, token in enumerate(args):
        if token == "--port" and i + 1 < len(args):
            port = int(args[i + 1])
        elif token.startswith("--port="):
            port = int(token.split("=", 1)[1])
        elif token in ("--interface", "--host") and i + 1 < len(args):
            host = args[i + 1]
    if not port:
        return False
    try:
        with socket.create_connection((host or "127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: Read by the site launcher (``ocs_core.supervisor.launcher``): this entry point is not a WAMP agent.
main.wamp_agent = False  # type: ignore[attr-defined]
main.ready_probe = _port_accepts  # type: ignore[attr-defined]
