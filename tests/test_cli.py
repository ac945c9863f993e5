"""The command line: the demo end to end in a real process, and `run`'s errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentsync import cli


def _env_without_key() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


@pytest.mark.timeout(120)
def test_demo_ends_with_an_answer_although_a_tool_hangs() -> None:
    """`agentsync demo` exits 0 with the answer, the hung tool a timeout."""
    command = [sys.executable, "-m", "agentsync.cli", "demo", "--offline"]

    done = subprocess.run(
        command, capture_output=True, text=True, timeout=90, env=_env_without_key()
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "-> check_inventory: timeout in" in out
    assert "-> query_db: ok" in out and "-> read_file: ok" in out
    assert "The shop has 300 orders" in out
    assert "SKU-42's stock is unknown" in out
    assert "answer (end_turn, 2 turns" in out


def test_run_without_a_key_says_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentsync run` with no key and no base URL exits 2 naming the variable."""
    # The command configures logging for the process; keep the suite's.
    monkeypatch.setattr("agentsync.logs.configure_logging", lambda *a, **k: None)
    saved = os.environ.pop("ANTHROPIC_API_KEY", None)
    try:
        code = cli.main(["run", "hello", "--tools", "json:dumps"])
    finally:
        if saved is not None:
            os.environ["ANTHROPIC_API_KEY"] = saved

    assert code == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nomodule_xyz:tools", "cannot import"),
        ("json:nothing_here", "has no"),
        ("json", "module:attr"),
    ],
)
def test_bad_tool_specs_name_the_problem(spec: str, message: str) -> None:
    """A --tools spec that cannot be loaded stops with a message naming it."""
    with pytest.raises(SystemExit, match=message):
        cli.load_tools([spec])
