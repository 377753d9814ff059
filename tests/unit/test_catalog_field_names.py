"""Field names of catalog data: what Elasticsearch would refuse is found, named and explained."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.search import payloads
from services.core.search.document import RESERVED_NAMES, build_document
from services.core.search.fieldnames import field_name_problems
from services.core.search.indices import mappings


def _locs(data: dict[str, Any]) -> list[tuple[str | int, ...]]:
    return [loc for loc, _ in field_name_problems(data)]


def test_the_names_we_add_are_the_reserved_ones_and_are_mapped() -> None:
    document = build_document(
        {"name": "Lamp"},
        customer_id="c1",
        item_id="p1",
        version=3,
        synced_at="2024-01-01T00:00:00+00:00",
        vector=[0.5],
    )
    assert set(document) - {"name"} == RESERVED_NAMES
    assert set(mappings(8)["properties"]) >= RESERVED_NAMES


@pytest.mark.parametrize(
    ("data", "locs"),
    [
        ({"a": 1, "a.b": 2, "c": {"d": 1}, "c.d.e": 3}, [("a.b",), ("c.d.e",)]),
        ({"x": {"": 1, "ok": 2, "y": {"_z": 1, "..": 2}}}, [("x", ""), ("x", "y", "..")]),
        ({"a": [{"b": 1}, {"b": {"c": 1}}]}, [("a", 1, "b")]),
        ({"a": None, "a.b": 1, "tags": ["x", None]}, []),
        ({"price": [1, 2], "name": "Lamp", "description.en": "x"}, [("description.en",)]),
    ],
)
def test_problems_are_reported_where_elasticsearch_would_fail(
    data: dict[str, Any], locs: list[tuple[str | int, ...]]
) -> None:
    assert _locs(data) == locs


def test_each_problem_says_why() -> None:
    problems = dict(field_name_problems({"": 1, "_id": 1, "item_id": 1, "a": 1, "a.b": 1}))
    assert "empty" in problems[("",)]
    assert "metadata" in problems[("_id",)]
    assert "set by the catalog" in problems[("item_id",)]
    assert "both as a value and as an object" in problems[("a.b",)]


def test_payload_builders_refuse_bad_names_for_callers_of_the_facade() -> None:
    with pytest.raises(ValueError, match=r"data field 'a\.b'"):
        payloads.upsert("c1", "p1", {"a": 1, "a.b": 2}, with_embedding=False, version=None)
    with pytest.raises(ValueError, match="data field 'sync_version'"):
        payloads.bulk_upsert("c1", [{"id": 1, "data": {"sync_version": 2}}], with_embedding=False)
