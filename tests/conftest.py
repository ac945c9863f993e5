"""Suite-wide set-up: keep the library's log lines out of pytest's output."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
