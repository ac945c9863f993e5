"""Tests for agentsync.batch: checkpointed, resumable batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agentsync import cli
from agentsync.batch import (
    BatchOutputInUse,
    BatchReport,
    DuplicateItemError,
    agent_worker,
    item_id,
    run_batch,
)
from agentsync.testing import FakeMessagesServer

# -- helpers -----------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed; fails the test on a bad line."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last line is not whole"
    return [json.loads(line) for line in text.splitlines()]


def _ok_ids(path: Path) -> list[Any]:
    return [line["id"] for line in _lines(path) if line["status"] == "ok"]


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_until(predicate: Any, timeout: float) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass.

    A file growing has no event to wait on; the poll is short and bounded.
    """
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        tick.wait(0.005)
    return bool(predicate())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _script(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


# -- scripts run in a subprocess ---------------------------------------------

# Runs 100 items of about 50 ms on 4 workers. Each item writes a "started"
# marker first. The stop event records when the SIGTERM handler set it, which
# is the moment after which no item may start.
_C13_JOB = """
    import json
    import sys
    import threading
    import time

    from agentsync.batch import run_batch

    output, started_log, report_log = sys.argv[1:4]


    class RecordingEvent(threading.Event):
        received_at = None

        def set(self):
            if self.received_at is None:
                self.received_at = time.time()
            super().set()


    lock = threading.Lock()
    markers = open(started_log, "a", buffering=1)
    pause = threading.Event()


    def work(item):
        at = time.time()
        with lock:
            markers.write(json.dumps({"id": item["id"], "at": at}) + "\\n")
        pause.wait(0.05)
        return {"double": item["n"] * 2}


    stop = RecordingEvent()
    items = [{"id": f"item-{n:03d}", "n": n} for n in range(100)]
    report = run_batch(items, work, output=output, max_workers=4, grace=5.0, stop=stop)
    with open(report_log, "w") as f:
        json.dump(
            {
                "received_at": stop.received_at,
                "exit_code": report.exit_code,
                "done_before": report.done_before,
                "remaining": report.remaining,
            },
            f,
        )
    sys.exit(report.exit_code)
"""

# Two quick items and one that never returns, on 2 workers; the stop event
# writes a marker when a signal sets it.
_HUNG_JOB = """
    import pathlib
    import sys
    import threading

    from agentsync.batch import run_batch

    output, hang_marker, grace = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]


    class MarkingEvent(threading.Event):
        def set(self):
            pathlib.Path(str(hang_marker) + ".stop").touch()
            super().set()


    def work(item):
        if item == "hang":
            hang_marker.touch()
            threading.Event().wait(120)
        return item.upper()


    report = run_batch(
        ["a", "hang", "b"],
        work,
        output=output,
        max_workers=2,
        grace=float(grace),
        stop=MarkingEvent(),
    )
    print(report.summary(), flush=True)
    sys.exit(report.exit_code)
"""


class TestSignals:
    @pytest.mark.timeout(60)
    def test_sigterm_mid_batch_resumes_without_duplicates_c13(
        self, tmp_path: Path
    ) -> None:
        """SIGTERM stops new items, keeps results on disk; a rerun does the rest."""
        script = _script(tmp_path, "c13_job.py", _C13_JOB)
        output = tmp_path / "results.jsonl"
        started1, started2 = tmp_path / "started1.jsonl", tmp_path / "started2.jsonl"
        report1, report2 = tmp_path / "report1.json", tmp_path / "report2.json"
        args = [sys.executable, str(script), str(output)]
        first = subprocess.Popen([*args, str(started1), str(report1)], env=_env())

        try:
            assert _wait_until(lambda: _count_lines(output) >= 40, timeout=30)
            first.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = first.wait(timeout=5.0 + 10)
        finally:
            first.kill()
        waited = time.monotonic() - signalled
        lines = _lines(output)
        markers = _lines(started1)
        received_at = json.loads(report1.read_text())["received_at"]
        done = len(_ok_ids(output))
        rerun = subprocess.run(
            [*args, str(started2), str(report2)], env=_env(), timeout=30, check=False
        )

        assert code == 128 + signal.SIGTERM
        assert waited < 5.0 + 5
        assert received_at is not None
        assert [m for m in markers if m["at"] > received_at] == []
        assert 40 <= len(lines) < 100
        assert len({line["id"] for line in lines}) == len(lines)
        assert {line["status"] for line in lines} == {"ok"}
        assert len(markers) == len(lines)
        assert rerun.returncode == 0
        assert len(_lines(started2)) == 100 - done
        assert json.loads(report2.read_text())["done_before"] == done
        ok_ids = _ok_ids(output)
        assert len(ok_ids) == len(set(ok_ids)) == 100

    @pytest.mark.timeout(30)
    def test_hung_item_past_grace_is_interrupted_and_process_exits(
        self, tmp_path: Path
    ) -> None:
        """A hung item is recorded interrupted after the grace; the process exits."""
        script = _script(tmp_path, "hung_job.py", _HUNG_JOB)
        output, marker = tmp_path / "results.jsonl", tmp_path / "hang.started"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(output), str(marker), "0.5"],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )

        try:
            assert _wait_until(
                lambda: marker.exists() and _count_lines(output) >= 2, timeout=20
            )
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            stdout, _ = proc.communicate(timeout=0.5 + 10)
        finally:
            proc.kill()
        waited = time.monotonic() - signalled

        assert proc.returncode == 128 + signal.SIGTERM
        assert 0.4 <= waited < 0.5 + 5
        statuses = {line["id"]: line["status"] for line in _lines(output)}
        assert statuses == {
            item_id("a"): "ok",
            item_id("b"): "ok",
            item_id("hang"): "interrupted",
        }
        assert "1 remaining" in stdout

    @pytest.mark.timeout(30)
    def test_second_signal_ends_the_grace_at_once(self, tmp_path: Path) -> None:
        """A second SIGTERM stops waiting for a hung item without the full grace."""
        script = _script(tmp_path, "hung_job.py", _HUNG_JOB)
        output, marker = tmp_path / "results.jsonl", tmp_path / "hang.started"
        stopped = Path(str(marker) + ".stop")
        proc = subprocess.Popen(
            [sys.executable, str(script), str(output), str(marker), "60"], env=_env()
        )

        try:
            assert _wait_until(marker.exists, timeout=20)
            proc.send_signal(signal.SIGTERM)
            assert _wait_until(stopped.exists, timeout=10)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = proc.wait(timeout=10)
        finally:
            proc.kill()

        assert code == 128 + signal.SIGTERM
        assert time.monotonic() - signalled < 5
        assert _lines(output)[-1]["status"] == "interrupted"


# -- in-process behaviour ----------------------------------------------------


class TestResume:
    def test_torn_last_line_is_ignored_on_resume(self, tmp_path: Path) -> None:
        """A line cut off by a crash is dropped and its item runs again."""
        output = tmp_path / "results.jsonl"
        output.write_text(
            '{"id": "a", "status": "ok", "result": 1}\n'
            '{"id": "b", "status": "ok", "result": 2}\n'
            '{"id": "c", "status": "o',
            encoding="utf-8",
        )
        items = [{"id": key} for key in "abcd"]
        ran: list[str] = []

        report = run_batch(
            items,
            lambda item: ran.append(item["id"]),
            output=output,
            handle_signals=False,
        )

        assert sorted(ran) == ["c", "d"]
        assert report.done_before == 2
        assert report.ok == 2
        assert sorted(_ok_ids(output)) == ["a", "b", "c", "d"]

    def test_rerun_retries_errors_unless_told_not_to(self, tmp_path: Path) -> None:
        """Error lines run again by default; retry_failed=False keeps them."""
        output = tmp_path / "results.jsonl"
        output.write_text(
            '{"id": "a", "status": "ok", "result": 1}\n'
            '{"id": "b", "status": "error", "error": {"type": "X", "message": ""}}\n'
            '{"id": "c", "status": "interrupted", "error": {}}\n',
            encoding="utf-8",
        )
        items = [{"id": key} for key in "abc"]
        kept: list[str] = []
        retried: list[str] = []

        run_batch(
            items,
            lambda item: kept.append(item["id"]),
            output=output,
            retry_failed=False,
            handle_signals=False,
        )
        report = run_batch(
            items,
            lambda item: retried.append(item["id"]),
            output=output,
            handle_signals=False,
        )

        assert kept == ["c"]
        assert retried == ["b"]
        assert report.exit_code == 0
        assert sorted(_ok_ids(output)) == ["a", "b", "c"]

    @pytest.mark.parametrize(
        ("items", "duplicated"),
        [
            ([{"id": 1}, {"id": 2}, {"id": 1}], (1,)),
            (["same prompt", "other", "same prompt"], (item_id("same prompt"),)),
        ],
        ids=["explicit-ids", "hashed-ids"],
    )
    def test_duplicate_ids_are_rejected_before_anything_runs(
        self, tmp_path: Path, items: list[Any], duplicated: tuple[Any, ...]
    ) -> None:
        """Two items with one id raise DuplicateItemError; no worker runs."""
        output = tmp_path / "results.jsonl"
        ran: list[Any] = []

        with pytest.raises(DuplicateItemError) as info:
            run_batch(items, ran.append, output=output, handle_signals=False)

        assert info.value.ids == duplicated
        assert isinstance(info.value, ValueError)
        assert ran == []
        assert not output.exists()

    @pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX only")
    def test_second_batch_on_the_same_output_is_refused(
        self, tmp_path: Path, gate: threading.Event
    ) -> None:
        """While a batch writes an output, another one on it raises BatchOutputInUse."""
        output = tmp_path / "results.jsonl"
        started = threading.Event()

        def slow(item: Any) -> None:
            started.set()
            gate.wait(10)

        with ThreadPoolExecutor(1) as runner:
            first = runner.submit(
                run_batch, ["x"], slow, output=output, handle_signals=False
            )
            assert started.wait(10)
            with pytest.raises(BatchOutputInUse):
                run_batch(["y"], str, output=output, handle_signals=False)
            gate.set()
            report: BatchReport = first.result(timeout=10)

        assert report.ok == 1


class TestItems:
    def test_worker_exception_becomes_an_error_line(self, tmp_path: Path) -> None:
        """A worker's exception is recorded and logged; the other items still run."""
        output = tmp_path / "results.jsonl"

        def work(item: dict[str, Any]) -> int:
            if item["id"] == "bad":
                raise ValueError("no such customer")
            return 7

        with capture_logs() as logs:
            report = run_batch(
                [{"id": "good"}, {"id": "bad"}, {"id": "fine"}],
                work,
                output=output,
                handle_signals=False,
            )

        assert (report.ok, report.failed, report.exit_code) == (2, 1, 1)
        bad = next(line for line in _lines(output) if line["id"] == "bad")
        assert bad["status"] == "error"
        assert bad["error"] == {"type": "ValueError", "message": "no such customer"}
        failed = [e for e in logs if e["event"] == "batch.item_failed"]
        assert [e["item_id"] for e in failed] == ["bad"]

    def test_result_that_is_not_json_becomes_an_error_line(
        self, tmp_path: Path
    ) -> None:
        """A result json cannot encode is an error line, and the file stays valid."""
        output = tmp_path / "results.jsonl"

        report = run_batch(
            ["x"], lambda item: {item}, output=output, handle_signals=False
        )

        assert report.failed == 1
        [line] = _lines(output)
        assert line["status"] == "error"
        assert "not JSON-serialisable" in line["error"]["message"]

    @pytest.mark.timeout(10)
    def test_item_past_item_timeout_is_an_error_and_the_batch_ends(
        self, tmp_path: Path, gate: threading.Event
    ) -> None:
        """An item running past item_timeout is recorded as a timeout error."""
        output = tmp_path / "results.jsonl"

        def work(item: str) -> str:
            if item == "hang":
                gate.wait(30)
            return item

        began = time.monotonic()
        report = run_batch(
            ["hang", "a", "b"],
            work,
            output=output,
            max_workers=2,
            item_timeout=0.2,
            handle_signals=False,
        )

        assert time.monotonic() - began < 3
        assert (report.ok, report.failed, report.remaining) == (2, 1, 0)
        errors = [line for line in _lines(output) if line["status"] == "error"]
        assert [e["error"]["type"] for e in errors] == ["timeout"]

    def test_stop_event_starts_no_new_item(self, tmp_path: Path) -> None:
        """Once the stop event is set, no item starts; the report says what is left."""
        output = tmp_path / "results.jsonl"
        stop = threading.Event()
        ran: list[int] = []

        def work(item: dict[str, int]) -> int:
            ran.append(item["id"])
            if len(ran) == 3:
                stop.set()
            return item["id"]

        report = run_batch(
            [{"id": n} for n in range(10)],
            work,
            output=output,
            max_workers=1,
            stop=stop,
            handle_signals=False,
        )

        assert ran == [0, 1, 2]
        assert (report.ok, report.remaining, report.stopped_by) == (3, 7, "stop")
        assert report.exit_code == 75

    def test_foreign_thread_pool_executor_runs_the_batch(self, tmp_path: Path) -> None:
        """A ThreadPoolExecutor runs the items and is left open for its owner."""
        output = tmp_path / "results.jsonl"

        with ThreadPoolExecutor(3) as pool:
            report = run_batch(
                list(range(20)),
                lambda n: n * n,
                output=output,
                executor=pool,
                max_workers=3,
                handle_signals=False,
            )
            still_open = pool.submit(lambda: "open").result(timeout=5)

        assert (report.total, report.ok, report.exit_code) == (20, 20, 0)
        results = {line["id"]: line["result"] for line in _lines(output)}
        assert results[item_id(7)] == 49
        assert still_open == "open"


class TestAgentWorker:
    @pytest.mark.timeout(30)
    def test_agent_worker_runs_each_prompt_through_the_api(
        self, tmp_path: Path
    ) -> None:
        """agent_worker runs run_agent per item and records a JSON summary."""
        output = tmp_path / "results.jsonl"
        items = [{"id": "q1", "prompt": "hello"}, "a bare prompt"]

        with FakeMessagesServer() as server, server.client() as client:
            server.set_default("the answer")
            report = run_batch(
                items,
                agent_worker(client=client, max_turns=2),
                output=output,
                handle_signals=False,
            )
            requests = len(server.requests)

        assert (report.ok, report.failed) == (2, 0)
        assert requests == 2
        result = next(line for line in _lines(output) if line["id"] == "q1")["result"]
        assert result["text"] == "the answer"
        assert result["stop_reason"] == "end_turn"
        assert result["turns"] == 1
        assert result["usage"]["input_tokens"] == 10
        assert result["tool_calls"] == []


class TestCLI:
    def test_cli_batch_runs_a_worker_over_a_jsonl_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`agentsync batch` runs module:attr over the items and exits 0."""
        (tmp_path / "cli_batch_worker.py").write_text(
            "def shout(item):\n    return item['text'].upper()\n", encoding="utf-8"
        )
        items = tmp_path / "items.jsonl"
        items.write_text(
            '{"id": "one", "text": "a"}\n\n{"id": "two", "text": "b"}\n',
            encoding="utf-8",
        )
        output = tmp_path / "out.jsonl"
        monkeypatch.chdir(tmp_path)
        # The CLI configures structlog for the process; keep it for this test.
        monkeypatch.setattr("agentsync.logs.configure_logging", lambda *a, **k: None)

        code = cli.main(
            [
                "batch",
                str(items),
                "--worker",
                "cli_batch_worker:shout",
                "--output",
                str(output),
                "--workers",
                "2",
            ]
        )

        assert code == 0
        results = {line["id"]: line["result"] for line in _lines(output)}
        assert results == {"one": "A", "two": "B"}


def test_output_that_is_not_a_results_file_is_left_alone(tmp_path: Path) -> None:
    """Naming the items file as the output is refused, and the file is unchanged."""
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    before = items.read_bytes()

    with pytest.raises(ValueError, match="holds no batch results"):
        run_batch([{"id": 1}], lambda item: item, output=items, handle_signals=False)

    assert items.read_bytes() == before
