"""Tests for agentsync.callbacks: tools over callback-style APIs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentsync import Runtime, ToolContext, ToolDefinitionError, ToolError
from agentsync.callbacks import callback_tool

Done = Callable[..., None]


def geocode(city: str, on_done: Done, country: str = "NO") -> None:
    """Find a city's coordinates.

    Args:
        city: the city's name.
        on_done: called with the coordinates.
        country: an ISO country code.
    """
    on_done({"city": city, "country": country, "lat": 59.9})


def run(
    fn: Callable[..., Any], input: dict[str, Any] | None = None, **options: Any
) -> Any:
    made = callback_tool(fn, **options)
    with Runtime([made], watchdog=False) as rt:
        return rt.call(made.name, input or {})


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll a counter no event signals, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class TestDefinition:
    def test_schema_leaves_out_the_callback(self) -> None:
        """The model sees fn's inputs and docstring, without on_done."""

        made = callback_tool(geocode)

        assert made.name == "geocode"
        assert made.description == "Find a city's coordinates."
        assert set(made.input_schema["properties"]) == {"city", "country"}
        assert made.input_schema["required"] == ["city"]
        assert (
            made.input_schema["properties"]["city"]["description"] == "the city's name."
        )

    def test_missing_callback_parameter_is_refused(self) -> None:
        """A function without the callback parameter cannot become a callback tool."""

        def no_callback(city: str) -> None:
            """Nothing to call back."""

        with pytest.raises(ToolDefinitionError) as raised:
            callback_tool(no_callback)

        assert "no parameter 'on_done'" in str(raised.value)

    def test_async_function_is_refused(self) -> None:
        """An async function is refused: it would never call back while unawaited."""

        async def fetch(url: str, on_done: Done) -> None:
            """Fetch asynchronously."""

        with pytest.raises(ToolDefinitionError) as raised:
            callback_tool(fetch)

        assert "callback tool 'fetch' is async" in str(raised.value)

    def test_callback_parameter_can_have_another_name(self) -> None:
        """callback= names the parameter that receives on_done."""

        def lookup(key: str, cb: Done) -> None:
            """Look a key up."""
            cb(key.upper())

        outcome = run(lookup, {"key": "abc"}, callback="cb")

        assert outcome.value == "ABC"


class TestCompletion:
    def test_callback_called_inline_gives_the_value(self) -> None:
        """A callback called before fn returns is the call's value."""

        outcome = run(geocode, {"city": "Oslo"})

        assert outcome.ok
        assert outcome.value == {"city": "Oslo", "country": "NO", "lat": 59.9}

    def test_callback_from_another_thread_gives_the_value(self) -> None:
        """A callback called later from another thread is the call's value."""

        def fetch(url: str, on_done: Done) -> None:
            """Fetch in the background."""
            threading.Timer(0.05, on_done, args=(f"body of {url}",)).start()

        outcome = run(fetch, {"url": "https://example.org"}, timeout=5)

        assert outcome.value == "body of https://example.org"

    def test_callback_with_an_exception_fails_the_call(self) -> None:
        """on_done(error=exc) makes exc the call's outcome."""

        def fetch(url: str, on_done: Done) -> None:
            """Fetch and fail."""
            on_done(error=LookupError(f"no host for {url}"))

        outcome = run(fetch, {"url": "x"})

        assert outcome.error_kind == "exception"
        assert outcome.message == "tool 'fetch' raised LookupError: no host for x"

    def test_callback_with_an_error_message_fails_the_call(self) -> None:
        """on_done(error="text") fails the call with that text."""

        def fetch(url: str, on_done: Done) -> None:
            """Fetch and fail with a message."""
            on_done(error="HTTP 503")

        outcome = run(fetch, {"url": "x"})

        assert outcome.error_kind == "exception"
        assert isinstance(outcome.exception, ToolError)
        assert outcome.message == "tool 'fetch' failed: HTTP 503"

    def test_synchronous_raise_is_the_outcome(self) -> None:
        """If fn raises before any callback, that exception is the outcome."""

        def fetch(url: str, on_done: Done) -> None:
            """Refuse at once."""
            raise ValueError("bad url")

        outcome = run(fetch, {"url": "x"})

        assert outcome.error_kind == "exception"
        assert outcome.message == "tool 'fetch' raised ValueError: bad url"

    def test_fn_with_its_own_context_receives_it(self) -> None:
        """A first ToolContext parameter of fn gets the call's context."""
        seen: list[ToolContext] = []

        def fetch(ctx: ToolContext, url: str, on_done: Done) -> None:
            """Fetch with a context."""
            seen.append(ctx)
            on_done(ctx.tool)

        outcome = run(fetch, {"url": "x"})

        assert outcome.value == "fetch"
        assert isinstance(seen[0], ToolContext)


class TestMisbehavingCallbacks:
    @pytest.mark.timeout(20)
    def test_callback_never_called_is_a_timeout_and_frees_the_thread(self) -> None:
        """A callback that never comes gives a timeout, and the waiting thread ends."""

        def fetch(url: str, on_done: Done) -> None:
            """Swallow an error and forget the callback."""
            try:
                raise OSError("network down")
            except OSError:
                pass

        made = callback_tool(fetch, timeout=0.2)
        with Runtime([made], watchdog=False) as rt:
            outcome = rt.call("fetch", {"url": "x"})
            freed = wait_until(lambda: rt.stats().workers.abandoned == 0, 2.0)

        assert outcome.error_kind == "timeout"
        assert freed

    def test_second_callback_is_logged_and_ignored(self) -> None:
        """A callback called twice keeps the first value and logs the second."""

        def fetch(url: str, on_done: Done) -> None:
            """Answer twice."""
            on_done("first")
            on_done("second")

        with capture_logs() as logs:
            outcome = run(fetch, {"url": "x"})

        repeated = [e for e in logs if e["event"] == "tool.callback_repeated"]
        assert outcome.value == "first"
        assert len(repeated) == 1
        assert repeated[0]["tool"] == "fetch"
        assert repeated[0]["log_level"] == "warning"

    @pytest.mark.timeout(20)
    def test_late_callback_is_dropped_quietly(self, gate: threading.Event) -> None:
        """A callback after the timeout neither raises nor changes the outcome."""
        called = threading.Event()
        errors: list[BaseException] = []

        def late(on_done: Done) -> None:
            try:
                gate.wait(5.0)
                on_done("too late")
            except BaseException as exc:  # noqa: BLE001 - recorded for the test
                errors.append(exc)
            finally:
                called.set()

        def fetch(url: str, on_done: Done) -> None:
            """Answer after the deadline."""
            threading.Thread(target=late, args=(on_done,), daemon=True).start()

        made = callback_tool(fetch, timeout=0.2)
        with capture_logs() as logs, Runtime([made], watchdog=False) as rt:
            outcome = rt.call("fetch", {"url": "x"})
            # Let the waiting thread give up before the callback comes.
            wait_until(lambda: rt.stats().workers.abandoned == 0, 2.0)
            gate.set()
            finished = called.wait(5.0)

        assert outcome.error_kind == "timeout"
        assert finished
        assert errors == []
        assert [e["event"] for e in logs if e["event"].startswith("tool.callback")] == [
            "tool.callback_late"
        ]
