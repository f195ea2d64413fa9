"""Independent pure computations spread over forked processes (verifying a bundle, its paired tests): the children
inherit the parent's loaded data instead of receiving it, so nothing large is pickled."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Sequence

_TASK: Callable[[Any], Any] | None = None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _call(item: Any) -> Any:
    return _TASK(item)


def fork_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
             on_result: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """``[fn(item) for item in items]`` in order, over ``workers`` forked processes (default: the cores available; in
    this process where there is one worker, one item or no fork). ``on_result(item, result)`` as each arrives (progress)."""
    global _TASK
    workers = available_cores() if workers is None else max(1, int(workers))
    items = list(items)
    if workers <= 1 or len(items) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        out = []
        for item in items:
            out.append(fn(item))
            if on_result:
                on_result(item, out[-1])
        return out
    _TASK = fn
    try:
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("fork")) as pool:
            out = []
            for item, result in zip(items, pool.map(_call, items)):
                out.append(result)
                if on_result:
                    on_result(item, result)
            return out
    finally:
        _TASK = None


def captured(fn: Callable[[Any], Any], expected: tuple[type[BaseException], ...]) -> Callable[[Any], Any]:
    """``fn`` returning the ``expected`` exceptions it raises instead of raising them (a pool would stop at the first)."""
    def run(item: Any) -> Any:
        try:
            return fn(item)
        except expected as exc:
            return exc

    return run


def chunks(indices: Iterable[int], workers: int, most: int = 64) -> list[list[int]]:
    """``indices`` in chunks small enough to balance ``workers`` processes."""
    indices = list(indices)
    size = max(1, min(most, len(indices) // (4 * max(1, workers)) or 1))
    return [indices[i:i + size] for i in range(0, len(indices), size)]
