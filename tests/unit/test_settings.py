import pytest
from pydantic import ValidationError

from services.core.config import Settings
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


def test_a_tasks_own_time_limits_are_capped_by_the_settings() -> None:
    s = Settings(task_soft_time_limit_s=15, task_time_limit_s=20)
    assert s.time_limits(240, 300) == (15, 20)
    assert s.time_limits(5, 10) == (5, 10)
    assert s.time_limits(None, None) == (15, 20)
    # A soft limit is always below the hard one.
    assert s.time_limits(18, 12) == (12 * 0.8, 12)
