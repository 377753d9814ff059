"""ChatbotMobile stand-in: the contract in contracts/chatbotmobile.openapi.yaml, in memory.

    python -m tools.standins.chatbotmobile --host 127.0.0.1 --port 8090 --control-port 8190 \\
        [--token T ...]

Implemented, per customer (`customer_id` in the body of a write, in the query otherwise):

- Auth: `Authorization: Bearer <token>`, any non-empty token or one of the `--token` values;
  401 `unauthorized` otherwise. Errors are `{"error": {"code", "message"}}`; a request the
  contract does not allow (missing or mistyped field, unknown field, bad page) is 422
  `validation_error`.
- Idempotency on every write (POST, PUT, DELETE), as `tools.standins.chatbot.idempotency`
  describes: 400 `idempotency_key_missing`, replay with `Idempotent-Replayed: true`, 422
  `idempotency_key_reused`.
- Documents: `POST /v1/documents/{text,file,url}` (201, server-assigned uuid4-hex
  `document_id`, `source` defaulting to `text:<title or id>`, `file:<filename>`, `url:<url>`),
  `GET /v1/documents` (newest first, paged), `DELETE /v1/documents` and
  `/v1/documents/by-source` (`{"deleted": n}`), `GET /v1/documents/originals` (file and URL
  documents in upload order), `GET /v1/documents/sources` (counts, by name),
  `POST /v1/graphrag/reindex` (202 with a `job_id`; only counted).
- A file document downloads `file_url` (10 s limit) and records the real `size` and `sha256`;
  FAQ `attachments` likewise. A failed download, or a declared `size`/`sha256` that does not
  match, is 422 `file_unavailable`.
- FAQs: `POST /v1/faqs` (client-assigned `faq_id`; 409 `faq_exists`), `PUT /v1/faqs/{id}`
  (given fields replace the stored ones; 404 `faq_not_found`), `DELETE /v1/faqs/{id}` (404)
  and `DELETE /v1/faqs`, `POST /v1/faqs/import` (server-assigned ids, all rows or none,
  `{"created": n}`), `GET /v1/faqs` (creation order, paged), `GET /v1/faqs/export` (CSV
  `question,answer,category,tags`, tags joined by `;`).

Assumed about the real service, where the contract is silent: idempotency answers are kept
only for writes decided on the data (2xx, 404, 409), never for validation or download failures
or 5xx; a concurrent repeat of a key waits for the first request and replays its answer; unknown
body fields and JSON nulls are refused rather than ignored; `source` must not be empty; URL
documents are recorded, not fetched; originals list files and URLs, not text documents; a file
is downloaded once, when the request arrives, by a plain GET that follows redirects.

Control API on `--control-port` (see `tools.standins.faults`): faults `down`, `error` (with
`status`, e.g. 500, 503, or 429 with `retry_after_s`), `slow`, `timeout`; `POST /reset`;
`GET /stats` = `{"requests": N, "writes_applied": N, "replays": N, "by_customer":
{customer_id: {"documents": N, "faqs": N, "reindex": N}}}`, where `writes_applied` counts
writes answered 2xx the first time (replays excluded) and the per-customer counts are current.
"""

from __future__ import annotations

from tools.standins.chatbot.app import build_app
from tools.standins.chatbot.state import ChatbotState
from tools.standins.faults import FaultState
from tools.standins.server import base_parser, run


def main(argv: list[str] | None = None) -> None:
    """Run the ChatbotMobile stand-in until SIGTERM or SIGINT."""
    parser = base_parser("ChatbotMobile stand-in")
    parser.add_argument(
        "--token", action="append", default=[], help="accept only this bearer token (repeatable)"
    )
    args = parser.parse_args(argv)
    state = ChatbotState(FaultState(), frozenset(args.token))
    run(build_app(state), name="chatbotmobile-standin", args=args, state=state)


if __name__ == "__main__":
    main()
