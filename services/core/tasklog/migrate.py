"""Schema migrations of the task log, runnable without an alembic.ini.

python -m services.core.tasklog.migrate upgrade [REVISION]
python -m services.core.tasklog.migrate downgrade REVISION
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from services.core.config import get_settings
from services.core.db import ensure_sqlite_dir

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None, schema: str | None = None) -> Config:
    """Alembic configuration for the task log at `url`, in `schema` (default: the settings')."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # configparser interpolates "%", which URL-encoded passwords contain.
    config.set_main_option(
        "sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%")
    )
    if schema is not None:
        config.set_main_option("tasklog_schema", schema)
    return config


def upgrade(url: str | None = None, revision: str = "head", *, schema: str | None = None) -> None:
    """Bring the task log up to `revision` (in `schema`, default TASKLOG_SCHEMA)."""
    if url is None:
        get_settings().require("DATABASE_URL")
    target = url or get_settings().database_url
    ensure_sqlite_dir(target)  # Alembic's own engine would not create it
    command.upgrade(alembic_config(target, schema), revision)


def downgrade(url: str | None, revision: str, *, schema: str | None = None) -> None:
    """Take the task log down to `revision` ("base" removes it)."""
    command.downgrade(alembic_config(url, schema), revision)


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    if not argv or argv[0] not in {"upgrade", "downgrade"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "upgrade":
        upgrade(None, argv[1] if len(argv) > 1 else "head")
    elif len(argv) < 2:
        print("downgrade needs a revision (for example: base)", file=sys.stderr)
        return 2
    else:
        downgrade(None, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
