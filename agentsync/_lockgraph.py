"""Graph helpers for :mod:`agentsync.locks`: learned lock order and wait-for chains.

Two graphs matter to a lock registry. The *learned order* graph has an edge
``A -> B`` for every time a thread took ``B`` while holding ``A``; a cycle in it
is a potential deadlock even if no run has hung yet. The *wait-for* graph links
a waiting thread to the lock it waits for and that lock to its holder; a cycle
in it is a deadlock happening now.

Nothing here takes a lock: callers hold the registry's own lock while they walk.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["LockEdge", "LockInversion"]

_N = TypeVar("_N", bound=Hashable)
_T = TypeVar("_T", bound=Hashable)


@dataclass(frozen=True)
class LockEdge:
    """One learned step of lock order: ``taken`` was asked for while ``held`` was held.

    Attributes:
        held: the lock already held.
        taken: the lock asked for next.
        site: ``file:line`` of the code that asked, the first frame outside the
            lock registry.
        thread: the name of the thread that did it, the first time.
    """

    held: str
    taken: str
    site: str
    thread: str

    def __str__(self) -> str:
        return f"{self.taken!r} taken while holding {self.held!r} at {self.site}"


@dataclass(frozen=True)
class LockInversion:
    """A potential deadlock: the learned lock order has a cycle.

    Two threads that follow the edges of the cycle at the same time can each
    hold a lock the other one waits for.

    Attributes:
        edges: the cycle, starting with the edge seen last (the one that closed
            it); each edge's ``taken`` is the next edge's ``held``.
    """

    edges: tuple[LockEdge, ...]

    @property
    def locks(self) -> tuple[str, ...]:
        """The locks around the cycle, the first one repeated at the end."""
        return (*(edge.held for edge in self.edges), self.edges[0].held)

    @property
    def sites(self) -> tuple[str, ...]:
        """The call site of each edge, in the order of :attr:`edges`."""
        return tuple(edge.site for edge in self.edges)

    def __str__(self) -> str:
        steps = "; ".join(str(edge) for edge in self.edges)
        return "potential deadlock: " + " -> ".join(self.locks) + f" ({steps})"


def call_site(internal: frozenset[str]) -> str:
    """Return ``file:line`` of the innermost frame whose file is not in ``internal``.

    Args:
        internal: the file names of the lock machinery, skipped while walking out.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in internal:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def find_path(
    start: _N, goal: _N, edges: Callable[[_N], Mapping[_N, LockEdge]]
) -> list[LockEdge] | None:
    """Return the learned edges of a shortest path from ``start`` to ``goal``.

    Args:
        start: the node to walk from.
        goal: the node to reach.
        edges: gives a node's outgoing edges, keyed by the node they lead to.

    Returns:
        The edges in walking order, or None when ``goal`` cannot be reached.
    """
    came_from: dict[_N, tuple[_N, LockEdge] | None] = {start: None}
    queue: deque[_N] = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path: list[LockEdge] = []
            step = came_from[node]
            while step is not None:
                path.append(step[1])
                step = came_from[step[0]]
            path.reverse()
            return path
        for successor, edge in list(edges(node).items()):
            if successor not in came_from:
                came_from[successor] = (node, edge)
                queue.append(successor)
    return None


def wait_chain(
    start: _T,
    lock: _N,
    holder_of: Callable[[_N], _T | None],
    waits_for: Callable[[_T], _N | None],
) -> tuple[list[object], bool]:
    """Follow the wait-for graph from a thread that waits for ``lock``.

    The chain alternates threads and locks: ``start`` waits for ``lock``, held
    by a thread that waits for another lock, and so on, until a holder waits for
    nothing, a lock has no known holder, or a thread comes round again.

    Args:
        start: the waiting thread.
        lock: the lock it waits for.
        holder_of: gives the thread holding a lock, or None if unknown or free.
        waits_for: gives the lock a thread waits for, or None.

    Returns:
        The chain, and whether it closes on a thread already in it (a deadlock);
        a closed chain ends with that thread repeated.
    """
    chain: list[object] = [start]
    seen = {start}
    current: _N | None = lock
    while current is not None:
        chain.append(current)
        holder = holder_of(current)
        if holder is None:
            return chain, False
        chain.append(holder)
        if holder in seen:
            return chain, True
        seen.add(holder)
        current = waits_for(holder)
    return chain, False
