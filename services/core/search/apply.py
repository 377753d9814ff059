"""Executes an accepted catalog payload against Elasticsearch (the worker's side).

Payloads are built in services/core/search/payloads.py; this module is the one that writes,
so the API never imports it.
"""

from __future__ import annotations

from typing import Any

from services.core.errors import WaitForInFlight
from services.core.search.catalog import Kind, Operation
from services.core.search.versions import write_version
from services.core.search.writer import SUPERSEDED, BulkProgress, CatalogWriter, Item


async def execute(
    writer: CatalogWriter,
    kind: Kind,
    op: Operation,
    payload: dict[str, Any],
    *,
    seq: int,
    api_key: str | None = None,
    progress: BulkProgress | None = None,
    fence: bool = False,
) -> dict[str, Any]:
    """Carry out a catalog payload accepted as number `seq` against Elasticsearch.

    `fence`: an earlier attempt may have written unseen (see `writer`). A delete-all sweeps
    once, raises WaitForInFlight, and sweeps again when called after that wait.
    """
    customer = payload["customer_id"]
    progress = progress or BulkProgress()
    version = write_version(payload, seq)
    if payload.get("superseded"):
        # Refused at acceptance: an older caller version than one accepted before it.
        return {"result": SUPERSEDED, "reason": payload["superseded"]}
    if op is Operation.UPSERT:
        item = Item(payload["item_id"], payload["data"], version)
        return await writer.upsert(
            kind,
            customer,
            item,
            with_embedding=payload["with_embedding"],
            api_key=api_key,
            fence=fence,
        )
    if op is Operation.DELETE:
        return await writer.delete(kind, customer, payload["item_id"], version)
    if op is Operation.BULK_UPSERT:
        items = [
            Item(i["id"], i["data"], write_version(i, seq), refused=bool(i.get("superseded")))
            for i in payload["items"]
        ]
        return await writer.bulk_upsert(
            kind,
            customer,
            items,
            progress,
            with_embedding=payload["with_embedding"],
            api_key=api_key,
            fence=fence,
        )
    if op is Operation.BULK_DELETE:
        return await writer.bulk_delete(
            kind,
            customer,
            payload["ids"],
            version,
            progress,
            refused=frozenset(payload.get("superseded_ids") or ()),
        )
    return await _delete_all(writer, kind, customer, version, progress)


async def _delete_all(
    writer: CatalogWriter, kind: Kind, customer: str, version: int, progress: BulkProgress
) -> dict[str, Any]:
    swept = progress.steps.get("swept")
    if swept is None:
        first = await writer.delete_all(kind, customer, version)
        progress.steps["swept"] = int(first["deleted"])
        progress.persist()
        raise WaitForInFlight(
            writer.settle_s,
            "delete-all swept once; it sweeps again once the writes in flight when it "
            "started have landed",
        )
    last = await writer.delete_all(kind, customer, version, again=True)
    return {**last, "deleted": int(swept) + int(last["deleted"])}
