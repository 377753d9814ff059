import httpx
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from services.core.errors import ErrorKind, PermanentError, TransientError, classify


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("PUT", "http://127.0.0.1:9200/products/_doc/1")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(code, request=request)
    )


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
def test_throttling_timeouts_and_server_errors_are_transient(code: int) -> None:
    assert classify(_status_error(code)) is ErrorKind.TRANSIENT


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422])
def test_other_client_errors_are_permanent(code: int) -> None:
    assert classify(_status_error(code)) is ErrorKind.PERMANENT


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        SoftTimeLimitExceeded(),
        TransientError("later"),
    ],
)
def test_network_failures_are_transient(exc: BaseException) -> None:
    assert classify(exc) is ErrorKind.TRANSIENT


@pytest.mark.parametrize("exc", [PermanentError("bad"), KeyError("id"), TypeError("x")])
def test_bugs_and_refusals_are_permanent(exc: BaseException) -> None:
    assert classify(exc) is ErrorKind.PERMANENT
