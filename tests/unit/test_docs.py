"""The README says what the code declares: the process table and the layer order."""

from __future__ import annotations

from services.core import processes
from tests.support.procs import ROOT

README = ROOT / "README.md"


def _section(title: str) -> list[str]:
    """The lines of one `## title` section of the README."""
    lines = README.read_text().splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start:end]


def test_readme_process_table_is_the_process_table() -> None:
    table = [line for line in _section("The processes") if line.startswith("|")]
    assert "\n".join(table) == processes.markdown_table()
