"""Objects made once per process, after the pool's fork."""

from __future__ import annotations

import functools
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
