"""Plans: steps of tool calls with dependencies, validated before anything runs.

A plan is a list of steps; each names a tool, an input, and the steps it
depends on. An input may use another step's output anywhere in its tree with
``{"$ref": "step"}`` or ``{"$ref": "step.field.0.name"}``; a reference implies
a dependency. :func:`validate_plan` reports every problem of a plan at once,
so that a model can fix them all in one turn; :func:`agentsync.run_plan`
runs a valid one, each step as soon as its dependencies succeed.

Plans load from plain data::

    {"steps": [
        {"id": "user", "tool": "get_user", "input": {"user_id": "u1"}},
        {"id": "city", "tool": "weather",
         "input": {"city": {"$ref": "user.address.city"}}},
    ]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._plan_tool import plan_tool
from .errors import PlanError
from .tools import Tool
from .tools import tool as make_tool

if TYPE_CHECKING:
    import argparse

__all__ = [
    "Plan",
    "Step",
    "add_plan_commands",
    "plan_tool",
    "validate_plan",
]


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call of a plan.

    Attributes:
        id: the step's name, unique in its plan; it may not contain ``.``,
            which separates the segments of a ``$ref``.
        tool: the name of the tool to call.
        input: the tool's input; ``{"$ref": ...}`` objects anywhere in it
            are replaced by earlier steps' outputs when the step starts.
        depends_on: ids of steps that must succeed before this one starts.
            In a validated :class:`Plan` it also lists the steps ``input``
            refers to.
    """

    id: str
    tool: str
    input: Mapping[str, Any] = field(hash=False)
    depends_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A list is the natural spelling in Python and JSON; a string is a
        # mistake that validation reports, so it is left as it is.
        if isinstance(self.depends_on, list):
            object.__setattr__(self, "depends_on", tuple(self.depends_on))

    def to_dict(self) -> dict[str, Any]:
        """The step as plain data, as :meth:`Plan.from_dict` reads it."""
        data: dict[str, Any] = {"id": self.id, "tool": self.tool, "input": self.input}
        if self.depends_on:
            data["depends_on"] = list(self.depends_on)
        return data


class Plan:
    """A validated plan: its steps, an order to run them, its stages.

    Build one with :func:`validate_plan`, :meth:`from_dict`, :meth:`from_json`
    or :meth:`load`; ``Plan(steps, tools)`` is the same as
    ``validate_plan(steps, tools)``. A plan cannot be changed once made.

    Limit: step inputs are not deep-copied or frozen; changing one after
    validation bypasses the checks it passed.

    Attributes:
        steps: the steps in the order given, ``depends_on`` completed with
            the steps their ``$ref``s name.
        order: step ids in a topological order: each after its dependencies.
        stages: step ids grouped by depth: a stage's steps depend only on
            steps of earlier stages, and each on at least one of the stage
            just before.
    """

    __slots__ = (
        "_dependents",
        "_dependents_map",
        "_deps",
        "_has_refs",
        "_index",
        "order",
        "stages",
        "steps",
    )

    steps: tuple[Step, ...]
    order: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    _index: dict[str, int]
    _deps: list[tuple[int, ...]]
    _dependents: list[list[int]]
    _has_refs: list[bool]
    _dependents_map: Mapping[str, tuple[str, ...]] | None

    def __init__(
        self,
        steps: Iterable[Step | Mapping[str, Any]] | Mapping[str, Any],
        tools: _ToolsArg = None,
        *,
        max_steps: int | None = None,
        max_depth: int | None = None,
    ) -> None:
        plan = validate_plan(steps, tools, max_steps=max_steps, max_depth=max_depth)
        for name in Plan.__slots__:
            object.__setattr__(self, name, getattr(plan, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Plan cannot be changed (tried to set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Plan cannot be changed (tried to delete {name!r})")

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any] | Sequence[Any],
        tools: _ToolsArg = None,
        *,
        max_steps: int | None = None,
        max_depth: int | None = None,
    ) -> Plan:
        """Validate a plan given as ``{"steps": [...]}`` or a bare list of steps.

        Raises:
            PlanError: every problem found.
        """
        return validate_plan(data, tools, max_steps=max_steps, max_depth=max_depth)

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        tools: _ToolsArg = None,
        *,
        max_steps: int | None = None,
        max_depth: int | None = None,
    ) -> Plan:
        """Parse and validate a plan written in JSON.

        Raises:
            PlanError: the text is not JSON, or every problem of the plan.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError([f"the plan is not valid JSON: {exc}"]) from None
        except RecursionError:
            raise PlanError(["the plan's JSON is nested too deeply to parse"]) from None
        except (TypeError, UnicodeDecodeError) as exc:
            raise PlanError([f"the plan is not JSON text: {exc}"]) from None
        return validate_plan(data, tools, max_steps=max_steps, max_depth=max_depth)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        tools: _ToolsArg = None,
        *,
        max_steps: int | None = None,
        max_depth: int | None = None,
    ) -> Plan:
        """Read, parse and validate a JSON plan file.

        Raises:
            PlanError: the file cannot be read, or is not a valid plan.
        """
        try:
            with open(path, "rb") as file:
                text = file.read()
        except OSError as exc:
            raise PlanError(
                [f"cannot read plan file {str(path)!r}: {exc.strerror}"]
            ) from None
        return cls.from_json(text, tools, max_steps=max_steps, max_depth=max_depth)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data, as :meth:`from_dict` reads it."""
        return {"steps": [s.to_dict() for s in self.steps]}

    @property
    def dependents(self) -> Mapping[str, tuple[str, ...]]:
        """For each step id, the ids of the steps that depend on it directly."""
        if self._dependents_map is None:
            ids = [s.id for s in self.steps]
            table = {
                ids[i]: tuple(ids[j] for j in out)
                for i, out in enumerate(self._dependents)
            }
            object.__setattr__(self, "_dependents_map", MappingProxyType(table))
        assert self._dependents_map is not None
        return self._dependents_map

    def __getitem__(self, step_id: str) -> Step:
        return self.steps[self._index[step_id]]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._index

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"<Plan {len(self.steps)} steps in {len(self.stages)} stages>"


_ToolsArg = Mapping[str, Tool] | Iterable[Tool | Callable[..., Any]] | None


def validate_plan(
    steps: Iterable[Step | Mapping[str, Any]] | Mapping[str, Any] | Plan,
    tools: _ToolsArg = None,
    *,
    max_steps: int | None = None,
    max_depth: int | None = None,
) -> Plan:
    """Check a plan and return it as a :class:`Plan`, or report every problem.

    The checks: each step's shape (a string ``id`` without ``.``, a ``tool``,
    an ``input`` object of JSON values, ``depends_on`` a list of ids); unique
    ids; dependencies and ``$ref``s that name existing steps other than the
    step itself; no dependency cycles (each reported once, with its path).
    With ``tools``: each step's tool exists, its input fits the tool's schema
    as far as can be known before running (unknown fields, missing fields
    that no ``$ref`` fills, the types of literal values), and each ``$ref``
    path can exist in the output the producing tool's return type describes.

    Validation takes time linear in the size of the plan, without recursion,
    so plans of any length and inputs of any depth are fine.

    Args:
        steps: ``{"steps": [...]}``, a list of step objects or :class:`Step`
            values, or a :class:`Plan` to check again.
        tools: the tools the plan may use, by name or as a list.
        max_steps: the most steps allowed; a longer plan is refused at once
            with that one problem. No limit by default.
        max_depth: the most stages allowed (the longest chain of steps).

    Returns:
        The validated :class:`Plan`.

    Raises:
        PlanError: the plan is invalid; ``err.problems`` lists every problem.
    """
    entries = _entries(steps)
    if max_steps is not None and len(entries) > max_steps:
        raise PlanError(
            [f"the plan has {len(entries)} steps; at most {max_steps} are allowed"]
        )
    if not entries:
        raise PlanError(["the plan has no steps"])
    from ._plancheck import Validator

    return Validator(entries, _tool_table(tools), max_depth).run()


def _entries(steps: Any) -> list[Any]:
    if isinstance(steps, Plan):
        return list(steps.steps)
    if isinstance(steps, Mapping):
        extra = sorted(str(k) for k in steps if k != "steps")
        problems = [f"unknown key {k!r} at the top of the plan" for k in extra]
        if "steps" not in steps:
            problems.append("the plan has no 'steps' list")
        elif not isinstance(steps["steps"], (list, tuple)):
            problems.append(
                f"the plan's 'steps' must be a list, got {type(steps['steps']).__name__}"
            )
        if problems:
            raise PlanError(problems)
        return list(steps["steps"])
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise PlanError(
            [
                (
                    "a plan must be {'steps': [...]} or a list of steps, got "
                    f"{type(steps).__name__} (use Plan.from_json for JSON text)"
                )
            ]
        )
    return list(steps)


def _tool_table(tools: _ToolsArg) -> dict[str, Tool] | None:
    if tools is None:
        return None
    if isinstance(tools, Mapping):
        return dict(tools)
    table: dict[str, Tool] = {}
    for t in tools:
        t = t if isinstance(t, Tool) else make_tool(t)
        table[t.name] = t
    return table


def add_plan_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``plan check`` and ``plan run`` to the ``agentsync`` command."""
    from ._plan_cli import add_commands

    add_commands(subparsers)
