"""Tests for agentsync.plans and agentsync.scheduler: validation and running."""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, TypedDict

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from agentsync import PlanError, Runtime, ToolContext, ToolError, tool
from agentsync.plans import Plan, Step, plan_tool, validate_plan
from agentsync.scheduler import PlanReport, run_plan

# -- tools ---------------------------------------------------------------------


class Address(pydantic.BaseModel):
    city: str
    zip: str


class User(pydantic.BaseModel):
    id: str
    name: str
    address: Address
    tags: list[str]


class Order(TypedDict):
    id: str
    total: float


class Orders(TypedDict):
    user_id: str
    items: list[Order]


@tool
def get_user(user_id: str) -> User:
    """Look a user up."""
    return User(
        id=user_id,
        name=f"name-{user_id}",
        address=Address(city="Lyon", zip="69001"),
        tags=["new"],
    )


@tool
def list_orders(user_id: str) -> Orders:
    """List a user's orders."""
    return {"user_id": user_id, "items": [{"id": f"o-{user_id}", "total": 9.5}]}


@tool
def weather(city: str, days: int = 1) -> dict[str, Any]:
    """Forecast the weather."""
    return {"city": city, "days": days, "sky": "clear"}


@tool
def echo(value: Any = None) -> Any:
    """Return the value."""
    return value


@tool
def fails(reason: str = "broken") -> None:
    """Always fail."""
    raise ToolError(reason)


TOOLS = [get_user, list_orders, weather, echo, fails]


def step(step_id: str, tool_name: str = "echo", **fields: Any) -> dict[str, Any]:
    """A step as plain data."""
    return {
        "id": step_id,
        "tool": tool_name,
        "input": fields.pop("input", {}),
        **fields,
    }


def problems_of(data: Any, tools: Any = None, **options: Any) -> list[str]:
    """The problems validation reports for ``data``."""
    with pytest.raises(PlanError) as info:
        validate_plan(data, tools, **options)
    return list(info.value.problems)


# -- loading -------------------------------------------------------------------


class TestLoading:
    def test_from_dict_reads_steps(self) -> None:
        """A plan loads from {"steps": [...]} and keeps the steps' order."""
        data = {"steps": [step("a"), step("b", depends_on=["a"])]}

        plan = Plan.from_dict(data)

        assert [s.id for s in plan.steps] == ["a", "b"]
        assert plan["b"] == Step("b", "echo", {}, ("a",))

    def test_bare_list_of_steps(self) -> None:
        """A bare list of steps is a plan too."""
        plan = Plan.from_dict([step("a"), step("b")])

        assert plan.order == ("a", "b")

    def test_from_json_and_load(self, tmp_path: Any) -> None:
        """JSON text and JSON files load like dicts."""
        text = json.dumps({"steps": [step("a"), step("b", depends_on=["a"])]})
        path = tmp_path / "plan.json"
        path.write_text(text)

        from_text = Plan.from_json(text)
        from_file = Plan.load(path)

        assert from_text.order == from_file.order == ("a", "b")

    def test_step_objects_and_plan_constructor(self) -> None:
        """Plan(steps) validates Step values like validate_plan does."""
        steps = [Step("a", "echo", {}), Step("b", "echo", {}, ["a"])]

        plan = Plan(steps)

        assert plan.steps[1].depends_on == ("a",)
        assert plan.stages == (("a",), ("b",))

    def test_invalid_json_is_a_plan_error(self) -> None:
        """Text that is not JSON is reported as a problem, not a decode error."""
        with pytest.raises(PlanError, match="not valid JSON"):
            Plan.from_json("{steps: [")

    def test_json_nested_too_deep_is_a_plan_error(self) -> None:
        """JSON nested past the parser's limit is a problem, not RecursionError."""
        text = '{"steps": [{"id": "a", "tool": "echo", "input": {"v": ' + "[" * 100_000

        with pytest.raises(PlanError, match="nested too deeply|not valid JSON"):
            Plan.from_json(text + "]" * 100_000 + "}}]}")

    def test_missing_file_is_a_plan_error(self, tmp_path: Any) -> None:
        """A plan file that cannot be read is a problem with its path."""
        with pytest.raises(PlanError, match="cannot read plan file"):
            Plan.load(tmp_path / "missing.json")

    def test_plan_cannot_be_changed(self) -> None:
        """A plan's attributes cannot be set."""
        plan = Plan.from_dict([step("a")])

        with pytest.raises(AttributeError):
            plan.order = ("b",)  # type: ignore[misc]

    def test_round_trip_through_to_dict(self) -> None:
        """to_dict gives data that loads into the same plan."""
        plan = Plan.from_dict([step("a"), step("b", input={"value": {"$ref": "a"}})])

        again = Plan.from_dict(plan.to_dict())

        assert again.steps == plan.steps


# -- structure -----------------------------------------------------------------


class TestStructure:
    def test_order_stages_and_dependents(self) -> None:
        """Order puts each step after its dependencies; stages group by depth."""
        data = [
            step("d", depends_on=["b", "c"]),
            step("b", depends_on=["a"]),
            step("c"),
            step("a"),
        ]

        plan = validate_plan(data)

        position = {sid: n for n, sid in enumerate(plan.order)}
        assert position["a"] < position["b"] < position["d"]
        assert position["c"] < position["d"]
        assert plan.stages == (("c", "a"), ("b",), ("d",))
        assert plan.dependents == {"d": (), "b": ("d",), "c": ("d",), "a": ("b",)}

    def test_ref_implies_dependency(self) -> None:
        """A $ref anywhere in an input adds a dependency on the step it names."""
        data = [step("a"), step("b", input={"value": {"x": [1, {"$ref": "a.k"}]}})]

        plan = validate_plan(data)

        assert plan["b"].depends_on == ("a",)
        assert plan.stages == (("a",), ("b",))

    def test_duplicate_ids(self) -> None:
        """Two steps with one id are reported with both positions."""
        problems = problems_of([step("a"), step("a")])

        assert problems == ["duplicate step id 'a' (steps #0 and #1)"]

    def test_dependency_on_missing_step(self) -> None:
        """A dependency on a step that does not exist is reported."""
        problems = problems_of([step("a", depends_on=["ghost"])])

        assert problems == [
            "step 'a' depends on 'ghost', which is not a step of the plan"
        ]

    def test_dependency_on_itself(self) -> None:
        """A step that depends on itself is reported as such, not as a cycle."""
        problems = problems_of([step("a", depends_on=["a"])])

        assert problems == ["step 'a' depends on itself"]

    def test_cycle_reported_with_its_path(self) -> None:
        """A cycle is reported once, with its path back to its first step."""
        data = [
            step("a", depends_on=["b"]),
            step("b", depends_on=["c"]),
            step("c", depends_on=["a"]),
            step("d", depends_on=["a"]),
        ]

        problems = problems_of(data)

        assert problems == [
            "dependency cycle: 'a' -> 'b' -> 'c' -> 'a' (each depends on the next)"
        ]

    def test_every_cycle_reported_once(self) -> None:
        """Two separate cycles give two problems, one each."""
        data = [
            step("a", depends_on=["b"]),
            step("b", depends_on=["a"]),
            step("x", depends_on=["y"]),
            step("y", depends_on=["z"]),
            step("z", depends_on=["x", "y"]),
        ]

        problems = problems_of(data)

        assert sorted(problems) == [
            "dependency cycle: 'a' -> 'b' -> 'a' (each depends on the next)",
            "dependency cycle: 'x' -> 'y' -> 'z' -> 'x' (each depends on the next)",
        ]

    def test_cycle_through_refs(self) -> None:
        """References that point at each other form a cycle too."""
        data = [
            step("a", input={"value": {"$ref": "b"}}),
            step("b", input={"value": {"$ref": "a"}}),
        ]

        problems = problems_of(data)

        assert problems == [
            "dependency cycle: 'a' -> 'b' -> 'a' (each depends on the next)"
        ]

    def test_every_problem_at_once(self) -> None:
        """Validation lists all problems, not just the first."""
        data = [
            step("a", depends_on=["ghost"]),
            step("a"),
            step("b", depends_on=["b"]),
            step("c", depends_on=["d"]),
            step("d", depends_on=["c"]),
            step("e", input={"value": {"$ref": "nowhere"}}),
        ]

        problems = problems_of(data)

        assert len(problems) == 5
        assert problems[-1].startswith("dependency cycle: 'c' -> 'd' -> 'c'")

    def test_max_steps(self) -> None:
        """A plan longer than max_steps is refused with that one problem."""
        problems = problems_of([step(f"s{i}") for i in range(5)], max_steps=4)

        assert problems == ["the plan has 5 steps; at most 4 are allowed"]

    def test_max_depth(self) -> None:
        """A chain deeper than max_depth is refused, naming the chain."""
        data = [step("s0")] + [
            step(f"s{i}", depends_on=[f"s{i - 1}"]) for i in range(1, 4)
        ]

        problems = problems_of(data, max_depth=3)

        assert problems == [
            "the plan is 4 steps deep ('s0' -> 's1' -> 's2' -> 's3'); at most 3 are allowed"
        ]


# -- against the tools -----------------------------------------------------------


class TestToolChecks:
    def test_valid_plan_with_tools(self) -> None:
        """A plan whose steps fit their tools validates."""
        data = [
            step("user", "get_user", input={"user_id": "u1"}),
            step("sky", "weather", input={"city": {"$ref": "user.address.city"}}),
            step("orders", "list_orders", input={"user_id": {"$ref": "user.id"}}),
            step("first", "echo", input={"value": {"$ref": "orders.items.0.id"}}),
        ]

        plan = validate_plan(data, TOOLS)

        assert plan.stages == (("user",), ("sky", "orders"), ("first",))

    def test_unknown_tool(self) -> None:
        """A step naming a tool that does not exist is reported with the tools."""
        problems = problems_of([step("a", "teleport")], [echo, fails])

        assert problems == [
            "step 'a': unknown tool 'teleport'; the tools are: echo, fails"
        ]

    def test_input_unknown_field_missing_field_and_type(self) -> None:
        """Unknown fields, missing fields and wrong literal types are reported."""
        data = [
            step("a", "weather", input={"town": "Lyon"}),
            step("b", "weather", input={"city": "Lyon", "days": "many"}),
        ]

        problems = problems_of(data, TOOLS)

        assert problems == [
            "step 'a' input for tool 'weather': missing required field 'city'",
            (
                "step 'a' input for tool 'weather': unknown field 'town' (the tool's "
                "fields: city, days)"
            ),
            (
                "step 'b' input for tool 'weather': field 'days': Input should be a valid "
                "integer, unable to parse string as an integer"
            ),
        ]

    def test_ref_fills_a_required_field(self) -> None:
        """A required field given by a $ref is not reported missing or mistyped."""
        data = [step("u", "get_user", input={"user_id": "u1"})]
        data.append(step("w", "weather", input={"city": {"$ref": "u.name"}, "days": 2}))

        plan = validate_plan(data, TOOLS)

        assert plan["w"].depends_on == ("u",)

    def test_ref_path_the_output_cannot_have(self) -> None:
        """A $ref path into a field the producer's return type lacks is reported."""
        data = [
            step("u", "get_user", input={"user_id": "u1"}),
            step("a", "weather", input={"city": {"$ref": "u.adress.city"}}),
            step("o", "list_orders", input={"user_id": "u1"}),
            step("b", "echo", input={"value": {"$ref": "o.items.first"}}),
        ]

        problems = problems_of(data, TOOLS)

        assert problems == [
            (
                "step 'a' input at city: $ref 'u.adress.city' cannot resolve: tool "
                "'get_user' returns User, and the output has no field 'adress' (its "
                "fields: id, name, address, tags)"
            ),
            (
                "step 'b' input at value: $ref 'o.items.first' cannot resolve: tool "
                "'list_orders' returns Orders, and items is a list; it has no 'first'"
            ),
        ]

    def test_ref_path_into_unknown_output_is_accepted(self) -> None:
        """Paths into outputs typed dict or Any are left to run time."""
        data = [
            step("w", "weather", input={"city": "Lyon"}),
            step("e", "echo", input={"value": 1}),
            step(
                "x",
                "echo",
                input={"value": [{"$ref": "w.any.thing"}, {"$ref": "e.b.0"}]},
            ),
        ]

        plan = validate_plan(data, TOOLS)

        assert plan["x"].depends_on == ("w", "e")

    def test_ref_to_missing_step_and_to_itself(self) -> None:
        """A $ref to a step that does not exist, or to its own step, is reported."""
        data = [
            step("a", input={"value": {"$ref": "ghost.x"}}),
            step("b", input={"value": {"k": {"$ref": "b"}}}),
        ]

        problems = problems_of(data, TOOLS)

        assert problems == [
            (
                "step 'a' input at value: $ref 'ghost.x' names 'ghost', which is not a step "
                "of the plan"
            ),
            "step 'b' input at value.k: $ref 'b' refers to the step's own output",
        ]


# -- malformed plans ---------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize(
        ("data", "problem"),
        [
            ([], "the plan has no steps"),
            ({"steps": []}, "the plan has no steps"),
            ({"stepz": []}, "unknown key 'stepz' at the top of the plan"),
            ({"steps": {"a": 1}}, "the plan's 'steps' must be a list, got dict"),
            ("[]", "a plan must be {'steps': [...]} or a list of steps, got str"),
            ([3], "step #0 must be an object with id, tool and input, got int"),
            ([{"tool": "echo"}], "step #0 has no 'id'"),
            (
                [{"id": 7, "tool": "echo"}],
                "step #0: 'id' must be a non-empty string, got 7",
            ),
            (
                [{"id": "", "tool": "echo"}],
                "step #0: 'id' must be a non-empty string, got ''",
            ),
            ([{"id": "a.b", "tool": "echo"}], "step id 'a.b' may not contain '.'"),
            ([{"id": "a"}], "step 'a' has no 'tool'"),
            ([{"id": "a", "tool": 1}], "step 'a': 'tool' must be a tool's name, got 1"),
            ([{"id": "a", "tool": "echo", "deps": []}], "step 'a': unknown key 'deps'"),
            (
                [{"id": "a", "tool": "echo", "input": [1]}],
                "'input' must be an object, got list",
            ),
            ([step("a", depends_on="b")], "got the string 'b'; write ['b']"),
            (
                [step("a", depends_on={"b": 1})],
                "depends_on must be a list of step ids, got dict",
            ),
            (
                [step("a", depends_on=[1])],
                "step 'a': depends_on holds 1, not a step id",
            ),
            (
                [step("a", input={"v": {1, 2}})],
                "step 'a' input at v: a set is not a JSON value",
            ),
            ([step("a", input={"v": float("nan")})], "at v: nan is not a JSON number"),
            (
                [step("a", input={"v": {1: "x"}})],
                "at v: object keys must be strings, got 1",
            ),
            ([step("a", input={"v": object()})], "at v: a object is not a JSON value"),
            ([step("a", input={"v": {"$ref": 3}})], "at v: $ref must be a string"),
            (
                [step("a", input={"v": {"$ref": "a..b"}})],
                "$ref 'a..b' has an empty segment",
            ),
            ([step("a", input={"v": {"$ref": ""}})], "$ref '' has an empty segment"),
            (
                [step("a", input={"v": {"$ref": "b", "x": 1}})],
                "at v: a $ref object takes no other keys, got 'x'",
            ),
        ],
    )
    def test_malformed_plan_is_a_plan_error(self, data: Any, problem: str) -> None:
        """Each malformed plan is a PlanError naming the problem."""
        with pytest.raises(PlanError) as info:
            validate_plan(data)

        assert any(problem in p for p in info.value.problems), info.value.problems

    def test_broken_ref_field_not_checked_as_literal(self) -> None:
        """A field holding a malformed $ref reports the $ref, not a type error."""
        problems = problems_of(
            [step("w", "weather", input={"city": {"$ref": 3}})], TOOLS
        )

        assert problems == [
            (
                "step 'w' input at city: $ref must be a string like 'step' or "
                "'step.field', got 3"
            )
        ]

    def test_input_that_contains_itself(self) -> None:
        """An input that contains itself is reported instead of walked forever."""
        loop: list[Any] = [1]
        loop.append(loop)

        problems = problems_of([step("a", input={"v": loop})])

        assert problems == ["step 'a' input at v[1]: the input contains itself"]

    def test_shared_subtree_is_fine(self) -> None:
        """The same list used twice in an input is not mistaken for a loop."""
        shared = [1, [2]]

        plan = validate_plan([step("a", input={"x": shared, "y": [shared]})])

        assert plan.order == ("a",)

    def test_deep_input_without_recursion(self) -> None:
        """An input nested 100,000 levels deep validates, its $ref found."""
        deep: Any = {"$ref": "a.k"}
        for _ in range(100_000):
            deep = {"n": [deep]}

        plan = validate_plan([step("a"), step("b", input={"v": deep})])

        assert plan["b"].depends_on == ("a",)


_ids = st.sampled_from(["a", "b", "c", "d", "e", "f", 1, "", None, "a.b"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_refs = st.builds(
    lambda target: {"$ref": target}, _ids | st.just("a.x.0") | st.just("b..c")
)
_inputs = st.dictionaries(st.sampled_from(["v", "w"]), _json | _refs, max_size=2)
_steps = st.fixed_dictionaries(
    {"id": _ids, "tool": st.sampled_from(["echo", "weather", 3])},
    optional={
        "input": _inputs | st.integers(),
        "depends_on": st.lists(_ids, max_size=3) | st.text(max_size=2),
        "extra": st.integers(),
    },
)
_plans = st.lists(_steps | st.integers(), max_size=8) | st.fixed_dictionaries(
    {"steps": st.lists(_steps, max_size=8)}
)


class TestProperties:
    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(data=_plans, with_tools=st.booleans())
    def test_validation_returns_a_sound_plan_or_a_plan_error(
        self, data: Any, with_tools: bool
    ) -> None:
        """Any data gives a plan with a sound order or a PlanError, nothing else."""
        try:
            plan = validate_plan(data, TOOLS if with_tools else None)
        except PlanError as exc:
            assert exc.problems and all(isinstance(p, str) for p in exc.problems)
            return

        position = {sid: n for n, sid in enumerate(plan.order)}
        assert sorted(position) == sorted(s.id for s in plan.steps)
        for s in plan.steps:
            assert all(position[d] < position[s.id] for d in s.depends_on)
        assert [sid for stage in plan.stages for sid in stage] == list(plan.order)

    @settings(max_examples=100, deadline=None)
    @given(edges=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=25))
    def test_random_graphs_order_or_cycles(self, edges: list[tuple[int, int]]) -> None:
        """Random dependency graphs either order correctly or report cycles."""
        deps: dict[str, list[str]] = {f"s{i}": [] for i in range(10)}
        for a, b in edges:
            if a != b:
                deps[f"s{a}"].append(f"s{b}")
        data = [step(sid, depends_on=d) for sid, d in deps.items()]

        try:
            plan = validate_plan(data)
        except PlanError as exc:
            assert all(p.startswith("dependency cycle: ") for p in exc.problems)
            return

        position = {sid: n for n, sid in enumerate(plan.order)}
        for sid, before in deps.items():
            assert all(position[d] < position[sid] for d in before)


@pytest.mark.timeout(60)
def test_chain_of_100000_steps_validates() -> None:
    """A chain of 100,000 steps linked by $refs validates, without recursion."""
    data = [step("s0", input={"value": 0})]
    data += [
        step(f"s{i}", input={"value": {"$ref": f"s{i - 1}"}}) for i in range(1, 100_000)
    ]

    plan = validate_plan(data)

    assert len(plan.stages) == 100_000
    assert plan.order[-1] == "s99999"


# -- running -----------------------------------------------------------------------


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    """A runtime with the module's tools, closed after the test."""
    with Runtime(TOOLS, max_workers=4) as rt:
        yield rt


@pytest.mark.timeout(20)
class TestRunning:
    def test_step_starts_when_its_last_dependency_succeeds(self) -> None:
        """A stage-2 step runs while an unrelated stage-1 step is still running."""
        c_ran = threading.Event()
        seen: dict[str, bool] = {}

        @tool
        def slow() -> str:
            """Return only once step c ran, or give up after 5 s."""
            seen["c ran while a was running"] = c_ran.wait(5)
            return "a"

        @tool
        def mark() -> str:
            """Record that this step ran."""
            c_ran.set()
            return "c"

        data = [
            step("a", "slow"),
            step("b", "echo", input={"value": 1}),
            step("c", "mark", depends_on=["b"]),
            step("d", "echo", input={"value": {"$ref": "a"}}, depends_on=["c"]),
        ]
        with Runtime([slow, mark, echo], max_workers=4) as rt:
            plan = validate_plan(data, rt.tools)
            assert plan.stages == (("a", "b"), ("c",), ("d",))

            report = rt.run_plan(plan)

        assert seen == {"c ran while a was running": True}
        assert report.ok
        assert report["c"].end is not None and report["a"].end is not None
        assert report["c"].end <= report["a"].end
        assert report.critical_path == ("a", "d")

    def test_failure_skips_dependents_and_independent_steps_carry_on(
        self, runtime: Runtime
    ) -> None:
        """Steps after a failed one, directly or not, are skipped; others run."""
        data = [
            step("bad", "fails", input={"reason": "no stock"}),
            step("next", depends_on=["bad"]),
            step("after", input={"value": {"$ref": "next"}}),
            step("other", input={"value": 2}),
        ]

        report = run_plan(runtime, data)

        assert [(s.id, s.status, s.outcome.error_kind) for s in report] == [
            ("bad", "failed", "exception"),
            ("next", "skipped", "dependency_failed"),
            ("after", "skipped", "dependency_failed"),
            ("other", "ok", None),
        ]
        assert report["next"].outcome.message == (
            "not run: it depends on step 'bad', which failed (exception)"
        )
        assert "because of step 'bad'" in report["after"].outcome.message
        assert not report.ok
        assert dict(report.outputs) == {"other": 2}

    def test_fail_fast_starts_nothing_new(self) -> None:
        """With fail_fast a running step finishes and unstarted ones are cancelled."""

        @tool
        def slow_ok() -> str:
            """Take a while, then succeed."""
            time.sleep(0.5)
            return "done"

        data = [
            step("bad", "fails"),
            step("slow", "slow_ok"),
            step("queued"),
            step("after_slow", depends_on=["slow"]),
            step("after_bad", depends_on=["bad"]),
        ]
        with Runtime([slow_ok, fails, echo], max_workers=4) as rt:
            report = run_plan(rt, data, max_parallel=2, fail_fast=True)

        assert {s.id: (s.status, s.outcome.error_kind) for s in report} == {
            "bad": ("failed", "exception"),
            "slow": ("ok", None),
            "queued": ("skipped", "cancelled"),
            "after_slow": ("skipped", "cancelled"),
            "after_bad": ("skipped", "dependency_failed"),
        }
        assert report.stopped == "fail_fast"

    def test_refs_resolve_nested_paths(self, runtime: Runtime) -> None:
        """$refs anywhere in an input get the referenced parts of outputs."""
        data = [
            step("user", "get_user", input={"user_id": "u1"}),
            step("sky", "weather", input={"city": {"$ref": "user.address.city"}}),
            step("orders", "list_orders", input={"user_id": {"$ref": "user.id"}}),
            step(
                "summary",
                input={
                    "value": {
                        "first_order": {"$ref": "orders.items.0.id"},
                        "sky": [{"$ref": "sky.sky"}, {"$ref": "user.tags.0"}],
                        "whole": {"$ref": "user.address"},
                    }
                },
            ),
        ]

        report = run_plan(runtime, data)

        assert report.ok, report.summary()
        assert report["sky"].input == {"city": "Lyon"}
        assert report.outputs["summary"] == {
            "first_order": "o-u1",
            "sky": ["clear", "new"],
            "whole": {"city": "Lyon", "zip": "69001"},
        }

    def test_missing_ref_path_fails_the_step_without_calling(self) -> None:
        """A $ref path absent from the actual output fails the step, tool not called."""
        calls: list[Any] = []

        @tool
        def record(value: Any = None) -> Any:
            """Record the call."""
            calls.append(value)
            return value

        data = [
            step("a", input={"value": {"k": 1}}),
            step("b", "record", input={"value": {"$ref": "a.nope"}}),
        ]
        with Runtime([echo, record]) as rt:
            report = run_plan(rt, data)

        assert report["b"].status == "failed"
        assert report["b"].outcome.error_kind == "invalid_input"
        assert report["b"].outcome.message == (
            "$ref 'a.nope' at value: a has no key 'nope' (its keys: 'k')"
        )
        assert calls == []

    def test_deadline_stops_the_plan(self, gate: threading.Event) -> None:
        """At the plan's deadline running steps time out, unstarted ones are skipped."""

        @tool
        def hang() -> None:
            """Wait for the gate."""
            gate.wait(30)

        data = [step("hang", "hang"), step("after", depends_on=["hang"]), step("later")]
        with Runtime([hang, echo], max_workers=2) as rt:
            started = time.monotonic()

            report = run_plan(rt, data, deadline=0.3, max_parallel=1)

            elapsed = time.monotonic() - started
        assert {s.id: (s.status, s.outcome.error_kind) for s in report} == {
            "hang": ("failed", "deadline"),
            "after": ("skipped", "dependency_failed"),
            "later": ("skipped", "deadline"),
        }
        assert report.stopped == "deadline"
        assert 0.3 <= elapsed < 2.0

    def test_step_timeout_is_its_tools(self, gate: threading.Event) -> None:
        """A step runs with its tool's timeout and gets a timeout outcome."""

        @tool(timeout=0.2)
        def stuck() -> None:
            """Wait for the gate."""
            gate.wait(30)

        with Runtime([stuck, echo]) as rt:
            report = run_plan(rt, [step("s", "stuck"), step("t", input={"value": 1})])

        assert report["s"].outcome.error_kind == "timeout"
        assert report["t"].ok

    def test_max_parallel_bounds_running_steps(self) -> None:
        """No more than max_parallel steps run at once, and that many do."""
        lock = threading.Lock()
        running = [0, 0]
        pair = threading.Barrier(2)

        @tool
        def busy() -> bool:
            """Count the steps running alongside, meet a second one."""
            with lock:
                running[0] += 1
                running[1] = max(running)
            met = True
            try:
                pair.wait(5)
            except threading.BrokenBarrierError:
                met = False
            with lock:
                running[0] -= 1
            return met

        data = [step(f"s{i}", "busy") for i in range(6)]
        with Runtime([busy], max_workers=6) as rt:
            report = run_plan(rt, data, max_parallel=2)

        assert report.ok
        assert all(report.outputs.values())
        assert running[1] == 2

    def test_report_summary_and_json(self, runtime: Runtime) -> None:
        """The report reads as a table and serialises to JSON."""
        report = run_plan(runtime, [step("a", input={"value": 1}), step("b", "fails")])

        text = report.summary()
        data = json.loads(json.dumps(report.to_dict()))

        assert text.splitlines()[0].startswith(
            "plan: 2 steps, 1 ok, 1 failed, 0 skipped"
        )
        assert "failed (exception)" in text
        assert data["steps"] == {
            "a": {"status": "ok", "value": 1},
            "b": {"status": "failed", "error_kind": "exception", "error": "broken"},
        }
        assert isinstance(report, PlanReport) and report.makespan >= 0

    def test_plan_with_unknown_tool_is_refused(self, runtime: Runtime) -> None:
        """run_plan raises PlanError before running anything for unknown tools."""
        plan = validate_plan([step("a", "teleport")])

        with pytest.raises(PlanError, match="unknown tool 'teleport'"):
            run_plan(runtime, plan)

    def test_bad_arguments(self, runtime: Runtime) -> None:
        """A bad deadline or max_parallel is the caller's mistake: ValueError."""
        plan = validate_plan([step("a")])

        with pytest.raises(ValueError, match="deadline"):
            run_plan(runtime, plan, deadline=-1)
        with pytest.raises(ValueError, match="max_parallel"):
            run_plan(runtime, plan, max_parallel=0)


# -- from inside a tool, and for the model ----------------------------------------


@pytest.mark.timeout(20)
class TestPlanTool:
    def test_plan_inside_a_tool_on_a_one_worker_runtime(self) -> None:
        """A tool running a plan on its own full runtime does not deadlock."""

        @tool
        def orchestrate(ctx: ToolContext) -> dict[str, Any]:
            """Run a two-step plan from inside a tool."""
            assert ctx.runtime is not None
            data = [
                step("a", input={"value": 1}),
                step("b", input={"value": {"$ref": "a"}}),
            ]
            return dict(run_plan(ctx.runtime, data).outputs)

        with Runtime([orchestrate, echo], max_workers=1, default_timeout=5) as rt:
            outcome = rt.call("orchestrate")

        assert outcome.ok, outcome.message
        assert outcome.value == {"a": 1, "b": 1}

    def test_plan_inside_a_tool_ends_before_the_tool_times_out(
        self, gate: threading.Event
    ) -> None:
        """A plan run from a tool stops short of the tool's timeout and reports."""

        @tool
        def hang() -> None:
            """Wait for the gate."""
            gate.wait(30)

        @tool(timeout=1.0)
        def orchestrate(ctx: ToolContext) -> dict[str, Any]:
            """Run a plan with a hung step from inside a tool."""
            assert ctx.runtime is not None
            return run_plan(ctx.runtime, [step("h", "hang"), step("e")]).to_dict()

        with Runtime([orchestrate, hang, echo], default_timeout=30) as rt:
            outcome = rt.call("orchestrate")

        assert outcome.ok, outcome.message
        assert outcome.value["steps"]["h"]["error_kind"] == "deadline"
        assert outcome.value["steps"]["e"]["status"] == "ok"

    def test_plan_inside_a_tool_keeps_the_runtime_hooks(self) -> None:
        """Steps of a plan run from a tool run inside the runtime's call hooks."""
        tag: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "tag", default=None
        )

        class Tagger:
            def capture(self) -> str:
                return "tagged"

            @contextlib.contextmanager
            def wrap(self, state: str, ctx: ToolContext) -> Iterator[None]:
                token = tag.set(state)
                try:
                    yield
                finally:
                    tag.reset(token)

        @tool
        def read_tag() -> str | None:
            """Return the tag the hook set."""
            return tag.get()

        @tool
        def orchestrate(ctx: ToolContext) -> dict[str, Any]:
            """Run a one-step plan from inside a tool."""
            assert ctx.runtime is not None
            return dict(run_plan(ctx.runtime, [step("t", "read_tag")]).outputs)

        with Runtime([orchestrate, read_tag], hooks=[Tagger()]) as rt:
            outcome = rt.call("orchestrate")

        assert outcome.value == {"t": "tagged"}

    def test_plan_step_cannot_rerun_its_own_plan(self) -> None:
        """A step calling the tool that runs the plan fails with circular_call."""

        @tool
        def loop(ctx: ToolContext) -> dict[str, Any]:
            """Run a plan whose step is this very tool."""
            assert ctx.runtime is not None
            report = run_plan(ctx.runtime, [step("again", "loop")])
            return report.to_dict()

        with Runtime([loop], default_timeout=5) as rt:
            outcome = rt.call("loop")

        assert outcome.ok
        assert outcome.value["steps"]["again"]["error_kind"] == "circular_call"

    def test_run_agent_runs_a_submitted_plan(self) -> None:
        """The model submits a plan; it runs and each step's result comes back."""
        from agentsync import run_agent
        from agentsync.testing import FakeMessagesServer

        plan = {
            "steps": [
                {"id": "user", "tool": "get_user", "input": {"user_id": "u7"}},
                {
                    "id": "sky",
                    "tool": "weather",
                    "input": {"city": {"$ref": "user.address.city"}},
                },
            ]
        }
        with FakeMessagesServer() as server, Runtime(max_workers=1) as rt:
            server.add_tool_use("submit_plan", plan)
            server.add_reply("done")
            client = server.client()

            result = run_agent("go", tools=TOOLS, client=client, runtime=rt, plans=True)
            client.close()

        block = result.messages[2]["content"][0]
        assert not block.get("is_error")
        answer = json.loads(block["content"])
        assert answer["ok"] is True
        assert answer["steps"]["sky"] == {
            "status": "ok",
            "value": {"city": "Lyon", "days": 1, "sky": "clear"},
        }
        assert result.text == "done"

    def test_run_agent_returns_plan_problems_to_the_model(self) -> None:
        """A plan with a cycle comes back as an error listing the cycle's path."""
        from agentsync import run_agent
        from agentsync.testing import FakeMessagesServer

        plan = {
            "steps": [
                {"id": "a", "tool": "echo", "input": {"value": {"$ref": "b"}}},
                {"id": "b", "tool": "echo", "input": {}, "depends_on": ["a"]},
                {"id": "c", "tool": "submit_plan", "input": {}},
            ]
        }
        with FakeMessagesServer() as server:
            server.add_tool_use("submit_plan", plan)
            server.add_reply("fixed nothing")
            client = server.client()

            result = run_agent("go", tools=TOOLS, client=client, plans=True)
            client.close()

        block = result.messages[2]["content"][0]
        assert block["is_error"] is True
        assert "dependency cycle: 'a' -> 'b' -> 'a'" in block["content"]
        assert "step 'c': unknown tool 'submit_plan'" in block["content"]
        assert "Nothing was run" in block["content"]

    def test_plan_tool_schema_describes_steps(self) -> None:
        """The plan tool shows the model the shape of a step."""
        schema = plan_tool().input_schema

        assert schema["properties"]["steps"]["items"]["required"] == [
            "id",
            "tool",
            "input",
        ]
        assert schema["required"] == ["steps"]


# -- the command line -----------------------------------------------------------------


TOOLS_MODULE = '''
from agentsync import tool

@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b

@tool
def boom() -> None:
    """Fail."""
    raise ValueError("boom")

TOOLS = [add, boom]
'''


@pytest.fixture
def cli_files(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A tools module on sys.path and a helper writing plan files."""
    (tmp_path / "plan_cli_tools.py").write_text(TOOLS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    # The command configures logging for the process; other tests' must stay.
    monkeypatch.setattr("agentsync.logs.configure_logging", lambda *a, **k: None)

    def write(data: Any) -> str:
        path = tmp_path / "plan.json"
        path.write_text(json.dumps(data))
        return str(path)

    return write


class TestCli:
    def test_check_prints_stages(
        self, cli_files: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """plan check prints the stages of a valid plan and exits 0."""
        from agentsync.cli import main

        path = cli_files(
            [
                {"id": "x", "tool": "add", "input": {"a": 1, "b": 2}},
                {"id": "y", "tool": "add", "input": {"a": {"$ref": "x"}, "b": 3}},
            ]
        )

        code = main(["plan", "check", path, "--tools", "plan_cli_tools:TOOLS"])

        out = capsys.readouterr().out
        assert code == 0
        assert "plan is valid: 2 steps in 2 stages" in out
        assert "stage 1: x" in out and "stage 2: y" in out

    def test_check_prints_problems(
        self, cli_files: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """plan check prints every problem and exits 1."""
        from agentsync.cli import main

        path = cli_files(
            [{"id": "x", "tool": "sub", "input": {}}, {"id": "x", "tool": "add"}]
        )

        code = main(["plan", "check", path, "--tools", "plan_cli_tools:TOOLS"])

        out = capsys.readouterr().out
        assert code == 1
        assert "unknown tool 'sub'" in out
        assert "duplicate step id 'x'" in out
        assert "missing required field 'a'" in out

    def test_run_prints_the_report(
        self, cli_files: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """plan run runs the plan, prints the report, and exits 1 on a failure."""
        from agentsync.cli import main

        path = cli_files(
            [
                {"id": "x", "tool": "add", "input": {"a": 1, "b": 2}},
                {"id": "y", "tool": "add", "input": {"a": {"$ref": "x"}, "b": 3}},
                {"id": "z", "tool": "boom", "input": {}},
            ]
        )

        args = ["plan", "run", path, "--tools", "plan_cli_tools:TOOLS"]
        with capture_logs():
            code = main([*args, "--deadline", "10", "--json"])

        data = json.loads(capsys.readouterr().out)
        assert code == 1
        assert data["steps"]["y"] == {"status": "ok", "value": 6}
        assert data["steps"]["z"]["error_kind"] == "exception"


def test_plans_refuse_a_user_tool_named_submit_plan() -> None:
    """plans=True does not silently replace a user's own submit_plan tool."""
    from agentsync import ToolDefinitionError, run_agent

    @tool(name="submit_plan")
    def mine() -> str:
        """A tool of the user's that happens to take the name."""
        return "mine"

    import anthropic

    client = anthropic.Anthropic(api_key="unused", base_url="http://127.0.0.1:9")

    with pytest.raises(ToolDefinitionError, match="submit_plan"):
        run_agent("hi", tools=[mine], plans=True, client=client)
