from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from services.core.config import DEV_JWT_SECRET, DEV_SECRETS_KEY, ROLE_SECRETS, Settings
from services.core.taskdefs import Queue


def test_visibility_timeout_must_exceed_countdown_plus_run_time_plus_lease_margin() -> None:
    # The longest countdown message is LONG_WAIT_S: longer waits are held in the task log.
    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT_S"):
        Settings(broker_visibility_timeout_s=340, long_wait_s=10, task_time_limit_s=300)
    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT_S"):
        Settings(broker_visibility_timeout_s=600, long_wait_s=300, task_time_limit_s=300)
    Settings(broker_visibility_timeout_s=341, long_wait_s=10, task_time_limit_s=300)
    # Long backoffs and breaker periods no longer bound it: they wait in the log.
    Settings(
        broker_visibility_timeout_s=341,
        long_wait_s=10,
        task_time_limit_s=300,
        retry_backoff_max_s=3600,
        breaker_open_max_s=3600,
    )


def test_production_refuses_the_development_secrets_key() -> None:
    with pytest.raises(ValidationError, match="SECRETS_KEY"):
        Settings(environment="production", flower_basic_auth="ops:pw", secrets_key=DEV_SECRETS_KEY)


def test_soft_limit_must_be_below_hard_limit() -> None:
    with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT"):
        Settings(task_soft_time_limit_s=300, task_time_limit_s=300)


def test_budgets_by_queue() -> None:
    s = Settings(es_retry_budget_s=10, http_retry_budget_s=5, es_max_retries=3)
    assert s.retry_budget_s(Queue.ES) == 10 and s.retry_budget_s(Queue.HTTP) == 5
    assert s.max_retries(Queue.ES) == 3 and s.max_retries(Queue.HTTP) is None


def test_every_setting_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}" not in readme]
    assert missing == []


def test_a_tasks_own_time_limits_are_capped_by_the_settings() -> None:
    s = Settings(task_soft_time_limit_s=15, task_time_limit_s=20)
    assert s.time_limits(240, 300) == (15, 20)
    assert s.time_limits(5, 10) == (5, 10)
    assert s.time_limits(None, None) == (15, 20)
    # A soft limit is always below the hard one.
    assert s.time_limits(18, 12) == (12 * 0.8, 12)


PRODUCTION: dict[str, Any] = {
    "database_url": "postgresql+psycopg://app:pw@db.internal/tasks",
    "redis_url": "redis://redis.internal:6379/0",
    "elasticsearch_url": "https://es-1.internal:9200,https://es-2.internal:9200",
    "chatbot_url": "http://chatbot.internal",
    "public_api_url": "https://api.example.com",
    "storage_local_dir": "/shared/uploads",
    "secrets_key": Fernet.generate_key().decode(),
    "auth_jwt_secret": "a-private-secret-of-at-least-32-characters",
    "flower_basic_auth": "ops:pw",
    "api_host": "0.0.0.0",
    "flower_host": "0.0.0.0",
}


def _settings(**values: Any) -> Settings:
    """Settings from `values` and the environment only (no .env file)."""
    return Settings(_env_file=None, **values)


@pytest.fixture
def unset_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting in the environment, as in a deployment that forgot them (the test run
    sets ENVIRONMENT=development, its own secrets, database and broker)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_without_environment_the_development_defaults_are_refused_by_name(
    unset_environment: None,
) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings()
    message = str(refused.value)
    for variable in (
        "ENVIRONMENT",
        "SECRETS_KEY",
        "AUTH_JWT_SECRET",
        "FLOWER_BASIC_AUTH",
        "DATABASE_URL",
        "REDIS_URL",
        "ELASTICSEARCH_URL",
        "CHATBOT_URL",
        "PUBLIC_API_URL",
        "STORAGE_LOCAL_DIR",
        "API_HOST",
        "FLOWER_HOST",
    ):
        assert variable in message
    # Nothing refused is echoed back (the error names variables, not values).
    assert DEV_SECRETS_KEY not in message and DEV_JWT_SECRET not in message


@pytest.mark.parametrize("name", sorted(PRODUCTION))
def test_each_production_setting_is_required_on_its_own(unset_environment: None, name: str) -> None:
    assert _settings(**PRODUCTION).environment == "production"
    development_default = {k: v for k, v in PRODUCTION.items() if k != name}
    with pytest.raises(ValidationError, match=name.upper()):
        _settings(**development_default)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("database_url", "sqlite:////shared/tasklog.db"),
        ("redis_url", "redis://localhost:6379/0"),
        ("elasticsearch_url", "https://es-1.internal:9200,http://127.0.0.2:9200"),
        ("chatbot_url", "http://[::1]:8090"),
        ("api_host", "127.0.0.1"),
        ("secrets_key", f"{Fernet.generate_key().decode()},{DEV_SECRETS_KEY}"),
    ],
)
def test_production_refuses_sqlite_loopback_and_public_keys(
    unset_environment: None, name: str, value: str
) -> None:
    with pytest.raises(ValidationError, match=name.upper()):
        _settings(**{**PRODUCTION, name: value})


def test_s3_storage_needs_no_local_directory_or_public_url(unset_environment: None) -> None:
    local_only = {"storage_local_dir", "public_api_url"}
    cloud = {k: v for k, v in PRODUCTION.items() if k not in local_only}
    _settings(**cloud, storage_backend="s3", s3_bucket="uploads")


def test_development_must_be_said_and_then_takes_the_local_defaults(
    unset_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    settings = _settings()
    assert settings.database_url.startswith("sqlite") and settings.api_host == "127.0.0.1"


def test_jwks_needs_an_issuer_and_an_audience() -> None:
    jwks = {"auth_jwks_url": "https://idp.example.com/.well-known/jwks.json"}
    for missing in ({}, {"auth_issuer": "https://idp.example.com/"}, {"auth_audience": "api"}):
        with pytest.raises(ValidationError, match="AUTH_ISSUER and AUTH_AUDIENCE"):
            _settings(**jwks, **missing)
    _settings(**jwks, auth_issuer="https://idp.example.com/", auth_audience="api")


def test_secrets_key_takes_several_keys_newest_first_and_refuses_a_bad_one() -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert Settings(secrets_key=f" {new} , {old} ").secrets_keys == [new, old]
    with pytest.raises(ValidationError, match="key 2 of 2 is not a Fernet key") as refused:
        Settings(secrets_key=f"{new},not-a-key-but-a-secret")
    assert "not-a-key-but-a-secret" not in str(refused.value)


# Every spelling of "this machine" the resolver (inet_aton, getaddrinfo) takes: short,
# integer, hex and octal IPv4 forms, IPv4-mapped IPv6, the unspecified addresses, and
# localhost written with another case or a trailing dot.
LOOPBACK_HOSTS = [
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "127.0.1",
    "0.0.0.0",
    "0",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::]",
    "[0:0:0:0:0:0:0:1]",
    "LocalHost",
    "localhost.",
    "api.localhost",
]


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("redis_url", "redis://{host}:6379/0"),
        ("elasticsearch_url", "https://es-1.internal:9200,http://{host}:9200"),
        ("chatbot_url", "http://{host}:8090"),
        ("public_api_url", "https://{host}"),
    ],
)
def test_every_spelling_of_loopback_is_refused_outside_development(
    unset_environment: None, environment: str, host: str, name: str, url: str
) -> None:
    with pytest.raises(ValidationError, match=name.upper()):
        _settings(**{**PRODUCTION, "environment": environment, name: url.format(host=host)})


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("host", ["127.1", "0x7f000001", "2130706433", "::ffff:127.0.0.1", "::1"])
@pytest.mark.parametrize("name", ["api_host", "flower_host"])
def test_listening_on_any_spelling_of_loopback_is_refused_outside_development(
    unset_environment: None, environment: str, host: str, name: str
) -> None:
    with pytest.raises(ValidationError, match=name.upper()):
        _settings(**{**PRODUCTION, "environment": environment, name: host})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.7", "api.internal"])
def test_a_server_may_listen_on_every_interface_or_a_named_one(
    unset_environment: None, host: str
) -> None:
    assert _settings(**{**PRODUCTION, "api_host": host, "flower_host": host}).api_host == host


@pytest.mark.parametrize(
    "host", ["10.0.0.7", "128.0.0.1", "0x0a000007", "[fe80::1]", "es.internal", "localhost.example"]
)
def test_addresses_that_are_not_this_machine_are_accepted(
    unset_environment: None, host: str
) -> None:
    _settings(**{**PRODUCTION, "chatbot_url": f"http://{host}:8090"})


# The public key as other text that decodes to the same 32 bytes: a '.' inside (skipped by
# lenient base64 decoders, such as the one older `cryptography` releases used), the padding
# left out, a line break inside. Each is refused as the development key, by its bytes.
DEV_KEY_SPELLINGS = [
    f"{DEV_SECRETS_KEY[:10]}.{DEV_SECRETS_KEY[10:]}",
    DEV_SECRETS_KEY.rstrip("="),
    f"{DEV_SECRETS_KEY[:20]}\n{DEV_SECRETS_KEY[20:]}",
]


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("spelling", DEV_KEY_SPELLINGS)
def test_the_development_key_in_another_spelling_is_refused_as_such(
    unset_environment: None, environment: str, spelling: str
) -> None:
    keys = f"{Fernet.generate_key().decode()},{spelling}"
    with pytest.raises(ValidationError, match="SECRETS_KEY is the public development key"):
        _settings(**{**PRODUCTION, "environment": environment, "secrets_key": keys})


@pytest.mark.parametrize("name", sorted(PRODUCTION))
def test_the_test_environment_fails_closed_like_production(
    unset_environment: None, name: str
) -> None:
    # ENVIRONMENT=test names a shared test deployment, not a laptop: only development
    # takes the development defaults.
    assert _settings(**PRODUCTION, environment="test").environment == "test"
    development_default = {k: v for k, v in PRODUCTION.items() if k != name}
    with pytest.raises(ValidationError, match=name.upper()):
        _settings(**development_default, environment="test")


SECRET_SETTINGS = {
    "DATABASE_URL": "database_url",
    "SECRETS_KEY": "secrets_key",
    "AUTH_JWT_SECRET": "auth_jwt_secret",
    "FLOWER_BASIC_AUTH": "flower_basic_auth",
}


@pytest.mark.parametrize("role", sorted(ROLE_SECRETS))
def test_a_role_is_refused_exactly_the_secrets_it_reads(unset_environment: None, role: str) -> None:
    # A pod gets only its role's keys of the Secret (the chart): Flower needs no DATABASE_URL.
    for variable, field in SECRET_SETTINGS.items():
        without = {k: v for k, v in PRODUCTION.items() if k != field}
        if variable in ROLE_SECRETS[role]:
            with pytest.raises(ValidationError, match=variable):
                _settings(**without, process_role=role)
        else:
            assert _settings(**without, process_role=role).process_role == role
    assert ROLE_SECRETS["flower"] == {"FLOWER_BASIC_AUTH"}
    assert ROLE_SECRETS["any"] == set(SECRET_SETTINGS)


def test_code_that_reads_a_secret_refuses_a_role_that_skipped_its_check() -> None:
    flower = _settings(**PRODUCTION, process_role="flower")
    with pytest.raises(ValueError, match="PROCESS_ROLE=flower does not read DATABASE_URL"):
        flower.require("DATABASE_URL", "FLOWER_BASIC_AUTH")
    _settings(**PRODUCTION, process_role="api").require("DATABASE_URL", "SECRETS_KEY")
