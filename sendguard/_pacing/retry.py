"""Backoff for temporary failures, built on tenacity, with an injectable clock and sleep."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import tenacity

from sendguard._errors import ConfigurationError
from sendguard._options import check_integer, check_number

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How temporary failures (4xx, dropped connections) are retried within one send.

    Waits double from ``initial_wait`` up to ``max_wait`` seconds, plus up to ``jitter``
    seconds of random spread so that many senders do not retry in step.  At most
    ``attempts`` transactions are made (the first included), and no new attempt starts once
    ``max_total`` seconds have passed since the first.  Recipients still failing then are
    reported as deferred, with ``retry_at`` set ``defer_for`` seconds ahead: a greylisting
    server typically wants several minutes.
    """

    attempts: int = 4
    initial_wait: float = 1.0
    max_wait: float = 30.0
    jitter: float = 1.0
    max_total: float = 120.0
    defer_for: float = 900.0

    def __post_init__(self) -> None:
        # attempts=1 is no retry; a bool or "3" is a mistake, not a count.
        check_integer("RetryPolicy", "attempts", self.attempts, minimum=1)
        for name in ("initial_wait", "max_wait", "jitter", "max_total", "defer_for"):
            check_number(
                "RetryPolicy",
                name,
                getattr(self, name),
                minimum=0,
                what="a finite number of seconds, 0 or more",
            )
        if self.max_wait < self.initial_wait:
            raise ConfigurationError("RetryPolicy(max_wait=...) must be at least initial_wait")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt only: temporary failures are deferred at once."""
        return cls(attempts=1)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        should_retry: Callable[[T], bool],
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
        not_before: Callable[[T], float | None] = lambda _: None,
    ) -> T:
        """Call *attempt* until ``should_retry`` says no or the policy is spent; last result.

        ``not_before(result)`` is the server's own wait (a Retry-After): the next attempt
        waits at least that long, and when that is longer than ``max_wait`` the policy stops
        and lets the caller defer instead of sleeping through it.
        """
        started = clock()
        first = await attempt()
        if self.attempts == 1 or not should_retry(first):
            return first  # the common case, without building a retry loop
        budget = timedelta(seconds=self.max_total)
        replay = [first]

        async def call() -> T:
            # tenacity counts the attempt already made as its first one.
            return replay.pop() if replay else await attempt()

        retrying: tenacity.AsyncRetrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts)
            | _OutOfTime(clock, started, budget)
            | _WaitTooLong(not_before, self.max_wait),
            wait=_AtLeast(
                tenacity.wait_exponential(multiplier=self.initial_wait, max=self.max_wait)
                + tenacity.wait_random(0, self.jitter),
                not_before,
            ),
            retry=tenacity.retry_if_result(should_retry),
            sleep=sleep,
            # A spent policy hands back the last result: the caller reports it as deferred.
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        result: T = await retrying(call)
        return result


class _OutOfTime(tenacity.stop.stop_base):
    """Stop once *budget* has passed on the injected clock since *started*."""

    def __init__(self, clock: Callable[[], datetime], started: datetime, budget: timedelta) -> None:
        self._clock = clock
        self._started = started
        self._budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self._clock() - self._started >= self._budget


def _hint(not_before: Callable[[Any], float | None], state: tenacity.RetryCallState) -> float:
    if state.outcome is None or state.outcome.failed:
        return 0.0
    return not_before(state.outcome.result()) or 0.0


class _WaitTooLong(tenacity.stop.stop_base):
    """Stop when the server asks for a longer wait than the policy ever sleeps."""

    def __init__(self, not_before: Callable[[Any], float | None], longest: float) -> None:
        self._not_before = not_before
        self._longest = longest

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return _hint(self._not_before, retry_state) > self._longest


class _AtLeast(tenacity.wait.wait_base):
    """The policy's wait, or the server's Retry-After if that is longer."""

    def __init__(
        self, base: tenacity.wait.wait_base, not_before: Callable[[Any], float | None]
    ) -> None:
        self._base = base
        self._not_before = not_before

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return max(self._base(retry_state), _hint(self._not_before, retry_state))
