"""The context a tool call runs in: deadline, cancellation, nested calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from .errors import ToolCancelled

if TYPE_CHECKING:
    from ._interrupts import InterruptGate
    from .runtime import Runtime
    from .tools import Outcome

__all__ = ["ToolContext"]

_EVENT_LOCK = threading.Lock()


class ToolContext:
    """Handed to a tool whose first parameter is annotated ``ToolContext``.

    A tool that runs long should call :meth:`check` now and then, or read
    :attr:`cancelled`: once its caller stops waiting (timeout, run deadline,
    runtime closed) there is no one left to read its result, and the thread it
    runs in can only be freed by the tool itself returning.

    Attributes:
        call_id: the call's id; in an agent run, the model's ``tool_use_id``,
            usable as an idempotency key for side effects.
        tool: the name of the tool being run.
        chain: the tool names from the outermost call to this one.
        deadline: the ``time.monotonic()`` value past which the caller no
            longer waits, or None.
    """

    def __init__(
        self,
        *,
        call_id: str,
        tool: str,
        runtime: Runtime | None = None,
        deadline: float | None = None,
        chain: tuple[str, ...] = (),
        cancel_event: threading.Event | None = None,
    ) -> None:
        self.call_id = call_id
        self.tool = tool
        self.runtime = runtime
        self.deadline = deadline
        self.chain = chain or (tool,)
        # The event is made on first use: most calls are never cancelled and
        # never wait, and an Event costs more than the rest of the context.
        self._cancel = cancel_event
        self._log: Any = None
        self._watched = False
        self._waiting_locks: tuple[str, ...] = ()
        # Set for tools with on_timeout="interrupt"; nested calls share it.
        self._gate: InterruptGate | None = None

    @property
    def log(self) -> Any:
        """A structlog logger bound with ``tool`` and ``call_id``."""
        if self._log is None:
            self._log = structlog.get_logger("agentsync.tool").bind(
                tool=self.tool, call_id=self.call_id
            )
        return self._log

    def __repr__(self) -> str:
        return f"<ToolContext {self.tool!r} call_id={self.call_id!r}>"

    @property
    def cancelled(self) -> bool:
        """True once the caller stopped waiting for this call."""
        event = self._cancel
        return event is not None and event.is_set()

    def cancel(self) -> None:
        """Mark the call cancelled; the tool sees it at its next check."""
        self._event().set()

    def _event(self) -> threading.Event:
        event = self._cancel
        if event is None:
            with _EVENT_LOCK:
                if self._cancel is None:
                    self._cancel = threading.Event()
                event = self._cancel
        return event

    def remaining(self) -> float | None:
        """Seconds left before the call's deadline, or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise :class:`ToolCancelled` if the call was cancelled or is late.

        Raises:
            ToolCancelled: the caller stopped waiting, or the deadline passed.
        """
        if self.cancelled:
            raise ToolCancelled(
                f"call {self.call_id} of tool {self.tool!r} was cancelled"
            )
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise ToolCancelled(
                f"call {self.call_id} of tool {self.tool!r} passed its deadline"
            )

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation.

        Returns True when the call was cancelled during the wait, or its
        deadline came first: either way the caller no longer waits for it.
        """
        remaining = self.remaining()
        if remaining is not None:
            seconds = min(seconds, remaining)
        if self._event().wait(max(0.0, seconds)):
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def call(self, name: str, input: Mapping[str, Any] | None = None) -> Outcome:
        """Call another tool from inside this one, and return its outcome.

        The nested call runs inline, in this thread, with what is left of this
        call's deadline, so it can never wait behind the pool's own workers. A
        call that would re-enter a tool already on the chain fails at once
        with ``circular_call``.

        Raises:
            RuntimeError: the context has no runtime (a tool called directly).
        """
        if self.runtime is None:
            raise RuntimeError(
                f"tool {self.tool!r} was called outside a runtime; ctx.call needs one"
            )
        return self.runtime._call_nested(self, name, dict(input or {}))
