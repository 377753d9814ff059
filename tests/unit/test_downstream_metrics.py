"""Each request to a downstream is counted once, by an outcome read from its answer."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from services.core.chatbot.client import ChatbotClient, ChatbotRejected, ChatbotUnavailable
from services.core.config import Settings
from services.core.observability.downstream import CallOutcome, outcome_of_status


def _count(outcome: str, operation: str = "POST") -> float:
    labels = {"downstream": "chatbotmobile", "operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("durable_downstream_requests_total", labels) or 0.0


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, CallOutcome.OK),
        (201, CallOutcome.OK),
        (400, CallOutcome.CLIENT_ERROR),
        (404, CallOutcome.NOT_FOUND),
        (408, CallOutcome.SERVER_ERROR),
        (409, CallOutcome.CONFLICT),
        (422, CallOutcome.CLIENT_ERROR),
        (429, CallOutcome.THROTTLED),
        (500, CallOutcome.SERVER_ERROR),
        (503, CallOutcome.SERVER_ERROR),
    ],
)
def test_statuses_map_to_a_few_outcomes(status: int, outcome: CallOutcome) -> None:
    assert outcome_of_status(status) is outcome


@pytest.mark.parametrize(
    ("answer", "outcome", "raised"),
    [
        (httpx.Response(201, json={}), "ok", None),
        (httpx.Response(429, text="slow down"), "throttled", ChatbotUnavailable),
        (httpx.Response(422, text="bad"), "client_error", ChatbotRejected),
        (httpx.ConnectError("refused"), "unreachable", ChatbotUnavailable),
        (httpx.ReadTimeout("late"), "timeout", ChatbotUnavailable),
    ],
)
def test_chatbot_requests_are_counted_by_outcome(
    settings: Settings,
    answer: httpx.Response | Exception,
    outcome: str,
    raised: type[Exception] | None,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = ChatbotClient(settings, transport=httpx.MockTransport(handler))
    before = _count(outcome)
    try:
        if raised is None:
            client.write("POST", "/v1/faqs/f-123", "key-1", json={})
        else:
            with pytest.raises(raised):
                client.write("POST", "/v1/faqs/f-123", "key-1", json={})
    finally:
        client.close()
    assert _count(outcome) == before + 1
    # The path (with its ids) is never a label: the operation is the method.
    assert REGISTRY.get_sample_value(
        "durable_downstream_request_duration_seconds_count",
        {"downstream": "chatbotmobile", "operation": "POST"},
    )
