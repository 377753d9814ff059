from datetime import UTC, datetime

import pytest

from services.core.config import Settings
from services.core.search import payloads
from services.core.search.catalog import KINDS, Operation, doc_id
from services.core.search.versions import (
    SEQ_VERSION_BASE,
    CallerVersion,
    caller_version,
    es_version,
    micros,
    write_version,
)
from services.core.taskdefs import Queue, spec_for


def test_the_fifteen_task_names_of_the_plan_are_declared_on_the_es_queue() -> None:
    names = {kind.task_name(op) for kind in KINDS.values() for op in Operation}
    assert len(names) == 15
    assert {"es_upsert_product", "es_bulk_delete_services", "es_delete_all_accessories"} <= names
    assert "es_bulk_upsert_accessories" in names and "es_delete_accessory" in names
    assert all(spec_for(n).queue is Queue.ES for n in names)


def test_task_time_limits_and_countdowns_fit_inside_the_visibility_timeout() -> None:
    settings = Settings()
    limits = [spec_for(k.task_name(op)).time_limit_s for k in KINDS.values() for op in Operation]
    longest = max(limit or 0 for limit in limits)
    assert (
        settings.broker_visibility_timeout_s
        > longest + settings.long_wait_s + settings.lease_margin_s
    )


def test_caller_version_is_the_explicit_one_else_updated_at_else_none() -> None:
    data = {"updated_at": "2020-01-01T00:00:00Z"}
    assert caller_version(7, data) == CallerVersion(7, "version")
    at = micros(datetime(2020, 1, 1, tzinfo=UTC))
    assert caller_version(None, data) == CallerVersion(at, "updated_at")
    assert caller_version(None, {"updated_at": "not a date"}) is None
    assert caller_version(None, None) is None


def test_the_es_version_is_the_acceptance_number_above_every_older_domain() -> None:
    # Caller versions are capped at 2**62 by the API; acceptance microseconds are far below.
    assert es_version(1) > 2**62 >= micros(datetime(9999, 1, 1, tzinfo=UTC))
    assert write_version({"customer_id": "c1"}, 5) == SEQ_VERSION_BASE + 5
    # A payload accepted before the acceptance-order rule keeps the version it carried.
    assert write_version({"customer_id": "c1", "version": 7}, 5) == 7


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
        payloads.bulk_delete("c1", [], version=None)
    with pytest.raises(ValueError, match="more than once"):
        payloads.bulk_delete("c1", ["a", "b", "a"], version=None)
    with pytest.raises(ValueError, match="more than once"):
        payloads.bulk_upsert(
            "c1", [{"id": 1, "data": {}}, {"id": "1", "data": {}}], with_embedding=False
        )


def test_bulk_upsert_keeps_each_items_caller_version() -> None:
    payload = payloads.bulk_upsert(
        "c1",
        [{"id": "a", "data": {}}, {"id": "b", "data": {}, "version": 5}],
        with_embedding=False,
    )
    assert [i.get("caller_version") for i in payload["items"]] == [None, 5]
    assert "version" not in payload["items"][1]
