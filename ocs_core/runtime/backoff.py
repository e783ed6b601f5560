"""BackoffPolicy: the one retry-delay rule of ocs-core (reconnects, link retries, restarts).

Pure: no Twisted, no clock. The n-th failure in a row waits ``initial * factor**(n-1)``
seconds, capped at ``maximum``, plus a uniform random ``jitter`` (so that many agents that
lost the same router do not all come back in the same instant). The site supervisor also
uses ``reset_after``: a child that stayed up that long before it failed starts again from
``initial``. :meth:`BackoffPolicy.retry_policy` adapts it to Twisted's ``ClientService``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

__all__ = ["BackoffPolicy"]


@dataclass(frozen=True)
class BackoffPolicy:
    """Retry delays: ``initial * factor**(n-1)`` for the n-th failure in a row, capped, plus jitter.

    Attributes:
        initial: delay after the first failure (seconds).
        factor: growth per further failure.
        maximum: the cap (seconds), before jitter.
        reset_after: uptime (seconds) after which a failure counts as the first again.
        jitter: the largest random delay added to each retry (seconds); 0 for none.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 60.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if (self.initial < 0 or self.factor < 1 or self.maximum < self.initial
                or self.reset_after < 0 or self.jitter < 0):
            raise ValueError(f"invalid backoff policy {self!r}: need 0 <= initial <= maximum, "
                             f"factor >= 1, reset_after >= 0, jitter >= 0")

    def delay(self, failures: int) -> float:
        """The delay (without jitter) before retrying after ``failures`` (>= 1) failures in a row."""
        if failures < 1:
            return 0.0
        delay = self.initial
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def retry_policy(self, uniform: Callable[[float, float], float] = random.uniform
                     ) -> Callable[[int], float]:
        """A ``retryPolicy`` for Twisted's ``ClientService``: failed attempts -> seconds to wait."""
        def policy(failed_attempts: int) -> float:
            extra = uniform(0.0, self.jitter) if self.jitter else 0.0
            return self.delay(max(1, failed_attempts)) + extra
        return policy
