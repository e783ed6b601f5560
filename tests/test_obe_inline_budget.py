"""InlineBudget: the measured-cost rule for running an engine call in the reactor (fake clock)."""
import pytest

from agents.obe.inline_budget import DEFAULT_INLINE_BUDGET, InlineBudget


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_unknown_commands_are_not_allowed_until_measured():
    budget = InlineBudget()
    assert budget.budget == DEFAULT_INLINE_BUDGET == 0.0005
    assert not budget.allows("optset") and budget.estimate("optset") is None
    budget.record("optset", 0.0002)
    assert budget.allows("optset") and budget.estimate("optset") == pytest.approx(0.0002)
    assert not budget.allows("newdat")


def test_the_running_estimate_follows_the_measurements():
    budget = InlineBudget(0.0005, weight=0.5)
    budget.record("newdat", 0.0004)
    budget.record("newdat", 0.0008)  # 0.0006: over the budget now
    assert budget.estimate("newdat") == pytest.approx(0.0006) and not budget.allows("newdat")
    budget.record("newdat", 0.0002)  # 0.0004: allowed again
    assert budget.allows("newdat")
    budget.record("newdat", -1.0)  # a clock step backwards counts as 0
    assert budget.estimate("newdat") == pytest.approx(0.0002)


def test_timed_measures_with_the_clock_also_when_the_call_raises():
    clock = Clock()
    budget = InlineBudget(0.001, clock=clock)

    def work(seconds, fail=False):
        clock.now += seconds
        if fail:
            raise ValueError("bad")
        return "ok"

    assert budget.timed("goodset", lambda: work(0.0003), inline=True) == "ok"
    assert budget.estimate("goodset") == pytest.approx(0.0003) and budget.inline_max == pytest.approx(0.0003)
    with pytest.raises(ValueError):
        budget.timed("goodset", lambda: work(0.0103, fail=True))
    assert budget.estimate("goodset") == pytest.approx(0.0003 + 0.2 * 0.01)
    assert not budget.allows("goodset") and budget.inline_max == pytest.approx(0.0003)  # not inline


def test_reset_forgets_and_zero_disables():
    budget = InlineBudget(0.0005)
    budget.record("getmean", 0.00001)
    budget.reset()
    assert not budget.allows("getmean")
    off = InlineBudget(0)
    off.record("getmean", 0.0)
    assert not off.allows("getmean")
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="inline budget"):
            InlineBudget(bad)
    with pytest.raises(ValueError, match="weight"):
        InlineBudget(weight=0)


def test_summary_in_milliseconds():
    budget = InlineBudget(0.0005)
    budget.record("newdat", 0.000416, inline=True)
    budget.record("getmean", 0.0000384)
    assert budget.summary() == {"budget_ms": 0.5, "estimates_ms": {"getmean": 0.038, "newdat": 0.416},
                                "max_inline_ms": 0.416}
    assert InlineBudget().clock is __import__("time").thread_time  # the thread's CPU time
