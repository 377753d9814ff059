"""The task log on real PostgreSQL and SQLite: transitions, guards and races."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.repository import Claim, Refusal, TaskLogRepository


def claimed(repo: TaskLogRepository, task_id: str, **kwargs: object) -> Claim:
    """Claim a task that must be claimable."""
    claim = repo.claim(task_id, **kwargs)  # type: ignore[arg-type]
    assert isinstance(claim, Claim), claim
    return claim


def _new(repo: TaskLogRepository, **extra: object) -> str:
    task_id = str(uuid.uuid4())
    repo.create(
        task_id=task_id,
        task_name="es_upsert_product",
        queue="es",
        payload={"customer_id": "c1", "product_data": {"id": "p1"}},
        deadline_at=utcnow() + timedelta(hours=1),
        **extra,  # type: ignore[arg-type]
    )
    return task_id


def test_success_path_records_result(repo: TaskLogRepository) -> None:
    task_id = _new(repo, user_id="u1", customer_id="c1")
    claim = claimed(repo, task_id)
    assert claim.attempt == 1
    assert repo.get_by_task_id(task_id).status == TaskStatus.PROCESSING  # type: ignore[union-attr]
    assert repo.update_status(task_id, TaskStatus.SUCCESS, result={"result": "created"})
    row = repo.get_by_task_id(task_id)
    assert row is not None
    assert (row.status, row.result, row.attempts) == ("success", {"result": "created"}, 1)
    assert row.finished_at is not None and row.finished_at.tzinfo is not None


def test_a_finished_task_never_goes_back_to_processing(repo: TaskLogRepository) -> None:
    task_id = _new(repo)
    claimed(repo, task_id)
    assert repo.update_status(task_id, TaskStatus.SUCCESS, result={"ok": True})
    assert repo.claim(task_id) is Refusal.FINISHED
    assert not repo.update_status(task_id, TaskStatus.PROCESSING)
    assert not repo.update_status(task_id, TaskStatus.FAILED, error="late", error_kind="permanent")
    assert not repo.increment_retry(task_id)
    row = repo.get_by_task_id(task_id)
    assert row is not None and row.status == "success" and row.error_message is None


def test_concurrent_claims_one_wins_the_lease_the_others_are_refused(
    repo: TaskLogRepository,
) -> None:
    task_id = _new(repo)
    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(lambda _: repo.claim(task_id, lease_s=60), range(20)))
    won = [c for c in claims if isinstance(c, Claim)]
    assert len(won) == 1 and won[0].attempt == 1
    assert claims.count(Refusal.BUSY) == 19
    assert repo.get_by_task_id(task_id).attempts == 1  # type: ignore[union-attr]


def test_a_lapsed_lease_lets_the_next_delivery_claim(repo: TaskLogRepository) -> None:
    task_id = _new(repo)
    first = claimed(repo, task_id, lease_s=30)
    assert repo.claim(task_id, now=utcnow() + timedelta(seconds=29)) is Refusal.BUSY
    second = claimed(repo, task_id, now=utcnow() + timedelta(seconds=31))
    assert (first.attempt, second.attempt) == (1, 2)


def test_a_claim_after_a_lapsed_lease_counts_the_attempt_that_died_with_its_worker(
    repo: TaskLogRepository,
) -> None:
    # A whole worker killed mid-task records nothing: the next claim finds the task still
    # processing after its lease, and counts that attempt as lost, by task id.
    task_id = _new(repo)
    now = utcnow()
    assert claimed(repo, task_id, now=now, lease_s=30).lost_attempts == 0
    second = claimed(repo, task_id, now=now + timedelta(seconds=31), lease_s=30)
    assert second.lost_attempts == 1
    # An attempt that recorded its failure was not lost: the next claim counts nothing.
    assert repo.mark_retrying(
        task_id, attempt=second.attempt, error="503", error_kind="transient", next_attempt_at=now
    )
    assert claimed(repo, task_id, now=now + timedelta(seconds=32)).lost_attempts == 1
    assert repo.count_lost(task_id, attempt=3) == 2
    assert repo.count_lost(task_id, attempt=2) is None  # not the live attempt: fenced


def test_a_lost_attempt_is_recovered_only_by_the_process_that_ran_it(
    repo: TaskLogRepository,
) -> None:
    task_id = _new(repo)
    claimed(repo, task_id, owner="node-a:11")
    assert repo.lost_attempt(task_id, owner="node-b:22") is None
    lost = repo.lost_attempt(task_id, owner="node-a:11")
    assert lost is not None and lost.attempt == 1
    # Another delivery took over after the lease lapsed: the old process's loss is old news.
    claimed(repo, task_id, owner="node-b:22", now=utcnow() + timedelta(hours=2))
    assert repo.lost_attempt(task_id, owner="node-a:11") is None


def test_acceptance_numbers_increase_and_retries_keep_theirs(repo: TaskLogRepository) -> None:
    first, second = _new(repo), _new(repo)
    a, b = repo.get_by_task_id(first), repo.get_by_task_id(second)
    assert a is not None and b is not None and a.seq < b.seq
    retry = _new(repo, seq=a.seq, origin_task_id=first, retry_of=first)
    row = repo.get_by_task_id(retry)
    assert row is not None and row.seq == a.seq and row.idempotency_origin == first
    assert repo.reserve({})[0] > b.seq


def test_concurrent_retry_increments_are_all_counted(repo: TaskLogRepository) -> None:
    task_id = _new(repo)
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda _: repo.increment_retry(task_id), range(50)))
    assert repo.get_by_task_id(task_id).retry_count == 50  # type: ignore[union-attr]


def test_a_stale_attempt_cannot_overwrite_a_newer_one(repo: TaskLogRepository) -> None:
    task_id = _new(repo)
    old = claimed(repo, task_id, lease_s=1)
    new = claimed(repo, task_id, now=utcnow() + timedelta(seconds=2))
    later = utcnow() + timedelta(seconds=5)
    assert not repo.mark_retrying(
        task_id, attempt=old.attempt, error="old", error_kind="transient", next_attempt_at=later
    )
    assert not repo.update_status(
        task_id, TaskStatus.FAILED, error="old", error_kind="permanent", attempt=old.attempt
    )
    assert repo.mark_retrying(
        task_id, attempt=new.attempt, error="503", error_kind="transient", next_attempt_at=later
    )
    # The same attempt's outcome is recorded once (a failure signal may fire twice).
    assert not repo.mark_retrying(
        task_id, attempt=new.attempt, error="again", error_kind="transient", next_attempt_at=later
    )
    row = repo.get_by_task_id(task_id)
    assert row is not None
    assert (row.status, row.retry_count, row.error_message) == ("retrying", 1, "503")


def test_racing_finishers_first_one_wins(repo: TaskLogRepository) -> None:
    task_id = _new(repo)
    claim = claimed(repo, task_id)

    def finish(i: int) -> bool:
        if i % 2:
            return repo.update_status(task_id, TaskStatus.SUCCESS, result={"by": i})
        return repo.update_status(
            task_id, TaskStatus.FAILED, error=f"e{i}", error_kind="permanent", attempt=claim.attempt
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        wins = [i for i, won in zip(range(16), pool.map(finish, range(16)), strict=True) if won]
    assert len(wins) == 1
    row = repo.get_by_task_id(task_id)
    assert row is not None and row.finished_at is not None
    assert row.status == ("success" if wins[0] % 2 else "failed")


def test_failed_and_user_queries(repo: TaskLogRepository) -> None:
    user = f"u-{uuid.uuid4().hex[:6]}"
    ids = [_new(repo, user_id=user) for _ in range(3)]
    for task_id in ids[:2]:
        claim = claimed(repo, task_id)
        repo.update_status(
            task_id, TaskStatus.FAILED, error="bad", error_kind="permanent", attempt=claim.attempt
        )
    assert [r.task_id for r in repo.get_user_tasks(user)] == list(reversed(ids))
    assert len(repo.get_user_tasks(user, limit=2)) == 2
    failed = {r.task_id for r in repo.get_failed_tasks(limit=1000)}
    assert set(ids[:2]) <= failed and ids[2] not in failed


def test_cleanup_deletes_only_finished_rows_past_retention(repo: TaskLogRepository) -> None:
    done, pending = _new(repo), _new(repo)
    claimed(repo, done)
    old = utcnow() - timedelta(days=10)
    repo.update_status(done, TaskStatus.SUCCESS, result={}, now=old)
    assert repo.delete_finished_before(status=TaskStatus.SUCCESS, before=utcnow()) >= 1
    assert repo.get_by_task_id(done) is None
    assert repo.get_by_task_id(pending) is not None
