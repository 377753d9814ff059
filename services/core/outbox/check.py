"""Is a caller's database the task log the workers read? Asked once per caller engine.

A row written into a database the workers do not read would never run, and nothing would
say so; a database with no task log would fail inside the caller's transaction with a bare
"relation does not exist". Both are refused before anything is written, with what to do.
"""

from __future__ import annotations

import threading
import weakref

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from services.core.tasklog.models import TaskLogInstance


class NoTaskLog(RuntimeError):
    """The caller's session is not bound to this deployment's task log."""


_EXISTS = text("SELECT to_regclass(:log) IS NOT NULL, to_regclass(:instance) IS NOT NULL")
_INSTANCE = select(TaskLogInstance.instance_id)
_MIGRATE = "python -m services.core.tasklog.migrate upgrade"


class TaskLogCheck:
    """Checks caller connections against the task log of `sessions` (DATABASE_URL)."""

    def __init__(self, sessions: sessionmaker[Session], schema: str) -> None:
        self._sessions = sessions
        self._schema = schema
        self._ours: str | None = None
        self._checked: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._guard = threading.Lock()

    def __call__(self, connection: Connection) -> None:
        """Return if `connection`'s database is our task log; else raise NoTaskLog."""
        if connection.engine in self._checked:
            return
        where = connection.engine.url.render_as_string(hide_password=True)
        if connection.dialect.name != "postgresql":
            raise NoTaskLog(
                f"the session's database ({where}) is {connection.dialect.name}: a write "
                "joins the caller's transaction on PostgreSQL only"
            )
        place = f'"{self._schema}".' if self._schema else ""
        has_log, has_instance = connection.execute(
            _EXISTS, {"log": f"{place}task_log", "instance": f"{place}task_log_instance"}
        ).one()
        schema = f" in schema {self._schema!r} (TASKLOG_SCHEMA)" if self._schema else ""
        if not has_log:
            raise NoTaskLog(
                f"the session's database ({where}) has no task log{schema}: create it there "
                f"with `{_MIGRATE}` (DATABASE_URL pointing at that database; TASKLOG_SCHEMA "
                "keeps it apart from your tables), or pass a session of the task log's database"
            )
        if not has_instance:
            raise NoTaskLog(
                f"the task log in the session's database ({where}) predates migration 0010: "
                f"run `{_MIGRATE}`"
            )
        options = {"schema_translate_map": {None: self._schema}} if self._schema else {}
        theirs = connection.execute(_INSTANCE, execution_options=options).scalar_one()
        if theirs != self._our_instance():
            raise NoTaskLog(
                f"the session's database ({where}) holds a task log, but not the one this "
                "deployment's workers read (DATABASE_URL, TASKLOG_SCHEMA): its tasks would "
                "never run"
            )
        with self._guard:
            self._checked.add(connection.engine)

    def _our_instance(self) -> str:
        if self._ours is None:
            with self._sessions() as session:
                self._ours = str(session.execute(_INSTANCE).scalar_one())
        return self._ours
