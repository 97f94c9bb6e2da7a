"""Median wall-clock times of several calls, after warm-up, timed in turns."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable


def interleaved_median_ms(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 2, seed: int = 0
) -> dict[str, float]:
    """Median milliseconds of each call, timed one of each per round, in an order shuffled every round: load on
    the machine that comes and goes, and whatever one call leaves behind for the next (threads still spinning,
    caches), fall on every call alike."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    rng = random.Random(seed)
    order = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(times) for name, times in samples.items()}
