"""The plan tool: a model submits a whole plan of tool calls as one call."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic_core import core_schema

from .context import ToolContext
from .errors import PlanError, ToolError
from .tools import Tool

__all__ = ["plan_tool"]


_STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "a unique name for the step, no '.'"},
        "tool": {"type": "string", "description": "the tool to call"},
        "input": {
            "type": "object",
            "description": 'the tool\'s input; {"$ref": "step"} or '
            '{"$ref": "step.field.0.name"} anywhere in it is replaced by '
            "that step's output (or a part of it), and makes this step wait "
            "for that one",
        },
        "depends_on": {
            "type": "array",
            "items": {"type": "string"},
            "description": "ids of steps that must succeed first",
        },
    },
    "required": ["id", "tool", "input"],
}


class _PlanSteps:
    """The ``steps`` parameter of the plan tool: any value passes the schema
    check, so that :func:`validate_plan` reports every problem its own way."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.any_schema()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "array", "items": _STEP_SCHEMA, "minItems": 1}


_PLAN_DESCRIPTION = (
    "Run several tool calls as one plan. Steps run in parallel, each as soon "
    "as the steps it depends on have succeeded; a step whose dependency failed "
    'is skipped. Use {"$ref": "step_id"} or {"$ref": "step_id.field"} '
    "inside a step's input to pass an earlier step's output. The plan is "
    "checked before anything runs: if it is invalid, the answer lists every "
    "problem; fix them and submit again. The answer gives each step's status "
    "and value or error."
)


def plan_tool(
    *,
    name: str = "submit_plan",
    max_steps: int = 50,
    max_depth: int | None = 20,
    timeout: float | None = 120.0,
    fail_fast: bool = False,
) -> Tool:
    """A tool through which a model submits a whole plan of tool calls.

    The tool validates the plan against the other tools of the runtime it runs
    on (it cannot call itself) and returns the problems as an error the model
    can fix, or runs it and returns each step's status and value or error as
    JSON. Since it runs inside a worker of the runtime, the steps run on a
    private pool (see :func:`agentsync.run_plan`), and the plan's deadline is
    the tool call's own, less a small margin so the report gets back in time.

    Args:
        name: the tool's name.
        max_steps: the most steps a plan may have.
        max_depth: the most stages a plan may have, or None.
        timeout: seconds the whole plan may take.
        fail_fast: start no new step once one step failed.

    Returns:
        The :class:`Tool`; register it on a runtime, or pass ``plans=True``
        to :func:`agentsync.run_agent`.
    """

    def submit_plan(ctx: ToolContext, steps: _PlanSteps) -> dict[str, Any]:
        from .plans import validate_plan
        from .scheduler import run_plan

        runtime = ctx.runtime
        if runtime is None:
            raise ToolError("the plan tool needs a runtime to run the plan on")
        tools = {n: t for n, t in runtime.tools.items() if n != name}
        try:
            plan = validate_plan(
                {"steps": steps}, tools, max_steps=max_steps, max_depth=max_depth
            )
        except PlanError as exc:
            raise ToolError(
                f"{exc}\nNothing was run. Fix the plan and submit it again."
            ) from None
        report = run_plan(runtime, plan, fail_fast=fail_fast)
        return report.to_dict()

    made = Tool(submit_plan, name=name, description=_PLAN_DESCRIPTION, timeout=timeout)
    made.is_plan_tool = True  # type: ignore[attr-defined]
    return made
