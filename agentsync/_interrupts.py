"""When a timed-out call's thread may be interrupted, for ``on_timeout="interrupt"``.

An asynchronous exception fires at whatever bytecode the thread runs next. If
that is the lock registry's bookkeeping, or the pool's own code, a lock can
stay held by a thread that no longer exists. A gate therefore lets the
interrupt through only while the tool's own code runs: it is open for the
body of the outermost call, and shielded while the runtime takes or releases
locks inside it (a nested call's declared locks). An interrupt that was sent
but has not fired when a shield goes up is withdrawn and raised again, at a
safe point, when the shield comes down.
"""

from __future__ import annotations

import ctypes
import threading

from .errors import ToolInterrupted

__all__ = ["InterruptGate", "clear_pending"]


def _set_async_exc(ident: int, exc_type: type[BaseException] | None) -> int:
    target = None if exc_type is None else ctypes.py_object(exc_type)
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), target)
    )


def clear_pending(thread: threading.Thread) -> None:
    """Withdraw an asynchronous exception sent to ``thread`` that has not fired."""
    if thread.ident is not None:
        _set_async_exc(thread.ident, None)


class InterruptGate:
    """The interrupt state of one outermost call; see the module docstring."""

    __slots__ = ("_deferred", "_lock", "_open", "_sent", "_shield", "thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._open = False
        self._shield = 0
        self._sent = False
        self._deferred = False

    def send(self) -> bool:
        """Raise ToolInterrupted in the call's thread if it is in the tool's code."""
        with self._lock:
            thread = self.thread
            if not self._open or self._shield or thread is None or thread.ident is None:
                return False
            count = _set_async_exc(thread.ident, ToolInterrupted)
            if count > 1:
                # More than one thread state was touched: undo, as the C API asks.
                clear_pending(thread)
                return False
            self._sent = count == 1
            return self._sent

    def open(self) -> None:
        """The outermost tool's code starts, in the calling thread."""
        with self._lock:
            self.thread = threading.current_thread()
            self._open = True

    def close(self) -> None:
        """The outermost tool's code ended; an interrupt not yet fired is dropped."""
        with self._lock:
            self._open = False
            self._withdraw()
            self._deferred = False

    def shield(self) -> None:
        """Runtime bookkeeping starts: hold interrupts back."""
        with self._lock:
            self._shield += 1
            if self._withdraw():
                self._deferred = True

    def unshield(self, *, deliver: bool = True) -> None:
        """Runtime bookkeeping ended: raise an interrupt held back meanwhile.

        Raises:
            ToolInterrupted: one was withdrawn while shielded, and ``deliver``.
        """
        with self._lock:
            self._shield -= 1
            due = deliver and self._deferred and not self._shield and self._open
            if due:
                self._deferred = False
        if due:
            raise ToolInterrupted

    def _withdraw(self) -> bool:
        # Called under the lock: withdraw a sent interrupt that has not fired.
        if not self._sent or self.thread is None:
            return False
        self._sent = False
        clear_pending(self.thread)
        return True
