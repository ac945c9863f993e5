"""``$ref`` in plan inputs: finding them, checking them, resolving them.

A step's input may hold ``{"$ref": "user.address.city"}`` anywhere in its
tree: the first segment names an earlier step, the rest a path into that
step's output (object keys, or list indexes written as digits). Every walk
here is iterative, so an input nested a hundred thousand levels deep costs
time, never the interpreter's stack.
"""

from __future__ import annotations

import functools
import math
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pydantic
import pydantic_core
import typing_extensions

from .tools import Tool

__all__ = ["REF_KEY", "Ref", "RefMissing", "output_schema", "path_problem"]

REF_KEY = "$ref"

# A link of the path from an input's root to a node: (parent link, key).
_Link = tuple[Any, Any] | None


class Ref(NamedTuple):
    """One ``{"$ref": ...}`` found in a step's input.

    Attributes:
        step: the id of the step whose output is referenced.
        path: the segments after the step id; empty for the whole output.
        key: the top-level input key holding it, or None at the root.
    """

    step: str
    path: tuple[str, ...]
    key: str | None
    link: _Link = None

    @property
    def text(self) -> str:
        return ".".join((self.step, *self.path))

    @property
    def where(self) -> str:
        """Where in the input the reference sits, e.g. ``user.tags[0]``."""
        return _where(self.link)


# Builds a Ref from a tuple in C, skipping NamedTuple's Python-level __new__:
# validation makes one per reference.
_new_ref: Callable[[tuple[str, tuple[str, ...], str | None, _Link]], Ref]
_new_ref = functools.partial(tuple.__new__, Ref)


class RefMissing(LookupError):
    """A ``$ref`` path does not exist in the output it points into."""


def _where(link: _Link) -> str:
    parts: list[str] = []
    while link is not None:
        link, key = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    text = "".join(reversed(parts)).lstrip(".")
    return text or "(input)"


def scan_input(
    data: Mapping[str, Any],
    refs: list[Ref],
    problems: list[str],
    broken: set[str | None],
) -> None:
    """Collect the ``$ref``s of an input and the reasons it is not JSON.

    Problems are plain phrases (``"at user.age: ..."``); the caller prefixes
    them with the step's name. The top-level keys holding a malformed
    ``$ref`` go to ``broken``, so that their value is not checked as a literal.
    """
    # Containers on the current path, to report an object that contains
    # itself instead of walking it forever; an int on the stack is the id of
    # a container being left. Scalars are checked where they are met, so a
    # flat input never touches the stack.
    on_path: set[int] = set()
    stack: list[Any] = [(data, None, None)]
    while stack:
        entry = stack.pop()
        if type(entry) is int:
            on_path.discard(entry)
            continue
        node, link, top = entry
        if id(node) in on_path:
            problems.append(f"at {_where(link)}: the input contains itself")
            continue
        nested: list[tuple[Any, _Link, str | None]] = []
        if isinstance(node, dict):
            if REF_KEY in node:
                ref = _parse_ref(node, link, top, problems)
                if ref is not None:
                    refs.append(ref)
                else:
                    broken.add(top)
                continue
            for key, value in node.items():
                if type(key) is not str:
                    problems.append(
                        f"at {_where(link)}: object keys must be strings, got {key!r}"
                    )
                elif type(value) not in _LEAVES:
                    if type(value) is dict and REF_KEY in value:
                        # The common nesting, taken here rather than stacked.
                        child = (link, key)
                        where = key if top is None else top
                        ref = _parse_ref(value, child, where, problems)
                        if ref is not None:
                            refs.append(ref)
                        else:
                            broken.add(where)
                    elif isinstance(value, (dict, list, tuple)):
                        nested.append((value, (link, key), key if top is None else top))
                    else:
                        _check_leaf(value, (link, key), problems)
        else:
            for index, value in enumerate(node):
                if type(value) not in _LEAVES:
                    if isinstance(value, (dict, list, tuple)):
                        nested.append((value, (link, index), top))
                    else:
                        _check_leaf(value, (link, index), problems)
        if nested:
            on_path.add(id(node))
            stack.append(id(node))
            nested.reverse()
            stack.extend(nested)


_LEAVES = frozenset((str, int, bool, type(None)))


def _check_leaf(value: Any, link: _Link, problems: list[str]) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            problems.append(f"at {_where(link)}: {value!r} is not a JSON number")
    elif not isinstance(value, (str, int)) and value is not None:
        problems.append(
            f"at {_where(link)}: a {type(value).__name__} is not a JSON value"
        )


def _parse_ref(
    node: dict[Any, Any], link: _Link, top: str | None, problems: list[str]
) -> Ref | None:
    text = node[REF_KEY]
    if len(node) != 1:
        where = _where(link)
        extra = ", ".join(repr(k) for k in node if k != REF_KEY)
        problems.append(f"at {where}: a $ref object takes no other keys, got {extra}")
        return None
    if not isinstance(text, str):
        problems.append(
            f"at {_where(link)}: $ref must be a string like 'step' or 'step.field', "
            f"got {text!r}"
        )
        return None
    segments = text.split(".")
    if "" in segments:
        problems.append(
            f"at {_where(link)}: $ref {text!r} has an empty segment; write 'step' or "
            "'step.field.0.name'"
        )
        return None
    return _new_ref((segments[0], tuple(segments[1:]), top, link))


def resolve(data: Any, lookup: Callable[[Ref], Any]) -> Any:
    """Return a copy of ``data`` with each ``$ref`` replaced by ``lookup(ref)``.

    Raises:
        RefMissing: from ``lookup``, when a path does not exist.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, _Link]] = [(data, root, 0, None)]
    while stack:
        node, holder, key, link = stack.pop()
        if isinstance(node, dict):
            if REF_KEY in node:
                text = node[REF_KEY]
                segments = text.split(".")
                holder[key] = lookup(Ref(segments[0], tuple(segments[1:]), None, link))
                continue
            new: dict[str, Any] = dict.fromkeys(node)
            holder[key] = new
            for k, v in node.items():
                stack.append((v, new, k, (link, k)))
        elif isinstance(node, (list, tuple)):
            items: list[Any] = [None] * len(node)
            holder[key] = items
            for i, v in enumerate(node):
                stack.append((v, items, i, (link, i)))
        else:
            holder[key] = node
    return root[0]


def jsonable(value: Any) -> Any:
    """The JSON-like form of a step's output that ``$ref`` paths walk."""
    try:
        return pydantic_core.to_jsonable_python(value)
    except Exception:  # noqa: BLE001 - an odd output is walked as it is
        return value


def follow(output: Any, ref: Ref) -> Any:
    """Walk ``ref.path`` into a step's (JSON-like) output.

    Raises:
        RefMissing: a segment does not exist, naming the ref and the segment.
    """
    node = output
    for depth, segment in enumerate(ref.path):
        here = ".".join((ref.step, *ref.path[:depth])) or ref.step
        if isinstance(node, Mapping):
            if segment in node:
                node = node[segment]
                continue
            keys = ", ".join(repr(k) for k in list(node)[:10]) or "none"
            raise RefMissing(
                f"$ref {ref.text!r} at {ref.where}: {here} has no key {segment!r} "
                f"(its keys: {keys})"
            )
        if isinstance(node, (list, tuple)):
            if segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
                continue
            raise RefMissing(
                f"$ref {ref.text!r} at {ref.where}: {here} is a list of "
                f"{len(node)} items; {segment!r} is not an index into it"
            )
        if segment.isidentifier() and not segment.startswith("_"):
            try:
                node = getattr(node, segment)
                continue
            except AttributeError:
                pass
        raise RefMissing(
            f"$ref {ref.text!r} at {ref.where}: {here} is a {type(node).__name__}, "
            f"which has no field {segment!r}"
        )
    return node


# -- what a tool's output can hold -----------------------------------------

_schemas: weakref.WeakKeyDictionary[Tool, tuple[dict[str, Any] | None, str]]
_schemas = weakref.WeakKeyDictionary()


def output_schema(t: Tool) -> tuple[dict[str, Any] | None, str]:
    """The JSON schema of a tool's return value and the type's name.

    The schema is None when the return type says nothing useful (no
    annotation, ``Any``, ``object``) or pydantic cannot describe it.
    """
    cached = _schemas.get(t)
    if cached is not None:
        return cached
    schema: dict[str, Any] | None = None
    name = "Any"
    try:
        returns = typing.get_type_hints(t.fn).get("return", Any)
    except Exception:  # noqa: BLE001 - an unreadable annotation is unknown
        returns = Any
    if returns is not Any and returns is not object:
        name = getattr(returns, "__name__", None) or repr(returns)
        try:
            schema = _json_schema(returns)
        except pydantic.PydanticUserError:
            # Before Python 3.12 pydantic reads only typing_extensions'
            # TypedDict; the standard one is rebuilt as that one first.
            try:
                schema = _json_schema(_portable(returns, 0))
            except Exception:  # noqa: BLE001 - pydantic cannot describe it
                schema = None
        except Exception:  # noqa: BLE001 - pydantic cannot describe it: unknown
            schema = None
    _schemas[t] = (schema, name)
    return schema, name


def _json_schema(annotation: Any) -> dict[str, Any]:
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(annotation)
    return adapter.json_schema(mode="serialization", by_alias=False)


def _portable(annotation: Any, depth: int) -> Any:
    """``annotation`` with each ``typing.TypedDict`` made a typing_extensions one."""
    if depth > 20:
        return Any
    if typing.is_typeddict(annotation) and type(annotation).__module__ == "typing":
        hints = typing.get_type_hints(annotation)
        fields = {k: _portable(v, depth + 1) for k, v in hints.items()}
        return typing_extensions.TypedDict(  # type: ignore[operator]
            annotation.__name__, fields, total=annotation.__total__
        )
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or not args:
        return annotation
    try:
        return origin[tuple(_portable(a, depth + 1) for a in args)]
    except TypeError:
        return annotation


_SCALARS = {"string", "integer", "number", "boolean", "null"}


def path_problem(schema: dict[str, Any], path: tuple[str, ...]) -> str | None:
    """Why ``path`` cannot exist in a value of ``schema``, or None if it can.

    Parts of the schema that say nothing (``dict``, ``Any``) accept any path.
    """
    defs = schema.get("$defs", {})
    nodes = [schema]
    for depth, segment in enumerate(path):
        leaves = _expand(nodes, defs)
        following: list[dict[str, Any]] = []
        fields: list[str] = []
        kinds: list[str] = []
        for node in leaves:
            step = _step_into(node, segment)
            if step is _UNKNOWN:
                return None
            if step is not None:
                following.append(step)
                continue
            fields.extend(node.get("properties", {}))
            kinds.append(_kind(node))
        if not following:
            at = ".".join(path[:depth]) or "the output"
            if fields:
                listing = ", ".join(dict.fromkeys(fields))
                return f"{at} has no field {segment!r} (its fields: {listing})"
            return f"{at} is {' or '.join(dict.fromkeys(kinds))}; it has no {segment!r}"
        nodes = following
    return None


_UNKNOWN: dict[str, Any] = {}


def _kind(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(f"a {k}" for k in kind)
    if kind == "array":
        return "a list"
    return f"a {kind}" if kind else "a constant"


def _expand(nodes: list[dict[str, Any]], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow ``$ref`` into ``$defs`` and flatten ``anyOf``/``oneOf``/``allOf``."""
    leaves: list[dict[str, Any]] = []
    stack = list(nodes)
    seen = 0
    while stack and seen < 10_000:
        seen += 1
        node = stack.pop()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref[len("#/$defs/") :])
            stack.append(target if isinstance(target, dict) else _UNKNOWN)
            continue
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            stack.extend(b for b in branches if isinstance(b, dict))
            continue
        every = node.get("allOf")
        if every and len(every) == 1 and isinstance(every[0], dict):
            stack.append(every[0])
            continue
        leaves.append(node)
    return leaves


def _step_into(node: dict[str, Any], segment: str) -> dict[str, Any] | None:
    """The schema below ``segment``; ``_UNKNOWN`` when anything goes; None if
    the segment cannot exist."""
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if not kinds:
        if "properties" in node or "additionalProperties" in node:
            kinds = {"object"}
        elif "items" in node or "prefixItems" in node:
            kinds = {"array"}
        elif "enum" in node or "const" in node:
            return None
        else:
            return _UNKNOWN
    if "object" in kinds:
        props = node.get("properties") or {}
        if segment in props:
            return props[segment] or _UNKNOWN
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return extra or _UNKNOWN
        if extra is True or (
            extra is None and not props and "patternProperties" not in node
        ):
            return _UNKNOWN
    if "array" in kinds and segment.isdigit():
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and int(segment) < len(prefix):
            return prefix[int(segment)] or _UNKNOWN
        items = node.get("items")
        if isinstance(items, dict):
            return items or _UNKNOWN
        if items is None and prefix is None:
            return _UNKNOWN
    if kinds <= _SCALARS | {"object", "array"}:
        return None
    return _UNKNOWN
