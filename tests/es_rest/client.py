"""Turning a YAML `do` into an HTTP request to the cluster, and its answer into a response.

The APIs are the claimed ones (tools/standins/es/claim.py): their endpoints give the method
and the path; every argument that is not a path part or `body` is a query parameter. A
`HEAD` API answers true or false, as the official clients' `exists` methods do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tools.standins.es.claim import API_BY_NAME, Api

_PART = re.compile(r"\{(\w+)\}")


class ParamError(Exception):
    """What an official client refuses before sending (`catch: param`)."""


@dataclass
class Response:
    """A cluster's answer: status, headers, raw text and the parsed body."""

    status: int
    text: str
    body: Any
    warnings: list[str] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        """Whether a client would raise for it (HEAD's 404 is an answer, not an error)."""
        return self.status >= 400 and not (self.status == 404 and isinstance(self.body, bool))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _endpoint(api: Api, args: dict[str, Any], has_body: bool) -> tuple[str, str, set[str]]:
    """The method and path for these arguments: the endpoint using the most path parts."""
    best: tuple[int, tuple[str, ...], str, set[str]] | None = None
    given = {k for k, v in args.items() if v not in ([], "")}  # an empty list means all
    for methods, template in api.endpoints:
        parts = set(_PART.findall(template))
        if not parts <= given:
            continue
        if best is None or len(parts) > best[0]:
            best = (len(parts), methods, template, parts)
    if best is None:
        raise ParamError(f"{api.name}: missing a path part among {api.endpoints}")
    _, methods, template, parts = best
    preferred = ("POST", "PUT", "GET") if has_body else ("GET", "HEAD", "POST", "PUT", "DELETE")
    method = next((m for m in preferred if m in methods), methods[0])
    path = _PART.sub(lambda m: quote(_text(args[m.group(1)]), safe=",*"), template)
    return method, path, parts


def _body(api: Api, body: Any) -> tuple[bytes | None, str]:
    if body is None:
        return None, "application/json"
    if api.name == "bulk":
        lines = body if isinstance(body, list) else None
        if lines is None:
            text = body if isinstance(body, str) else json.dumps(body)
        else:
            text = "\n".join(item if isinstance(item, str) else json.dumps(item) for item in lines)
        return (text if text.endswith("\n") else text + "\n").encode(), "application/x-ndjson"
    if isinstance(body, str):
        return body.encode(), "application/json"
    return json.dumps(body).encode(), "application/json"


def call(
    http: httpx.Client, name: str, args: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """Send the API call `name` with `args` (path parts, parameters and `body`)."""
    api = API_BY_NAME.get(name)
    if api is None:
        raise ParamError(f"no API {name!r} in the claim")
    args = dict(args)
    body = args.pop("body", None)
    if body is None and api.body == "required":
        raise ParamError(f"{name} needs a body")
    method, path, parts = _endpoint(api, args, body is not None)
    every_part = {p for _, path in api.endpoints for p in _PART.findall(path)}
    params = {k: _text(v) for k, v in args.items() if k not in parts | every_part}
    content, content_type = _body(api, body)
    sent = {"Content-Type": content_type, **(headers or {})} if content is not None else headers
    answer = http.request(method, path, params=params, content=content, headers=sent)
    warnings = answer.headers.get_list("Warning")
    if method == "HEAD":
        return Response(answer.status_code, "", answer.status_code == 200, warnings)
    text = answer.text
    try:
        parsed: Any = answer.json() if text else ""
    except ValueError:
        parsed = text
    return Response(answer.status_code, text, parsed, warnings)
