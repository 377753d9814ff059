"""The catalog table: entity kinds x operations -> task names, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.core.taskdefs import Downstream, Ordering, Queue, TaskSpec, register


class Operation(StrEnum):
    """What a catalog task does."""

    UPSERT = "upsert"
    DELETE = "delete"
    BULK_UPSERT = "bulk_upsert"
    BULK_DELETE = "bulk_delete"
    DELETE_ALL = "delete_all"


BULK_OPERATIONS = frozenset({Operation.BULK_UPSERT, Operation.BULK_DELETE, Operation.DELETE_ALL})


@dataclass(frozen=True)
class Kind:
    """An entity kind: its names in task names, URLs and indices."""

    singular: str  # product
    plural: str  # products (URL segment and index base name)

    def task_name(self, op: Operation) -> str:
        """The plan's task name, e.g. es_upsert_product, es_bulk_delete_products."""
        noun = self.plural if op in BULK_OPERATIONS else self.singular
        return f"es_{op.value}_{noun}"

    def spec(self, op: Operation) -> TaskSpec:
        """The task spec of one operation on this kind."""
        # Bulk work gets the plan's 300 s; single writes fail over to a retry much sooner.
        soft, hard = (240, 300) if op in BULK_OPERATIONS else (50, 60)
        return TaskSpec(
            self.task_name(op),
            Queue.ES,
            soft_time_limit_s=soft,
            time_limit_s=hard,
            downstreams=(Downstream.ELASTICSEARCH,),
            optional_downstreams=(("with_embedding", Downstream.EMBEDDINGS),),
            # Every write of a customer's items is in one scope, so that a delete-all waits
            # for the earlier ones still unfinished; the others are ordered by version.
            ordering=Ordering(f"es_{self.plural}", None, waits=op is Operation.DELETE_ALL),
            versioned=True,
        )


PRODUCTS = Kind("product", "products")
SERVICES = Kind("service", "services")
ACCESSORIES = Kind("accessory", "accessories")
KINDS: dict[str, Kind] = {k.plural: k for k in (PRODUCTS, SERVICES, ACCESSORIES)}

register(*(kind.spec(op) for kind in KINDS.values() for op in Operation))


def kind_of(plural: str) -> Kind:
    """The kind named by its plural (the URL segment)."""
    try:
        return KINDS[plural]
    except KeyError:
        raise ValueError(f"unknown kind {plural!r}; known: {', '.join(KINDS)}") from None


def doc_id(customer_id: str, item_id: str) -> str:
    """Document id of an item; customer ids hold no ':' so the first one splits them."""
    return f"{customer_id}:{item_id}"
