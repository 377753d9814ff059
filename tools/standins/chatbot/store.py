"""ChatbotMobile's data, in memory and per customer: documents, FAQs, reindex requests."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CSV_HEADER = ("question", "answer", "category", "tags")


def now() -> str:
    """The current time as ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    # The contract's fields are plain strings and integers, not nullable: absent means unset.
    return {name: value for name, value in fields.items() if value is not None}


@dataclass
class Document:
    """One document: `kind` is text, file or url."""

    document_id: str
    customer_id: str
    kind: str
    source: str
    created_at: str
    title: str | None = None
    text: str | None = None
    filename: str | None = None
    url: str | None = None
    content_type: str | None = None
    size: int | None = None
    sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        """The contract's `Document`."""
        return _present(
            {
                "document_id": self.document_id,
                "customer_id": self.customer_id,
                "kind": self.kind,
                "title": self.title,
                "source": self.source,
                "filename": self.filename,
                "url": self.url,
                "size": self.size,
                "sha256": self.sha256,
                "created_at": self.created_at,
            }
        )

    def original(self) -> dict[str, Any]:
        """The entry of `GET /v1/documents/originals`."""
        return _present(
            {
                "document_id": self.document_id,
                "kind": self.kind,
                "filename": self.filename,
                "url": self.url,
                "size": self.size,
                "sha256": self.sha256,
            }
        )


@dataclass(frozen=True)
class Attachment:
    """A downloaded FAQ attachment."""

    file_url: str
    filename: str
    content_type: str | None
    size: int
    sha256: str

    def describe(self) -> dict[str, Any]:
        """The attachment as an FAQ shows it."""
        return _present(
            {
                "file_url": self.file_url,
                "filename": self.filename,
                "content_type": self.content_type,
                "size": self.size,
                "sha256": self.sha256,
            }
        )


@dataclass
class Faq:
    """One FAQ entry."""

    customer_id: str
    faq_id: str
    question: str
    answer: str
    updated_at: str
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The contract's `Faq`."""
        return _present(
            {
                "customer_id": self.customer_id,
                "faq_id": self.faq_id,
                "question": self.question,
                "answer": self.answer,
                "category": self.category,
                "tags": list(self.tags),
                "attachments": [attachment.describe() for attachment in self.attachments],
                "updated_at": self.updated_at,
            }
        )


@dataclass
class Customer:
    """One tenant's data; dicts keep insertion (creation) order."""

    documents: dict[str, Document] = field(default_factory=dict)
    faqs: dict[str, Faq] = field(default_factory=dict)
    reindex: int = 0

    def counts(self) -> dict[str, int]:
        """What `/stats` shows for the customer."""
        return {"documents": len(self.documents), "faqs": len(self.faqs), "reindex": self.reindex}

    def delete_documents(self, source: str | None = None) -> int:
        """Delete every document, or those of one source; how many went."""
        doomed = [
            doc_id
            for doc_id, doc in self.documents.items()
            if source is None or doc.source == source
        ]
        for doc_id in doomed:
            del self.documents[doc_id]
        return len(doomed)

    def sources(self) -> list[dict[str, Any]]:
        """Sources with their document counts, by name."""
        counts: dict[str, int] = {}
        for doc in self.documents.values():
            counts[doc.source] = counts.get(doc.source, 0) + 1
        return [{"source": name, "documents": counts[name]} for name in sorted(counts)]

    def faqs_csv(self) -> str:
        """Every FAQ as CSV, in creation order; tags joined by `;`."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for faq in self.faqs.values():
            writer.writerow((faq.question, faq.answer, faq.category or "", ";".join(faq.tags)))
        return out.getvalue()


class Store:
    """All customers; reads of an unknown customer see empty data and create nothing."""

    def __init__(self) -> None:
        self.customers: dict[str, Customer] = {}

    def customer(self, customer_id: str) -> Customer:
        """The customer's data, created on its first write."""
        return self.customers.setdefault(customer_id, Customer())

    def peek(self, customer_id: str) -> Customer:
        """The customer's data for a read."""
        return self.customers.get(customer_id) or Customer()

    def reset(self) -> None:
        """Forget every customer."""
        self.customers.clear()
