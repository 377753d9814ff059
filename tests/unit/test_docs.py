"""The README says what the code declares: the process table and the layer order."""

from __future__ import annotations

import configparser

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


def _importlinter_layers(contract: str) -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    lines = config[f"importlinter:contract:{contract}"]["layers"].strip().splitlines()
    return [line.strip() for line in lines]


def test_readme_layer_order_is_the_importlinter_order() -> None:
    section = _section("Layout")
    blocks = [i for i, line in enumerate(section) if line.startswith("```")]
    # The second code block of the section is the layer order.
    start, end = blocks[2], blocks[3]
    assert section[start + 1 : end] == _importlinter_layers("core")


def test_readme_layout_names_folders_that_exist() -> None:
    section = _section("Layout")
    blocks = [i for i, line in enumerate(section) if line.startswith("```")]
    for line in section[blocks[0] + 1 : blocks[1]]:
        path = line.split()[0]
        assert (ROOT / path).exists(), path
    for core in (ROOT / "services/core").iterdir():
        if core.is_dir() and (core / "__init__.py").exists():
            assert any(line.startswith(f"services/core/{core.name}/") for line in section), core


def _claim_bullets(lines: list[str], heading: str) -> list[str]:
    """The bullet list that follows the line containing `heading`, one entry per bullet."""
    start = next(i for i, line in enumerate(lines) if heading in line) + 1
    while not lines[start].startswith("- "):
        start += 1
    bullets: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        if line.startswith("- "):
            bullets.append(line)
        else:
            bullets[-1] += " " + line.strip()
    return bullets


def test_the_es_standin_claim_is_listed_alike_in_its_docstring_and_the_readme() -> None:
    from tools.standins import elasticsearch
    from tools.standins.es.claim import claim_lines

    docstring = (elasticsearch.__doc__ or "").splitlines()
    readme = README.read_text().splitlines()
    assert _claim_bullets(docstring, "The claim (`tools/standins/es/claim.py`") == claim_lines()
    assert _claim_bullets(readme, "Its claim is declared once") == claim_lines()
