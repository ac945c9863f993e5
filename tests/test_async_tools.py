"""Tests for async tools: a private loop per call, wherever the caller runs (C6)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentsync import Runtime, ToolContext, run_agent, tool
from agentsync.testing import FakeMessagesServer


class LoopSpy:
    """What the async tool saw of its loop and thread, call by call."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.threads: list[int] = []
        self._lock = threading.Lock()

    def record(self) -> None:
        with self._lock:
            self.loops.append(asyncio.get_running_loop())
            self.threads.append(threading.get_ident())


@pytest.fixture
def spy() -> LoopSpy:
    return LoopSpy()


def make_forecast(spy: LoopSpy) -> Any:
    @tool(timeout=5)
    async def forecast(city: str) -> str:
        """Return the weather forecast for a city."""
        spy.record()
        await asyncio.sleep(0.01)
        return f"sunny in {city}"

    return forecast


def agent_run(forecast: Any) -> tuple[str, list[dict[str, Any]]]:
    """One run_agent through a fake API: the model calls forecast, then answers."""
    with FakeMessagesServer() as server, server.client() as client:
        server.add_tool_use("forecast", {"city": "Oslo"})
        server.add_reply("It is sunny in Oslo.")

        result = run_agent("Weather in Oslo?", tools=[forecast], client=client)
        return result.text, server.requests[-1].tool_results


def from_plain_code(run: Callable[[], Any]) -> tuple[Any, Any]:
    return run(), None


def from_inside_a_running_loop(run: Callable[[], Any]) -> tuple[Any, Any]:
    async def main() -> tuple[Any, Any]:
        # A notebook cell or an ASGI handler calling sync code: it blocks the
        # loop for the run, and the tool must not need that loop.
        return run(), asyncio.get_running_loop()

    return asyncio.run(main())


def from_a_loops_executor(run: Callable[[], Any]) -> tuple[Any, Any]:
    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, run), loop

    return asyncio.run(main())


def from_uvloop(run: Callable[[], Any]) -> tuple[Any, Any]:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[Any, Any]:
        return run(), asyncio.get_running_loop()

    result: tuple[Any, Any] = uvloop.run(main())
    return result


EXPECTED = (
    "It is sunny in Oslo.",
    [{"type": "tool_result", "content": "sunny in Oslo", "is_error": False}],
)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "caller",
    [from_plain_code, from_inside_a_running_loop, from_a_loops_executor, from_uvloop],
    ids=["plain", "inside-running-loop", "loop-executor", "uvloop"],
)
def test_async_tool_same_result_everywhere_c6(
    spy: LoopSpy, caller: Callable[[Callable[[], Any]], tuple[Any, Any]]
) -> None:
    """An async tool gives the same result from plain code, a running loop or uvloop."""
    forecast = make_forecast(spy)
    policy = asyncio.get_event_loop_policy()

    (text, results), caller_loop = caller(lambda: agent_run(forecast))

    simplified = [
        {
            "type": r["type"],
            "content": r["content"],
            "is_error": r.get("is_error", False),
        }
        for r in results
    ]
    assert (text, simplified) == EXPECTED
    assert len(spy.loops) == 1
    assert spy.loops[0] is not caller_loop
    assert spy.threads[0] != threading.get_ident()
    assert asyncio.get_event_loop_policy() is policy
    assert "nest_asyncio" not in sys.modules


@pytest.mark.timeout(20)
def test_tool_loop_follows_a_process_wide_uvloop_policy(spy: LoopSpy) -> None:
    """With uvloop's policy installed, the tool's private loop is a uvloop loop."""
    uvloop = pytest.importorskip("uvloop")
    forecast = make_forecast(spy)
    saved = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        with Runtime([forecast], watchdog=False) as rt:
            outcome = rt.call("forecast", {"city": "Oslo"})
    finally:
        asyncio.set_event_loop_policy(saved)

    assert outcome.value == "sunny in Oslo"
    assert isinstance(spy.loops[0], uvloop.Loop)


@pytest.fixture
def cancelled() -> Iterator[threading.Event]:
    yield threading.Event()


@pytest.mark.timeout(20)
def test_timeout_cancels_the_coroutine_c6(cancelled: threading.Event) -> None:
    """An async tool past its timeout gets a timeout and its coroutine is cancelled."""

    @tool(timeout=0.3)
    async def slow() -> str:
        """Wait a long time."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with Runtime([slow], watchdog=False) as rt:
        outcome = rt.call("slow")
        was_cancelled = cancelled.wait(5.0)

    assert outcome.error_kind == "timeout"
    assert was_cancelled


@pytest.mark.timeout(20)
def test_timeout_through_run_agent_reaches_the_model_c6(
    cancelled: threading.Event,
) -> None:
    """In an agent run, a hung async tool becomes an is_error result; its coroutine ends."""

    @tool(timeout=0.3)
    async def forecast(city: str) -> str:
        """Return the weather forecast for a city."""
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.set()
        return "never"

    with FakeMessagesServer() as server, server.client() as client:
        server.add_tool_use("forecast", {"city": "Oslo"})
        server.add_reply("The forecast service is down.")

        result = run_agent("Weather in Oslo?", tools=[forecast], client=client)
        results = server.requests[-1].tool_results

    assert result.text == "The forecast service is down."
    assert results[0]["is_error"] is True
    assert cancelled.wait(5.0)


@pytest.mark.timeout(20)
def test_async_tool_calls_another_async_tool() -> None:
    """An async tool may call an async tool through ctx.call; neither loop nests."""

    @tool(timeout=5)
    async def inner(x: int) -> int:
        """Double a number."""
        await asyncio.sleep(0)
        return 2 * x

    @tool(timeout=5)
    async def outer(ctx: ToolContext, x: int) -> int:
        """Double a number twice, through inner."""
        first = ctx.call("inner", {"x": x})
        await asyncio.sleep(0)
        return int(first.value) * 2

    with Runtime([inner, outer], watchdog=False) as rt:
        outcome = rt.call("outer", {"x": 3})

    assert outcome.ok, outcome.message
    assert outcome.value == 12


def test_async_tool_invoked_from_a_running_loop() -> None:
    """Tool.invoke from async code runs the coroutine on a loop of its own."""

    @tool
    async def where() -> bool:
        """Tell whether the loop is the caller's."""
        return asyncio.get_running_loop() is not caller_loop

    async def main() -> Any:
        nonlocal caller_loop
        caller_loop = asyncio.get_running_loop()
        return where.invoke(None, {})

    caller_loop: asyncio.AbstractEventLoop | None = None

    elsewhere = asyncio.run(main())

    assert elsewhere is True
