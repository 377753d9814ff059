"""Objects made once per process, after the pool's fork."""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_process(build: Callable[[], T]) -> Callable[[], T]:
    """`build` as a getter that makes its value once in each process.

    A prefork pool process must not use what its parent made before the fork (a database
    pool, an event loop, an HTTP or Redis client shares sockets with the parent): each process
    builds its own on first use.
    """
    made: dict[int, T] = {}

    @functools.wraps(build)
    def get() -> T:
        pid = os.getpid()
        if pid not in made:
            made[pid] = build()
        return made[pid]

    return get


def freeze_startup_heap() -> None:
    """Keep what start-up made out of every later garbage collection.

    A process's imports and long-lived objects (modules, classes, settings, pools) are most
    of its heap, and a full collection walks all of them: about 80 ms for the API's 165,000
    objects on the benchmark machine, a stall of every request in flight, which showed in
    the enqueue benchmark's p99. They live as long as the process, so they go to the
    permanent generation (gc.freeze) and later collections walk only what was made since.
    Called once start-up is done; a prefork worker calls it before its pool forks, so the
    pool processes inherit the frozen heap (and its pages stay shared, copy-on-write).
    """
    gc.collect()
    gc.freeze()
