"""Retry policies: idempotent tools only, a budget that is a deadline."""

from __future__ import annotations

import threading
import time

import pytest

import agentsync
from agentsync.retry import Retry, is_unknown_outcome


class Flaky(Exception):
    """A retryable failure for these tests."""


class TestPolicy:
    """Retry objects and the tools that use them."""

    def test_retry_needs_an_idempotent_tool(self) -> None:
        """A retry policy on a tool not declared idempotent is refused."""

        def create_ticket(title: str) -> str:
            return title

        with pytest.raises(agentsync.ToolDefinitionError, match="not declared idempotent"):
            agentsync.tool(create_ticket, retry=Retry())

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"attempts": 0},
            {"attempts": True},
            {"backoff": -1},
            {"budget": 0},
            {"budget": float("inf")},
            {"on": ("x",)},
        ],
    )
    def test_bad_policies_are_refused(self, kwargs: dict[str, object]) -> None:
        """Impossible attempts, negative backoffs and non-exception types fail early."""
        with pytest.raises((ValueError, TypeError)):
            Retry(**kwargs)  # type: ignore[arg-type]

    def test_backoff_grows_and_is_capped(self) -> None:
        """Sleeps double from the first backoff up to max_backoff."""
        policy = Retry(backoff=0.5, max_backoff=2.0, jitter=0)

        sleeps = [policy.sleep_before(n) for n in range(2, 7)]

        assert sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]

    def test_connection_errors_mean_unknown_outcomes(self) -> None:
        """Broken connections and read timeouts leave the outcome unknown."""
        requests_like = type("ConnectionError", (OSError,), {})

        assert is_unknown_outcome(ConnectionResetError())
        assert is_unknown_outcome(TimeoutError())
        assert is_unknown_outcome(requests_like())
        assert not is_unknown_outcome(ValueError())


class TestRetrying:
    """Calls of tools with a retry policy."""

    def test_transient_failures_are_retried_until_success(self) -> None:
        """A tool failing twice then answering gives the answer."""
        attempts: list[float] = []

        @agentsync.tool(
            timeout=2, idempotent=True, retry=Retry(on=(Flaky,), backoff=0.01, jitter=0)
        )
        def price() -> int:
            attempts.append(time.monotonic())
            if len(attempts) < 3:
                raise Flaky("busy")
            return 42

        with agentsync.Runtime([price]) as rt:
            outcome = rt.call("price")

        assert outcome.ok and outcome.value == 42
        assert len(attempts) == 3

    def test_other_errors_are_not_retried(self) -> None:
        """An exception outside the policy's types fails on the first attempt."""
        attempts: list[int] = []

        @agentsync.tool(timeout=2, idempotent=True, retry=Retry(on=(Flaky,)))
        def price() -> int:
            attempts.append(1)
            raise KeyError("sku")

        with agentsync.Runtime([price]) as rt:
            outcome = rt.call("price")

        assert outcome.error_kind == "exception"
        assert attempts == [1]

    @pytest.mark.timeout(20)
    def test_budget_is_a_deadline_c11(self) -> None:
        """A tool failing after 2 s with a 5 s budget ends within 5 s."""
        starts: list[float] = []

        @agentsync.tool(
            timeout=3,
            idempotent=True,
            retry=Retry(on=(Flaky,), attempts=10, backoff=0.5, jitter=0, budget=5),
        )
        def slow_fail() -> None:
            starts.append(time.monotonic())
            threading.Event().wait(2)
            raise Flaky("backend unavailable")

        with agentsync.Runtime([slow_fail]) as rt:
            begun = time.monotonic()
            outcome = rt.call("slow_fail")
            elapsed = time.monotonic() - begun

        assert outcome.error_kind == "exception"
        assert "after 2 attempts" in outcome.message
        assert elapsed < 5.0 + 0.5
        assert all(s - begun < 5.0 for s in starts)
        assert len(starts) == 2

    @pytest.mark.timeout(20)
    def test_each_attempt_times_out_at_the_smaller_of_timeout_and_time_left(
        self,
    ) -> None:
        """A hung first attempt is cut at the tool's timeout and the retry answers."""
        release = threading.Event()
        attempts: list[int] = []

        @agentsync.tool(
            timeout=0.3, idempotent=True, retry=Retry(backoff=0.01, jitter=0, budget=3)
        )
        def lookup() -> str:
            attempts.append(1)
            if len(attempts) == 1:
                release.wait(10)
            return "found"

        try:
            with agentsync.Runtime([lookup]) as rt:
                outcome = rt.call("lookup")
        finally:
            release.set()

        assert outcome.ok and outcome.value == "found"
        assert len(attempts) == 2

    @pytest.mark.timeout(20)
    def test_retrying_calls_of_one_turn_retry_concurrently(self) -> None:
        """Two retrying calls in run_calls meet at a barrier on their retries."""
        barrier = threading.Barrier(2, timeout=5)
        seen: dict[str, int] = {"a": 0, "b": 0}
        lock = threading.Lock()

        @agentsync.tool(
            timeout=6, idempotent=True, retry=Retry(on=(Flaky,), backoff=0.01, jitter=0)
        )
        def fetch(key: str) -> str:
            with lock:
                seen[key] += 1
                first = seen[key] == 1
            if first:
                raise Flaky("try again")
            barrier.wait()
            return key

        with agentsync.Runtime([fetch], max_workers=4) as rt:
            outcomes = rt.run_calls([("fetch", {"key": "a"}), ("fetch", {"key": "b"})])

        assert [o.value for o in outcomes] == ["a", "b"]
        assert seen == {"a": 2, "b": 2}


class TestUnknownOutcomes:
    """Non-idempotent tools whose effect cannot be known."""

    def test_dropped_connection_is_an_unknown_outcome(self) -> None:
        """A non-idempotent tool losing its connection says the outcome is unknown."""
        calls: list[int] = []

        @agentsync.tool(timeout=2)
        def create_ticket(title: str) -> str:
            calls.append(1)
            raise ConnectionResetError("connection reset by peer")

        with agentsync.Runtime([create_ticket]) as rt:
            outcome = rt.call("create_ticket", {"title": "printer on fire"})

        assert outcome.error_kind == "unknown_outcome"
        assert "outcome is unknown" in outcome.to_block()["content"]
        assert outcome.to_block()["is_error"] is True
        assert calls == [1]

    @pytest.mark.timeout(20)
    def test_timed_out_non_idempotent_call_says_its_outcome_is_unknown(self) -> None:
        """The timeout message of a non-idempotent tool warns it may still act."""
        release = threading.Event()

        @agentsync.tool(timeout=0.2)
        def transfer(amount: int) -> str:
            release.wait(10)
            return "sent"

        try:
            with agentsync.Runtime([transfer]) as rt:
                outcome = rt.call("transfer", {"amount": 5})
        finally:
            release.set()

        assert outcome.error_kind == "timeout"
        assert "outcome is unknown" in outcome.message
