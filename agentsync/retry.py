"""Retry policies for idempotent tools, bounded by a deadline.

A retry policy's budget is a deadline, not a count: no attempt and no backoff
sleep starts if it would end past the call's deadline, and each attempt's
timeout is the smaller of the tool's timeout and the time left. Backoff
delays come from tenacity's wait strategies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

__all__ = ["Retry", "is_unknown_outcome"]

# Exception class names, from common HTTP and database clients, that mean the
# connection broke while a request was in flight: whether the request took
# effect is unknown. Matched by name so that no client library is imported.
_IN_FLIGHT_NAMES = frozenset(
    {
        "ConnectionError",
        "RemoteDisconnected",
        "RemoteProtocolError",
        "ReadError",
        "ReadTimeout",
        "ProtocolError",
        "IncompleteRead",
        "OperationalError",
        "InterfaceError",
    }
)


def is_unknown_outcome(exc: BaseException) -> bool:
    """True when ``exc`` means a request may or may not have taken effect.

    That is a broken connection or a read timeout, after the request may have
    been sent: ``ConnectionError`` and ``TimeoutError`` and their kin in common
    client libraries (matched by class name).
    """
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _IN_FLIGHT_NAMES for cls in type(exc).__mro__)


@dataclass(frozen=True)
class Retry:
    """How an idempotent tool is retried.

    Args:
        on: exception types that are worth another attempt.
        attempts: attempts at most, the first one included.
        backoff: seconds before the second attempt; doubles each time.
        max_backoff: the longest sleep between attempts.
        jitter: up to this many extra seconds, at random, on each sleep.
        budget: seconds for all attempts and sleeps together; by default
            ``attempts`` times the tool's timeout. The run's deadline, when
            earlier, wins.
        retry_timeouts: retry an attempt that ran past its timeout.
    """

    on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.1
    budget: float | None = None
    retry_timeouts: bool = True
    _wait: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        on = self.on
        if isinstance(on, type):
            on = (on,)
        if not isinstance(on, Sequence) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in on
        ):
            raise TypeError(f"Retry(on=...) takes exception types, got {self.on!r}")
        object.__setattr__(self, "on", tuple(on))
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise ValueError(
                f"Retry attempts must be a whole number of 1 or more, got {self.attempts!r}"
            )
        for name in ("backoff", "max_backoff", "jitter"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"Retry {name} must be 0 or more seconds, got {value!r}"
                )
        if self.budget is not None and (
            not isinstance(self.budget, (int, float))
            or not math.isfinite(self.budget)
            or self.budget <= 0
        ):
            raise ValueError(
                f"Retry budget must be a positive number of seconds, got {self.budget!r}"
            )
        wait: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=self.backoff, max=self.max_backoff
        )
        if self.jitter:
            wait = wait + tenacity.wait_random(0, self.jitter)
        object.__setattr__(self, "_wait", wait)

    def sleep_before(self, attempt: int) -> float:
        """Seconds to sleep before attempt number ``attempt`` (2 or more)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = attempt - 1
        return float(self._wait(state))

    def wants(self, error: BaseException | None, timed_out: bool) -> bool:
        """Whether a failed attempt is worth another one."""
        if timed_out:
            return self.retry_timeouts
        return error is not None and isinstance(error, self.on)
