"""A rediss:// REDIS_URL (managed Redis) always verifies the server, as the settings say."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from services.core import processes, redisconn
from services.core.celery_app import celery_config
from services.core.config import Settings

URL = "rediss://durable:pw@redis.example.com:6380/0"


def test_a_rediss_url_without_options_still_verifies_the_server() -> None:
    # kombu alone would connect with CERT_NONE (and only warn): any server would do.
    config = celery_config(Settings(environment="development", redis_url=URL))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert "broker_use_ssl" not in celery_config(Settings(environment="development"))


def test_tls_options_follow_the_url_and_refuse_what_they_cannot_take() -> None:
    options = redisconn.tls_options(f"{URL}?ssl_cert_reqs=optional&ssl_ca_certs=/ca/ca.crt")
    assert options == {"ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": "/ca/ca.crt"}
    assert redisconn.tls_options("redis://redis:6379/0") is None
    for query in ("ssl_cert_reqs=sometimes", "ssl_verify=no"):
        with pytest.raises(ValidationError, match="REDIS_URL"):
            Settings(environment="development", redis_url=f"{URL}?{query}")


def test_celery_exporter_verifies_the_server_too() -> None:
    args = processes.celery_exporter_options(
        broker_url=URL, host="0.0.0.0", port=9808, tls=True, tls_ca_certs="/ca/ca.crt"
    )
    assert args[-4:] == [
        "--broker-ssl-option", "ssl_cert_reqs=2", "--broker-ssl-option", "ssl_ca_certs=/ca/ca.crt"
    ]  # fmt: skip
