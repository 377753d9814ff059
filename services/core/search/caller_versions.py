"""Caller versions, checked when a catalog write is accepted.

For each item we remember the highest version a caller gave (explicit `version`, or the
item's `updated_at`). A write carrying a lower one than a write accepted before it, for the
same item and from the same source, is refused: it is marked `superseded` in its payload at
acceptance (in the transaction that records the task, so the memory never holds a version of
a write that was not accepted) and the worker does not send it. A delete of one item does not
clear its memory; a delete-all clears the memory of every item of its customer and kind, in
the transaction that accepts it: an item written again after it starts over, whatever
version its caller starts from (its writes accepted before the delete-all are removed by it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, delete, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.core.enqueue import on_accept
from services.core.search import versions
from services.core.search.catalog import KINDS, Kind, Operation, doc_id
from services.core.tasklog.clock import db_now
from services.core.tasklog.models import Base, UTCDateTime
from services.core.tasklog.repository import BeforeInsert

REFUSED = "a write with a newer caller version for this item was accepted before it"


class CallerVersionRow(Base):
    """The highest caller version accepted for one item."""

    __tablename__ = "es_caller_versions"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(600), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(BigInteger)
    version_source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_es_caller_versions_customer", "kind", "customer_id"),)


def record(
    session: Session,
    kind: Kind,
    customer_id: str,
    entries: Iterable[tuple[str, versions.CallerVersion]],
) -> set[str]:
    """Remember caller versions of items (doc id, version); the doc ids that were refused."""
    rows = [
        {
            "kind": kind.plural,
            "doc_id": key,
            "customer_id": customer_id,
            "version": v.value,
            "version_source": v.source,
            "updated_at": db_now(),
        }
        for key, v in entries
    ]
    if not rows:
        return set()
    table = CallerVersionRow.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(CallerVersionRow).values(rows)
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.kind, table.c.doc_id],
        set_={
            "version": stmt.excluded.version,
            "version_source": stmt.excluded.version_source,
            "updated_at": stmt.excluded.updated_at,
        },
        # Versions of another source are not comparable: the newer write's source wins.
        where=or_(
            table.c.version <= stmt.excluded.version,
            table.c.version_source != stmt.excluded.version_source,
        ),
    ).returning(table.c.doc_id)
    accepted = {str(d) for d in session.execute(upsert).scalars()}
    return {str(row["doc_id"]) for row in rows} - accepted


def _check(session: Session, kind: Kind, op: Operation, payload: dict[str, Any]) -> dict[str, Any]:
    customer = payload["customer_id"]
    if op in (Operation.UPSERT, Operation.DELETE):
        version = versions.from_payload(payload)
        if version is None:
            return payload
        key = doc_id(customer, payload["item_id"])
        if record(session, kind, customer, [(key, version)]):
            return {**payload, "superseded": REFUSED}
        return payload
    if op is Operation.BULK_UPSERT:
        entries = [
            (doc_id(customer, item["id"]), v)
            for item in payload["items"]
            if (v := versions.from_payload(item)) is not None
        ]
        refused = record(session, kind, customer, entries)
        if not refused:
            return payload
        items = [
            {**i, "superseded": REFUSED} if doc_id(customer, i["id"]) in refused else i
            for i in payload["items"]
        ]
        return {**payload, "items": items}
    if op is Operation.BULK_DELETE:
        version = versions.from_payload(payload)
        if version is None:
            return payload
        entries = [(doc_id(customer, i), version) for i in payload["ids"]]
        refused = record(session, kind, customer, entries)
        if not refused:
            return payload
        return {
            **payload,
            "superseded_ids": sorted(i for i in payload["ids"] if doc_id(customer, i) in refused),
        }
    return payload


def _carries_versions(payload: dict[str, Any]) -> bool:
    # Only writes that carry a caller version have anything to check (or record).
    if versions.from_payload(payload) is not None:
        return True
    return any(versions.from_payload(item) is not None for item in payload.get("items", ()))


def _hook(kind: Kind, op: Operation) -> BeforeInsert:
    def check(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        return _check(session, kind, op, payload)

    return BeforeInsert(applies=_carries_versions, run=check)


def forget(session: Session, kind: Kind, customer_id: str) -> None:
    """Clear the caller versions of a customer's items of one kind (a delete-all)."""
    session.execute(
        delete(CallerVersionRow).where(
            CallerVersionRow.kind == kind.plural, CallerVersionRow.customer_id == customer_id
        )
    )


def _reset(kind: Kind) -> BeforeInsert:
    def clear(session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        forget(session, kind, payload["customer_id"])
        return payload

    return BeforeInsert(applies=lambda _: True, run=clear)


# Every catalog write that can carry a caller version is checked when it is accepted; a
# delete-all starts its customer's versions over.
for _kind in KINDS.values():
    for _op in (Operation.UPSERT, Operation.DELETE, Operation.BULK_UPSERT, Operation.BULK_DELETE):
        on_accept([_kind.task_name(_op)], _hook(_kind, _op))
    on_accept([_kind.task_name(Operation.DELETE_ALL)], _reset(_kind))
