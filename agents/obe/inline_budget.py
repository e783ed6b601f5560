"""InlineBudget: which engine calls are measured cheap enough to run in the reactor thread.

No Twisted here. The house rule is that blocking work runs in a worker thread; its one exception
is an engine call whose cost is *measured* small for the current posterior. The budget keeps a
running estimate (an exponentially weighted mean) of each command's time, measured wherever the
command ran (reactor or worker thread) as the CPU time of the thread that ran it
(:func:`time.thread_time`: a call in a worker thread that waits for the GIL or is preempted is
not counted as slower than its work), and allows a command inline only when its estimate is at
or under ``budget`` seconds. A command with no estimate yet (the first call of a run) is not
allowed: it runs in a thread and is measured there. :meth:`InlineBudget.reset` forgets every
estimate (a new posterior has a new size and settings). ``budget = 0`` turns inline calls off.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

__all__ = ["InlineBudget", "DEFAULT_INLINE_BUDGET"]

#: Default budget in seconds (the agent's ``--inline-budget-ms 0.5``).
DEFAULT_INLINE_BUDGET = 0.0005

T = TypeVar("T")


class InlineBudget:
    """Running per-command cost estimates and the inline decision they give.

    Args:
        budget: seconds a command's estimate may reach and still run inline; 0 disables.
        clock: the clock in seconds (default the calling thread's CPU time; tests pass a fake one).
        weight: weight of the newest measurement in the running mean (0 < weight <= 1).
    """

    def __init__(self, budget: float = DEFAULT_INLINE_BUDGET, *,
                 clock: Callable[[], float] = time.thread_time, weight: float = 0.2) -> None:
        if not budget >= 0:
            raise ValueError(f"the inline budget must be >= 0 seconds, got {budget!r}")
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight!r}")
        self.budget = float(budget)
        self.clock = clock
        self.weight = float(weight)
        self._estimates: dict[str, float] = {}
        self.inline_max = 0.0  # the longest inline call measured (seconds)

    def reset(self) -> None:
        """Forget every estimate (a new posterior)."""
        self._estimates.clear()

    def estimate(self, command: str) -> float | None:
        """The running estimate of ``command`` in seconds, or None before its first measurement."""
        return self._estimates.get(command)

    def summary(self) -> dict:
        """``{"budget_ms", "estimates_ms": {command: ms}, "max_inline_ms"}``, rounded to µs."""
        return {"budget_ms": round(self.budget * 1e3, 3),
                "estimates_ms": {k: round(v * 1e3, 3) for k, v in sorted(self._estimates.items())},
                "max_inline_ms": round(self.inline_max * 1e3, 3)}

    def allows(self, command: str) -> bool:
        """True when ``command`` has an estimate at or under the budget (and the budget is > 0)."""
        if self.budget <= 0:
            return False
        estimate = self._estimates.get(command)
        return estimate is not None and estimate <= self.budget

    def record(self, command: str, seconds: float, *, inline: bool = False) -> None:
        """Fold one measured duration of ``command`` into its estimate."""
        seconds = max(0.0, float(seconds))
        old = self._estimates.get(command)
        self._estimates[command] = seconds if old is None else old + self.weight * (seconds - old)
        if inline and seconds > self.inline_max:
            self.inline_max = seconds

    def timed(self, command: str, func: Callable[[], T], *, inline: bool = False) -> T:
        """Run ``func()``, record its duration under ``command`` (also when it raises)."""
        t0 = self.clock()
        try:
            return func()
        finally:
            self.record(command, self.clock() - t0, inline=inline)
