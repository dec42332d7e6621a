"""Causal order of one run's events: every parent before its children; among events whose parents are already
placed, the earlier timestamp first, then the smaller log index. Parents are matched by event_id within the
events given; a parent that is not among them (the run was started from another run, or the parent event was
never logged) leaves its child a root, and the link is reported, not invented.

Kahn's algorithm with a heap keyed by (timestamp, index): O(n log n), deterministic for any input order. Should
the events hold a cycle (only a producer bug or a forgery can make one, since a child names its parent, which
must exist first), the events on it are placed last, in (timestamp, index) order, and reported.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    index: int
    event_id: str
    parent_event_id: str | None
    timestamp: int  # Unix ms


@dataclass(frozen=True)
class Ordering:
    order: list[int]  # positions into the input, in causal order
    external_parents: dict[int, str]  # input position -> parent event_id not among the events
    cycles: list[int]  # input positions of events on or behind a cycle (placed last)


def causal_order(nodes: Sequence[Node]) -> Ordering:
    by_id: dict[str, int] = {}
    for position in sorted(range(len(nodes)), key=lambda p: nodes[p].index):
        by_id.setdefault(nodes[position].event_id, position)  # the first-logged event wins a duplicated id
    children: dict[int, list[int]] = {}
    waiting = [0] * len(nodes)
    external: dict[int, str] = {}
    ready: list[tuple[int, int, int]] = []
    for position, node in enumerate(nodes):
        parent = node.parent_event_id
        parent_position = by_id.get(parent) if parent is not None else None
        if parent is not None and parent_position is None:
            external[position] = parent
        if parent_position is None:
            heapq.heappush(ready, (node.timestamp, node.index, position))
        else:
            children.setdefault(parent_position, []).append(position)
            waiting[position] = 1
    order: list[int] = []
    while ready:
        _, _, position = heapq.heappop(ready)
        order.append(position)
        for child in children.get(position, ()):
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, (nodes[child].timestamp, nodes[child].index, child))
    placed = set(order)
    stuck = sorted((p for p in range(len(nodes)) if p not in placed),
                   key=lambda p: (nodes[p].timestamp, nodes[p].index))
    return Ordering(order + stuck, external, stuck)
