import pytest
from pydantic import ValidationError

from services.core.config import Settings
from services.core.taskdefs import Queue


def test_visibility_timeout_must_exceed_countdown_plus_run_time() -> None:
    with pytest.raises(ValidationError, match="BROKER_VISIBILITY_TIMEOUT_S"):
        Settings(broker_visibility_timeout_s=800, retry_backoff_max_s=600, task_time_limit_s=300)
    Settings(broker_visibility_timeout_s=901, retry_backoff_max_s=600, task_time_limit_s=300)


def test_production_refuses_the_development_secrets_key() -> None:
    with pytest.raises(ValidationError, match="SECRETS_KEY"):
        Settings(environment="production", flower_basic_auth="ops:pw")


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
