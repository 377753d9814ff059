"""The OpenAI-compatible embeddings stand-in, over real HTTP with httpx."""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.procs import wait_until
from tests.support.standins import Standin

KEY = "sk-test-default"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = Standin("embeddings", tmp_path_factory.mktemp("embeddings-standin")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(standin: Standin) -> None:
    standin.clear_fault()
    standin.reset()


@pytest.fixture
def api(standin: Standin) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=standin.url, headers=headers, timeout=5, trust_env=False) as client:
        yield client


def embed(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/embeddings", json={"model": "text-embedding-3-small", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_vectors_are_deterministic_unit_length_and_8_wide_by_default(api: httpx.Client) -> None:
    first = embed(api, input="hello world")
    again = embed(api, input="hello world")
    other = embed(api, input="hello there")

    vector = first["data"][0]["embedding"]
    assert len(vector) == 8
    assert vector == again["data"][0]["embedding"]
    assert vector != other["data"][0]["embedding"]
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
    assert first["object"] == "list"
    assert first["model"] == "text-embedding-3-small"
    assert first["data"][0]["object"] == "embedding"


def test_dimensions_and_list_inputs(api: httpx.Client) -> None:
    result = embed(api, input=["alpha", "beta", "alpha"], dimensions=64)
    data = result["data"]
    assert [item["index"] for item in data] == [0, 1, 2]
    assert [len(item["embedding"]) for item in data] == [64, 64, 64]
    assert data[0]["embedding"] == data[2]["embedding"]
    assert data[0]["embedding"] != data[1]["embedding"]
    # About one token per four characters: 2 + 1 + 2.
    assert result["usage"]["prompt_tokens"] == result["usage"]["total_tokens"] == 5

    assert len(embed(api, input="alpha", dimensions=None)["data"][0]["embedding"]) == 8
    narrow = embed(api, input="alpha", dimensions=3)["data"][0]["embedding"]
    assert len(narrow) == 3
    assert narrow != data[0]["embedding"][:3]  # the dimension count is part of the hash


def test_base64_encoding_packs_the_same_vector(api: httpx.Client) -> None:
    floats = embed(api, input="pack me", dimensions=16)["data"][0]["embedding"]
    packed = embed(api, input="pack me", dimensions=16, encoding_format="base64")
    decoded = struct.unpack("<16f", base64.b64decode(packed["data"][0]["embedding"]))
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(floats, decoded, strict=True))


def test_missing_key_is_401_in_openai_shape(standin: Standin) -> None:
    with httpx.Client(base_url=standin.url, trust_env=False) as anonymous:
        response = anonymous.post("/v1/embeddings", json={"model": "m", "input": "x"})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]
    assert "code" in error
    assert standin.stats()["keys"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, None),
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": [1, 2]}, "input"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ],
)
def test_invalid_requests_are_400(api: httpx.Client, body: dict[str, Any], param: str) -> None:
    response = api.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_stats_show_each_key_that_reached_the_provider(api: httpx.Client, standin: Standin) -> None:
    embed(api, input="one")
    response = api.post(
        "/v1/embeddings",
        json={"model": "m", "input": ["two", "three"]},
        headers={"Authorization": "Bearer sk-per-call-key"},
    )
    assert response.status_code == 200
    stats = standin.stats()
    assert stats["keys"] == ["sk-per-call-key", KEY]
    assert (stats["requests"], stats["inputs"]) == (2, 3)


def test_only_configured_keys_are_accepted(tmp_path_factory: pytest.TempPathFactory) -> None:
    standin = Standin(
        "embeddings", tmp_path_factory.mktemp("embeddings-keys"), "--api-key", "sk-good"
    ).start()
    try:
        with httpx.Client(base_url=standin.url, trust_env=False) as client:
            body = {"model": "m", "input": "x"}
            bad = client.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer no"})
            good = client.post(
                "/v1/embeddings", json=body, headers={"Authorization": "Bearer sk-good"}
            )
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        assert good.status_code == 200
    finally:
        standin.stop()


def test_down_refuses_connections_then_recovers(api: httpx.Client, standin: Standin) -> None:
    standin.fault("down", 0.8)
    with pytest.raises(httpx.ConnectError):
        api.post("/v1/embeddings", json={"model": "m", "input": "x"})
    wait_until(standin.data_port_open, 5, interval_s=0.05, what="the data port to reopen")
    assert embed(api, input="x")["data"]


@pytest.mark.parametrize(
    ("status", "retry_after", "error_type"),
    [(503, None, "server_error"), (429, 3, "requests")],
)
def test_error_fault_answers_in_openai_shape(
    api: httpx.Client, standin: Standin, status: int, retry_after: int | None, error_type: str
) -> None:
    options: dict[str, Any] = {"status": status}
    if retry_after is not None:
        options["retry_after_s"] = retry_after
    standin.fault("error", 5, **options)
    response = api.post("/v1/embeddings", json={"model": "m", "input": "x"})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert response.headers.get("Retry-After") == (
        None if retry_after is None else str(retry_after)
    )
    assert standin.stats()["inputs"] == 0


def test_slow_fault_delays_then_answers(api: httpx.Client, standin: Standin) -> None:
    standin.fault("slow", 5, delay_s=0.3)
    started = time.monotonic()
    assert embed(api, input="x")["data"]
    assert time.monotonic() - started >= 0.3


def test_timeout_fault_serves_the_request_but_the_caller_times_out(
    api: httpx.Client, standin: Standin
) -> None:
    standin.fault("timeout", 5, delay_s=2)
    with pytest.raises(httpx.ReadTimeout):
        api.post(
            "/v1/embeddings",
            json={"model": "m", "input": ["a", "b"]},
            headers={"Authorization": "Bearer sk-timeout"},
            timeout=0.3,
        )
    stats = standin.stats()
    assert stats["inputs"] == 2
    assert "sk-timeout" in stats["keys"]
