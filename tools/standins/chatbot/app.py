"""The ChatbotMobile stand-in's aiohttp application: auth, errors, faults, routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from tools.standins.chatbot import routes_documents, routes_faqs
from tools.standins.chatbot.downloads import new_session
from tools.standins.chatbot.errors import ApiError
from tools.standins.chatbot.state import STATE, ChatbotState
from tools.standins.faults import Handler, fault_middleware
from tools.standins.inflight import inflight_middleware

log = logging.getLogger("standins.chatbot")

# An import chunk of 1000 rows can pass aiohttp's default 1 MiB body limit.
MAX_BODY_BYTES = 32 * 1024 * 1024
_FAULT_CODES = {429: "rate_limited", 500: "internal_error", 502: "bad_gateway", 503: "unavailable"}


def _fault_error(_request: web.Request, status: int, message: str) -> web.StreamResponse:
    return ApiError(status, _FAULT_CODES.get(status, "injected_fault"), message).response()


def _write_key(request: web.Request) -> str | None:
    """A write is named by its Idempotency-Key: one per task (and import chunk)."""
    if request.method == "GET":
        return None
    return request.headers.get("Idempotency-Key") or None


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[STATE].requests += 1
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = exc.response()
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except web.HTTPNotFound:
        return ApiError(404, "not_found", f"no endpoint {request.method} {request.path}").response()
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        return ApiError(405, "method_not_allowed", message).response()
    except web.HTTPRequestEntityTooLarge:
        message = f"bodies are limited to {MAX_BODY_BYTES} bytes"
        return ApiError(413, "too_large", message).response()
    except web.HTTPException:
        raise
    except Exception as exc:
        # A stand-in bug must be loud in the test log and still answer in the contract's shape.
        log.exception("unhandled error on %s %s", request.method, request.path_qs)
        return ApiError(500, "internal_error", f"stand-in error: {exc!r}").response()


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    tokens = request.app[STATE].tokens
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    if tokens and token not in tokens:
        raise ApiError(401, "unauthorized", "the bearer token is not accepted")
    return await handler(request)


async def _download_session(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    state.session = new_session()
    yield
    await state.session.close()
    state.session = None


def build_app(state: ChatbotState) -> web.Application:
    """The data application of the ChatbotMobile stand-in."""
    faults = fault_middleware(state.faults, _fault_error)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            inflight_middleware(state.in_flight, _write_key),
            _count_requests,
            faults,
            _errors,
            _auth,
        ],
    )
    app[STATE] = state
    app.cleanup_ctx.append(_download_session)
    routes_documents.add_routes(app.router)
    routes_faqs.add_routes(app.router)
    return app
