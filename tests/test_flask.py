"""The Flask integration: an application context per tool call (case C9)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentsync
from agentsync.testing import FakeMessagesServer, tool_use_block

flask = pytest.importorskip("flask")

from agentsync.integrations.flask import (
    FlaskContext,
    current_runtime,
    init_app,
)

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent
WORKER_PREFIX = "agentsync-worker"


class Teardowns:
    """Records the app contexts torn down, and in which threads."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.in_worker = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, exc: BaseException | None) -> None:
        name = threading.current_thread().name
        with self._lock:
            self.threads.append(name)
        if name.startswith(WORKER_PREFIX):
            self.in_worker.set()

    @property
    def in_workers(self) -> list[str]:
        with self._lock:
            return [t for t in self.threads if t.startswith(WORKER_PREFIX)]


def get_db() -> sqlite3.Connection:
    """The Flask tutorial's connection per application context, on ``g``."""
    if "db" not in flask.g:
        flask.g.db = sqlite3.connect(flask.current_app.config["DATABASE"])
    return flask.g.db


def close_db(exc: BaseException | None) -> None:
    db = flask.g.pop("db", None)
    if db is not None:
        db.close()


@agentsync.tool(timeout=5)
def read_config(key: str) -> str:
    """Read a value of the app's config."""
    return f"{key}={flask.current_app.config[key]}"


@agentsync.tool(timeout=5)
def count_notes() -> int:
    """Count the notes in the app's database."""
    return int(get_db().execute("SELECT count(*) FROM notes").fetchone()[0])


def make_app(tmp_path: Path, runtime: agentsync.Runtime | None = None) -> flask.Flask:
    """An app whose /ask view runs the agent, and whose /notes view uses g.db."""
    app = flask.Flask("c9")
    app.config.update(
        TESTING=True, MODEL_NAME="c9-model", DATABASE=str(tmp_path / "c9.db")
    )
    app.teardown_appcontext(close_db)
    with sqlite3.connect(app.config["DATABASE"]) as db:
        db.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('one'), ('two')")

    @app.get("/ask")
    def ask() -> dict[str, object]:
        if flask.request.args.get("open_db"):
            get_db()
        rt = runtime if runtime is not None else current_runtime()
        result = agentsync.run_agent(
            "Answer from the tools.",
            tools=[read_config, count_notes],
            client=app.config["CLIENT"],
            runtime=rt,
            max_turns=4,
        )
        return {
            "text": result.text,
            "errors": [c.message for c in result.tool_calls if not c.ok],
        }

    return app


@pytest.fixture
def server() -> Iterator[FakeMessagesServer]:
    with FakeMessagesServer() as fake:
        yield fake


@pytest.fixture
def runtime() -> Iterator[agentsync.Runtime]:
    with agentsync.Runtime(hooks=[FlaskContext()], max_workers=4, watchdog=False) as rt:
        yield rt


@pytest.fixture
def bare_runtime() -> Iterator[agentsync.Runtime]:
    with agentsync.Runtime(max_workers=4, watchdog=False) as rt:
        yield rt


def test_tool_reads_app_config_with_flask_context_c9(
    tmp_path: Path, server: FakeMessagesServer
) -> None:
    """With init_app, a tool in a worker thread reads current_app.config."""
    app = make_app(tmp_path)
    init_app(app, max_workers=2, watchdog=False)
    app.config["CLIENT"] = server.client()
    server.add_tool_use("read_config", {"key": "MODEL_NAME"})
    server.add_reply("The model is c9-model.")

    response = app.test_client().get("/ask")

    assert response.status_code == 200
    assert response.json == {"text": "The model is c9-model.", "errors": []}
    [result] = server.last_request.tool_results
    assert result["content"] == "MODEL_NAME=c9-model"
    assert "is_error" not in result


def test_each_call_gets_its_own_app_context_c9(
    tmp_path: Path, server: FakeMessagesServer, runtime: agentsync.Runtime
) -> None:
    """A tool's g is its own: g.db opened by the view is not used from the worker."""
    app = make_app(tmp_path, runtime)
    app.config["CLIENT"] = server.client()
    server.add_tool_use("count_notes")
    server.add_reply("Two notes.")

    response = app.test_client().get("/ask?open_db=1")

    assert response.status_code == 200
    assert response.json == {"text": "Two notes.", "errors": []}
    assert server.last_request.tool_results[0]["content"] == "2"


def test_without_hook_view_context_leaks_into_worker_c9(
    tmp_path: Path, server: FakeMessagesServer, bare_runtime: agentsync.Runtime
) -> None:
    """Without the hook the tool shares the view's g.db; the error reaches the model."""
    app = make_app(tmp_path, bare_runtime)
    app.config["CLIENT"] = server.client()
    server.add_tool_use("count_notes")
    server.add_reply("The database failed.")

    response = app.test_client().get("/ask?open_db=1")

    assert response.status_code == 200
    assert response.json["text"] == "The database failed."
    [result] = server.last_request.tool_results
    assert result["is_error"] is True
    assert "same thread" in result["content"]


def test_without_app_context_failure_reaches_model_c9(
    server: FakeMessagesServer, bare_runtime: agentsync.Runtime
) -> None:
    """Outside any app context, the tool's error is an is_error result, not a crash."""
    server.add_tool_use("read_config", {"key": "MODEL_NAME"})
    server.add_reply("No config.")

    result = agentsync.run_agent(
        "Read the config.",
        tools=[read_config],
        client=server.client(),
        runtime=bare_runtime,
    )

    assert result.text == "No config."
    [tool_result] = server.last_request.tool_results
    assert tool_result["is_error"] is True
    assert "Working outside of application context" in tool_result["content"]


def test_hook_with_app_serves_calls_made_outside_app_context_c9(
    tmp_path: Path, server: FakeMessagesServer
) -> None:
    """FlaskContext(app) pushes that app's context for a cron-style run."""
    app = make_app(tmp_path)
    server.add_tool_use("read_config", {"key": "MODEL_NAME"})
    server.add_reply("ok")

    with agentsync.Runtime(hooks=[FlaskContext(app)], watchdog=False) as rt:
        agentsync.run_agent(
            "Read.", tools=[read_config], client=server.client(), runtime=rt
        )

    assert server.last_request.tool_results[0]["content"] == "MODEL_NAME=c9-model"


def test_app_context_popped_after_the_call_c9(
    tmp_path: Path, server: FakeMessagesServer, runtime: agentsync.Runtime
) -> None:
    """Each call's context is torn down in its worker before the view resumes."""
    app = make_app(tmp_path, runtime)
    app.config["CLIENT"] = server.client()
    teardowns = Teardowns()
    app.teardown_appcontext(teardowns)
    server.add_reply(
        [
            tool_use_block("read_config", {"key": "MODEL_NAME"}),
            tool_use_block("count_notes"),
        ]
    )
    server.add_reply("done")

    response = app.test_client().get("/ask")

    assert response.status_code == 200
    assert response.json["errors"] == []
    assert len(teardowns.in_workers) == 2
    assert teardowns.threads[-1] == threading.current_thread().name


def test_app_context_popped_when_hung_tool_returns_c9(
    tmp_path: Path, server: FakeMessagesServer, runtime: agentsync.Runtime
) -> None:
    """A timed-out tool keeps its context until it returns, then pops it itself."""
    release = threading.Event()

    @agentsync.tool(timeout=0.2)
    def hang() -> str:
        """Wait until the test lets go."""
        release.wait(10)
        return "late"

    runtime.register(hang)
    app = make_app(tmp_path, runtime)
    app.config["CLIENT"] = server.client()
    teardowns = Teardowns()
    app.teardown_appcontext(teardowns)
    server.add_tool_use("hang")
    server.add_reply("It hung.")

    response = app.test_client().get("/ask")
    held_while_hung = not teardowns.in_worker.is_set()
    release.set()
    popped = teardowns.in_worker.wait(5)

    assert response.status_code == 200
    assert response.json["text"] == "It hung."
    [result] = server.last_request.tool_results
    assert result["is_error"] is True
    assert "did not answer within 0.2 s" in result["content"]
    assert held_while_hung
    assert popped
    assert len(teardowns.in_workers) == 1


def test_nested_call_shares_the_outer_app_context_c9(
    tmp_path: Path, runtime: agentsync.Runtime
) -> None:
    """A nested ctx.call runs in its parent's context; one teardown for both."""
    app = make_app(tmp_path)
    teardowns = Teardowns()
    app.teardown_appcontext(teardowns)

    @agentsync.tool(timeout=5)
    def outer(ctx: agentsync.ToolContext) -> str:
        """Call read_config from inside a tool."""
        flask.g.marker = "outer"
        inner = ctx.call("read_config", {"key": "MODEL_NAME"})
        return f"{inner.value} g={flask.g.marker}"

    runtime.register(outer)
    runtime.register(read_config)

    with app.app_context():
        outcome = runtime.call("outer")

    assert outcome.value == "MODEL_NAME=c9-model g=outer"
    assert len(teardowns.in_workers) == 1


def test_request_copy_binds_request_in_tool_c9(tmp_path: Path) -> None:
    """FlaskContext(request=True) binds a request copy; teardown_request runs."""
    app = make_app(tmp_path)
    request_teardowns: list[str] = []
    app.teardown_request(
        lambda exc: request_teardowns.append(threading.current_thread().name)
    )

    @agentsync.tool(timeout=5)
    def who() -> str:
        """Say who asked."""
        return flask.request.args["user"]

    with (
        agentsync.Runtime(
            tools=[who], hooks=[FlaskContext(request=True)], watchdog=False
        ) as rt,
        app.test_request_context("/ask?user=ada"),
    ):
        outcome = rt.call("who")

    assert outcome.value == "ada"
    assert [t for t in request_teardowns if t.startswith(WORKER_PREFIX)] != []


def test_importing_agentsync_imports_no_framework_c9() -> None:
    """agentsync and agentsync.integrations load without Flask or Django."""
    code = (
        "import sys; import agentsync, agentsync.integrations; "
        "print(sorted(m for m in ('flask', 'django') if m in sys.modules))"
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=20,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_flask_names_the_extra_c9() -> None:
    """Importing the integration without Flask says what to install."""
    code = (
        "import sys; sys.modules['flask'] = None; import agentsync.integrations.flask"
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=20,
    )

    assert done.returncode == 1
    assert "pip install 'agentsync[flask]'" in done.stderr
