"""Reading Elasticsearch's YAML REST test files: setup, teardown, named tests, their steps.

A file is a YAML stream: an optional `setup` and `teardown`, then one document per test,
each a list of one-key steps (`do`, `match`, `set`, `skip`, ...). Only `true`/`false` are
booleans and no scalar becomes a date, as the tests expect of a JSON-minded YAML reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent / "yaml"
Step = tuple[str, Any]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.1 without yes/no/on/off booleans and without timestamps."""


_DROPPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Floats as JSON writes them, exponent without sign included (`3.4028235E38`, `1e300`).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$"),
    list("-+.0123456789"),
)


@dataclass
class Section:
    """Steps of a setup, a teardown or a test."""

    name: str
    steps: list[Step] = field(default_factory=list)


@dataclass
class SuiteFile:
    """One YAML file: its path under the suite's root and its sections."""

    path: str
    setup: Section | None
    teardown: Section | None
    tests: list[Section]


def _steps(raw: Any, where: str) -> list[Step]:
    if not isinstance(raw, list):
        raise ValueError(f"{where}: a section must be a list of steps")
    steps: list[Step] = []
    for item in raw:
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"{where}: a step must be one key, found {item!r}")
        ((kind, body),) = item.items()
        steps.append((str(kind), body))
    return steps


def load(path: Path, root: Path = ROOT) -> SuiteFile:
    """Parse one test file."""
    name = path.relative_to(root).as_posix()
    setup = teardown = None
    tests: list[Section] = []
    for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ValueError(f"{name}: a document must be a mapping")
        for title, body in document.items():
            section = Section(str(title), _steps(body, f"{name} {title}"))
            if title == "setup":
                setup = section
            elif title == "teardown":
                teardown = section
            else:
                tests.append(section)
    return SuiteFile(name, setup, teardown, tests)


def discover(root: Path = ROOT) -> Iterator[SuiteFile]:
    """Every test file under `root`, in path order."""
    for path in sorted(root.rglob("*.yml")):
        yield load(path, root)
