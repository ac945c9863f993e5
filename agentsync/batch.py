"""``run_batch()``: many runs, checkpointed to a JSONL file, resumable.

Each finished item becomes one line of the output file, written and synced
before the next line, so a crash or a ``kill -9`` loses at most the items that
were running. A rerun with the same output skips what is already done. On
SIGTERM or SIGINT no new item starts; running items get a grace period to
finish, then are recorded as ``interrupted``; the process can exit.

Output lines::

    {"id": "a1", "status": "ok", "result": ..., "seconds": 1.2}
    {"id": "a2", "status": "error", "error": {"type": "...", "message": "..."},
     "seconds": 0.4}
    {"id": "a3", "status": "interrupted", "error": {...}, "seconds": 10.0}
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO

import structlog

from .errors import AgentSyncError
from .executor import ToolExecutor

if TYPE_CHECKING:
    import anthropic

    from .agent import RunResult
    from .tools import Tool

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BatchOutputInUse",
    "BatchReport",
    "DuplicateItemError",
    "agent_worker",
    "item_id",
    "run_batch",
]

_log = structlog.get_logger("agentsync.batch")

_STATUSES = ("ok", "error", "interrupted")

# How often the main loop looks at the stop event when no item finishes. A
# signal handler only sets that event: it must not notify a condition that
# the interrupted main thread may be holding, so the loop wakes to look.
_TICK = 0.05

# The worker returned this instead of a result: the stop came before it began.
_NOT_STARTED = object()

# How long to wait for a finished item's future to receive its result.
_SETTLE = 1.0


class DuplicateItemError(AgentSyncError, ValueError):
    """Two or more items of a batch have the same id.

    Attributes:
        ids: the ids that occur more than once, in input order.
    """

    def __init__(self, ids: Sequence[str | int]) -> None:
        self.ids = tuple(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        super().__init__(
            f"item ids must be unique; duplicated: {shown}{more} "
            "(give each item an 'id', or pass id_of=)"
        )


class BatchOutputInUse(AgentSyncError):
    """Another batch holds the output file; two writers would duplicate lines."""


@dataclass(frozen=True)
class BatchReport:
    """What a :func:`run_batch` call did.

    Attributes:
        total: the items given.
        done_before: items skipped because the output already recorded them.
        ok: items that succeeded in this run.
        failed: items whose worker raised (or ran past ``item_timeout``).
        interrupted: items still running when the grace period ended.
        remaining: items with no final line yet (interrupted or never
            started); a rerun runs them.
        duration: seconds the call took.
        output: the output file.
        stopped_by: ``"SIGTERM"``, ``"SIGINT"``, ``"stop"`` (the event) or
            ``"executor"`` (it refused an item) when the batch stopped early,
            else None.
    """

    total: int
    done_before: int
    ok: int
    failed: int
    interrupted: int
    remaining: int
    duration: float
    output: Path
    stopped_by: str | None = None

    @property
    def exit_code(self) -> int:
        """The process exit code for this outcome.

        128 plus the signal number (130 for SIGINT, 143 for SIGTERM) when a
        signal stopped the batch with items left, 75 (``EX_TEMPFAIL``) when
        something else stopped it so, 1 when items failed, 0 when every
        item is done.
        """
        if self.remaining:
            if self.stopped_by in ("SIGTERM", "SIGINT"):
                return 128 + int(signal.Signals[self.stopped_by])
            return 75
        return 1 if self.failed else 0

    def summary(self) -> str:
        """One line for a person: the counts, and what a rerun would do."""
        head = (
            f"batch stopped by {self.stopped_by}"
            if self.stopped_by and self.remaining
            else "batch done"
        )
        text = (
            f"{head}: {self.ok} ok, {self.failed} failed, {self.interrupted} "
            f"interrupted, {self.remaining} remaining, {self.done_before} done "
            f"before, of {self.total} in {self.duration:.1f} s; output {self.output}"
        )
        if self.remaining:
            text += "; rerun with the same output to finish"
        return text


def item_id(item: Any) -> str | int:
    """Return an item's id: its ``"id"`` when it is a mapping with one, else a hash.

    The hash is the first 16 hex digits of the SHA-256 of the item's JSON
    with sorted keys, so it is stable across runs and machines; changing the
    item changes its id.

    Raises:
        TypeError: the ``"id"`` is not a string or an int, or an item with no
            id is not JSON-serialisable.
    """
    if isinstance(item, Mapping) and "id" in item:
        value = item["id"]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"an item's 'id' must be a str or an int, got {value!r}")
        return value
    try:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"an item with no 'id' must be JSON-serialisable to be hashed: {exc}"
        ) from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_batch(
    items: Iterable[Any],
    worker: Callable[[Any], Any],
    *,
    output: str | os.PathLike[str],
    executor: Executor | None = None,
    max_workers: int = 4,
    grace: float = 10.0,
    handle_signals: bool = True,
    stop: threading.Event | None = None,
    retry_failed: bool = True,
    item_timeout: float | None = None,
    id_of: Callable[[Any], str | int] | None = None,
) -> BatchReport:
    """Run ``worker(item)`` for every item not yet done, recording each in ``output``.

    Each finished item is appended to ``output`` as one JSON line, flushed
    and synced to disk before the call moves on. A line that a crash cut off
    is dropped when the next run opens the file. Items already recorded
    ``ok`` are skipped, so running the same command again after a crash or a
    signal finishes the batch with one ``ok`` line per item.

    A stop (SIGTERM, SIGINT, or ``stop`` set) starts no new item. Running
    items have ``grace`` seconds to finish; those still running are then
    recorded ``interrupted`` and their threads abandoned: the call returns,
    but the threads run on until the worker returns, since a thread cannot
    be killed. A second signal ends the grace period at once.

    Warning:
        With your own ``executor``, nothing can be abandoned: an item it has
        not started is cancelled, but one it runs keeps its worker busy, and
        a ``ThreadPoolExecutor`` makes interpreter exit wait for it. The
        default :class:`ToolExecutor` runs daemon threads, so a hung item
        never blocks exit. With an executor that runs items elsewhere
        (processes, Dask), ``worker`` and the items must pickle.

    Args:
        items: prompts or JSON-like items, read into memory first. A mapping
            with an ``"id"`` key is known by it; any other item by a hash of
            its JSON (see :func:`item_id`).
        worker: called with one item; returns a JSON-serialisable result.
            An exception it raises becomes that item's ``error`` line.
        output: the JSONL file of results; created when missing.
        executor: where items run; a :class:`ToolExecutor` of
            ``max_workers`` threads by default. It is not shut down.
        max_workers: how many items run at once; with your own executor, set
            it to that executor's capacity.
        grace: seconds running items get to finish after a stop.
        handle_signals: catch SIGTERM and SIGINT while the batch runs, and
            restore the previous handlers after. Only possible in the main
            thread; elsewhere, use ``stop``.
        stop: an event that stops the batch like a signal; the signal
            handlers set it too.
        retry_failed: run again the items recorded as ``error`` (items
            recorded ``interrupted`` always run again).
        item_timeout: seconds an item may run before it is recorded as an
            ``error`` of type ``timeout`` and its thread abandoned.
        id_of: the function giving an item's id, instead of :func:`item_id`.

    Returns:
        A :class:`BatchReport`; its ``exit_code`` suits ``sys.exit``.

    Raises:
        DuplicateItemError: two items have the same id; nothing has run.
        BatchOutputInUse: another batch is writing to ``output``.
        TypeError: an item has no usable id.
        ValueError: a bad ``max_workers``, ``grace`` or ``item_timeout``.
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int, got {max_workers!r}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    if not grace >= 0:
        raise ValueError(f"grace must be 0 or more seconds, got {grace!r}")
    if item_timeout is not None and not item_timeout > 0:
        raise ValueError(f"item_timeout must be positive seconds, got {item_timeout!r}")
    began = time.monotonic()
    path = Path(output)

    # Every id is known before anything runs, so a duplicate fails early.
    keyed = _keyed(items, id_of or item_id)

    journal = _Journal.open(path)
    try:
        skip = journal.finished(retry_failed)
        todo = [(key, item) for key, item in keyed if key not in skip]
        done_before = len(keyed) - len(todo)
        _log.info(
            "batch.start",
            output=str(path),
            total=len(keyed),
            done_before=done_before,
            to_run=len(todo),
            workers=max_workers,
        )
        pool = executor if executor is not None else _own_executor(max_workers)
        batch = _Batch(
            pool=pool,
            worker=worker,
            journal=journal,
            stop=stop if stop is not None else threading.Event(),
            window=max_workers,
            grace=grace,
            item_timeout=item_timeout,
        )
        try:
            with _signal_handlers(handle_signals, batch.on_signal):
                batch.run(todo)
        finally:
            if executor is None:
                pool.shutdown(wait=False, cancel_futures=True)
    finally:
        journal.close()

    report = BatchReport(
        total=len(keyed),
        done_before=done_before,
        ok=batch.ok,
        failed=batch.failed,
        interrupted=batch.interrupted,
        remaining=len(todo) - batch.ok - batch.failed,
        duration=time.monotonic() - began,
        output=path,
        stopped_by=batch.stopped_by,
    )
    _log.info(
        "batch.end",
        ok=report.ok,
        failed=report.failed,
        interrupted=report.interrupted,
        remaining=report.remaining,
        done_before=report.done_before,
        stopped_by=report.stopped_by,
        duration_s=round(report.duration, 3),
    )
    return report


def agent_worker(
    *,
    tools: Iterable[Tool | Callable[..., Any]] = (),
    client: anthropic.Anthropic | None = None,
    prompt_key: str = "prompt",
    **run_agent_kwargs: Any,
) -> Callable[[Any], dict[str, Any]]:
    """Return a worker that runs :func:`agentsync.run_agent` on each item.

    An item is a prompt string, or a mapping whose ``prompt_key`` holds the
    prompt. The worker returns a JSON summary of the run: ``text``,
    ``stop_reason``, ``turns``, ``usage``, ``tool_calls`` (name, status,
    error kind, seconds each), ``run_id`` and ``duration``. A failed run
    raises its :class:`AgentRunError`, which becomes the item's error line.

    Args:
        tools: the tools of every run.
        client: the ``anthropic.Anthropic`` client all runs share; one is
            made from the environment on first use when left out.
        prompt_key: where a mapping item keeps its prompt.
        **run_agent_kwargs: passed to every :func:`run_agent` call
            (``model``, ``system``, ``max_turns``, ``deadline``...).

    Returns:
        The worker, for :func:`run_batch`.
    """
    from .agent import run_agent

    tool_list = list(tools)
    shared: list[anthropic.Anthropic] = [client] if client is not None else []
    lock = threading.Lock()

    def the_client() -> anthropic.Anthropic:
        # One client for all items: its connection pool is thread-safe.
        with lock:
            if not shared:
                import anthropic

                shared.append(anthropic.Anthropic())
            return shared[0]

    def work(item: Any) -> dict[str, Any]:
        if isinstance(item, str):
            prompt = item
        elif isinstance(item, Mapping) and isinstance(item.get(prompt_key), str):
            prompt = item[prompt_key]
        else:
            raise TypeError(f"the item has no {prompt_key!r} string to use as prompt")
        result = run_agent(
            prompt, tools=tool_list, client=the_client(), **run_agent_kwargs
        )
        return _summary(result)

    return work


# -- internals ---------------------------------------------------------------


def _own_executor(max_workers: int) -> ToolExecutor:
    return ToolExecutor(max_workers, thread_name_prefix="agentsync-batch")


def _keyed(
    items: Iterable[Any], id_of: Callable[[Any], str | int]
) -> list[tuple[str | int, Any]]:
    keyed: list[tuple[str | int, Any]] = []
    seen: set[str | int] = set()
    duplicated: dict[str | int, None] = {}
    for index, item in enumerate(items):
        try:
            key = id_of(item)
        except TypeError as exc:
            raise TypeError(f"item {index}: {exc}") from None
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"item {index}: an id must be a str or an int, got {key!r}")
        if key in seen:
            duplicated[key] = None
        seen.add(key)
        keyed.append((key, item))
    if duplicated:
        raise DuplicateItemError(list(duplicated))
    return keyed


def _summary(result: RunResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "stop_reason": result.stop_reason,
        "turns": result.turns,
        "usage": dataclasses.asdict(result.usage),
        "tool_calls": [
            {
                "name": call.name,
                "status": call.status,
                "error_kind": call.error_kind,
                "seconds": round(call.duration, 3),
            }
            for call in result.tool_calls
        ],
        "run_id": result.run_id,
        "duration": round(result.duration, 3),
    }


def _error(kind: str, message: str) -> dict[str, str]:
    return {"type": kind, "message": message}


@contextlib.contextmanager
def _signal_handlers(
    wanted: bool, handler: Callable[[int, FrameType | None], None]
) -> Iterator[None]:
    if not wanted or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            # None means a handler installed from C, which Python cannot put
            # back; the default is the closest.
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


class _Journal:
    """The output file: read once at open, then appended to one line at a time."""

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path = path
        self._file = file
        self._lock = threading.Lock()
        self.states: dict[str | int, str] = {}

    @classmethod
    def open(cls, path: Path) -> _Journal:
        created = not path.exists()
        file = open(path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise BatchOutputInUse(
                        f"output {str(path)!r} is locked by another running batch"
                    ) from None
            # Limit: on Windows there is no flock, and two batches sharing
            # an output are not detected.
            journal = cls(path, file)
            journal._load()
            if created:
                _sync_dir(path)
        except BaseException:
            file.close()
            raise
        return journal

    def _load(self) -> None:
        self._file.seek(0)
        data = self._file.read()
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            line = data[start:newline]
            record = _parse(line)
            if record is not None:
                self.states[record["id"]] = record["status"]
            elif line.strip():
                _log.warning(
                    "batch.bad_line",
                    output=str(self.path),
                    offset=start,
                    line=line[:80].decode(errors="replace"),
                )
            start = newline + 1

        if not self.states and data.strip():
            # Not a file this journal wrote: refuse rather than cut it.
            raise ValueError(
                f"output {str(self.path)!r} holds no batch results; it would be "
                "appended to and cut, so name a new file or an earlier output"
            )

        # Only an unterminated last line can be one a crash cut off: each
        # record is written with its newline in one write. Whole lines stay.
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            if data[cut:].strip():
                _log.warning(
                    "batch.torn_line",
                    output=str(self.path),
                    offset=cut,
                    dropped_bytes=len(data) - cut,
                )
            self._file.truncate(cut)
            self._file.flush()
            os.fsync(self._file.fileno())

    def finished(self, retry_failed: bool) -> set[str | int]:
        done = ("ok",) if retry_failed else ("ok", "error")
        return {key for key, status in self.states.items() if status in done}

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as one line and sync it to disk.

        Raises:
            TypeError, ValueError: the record is not JSON-serialisable.
        """
        data = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
        with self._lock:
            self._file.write(data.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
            self.states[record["id"]] = record["status"]

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("status") not in _STATUSES:
        return None
    key = record.get("id")
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return None
    return record


def _sync_dir(path: Path) -> None:
    # A new file's name is durable once its directory is synced.
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - a directory that cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - not every file system syncs directories
        pass
    finally:
        os.close(fd)


class _Slot:
    """One item on its way through the executor."""

    __slots__ = ("item", "key", "started", "submitted")

    def __init__(self, key: str | int, item: Any) -> None:
        self.key = key
        self.item = item
        self.submitted = time.monotonic()
        self.started: float | None = None


class _Batch:
    """The main loop of one :func:`run_batch` call and its counts."""

    def __init__(
        self,
        *,
        pool: Executor,
        worker: Callable[[Any], Any],
        journal: _Journal,
        stop: threading.Event,
        window: int,
        grace: float,
        item_timeout: float | None,
    ) -> None:
        self.pool = pool
        self.worker = worker
        self.journal = journal
        self.stop = stop
        self.window = window
        self.grace = grace
        self.item_timeout = item_timeout
        # In-process pools run a gate in the worker thread that checks the
        # stop event just before the item starts; elsewhere the event is not
        # visible, and queued items are cancelled instead.
        self.gated = isinstance(pool, (ToolExecutor, ThreadPoolExecutor))
        self.signals = 0
        self.signal_name: str | None = None
        self.stopped_by: str | None = None
        self.ok = self.failed = self.interrupted = 0

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of the loop: it only
        # sets values. The main loop never takes the event's lock (it reads
        # is_set()), so set() cannot deadlock here.
        self.signals += 1
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        self.stop.set()

    def run(self, todo: Sequence[tuple[str | int, Any]]) -> None:
        pending = iter(todo)
        exhausted = False
        inflight: dict[Future[Any], _Slot] = {}
        grace_end: float | None = None
        while True:
            # Keep the executor fed, one item per free worker.
            while not (exhausted or self.stopped_by or self.stop.is_set()):
                if len(inflight) >= self.window:
                    break
                entry = next(pending, None)
                if entry is None:
                    exhausted = True
                    break
                slot = _Slot(*entry)
                try:
                    inflight[self._submit(slot)] = slot
                except Exception as exc:  # noqa: BLE001 - any executor's refusal
                    _log.error(
                        "batch.submit_failed",
                        item_id=slot.key,
                        error=type(exc).__name__,
                        message=str(exc),
                    )
                    self.stopped_by = "executor"
            if not inflight and (exhausted or self.stopped_by or self.stop.is_set()):
                if grace_end is None and self.stop.is_set():
                    self._notice_stop(inflight)
                return

            done, _ = wait_futures(
                list(inflight),
                timeout=self._next_wake(inflight, grace_end),
                return_when=FIRST_COMPLETED,
            )
            for future in done:
                self._finish(future, inflight.pop(future))
            now = time.monotonic()
            if self.item_timeout is not None:
                self._expire(inflight, now)

            if grace_end is None and self.stop.is_set():
                self._notice_stop(inflight)
                grace_end = now + self.grace
            if grace_end is not None and self.signals > 1:
                grace_end = now  # a second signal: stop waiting at once
            if grace_end is not None and now >= grace_end and inflight:
                self._interrupt(inflight, now)
                return

    def _submit(self, slot: _Slot) -> Future[Any]:
        if self.gated:
            return self.pool.submit(self._gate, slot)
        return self.pool.submit(self.worker, slot.item)

    def _gate(self, slot: _Slot) -> Any:
        if self.stop.is_set():
            return _NOT_STARTED
        slot.started = time.monotonic()
        return self.worker(slot.item)

    def _next_wake(
        self, inflight: Mapping[Future[Any], _Slot], grace_end: float | None
    ) -> float:
        now = time.monotonic()
        wake = now + _TICK
        if grace_end is not None:
            wake = min(wake, grace_end)
        if self.item_timeout is not None:
            for slot in inflight.values():
                if self.gated and slot.started is None:
                    continue
                began = slot.started if slot.started is not None else slot.submitted
                wake = min(wake, began + self.item_timeout)
        return max(0.0, wake - now)

    def _notice_stop(self, inflight: dict[Future[Any], _Slot]) -> None:
        self.stopped_by = self.signal_name or self.stopped_by or "stop"

        # Items the executor has not started never will.
        for future in [f for f in inflight if f.cancel()]:
            del inflight[future]
        _log.warning(
            "batch.interrupted",
            stopped_by=self.stopped_by,
            running=len(inflight),
            grace_s=self.grace,
            done=self.ok + self.failed,
        )

    def _finish(self, future: Future[Any], slot: _Slot) -> None:
        if future.cancelled():
            return
        seconds = round(time.monotonic() - (slot.started or slot.submitted), 3)
        error = future.exception(timeout=0)
        if error is None:
            value = future.result(timeout=0)
            if value is _NOT_STARTED:
                return
            try:
                self.journal.append(
                    {
                        "id": slot.key,
                        "status": "ok",
                        "result": value,
                        "seconds": seconds,
                    }
                )
            except (TypeError, ValueError) as exc:
                error = exc
                message = f"the result is not JSON-serialisable: {exc}"
            else:
                self.ok += 1
                return
        else:
            message = str(error)
        self.failed += 1
        _log.warning(
            "batch.item_failed",
            item_id=slot.key,
            error=type(error).__name__,
            message=message,
            exc_info=error,
        )
        self.journal.append(
            {
                "id": slot.key,
                "status": "error",
                "error": _error(type(error).__name__, message),
                "seconds": seconds,
            }
        )

    def _expire(self, inflight: dict[Future[Any], _Slot], now: float) -> None:
        assert self.item_timeout is not None
        for future, slot in list(inflight.items()):
            began = slot.started if slot.started is not None else slot.submitted
            if (self.gated and slot.started is None) or now < began + self.item_timeout:
                continue
            if not self._abandon(future):
                continue  # it finished just now: the next wait collects it
            del inflight[future]
            self.failed += 1
            message = (
                f"the item ran past item_timeout={self.item_timeout:g} s; "
                "its thread was abandoned"
            )
            _log.warning(
                "batch.item_failed", item_id=slot.key, error="timeout", message=message
            )
            self.journal.append(
                {
                    "id": slot.key,
                    "status": "error",
                    "error": _error("timeout", message),
                    "seconds": round(now - began, 3),
                }
            )

    def _interrupt(self, inflight: dict[Future[Any], _Slot], now: float) -> None:
        message = (
            f"still running when the grace period after {self.stopped_by} ended; "
            "the batch stopped waiting for it"
        )
        abandoned: list[str | int] = []
        for future, slot in list(inflight.items()):
            if not self._abandon(future):
                # It finished as the grace period ended: keep its result.
                # The executor may still be setting it, hence the short wait.
                wait_futures([future], timeout=_SETTLE)
                if future.done():
                    self._finish(future, slot)
                    continue
            abandoned.append(slot.key)
            began = slot.started if slot.started is not None else slot.submitted
            self.interrupted += 1
            self.journal.append(
                {
                    "id": slot.key,
                    "status": "interrupted",
                    "error": _error("interrupted", message),
                    "seconds": round(now - began, 3),
                }
            )
        inflight.clear()
        if abandoned:
            _log.warning("batch.grace_expired", items=abandoned, grace_s=self.grace)

    def _abandon(self, future: Future[Any]) -> bool:
        """Stop waiting for a future; False when it is already done."""
        if isinstance(self.pool, ToolExecutor):
            return self.pool.abandon(future)
        # Limit: a foreign executor cannot give up a running item; it stays
        # busy until the worker returns.
        future.cancel()
        return not future.done() or future.cancelled()
