"""The one cycle check and topological order of the rule language: segment groups that refer to each
other, segments within a group, and the jumps of a journey's steps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def find_cycle(graph: Mapping[Any, Sequence[Any]], order: Iterable[Any]) -> list[Any] | None:
    """The first cycle of `graph` met by a depth-first search from the nodes in `order`, as a node list
    ending with its first node (`[a, b, a]`), or None."""
    state: dict[Any, int] = {}
    stack: list[Any] = []

    def visit(node: Any) -> list[Any] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in order:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def topological(nodes: Sequence[Any], deps: Mapping[Any, Sequence[Any]]) -> list[Any]:
    """Dependencies first, otherwise the input order (graph known to be acyclic)."""
    done: set[Any] = set()
    out: list[Any] = []

    def visit(node: Any) -> None:
        if node in done:
            return
        done.add(node)
        for dep in deps.get(node, ()):
            visit(dep)
        out.append(node)

    for node in nodes:
        visit(node)
    return out
