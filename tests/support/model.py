"""The simple model of what accepted writes imply: their effects applied in acceptance order.

The model-based test sends writes one after the other, each answered before the next is sent,
so acceptance order is send order, whatever the stack does with them afterwards (faults,
retries, duplicates, crashes). This module says what each downstream must hold in the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CallerVersion = tuple[str, int]  # (source, value): "version" or "updated_at"


@dataclass
class CatalogModel:
    """Items of one customer and kind: last accepted write wins; older caller versions lose."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    caller: dict[str, CallerVersion] = field(default_factory=dict)

    def _admitted(self, item: str, version: CallerVersion | None) -> bool:
        if version is None:
            return True
        known = self.caller.get(item)
        if known is not None and known[0] == version[0] and known[1] > version[1]:
            return False  # refused when accepted: older than one sent before
        self.caller[item] = version
        return True

    def upsert(self, item: str, data: dict[str, Any], version: CallerVersion | None) -> None:
        """An upsert accepted now."""
        if self._admitted(item, version):
            self.items[item] = data

    def delete(self, item: str, version: CallerVersion | None) -> None:
        """A delete accepted now."""
        if self._admitted(item, version):
            self.items.pop(item, None)

    def delete_all(self) -> None:
        """A delete-all accepted now."""
        self.items.clear()


@dataclass
class FaqModel:
    """FAQs of one customer, as ChatbotMobile applies them one by one."""

    answers: dict[str, str] = field(default_factory=dict)

    def create(self, faq_id: str, answer: str) -> bool:
        """A create accepted now; False if ChatbotMobile refuses it (409: it exists)."""
        if faq_id in self.answers:
            return False
        self.answers[faq_id] = answer
        return True

    def update(self, faq_id: str, answer: str) -> bool:
        """An update accepted now; False if ChatbotMobile refuses it (404: no such FAQ)."""
        if faq_id not in self.answers:
            return False
        self.answers[faq_id] = answer
        return True

    def delete(self, faq_id: str) -> None:
        """A delete accepted now (deleting a missing FAQ is a success that changes nothing)."""
        self.answers.pop(faq_id, None)

    def delete_all(self) -> None:
        """A delete of every FAQ accepted now."""
        self.answers.clear()


@dataclass
class DocumentModel:
    """Documents of one customer by (source, title)."""

    documents: Counter[tuple[str, str]] = field(default_factory=Counter)

    def upload(self, source: str | None, title: str) -> None:
        """A text upload accepted now (ChatbotMobile files one without a source under
        `text:<title>`)."""
        self.documents[(source or f"text:{title}", title)] += 1

    def delete_by_source(self, source: str) -> None:
        """A delete of one source's documents accepted now."""
        for key in [k for k in self.documents if k[0] == source]:
            del self.documents[key]

    def delete_all(self) -> None:
        """A delete of every document accepted now."""
        self.documents.clear()
