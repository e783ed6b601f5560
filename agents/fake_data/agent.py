"""FakeDataAgent: fake thermometry with ocs's op names, parameters and command-line arguments.

Process ``acq`` publishes noisy temperatures on the recorded feed ``false_temperatures``; Process
``count`` counts seconds in the reactor; Task ``set_heartbeat`` pauses or resumes heartbeats; Task
``delay_task(delay, succeed)`` waits and can be aborted (under an access policy it needs level 2,
as in ocs). The interop tests and examples use it.
"""
from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

from twisted.internet import defer

from ocs_core.site import args as site_args
from ocs_core.runtime.agent import OCSAgent, init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.session import OpSession
from ocs_core.runtime.timing import dsleep

FEED = "false_temperatures"


class FakeDataAgent:
    """The operations of a fake data source, registered on ``agent``."""

    def __init__(self, agent: OCSAgent, num_channels: int = 2, sample_rate: float = 9.5,
                 frame_length: int = 60, buffer_time: float = 1.0, seed: int | None = None) -> None:
        self.agent = agent
        self.channels = [f"channel_{i:02d}" for i in range(num_channels)]
        self.sample_rate = max(1e-3, float(sample_rate))
        # ocs 0.12.1's tags: one series per channel, field "temperature", tag "channel"
        self.influxdb_tags = {c: {"channel": i, "_field": "temperature"}
                              for i, c in enumerate(self.channels)}
        self.rng = random.Random(seed)  # not numpy: an idle agent stays ~13 MB smaller
        self._stop_acq_event = threading.Event()
        self._count_tick: defer.Deferred | None = None
        self._delay_tick: defer.Deferred | None = None
        agent.register_feed(FEED, record=True, agg_params={"frame_length": frame_length},
                            buffer_time=buffer_time)

    @param("test_mode", default=False, type=bool)
    @param("degradation_period", default=None, type=float)
    def acq(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """acq(test_mode=False, degradation_period=None)

        **Process** - Publish fake temperatures on the ``false_temperatures`` feed.

        Parameters:
            test_mode (bool): stop after one sample.
            degradation_period (float): if set, toggle the session's degraded flag every that
                many seconds (to exercise monitoring); zero or less toggles it at every sample,
                as in ocs.

        The latest values are in ``session.data``:
        ``{"fields": {"channel_00": 0.101, ...}, "timestamp": 1700000000.0}``.
        """
        self._stop_acq_event.clear()
        period = 1.0 / self.sample_rate
        temps = [0.100] * len(self.channels)
        next_flip = time.time() if params["degradation_period"] is not None else None
        next_sample = time.time()
        while not self._stop_acq_event.is_set():
            now = time.time()
            if next_flip is not None and now >= next_flip:
                session.degraded = not session.degraded
                next_flip = now + params["degradation_period"]
            temps = [t + self.rng.uniform(-0.002, 0.002) for t in temps]
            values = {c: float(t) for c, t in zip(self.channels, temps)}
            self.agent.publish_to_feed(FEED, {"block_name": "temps", "timestamp": now, "data": values,
                                             "influxdb_tags": self.influxdb_tags})
            session.data = {"fields": values, "timestamp": now}
            if params["test_mode"]:
                break
            next_sample = max(next_sample + period, time.time() - period)
            self._stop_acq_event.wait(max(0.0, next_sample - time.time()))
        self.agent.flush_feed(FEED)
        return True, "Acquisition exited cleanly."

    def _stop_acq(self, session: OpSession, params: Any) -> tuple[bool, str]:
        session.set_status("stopping")
        self._stop_acq_event.set()
        return True, "Requested process stop."

    async def count(self, session: OpSession, params: Any) -> tuple[bool, str]:
        """count()

        **Process** - Count seconds in the reactor; ``session.data`` holds
        ``{"counter": n, "last_update": unix_time}``.
        """
        session.data = {"counter": 0, "last_update": time.time()}
        while session.status == "running":
            self._count_tick = dsleep(1)
            try:
                await self._count_tick
            except defer.CancelledError:  # the stopper woke us up
                break
            session.data = {"counter": session.data["counter"] + 1, "last_update": time.time()}
        return True, "Exited on request."

    def _stop_count(self, session: OpSession, params: Any) -> None:
        session.set_status("stopping")
        if self._count_tick is not None:
            self._count_tick.cancel()

    @param("heartbeat", default=True, type=bool)
    def set_heartbeat(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """set_heartbeat(heartbeat=True)

        **Task** - Pause (False) or resume (True) this agent's heartbeat.
        """
        self.agent.heartbeat_enabled = params["heartbeat"]
        return True, f"Set heartbeat_on: {params['heartbeat']}"

    @param("delay", default=5.0, type=float, min=0.0)
    @param("succeed", default=True, type=bool)
    async def delay_task(self, session: OpSession, params: dict) -> tuple[bool, str]:
        """delay_task(delay=5, succeed=True)

        **Task** (abortable) - Wait ``delay`` seconds, then succeed or fail as asked. An abort
        ends the wait at once.

        ``session.data`` holds ``{"requested_delay": s, "delay_so_far": s}``.
        """
        delay = params["delay"]
        if session.cred_level == 2 and delay == 3.33:  # ocs's own access-level test case
            return False, "Actually you need access level 3+ to delay for 3.33 seconds."
        t0 = time.time()
        session.data = {"requested_delay": delay, "delay_so_far": 0.0}
        while True:
            elapsed = time.time() - t0
            session.data = {"requested_delay": delay, "delay_so_far": elapsed}
            if session.status != "running":
                return False, f"Aborted after {elapsed:.1f} seconds"
            if elapsed >= delay:
                break
            self._delay_tick = dsleep(min(0.5, delay - elapsed), self.agent.reactor)
            try:
                await self._delay_tick
            except defer.CancelledError:  # the aborter woke us up
                pass
            finally:
                self._delay_tick = None
        return params["succeed"], f"Exited after {time.time() - t0:.1f} seconds"

    def _abort_delay_task(self, session: OpSession, params: Any) -> None:
        if session.status == "running":
            session.set_status("stopping")
            if self._delay_tick is not None and not self._delay_tick.called:
                self._delay_tick.cancel()


def make_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The agent's own options (ocs's names), added to the site options."""
    parser = site_args.add_arguments(parser)
    group = parser.add_argument_group("FakeDataAgent options")
    group.add_argument("--mode", default="idle", choices=["idle", "acq"],
                       help="'acq' starts acq and count on startup")
    group.add_argument("--num-channels", default=2, type=int, help="number of fake channels")
    group.add_argument("--sample-rate", default=9.5, type=float, help="samples per second")
    group.add_argument("--frame-length", default=60, type=int,
                       help="aggregator frame length in seconds (feed agg_params)")
    group.add_argument("--buffer-time", default=1.0, type=float,
                       help="seconds of samples gathered into one feed event")
    group.add_argument("--seed", default=None, type=int, help="seed for the fake values")
    return parser


def main(args: list[str] | None = None) -> None:
    """Run a FakeDataAgent from the site config (``ocs-core agent INSTANCE_ID``)."""
    parsed = site_args.parse_args(agent_class="FakeDataAgent", parser=make_parser(), args=args)
    agent = init_site_agent(parsed, "FakeDataAgent")
    fake = FakeDataAgent(agent, parsed.num_channels, parsed.sample_rate, parsed.frame_length,
                         parsed.buffer_time, parsed.seed)
    startup = parsed.mode == "acq"
    agent.register_process("acq", fake.acq, fake._stop_acq, blocking=True, startup=startup)
    agent.register_process("count", fake.count, fake._stop_count, blocking=False, startup=startup)
    agent.register_task("set_heartbeat", fake.set_heartbeat)
    # As in ocs: under any access policy, delay_task needs level 2 (ocs's tests rely on it).
    delay_privs = 1 if agent.access.policy == "none" else 2
    agent.register_task("delay_task", fake.delay_task, fake._abort_delay_task, blocking=False,
                        min_privs=delay_privs)
    agent.run()


if __name__ == "__main__":
    main()
