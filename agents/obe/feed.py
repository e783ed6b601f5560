"""The OBE agent's recorded feed ``posterior``: one sample per accepted measurement, published
a window of samples at a time.

A publish costs the agent and the router ~0.3 ms each; at the rate of a fast client (optbayesexpt's
demo client sends ~500 measurements a second) one message per sample was a quarter of the agent's
time. Samples are buffered by the feed (``buffer_time``) and every window of ``FEED_WINDOW``
seconds goes out as one message with every sample of it (``timestamps`` and lists, as ocs's
recorded feeds do); a timer flushes the last window.
"""
from __future__ import annotations

import re
import time
from typing import Any

from twisted.python.threadable import isInIOThread

from ocs_core.runtime.agent import OCSAgent

__all__ = ["FEED", "FEED_WINDOW", "PosteriorFeed"]

FEED = "posterior"
#: Seconds of posterior samples published together in one message.
FEED_WINDOW = 0.02


def _field(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class PosteriorFeed:
    """Registers the feed ``posterior`` on ``agent``; :meth:`publish` is the service's ``on_update``."""

    def __init__(self, agent: OCSAgent, window: float = FEED_WINDOW) -> None:
        self.agent = agent
        self.window = window
        self._flush: Any = None
        agent.register_feed(FEED, record=True, agg_params={"frame_length": 60}, buffer_time=window)

    def publish(self, update: dict) -> None:
        """One sample of ``update`` (the service's: run_id, n_measurements, parameters, mean,
        std, setting); callable from any thread."""
        data: dict[str, Any] = {"n_measurements": update["n_measurements"]}
        for name, m, s in zip(update["parameters"], update["mean"], update["std"]):
            data[f"mean_{_field(name)}"] = m
            data[f"std_{_field(name)}"] = s
        for k, v in enumerate(update["setting"]):
            data[f"setting_{k}"] = v
        message = {"block_name": f"run{update['run_id']}", "timestamp": time.time(), "data": data}
        reactor = self.agent.reactor
        # From the reactor after its next I/O pass: the measurement's reply goes out first.
        later = (reactor.callLater, 0, reactor.callLater, 0, self._buffer, message)
        later[0](*later[1:]) if isInIOThread() else reactor.callFromThread(*later)

    def _buffer(self, message: dict) -> None:
        self.agent.publish_to_feed(FEED, message)  # published once its window is over
        if self._flush is None or not self._flush.active():
            self._flush = self.agent.reactor.callLater(self.window, self.agent.flush_feed, FEED)
