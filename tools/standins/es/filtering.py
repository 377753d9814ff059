"""ES's `filter_path` response filtering: dotted paths with `*` and `**`, `-` to exclude."""

from __future__ import annotations

import fnmatch
from typing import Any

_DROP = object()


def _matches(pattern: list[str], path: list[str]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, path[n:]) for n in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], head) and _matches(rest, path[1:])


def _leads_to(pattern: list[str], path: list[str]) -> bool:
    """Whether something below `path` may match `pattern`."""
    for n, part in enumerate(path):
        if n >= len(pattern):
            return False
        if pattern[n] == "**":
            return True
        if not fnmatch.fnmatchcase(part, pattern[n]):
            return False
    return True


def _children(value: Any, path: list[str], keep: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: keep(v, [*path, str(k)]) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not _DROP}
    return [v for v in (keep(item, path) for item in value) if v is not _DROP]


def filter_path(body: Any, paths: list[str]) -> Any:
    """`body` reduced to the paths asked for (and without the `-` excluded ones)."""
    includes = [p.split(".") for p in paths if p and not p.startswith("-")]
    excludes = [p[1:].split(".") for p in paths if p.startswith("-")]

    def include(value: Any, path: list[str]) -> Any:
        if any(_matches(p, path) for p in includes):
            return value
        if not any(_leads_to(p, path) for p in includes) or not isinstance(value, dict | list):
            return _DROP
        kept = _children(value, path, include)
        return kept if kept else _DROP

    def exclude(value: Any, path: list[str]) -> Any:
        if any(_matches(p, path) for p in excludes):
            return _DROP
        return _children(value, path, exclude) if isinstance(value, dict | list) else value

    if includes:
        body = include(body, [])
        if body is _DROP:
            return {}
    if excludes:
        body = exclude(body, [])
    return body
