"""`helm test`: send a canary through the API to each worker queue and wait for its success.

Runs in the release's image: API_URL says where the API is; CANARY_TOKEN is a bearer token of
role service, or, unset, one is signed with AUTH_JWT_SECRET from the release's settings.
Exits 0 when every canary succeeded within CANARY_TIMEOUT_S, else 1 with the reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def _token() -> str:
    given = os.environ.get("CANARY_TOKEN", "")
    if given:
        return given
    from services.core.auth.tokens import issue_token
    from services.core.config import get_settings

    settings = get_settings()
    settings.require("AUTH_JWT_SECRET")
    return issue_token(settings, user_id="helm-test", customer_id=None,
                       roles=["service"], ttl_s=600)


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def main() -> int:
    api = os.environ["API_URL"].rstrip("/")
    deadline = time.monotonic() + float(os.environ.get("CANARY_TIMEOUT_S", "120"))
    token = _token()
    status, ready = _call(f"{api}/health/ready", token)
    if status != 200:
        print(f"API not ready: {status} {ready}", file=sys.stderr)
        return 1
    for queue in ("es", "http"):
        status, sent = _call(f"{api}/api/v1/canary", token, {"queue": queue})
        if status != 202:
            print(f"canary on {queue} refused: {status} {sent}", file=sys.stderr)
            return 1
        last: Any = None
        while time.monotonic() < deadline:
            status, last = _call(f"{api}{sent['status_url']}", token)
            if status == 200 and last.get("status") == "success":
                print(f"canary on {queue}: success ({sent['task_id']})")
                break
            time.sleep(1)
        else:
            print(f"canary on {queue} did not succeed in time: {last}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
