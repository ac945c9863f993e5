"""Suite-wide set-up: keep the library's log lines out of pytest's output."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog


def pytest_configure(config: pytest.Config) -> None:
    # structlog's defaults print every event to stdout, where the stack dumps
    # of deliberate hangs look like failures among pytest's dots. Events still
    # reach processors, so tests that capture logs see them all.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event hung tools wait on; set at teardown so no thread stays stuck."""
    event = threading.Event()
    yield event
    event.set()


@contextmanager
def recording(recorder: Callable[..., Any]) -> Iterator[None]:
    """Send every structlog event, from any thread, to ``recorder``.

    The processors are swapped in place, as ``capture_logs`` does, so loggers
    bound before the test still reach the recorder; contextvars are merged
    first, so bound values show up in the recorded events.
    """
    processors = structlog.get_config()["processors"]
    saved = list(processors)
    processors[:] = [structlog.contextvars.merge_contextvars, recorder]
    structlog.configure(processors=processors)
    try:
        yield
    finally:
        processors[:] = saved
        structlog.configure(processors=processors)
