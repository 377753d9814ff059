"""The simple model of what accepted writes imply: their effects applied in acceptance order.

The model-based test sends writes one after the other, each answered before the next is sent,
so acceptance order is send order, whatever the stack does with them afterwards (faults,
retries, duplicates, crashes). This module says what each downstream must hold in the end,
and which redrives the stack must refuse.

The rules it states:
- a delete-all removes every write accepted before it (and starts caller versions over);
- the newest accepted write of each entity wins;
- a redrive never undoes a later accepted write: a redrive of a ChatbotMobile write is
  refused while a write of the same entity accepted after the original has taken (or may
  still take) effect, and otherwise is a new write accepted now.
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
        """A delete-all accepted now: every item goes, and caller versions start over."""
        self.items.clear()
        self.caller.clear()


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

    def apply(self, op: str, faq_id: str, answer: str) -> bool:
        """A FAQ create or update accepted now (a redrive re-sends one); False if refused."""
        return self.create(faq_id, answer) if op == "create" else self.update(faq_id, answer)


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


@dataclass(frozen=True)
class Write:
    """An accepted ChatbotMobile write, as the redrive rule sees it."""

    task_id: str
    key: str | None  # the entity it writes (None: every one of its scope)
    place: int  # acceptance order; a redrive stands in its original's place
    takes_effect: bool  # False: ChatbotMobile refuses it (it fails, changing nothing)
    # What a redrive re-sends: ("create" | "update", faq_id, answer); None: not redrivable.
    resend: tuple[str, str, str] | None = None


@dataclass
class FaqHistory:
    """The FAQ writes accepted so far, for the redrive rule."""

    writes: dict[str, Write] = field(default_factory=dict)
    accepted: int = 0

    def accept(
        self,
        task_id: str,
        key: str | None,
        takes_effect: bool,
        resend: tuple[str, str, str] | None = None,
        *,
        place: int | None = None,
    ) -> Write:
        """Note a write accepted now (a redrive: in its original's `place`)."""
        self.accepted += 1
        write = Write(task_id, key, self.accepted if place is None else place, takes_effect, resend)
        self.writes[task_id] = write
        return write

    def later(self, task_id: str) -> list[Write]:
        """Writes of the same FAQ (or of all FAQs) accepted after `task_id`'s original."""
        me = self.writes[task_id]
        return [
            w
            for w in self.writes.values()
            if w.place > me.place and (w.key is None or me.key is None or w.key == me.key)
        ]
