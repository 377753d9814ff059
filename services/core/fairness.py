"""Fair share per customer and queue: the bound, the weights, and whose turn comes next.

A customer's outstanding work on a queue (tasks with a broker message, running, or held for
a breaker, a backoff or a rate-limit window) is bounded. Past the bound, its further writes
are accepted at once but wait in the task log (`fair_share`), and they are released as the
customer's outstanding work finishes: each finished task hands its place to the customer's
next waiting one, and the releaser gives the places that come free otherwise in weighted
round robin across customers. The SQL lives in `tasklog.fairshare`; this module is the policy.

`FAIR_SHARE_WEIGHTS` gives a customer more: weight w multiplies its bound and gives it w turns
for each turn of a customer of weight 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from services.core.ids import CUSTOMER_ID_PATTERN
from services.core.taskdefs import Queue

__all__ = ["FairShare", "FairShareSyntaxError", "interleave", "parse_weights"]

T = TypeVar("T")
_CUSTOMER = re.compile(CUSTOMER_ID_PATTERN)
# Queues whose writes belong to customers; upkeep (maintenance) is never made to wait.
FAIR_QUEUES = frozenset({Queue.ES, Queue.HTTP})


class FairShareSyntaxError(ValueError):
    """A FAIR_SHARE_WEIGHTS value that cannot be read."""


def parse_weights(text: str) -> dict[str, float]:
    """'big-shop=4, tiny=0.5' as {customer: weight}; '' means every customer weighs 1."""
    weights: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        customer, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not _CUSTOMER.match(customer):
            raise FairShareSyntaxError(
                f"fair-share weight {item.strip()!r} is not CUSTOMER=WEIGHT "
                "(CUSTOMER a customer id)"
            )
        try:
            weight = float(value)
        except ValueError:
            raise FairShareSyntaxError(
                f"fair-share weight {item.strip()!r}: {value!r} is not a number"
            ) from None
        if not 0 < weight <= 1000:
            raise FairShareSyntaxError(
                f"fair-share weight {item.strip()!r} must be above 0 and at most 1000"
            )
        if customer in weights:
            raise FairShareSyntaxError(f"fair-share weight for {customer!r} given twice")
        weights[customer] = weight
    return weights


@dataclass(frozen=True)
class FairShare:
    """The bound of outstanding work per customer and queue (0: off), and the weights."""

    bound: int
    weights: Mapping[str, float] = field(default_factory=dict)

    def applies(self, queue: Queue | str, customer_id: str | None) -> bool:
        """Whether writes of `customer_id` on `queue` are bounded."""
        return self.bound > 0 and customer_id is not None and Queue(queue) in FAIR_QUEUES

    def weight(self, customer_id: str) -> float:
        """The customer's weight (1 unless FAIR_SHARE_WEIGHTS says otherwise)."""
        return self.weights.get(customer_id, 1.0)

    def bound_for(self, customer_id: str) -> int:
        """Most outstanding tasks the customer may have on one queue (at least 1)."""
        return max(1, round(self.bound * self.weight(customer_id)))


def interleave(turns: Mapping[str, Sequence[T]], fair: FairShare) -> list[T]:
    """Weighted round robin over each customer's waiting items, longest waiting first.

    The k-th item of a customer of weight w comes at k / w: equal weights alternate one by
    one, a customer of weight 2 gets two items per round. Ties keep the order of `turns`
    (callers list the customer whose oldest write waits longest first).
    """
    keyed = [
        ((k + 1) / fair.weight(customer), rank, k, item)
        for rank, (customer, items) in enumerate(turns.items())
        for k, item in enumerate(items)
    ]
    keyed.sort(key=lambda entry: entry[:3])
    return [item for *_, item in keyed]
