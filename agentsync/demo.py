"""The demo behind ``agentsync demo``: real tools, one of which hangs.

The demo builds a small shop in a temporary folder (a SQLite database of a
few hundred orders and a returns-policy file) and starts a legacy "inventory
service" on loopback that accepts connections and never answers. An agent
then answers a question about the shop with three tools. The inventory call
hangs in a blocking socket read, turns into a timeout after its limit, and
the run still ends with an answer.

With ``ANTHROPIC_API_KEY`` set, Claude drives the tools; without it, a
scripted model served by :class:`~agentsync.testing.FakeMessagesServer`
does, so the demo runs on a machine with no key and no network.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .agent import DEFAULT_MODEL, RunResult, run_agent
from .tools import Tool, tool

__all__ = ["PROMPT", "build_shop", "make_tools", "run_demo"]

PROMPT = (
    "How many orders does the shop have and what is the revenue? Who are the "
    "top three customers by spend? What does the returns policy say about "
    "refunds? Is SKU-42 in stock?"
)

_POLICY = """# Returns policy

Items may be returned within 30 days of delivery for a full refund.
Refunds go back to the original payment method within 5 business days.
Opened software and gift cards cannot be refunded.
"""

_FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Tony"]
_LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Thompson",
    "Allen",
]


def build_shop(folder: Path, *, orders: int = 300, seed: int = 7) -> Path:
    """Create ``shop.db`` (customers and orders) and ``policy.md`` in ``folder``."""
    rng = random.Random(seed)
    db = folder / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL "
            "REFERENCES customers(id), sku TEXT NOT NULL, amount REAL NOT NULL, "
            "placed_on TEXT NOT NULL)"
        )
        names = [f"{first} {last}" for first in _FIRST_NAMES for last in _LAST_NAMES][
            :40
        ]
        conn.executemany(
            "INSERT INTO customers (name) VALUES (?)", [(n,) for n in names]
        )
        conn.executemany(
            "INSERT INTO orders (customer_id, sku, amount, placed_on) VALUES (?, ?, ?, ?)",
            [
                (
                    rng.randint(1, len(names)),
                    f"SKU-{rng.randint(1, 60)}",
                    round(rng.uniform(5, 400), 2),
                    f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
                )
                for _ in range(orders)
            ],
        )
    (folder / "policy.md").write_text(_POLICY, encoding="utf-8")
    return db


class _SilentService:
    """A loopback TCP service that accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.5)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.port = self._sock.getsockname()[1]
        threading.Thread(
            target=self._accept, name="demo-inventory", daemon=True
        ).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def make_tools(
    folder: Path, inventory_port: int, *, inventory_timeout: float = 1.5
) -> list[Tool]:
    """The demo's three tools, bound to a shop folder and the inventory port."""
    db_uri = f"file:{folder / 'shop.db'}?mode=ro"

    @tool(timeout=5)
    def query_db(sql: str) -> list[dict[str, Any]]:
        """Run a read-only SQL query on the shop's SQLite database.

        Tables: customers(id, name) and orders(id, customer_id, sku, amount,
        placed_on). At most 50 rows come back.

        Args:
            sql: one SELECT statement.
        """
        with sqlite3.connect(db_uri, uri=True, timeout=2) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(sql).fetchmany(50)
        return [dict(r) for r in rows]

    @tool(timeout=2)
    def read_file(path: str) -> str:
        """Read a text file from the shop's folder.

        Args:
            path: a file name inside the shop folder, such as policy.md.
        """
        target = (folder / path).resolve()
        if folder.resolve() not in target.parents:
            from .errors import ToolError

            raise ToolError(f"{path!r} is outside the shop folder")
        return target.read_text(encoding="utf-8")

    @tool(timeout=inventory_timeout)
    def check_inventory(sku: str) -> str:
        """Ask the legacy inventory service how many units of a SKU are in stock.

        Args:
            sku: the stock-keeping unit, such as SKU-42.
        """
        # The legacy service accepts the connection and never answers: this
        # read blocks in C, with no timeout, as such clients often do.
        conn = socket.create_connection(("127.0.0.1", inventory_port))
        conn.sendall(f"STOCK {sku}\n".encode())
        return conn.recv(1024).decode()

    return [query_db, read_file, check_inventory]


def _scripted_model(server: Any) -> None:
    """Script the fake model: call all tools at once, then answer from their results."""
    server.add_reply(
        [
            {
                "type": "text",
                "text": "I'll query the database, read the policy and ask the inventory service.",
            },
            {
                "type": "tool_use",
                "name": "query_db",
                "input": {
                    "sql": "SELECT COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue FROM orders"
                },
            },
            {
                "type": "tool_use",
                "name": "query_db",
                "input": {
                    "sql": "SELECT c.name, ROUND(SUM(o.amount), 2) AS spent FROM orders o "
                    "JOIN customers c ON c.id = o.customer_id GROUP BY c.id "
                    "ORDER BY spent DESC LIMIT 3"
                },
            },
            {"type": "tool_use", "name": "read_file", "input": {"path": "policy.md"}},
            {"type": "tool_use", "name": "check_inventory", "input": {"sku": "SKU-42"}},
        ],
        usage={"input_tokens": 412, "output_tokens": 160},
    )

    def answer(request: Any) -> Any:
        from .testing import Reply

        results = request.tool_results
        if len(results) != 4:
            return Reply(f"I expected four tool results and got {len(results)}.")
        totals, top, policy, stock = (r.get("content") for r in results)
        totals = json.loads(totals)[0]
        top = ", ".join(
            f"{row['name']} (${row['spent']:,.2f})" for row in json.loads(top)
        )
        refund = next(
            (line for line in str(policy).splitlines() if "full refund" in line),
            "unknown",
        )
        stock_line = (
            "The inventory service did not answer in time, so SKU-42's stock is unknown."
            if results[3].get("is_error")
            else f"Inventory says: {stock}"
        )
        text = (
            f"The shop has {totals['orders']} orders worth ${totals['revenue']:,.2f}. "
            f"Top customers: {top}. Returns: {refund} {stock_line}"
        )
        return Reply(text, usage={"input_tokens": 980, "output_tokens": 95})

    server.add_handler(answer)


def run_demo(
    *, model: str | None = None, out: IO[str] | None = None, use_api: bool | None = None
) -> RunResult:
    """Run the demo end to end and print what happened; return the run's result."""
    import sys

    out = out or sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    if use_api is None:
        use_api = bool(os.environ.get("ANTHROPIC_API_KEY"))

    with tempfile.TemporaryDirectory(prefix="agentsync-demo-") as tmp:
        folder = Path(tmp)
        build_shop(folder)
        service = _SilentService()
        tools = make_tools(folder, service.port)
        say(
            f"shop: {folder / 'shop.db'} (40 customers, 300 orders), {folder / 'policy.md'}"
        )
        say(
            f"model: {'Claude (' + (model or DEFAULT_MODEL) + ')' if use_api else 'scripted (no ANTHROPIC_API_KEY: FakeMessagesServer on loopback)'}"
        )
        say(f"prompt: {PROMPT}\n")

        # The SDK takes seconds to import; do it before the clock starts.
        import anthropic  # noqa: F401

        started = time.monotonic()
        try:
            if use_api:
                result = run_agent(
                    PROMPT,
                    tools=tools,
                    model=model or DEFAULT_MODEL,
                    deadline=120,
                    max_turns=10,
                )
            else:
                from .testing import FakeMessagesServer

                with FakeMessagesServer() as server:
                    _scripted_model(server)
                    result = run_agent(
                        PROMPT,
                        tools=tools,
                        client=server.client(),
                        deadline=30,
                        max_turns=5,
                    )
        finally:
            service.close()
        _print_run(result, say)
        say(
            f"\nthe run ended in {time.monotonic() - started:.2f} s; "
            "the hung inventory thread was abandoned and does not keep the process alive"
        )
        return result


def _print_run(result: RunResult, say: Callable[[str], None]) -> None:
    by_id = {c.id: c for c in result.tool_calls}
    turn = 0
    for message in result.messages[1:]:
        content = message["content"]
        if message["role"] == "assistant":
            turn += 1
            say(f"turn {turn}: the model replied")
            for block in content:
                if block.get("type") == "text" and block.get("text"):
                    say(f"  says: {block['text']}")
                elif block.get("type") == "tool_use":
                    say(f"  calls {block['name']}({json.dumps(block['input'])[:90]})")
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            call = by_id.get(block["tool_use_id"])
            if call is None:
                continue
            text = " ".join(str(block.get("content")).split())
            say(
                f"  -> {call.name}: {call.status} in {call.duration * 1000:.0f} ms: "
                f"{text[:100]}{'...' if len(text) > 100 else ''}"
            )
    say(
        f"\nanswer ({result.stop_reason}, {result.turns} turns, "
        f"{result.usage.input_tokens} in / {result.usage.output_tokens} out tokens):"
    )
    say(f"  {result.text}")
