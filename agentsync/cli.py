"""The ``agentsync`` command: ``demo``, ``run``, ``batch`` and ``plan``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import AgentRunError, AgentSyncError
from .plans import add_plan_commands

__all__ = ["main", "load_tools"]


def load_tools(specs: Sequence[str]) -> list[Any]:
    """Import tools named ``module:attr``; an attr may be a tool or a list of them.

    Raises:
        SystemExit: a spec cannot be imported, with a message saying why.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: list[Any] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise SystemExit(f"agentsync: --tools takes module:attr, got {spec!r}")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SystemExit(
                f"agentsync: cannot import {module_name!r}: {exc}"
            ) from exc
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise SystemExit(
                f"agentsync: module {module_name!r} has no {attr!r}"
            ) from None
        if isinstance(value, (list, tuple)):
            found.extend(value)
        elif callable(value):
            found.append(value)
        else:
            raise SystemExit(f"agentsync: {spec} is neither a tool nor a list of tools")
    return found


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .logs import configure_logging

    configure_logging("debug" if args.verbose else "warning")
    run_demo(model=args.model, use_api=False if args.offline else None)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import anthropic

    from .agent import DEFAULT_MODEL, run_agent
    from .logs import configure_logging

    configure_logging("debug" if args.verbose else "warning", json=args.json_logs)
    tools = load_tools(args.tools)
    if not os.environ.get("ANTHROPIC_API_KEY") and not args.base_url:
        print(
            "agentsync: set ANTHROPIC_API_KEY to talk to Claude (or --base-url for a "
            "compatible server); 'agentsync demo' runs without a key",
            file=sys.stderr,
        )
        return 2
    client = anthropic.Anthropic(
        base_url=args.base_url, api_key=os.environ.get("ANTHROPIC_API_KEY") or "none"
    )
    try:
        result = run_agent(
            args.prompt,
            tools=tools,
            client=client,
            model=args.model or DEFAULT_MODEL,
            system=args.system,
            max_turns=args.max_turns,
            deadline=args.deadline,
        )
    except AgentRunError as exc:
        print(f"agentsync: the run failed: {exc}", file=sys.stderr)
        return 1
    for call in result.tool_calls:
        print(
            f"  {call.name}: {call.status} in {call.duration * 1000:.0f} ms",
            file=sys.stderr,
        )
    print(result.text)
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    import json

    from .batch import agent_worker, run_batch
    from .logs import configure_logging

    configure_logging("debug" if args.verbose else "warning", json=args.json_logs)
    if bool(args.worker) == bool(args.tools):
        print("agentsync: batch takes one of --worker or --tools", file=sys.stderr)
        return 2
    items = []
    try:
        with open(args.items, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except ValueError as exc:
                        print(
                            f"agentsync: line {number} of {args.items} is not JSON: "
                            f"{exc}",
                            file=sys.stderr,
                        )
                        return 2
    except OSError as exc:
        print(f"agentsync: cannot read items from {args.items}: {exc}", file=sys.stderr)
        return 2

    if args.worker:
        found = load_tools([args.worker])
        if len(found) != 1:
            print(f"agentsync: {args.worker} is not one function", file=sys.stderr)
            return 2
        worker = found[0]
    else:
        import anthropic

        from .agent import DEFAULT_MODEL

        if not os.environ.get("ANTHROPIC_API_KEY") and not args.base_url:
            print(
                "agentsync: set ANTHROPIC_API_KEY (or --base-url) for --tools",
                file=sys.stderr,
            )
            return 2
        client = anthropic.Anthropic(
            base_url=args.base_url,
            api_key=os.environ.get("ANTHROPIC_API_KEY") or "none",
        )
        worker = agent_worker(
            tools=load_tools(args.tools),
            client=client,
            model=args.model or DEFAULT_MODEL,
            system=args.system,
            max_turns=args.max_turns,
            deadline=args.deadline,
        )

    try:
        report = run_batch(
            items,
            worker,
            output=args.output,
            max_workers=args.workers,
            grace=args.grace,
            retry_failed=not args.no_retry_failed,
            item_timeout=args.item_timeout,
        )
    except (TypeError, ValueError) as exc:  # bad items or options; nothing ran
        print(f"agentsync: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output cannot be written: a folder, no access
        print(f"agentsync: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    print(f"agentsync: {report.summary()}", file=sys.stderr)
    return report.exit_code


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentsync", description="Run LLM agents whose runs always end."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo agent (no API key needed)")
    demo.add_argument("--model", help="model name when ANTHROPIC_API_KEY is set")
    demo.add_argument(
        "--offline", action="store_true", help="use the scripted model even with a key"
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="print debug logs")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run a prompt with your own tools")
    run.add_argument("prompt")
    run.add_argument("--tools", action="append", default=[], metavar="MODULE:ATTR")
    run.add_argument("--model")
    run.add_argument("--system")
    run.add_argument("--max-turns", type=int, default=20)
    run.add_argument(
        "--deadline", type=float, default=300.0, help="seconds for the whole run"
    )
    run.add_argument("--base-url", help="a Messages API base URL")
    run.add_argument("--json-logs", action="store_true")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_cmd_run)

    batch = sub.add_parser(
        "batch", help="run a worker or an agent over a JSONL file, resumably"
    )
    batch.add_argument("items", help="a JSONL file, one item per line")
    batch.add_argument("--output", required=True, help="the JSONL file of results")
    batch.add_argument("--worker", metavar="MODULE:ATTR", help="worker(item) -> JSON")
    batch.add_argument("--tools", action="append", default=[], metavar="MODULE:ATTR")
    batch.add_argument("--workers", type=int, default=4)
    batch.add_argument("--grace", type=float, default=10.0, help="seconds, on a stop")
    batch.add_argument("--item-timeout", type=float, help="seconds per item")
    batch.add_argument("--no-retry-failed", action="store_true")
    batch.add_argument("--model")
    batch.add_argument("--system")
    batch.add_argument("--max-turns", type=int, default=20)
    batch.add_argument("--deadline", type=float, default=300.0)
    batch.add_argument("--base-url", help="a Messages API base URL")
    batch.add_argument("--json-logs", action="store_true")
    batch.add_argument("-v", "--verbose", action="store_true")
    batch.set_defaults(func=_cmd_batch)

    add_plan_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AgentSyncError as exc:
        print(f"agentsync: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
