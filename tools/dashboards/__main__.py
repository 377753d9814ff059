"""Write the dashboards where the chart ships them: python -m tools.dashboards [DIR]."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tools.dashboards.build import all_dashboards

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "charts/durable-writes/files/dashboards"


def render(board: dict[str, object]) -> str:
    """The stable text of a dashboard file."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """Regenerate every dashboard file; stale files of ours are removed."""
    target = Path(argv[0]) if argv else TARGET
    target.mkdir(parents=True, exist_ok=True)
    boards = all_dashboards()
    for stale in set(p.name for p in target.glob("*.json")) - set(boards):
        (target / stale).unlink()
    for name, board in boards.items():
        (target / name).write_text(render(board))
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
