"""Our memory of deletes, kept because Elasticsearch forgets them.

ES keeps a deleted document's version only for `index.gc_deletes` (60 s by default); after
that an older upsert retried late would bring the document back. We record the version of
every delete per document, and of every delete-all per customer (a watermark); an upsert
that is not newer is refused before it writes, and undoes itself if such a delete was
recorded while it wrote (`writer`). A tombstone is needed only while a write accepted before
it may still run, so tombstones older than every open or failed task are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    CompoundSelect,
    String,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from services.core.db import DriverStatement, rowcount, run_transaction
from services.core.search.versions import SEQ_VERSION_BASE
from services.core.tasklog.clock import db_now, seconds_after
from services.core.tasklog.models import Base, UTCDateTime


class Tombstone(Base):
    """The newest delete version of one document."""

    __tablename__ = "es_tombstones"
    index_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(600), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeleteWatermark(Base):
    """The newest delete-all version of one customer in one index."""

    __tablename__ = "es_delete_watermarks"
    index_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


def _deleted(docs: ColumnElement[bool]) -> CompoundSelect[str, int]:
    """The question every upsert asks twice (before and after its write): the documents'
    tombstones and the customer's watermark, in one round trip."""
    return (
        select(Tombstone.doc_id, Tombstone.version)
        .where(Tombstone.index_name == bindparam("index"), docs)
        .union_all(
            select(literal(None, String()).label("doc_id"), DeleteWatermark.version).where(
                DeleteWatermark.index_name == bindparam("index"),
                DeleteWatermark.customer_id == bindparam("customer"),
            )
        )
    )


# Built once. PostgreSQL takes the ids as one array (an IN list is expanded per call);
# SQLite has no arrays.
_DELETED = DriverStatement(
    _deleted(Tombstone.doc_id == any_(bindparam("docs", type_=ARRAY(String())))),
    elsewhere=_deleted(Tombstone.doc_id.in_(bindparam("docs", expanding=True))),
)


class DeleteMemory:
    """Records and answers 'was this deleted by something newer?'."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _keep_max(self, model: type[Base], rows: list[dict[str, object]]) -> None:
        if not rows:
            return

        def record(session: Session) -> None:
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            table = model.metadata.tables[model.__tablename__]
            stmt = insert(table).values([{**r, "updated_at": db_now()} for r in rows])
            greatest = func.greatest if dialect == "postgresql" else func.max
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[c.name for c in table.primary_key.columns],
                    set_={
                        "version": greatest(table.c.version, stmt.excluded.version),
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
            )

        run_transaction(self._sessions, record)

    def record_deletes(self, index: str, doc_ids: Iterable[str], version: int) -> None:
        """Remember that these documents were deleted at `version` (keeps the newest)."""
        # In one order everywhere, so that two bulk deletes never lock rows crosswise.
        rows: list[dict[str, object]] = [
            {"index_name": index, "doc_id": d, "version": version} for d in sorted(set(doc_ids))
        ]
        self._keep_max(Tombstone, rows)

    def record_delete_all(self, index: str, customer_id: str, version: int) -> None:
        """Remember that all of a customer's documents up to `version` were deleted."""
        row: dict[str, object] = {
            "index_name": index,
            "customer_id": customer_id,
            "version": version,
        }
        self._keep_max(DeleteWatermark, [row])

    def deleted_versions(self, index: str, customer_id: str, doc_ids: list[str]) -> dict[str, int]:
        """For each document, the newest delete version that covers it (absent: none)."""
        params = {"index": index, "docs": doc_ids, "customer": customer_id}
        rows = _DELETED.run(self._sessions, params).rows
        found = {doc: version for doc, version in rows if doc is not None}
        watermark = max((version for doc, version in rows if doc is None), default=None)
        covered: dict[str, int] = {}
        for doc in doc_ids:
            candidates = [v for v in (found.get(doc), watermark) if v is not None]
            if candidates:
                covered[doc] = max(candidates)
        return covered

    def prune(self, *, below: int, legacy_before: datetime, quiet_s: float = 3600.0) -> int:
        """Drop tombstones no write still to run can be older than; how many went.

        `below` is the version of the oldest task that may still run (or be retried by
        hand). Tombstones must also be `quiet_s` old, so that a write whose number was drawn
        but whose acceptance was not yet committed when `below` was read is still covered.
        Tombstones of versions from before the acceptance-order rule go once every task of
        that time is gone (`legacy_before`: the longest retention plus the retry budget).
        """
        quiet = seconds_after(db_now(), -quiet_s)
        current = delete(Tombstone).where(
            Tombstone.version >= SEQ_VERSION_BASE,
            Tombstone.version < below,
            Tombstone.updated_at < quiet,
        )
        legacy = delete(Tombstone).where(
            Tombstone.version < SEQ_VERSION_BASE, Tombstone.updated_at < legacy_before
        )
        return run_transaction(
            self._sessions,
            lambda session: rowcount(session.execute(current)) + rowcount(session.execute(legacy)),
        )
