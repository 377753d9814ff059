"""OpenAI-compatible embeddings stand-in: deterministic vectors, OpenAI's request and error shapes.

    python -m tools.standins.embeddings --host 127.0.0.1 --port 8091 --control-port 8191

`POST /v1/embeddings` takes `{"model", "input": str | [str], "dimensions"?, "encoding_format"?,
"user"?}` and answers `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
"model", "usage": {"prompt_tokens", "total_tokens"}}`. A vector is a pure function of the text
and the dimension count (8 when not given): SHA-256 blocks scaled to [-1, 1], normalised to unit
length. `encoding_format: "base64"` (what the `openai` package asks for) packs little-endian
float32s. Tokens are counted roughly, one per four characters.

It needs `Authorization: Bearer <key>`: any key, or one of the `--api-key` values when given
(401 in OpenAI's error shape otherwise). Any model name is accepted; token-id inputs are not.

Control API on `--control-port` (see `tools.standins.faults`): faults `down`, `error`, `slow`,
`timeout`; `POST /reset`; `GET /stats` = `{"requests": N, "inputs": N, "keys": [distinct
bearer keys seen]}`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tools.standins.faults import FaultState, Handler, fault_middleware
from tools.standins.server import base_parser, run

DEFAULT_DIMENSIONS = 8
MAX_DIMENSIONS = 4096
MAX_INPUTS = 2048
_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
_FAULT_KINDS = {
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


@dataclass
class EmbeddingsState:
    """Counters of the stand-in and its fault state."""

    faults: FaultState
    api_keys: frozenset[str] = frozenset()
    requests: int = 0
    inputs: int = 0
    keys: set[str] = field(default_factory=set)

    def stats(self) -> dict[str, Any]:
        """Counters for the control API's `/stats`."""
        return {"requests": self.requests, "inputs": self.inputs, "keys": sorted(self.keys)}

    def reset(self) -> None:
        """Zero every counter."""
        self.requests = 0
        self.inputs = 0
        self.keys.clear()


STATE = web.AppKey("state", EmbeddingsState)


def embed(text: str, dimensions: int) -> list[float]:
    """The stand-in's vector for `text`: deterministic, `dimensions` long, unit length."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{dimensions}\0{block}\0{text}".encode()).digest()
        values.extend(n / 2**31 - 1.0 for (n,) in struct.iter_unpack(">I", digest))
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}

    def response(self) -> web.Response:
        """The HTTP answer."""
        return web.json_response(self.body, status=self.status)


def _fault_error(_request: web.Request, status: int, message: str) -> web.StreamResponse:
    type_, code = _FAULT_KINDS.get(status, ("server_error", None))
    return OpenAIError(status, message, type_=type_, code=code).response()


def _bearer_key(request: web.Request, state: EmbeddingsState) -> str:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    state.keys.add(key)
    if state.api_keys and key not in state.api_keys:
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")
    return key


def _inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or len(texts) > MAX_INPUTS:
        raise OpenAIError(
            400, f"'input' must be a string or a list of 1 to {MAX_INPUTS} strings", param="input"
        )
    for text in texts:
        if not isinstance(text, str) or not text:
            # Token-id arrays are valid for OpenAI but not offered here.
            raise OpenAIError(400, "'input' items must be non-empty strings", param="input")
    return texts


def _dimensions(body: dict[str, Any]) -> int:
    value = body.get("dimensions")
    if value is None:  # OpenAI treats an explicit null like an absent field
        value = DEFAULT_DIMENSIONS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSIONS:
        raise OpenAIError(
            400, f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}", param="dimensions"
        )
    return value


async def create_embeddings(request: web.Request) -> web.Response:
    """POST /v1/embeddings."""
    state = request.app[STATE]
    _bearer_key(request, state)
    try:
        body = await request.json()
    except ValueError:
        raise OpenAIError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise OpenAIError(400, f"Unrecognized request argument supplied: {unknown[0]}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "you must provide a model parameter")
    texts = _inputs(body)
    dimensions = _dimensions(body)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        message = "'encoding_format' must be 'float' or 'base64'"
        raise OpenAIError(400, message, param="encoding_format")
    data = []
    for index, text in enumerate(texts):
        vector: Any = embed(text, dimensions)
        if encoding == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    state.inputs += len(texts)
    tokens = sum(max(1, math.ceil(len(text) / 4)) for text in texts)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[STATE].requests += 1
    return await handler(request)


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OpenAIError as exc:
        return exc.response()
    except web.HTTPNotFound:
        return OpenAIError(404, f"Invalid URL ({request.method} {request.path})").response()
    except web.HTTPMethodNotAllowed:
        return OpenAIError(405, f"Method not allowed ({request.method} {request.path})").response()


def build_app(state: EmbeddingsState) -> web.Application:
    """The data application of the embeddings stand-in."""
    faults = fault_middleware(state.faults, _fault_error)
    app = web.Application(middlewares=[_count_requests, faults, _openai_errors])
    app[STATE] = state
    app.router.add_post("/v1/embeddings", create_embeddings)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the embeddings stand-in until SIGTERM or SIGINT."""
    parser = base_parser("OpenAI-compatible embeddings stand-in")
    parser.add_argument(
        "--api-key", action="append", default=[], help="accept only this key (repeatable)"
    )
    args = parser.parse_args(argv)
    state = EmbeddingsState(FaultState(), frozenset(args.api_key))
    run(build_app(state), name="embeddings-standin", args=args, state=state)


if __name__ == "__main__":
    main()
