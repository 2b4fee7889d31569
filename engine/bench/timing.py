"""The one timing helper every benchmark uses: the best of N timed calls.

On a shared machine the fastest run is the one least disturbed, so every figure is the
best of several; work that is not being measured (building tables, a warm-up) stays
outside the timed call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(run: Callable[[Any], object], setup: Callable[[], Any] | None = None) -> float:
    """Seconds one call of ``run(setup())`` takes, ``setup`` untimed (``run()`` when
    there is no setup)."""
    argument = setup() if setup is not None else None
    start = time.perf_counter()
    run(argument) if setup is not None else run()
    return time.perf_counter() - start


def best_seconds(run: Callable, *, repeats: int = 3, setup: Callable[[], Any] | None = None,
                 warm_up: bool = True) -> float:
    """The fastest of ``repeats`` timed calls (after one untimed warm-up call)."""
    if warm_up:
        run(setup()) if setup is not None else run()
    return min(timed(run, setup) for _ in range(repeats))


def best_rate(operations: int, run: Callable, *, repeats: int = 3,
              setup: Callable[[], Any] | None = None, warm_up: bool = True) -> float:
    """Operations per second of the fastest of ``repeats`` timed calls of ``run``."""
    return operations / best_seconds(run, repeats=repeats, setup=setup, warm_up=warm_up)
