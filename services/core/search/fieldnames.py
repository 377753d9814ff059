"""Field names of catalog data that Elasticsearch would refuse in our documents.

Item data is spread into the document next to the fields we add (`document`). Elasticsearch
refuses a document per item for names it cannot map: an empty name or one with an empty part
between dots, a metadata name (`_id`, `_source`, ...), a path that is both a value and an
object (`{"a": 1, "a.b": 2}`, since `a.b` is the field `b` of an object `a`), or one that
turns a field our mapping declares as a value into an object. The API refuses such data with
a 422 before anything is queued, instead of a task that fails after the 202.

Only names are checked here; the size, depth and characters of values are checked apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.core.search.document import CALLER_FIELDS, RESERVED_NAMES

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

_LEAF, _OBJECT = "value", "object"


def _name_problem(name: str, top_level: bool) -> str | None:
    if name == "":
        return "empty field name: Elasticsearch refuses it"
    if not name.strip():
        return "field name of white space only: Elasticsearch refuses it"
    parts = name.split(".")
    if any(part == "" for part in parts):
        return (
            "field name with an empty part between dots (a leading, trailing or doubled '.'): "
            "Elasticsearch cannot tell which object it belongs to"
        )
    if any(not part.strip() for part in parts):
        return "field name with a part of white space only: Elasticsearch refuses it"
    if top_level and name.startswith("_"):
        return (
            "names starting with '_' are reserved for Elasticsearch's metadata fields "
            "(_id, _index, _source, _routing, ...): rename the field"
        )
    if top_level and parts[0] in RESERVED_NAMES:
        return (
            f"{parts[0]!r} is set by the catalog itself ({', '.join(sorted(RESERVED_NAMES))}): "
            "rename the field"
        )
    return None


class _Walk:
    """Walks the data in document order, as Elasticsearch parses it."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        # How each full dotted path is used so far: as a value or as an object.
        self.uses: dict[tuple[str, ...], str] = {
            (name,): _LEAF for name, spec in CALLER_FIELDS.items() if "properties" not in spec
        }

    def use(self, path: tuple[str, ...], kind: str, loc: Loc) -> bool:
        seen = self.uses.setdefault(path, kind)
        if seen == kind:
            return True
        shown = ".".join(path)
        if (len(path) == 1 and path[0] in CALLER_FIELDS) and kind == _OBJECT:
            message = (
                f"{shown!r} holds a {CALLER_FIELDS[path[0]]['type']} value in the catalog's "
                "mapping; it cannot be an object"
            )
        else:
            message = (
                f"{shown!r} is used both as a value and as an object (a dotted name such as "
                "'a.b' is the field 'b' of an object 'a'): Elasticsearch maps a field one way only"
            )
        self.problems.append((loc, message))
        return False

    def object(self, value: Mapping[str, Any], path: tuple[str, ...], loc: Loc) -> None:
        for key, item in value.items():
            name = str(key)
            where = (*loc, name)
            problem = _name_problem(name, top_level=not path)
            if problem is not None:
                self.problems.append((where, problem))
                continue
            parts = tuple(name.split("."))
            # Every part before the last is an object: `a.b` is `b` inside `a`.
            if all(self.use((*path, *parts[:n]), _OBJECT, where) for n in range(1, len(parts))):
                self.value(item, (*path, *parts), where)

    def value(self, value: Any, path: tuple[str, ...], loc: Loc) -> None:
        if value is None:
            return  # Elasticsearch maps nothing for a null
        if isinstance(value, Mapping):
            if self.use(path, _OBJECT, loc):
                self.object(value, path, loc)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.value(item, path, (*loc, index))
        else:
            self.use(path, _LEAF, loc)


def field_name_problems(data: Mapping[str, Any], loc: Loc = ()) -> list[Problem]:
    """Where the data has a field name Elasticsearch would refuse, and why (document order)."""
    walk = _Walk()
    walk.object(data, (), loc)
    return walk.problems


def check_field_names(data: Mapping[str, Any]) -> None:
    """ValueError naming the first field Elasticsearch would refuse."""
    problems = field_name_problems(data)
    if problems:
        where, message = problems[0]
        shown = ".".join(str(part) for part in where)
        raise ValueError(f"data field {shown!r}: {message}")
