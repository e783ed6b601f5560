"""A load generator for bench/archive.py: an agent that publishes recorded blocks at a set rate.

``blast(blocks_per_s=20, timestamps=50, fields=16)`` publishes blocks of ``timestamps`` x
``fields`` samples on the recorded feed ``bench`` from the reactor until stopped. Run it with
``OCS_CORE_AGENTS=BenchPublisher=bench.archive_publisher:main``.
"""
from __future__ import annotations

import random
import time
from typing import Any

from ocs_core.runtime.agent import init_site_agent
from ocs_core.runtime.params import param
from ocs_core.runtime.timing import dsleep
from ocs_core.site import args as site_args


class BenchPublisher:
    def __init__(self, agent) -> None:
        self.agent = agent
        self.running = False
        agent.register_feed("bench", record=True, history_events=20_000, history_seconds=600)

    @param("blocks_per_s", default=20.0, type=float, min=0.1)
    @param("timestamps", default=50, type=int, min=1)
    @param("fields", default=16, type=int, min=1)
    async def blast(self, session, params) -> tuple[bool, str]:
        self.running = True
        n, k = params["timestamps"], params["fields"]
        names = [f"f{i:02d}" for i in range(k)]
        rng = random.Random(len(self.agent.agent_address))
        period = 1.0 / params["blocks_per_s"]
        t_next, sent, t = time.time(), 0, time.time()
        while self.running:
            ts = [t + i * 1e-3 for i in range(n)]
            t += n * 1e-3
            data = {f: [rng.random() for _ in range(n)] for f in names}
            self.agent.publish_to_feed("bench", {"block_name": "b", "timestamps": ts, "data": data})
            sent += n * k
            session.data = {"samples": sent}
            t_next += period
            await dsleep(max(0.0, t_next - time.time()))
        return True, f"published {sent} samples"

    def stop(self, session, params: Any) -> None:
        session.set_status("stopping")
        self.running = False


def main(args: list[str] | None = None) -> None:
    parsed = site_args.parse_args(agent_class="BenchPublisher", args=args)
    agent = init_site_agent(parsed, "BenchPublisher")
    pub = BenchPublisher(agent)
    agent.register_process("blast", pub.blast, pub.stop, blocking=False)
    agent.run()


if __name__ == "__main__":
    main()
