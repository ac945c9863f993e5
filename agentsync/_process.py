"""``on_timeout="process"``: tools that run in a child process, killed on timeout.

A thread cannot be stopped; a process can. A tool declared with
``on_timeout="process"`` runs in a worker process of one shared pebble
``ProcessPool``. When the call's deadline passes, the worker is terminated
(SIGTERM, then SIGKILL three seconds later if it is still alive) and pebble
starts a replacement; the call raises :class:`ProcessTimeout` once the worker
is gone.

What crosses into the child is a reference to the function (its module and
qualified name, looked up again in the child) and the pickled inputs; what
comes back is the pickled return value or exception. Both are pickled and
unpickled by this module, not by the pool, so that a value that does not
round-trip fails the one call instead of breaking the pool for every caller.

Limit: workers are started with the ``forkserver`` method where the platform
has it (``spawn`` elsewhere), never ``fork``, since the runtime's process is
multi-threaded and a forked child can inherit a lock held by another thread.
The price is the one multiprocessing asks of every such program: a script
that defines or calls process tools must keep its top-level work under
``if __name__ == "__main__":``, because the child imports the script again.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import structlog

from .errors import AgentSyncError, ToolCancelled, ToolDefinitionError, ToolError

if TYPE_CHECKING:
    from pebble import ProcessFuture, ProcessPool

    from .context import ToolContext
    from .tools import Tool

__all__ = [
    "ProcessTimeout",
    "ProcessToolError",
    "check_process_tool",
    "run_in_process",
    "start_process_pool",
]

_log = structlog.get_logger("agentsync.process")

# How often a waiting call looks at its context's cancellation; a finished
# call is seen at once, whatever this value.
_POLL = 0.1

# How long a call waits, past its deadline, for the pool to confirm that its
# worker is dead: pebble looks every 0.1 s and gives SIGTERM 3 s before SIGKILL.
_KILL_GRACE = 5.0


class ProcessToolError(ToolError):
    """A process tool's call failed on the way into or out of its process.

    Its inputs or its return value do not pickle, its function cannot be found
    in the child, or the child died (a crash, ``os._exit``, the OOM killer).

    Attributes:
        tool: the tool's name.
        exitcode: the dead child's exit code, when it died.
    """

    def __init__(self, message: str, *, tool: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.exitcode = exitcode

    def __reduce__(self) -> Any:
        return (_rebuild_error, (str(self), self.tool, self.exitcode))


def _rebuild_error(message: str, tool: str, exitcode: int | None) -> ProcessToolError:
    return ProcessToolError(message, tool=tool, exitcode=exitcode)


class ProcessTimeout(AgentSyncError, TimeoutError):
    """A process tool's call passed its deadline; its process was killed.

    Attributes:
        tool: the tool's name.
        timeout: the seconds the call had, or None.
        killed: True once the pool confirmed the worker dead; False when the
            call never started, or the confirmation did not come in time.
    """

    def __init__(
        self, message: str, *, tool: str, timeout: float | None, killed: bool
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.timeout = timeout
        self.killed = killed

    def __reduce__(self) -> Any:
        return (_rebuild_timeout, (str(self), self.tool, self.timeout, self.killed))


def _rebuild_timeout(
    message: str, tool: str, timeout: float | None, killed: bool
) -> ProcessTimeout:
    return ProcessTimeout(message, tool=tool, timeout=timeout, killed=killed)


# -- registration ------------------------------------------------------------


def check_process_tool(tool: Tool) -> None:
    """Refuse, at definition time, a tool that cannot run in another process.

    Raises:
        ToolDefinitionError: the function is async, takes a ``ToolContext``,
            or cannot be found again by its module and name in a child.
    """
    fn = tool.fn
    if tool.is_async:
        raise ToolDefinitionError(
            f"tool {tool.name!r} is async and cannot use on_timeout='process'; "
            "make it a plain function, or use the default on_timeout"
        )
    if tool.context_param is not None:
        raise ToolDefinitionError(
            f"tool {tool.name!r} takes a ToolContext, which cannot cross into "
            "another process; drop the context parameter to use "
            "on_timeout='process'"
        )
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        what = qualname or repr(fn)
        raise ToolDefinitionError(
            f"tool {tool.name!r} wraps {what}, which a child process cannot import; "
            "on_timeout='process' needs a function defined at the top level of a "
            "module (not a lambda, a closure or a nested function)"
        )


def _resolve(module: str, qualname: str) -> Any:
    """The function named ``module.qualname``, taken out of its Tool if any.

    ``@tool`` rebinds the function's name to the Tool, so the lookup finds the
    Tool, not the function, in the usual case.
    """
    from .tools import Tool

    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target.fn if isinstance(target, Tool) else target


# -- the child's side --------------------------------------------------------


def _run_in_child(
    name: str, module: str, qualname: str, payload: bytes, deadline: float | None
) -> tuple[bool, bytes]:
    """Run one call in a pool worker; return (ok, pickled value or error).

    ``deadline`` is a ``time.monotonic()`` value, which is one system-wide
    clock on the platforms multiprocessing supports: a call that reaches a
    worker after its caller gave up is not started at all.
    """
    if deadline is not None and time.monotonic() >= deadline:
        late = ProcessToolError(
            f"tool {name!r} reached its process after its deadline; it did not run",
            tool=name,
        )
        return False, pickle.dumps((late, ""))
    try:
        fn = _resolve(module, qualname)
        value = fn(**pickle.loads(payload))
    except BaseException as exc:  # noqa: BLE001 - sent back to the caller
        return False, _pickle_error(name, exc)
    try:
        return True, pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure
        error = ProcessToolError(
            f"the return value of tool {name!r} cannot be pickled to leave its "
            f"process: {type(exc).__name__}: {exc}",
            tool=name,
        )
        return False, pickle.dumps((error, ""))


def _pickle_error(name: str, exc: BaseException) -> bytes:
    """Pickle a tool's exception with its traceback text, or a stand-in for it.

    The exception is unpickled here too, because an exception class whose
    constructor takes other arguments than its message pickles fine and then
    fails to unpickle in the parent.
    """
    text = "".join(traceback.format_exception(exc))
    try:
        data = pickle.dumps((exc, text))
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 - any pickling failure
        stand_in = ProcessToolError(
            f"tool {name!r} raised {type(exc).__name__}: {exc}", tool=name
        )
        return pickle.dumps((stand_in, text))


def _noop() -> int:
    return os.getpid()


# -- the pool ----------------------------------------------------------------


class _ChildTraceback(Exception):
    """The traceback of an exception raised in a child process, as text."""

    def __str__(self) -> str:
        return str(self.args[0])


_pool: ProcessPool | None = None
_pool_pid = 0
_pool_lock = threading.Lock()
_pool_workers: int | None = None


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _get_pool() -> ProcessPool:
    """The shared pool, made on first use and replaced when it broke."""
    global _pool, _pool_pid
    with _pool_lock:
        pool = _pool
        if pool is not None and _pool_pid != os.getpid():
            # Inherited through a fork (a pre-forking web server): its threads
            # and workers belong to the parent, which stops them.
            pool = None
        if pool is not None and pool.active:
            return pool
        if pool is not None:
            _log.warning("process_pool.replaced")
            _retire(pool)
        # pebble (and what it brings) loads with the first process tool call,
        # not with `import agentsync`.
        from pebble import ProcessPool

        workers = _pool_workers or os.cpu_count() or 1
        context = multiprocessing.get_context(_start_method())
        _pool, _pool_pid = (
            ProcessPool(max_workers=workers, context=context),
            os.getpid(),
        )
        return _pool


def _retire(pool: ProcessPool) -> None:
    # Joining a pool waits for its manager threads and stops its workers, a
    # few seconds at worst; a daemon thread does it so no caller waits.
    def stop() -> None:
        pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it untyped
        pool.join()

    threading.Thread(target=stop, name="agentsync-pool-retire", daemon=True).start()


def start_process_pool(
    max_workers: int | None = None, *, timeout: float = 30.0
) -> None:
    """Start the shared pool of process tools now rather than at the first call.

    The first call of a process tool otherwise pays for starting the pool
    (about a second: a fork server and its workers) out of its own timeout.
    Call this at application start-up. A pool already running is kept, unless
    ``max_workers`` asks for another size: then it is replaced.

    Args:
        max_workers: how many process-tool calls run at once; the machine's
            CPU count by default. Calls beyond it queue, and their wait counts
            against their timeout.
        timeout: seconds to wait for the workers to start.

    Raises:
        TimeoutError: the workers did not start within ``timeout``.
    """
    global _pool, _pool_workers
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    with _pool_lock:
        if max_workers is not None and max_workers != _pool_workers:
            _pool_workers = max_workers
            if _pool is not None:
                _retire(_pool)
                _pool = None
    pool = _get_pool()
    futures = [
        pool.schedule(_noop) for _ in range(_pool_workers or os.cpu_count() or 1)
    ]
    _done, pending = concurrent.futures.wait(futures, timeout=timeout)
    if pending:
        raise TimeoutError(f"the process pool did not start within {timeout:g} s")


# -- the parent's side -------------------------------------------------------


def run_in_process(
    tool: Tool, context: ToolContext | None, kwargs: dict[str, Any]
) -> Any:
    """Run ``tool.fn(**kwargs)`` in a pool worker and return its value.

    The call has the context's time left, or the tool's timeout without a
    context. Past it, the worker is killed and replaced.

    Raises:
        ProcessTimeout: the deadline passed; the worker was killed.
        ToolCancelled: the context was cancelled; the worker was killed.
        ProcessToolError: inputs or value do not pickle, or the child died.
        Exception: whatever the tool raised in the child, with the child's
            traceback as its ``__cause__``.
    """
    name = tool.name
    module, qualname = tool.fn.__module__, tool.fn.__qualname__

    # Check the inputs and the function here, where the error is clear: in
    # the pool, a pickling error would surface as an anonymous TypeError.
    try:
        payload = pickle.dumps(kwargs)
    except Exception as exc:
        raise ProcessToolError(
            f"inputs of tool {name!r} must pickle to cross into its process: "
            f"{type(exc).__name__}: {exc}",
            tool=name,
        ) from exc
    try:
        found = _resolve(module, qualname)
    except (ImportError, AttributeError):
        found = None
    if found is not tool.fn:
        raise ProcessToolError(
            f"tool {name!r}: {module}.{qualname} does not name its function, so "
            "a child process cannot find it; keep the function (or its tool) "
            "under that name at the top level of its module",
            tool=name,
        )

    timeout = context.remaining() if context is not None else None
    if timeout is None:
        timeout = tool.timeout
    if timeout is not None and timeout <= 0:
        raise ProcessTimeout(
            f"tool {name!r} reached its deadline before starting",
            tool=name,
            timeout=timeout,
            killed=False,
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    future = _schedule(name, (name, module, qualname, payload, deadline), timeout)

    # Wait for the value, looking now and then at the context's cancellation.
    cancelled = False
    while True:
        wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
        if wait <= 0:
            break
        done, _ = concurrent.futures.wait([future], timeout=wait)
        if done:
            return _result_of(name, future, timeout)
        if context is not None and context.cancelled:
            cancelled = True
            break

    # Past the deadline: have pebble stop the worker, and wait (bounded) until
    # it confirms, so that the call ends only once the child is gone.
    started = future.running()
    future.cancel()  # type: ignore[no-untyped-call]  # pebble leaves it untyped
    done, _ = concurrent.futures.wait([future], timeout=_KILL_GRACE)
    if done and not future.cancelled():
        return _result_of(name, future, timeout)
    call_id = context.call_id if context is not None else None
    _log.warning(
        "tool.process_killed",
        tool=name,
        call_id=call_id,
        started=started,
        confirmed=bool(done),
    )
    if cancelled:
        raise ToolCancelled(f"call {call_id} of tool {name!r} was cancelled")
    raise ProcessTimeout(
        f"tool {name!r} did not answer within {timeout:g} s; its process was killed"
        if started
        else f"tool {name!r} did not start within {timeout:g} s: every process "
        "of the pool stayed busy",
        tool=name,
        timeout=timeout,
        killed=bool(done) and started,
    )


def _schedule(
    name: str, args: tuple[Any, ...], timeout: float | None
) -> ProcessFuture[Any]:
    # The pool's own timeout is a backstop: the waiter above cancels the call
    # at its deadline, which stops the worker the same way.
    pool = _get_pool()
    try:
        return pool.schedule(_run_in_child, args=args, timeout=timeout)
    except RuntimeError:
        # The pool broke between the check and the call (a manager thread
        # died); one new pool gets one more try.
        return _get_pool().schedule(_run_in_child, args=args, timeout=timeout)


def _result_of(name: str, future: ProcessFuture[Any], timeout: float | None) -> Any:
    """The value of a finished call, or raise what it raised."""
    from pebble import ProcessExpired

    try:
        ok, data = future.result(timeout=0)
    except ProcessExpired as exc:
        raise ProcessToolError(
            f"the process running tool {name!r} died with exit code {exc.exitcode}",
            tool=name,
            exitcode=exc.exitcode,
        ) from None
    except concurrent.futures.TimeoutError as exc:
        # pebble's own timeout fired first and killed the worker.
        raise ProcessTimeout(
            f"tool {name!r} did not answer within {timeout or 0:g} s; "
            "its process was killed",
            tool=name,
            timeout=timeout,
            killed=True,
        ) from exc
    except BrokenProcessPool as exc:
        raise ProcessToolError(
            f"the process pool of tool {name!r} broke: {exc}; a script that uses "
            "process tools must run its top-level code under "
            "`if __name__ == '__main__':`",
            tool=name,
        ) from None

    try:
        loaded = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure
        what = "return value" if ok else "exception"
        raise ProcessToolError(
            f"the {what} of tool {name!r} cannot be unpickled in the caller: "
            f"{type(exc).__name__}: {exc}",
            tool=name,
        ) from None
    if ok:
        return loaded
    error, text = loaded
    if text:
        error.__cause__ = _ChildTraceback(text)
    raise error
