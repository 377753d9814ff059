"""A mixed load of every write kind, sent through the HTTP API like a careful client would.

Every request carries an Idempotency-Key and is sent again with the same key when the API
cannot be reached or answers 5xx (the API restarts during a run), so a request is either
accepted once or reported as never accepted. Requests go one after the other, so acceptance
order is send order. Writes that depend on another one (an FAQ update after its create, a
delete-by-source or delete-all after the writes it removes) are sent at once, relying on
per-entity ordering, or (half of the FAQ follow-ups) once the first succeeded.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tools.chaos.expect import EsWrite, Expectation

KINDS = ("products", "services", "accessories")
SHOPS = ("shop-a", "shop-b")
CHATS = ("chat-a", "chat-b")
GONE = "chat-gone"  # written during the load, wiped at its end
RETIRED_SOURCE = "retired"  # documents of chat-a with this source are deleted at the end
SOURCES = ("manual", "site", RETIRED_SOURCE, None)


class Refused(RuntimeError):
    """The API answered a well-formed request with a 4xx: a bug, not chaos."""


@dataclass
class Accepted:
    """An accepted request: its task and when the API took it."""

    task_id: str
    what: str
    at: float


@dataclass
class Pending:
    """A follow-up to send once every task in `after` succeeded."""

    after: list[str]
    send: Callable[[], None]
    what: str


@dataclass
class Load:
    """Sends the load and records what it implies."""

    api: httpx.Client
    rng: random.Random
    want: Expectation = field(default_factory=Expectation)
    accepted: list[Accepted] = field(default_factory=list)
    not_accepted: list[str] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    failed_waits: list[str] = field(default_factory=list)
    give_up_s: float = 120.0
    version: int = 0
    serial: int = 0
    by_customer: dict[str, list[str]] = field(default_factory=dict)

    # -- sending -----------------------------------------------------------------------

    def _send(self, what: str, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        key = uuid.uuid4().hex
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            try:
                answer = self.api.request(method, path, headers={"Idempotency-Key": key}, **kwargs)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if answer.status_code == 202:
                body: dict[str, Any] = answer.json()
                customer = self._customer(kwargs)
                self.accepted.append(Accepted(body["task_id"], what, time.monotonic()))
                self.by_customer.setdefault(customer, []).append(body["task_id"])
                return body
            if answer.status_code >= 500:
                time.sleep(0.5)
                continue
            raise Refused(f"{method} {path} answered {answer.status_code}: {answer.text[:300]}")
        self.not_accepted.append(f"{what} {method} {path}")
        return None

    @staticmethod
    def _customer(kwargs: dict[str, Any]) -> str:
        for part in ("json", "data", "params"):
            value = (kwargs.get(part) or {}).get("customer_id")
            if value:
                return str(value)
        return ""

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def _name(self, stem: str) -> str:
        self.serial += 1
        return f"{stem}-{self.serial}"

    # -- catalog ----------------------------------------------------------------------
    # Requests go one after the other, so acceptance order is the order of `version`; a
    # third of the writes leave their version out (acceptance order alone decides then).

    def _maybe(self, version: int) -> dict[str, int]:
        return {} if self.rng.random() < 0.33 else {"version": version}

    def es_upsert(self) -> None:
        plural, shop, item = self.rng.choice(KINDS), self.rng.choice(SHOPS), self._item()
        version = self._next_version()
        data = {"name": f"{item}@v{version}"}
        body = {
            "customer_id": shop,
            "data": data,
            **self._maybe(version),
            "with_embedding": self.rng.random() < 0.3,
        }
        if self._send("es_upsert", "PUT", f"/api/v1/{plural}/{item}", json=body):
            self.want.es_writes[(plural, shop, item)].append(EsWrite(version, data))

    def es_delete(self) -> None:
        plural, shop, item = self.rng.choice(KINDS), self.rng.choice(SHOPS), self._item()
        version = self._next_version()
        params = {"customer_id": shop, **self._maybe(version)}
        if self._send("es_delete", "DELETE", f"/api/v1/{plural}/{item}", params=params):
            self.want.es_writes[(plural, shop, item)].append(EsWrite(version, None))

    def es_bulk_upsert(self) -> None:
        plural, shop = self.rng.choice(KINDS), self.rng.choice(SHOPS)
        version = self._next_version()
        items = sorted({self._item() for _ in range(self.rng.randint(2, 8))})
        body = {
            "customer_id": shop,
            "items": [
                {"id": i, "data": {"name": f"{i}@v{version}"}, **self._maybe(version)}
                for i in items
            ],
        }
        if self._send("es_bulk_upsert", "POST", f"/api/v1/{plural}/bulk-upsert", json=body):
            for i in items:
                self.want.es_writes[(plural, shop, i)].append(
                    EsWrite(version, {"name": f"{i}@v{version}"})
                )

    def es_bulk_delete(self) -> None:
        plural, shop = self.rng.choice(KINDS), self.rng.choice(SHOPS)
        version = self._next_version()
        items = sorted({self._item() for _ in range(self.rng.randint(2, 5))})
        body = {"customer_id": shop, "ids": items, **self._maybe(version)}
        if self._send("es_bulk_delete", "POST", f"/api/v1/{plural}/bulk-delete", json=body):
            for i in items:
                self.want.es_writes[(plural, shop, i)].append(EsWrite(version, None))

    def es_delete_all(self) -> None:
        plural, shop = self.rng.choice(KINDS), self.rng.choice(SHOPS)
        # A delete-all takes no version: it is ordered by acceptance. Requests are sent one
        # after the other, so its place in the sequence is the count of writes sent so far.
        position = self._next_version()
        params = {"customer_id": shop}
        if self._send("es_delete_all", "DELETE", f"/api/v1/{plural}", params=params):
            self.want.es_wipes[(plural, shop)].append(position)

    def _item(self) -> str:
        return f"i{self.rng.randint(1, 40)}"

    # -- ChatbotMobile -----------------------------------------------------------------

    def _chat_customer(self) -> str:
        return self.rng.choice((*CHATS, GONE))

    def _source(self, customer: str) -> str | None:
        source = self.rng.choice(SOURCES)
        # Only chat-a's "retired" documents are deleted by source, at the end.
        return "manual" if source == RETIRED_SOURCE and customer != CHATS[0] else source

    def doc_text(self) -> None:
        customer = self._chat_customer()
        title, source = self._name("text"), self._source(customer)
        body = {"customer_id": customer, "title": title, "text": f"body of {title}"}
        if source:
            body["source"] = source
        if self._send("doc_text", "POST", "/api/v1/documents/upload-text", json=body):
            self.want.documents[customer][title] = source

    def doc_file(self) -> None:
        customer = self._chat_customer()
        name, source = f"{self._name('file')}.txt", self._source(customer)
        data = {"customer_id": customer, **({"source": source} if source else {})}
        files = {"file": (name, f"contents of {name}".encode(), "text/plain")}
        if self._send("doc_file", "POST", "/api/v1/documents/upload-file", data=data, files=files):
            self.want.documents[customer][name] = source

    def doc_url(self) -> None:
        customer = self._chat_customer()
        url, source = f"https://docs.example.com/{self._name('page')}", self._source(customer)
        body = {"customer_id": customer, "url": url, **({"source": source} if source else {})}
        if self._send("doc_url", "POST", "/api/v1/documents/upload-url", json=body):
            self.want.documents[customer][url] = source

    def faq_create(self) -> None:
        customer = self._chat_customer()
        faq_id = self._name("faq")
        data = {"customer_id": customer, "faq_id": faq_id, "question": f"q {faq_id}"}
        data["answer"] = "first"
        answer = self._send("faq_create", "POST", "/api/v1/mobile-faq", data=data)
        if answer is None:
            return
        self.want.faqs[customer][faq_id] = "first"
        if customer == GONE or self.rng.random() >= 0.6:
            return
        if self.rng.random() < 0.5:
            # Sent at once: ChatbotMobile writes of one FAQ take effect in acceptance order.
            self._faq_follow_up(customer, faq_id)
            return
        self.pending.append(
            Pending(
                [answer["task_id"]],
                lambda: self._faq_follow_up(customer, faq_id),
                f"update of {faq_id}",
            )
        )

    def _faq_follow_up(self, customer: str, faq_id: str) -> None:
        if self.rng.random() < 0.4:
            path = f"/api/v1/mobile-faq/{faq_id}"
            if self._send("faq_delete", "DELETE", path, params={"customer_id": customer}):
                self.want.faqs[customer][faq_id] = None
            return
        data = {"customer_id": customer, "answer": "second"}
        if self._send("faq_update", "PUT", f"/api/v1/mobile-faq/{faq_id}", data=data):
            self.want.faqs[customer][faq_id] = "second"

    def faq_import(self) -> None:
        customer = self._chat_customer()
        stem = self._name("import")
        questions = [f"{stem} question {n}" for n in range(self.rng.randint(3, 12))]
        text = io.StringIO()
        text.write("question,answer\n")
        for question in questions:
            text.write(f"{question},imported\n")
        files = {"file": (f"{stem}.csv", text.getvalue().encode(), "text/csv")}
        data = {"customer_id": customer}
        if self._send("faq_import", "POST", "/api/v1/mobile-faq/import", data=data, files=files):
            self.want.imported[customer].extend(questions)

    def reindex(self) -> None:
        customer = self.rng.choice(CHATS)
        body = {"customer_id": customer}
        if self._send("doc_reindex", "POST", "/api/v1/documents/reindex", json=body):
            self.want.reindex[customer] += 1

    WEIGHTS: tuple[tuple[str, int], ...] = (
        ("es_upsert", 20),
        ("es_delete", 5),
        ("es_bulk_upsert", 6),
        ("es_bulk_delete", 3),
        ("es_delete_all", 1),
        ("doc_text", 8),
        ("doc_file", 3),
        ("doc_url", 2),
        ("faq_create", 8),
        ("faq_import", 1),
        ("reindex", 1),
    )

    def one(self) -> None:
        """Send one request of a kind drawn by weight."""
        names, weights = zip(*self.WEIGHTS, strict=True)
        getattr(self, self.rng.choices(names, weights)[0])()

    # -- dependent writes --------------------------------------------------------------

    def status(self, task_id: str) -> str | None:
        """A task's status from the API; None while the API cannot answer."""
        try:
            answer = self.api.get(f"/api/v1/tasks/{task_id}/status")
        except httpx.TransportError:
            return None
        if answer.status_code != 200:
            return None
        status: str = answer.json()["status"]
        return status

    def advance(self, budget: int = 40) -> None:
        """Send the follow-ups whose prerequisites succeeded (polling at most `budget`)."""
        current, self.pending = self.pending, []
        still: list[Pending] = []
        polled = 0
        for pending in current:
            if polled >= budget:
                still.append(pending)
                continue
            waiting = []
            for task_id in pending.after:
                if polled >= budget:
                    waiting.append(task_id)
                    continue
                polled += 1
                status = self.status(task_id)
                if status == "failed":
                    self.failed_waits.append(f"{pending.what}: {task_id} failed")
                    break
                if status != "success":
                    waiting.append(task_id)
            else:
                if waiting:
                    still.append(Pending(waiting, pending.send, pending.what))
                else:
                    pending.send()
        # Follow-ups queued by the sends above come after those still waiting.
        self.pending = still + self.pending

    def finish(self) -> None:
        """Send the end-of-run wipes at once: they wait in the log for every write they remove
        (per-entity ordering), so no client-side waiting is needed."""

        def wipe() -> None:
            params = {"customer_id": GONE}
            if self._send(
                "doc_delete_all", "DELETE", "/api/v1/documents/delete-all", params=params
            ):
                self.want.wiped_documents.add(GONE)
            if self._send("faq_delete_all", "DELETE", "/api/v1/mobile-faqs", params=params):
                self.want.wiped_faqs.add(GONE)

        wipe()
        customer = CHATS[0]

        def retire() -> None:
            params = {"customer_id": customer, "source": RETIRED_SOURCE}
            path = "/api/v1/documents/delete-by-source"
            if self._send("doc_delete_by_source", "DELETE", path, params=params):
                self.want.gone_sources[customer].add(RETIRED_SOURCE)

        retire()
