"""Locks declared by tools and taken by the runtime."""

from __future__ import annotations

import threading

import pytest

import agentsync
from agentsync.locks import LockRegistry


class TestToolLocks:
    """Locks declared with @tool(locks=...) and taken by the runtime."""

    def test_tools_naming_locks_in_opposite_orders_never_deadlock(self) -> None:
        """Two tools naming the same locks in opposite orders run 200 times each."""
        registry = LockRegistry(order=["cache", "database"])

        @agentsync.tool(timeout=5, locks=("database", "cache"))
        def writer() -> str:
            return "w"

        @agentsync.tool(timeout=5, locks=("cache", "database"))
        def reader() -> str:
            return "r"

        with agentsync.Runtime([writer, reader], locks=registry, max_workers=4) as rt:
            outcomes = rt.run_calls([("writer", {}), ("reader", {})] * 200)

        assert [o.value for o in outcomes] == ["w", "r"] * 200
        assert registry.held() == ()
        assert all(view.holder is None for view in registry.snapshot())

    def test_locks_are_released_when_the_tool_raises(self) -> None:
        """A tool that raises gives back its locks before the next call."""
        registry = LockRegistry()

        @agentsync.tool(timeout=5, locks=("a", "b"))
        def fails() -> None:
            raise ValueError("nope")

        with agentsync.Runtime([fails], locks=registry) as rt:
            first = rt.call("fails")
            second = rt.call("fails")

        assert first.error_kind == second.error_kind == "exception"
        assert all(view.holder is None for view in registry.snapshot())

    @pytest.mark.timeout(20)
    def test_hung_holder_gives_waiters_lock_timeout_naming_it(self) -> None:
        """A call waiting on a hung call's lock gets lock_timeout naming the holder."""
        registry = LockRegistry(order=["cache", "database"])
        release = threading.Event()
        ran = threading.Event()

        @agentsync.tool(timeout=0.2, locks=("database", "cache"))
        def hung() -> None:
            release.wait(15)

        @agentsync.tool(timeout=0.3, locks=("cache",))
        def refresh() -> str:
            ran.set()
            return "ok"

        try:
            with agentsync.Runtime([hung, refresh], locks=registry) as rt:
                stuck = rt.call("hung")
                waiting = rt.call("refresh")
        finally:
            release.set()

        assert stuck.error_kind == "timeout"
        assert waiting.error_kind == "lock_timeout"
        assert "'cache'" in waiting.message and "tool hung call" in waiting.message
        assert "did not run" in waiting.message
        assert not ran.is_set()


def test_nested_call_waiting_for_a_lock_is_a_lock_timeout() -> None:
    """A ctx.call that cannot get its locks says lock_timeout, not unknown outcome."""
    registry = LockRegistry()
    release = threading.Event()
    holding = threading.Event()

    @agentsync.tool(timeout=0.3, locks=("db",))
    def inner() -> str:
        return "ran"

    @agentsync.tool(timeout=3)
    def outer(ctx: agentsync.ToolContext) -> str:
        return str(ctx.call("inner").error_kind)

    def hold() -> None:
        with registry.acquire("db", timeout=5):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(5)
    try:
        with agentsync.Runtime([inner, outer], locks=registry) as rt:
            outcome = rt.call("outer")
    finally:
        release.set()
        holder.join(5)

    assert outcome.value == "lock_timeout"
