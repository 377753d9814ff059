from datetime import UTC, datetime

import pytest

from services.core.config import Settings
from services.core.search import payloads
from services.core.search.catalog import KINDS, Operation, doc_id
from services.core.search.versions import micros, write_version
from services.core.taskdefs import Queue, spec_for

ACCEPTED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_the_fifteen_task_names_of_the_plan_are_declared_on_the_es_queue() -> None:
    names = {kind.task_name(op) for kind in KINDS.values() for op in Operation}
    assert len(names) == 15
    assert {"es_upsert_product", "es_bulk_delete_services", "es_delete_all_accessories"} <= names
    assert "es_bulk_upsert_accessories" in names and "es_delete_accessory" in names
    assert all(spec_for(n).queue is Queue.ES for n in names)


def test_task_time_limits_fit_inside_the_visibility_timeout() -> None:
    settings = Settings()
    limits = [spec_for(k.task_name(op)).time_limit_s for k in KINDS.values() for op in Operation]
    longest = max(limit or 0 for limit in limits)
    assert settings.broker_visibility_timeout_s > longest + settings.retry_backoff_max_s


def test_version_prefers_caller_then_updated_at_then_acceptance_time() -> None:
    assert write_version(7, {"updated_at": "2020-01-01T00:00:00Z"}, ACCEPTED) == 7
    at = datetime(2020, 1, 1, tzinfo=UTC)
    assert write_version(None, {"updated_at": "2020-01-01T00:00:00Z"}, ACCEPTED) == micros(at)
    assert write_version(None, {"updated_at": "not a date"}, ACCEPTED) == micros(ACCEPTED)
    assert write_version(None, None, ACCEPTED) == micros(ACCEPTED)


def test_doc_ids_are_unambiguous_per_customer() -> None:
    assert doc_id("c1", "a:b") == "c1:a:b"
    with pytest.raises(ValueError, match="customer_id"):
        payloads.check_customer_id("c:1")


@pytest.mark.parametrize("bad", ["", "a/b", " x", "\x00", True, None, 1.5, "x" * 300])
def test_bad_item_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="item id"):
        payloads.check_item_id(bad)


def test_numeric_item_ids_are_kept_as_text() -> None:
    assert payloads.check_item_id(42) == "42"


def test_bulk_payloads_refuse_empty_and_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="empty"):
        payloads.bulk_delete("c1", [], version=None, accepted_at=ACCEPTED)
    with pytest.raises(ValueError, match="more than once"):
        payloads.bulk_delete("c1", ["a", "b", "a"], version=None, accepted_at=ACCEPTED)
    with pytest.raises(ValueError, match="more than once"):
        payloads.bulk_upsert(
            "c1",
            [{"id": 1, "data": {}}, {"id": "1", "data": {}}],
            with_embedding=False,
            accepted_at=ACCEPTED,
        )


def test_bulk_upsert_resolves_each_items_version() -> None:
    payload = payloads.bulk_upsert(
        "c1",
        [{"id": "a", "data": {}}, {"id": "b", "data": {}, "version": 5}],
        with_embedding=False,
        accepted_at=ACCEPTED,
    )
    assert [i["version"] for i in payload["items"]] == [micros(ACCEPTED), 5]
