"""The Django integration: worker threads' database connections (case C10).

Django's settings can be configured once per process: every test here shares
the module-scoped ``django_settings`` fixture, and no other test module
configures Django.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import agentsync
from agentsync.testing import FakeMessagesServer, tool_use_block

django = pytest.importorskip("django")

from django.conf import settings
from django.db import connections
from django.db.backends.signals import connection_created
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from agentsync.integrations.django import DjangoDB

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent
WORKERS = 2
# More calls a turn than workers: some queue, and the bound still holds.
CALLS = 3
RUNS = 50
PG = {"HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres", "NAME": "test"}
PG_APP_NAME = f"agentsync-c10-{os.getpid()}"
PG_COUNT = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = %s"
)


# -- the site: one view that runs an agent -----------------------------------

AGENT: dict[str, Any] = {}


def ask(request: HttpRequest) -> JsonResponse:
    result = agentsync.run_agent(
        "How many notes are there?",
        client=AGENT["client"],
        runtime=AGENT["runtime"],
        max_turns=3,
    )
    errors = [c.message for c in result.tool_calls if not c.ok]
    return JsonResponse({"text": result.text, "errors": errors})


urlpatterns = [path("ask/", ask)]


# -- fixtures ----------------------------------------------------------------


def _postgres_problem() -> str | None:
    """Why the PostgreSQL variant cannot run here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    try:
        psycopg.connect(
            host=PG["HOST"],
            port=PG["PORT"],
            user=PG["USER"],
            dbname=PG["NAME"],
            connect_timeout=2,
        ).close()
    except psycopg.Error as exc:
        where = f"{PG['HOST']}:{PG['PORT']} as {PG['USER']}"
        return f"PostgreSQL is not reachable at {where}: {exc}"
    return None


@pytest.fixture(scope="module")
def django_settings(tmp_path_factory: pytest.TempPathFactory) -> str | None:
    """Configure Django once: SQLite in a temp file, PostgreSQL when reachable."""
    if settings.configured:
        if getattr(settings, "AGENTSYNC_C10", False):
            return settings.AGENTSYNC_C10_PG_PROBLEM  # type: ignore[no-any-return]
        pytest.skip("Django settings were configured by another module of this process")
    sqlite_path = tmp_path_factory.mktemp("c10") / "c10.sqlite3"
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.executemany("INSERT INTO notes VALUES (?)", [("one",), ("two",), ("three",)])
    db.close()
    databases: dict[str, dict[str, Any]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_path)}
    }
    problem = _postgres_problem()
    if problem is None:
        databases["postgresql"] = {
            "ENGINE": "django.db.backends.postgresql",
            **PG,
            "OPTIONS": {"application_name": PG_APP_NAME},
        }
    settings.configure(
        AGENTSYNC_C10=True,
        AGENTSYNC_C10_PG_PROBLEM=problem,
        DEBUG=False,
        SECRET_KEY="agentsync-c10",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES=databases,
        USE_TZ=True,
    )
    django.setup()
    return problem


@dataclass
class Tracker:
    """Django's connection objects that connected, with their thread.

    Django keeps one connection object per alias and thread, reconnecting it
    when it is used after a close; it is open while its ``connection`` is set.
    """

    opened: dict[int, tuple[Any, threading.Thread]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        with self.lock:
            self.opened[id(connection)] = (connection, threading.current_thread())

    def open(self, alias: str) -> int:
        with self.lock:
            return sum(
                1
                for c, _ in self.opened.values()
                if c.alias == alias and c.connection is not None
            )

    def threads(self, alias: str) -> set[threading.Thread]:
        with self.lock:
            return {t for c, t in self.opened.values() if c.alias == alias}

    def close_leaked(self) -> None:
        """Close, from this thread, connections left open in other threads."""
        with self.lock:
            leaked = [c for c, _ in self.opened.values() if c.connection is not None]
        for conn in leaked:
            conn.inc_thread_sharing()
            try:
                conn.close()
            finally:
                conn.dec_thread_sharing()


@dataclass
class Backend:
    """One database variant: how a tool queries it and how connections are counted."""

    alias: str
    sql: str
    params: tuple[Any, ...]
    tracker: Tracker
    server_count: Callable[[], int] | None = None

    def open(self) -> int:
        """Open connections: PostgreSQL's own count, else Django's."""
        if self.server_count is not None:
            return self.server_count()
        return self.tracker.open(self.alias)

    def settle(self, expected: int, timeout: float = 5.0) -> int:
        """The open count once it is ``expected``: a server ends backends late."""
        end = time.monotonic() + timeout
        count = self.open()
        while count != expected and time.monotonic() < end:
            time.sleep(0.01)
            count = self.open()
        return count


@pytest.fixture
def tracker(django_settings: str | None) -> Iterator[Tracker]:
    recorder = Tracker()
    connection_created.connect(recorder, weak=False)
    yield recorder
    connection_created.disconnect(recorder)
    recorder.close_leaked()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, django_settings: str | None, tracker: Tracker
) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("default", "SELECT count(*) FROM notes", (), tracker)
        return
    if django_settings is not None:
        pytest.skip(django_settings)
    import psycopg

    monitor = psycopg.connect(
        host=PG["HOST"],
        port=PG["PORT"],
        user=PG["USER"],
        dbname=PG["NAME"],
        autocommit=True,
        connect_timeout=5,
    )
    lock = threading.Lock()

    def server_count() -> int:
        with lock:
            row = monitor.execute(PG_COUNT, (PG_APP_NAME,)).fetchone()
        assert row is not None
        return int(row[0])

    backend = Backend("postgresql", PG_COUNT, (PG_APP_NAME,), tracker, server_count)
    try:
        yield backend
    finally:
        # Leaked connections are closed here so that the next test's baseline
        # does not count backends still on their way out.
        tracker.close_leaked()
        backend.settle(0)
        monitor.close()


@pytest.fixture
def server() -> Iterator[FakeMessagesServer]:
    with FakeMessagesServer() as fake:
        yield fake


def query_tool(backend: Backend, peaks: list[int]) -> agentsync.Tool:
    """A tool that queries the database, recording how many connections are open."""

    @agentsync.tool(name="count_notes", timeout=5)
    def count_notes() -> int:
        """Query the database."""
        with connections[backend.alias].cursor() as cursor:
            cursor.execute(backend.sql, backend.params)
            value = int(cursor.fetchone()[0])
        # Counted on Django's side: PostgreSQL lists a closed connection until
        # its backend process exits, which lags the close by a moment.
        peaks.append(backend.tracker.open(backend.alias))
        return value

    return count_notes


def script_runs(server: FakeMessagesServer, runs: int) -> None:
    """Each run: one turn of CALLS parallel queries, then an answer."""
    for _ in range(runs):
        server.add_reply([tool_use_block("count_notes") for _ in range(CALLS)])
        server.add_reply("done")


# -- tests -------------------------------------------------------------------


def test_fifty_runs_keep_connections_bounded_and_return_to_baseline_c10(
    backend: Backend, server: FakeMessagesServer
) -> None:
    """With DjangoDB, 50 view runs never hold more connections than workers."""
    peaks: list[int] = []
    runtime = agentsync.Runtime(
        tools=[query_tool(backend, peaks)],
        hooks=[DjangoDB()],
        max_workers=WORKERS,
        watchdog=False,
    )
    AGENT.update(client=server.client(), runtime=runtime)
    script_runs(server, RUNS)
    baseline = backend.open()
    client = Client()

    with runtime:
        responses = [client.get("/ask/") for _ in range(RUNS)]
        after = backend.settle(baseline)

    assert [r.status_code for r in responses] == [200] * RUNS
    assert all(r.json() == {"text": "done", "errors": []} for r in responses)
    assert len(peaks) == RUNS * CALLS
    assert max(peaks) <= WORKERS
    assert after == baseline
    assert backend.tracker.open(backend.alias) == 0


def test_without_hook_worker_connections_stay_open_c10(
    backend: Backend, server: FakeMessagesServer
) -> None:
    """Without DjangoDB, each worker thread keeps its connection after the runs."""
    peaks: list[int] = []
    runtime = agentsync.Runtime(
        tools=[query_tool(backend, peaks)], max_workers=WORKERS, watchdog=False
    )
    AGENT.update(client=server.client(), runtime=runtime)
    script_runs(server, 5)
    baseline = backend.open()
    client = Client()

    with runtime:
        responses = [client.get("/ask/") for _ in range(5)]
        after = backend.settle(baseline + len(backend.tracker.threads(backend.alias)))

    assert [r.status_code for r in responses] == [200] * 5
    workers = backend.tracker.threads(backend.alias)
    assert 1 <= len(workers) <= WORKERS
    assert after == baseline + len(workers)
    assert backend.tracker.open(backend.alias) == len(workers)


def test_hung_tool_connection_closed_when_it_returns_c10(
    backend: Backend, tracker: Tracker
) -> None:
    """A timed-out tool holds its connection until it returns, then closes it."""
    entered, release = threading.Event(), threading.Event()

    @agentsync.tool(timeout=0.3)
    def hang() -> str:
        """Query, then wait until the test lets go."""
        with connections[backend.alias].cursor() as cursor:
            cursor.execute(backend.sql, backend.params)
        entered.set()
        release.wait(10)
        return "late"

    baseline = backend.open()

    with agentsync.Runtime(tools=[hang], hooks=[DjangoDB()], watchdog=False) as runtime:
        outcome = runtime.call("hang")
        held = backend.settle(baseline + 1)
        release.set()
        [thread] = tracker.threads(backend.alias)
        thread.join(5)
        after = backend.settle(baseline)

    assert entered.is_set()
    assert outcome.error_kind == "timeout"
    assert held == baseline + 1
    assert not thread.is_alive()
    assert after == baseline
    assert tracker.open(backend.alias) == 0


def test_connection_closed_when_tool_raises_c10(
    backend: Backend, tracker: Tracker
) -> None:
    """A tool that fails after querying still has its connection closed."""

    @agentsync.tool(timeout=5)
    def broken() -> str:
        """Query, then fail."""
        with connections[backend.alias].cursor() as cursor:
            cursor.execute(backend.sql, backend.params)
        raise ValueError("no answer")

    baseline = backend.open()

    with agentsync.Runtime(
        tools=[broken], hooks=[DjangoDB()], watchdog=False
    ) as runtime:
        outcome = runtime.call("broken")
        after = backend.settle(baseline)

    assert outcome.error_kind == "exception"
    assert "no answer" in outcome.message
    assert len(tracker.threads(backend.alias)) == 1
    assert after == baseline
    assert tracker.open(backend.alias) == 0


def test_obsolete_connection_closed_before_call_c10(tracker: Tracker) -> None:
    """A thread's connection past its age is closed before the call starts."""
    seen: list[bool] = []
    ctx = agentsync.ToolContext(call_id="c10", tool="count_notes")

    def worker() -> None:
        conn = connections["default"]
        conn.ensure_connection()
        conn.close_at = time.monotonic() - 1
        with DjangoDB().wrap(None, ctx):
            seen.append(conn.connection is None)
            conn.ensure_connection()
        seen.append(conn.connection is None)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)

    assert seen == [True, True]
    assert tracker.open("default") == 0


def test_missing_django_names_the_extra_c10() -> None:
    """Importing the integration without Django says what to install."""
    code = (
        "import sys; sys.modules['django'] = None; import agentsync.integrations.django"
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
    assert "pip install 'agentsync[django]'" in done.stderr
