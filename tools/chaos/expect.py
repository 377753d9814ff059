"""What the accepted requests imply each downstream holds, and the comparison with it.

The load sends one request after the other, numbering them in order (`version`), so the
numbers are acceptance order. Per catalog item the last accepted write wins, unless a
delete-all accepted after it came; whatever order retries land in. ChatbotMobile writes of
one FAQ, and document writes of one customer and source, take effect in acceptance order.

`lost` counts every expected effect that is missing or wrong (a document that should be gone
and is not counts too); `duplicated` counts effects applied more often than requested.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tools.chaos.stack import CHATBOT_TOKEN, INDEX_PREFIX, Stack


@dataclass(frozen=True)
class EsWrite:
    """One accepted write of an item: `data` None is a delete."""

    version: int
    data: dict[str, Any] | None


@dataclass
class Expectation:
    """The accepted requests, as effects on the downstreams."""

    es_writes: dict[tuple[str, str, str], list[EsWrite]] = field(
        default_factory=lambda: defaultdict(list)
    )
    es_wipes: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    # customer -> document key (title, filename or URL) -> source
    documents: dict[str, dict[str, str | None]] = field(default_factory=lambda: defaultdict(dict))
    gone_sources: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # customer -> faq id -> answer (None once deleted)
    faqs: dict[str, dict[str, str | None]] = field(default_factory=lambda: defaultdict(dict))
    imported: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    wiped_documents: set[str] = field(default_factory=set)
    wiped_faqs: set[str] = field(default_factory=set)
    reindex: Counter[str] = field(default_factory=Counter)


@dataclass
class Verdict:
    """The comparison's counts and the first discrepancies, described."""

    checked: int = 0
    lost: int = 0
    duplicated: int = 0
    notes: list[str] = field(default_factory=list)

    def miss(self, note: str, count: int = 1) -> None:
        self.lost += count
        self.notes.append(f"lost: {note}")

    def twice(self, note: str, count: int = 1) -> None:
        self.duplicated += count
        self.notes.append(f"duplicated: {note}")


def _es_hits(http: httpx.Client, stack: Stack, plural: str, customer: str) -> dict[str, Any]:
    # Search sees the last refresh, as on a real cluster.
    http.post(f"{stack.es_url}/{INDEX_PREFIX}{plural}/_refresh").raise_for_status()
    answer = http.post(
        f"{stack.es_url}/{INDEX_PREFIX}{plural}/_search",
        json={"query": {"term": {"customer_id": customer}}, "size": 10000},
    )
    answer.raise_for_status()
    return {h["_source"]["item_id"]: h["_source"] for h in answer.json()["hits"]["hits"]}


def check_catalog(http: httpx.Client, stack: Stack, want: Expectation, verdict: Verdict) -> None:
    """Every item against its winning write; applied writes against those requested."""
    applied = http.get(f"{stack.control_url('es')}/stats").json()["applied"]
    scopes = {(p, c) for p, c, _ in want.es_writes} | set(want.es_wipes)
    for plural, customer in sorted(scopes):
        hits = _es_hits(http, stack, plural, customer)
        wipes = want.es_wipes.get((plural, customer), [])
        watermark = max(wipes, default=0)
        items = {i for p, c, i in want.es_writes if (p, c) == (plural, customer)}
        for item in sorted(items | set(hits)):
            writes = want.es_writes.get((plural, customer, item), [])
            verdict.checked += 1
            where = f"{plural}/{customer}/{item}"
            if not writes:
                verdict.miss(f"{where} exists but was never written")
                continue
            top = max(writes, key=lambda w: w.version)
            stored = hits.get(item)
            if top.data is not None and top.version > watermark:
                if stored is None:
                    verdict.miss(f"{where} missing (version {top.version})")
                elif any(stored.get(k) != v for k, v in top.data.items()):
                    verdict.miss(f"{where} holds {stored.get('name')!r}, expected {top.data}")
            elif stored is not None:
                verdict.miss(f"{where} should be deleted (version {top.version})")
            times = applied.get(f"{INDEX_PREFIX}{plural}/{customer}:{item}", 0)
            allowed = len(writes) + len(wipes)
            if times > allowed:
                verdict.twice(
                    f"{where} applied {times} times for {allowed} writes", times - allowed
                )


def _pages(http: httpx.Client, url: str, customer: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = http.get(
            url,
            params={"customer_id": customer, "page": page, "page_size": 500},
            headers={"Authorization": f"Bearer {CHATBOT_TOKEN}"},
        )
        if answer.status_code == 404:  # a customer the stand-in never saw
            return items
        answer.raise_for_status()
        body = answer.json()
        items.extend(body["items"])
        if len(items) >= body["total"] or not body["items"]:
            return items
        page += 1


def _document_key(doc: dict[str, Any]) -> str:
    return str(doc.get("title") or doc.get("filename") or doc.get("url"))


def check_chatbot(http: httpx.Client, stack: Stack, want: Expectation, verdict: Verdict) -> None:
    """Documents, FAQs and reindex requests per customer."""
    stats = http.get(f"{stack.control_url('chatbot')}/stats").json()["by_customer"]
    customers = (
        set(want.documents) | set(want.faqs) | set(want.imported) | set(want.reindex) | set(stats)
    )
    for customer in sorted(customers):
        expected_docs = {
            key
            for key, source in want.documents.get(customer, {}).items()
            if customer not in want.wiped_documents
            and source not in want.gone_sources.get(customer, set())
        }
        held = Counter(
            _document_key(d) for d in _pages(http, f"{stack.chatbot_url}/v1/documents", customer)
        )
        for key in sorted(expected_docs | set(held)):
            verdict.checked += 1
            if key in expected_docs and held[key] == 0:
                verdict.miss(f"document {customer}/{key} missing")
            elif key not in expected_docs:
                verdict.miss(f"document {customer}/{key} should not exist")
            elif held[key] > 1:
                verdict.twice(f"document {customer}/{key} stored {held[key]} times", held[key] - 1)

        faqs = _pages(http, f"{stack.chatbot_url}/v1/faqs", customer)
        wiped = customer in want.wiped_faqs
        by_id = {f["faq_id"]: f for f in faqs}
        imported = Counter(f["question"] for f in faqs if f["faq_id"] not in want.faqs[customer])
        for faq_id, answer in sorted(want.faqs.get(customer, {}).items()):
            verdict.checked += 1
            present = by_id.get(faq_id)
            if answer is None or wiped:
                if present is not None:
                    verdict.miss(f"faq {customer}/{faq_id} should be deleted")
            elif present is None:
                verdict.miss(f"faq {customer}/{faq_id} missing")
            elif present["answer"] != answer:
                verdict.miss(f"faq {customer}/{faq_id} answers {present['answer']!r}")
        expected_questions = Counter([] if wiped else want.imported.get(customer, []))
        for question in sorted(set(expected_questions) | set(imported)):
            verdict.checked += 1
            have, need = imported[question], expected_questions[question]
            if have < need:
                verdict.miss(f"imported faq {customer}/{question!r} missing", need - have)
            elif have > need and need == 0:
                verdict.miss(f"faq {customer}/{question!r} should not exist")
            elif have > need:
                verdict.twice(f"imported faq {customer}/{question!r} x{have}", have - need)

        verdict.checked += 1
        have = int(stats.get(customer, {}).get("reindex", 0))
        need = want.reindex.get(customer, 0)
        if have < need:
            verdict.miss(f"reindex of {customer}: {have} of {need}", need - have)
        elif have > need:
            verdict.twice(f"reindex of {customer}: {have} for {need} requests", have - need)
