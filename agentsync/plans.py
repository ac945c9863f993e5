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

import pydantic
from pydantic_core import core_schema

from ._refs import Ref, output_schema, path_problem, scan_input
from .context import ToolContext
from .errors import PlanError, ToolError
from .tools import Tool, tool as make_tool

if TYPE_CHECKING:
    import argparse

__all__ = [
    "Plan",
    "Step",
    "add_plan_commands",
    "plan_tool",
    "validate_plan",
]

_STEP_KEYS = frozenset(("id", "tool", "input", "depends_on"))
_MISSING: Any = object()

# Problems that concern the whole plan sort after those of its steps.
_PLAN_WIDE = 1 << 62


@dataclass(frozen=True)
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
        "steps",
        "order",
        "stages",
        "_index",
        "_deps",
        "_dependents",
        "_has_refs",
        "_dependents_map",
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
            raise PlanError([f"cannot read plan file {str(path)!r}: {exc.strerror}"]) from None
        return cls.from_json(text, tools, max_steps=max_steps, max_depth=max_depth)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data, as :meth:`from_dict` reads it."""
        return {"steps": [s.to_dict() for s in self.steps]}

    @property
    def dependents(self) -> Mapping[str, tuple[str, ...]]:
        """For each step id, the ids of the steps that depend on it directly."""
        if self._dependents_map is None:
            ids = [s.id for s in self.steps]
            table = {ids[i]: tuple(ids[j] for j in out) for i, out in enumerate(self._dependents)}
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
        raise PlanError([f"the plan has {len(entries)} steps; at most {max_steps} are allowed"])
    if not entries:
        raise PlanError(["the plan has no steps"])
    return _Validator(entries, _tool_table(tools), max_depth).run()


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
                "a plan must be {'steps': [...]} or a list of steps, got "
                f"{type(steps).__name__} (use Plan.from_json for JSON text)"
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


class _Validator:
    """One validation: parallel lists indexed by step position."""

    def __init__(
        self, entries: list[Any], tools: dict[str, Tool] | None, max_depth: int | None
    ) -> None:
        self.entries = entries
        self.tools = tools
        self.max_depth = max_depth
        self.problems: list[tuple[int, str]] = []
        n = len(entries)
        self.ids: list[str | None] = [None] * n
        self.tool_names: list[str | None] = [None] * n
        self.inputs: list[Any] = [None] * n
        self.declared: list[tuple[str, ...]] = [()] * n
        self.refs: list[list[Ref]] = [[] for _ in range(n)]
        self.broken: dict[int, set[str | None]] = {}
        self.index_of: dict[str, int] = {}

    def problem(self, index: int, text: str) -> None:
        self.problems.append((index, text))

    def label(self, index: int) -> str:
        step_id = self.ids[index]
        if step_id is None:
            return f"step #{index}"
        if self.index_of.get(step_id, index) != index:
            return f"step {step_id!r} (#{index})"
        return f"step {step_id!r}"

    def run(self) -> Plan:
        for index, entry in enumerate(self.entries):
            self._read(index, entry)
        index_of = self.index_of
        deps = self._edges(index_of)
        if self.tools is not None:
            self._check_tools(index_of)
        layout = self._stages(deps)
        if self.problems:
            self.problems.sort(key=lambda p: p[0])
            raise PlanError([text for _, text in self.problems])
        assert layout is not None
        return self._plan(index_of, deps, *layout)

    # -- the shape of each step ---------------------------------------------

    def _read(self, index: int, entry: Any) -> None:
        is_map = type(entry) is dict or isinstance(entry, Mapping)
        if isinstance(entry, Step):
            step_id, tool_name = entry.id, entry.tool
            data, depends = entry.input, entry.depends_on
        elif is_map:
            step_id = entry.get("id", _MISSING)
            tool_name = entry.get("tool", _MISSING)
            data = entry.get("input", {})
            depends = entry.get("depends_on", ())
        else:
            self.problem(
                index,
                f"step #{index} must be an object with id, tool and input, got "
                f"{type(entry).__name__}",
            )
            return

        if step_id is _MISSING:
            self.problem(index, f"step #{index} has no 'id'")
        elif not isinstance(step_id, str) or not step_id:
            self.problem(
                index, f"step #{index}: 'id' must be a non-empty string, got {step_id!r}"
            )
        else:
            self.ids[index] = step_id
            first = self.index_of.setdefault(step_id, index)
            if first != index:
                self.problem(
                    index, f"duplicate step id {step_id!r} (steps #{first} and #{index})"
                )
            if "." in step_id:
                self.problem(
                    index,
                    f"step id {step_id!r} may not contain '.', which separates the "
                    "segments of a $ref",
                )
        if is_map and not entry.keys() <= _STEP_KEYS:
            for key in entry:
                if key not in _STEP_KEYS:
                    self.problem(
                        index,
                        f"{self.label(index)}: unknown key {key!r} (a step has id, "
                        "tool, input and depends_on)",
                    )
        if isinstance(tool_name, str) and tool_name:
            self.tool_names[index] = tool_name
        elif tool_name is _MISSING:
            self.problem(index, f"{self.label(index)} has no 'tool'")
        else:
            self.problem(
                index, f"{self.label(index)}: 'tool' must be a tool's name, got {tool_name!r}"
            )

        if type(depends) is tuple or type(depends) is list:
            if depends:
                self._read_depends(index, depends)
        elif isinstance(depends, str):
            self.problem(
                index,
                f"{self.label(index)}: depends_on must be a list of step ids, got the "
                f"string {depends!r}; write [{depends!r}]",
            )
        else:
            self.problem(
                index,
                f"{self.label(index)}: depends_on must be a list of step ids, got "
                f"{type(depends).__name__}",
            )

        if not isinstance(data, dict):
            self.problem(
                index,
                f"{self.label(index)}: 'input' must be an object, got "
                f"{type(data).__name__}",
            )
            return
        self.inputs[index] = data
        if data:
            found: list[str] = []
            broken: set[str | None] = set()
            scan_input(data, self.refs[index], found, broken)
            if broken:
                self.broken[index] = broken
            for text in found:
                self.problem(index, f"{self.label(index)} input {text}")

    def _read_depends(self, index: int, depends: Sequence[Any]) -> None:
        good = []
        for d in depends:
            if isinstance(d, str):
                good.append(d)
            else:
                self.problem(index, f"{self.label(index)}: depends_on holds {d!r}, not a step id")
        self.declared[index] = tuple(dict.fromkeys(good)) if len(good) > 1 else tuple(good)

    # -- the graph ------------------------------------------------------------

    def _edges(self, index_of: dict[str, int]) -> list[tuple[int, ...]]:
        deps: list[tuple[int, ...]] = []
        get = index_of.get
        for index, (step_id, declared, refs) in enumerate(
            zip(self.ids, self.declared, self.refs)
        ):
            if not declared and not refs:
                deps.append(())
                continue
            own: dict[int, None] = {}
            for name in declared:
                target = get(name)
                if target is not None and name != step_id:
                    own[target] = None
                else:
                    self._bad_dependency(index, name)
            for ref in refs:
                target = get(ref.step)
                if target is not None and ref.step != step_id:
                    own[target] = None
                else:
                    self._bad_ref(index, ref)
            # A duplicate's edges stay out of the graph: its id means the first.
            deps.append(tuple(own) if step_id is not None and get(step_id) == index else ())
        return deps

    def _bad_dependency(self, index: int, name: str) -> None:
        if name == self.ids[index]:
            self.problem(index, f"{self.label(index)} depends on itself")
        else:
            self.problem(
                index,
                f"{self.label(index)} depends on {name!r}, which is not a step of "
                "the plan",
            )

    def _bad_ref(self, index: int, ref: Ref) -> None:
        where = f"{self.label(index)} input at {ref.where}: $ref {ref.text!r}"
        if ref.step == self.ids[index]:
            self.problem(index, f"{where} refers to the step's own output")
        else:
            self.problem(
                index, f"{where} names {ref.step!r}, which is not a step of the plan"
            )

    def _stages(
        self, deps: list[tuple[int, ...]]
    ) -> tuple[list[list[int]], list[list[int]]] | None:
        """The steps by depth and each step's dependents; None after reporting
        every cycle.

        Kahn's algorithm, one stage at a time: a stage holds the steps whose
        last dependency is in the stage before. graphlib's batches would give
        the same stages, but its bookkeeping per node costs more than all of
        the rest of validation, and the dependents lists are needed anyway.
        """
        n = len(deps)
        dependents: list[list[int]] = [[] for _ in range(n)]
        waiting = [0] * n
        current = []
        for i, before in enumerate(deps):
            if before:
                waiting[i] = len(before)
                for j in before:
                    dependents[j].append(i)
            else:
                current.append(i)
        stages = []
        placed = 0
        while current:
            stages.append(current)
            placed += len(current)
            following = []
            for i in current:
                for j in dependents[i]:
                    waiting[j] -= 1
                    if not waiting[j]:
                        following.append(j)
            current = following
        if placed == n:
            return stages, dependents

        for cycle in _cycles(deps):
            first = min(range(len(cycle)), key=lambda k: cycle[k])
            cycle = cycle[first:] + cycle[:first]
            path = " -> ".join(repr(self.ids[i]) for i in (*cycle, cycle[0]))
            self.problem(_PLAN_WIDE, f"dependency cycle: {path} (each depends on the next)")
        return None

    # -- against the tools ----------------------------------------------------

    def _check_tools(self, index_of: dict[str, int]) -> None:
        tools = self.tools
        assert tools is not None
        known = ", ".join(sorted(tools)) or "none"
        for index, name in enumerate(self.tool_names):
            if name is None:
                continue
            label = self.label(index)
            t = tools.get(name)
            if t is None:
                self.problem(index, f"{label}: unknown tool {name!r}; the tools are: {known}")
                continue
            data = self.inputs[index]
            if data is not None:
                self._check_input(index, label, t, data)
            for ref in self.refs[index]:
                self._check_ref(index, label, ref, index_of)

    def _check_input(self, index: int, label: str, t: Tool, data: Mapping[str, Any]) -> None:
        filled = {ref.key for ref in self.refs[index]} | self.broken.get(index, set())
        if None in filled:
            return  # the whole input is another step's output: unknown until then
        literal = {k: v for k, v in data.items() if k not in filled} if filled else data
        try:
            t.input_model.model_validate(literal)
        except pydantic.ValidationError as exc:
            fields = ", ".join(t.input_model.model_fields) or "none"
            for err in exc.errors(include_url=False):
                loc = err.get("loc", ())
                if loc and loc[0] in filled:
                    continue
                where = ".".join(str(p) for p in loc)
                if err["type"] == "extra_forbidden":
                    text = f"unknown field {where!r} (the tool's fields: {fields})"
                elif err["type"] == "missing":
                    text = f"missing required field {where!r}"
                else:
                    text = f"field {where!r}: {err['msg']}"
                self.problem(index, f"{label} input for tool {t.name!r}: {text}")

    def _check_ref(self, index: int, label: str, ref: Ref, index_of: dict[str, int]) -> None:
        if not ref.path:
            return
        source = index_of.get(ref.step)
        name = self.tool_names[source] if source is not None else None
        producer = self.tools.get(name) if self.tools and name else None
        if producer is None:
            return
        schema, returns = output_schema(producer)
        if schema is None:
            return
        why = path_problem(schema, ref.path)
        if why is not None:
            self.problem(
                index,
                f"{label} input at {ref.where}: $ref {ref.text!r} cannot resolve: "
                f"tool {producer.name!r} returns {returns}, and {why}",
            )

    # -- the plan ---------------------------------------------------------------

    def _plan(
        self,
        index_of: dict[str, int],
        deps: list[tuple[int, ...]],
        stages: list[list[int]],
        dependents: list[list[int]],
    ) -> Plan:
        ids: list[str] = self.ids  # type: ignore[assignment]
        if self.max_depth is not None and len(stages) > self.max_depth:
            raise PlanError([_too_deep(ids, deps, stages, self.max_depth)])

        steps = []
        refs_of, declared_of, entries = self.refs, self.declared, self.entries
        for i, entry in enumerate(entries):
            declared, refs = declared_of[i], refs_of[i]
            if refs:
                declared = tuple(dict.fromkeys((*declared, *[r.step for r in refs])))
            if type(entry) is not Step or declared != entry.depends_on:
                entry = Step(ids[i], self.tool_names[i], self.inputs[i], declared)  # type: ignore[arg-type]
            steps.append(entry)

        # Each stage lists its steps in plan order, which reads better.
        for batch in stages:
            batch.sort()
        plan = object.__new__(Plan)
        for name, value in (
            ("steps", tuple(steps)),
            ("order", tuple([ids[i] for batch in stages for i in batch])),
            ("stages", tuple([tuple([ids[i] for i in batch]) for batch in stages])),
            ("_index", index_of),
            ("_deps", deps),
            ("_dependents", dependents),
            ("_has_refs", [bool(r) for r in refs_of]),
            ("_dependents_map", None),
        ):
            object.__setattr__(plan, name, value)
        return plan


def _too_deep(
    ids: list[str], deps: list[tuple[int, ...]], stages: list[list[int]], limit: int
) -> str:
    depth = [0] * len(ids)
    for level, batch in enumerate(stages):
        for i in batch:
            depth[i] = level
    chain = [stages[-1][0]]
    while deps[chain[-1]]:
        chain.append(max(deps[chain[-1]], key=depth.__getitem__))
    chain.reverse()
    names = [repr(ids[i]) for i in chain]
    if len(names) > 6:
        names = [*names[:3], "...", *names[-2:]]
    return (
        f"the plan is {len(stages)} steps deep ({' -> '.join(names)}); at most "
        f"{limit} are allowed"
    )


def _cycles(deps: list[tuple[int, ...]]) -> list[list[int]]:
    """One cycle per strongly connected component with more than one step.

    Tarjan's algorithm, iterative; then a breadth-first search inside each
    component from its first step back to it. Linear in steps plus edges.
    """
    n = len(deps)
    number = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(n):
        if number[root] != -1:
            continue
        work = [(root, 0)]
        number[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            node, edge = work[-1]
            if edge < len(deps[node]):
                work[-1] = (node, edge + 1)
                nxt = deps[node][edge]
                if number[nxt] == -1:
                    number[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack[nxt] = True
                    work.append((nxt, 0))
                elif on_stack[nxt] and number[nxt] < low[node]:
                    low[node] = number[nxt]
                continue
            work.pop()
            if work and low[node] < low[work[-1][0]]:
                low[work[-1][0]] = low[node]
            if low[node] == number[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    cycles = []
    for component in components:
        members = set(component)
        start = min(component)
        parent = {start: start}
        queue = [start]
        closing = None
        for node in queue:
            for nxt in deps[node]:
                if nxt == start:
                    closing = node
                    break
                if nxt in members and nxt not in parent:
                    parent[nxt] = node
                    queue.append(nxt)
            if closing is not None:
                break
        assert closing is not None
        path = [closing]
        while path[-1] != start:
            path.append(parent[path[-1]])
        path.reverse()
        cycles.append(path)
    return cycles


# -- the plan tool, for the model ---------------------------------------------

_STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "a unique name for the step, no '.'"},
        "tool": {"type": "string", "description": "the tool to call"},
        "input": {
            "type": "object",
            "description": "the tool's input; {\"$ref\": \"step\"} or "
            "{\"$ref\": \"step.field.0.name\"} anywhere in it is replaced by "
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
    "is skipped. Use {\"$ref\": \"step_id\"} or {\"$ref\": \"step_id.field\"} "
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
            raise ToolError(f"{exc}\nNothing was run. Fix the plan and submit it again.") from None
        report = run_plan(runtime, plan, fail_fast=fail_fast)
        return report.to_dict()

    return Tool(submit_plan, name=name, description=_PLAN_DESCRIPTION, timeout=timeout)


def add_plan_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``plan check`` and ``plan run`` to the ``agentsync`` command."""
    from ._plan_cli import add_commands

    add_commands(subparsers)

