"""Tools over callback-style APIs: ``fn(inputs..., on_done)``.

Many SDKs report completion through a callback instead of a return value.
:func:`callback_tool` turns such a function into a :class:`Tool` whose call
starts the work, then waits, until the call's deadline at most, for the
callback.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from .context import ToolContext
from .errors import ToolCancelled, ToolDefinitionError, ToolError
from .tools import Tool, _is_context_annotation

__all__ = ["callback_tool"]

_log = structlog.get_logger("agentsync.callbacks")

# A call with no deadline at all (a callback tool called directly, with no
# timeout) still waits in bounded steps, re-checking its cancellation.
_UNBOUNDED_STEP = 3600.0

_CONTEXT_NAME = "agentsync_context"


class _Completion:
    """The one-shot ``on_done`` handed to the wrapped function.

    The first call wins; later ones are logged and dropped, whichever thread
    they come from.
    """

    __slots__ = ("_late", "_lock", "call_id", "error", "event", "tool", "value")

    def __init__(self, tool: str, call_id: str | None) -> None:
        self.tool = tool
        self.call_id = call_id
        self.event = threading.Event()
        self.value: Any = None
        self.error: BaseException | str | None = None
        self._lock = threading.Lock()
        self._late = False

    def __call__(
        self, value: Any = None, error: BaseException | str | None = None
    ) -> None:
        with self._lock:
            if self.event.is_set() or self._late:
                repeated = self.event.is_set()
            else:
                self.value, self.error = value, error
                self.event.set()
                return
        if repeated:
            _log.warning("tool.callback_repeated", tool=self.tool, call_id=self.call_id)
        else:
            _log.info("tool.callback_late", tool=self.tool, call_id=self.call_id)

    def give_up(self) -> bool:
        """Refuse later callbacks; False when one came in the meantime."""
        with self._lock:
            if self.event.is_set():
                return False
            self._late = True
            return True


def callback_tool(
    fn: Callable[..., Any],
    *,
    callback: str = "on_done",
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    locks: Sequence[str] = (),
    idempotent: bool = False,
) -> Tool:
    """Make a tool of a function that reports its result through a callback.

    ``fn`` is called with the validated inputs and, as its ``callback``
    parameter, a function ``on_done(value=None, error=None)``: the call
    returns ``value``, or raises ``error`` when one is given (an exception,
    or a message that becomes a :class:`ToolError`). The tool's
    call returns (or raises) as soon as ``on_done`` is called, from any
    thread, and before or after ``fn`` returns. The first call counts; later
    ones are logged as ``tool.callback_repeated`` and ignored. If ``fn``
    itself raises, that exception is the call's outcome.

    The schema comes from ``fn``'s signature without the callback parameter.
    A first parameter annotated :class:`ToolContext` receives the context.

    Args:
        fn: the callback-style function.
        callback: the name of ``fn``'s parameter that receives ``on_done``.
        name: the name the model calls it by; ``fn``'s name by default.
        description: what the model reads; ``fn``'s docstring by default.
        timeout: seconds the call waits for the callback, or None for the
            runtime's default.
        locks: lock names taken around the call (until the callback).
        idempotent: declare that running a call twice is harmless.

    Raises:
        ToolDefinitionError: ``fn`` has no ``callback`` parameter, or cannot
            make a tool.

    Limit: a callback that never comes makes the call a timeout; the work it
    stands for is not stopped, only no longer waited for, and the thread that
    waited is free again at the deadline.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(
            f"cannot read the signature of callback tool {name or fn!r}: {exc}"
        ) from exc
    tool_name = name or getattr(fn, "__name__", "")
    if inspect.iscoroutinefunction(fn):
        raise ToolDefinitionError(
            f"callback tool {tool_name!r} is async; an async function can be a "
            "tool of its own, with @agentsync.tool"
        )
    params = list(signature.parameters.values())
    if callback not in signature.parameters:
        raise ToolDefinitionError(
            f"callback tool {tool_name!r} has no parameter {callback!r} to receive "
            "on_done; name the right one with callback='...'"
        )

    # The wrapper's signature is fn's, without the callback, with a context
    # first: fn's own context parameter if it has one, else a private one.
    rest = [p for p in params if p.name != callback]
    own_context = bool(rest) and _is_context_annotation(rest[0].annotation)
    if own_context:
        context_name = rest[0].name
        inputs = rest[1:]
    else:
        context_name = _CONTEXT_NAME
        inputs = rest
    positional_only = any(p.kind is p.POSITIONAL_ONLY for p in inputs)
    context_param = inspect.Parameter(
        context_name,
        inspect.Parameter.POSITIONAL_ONLY
        if positional_only
        else inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=ToolContext,
    )
    try:
        wrapper_signature = signature.replace(parameters=[context_param, *inputs])
    except ValueError as exc:
        raise ToolDefinitionError(
            f"cannot build the signature of callback tool {tool_name!r}: {exc}"
        ) from exc

    def wrapper(**kwargs: Any) -> Any:
        ctx: ToolContext | None = kwargs.pop(context_name, None)
        if own_context:
            kwargs[context_name] = ctx
        return _call_and_wait(fn, callback, made, ctx, kwargs)

    functools.update_wrapper(wrapper, fn)
    wrapper.__signature__ = wrapper_signature  # type: ignore[attr-defined]
    annotations = dict(getattr(fn, "__annotations__", {}))
    annotations.pop(callback, None)
    annotations[context_name] = ToolContext
    wrapper.__annotations__ = annotations

    made = Tool(
        wrapper,
        name=tool_name,
        description=description,
        timeout=timeout,
        locks=locks,
        idempotent=idempotent,
    )
    return made


def _call_and_wait(
    fn: Callable[..., Any],
    callback: str,
    made: Tool,
    ctx: ToolContext | None,
    kwargs: dict[str, Any],
) -> Any:
    call_id = ctx.call_id if ctx is not None else None
    done = _Completion(made.name, call_id)
    fn(**kwargs, **{callback: done})

    # Wait for the callback until the deadline; the callback wakes the wait at
    # once. The runtime cancels a call at its deadline, so waiting for the
    # deadline covers cancellation too, with no polling.
    deadline = ctx.deadline if ctx is not None else None
    if deadline is None and made.timeout is not None:
        deadline = time.monotonic() + made.timeout
    while True:
        wait = _UNBOUNDED_STEP if deadline is None else deadline - time.monotonic()
        if done.event.wait(max(0.0, wait)):
            break
        cancelled = ctx is not None and ctx.cancelled
        late = deadline is not None and time.monotonic() >= deadline
        if (cancelled or late) and done.give_up():
            why = "was cancelled" if cancelled else "passed its deadline"
            raise ToolCancelled(
                f"call {call_id} of tool {made.name!r} {why} before its callback "
                "was called"
            )

    error = done.error
    if error is None:
        return done.value
    if isinstance(error, BaseException):
        raise error
    raise ToolError(f"tool {made.name!r} failed: {error}")
