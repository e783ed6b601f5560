"""FakeDataAgent's ops as pure logic on a fake clock: delay_task's abort, degradation_period."""
from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from agents.fake_data.agent import FakeDataAgent
from ocs_core.runtime.params import declared_params, validate_params
from ocs_core.runtime.session import OpSession


class _Agent:
    """What FakeDataAgent uses of OCSAgent: a reactor and feeds."""

    def __init__(self) -> None:
        self.reactor = Clock()
        self.published: list[dict] = []

    def register_feed(self, *args, **kwargs) -> None:
        pass

    def publish_to_feed(self, name: str, message: dict) -> None:
        self.published.append(message)

    def flush_feed(self, name: str) -> None:
        pass


def _running(name: str, now) -> OpSession:
    session = OpSession(1, name, clock=now)
    session.set_status("running")
    return session


def test_delay_task_ends_at_once_when_aborted(monkeypatch):
    agent = _Agent()
    monkeypatch.setattr("agents.fake_data.agent.time.time", agent.reactor.seconds)
    fake = FakeDataAgent(agent, seed=1)
    session = _running("delay_task", agent.reactor.seconds)
    params = validate_params(declared_params(fake.delay_task), {"delay": 30})
    d = defer.ensureDeferred(fake.delay_task(session, params))
    agent.reactor.advance(1.2)
    assert not d.called
    fake._abort_delay_task(session, {})
    # no clock time passes: the abort itself ends the wait (ocs polls every 0.5 s)
    assert d.called and d.result == (False, "Aborted after 1.2 seconds")
    assert not agent.reactor.getDelayedCalls()


def test_delay_task_runs_to_its_end():
    agent = _Agent()
    fake = FakeDataAgent(agent, seed=1)
    session = _running("delay_task", agent.reactor.seconds)
    d = defer.ensureDeferred(fake.delay_task(session, {"delay": 0.0, "succeed": False}))
    assert d.called and d.result[0] is False and d.result[1].startswith("Exited after")


@pytest.mark.parametrize("period", [-1, 0, 2.5])
def test_degradation_period_accepts_what_ocs_accepts(period):
    # ocs declares type=float without a minimum; -1 toggles the flag at every sample
    fake = FakeDataAgent(_Agent(), seed=1)
    assert validate_params(declared_params(fake.acq), {"degradation_period": period}) == \
        {"test_mode": False, "degradation_period": float(period)}


def test_negative_degradation_period_toggles_at_every_sample():
    agent = _Agent()
    fake = FakeDataAgent(agent, sample_rate=1000, seed=1)
    session = OpSession(1, "acq")
    session.set_status("running")
    flips = []
    calls = {"n": 0}

    def wait(timeout):  # stand-in for the stop event's wait: record the flag, stop after 4 samples
        flips.append(session.degraded)
        calls["n"] += 1
        if calls["n"] == 4:
            fake._stop_acq_event.set()
        return fake._stop_acq_event.is_set()
    fake._stop_acq_event.wait = wait
    fake._stop_acq_event.clear = lambda: None
    assert fake.acq(session, {"test_mode": False, "degradation_period": -1.0})[0] is True
    assert flips == [True, False, True, False]
