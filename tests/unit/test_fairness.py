"""The fair-share policy: bounds, weights and whose turn comes next."""

from __future__ import annotations

import pytest

from services.core.config import Settings
from services.core.fairness import FairShare, FairShareSyntaxError, interleave, parse_weights
from services.core.taskdefs import Queue


def test_weights_are_read_as_customer_equals_number() -> None:
    assert parse_weights("") == {}
    assert parse_weights(" big-shop=4, trial=0.5 ,") == {"big-shop": 4.0, "trial": 0.5}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("big-shop", "not CUSTOMER=WEIGHT"),
        ("-shop=2", "not CUSTOMER=WEIGHT"),
        ("shop=lots", "is not a number"),
        ("shop=0", "above 0"),
        ("shop=2,shop=3", "given twice"),
    ],
)
def test_a_weight_that_cannot_be_read_is_refused_at_start(text: str, says: str) -> None:
    with pytest.raises(FairShareSyntaxError, match=says):
        parse_weights(text)
    with pytest.raises(ValueError, match=says):
        Settings(environment="development", fair_share_weights=text)


def test_a_weight_multiplies_the_bound_never_below_one() -> None:
    fair = Settings(environment="development", fair_share_weights="big=4,trial=0.01").fair_share
    assert fair.bound == 8  # the default
    assert (fair.bound_for("big"), fair.bound_for("trial"), fair.bound_for("any")) == (32, 1, 8)


def test_only_customers_writes_on_the_worker_queues_are_bounded() -> None:
    fair = FairShare(8)
    assert fair.applies(Queue.ES, "c1") and fair.applies("http", "c1")
    assert not fair.applies(Queue.MAINTENANCE, "c1")
    assert not fair.applies(Queue.ES, None)
    assert not FairShare(0).applies(Queue.ES, "c1")  # 0 turns it off


def test_equal_customers_take_turns_one_by_one_longest_waiting_first() -> None:
    turns = {"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}
    assert interleave(turns, FairShare(8)) == ["a1", "b1", "c1", "a2", "c2", "a3"]


def test_a_heavier_customer_gets_as_many_turns_as_its_weight() -> None:
    turns = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3", "b4", "b5", "b6"]}
    fair = FairShare(8, {"b": 2})
    assert interleave(turns, fair) == ["b1", "a1", "b2", "b3", "a2", "b4", "b5", "a3", "b6"]
