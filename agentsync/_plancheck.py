"""The checks of :func:`agentsync.validate_plan`, one pass each, no recursion.

Steps are numbered by position; every table here is a list indexed by that
number, so each pass is a loop over lists. The order and the stages come
from Kahn's algorithm, a stage at a time; only when it cannot place every
step does Tarjan's algorithm look for the cycles, to report each one once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from ._refs import Ref, output_schema, path_problem, scan_input
from .errors import PlanError
from .plans import Plan, Step
from .tools import Tool

__all__ = ["Validator"]

_STEP_KEYS = frozenset(("id", "tool", "input", "depends_on"))
_MISSING: Any = object()
_EMPTY: dict[str, Any] = {}

# Problems that concern the whole plan sort after those of its steps.
_PLAN_WIDE = 1 << 62


class Validator:
    """One validation of a list of step entries."""

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
        self._read_all()
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

    def _read_all(self) -> None:
        """Read every step: well-formed ones on a fast path, the others through
        :meth:`_read`, which says what is wrong with them."""
        ids, tool_names, inputs, declared = (
            self.ids,
            self.tool_names,
            self.inputs,
            self.declared,
        )
        setdefault = self.index_of.setdefault
        keys = _STEP_KEYS
        for index, entry in enumerate(self.entries):
            if type(entry) is dict and entry.keys() <= keys:
                step_id = entry.get("id")
                tool_name = entry.get("tool")
                data = entry.get("input", _EMPTY)
                depends = entry.get("depends_on", ())
                if (
                    type(step_id) is str
                    and step_id
                    and "." not in step_id
                    and type(tool_name) is str
                    and tool_name
                    and type(data) is dict
                    and (type(depends) is list or type(depends) is tuple)
                    and all(type(d) is str for d in depends)
                    and setdefault(step_id, index) == index
                ):
                    ids[index] = step_id
                    tool_names[index] = tool_name
                    inputs[index] = data if data is not _EMPTY else {}
                    if depends:
                        declared[index] = (
                            tuple(depends)
                            if len(depends) == 1
                            else tuple(dict.fromkeys(depends))
                        )
                    if data:
                        self._scan(index, data)
                    continue
            self._read(index, entry)

    def _scan(self, index: int, data: dict[str, Any]) -> None:
        found: list[str] = []
        broken: set[str | None] = set()
        scan_input(data, self.refs[index], found, broken)
        if broken:
            self.broken[index] = broken
        for text in found:
            self.problem(index, f"{self.label(index)} input {text}")

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
                index,
                f"step #{index}: 'id' must be a non-empty string, got {step_id!r}",
            )
        else:
            self.ids[index] = step_id
            first = self.index_of.setdefault(step_id, index)
            if first != index:
                self.problem(
                    index,
                    f"duplicate step id {step_id!r} (steps #{first} and #{index})",
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
                index,
                f"{self.label(index)}: 'tool' must be a tool's name, got {tool_name!r}",
            )

        if isinstance(depends, (list, tuple)):
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
            self._scan(index, data)

    def _read_depends(self, index: int, depends: Sequence[Any]) -> None:
        good = []
        for d in depends:
            if isinstance(d, str):
                good.append(d)
            else:
                self.problem(
                    index, f"{self.label(index)}: depends_on holds {d!r}, not a step id"
                )
        self.declared[index] = (
            tuple(dict.fromkeys(good)) if len(good) > 1 else tuple(good)
        )

    # -- the graph ------------------------------------------------------------

    def _edges(self, index_of: dict[str, int]) -> list[tuple[int, ...]]:
        deps: list[tuple[int, ...]] = []
        get = index_of.get
        for index, (step_id, declared, refs) in enumerate(
            zip(self.ids, self.declared, self.refs, strict=True)
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
            deps.append(
                tuple(own) if step_id is not None and get(step_id) == index else ()
            )
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
            self.problem(
                _PLAN_WIDE, f"dependency cycle: {path} (each depends on the next)"
            )
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
                self.problem(
                    index, f"{label}: unknown tool {name!r}; the tools are: {known}"
                )
                continue
            data = self.inputs[index]
            if data is not None:
                self._check_input(index, label, t, data)
            for ref in self.refs[index]:
                self._check_ref(index, label, ref, index_of)

    def _check_input(
        self, index: int, label: str, t: Tool, data: Mapping[str, Any]
    ) -> None:
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

    def _check_ref(
        self, index: int, label: str, ref: Ref, index_of: dict[str, int]
    ) -> None:
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
                if len(refs) == 1 and not declared:
                    declared = (refs[0].step,)
                else:
                    declared = tuple(
                        dict.fromkeys((*declared, *[r.step for r in refs]))
                    )
            if type(entry) is not Step or declared != entry.depends_on:
                entry = Step(ids[i], self.tool_names[i], self.inputs[i], declared)  # type: ignore[arg-type]
            steps.append(entry)

        # Each stage lists its steps in plan order, which reads better.
        for batch in stages:
            if len(batch) > 1:
                batch.sort()
        plan = object.__new__(Plan)
        for name, value in (
            ("steps", tuple(steps)),
            ("order", tuple([ids[i] for batch in stages for i in batch])),
            ("stages", tuple([_names(ids, batch) for batch in stages])),
            ("_index", index_of),
            ("_deps", deps),
            ("_dependents", dependents),
            ("_has_refs", [bool(r) for r in refs_of]),
            ("_dependents_map", None),
        ):
            object.__setattr__(plan, name, value)
        return plan


def _names(ids: list[str], batch: list[int]) -> tuple[str, ...]:
    if len(batch) == 1:
        return (ids[batch[0]],)
    return tuple([ids[i] for i in batch])


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
