"""Optional logging set-up for scripts; the library never configures on import."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def configure_logging(
    level: str | int = "info", *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Set up structlog for a script: readable console lines, or JSON lines.

    Values bound with ``structlog.contextvars`` (``run_id``, a request id) are
    merged into every line, including lines logged from tool threads.

    Args:
        level: the lowest level printed, as a name or a number.
        json: print one JSON object per line instead of console lines.
        stream: where to print; standard error by default.
    """
    if isinstance(level, str):
        if level.lower() not in _LEVELS:
            raise ValueError(
                f"unknown log level {level!r}; use one of {sorted(_LEVELS)}"
            )
        level = _LEVELS[level.lower()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso" if json else "%H:%M:%S"),
            structlog.processors.format_exc_info
            if json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.getLogger("agentsync").setLevel(level)
