"""The exception hierarchy of agentsync, rooted at :class:`AgentSyncError`.

Exceptions are for the caller's own mistakes and for runs that cannot go on.
What happens to a single tool call is never an exception: it is an
:class:`agentsync.Outcome`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class AgentSyncError(Exception):
    """Base class of every error agentsync raises."""


# -- tools -------------------------------------------------------------------


class ToolError(AgentSyncError):
    """Raised by a tool to send a clean message to the model.

    The message becomes the text of an ``is_error`` tool result, without a
    traceback. Any other exception a tool raises is reported too, as its type
    and message.
    """


class ToolDefinitionError(AgentSyncError, TypeError):
    """A function cannot be turned into a tool (bad signature or options)."""


class UnknownToolError(AgentSyncError, LookupError):
    """A tool name that the runtime does not know was asked for."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        listing = ", ".join(repr(k) for k in self.known) or "none"
        super().__init__(f"unknown tool {name!r}; known tools: {listing}")


class ToolCancelled(AgentSyncError):
    """Raised by :meth:`ToolContext.check` once the call was cancelled.

    A call is cancelled when its caller stopped waiting for it (timeout, run
    deadline) or when the runtime closes.
    """


class ToolInterrupted(BaseException):
    """Raised inside a timed-out tool's thread by ``on_timeout="interrupt"``.

    It derives from ``BaseException`` so that a tool's ``except Exception``
    does not swallow it; ``finally`` blocks still run.
    """


# -- runtime -----------------------------------------------------------------


class RuntimeClosedError(AgentSyncError, RuntimeError):
    """The runtime or executor was closed; it accepts no more calls."""


# -- locks -------------------------------------------------------------------


class LockError(AgentSyncError):
    """Base class of lock registry errors."""


class LockTimeout(LockError, TimeoutError):
    """A lock could not be had before the deadline.

    Attributes:
        lock: the name of the lock waited for.
        holder: a description of who held it (thread, tool, since when), or None.
        held: the names of the locks the caller held while it waited.
        chain: the wait-for chain that starts at the caller, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        lock: str,
        holder: Any = None,
        held: Sequence[str] = (),
        chain: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.lock = lock
        self.holder = holder
        self.held = tuple(held)
        self.chain = tuple(chain)


class LockOrderError(LockError):
    """A lock was asked for against the registry's canonical order.

    Attributes:
        lock: the lock asked for.
        held: the lock already held that must come after it.
    """

    def __init__(self, message: str, *, lock: str, held: str) -> None:
        super().__init__(message)
        self.lock = lock
        self.held = held


class LockUsageError(LockError, ValueError):
    """A lock registry was misused: unknown or duplicate names, bad timeout,
    release of a lock the thread does not hold."""


# -- plans -------------------------------------------------------------------


class PlanError(AgentSyncError, ValueError):
    """A plan is malformed; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = f"plan is invalid ({count} problem{'s' if count != 1 else ''})"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


# -- agent runs --------------------------------------------------------------


class AgentRunError(AgentSyncError):
    """An agent run could not end with an answer.

    Attributes:
        result: the partial :class:`agentsync.RunResult` up to the failure, so
            that the messages, usage and tool calls so far are not lost.
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class RunDeadlineExceeded(AgentRunError, TimeoutError):
    """The run's deadline passed before the model finished."""


class TurnLimitExceeded(AgentRunError):
    """The model asked for more turns than ``max_turns`` allows."""


class TruncatedToolUse(AgentRunError):
    """The reply hit ``max_tokens`` in the middle of a ``tool_use`` block.

    The cut-off tool call is never run, since its input may be partial.
    """


class RepeatedToolFailure(AgentRunError):
    """The model repeated the same failing tool call too many times in a row."""


class RateLimited(AgentRunError):
    """The API kept answering 429 or 529 and the run could not wait longer.

    ``retry_after`` is the wait the API asked for, in seconds, when it said.
    """

    def __init__(
        self, message: str, *, result: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.retry_after = retry_after


class APIReplyError(AgentRunError):
    """The Messages API failed or sent a reply the run cannot use."""
