"""The ES stand-in's search as a real cluster's: near-real-time views and delete-by-query.

Writes are searchable only after a refresh (GET by id is real time), and `_delete_by_query`
deletes what its search saw, each delete conditional on the document being unchanged since:
a document changed after the last refresh is a version conflict, counted, and the end of the
request unless `conflicts=proceed`. Every parameter is honoured or refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.support.standins import Standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = Standin("elasticsearch", tmp_path_factory.mktemp("es-search")).start()
    yield server
    server.stop()


@pytest.fixture
def es(standin: Standin) -> Iterator[Elasticsearch]:
    standin.reset()
    client = Elasticsearch(standin.url, max_retries=0, retry_on_status=(), request_timeout=10)
    yield client
    client.close()


def _manual(es: Elasticsearch, index: str = "items", shards: int = 1) -> str:
    """An index that refreshes only when asked to."""
    es.indices.create(
        index=index,
        settings={"refresh_interval": "-1", "number_of_replicas": 0, "number_of_shards": shards},
    )
    return index


def _ids(es: Elasticsearch, index: str) -> list[str]:
    return [h["_id"] for h in es.search(index=index, size=100)["hits"]["hits"]]


def test_writes_become_searchable_at_a_refresh_and_get_stays_real_time(es: Elasticsearch) -> None:
    index = _manual(es)
    es.index(index=index, id="a", document={"n": 1})
    assert _ids(es, index) == [] and es.count(index=index)["count"] == 0
    assert es.get(index=index, id="a")["_source"] == {"n": 1}  # real time
    with pytest.raises(NotFoundError):
        es.get(index=index, id="a", realtime=False)
    es.indices.refresh(index=index)
    assert _ids(es, index) == ["a"]

    es.delete(index=index, id="a")
    assert _ids(es, index) == ["a"]  # the delete is not searchable yet either
    assert es.index(index=index, id="b", document={"n": 2}, refresh=True)["forced_refresh"]
    assert _ids(es, index) == ["b"]


def test_refresh_wait_for_answers_once_the_scheduled_refresh_made_the_write_searchable(
    es: Elasticsearch,
) -> None:
    es.indices.create(index="timed", settings={"refresh_interval": "200ms"})
    answer = es.index(index="timed", id="c", document={"n": 3}, refresh="wait_for")
    assert "forced_refresh" not in answer
    assert _ids(es, "timed") == ["c"]


def test_a_refresh_on_write_refreshes_only_the_shard_written(es: Elasticsearch) -> None:
    index = _manual(es, shards=5)
    # Ids 1 and 3 live on different shards of a five-shard index (ES's murmur3 routing).
    es.index(index=index, id="1", document={"n": 1}, refresh=True)
    es.index(index=index, id="3", document={"n": 3}, refresh=True)
    es.delete(index=index, id="1")
    es.delete(index=index, id="3", refresh=True)
    assert _ids(es, index) == ["1"]
    with pytest.raises(NotFoundError):
        es.get(index=index, id="1", routing="4")  # routed to another shard, as on ES
    es.index(index=index, id="r", document={}, routing="4")
    assert es.get(index=index, id="r", routing="4")["_routing"] == "4"


def _changed_since_refresh(es: Elasticsearch) -> str:
    """Three documents searchable as version 1; `a` changed and `b`... after the refresh."""
    index = _manual(es)
    for doc_id in ("a", "b", "c"):
        es.index(index=index, id=doc_id, document={"n": 1})
    es.indices.refresh(index=index)
    es.index(index=index, id="a", document={"n": 2})  # changed after the search's view
    return index


def test_delete_by_query_counts_a_document_changed_since_the_refresh_as_a_conflict(
    es: Elasticsearch,
) -> None:
    index = _changed_since_refresh(es)
    answer = es.delete_by_query(
        index=index, query={"match_all": {}}, conflicts="proceed", refresh=True
    )
    assert (answer["total"], answer["deleted"], answer["version_conflicts"]) == (3, 2, 1)
    assert answer["failures"] == []
    assert es.get(index=index, id="a")["_source"] == {"n": 2}  # the newer write survives
    assert _ids(es, index) == ["a"]


def test_delete_by_query_aborts_after_the_batch_with_a_conflict(es: Elasticsearch) -> None:
    index = _changed_since_refresh(es)
    with pytest.raises(ConflictError) as aborted:
        es.delete_by_query(index=index, query={"match_all": {}}, scroll_size=1)
    body: dict[str, Any] = aborted.value.body
    assert (body["deleted"], body["version_conflicts"], body["batches"]) == (0, 1, 1)
    [failure] = body["failures"]
    assert (failure["index"], failure["id"], failure["status"]) == (index, "a", 409)
    assert failure["cause"]["type"] == "version_conflict_engine_exception"
    assert failure["cause"]["reason"] == (
        "[a]: version conflict, required seqNo [0], primary term [1]. current document has "
        "seqNo [3] and primary term [1]"
    )
    # Nothing after the batch that failed was done.
    assert es.get(index=index, id="b")["found"] and es.get(index=index, id="c")["found"]


def test_delete_by_query_counts_a_document_deleted_since_the_refresh(es: Elasticsearch) -> None:
    index = _manual(es)
    es.index(index=index, id="gone", document={"n": 1}, refresh=True)
    es.delete(index=index, id="gone")
    answer = es.delete_by_query(index=index, query={"match_all": {}}, conflicts="proceed")
    assert (answer["deleted"], answer["version_conflicts"]) == (0, 1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_docs": -1}, "[max_docs] parameter cannot be negative, found [-1]"),
        ({"conflicts": "cat"}, 'conflicts may only be "proceed" or "abort" but was [cat]'),
        ({"slices": "junk"}, '[slices] must be a positive integer or the string "auto"'),
        ({"slices": 0}, '[slices] must be a positive integer or the string "auto"'),
        ({"max_docs": 1, "slices": 2}, "[max_docs] should be >= [slices]"),
        ({"scroll_size": "asdf"}, "Failed to parse int parameter [scroll_size]"),
        ({"requests_per_second": 0}, "[requests_per_second] must be a float greater than 0"),
        ({"requests_per_second": "unlimited"}, "[requests_per_second] must be a float"),
        ({"refresh": "wait_for"}, "as only [true] or [false] are allowed"),
        ({"wait_for_completion": False}, "does not support parameter [wait_for_completion]"),
        ({"search_timeout": "1s"}, "does not support parameter [search_timeout]"),
    ],
)
def test_delete_by_query_refuses_what_it_cannot_honour(
    es: Elasticsearch, params: dict[str, Any], message: str
) -> None:
    index = _manual(es)
    es.index(index=index, id="a", document={"n": 1}, refresh=True)
    with pytest.raises(BadRequestError) as refused:
        es.delete_by_query(index=index, query={"match_all": {}}, **params)
    assert message in str(refused.value.body), refused.value.body
    assert es.count(index=index)["count"] == 1


def test_delete_by_query_honours_routing_max_docs_scroll_size_and_slices(
    es: Elasticsearch,
) -> None:
    index = _manual(es, shards=3)
    # Routed to shards 0, 2 and 1 of three by ES's murmur3 routing.
    for n in range(9):
        es.index(index=index, id=str(n), document={"n": n}, routing="azb"[n % 3])
    es.indices.refresh(index=index)
    assert es.count(index=index, routing="a")["count"] == 3
    routed = es.delete_by_query(index=index, query={"match_all": {}}, routing="a", refresh=True)
    assert routed["deleted"] == 3 and es.count(index=index)["count"] == 6

    left = 6
    capped = es.delete_by_query(
        index=index, query={"match_all": {}}, max_docs=2, scroll_size=1, refresh=True
    )
    assert (capped["deleted"], capped["batches"], capped["total"]) == (2, 2, 2)
    assert es.count(index=index)["count"] == left - 2

    sliced = es.delete_by_query(index=index, query={"match_all": {}}, slices="auto", refresh=True)
    assert len(sliced["slices"]) == 3 and sliced["deleted"] == left - 2
    assert es.count(index=index)["count"] == 0


class NearRealTime(RuleBasedStateMachine):
    """Writes, refreshes and deletes-by-query in any order, against a model of ES's views."""

    es: Elasticsearch

    @initialize()
    def start(self) -> None:
        self.es.options(ignore_status=404).indices.delete(index="nrt")
        _manual(self.es, "nrt")
        self.live: dict[str, int] = {}  # id -> the value of its last write
        self.seen: dict[str, int] = {}  # what search shows
        self.seq = 0

    @rule(doc_id=st.sampled_from("abcd"))
    def write(self, doc_id: str) -> None:
        self.seq += 1
        self.es.index(index="nrt", id=doc_id, document={"n": self.seq})
        self.live[doc_id] = self.seq

    @rule(doc_id=st.sampled_from("abcd"))
    def delete(self, doc_id: str) -> None:
        self.es.options(ignore_status=404).delete(index="nrt", id=doc_id)
        self.live.pop(doc_id, None)

    @rule()
    def refresh(self) -> None:
        self.es.indices.refresh(index="nrt")
        self.seen = dict(self.live)

    @rule()
    def delete_all(self) -> None:
        answer = self.es.delete_by_query(index="nrt", query={"match_all": {}}, conflicts="proceed")
        # Deleted: what search saw and nothing changed since; a conflict: the rest it saw.
        unchanged = {d for d, n in self.seen.items() if self.live.get(d) == n}
        assert answer["deleted"] == len(unchanged)
        assert answer["version_conflicts"] == len(self.seen) - len(unchanged)
        for doc_id in unchanged:
            del self.live[doc_id]

    @invariant()
    def search_shows_the_last_refresh_and_get_the_last_write(self) -> None:
        hits = self.es.search(index="nrt", size=10)["hits"]["hits"]
        assert {h["_id"]: h["_source"]["n"] for h in hits} == self.seen
        for doc_id in "abcd":
            found = self.es.options(ignore_status=404).get(index="nrt", id=doc_id)
            assert (found["_source"]["n"] if found["found"] else None) == self.live.get(doc_id)


def test_search_and_delete_by_query_follow_the_model(es: Elasticsearch) -> None:
    NearRealTime.es = es
    run = settings(
        max_examples=25,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )(NearRealTime)
    run.TestCase().runTest()
