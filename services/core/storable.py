"""What the task log, an answer and a downstream can hold, checked at the edge and shown safely.

Caller data travels through PostgreSQL (json and text columns), a Redis message, a worker's
pool (pickled) and a downstream, and comes back in status answers:
- PostgreSQL's json refuses NaN and infinities (Python's parser reads `1e400` as one);
- PostgreSQL's text refuses NUL, and downstream identifiers and fields choke on it;
- a lone surrogate (`"\\udfff"` is valid JSON) cannot be encoded as UTF-8, so an answer that
  holds one cannot be written;
- a value nested hundreds of levels deep stops Python's recursive code: pickling a message
  to a worker's pool, serializers, redaction.
`problems` finds all of these (iteratively: it must not recurse into what it checks);
`shown` turns whatever was stored before into a value every answer can render.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from typing import Any

Path = tuple[str | int, ...]
# Shown in place of what lies deeper than an answer shows.
TOO_DEEP = "<nested too deep to show>"


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if "\x00" in text:
        return "NUL characters (\\u0000) cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800-\\udfff without its pair) is not text"
    return None


def problems(value: Any, *, max_depth: int, path: Path = ()) -> list[tuple[Path, str]]:
    """Where `value` (a JSON value) holds what cannot be stored, and why; [] if nothing.

    Depth counts objects and arrays: `{"a": 1}` is 1 deep.
    """
    found: list[tuple[Path, str]] = []
    stack: list[tuple[Path, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth + 1 > max_depth:
                found.append((where, f"nested deeper than DATA_MAX_DEPTH ({max_depth}) levels"))
                continue
            if isinstance(item, Mapping):
                for key, child in item.items():
                    key_problem = text_problem(str(key))
                    if key_problem is not None:
                        found.append(((*where, str(key)), f"field name: {key_problem}"))
                        continue
                    stack.append(((*where, str(key)), child, depth + 1))
            else:
                stack.extend(((*where, i), child, depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                found.append((where, problem))
        elif isinstance(item, float) and not math.isfinite(item):
            found.append((where, "NaN and infinities (also numbers past 1.8e308) are not JSON"))
        elif item is not None and not isinstance(item, bool | int | float):
            found.append((where, f"{type(item).__name__} is not a JSON value"))
    return sorted(found, key=lambda p: [str(part) for part in p[0]])


def size_problem(value: Any, *, max_bytes: int) -> str | None:
    """Why `value` (checked by `problems`) is too large to carry, or None."""
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > max_bytes:
        return f"{size} bytes as JSON, more than DATA_MAX_BYTES ({max_bytes})"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown_text(text: str) -> str:
    # A lone surrogate becomes U+FFFD: the rest of the text stays readable.
    return _SURROGATE.sub("\ufffd", text)


def shown(value: Any, *, max_depth: int = 64) -> Any:
    """`value` as every answer can render it: deeper levels, lone surrogates and non-finite
    numbers replaced, never an exception whatever was stored."""
    if isinstance(value, str):
        return _shown_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if not isinstance(value, Mapping | list):
        return value
    if max_depth <= 0:
        return TOO_DEEP
    if isinstance(value, Mapping):
        return {_shown_text(str(k)): shown(v, max_depth=max_depth - 1) for k, v in value.items()}
    return [shown(v, max_depth=max_depth - 1) for v in value]


_EXCERPT = reprlib.Repr()
_EXCERPT.maxlevel = 3
_EXCERPT.maxdict = _EXCERPT.maxlist = 4
_EXCERPT.maxstring = _EXCERPT.maxother = 80


def excerpt(value: Any, limit: int = 120) -> str:
    """A short, renderable excerpt of an input, for error answers (never the whole input)."""
    # reprlib stops at a few levels and items, whatever the size or depth of the input.
    text = value[: limit + 1] if isinstance(value, str) else _EXCERPT.repr(value)
    text = _shown_text(text)
    return text if len(text) <= limit else f"{text[:limit]}..."
