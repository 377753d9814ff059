"""Fault injection shared by the stand-ins, and the control API that drives it.

A fault has a mode and ends by itself `duration_s` seconds after it was set:

- `down`: the data port refuses connections (the listener is closed, then reopened);
- `error`: every data request answers `status` (503 by default) with an error body in the
  stand-in's own format, plus `Retry-After` when `retry_after_s` is given;
- `slow`: every data request waits `delay_s`, then is handled normally;
- `timeout`: the request is applied first and its answer held `delay_s` before it is sent,
  the "write succeeded but the caller saw a timeout" case;
- `drop`: the request is applied, then its connection is cut without an answer (the caller
  sees the connection reset at once): "the write landed, the answer was lost", without
  waiting for the caller's timeout;
- stand-in specific modes (such as Elasticsearch's `bulk_reject`) that the stand-in reads
  from `FaultState.current()` itself.

An `error`, `slow`, `timeout` or `drop` fault may be narrowed with `match` to the requests it hits:
`{"method": "PUT", "path_prefix": "/v1/faqs", "body_contains": "text"}` (each part optional),
so a test can fail one write while the others go through.

Control API (its own port): `POST /faults`, `DELETE /faults`, `GET /faults`, `POST /reset`,
`GET /stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger("standins")

BASE_MODES = frozenset({"down", "error", "slow", "timeout", "drop"})
_FIELDS = frozenset({"mode", "duration_s", "status", "retry_after_s", "delay_s", "match"})
_MATCH_FIELDS = frozenset({"method", "path_prefix", "body_contains"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Renders the stand-in's own error body for an injected `error` fault: (status, message).
ErrorRenderer = Callable[[web.Request, int, str], web.StreamResponse]


class FaultInputError(ValueError):
    """A fault request the control API refuses (answered with 422)."""


@dataclass(frozen=True)
class Fault:
    """One active fault; `until` is a `time.monotonic()` deadline."""

    mode: str
    duration_s: float
    until: float
    status: int = 503
    retry_after_s: float | None = None
    delay_s: float = 0.0
    # Only requests matching all of these are hit (method, path_prefix, body_contains).
    match: tuple[tuple[str, str], ...] = ()

    async def hits(self, request: web.Request) -> bool:
        """Whether this fault applies to `request`."""
        wanted = dict(self.match)
        if "method" in wanted and request.method != wanted["method"].upper():
            return False
        if "path_prefix" in wanted and not request.path.startswith(wanted["path_prefix"]):
            return False
        if "body_contains" in wanted:
            # aiohttp keeps the body read here for the handler.
            body = (await request.read()).decode(errors="replace")
            if wanted["body_contains"] not in body:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The fault as the control API shows it."""
        return {
            "mode": self.mode,
            "duration_s": self.duration_s,
            "remaining_s": round(max(0.0, self.until - time.monotonic()), 3),
            "status": self.status if self.mode == "error" else None,
            "retry_after_s": self.retry_after_s,
            "delay_s": self.delay_s if self.mode in ("slow", "timeout") else None,
            "match": dict(self.match) or None,
        }


def _number(body: Mapping[str, Any], key: str, *, minimum: float, inclusive: bool) -> float:
    value = body[key]
    # bool is an int in Python; a JSON true is not a duration.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultInputError(f"{key} must be a finite number, got {value!r}")
    if value < minimum or (value == minimum and not inclusive):
        relation = ">=" if inclusive else ">"
        raise FaultInputError(f"{key} must be {relation} {minimum}, got {value!r}")
    return float(value)


def parse_fault(body: object, modes: Collection[str]) -> Fault:
    """Validate a `POST /faults` body into a fault starting now."""
    if not isinstance(body, dict):
        raise FaultInputError("the body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise FaultInputError(f"unknown fields {unknown}; allowed: {sorted(_FIELDS)}")
    mode = body.get("mode")
    if not isinstance(mode, str) or mode not in modes:
        raise FaultInputError(f"mode must be one of {sorted(modes)}, got {mode!r}")
    if "duration_s" not in body:
        raise FaultInputError("duration_s is required")
    duration_s = _number(body, "duration_s", minimum=0, inclusive=False)
    if mode != "error" and ("status" in body or "retry_after_s" in body):
        raise FaultInputError("status and retry_after_s apply only to mode 'error'")
    if mode not in ("slow", "timeout") and "delay_s" in body:
        raise FaultInputError("delay_s applies only to modes 'slow' and 'timeout'")
    status = body.get("status", 503)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise FaultInputError(f"status must be an integer from 400 to 599, got {status!r}")
    retry_after_s = None
    if body.get("retry_after_s") is not None:
        retry_after_s = _number(body, "retry_after_s", minimum=0, inclusive=True)
    delay_s = 0.0
    if mode in ("slow", "timeout"):
        if "delay_s" not in body:
            raise FaultInputError(f"delay_s is required for mode {mode!r}")
        delay_s = _number(body, "delay_s", minimum=0, inclusive=False)
    return Fault(
        mode=mode,
        duration_s=duration_s,
        until=time.monotonic() + duration_s,
        status=status,
        retry_after_s=retry_after_s,
        delay_s=delay_s,
        match=_parse_match(body.get("match"), mode),
    )


def _parse_match(raw: object, mode: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if mode not in BASE_MODES - {"down"}:
        raise FaultInputError("match applies only to modes 'error', 'slow', 'timeout' and 'drop'")
    if not isinstance(raw, dict) or not raw:
        raise FaultInputError("match must be a non-empty object")
    unknown = sorted(set(raw) - _MATCH_FIELDS)
    if unknown:
        raise FaultInputError(f"unknown match fields {unknown}; allowed: {sorted(_MATCH_FIELDS)}")
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise FaultInputError("match values must be non-empty strings")
    return tuple(sorted(raw.items()))


class FaultState:
    """The one fault a stand-in has now, if any; an expired fault reads as none."""

    def __init__(self, extra_modes: Collection[str] = ()) -> None:
        self.modes = BASE_MODES | frozenset(extra_modes)
        self._fault: Fault | None = None

    def set(self, fault: Fault) -> None:
        """Replace the current fault."""
        self._fault = fault

    def clear(self) -> Fault | None:
        """End the current fault now; the fault that was active."""
        fault, self._fault = self.current(), None
        return fault

    def current(self) -> Fault | None:
        """The active fault, or None once its duration has passed."""
        if self._fault is not None and time.monotonic() >= self._fault.until:
            self._fault = None
        return self._fault

    def is_down(self) -> bool:
        """Whether the data port should refuse connections now."""
        fault = self.current()
        return fault is not None and fault.mode == "down"


def fault_middleware(faults: FaultState, render_error: ErrorRenderer) -> Middleware:
    """Middleware applying `error`, `slow` and `timeout` faults to every data request."""

    @web.middleware
    async def apply_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        fault = faults.current()
        if fault is None or not await fault.hits(request):
            return await handler(request)
        if fault.mode == "error":
            # Read the body so the keep-alive connection stays usable for the next request.
            await request.read()
            response = render_error(request, fault.status, f"injected fault: status {fault.status}")
            if fault.retry_after_s is not None:
                # HTTP only allows whole seconds here; round up so callers never come early.
                response.headers["Retry-After"] = str(math.ceil(fault.retry_after_s))
            return response
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
            return await handler(request)
        if fault.mode == "timeout":
            response = await handler(request)
            await asyncio.sleep(fault.delay_s)
            return response
        if fault.mode == "drop":
            response = await handler(request)
            # Applied; the connection is cut (RST) before a byte of the answer is sent.
            transport = request.transport
            if transport is not None:
                transport.abort()
            return response
        return await handler(request)

    return apply_faults


class FaultControl:
    """The control API: sets and clears faults and calls `on_change` when `down` flips."""

    def __init__(
        self,
        faults: FaultState,
        *,
        on_change: Callable[[], Awaitable[None]],
        reset: Callable[[], None],
        stats: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.faults = faults
        self._on_change = on_change
        self._reset = reset
        self._stats = stats
        self._expiry: asyncio.Task[None] | None = None

    def app(self) -> web.Application:
        """The control application."""
        app = web.Application()
        app.router.add_post("/faults", self._set)
        app.router.add_delete("/faults", self._clear)
        app.router.add_get("/faults", self._show)
        app.router.add_post("/reset", self._reset_data)
        app.router.add_get("/stats", self._show_stats)
        app.on_cleanup.append(self._cancel_expiry)
        return app

    async def _set(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body must be JSON"}, status=422)
        try:
            fault = parse_fault(body, self.faults.modes)
        except FaultInputError as exc:
            return web.json_response({"error": str(exc)}, status=422)
        self.faults.set(fault)
        await self._on_change()
        await self._cancel_expiry()
        self._expiry = asyncio.create_task(self._expire(fault))
        return web.json_response(fault.describe(), status=201)

    async def _expire(self, fault: Fault) -> None:
        # The fault itself ends by the clock; this only reopens a closed data port on time.
        await asyncio.sleep(max(0.0, fault.until - time.monotonic()))
        try:
            await self._on_change()
        except OSError:
            # Nobody awaits this task: say loudly that the data port could not be reopened.
            log.exception("could not reopen the data port after fault %s ended", fault.mode)

    async def _cancel_expiry(self, _app: web.Application | None = None) -> None:
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self._expiry = None

    async def _clear(self, _request: web.Request) -> web.Response:
        fault = self.faults.clear()
        await self._cancel_expiry()
        await self._on_change()
        return web.json_response({"cleared": fault.describe() if fault else None})

    async def _show(self, _request: web.Request) -> web.Response:
        fault = self.faults.current()
        return web.json_response(fault.describe() if fault else None)

    async def _reset_data(self, _request: web.Request) -> web.Response:
        self._reset()
        return web.json_response({"reset": True})

    async def _show_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(dict(self._stats()))
