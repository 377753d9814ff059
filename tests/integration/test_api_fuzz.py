"""The API's own OpenAPI document, fuzzed with schemathesis against the running API.

Whatever the generated input, the API must not answer with a server error (5xx other than
the 502/503/504 that report an unreachable ChatbotMobile).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from services.core.config import get_settings
from tests.support.procs import free_port
from tests.support.server import parked, running_api, token

pytestmark = pytest.mark.slow
GATEWAY = {502, 503, 504}


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    uploads: Path = tmp_path_factory.mktemp("fuzz-uploads")
    fuzz_settings = parked(get_settings(), "fuzz").model_copy(
        update={
            "storage_local_dir": str(uploads),
            # Nothing listens here: reads must turn that into a clean 503.
            "chatbot_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    with running_api(fuzz_settings) as client:
        yield client


def test_no_generated_input_gives_a_server_error(live_api: httpx.Client) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support this
    # pytest version. Each operation gets its own bounded, derandomized run.
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token(get_settings())}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"operation not usable: {result.err()}")
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call(base_url=str(live_api.base_url), headers=headers)
            if response.status_code >= 500 and response.status_code not in GATEWAY:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        fuzz()
    assert operations >= 25
    assert failures == []
