"""One timing helper for every benchmark module."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def seconds(fn: Callable[[], object], repeats: int = 3, warmup: bool = True, best: bool = False) -> float:
    """Wall seconds of `fn()`: the median (or, with `best`, the minimum) of `repeats` timed calls, after one
    untimed warm-up call (imports, caches, allocator) unless `warmup` is False."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) if best else statistics.median(times)
