"""A cron-style batch: an agent answers one support ticket per item, resumably.

    python examples/batch_job.py                      # 40 demo tickets
    python examples/batch_job.py tickets.jsonl results.jsonl

Each line of ``tickets.jsonl`` is ``{"id": "...", "prompt": "..."}``. Every
answered ticket is one line of ``results.jsonl``, on disk before the next is
written. Press Ctrl-C (or send SIGTERM) halfway: no new ticket starts, the
running ones finish within the grace period, and the script exits 130 (143)
saying how many remain. Run the same command again and it answers only those.

With ``ANTHROPIC_API_KEY`` set, Claude answers; without it, a scripted model
on loopback (:class:`agentsync.testing.FakeMessagesServer`) does, so the
example runs with no key and no network. The same batch from the shell::

    agentsync batch tickets.jsonl --tools examples.batch_job:TOOLS \\
        --output results.jsonl --workers 4 --grace 10
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agentsync
from agentsync.batch import agent_worker, run_batch

_ORDERS = {f"A-{n}": ("shipped" if n % 3 else "delayed") for n in range(100, 140)}


@agentsync.tool(timeout=5)
def order_status(order_id: str) -> str:
    """Return the shipping status of an order."""
    threading.Event().wait(0.2)  # a slow legacy service
    return _ORDERS.get(order_id, "unknown order")


TOOLS = [order_status]


def demo_tickets(folder: Path) -> Path:
    """Write 40 demo tickets to ``folder/tickets.jsonl`` and return its path."""
    path = folder / "tickets.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for n, order_id in enumerate(_ORDERS):
            prompt = f"Ticket {n}: where is my order {order_id}?"
            out.write(json.dumps({"id": f"T-{n}", "prompt": prompt}) + "\n")
    return path


@contextlib.contextmanager
def anthropic_client() -> Iterator[Any]:
    """Yield a real client with a key, else one bound to a scripted fake model."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        import anthropic

        yield anthropic.Anthropic()
        return

    from agentsync.testing import FakeMessagesServer, Reply, tool_use_block

    def scripted(request: Any) -> Any:
        # Turn one asks for the order's status; turn two answers from it.
        if request.tool_results:
            status = request.tool_results[0].get("content")
            return Reply(f"Your order is {status}. Sorry for the wait!")
        prompt = str(request.messages[0]["content"])
        order_id = prompt.rsplit(" ", 1)[-1].rstrip("?")
        return Reply([tool_use_block("order_status", {"order_id": order_id})])

    with FakeMessagesServer() as server, server.client() as client:
        server.set_default(scripted)
        yield client


def main(argv: list[str]) -> int:
    """Run the batch; return its exit code."""
    agentsync.configure_logging("info")
    # Outside the project, so that trying the example leaves no files in it.
    folder = Path(tempfile.gettempdir()) / "agentsync-batch-demo"
    folder.mkdir(exist_ok=True)
    tickets = Path(argv[0]) if argv else demo_tickets(folder)
    output = Path(argv[1]) if len(argv) > 1 else folder / "results.jsonl"
    items = [
        json.loads(line) for line in tickets.read_text().splitlines() if line.strip()
    ]

    with anthropic_client() as client:
        worker = agent_worker(tools=TOOLS, client=client, max_turns=4, deadline=60)
        report = run_batch(items, worker, output=output, max_workers=4, grace=10)

    print(report.summary(), file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
