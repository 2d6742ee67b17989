"""The cut points of a power-cut sweep, run on several boards at once (a helper module, not
tests).

Each cut point of a sweep is independent of the others: a fresh copy of the same image, the
run that loses power at write N, then the boots after it. So the points are spread over a
few boards, each an image file of its own (a unix-port board of tests/agent, or a virtual
board of tests/e2e) driven by a thread of its own (the work is done by the processes those
threads start), as many as this machine has processors.
What each point checks is the same as in a loop; the results come back in the order of the
points, and a failure is raised for the first failing point in that order.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

B = TypeVar("B")


def workers() -> int:
    """How many boards a sweep uses: one per processor this process may run on (at most 4)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def each(points: Iterable[int], boards: list[B], fn: Callable[[B, int], Any]) -> list[Any]:
    """[fn(board, n) for n in points], each call on a board no other call is using."""
    free: queue.SimpleQueue[B] = queue.SimpleQueue()
    for b in boards:
        free.put(b)

    def one(n: int) -> Any:
        b = free.get()
        try:
            return fn(b, n)
        finally:
            free.put(b)

    with ThreadPoolExecutor(max_workers=len(boards)) as ex:
        return list(ex.map(one, list(points)))
