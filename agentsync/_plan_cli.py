"""``agentsync plan check`` and ``agentsync plan run``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import PlanError
from .plans import Plan
from .tools import Tool
from .tools import tool as make_tool

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``plan`` command and its ``check`` and ``run`` subcommands."""
    plan = subparsers.add_parser("plan", help="check or run a plan of tool calls")
    sub = plan.add_subparsers(dest="plan_command", required=True)

    check = sub.add_parser("check", help="validate a plan file against tools")
    _common(check)
    check.set_defaults(func=_cmd_check)

    run = sub.add_parser("run", help="run a plan file and print its report")
    _common(run)
    run.add_argument("--deadline", type=float, help="seconds for the whole plan")
    run.add_argument("--max-parallel", type=int, help="the most steps at once")
    run.add_argument(
        "--fail-fast", action="store_true", help="stop at the first failure"
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-v", "--verbose", action="store_true", help="print debug logs")
    run.set_defaults(func=_cmd_run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="a JSON plan file")
    parser.add_argument(
        "--tools", action="append", default=[], metavar="MODULE:ATTR", required=True
    )
    parser.add_argument("--max-steps", type=int, help="refuse plans with more steps")
    parser.add_argument("--max-depth", type=int, help="refuse plans with more stages")


def _load(args: argparse.Namespace) -> tuple[list[Tool], Plan | None]:
    from .cli import load_tools

    tools = [t if isinstance(t, Tool) else make_tool(t) for t in load_tools(args.tools)]
    try:
        plan = Plan.load(
            args.plan, tools, max_steps=args.max_steps, max_depth=args.max_depth
        )
    except PlanError as exc:
        print(f"{args.plan}: {exc}")
        return tools, None
    return tools, plan


def _cmd_check(args: argparse.Namespace) -> int:
    _, plan = _load(args)
    if plan is None:
        return 1
    print(f"{args.plan}: plan is valid: {len(plan)} steps in {len(plan.stages)} stages")
    for number, stage in enumerate(plan.stages, 1):
        print(f"  stage {number}: {', '.join(stage)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .logs import configure_logging
    from .runtime import Runtime
    from .scheduler import run_plan

    configure_logging("debug" if args.verbose else "warning")
    tools, plan = _load(args)
    if plan is None:
        return 1
    workers = args.max_parallel or 8
    with Runtime(tools, max_workers=max(1, workers)) as runtime:
        try:
            report = run_plan(
                runtime,
                plan,
                deadline=args.deadline,
                max_parallel=args.max_parallel,
                fail_fast=args.fail_fast,
            )
        except ValueError as exc:
            print(f"agentsync: {exc}", file=sys.stderr)
            return 2
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2, default=str)
        print()
    else:
        print(report.summary())
    return 0 if report.ok else 1
