"""The one settings module: every process reads its configuration from here."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import redisconn
from services.core.addresses import is_loopback, is_this_machine
from services.core.fairness import FairShare, parse_weights
from services.core.rates import parse_limits
from services.core.secrecy import key_bytes, split_keys
from services.core.taskdefs import Downstream, Queue

# A Fernet key that is public by construction: fine on a laptop, refused in production.
DEV_SECRETS_KEY = "ZGV2ZWxvcG1lbnQtb25seS1rZXktZG8tbm90LXVzZSE="
# The JWT secret of the local stack (`make token` signs with it); refused in production.
DEV_JWT_SECRET = "development-only-jwt-secret-change-me"

ProcessRole = Literal["any", "api", "worker", "flower", "migrate", "canary"]
# The secret settings each kind of process reads. The chart sets PROCESS_ROLE per pod and
# gives the pod these keys of the Secret (and its optional credentials), never the whole
# Secret; production refuses a missing or development value only among what the role reads.
# "any" (tools, `make up`, a shell) reads them all. A piece of code that reads one of them
# asks for it (`Settings.require`), so a process cannot run under a role that skipped its
# check.
ROLE_SECRETS: dict[str, frozenset[str]] = {
    "any": frozenset({"DATABASE_URL", "SECRETS_KEY", "AUTH_JWT_SECRET", "FLOWER_BASIC_AUTH"}),
    "api": frozenset({"DATABASE_URL", "SECRETS_KEY", "AUTH_JWT_SECRET"}),
    "worker": frozenset({"DATABASE_URL", "SECRETS_KEY"}),
    "flower": frozenset({"FLOWER_BASIC_AUTH"}),
    "migrate": frozenset({"DATABASE_URL"}),
    "canary": frozenset({"AUTH_JWT_SECRET"}),
}


class Settings(BaseSettings):
    """Configuration from environment variables (names are the field names, upper-case)."""

    # hide_input_in_errors: a refused setting must not print the others (secrets among them).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    # Fail closed: anything but an explicit "development" (production, and "test": a shared
    # test deployment) refuses the development secrets, SQLite and loopback-only addresses.
    environment: Literal["development", "test", "production"] = "production"
    # Which process these settings are for (ROLE_SECRETS): the secrets production checks.
    process_role: ProcessRole = "any"

    # Storage of the task log. SQLite serves a laptop; PostgreSQL serves a cluster.
    database_url: str = "sqlite:///var/tasklog.db"
    # Connections each process keeps to the task log (opened as needed, then kept: at least
    # one per API request thread, API_THREADS, so no request opens a connection), and how
    # many more it may open at a busy moment (closed again after use).
    database_pool_size: int = Field(40, ge=1)
    database_max_overflow: int = Field(10, ge=0)
    # A PostgreSQL schema of its own for the task log (empty: the connection's default
    # search_path, as before). Lets the task log live in the database of an application
    # that writes to it inside its own transactions (README, "Writes inside your own
    # transaction") without mixing with that application's tables or its Alembic history.
    tasklog_schema: str = Field("", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")

    # Broker. All keys Celery/kombu write are prefixed with redis_key_prefix, so several
    # deployments (or test runs) can share one Redis without seeing each other's queues.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel: REDIS_URL lists the sentinels (sentinel://host:26379/0;sentinel://...),
    # and this names the master they watch.
    redis_sentinel_master: str | None = None
    redis_key_prefix: str = ""
    broker_connect_timeout_s: float = Field(2.0, gt=0)
    broker_socket_timeout_s: float = Field(10.0, gt=0)
    # Redis has no real acks: a delivered message sits in an "unacked" hash until this many
    # seconds pass, then any worker puts it back on the queue. It must exceed the longest
    # countdown plus the longest run time, or delayed retries get delivered twice.
    broker_visibility_timeout_s: int = Field(1200, gt=0)
    # How often a worker sweeps the unacked hash for messages of dead workers.
    broker_restore_interval_s: int = Field(10, gt=0)
    # Publishing from the API: bounded, so an unreachable broker costs at most a few seconds.
    publish_max_retries: int = Field(2, ge=0)
    # Broker connections a process keeps for publishing (at least the API's API_THREADS).
    broker_pool_limit: int = Field(40, ge=1)

    # Retry policy: capped exponential backoff with full jitter, bounded by a deadline.
    retry_backoff_base_s: float = Field(1.0, gt=0)
    retry_backoff_max_s: float = Field(600.0, gt=0)
    es_retry_budget_s: int = Field(24 * 3600, gt=0)
    http_retry_budget_s: int = Field(6 * 3600, gt=0)
    maintenance_retry_budget_s: int = Field(3600, gt=0)
    # Optional count limits on top of the deadline (unset = the deadline alone decides).
    es_max_retries: int | None = Field(None, ge=0)
    http_max_retries: int | None = Field(None, ge=0)

    # Default run-time limits of a task; a TaskSpec may set its own.
    task_soft_time_limit_s: int = Field(240, gt=0)
    task_time_limit_s: int = Field(300, gt=0)

    # Retention of finished rows in the task log (the plan's 7 days of results).
    tasklog_success_retention_days: int = Field(7, ge=1)
    tasklog_failed_retention_days: int = Field(30, ge=1)

    # Keys that seal per-task secrets (api keys) in the task log and sign file links; Fernet,
    # urlsafe base64, comma-separated, newest first: the first seals and signs, every one
    # opens and verifies, so a rotation puts the new key in front of the old one.
    secrets_key: SecretStr = SecretStr(DEV_SECRETS_KEY)

    # Worker shutdown: on SIGTERM, running tasks get this long to finish (Celery soft
    # shutdown, with REMAP_SIGTERM=SIGQUIT), then the rest goes back to the queue at once; the
    # pod's terminationGracePeriodSeconds must be longer.
    worker_soft_shutdown_timeout_s: float = Field(60.0, ge=0)
    # Worker liveness: the consumer's event loop touches this file every interval while it
    # runs; `python -m services.core.probes worker-live` fails once it is older than max age.
    # Empty: worker.alive in the temporary directory.
    worker_heartbeat_file: str = ""
    worker_heartbeat_interval_s: float = Field(5.0, gt=0)
    worker_heartbeat_max_age_s: float = Field(60.0, gt=0)
    # GET /health/celery answers from its last view; one older than this is refreshed in the
    # background (one broadcast to the workers at a time).
    health_celery_refresh_s: float = Field(10.0, gt=0)

    # Elasticsearch (official async client, 8.x). Comma-separated URLs.
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_ca_certs: str | None = None
    elasticsearch_verify_certs: bool = True
    elasticsearch_request_timeout_s: float = Field(10.0, gt=0)
    # Indices are <prefix>products, <prefix>services, <prefix>accessories.
    es_index_prefix: str = ""
    bulk_max_items: int = Field(1000, ge=1, le=10000)

    # Embeddings for with_embedding=True: "none" or an OpenAI-compatible HTTP API.
    embeddings_provider: Literal["none", "openai"] = "none"
    embeddings_base_url: str = "https://api.openai.com/v1"
    embeddings_model: str = "text-embedding-3-small"
    embeddings_dimensions: int = Field(1536, ge=1, le=4096)
    embeddings_api_key: SecretStr | None = None
    # Fields of an item whose text is embedded, joined by newlines.
    embeddings_text_fields: str = "name,description"
    embeddings_timeout_s: float = Field(30.0, gt=0)

    # ChatbotMobile (contract: contracts/chatbotmobile.openapi.yaml).
    chatbot_url: str = "http://127.0.0.1:8090"
    chatbot_api_token: SecretStr | None = None
    chatbot_connect_timeout_s: float = Field(3.0, gt=0)
    chatbot_read_timeout_s: float = Field(30.0, gt=0)

    # Uploaded files are stored first; only their reference travels in a task.
    storage_backend: Literal["local", "s3"] = "local"
    storage_local_dir: str = "var/uploads"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_key_prefix: str = "uploads/"
    # ChatbotMobile fetches stored files by URL: pre-signed on S3, signed by our API for local
    # storage (then PUBLIC_API_URL must be an address ChatbotMobile can reach).
    public_api_url: str = "http://127.0.0.1:8000"
    file_url_ttl_s: int = Field(3600, ge=60)
    upload_max_bytes: int = Field(20 * 1024 * 1024, ge=1)
    upload_allowed_types: str = (
        "application/pdf,text/plain,text/markdown,text/csv,text/html,application/msword,"
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
        "image/png,image/jpeg"
    )
    upload_text_max_chars: int = Field(200_000, ge=1)
    stored_file_retention_days: int = Field(7, ge=1)
    # Request bodies: JSON (and any body that is not multipart) up to API_MAX_BODY_BYTES, a
    # multipart upload up to UPLOAD_MAX_REQUEST_BYTES in all; both are counted while the body
    # streams in, so an oversized request is refused before it is read, spooled or parsed.
    api_max_body_bytes: int = Field(2 * 1024 * 1024, ge=1)
    # Caller data (an item's `data`, each bulk item's) is refused past this depth or size:
    # deeper values stop recursive code (a worker's pool hand-off, serializers), larger ones
    # are carried by every message, row and answer of the task.
    data_max_depth: int = Field(64, ge=1, le=200)
    data_max_bytes: int = Field(1024 * 1024, ge=1)
    upload_max_request_bytes: int = Field(64 * 1024 * 1024, ge=1)
    # FAQ import files are parsed in a child process, within these bounds.
    faq_import_max_rows: int = Field(20_000, ge=1)
    faq_import_max_cell_chars: int = Field(32_767, ge=1, le=131_072)
    faq_import_max_uncompressed_bytes: int = Field(50 * 1024 * 1024, ge=1)
    faq_import_timeout_s: float = Field(30.0, gt=0)
    faq_import_chunk_rows: int = Field(500, ge=1, le=1000)

    # Authentication: JWTs signed with a shared secret (HS256) or by keys at a JWKS URL (RS256).
    auth_jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # Claims that carry the tenant and the roles (user, admin, service); the user is `sub`.
    auth_customer_claim: str = "customer_id"
    auth_roles_claim: str = "roles"
    # Idempotency-Key headers are remembered per customer this long.
    idempotency_key_ttl_s: int = Field(24 * 3600, ge=60)
    # Most failed tasks one redrive call may re-enqueue.
    redrive_max_per_call: int = Field(500, ge=1, le=10_000)

    # Waits longer than LONG_WAIT_S (a long backoff, a rate-limit window) are kept in the task
    # log with no broker message and released by the scheduler when due; shorter ones are
    # countdown messages, which a worker holds in memory and Redis in its unacked hash until
    # they are due. Breaker waits and ordering waits are always kept in the log.
    long_wait_s: float = Field(10.0, gt=0)
    # The scheduler's releaser: how often it runs, how many messages it keeps waiting in a
    # queue at most (so a drained backlog never floods Redis), and how many it publishes a run.
    release_interval_s: float = Field(1.0, gt=0)
    release_queue_depth: int = Field(500, ge=1)
    release_batch: int = Field(500, ge=1)
    # A task whose deliveries killed or hung their pool process (or whole worker) this many
    # times fails for good as `poison` instead of taking more workers down.
    poison_max_lost_attempts: int = Field(3, ge=1)
    # One live attempt per task: a claim holds a lease for the task's hard time limit plus
    # this margin (the pool kills the attempt first); no other delivery may claim it meanwhile.
    lease_margin_s: float = Field(30.0, gt=0)
    # A task waiting for an earlier write of the same entity is woken when that write
    # finishes; this is the safety net if a wake-up was missed.
    order_recheck_s: float = Field(300.0, gt=0)
    # Fair share: a customer with this many outstanding tasks on a queue (queued, running, or
    # held for a breaker, a backoff or a rate limit) has its further writes accepted at once
    # but kept waiting in the task log, and released in turn as its work finishes. 0: off.
    # FAIR_SHARE_WEIGHTS ("customer=2,other=0.5") multiplies a customer's bound and turns.
    fair_share_bound: int = Field(8, ge=0, le=10_000)
    fair_share_weights: str = ""
    # Metrics and /health/celery show the customers with the most outstanding and waiting
    # work per queue, this many, and the rest summed as `other` (bounded label values).
    fair_share_top_customers: int = Field(10, ge=1, le=100)

    # The reconciler republishes accepted tasks whose broker message is gone; a task must
    # have been quiet this long before it is looked at.
    reconcile_interval_s: float = Field(30.0, gt=0)
    reconcile_stale_s: float = Field(60.0, gt=0)

    # Circuit breaker per downstream, shared by all workers through Redis: after
    # BREAKER_FAILURE_THRESHOLD transient failures in a row (each within BREAKER_WINDOW_S of
    # the last) the downstream's tasks are parked without spending retries; after BREAKER_OPEN_S
    # one attempt probes it; each failed probe doubles the open period, up to BREAKER_OPEN_MAX_S.
    breaker_enabled: bool = True
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_window_s: float = Field(60.0, gt=0)
    breaker_open_s: float = Field(30.0, gt=0)
    breaker_open_max_s: float = Field(300.0, gt=0)
    # A probe that has not reported after this long lets another attempt probe.
    breaker_probe_timeout_s: float = Field(60.0, gt=0)
    # A worker process that found a breaker closed with no failure counted trusts that for
    # this long without asking Redis (0: asks before every attempt). Bounds how late it
    # obeys a breaker another process opened.
    breaker_clean_memo_s: float = Field(1.0, ge=0)
    # Cluster-wide rate limits, "NAME=COUNT/s" (or /m, /h), comma-separated; NAME is a task
    # name or a downstream (elasticsearch, chatbotmobile, embeddings). Empty: no limits. The
    # default is the plan's one limit.
    rate_limits: str = "es_upsert_product=10/s"
    # An attempt waits (sleeping) for its slot up to this long; longer waits park the task.
    rate_limit_max_wait_s: float = Field(1.0, ge=0)

    log_level: str = "INFO"
    log_json: bool = True

    api_host: str = "127.0.0.1"
    # uvicorn's access log, a line per request (off: /metrics counts requests by route).
    api_access_log: bool = False
    api_port: int = 8000
    # uvicorn worker processes of one API instance; their metrics are merged (multiprocess).
    api_workers: int = Field(1, ge=1, le=64)
    # Threads of one API process that run blocking endpoints (the rest of a request runs on
    # its event loop). More threads than the CPU can keep busy only contend for the GIL.
    # Measured (tools/bench, 2 cores): 12 threads keep one process's CPU busy, and at 64
    # clients halve the p99 of 40 threads at the same throughput.
    api_threads: int = Field(12, ge=1, le=1000)
    # Prometheus endpoints of the processes that are not HTTP servers themselves (the API
    # serves /metrics on API_PORT). Distinct defaults, so that one machine runs them side by
    # side; 0 serves none. METRICS_HOST is 0.0.0.0 in a pod, so Prometheus can reach it.
    metrics_host: str = "127.0.0.1"
    es_worker_metrics_port: int = Field(9401, ge=0, le=65535)
    http_worker_metrics_port: int = Field(9402, ge=0, le=65535)
    scheduler_metrics_port: int = Field(9403, ge=0, le=65535)
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    # "user:password" for Flower's basic auth; unset means no auth (development only).
    flower_basic_auth: SecretStr | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("TASK_SOFT_TIME_LIMIT_S must be below TASK_TIME_LIMIT_S")
        # The longest countdown message is LONG_WAIT_S (longer waits live in the task log);
        # a running attempt's lease outlives its hard time limit by LEASE_MARGIN_S.
        longest = self.long_wait_s + self.task_time_limit_s + self.lease_margin_s
        if self.broker_visibility_timeout_s <= longest:
            raise ValueError(
                "BROKER_VISIBILITY_TIMEOUT_S must exceed LONG_WAIT_S + TASK_TIME_LIMIT_S + "
                f"LEASE_MARGIN_S ({longest:g} s); otherwise Redis redelivers a message while a "
                "worker still holds it, or while its attempt's lease keeps it out"
            )
        if self.breaker_open_max_s < self.breaker_open_s:
            raise ValueError("BREAKER_OPEN_MAX_S must be at least BREAKER_OPEN_S")
        parse_limits(self.rate_limits)
        parse_weights(self.fair_share_weights)
        if redisconn.is_sentinel(self.redis_url):
            redisconn.sentinel_nodes(self.redis_url)  # every part a sentinel, or say which
            if not self.redis_sentinel_master:
                raise ValueError("a sentinel:// REDIS_URL needs REDIS_SENTINEL_MASTER")
        elif self.redis_sentinel_master:
            raise ValueError("REDIS_SENTINEL_MASTER needs a sentinel:// REDIS_URL")
        redisconn.tls_options(self.redis_url)  # a rediss:// query it can take, or say which
        if self.auth_jwks_url is None and self.auth_jwt_secret is None:
            raise ValueError("set AUTH_JWT_SECRET or AUTH_JWKS_URL")
        if self.auth_jwks_url is not None and not (self.auth_issuer and self.auth_audience):
            # A shared identity provider signs tokens for other applications too: without both
            # checks, any of them carrying roles: ["service"] would reach every tenant.
            raise ValueError("AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE")
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret.get_secret_value()) < 32:
            raise ValueError("AUTH_JWT_SECRET must be at least 32 characters (RFC 7518 3.2)")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        if self.upload_max_request_bytes < self.upload_max_bytes:
            raise ValueError("UPLOAD_MAX_REQUEST_BYTES must be at least UPLOAD_MAX_BYTES")
        if self.environment != "development":
            problems = self._production_problems()
            if problems:
                default = "" if "environment" in self.model_fields_set else " (the default)"
                raise ValueError(
                    f"ENVIRONMENT is {self.environment}{default} and refuses: "
                    + "; ".join(problems)
                    + " (on a laptop, set ENVIRONMENT=development)"
                )
        # After the check above, so that the development key in a spelling Fernet refuses is
        # named as what it is.
        _check_fernet_keys(self.secrets_keys)
        return self

    def reads(self, name: str) -> bool:
        """Whether this process's role reads the secret setting `name` (ROLE_SECRETS)."""
        return name in ROLE_SECRETS[self.process_role]

    def require(self, *names: str) -> None:
        """Refuse to go on in a process whose role does not read (nor check) these secrets."""
        missing = [n for n in names if not self.reads(n)]
        if missing:
            raise ValueError(
                f"PROCESS_ROLE={self.process_role} does not read {', '.join(missing)}: this "
                "process needs them; run it with its own role (or unset PROCESS_ROLE)"
            )

    def _production_problems(self) -> list[str]:
        problems: list[str] = []
        # Only the secrets this process reads: a pod is given no others (ROLE_SECRETS).
        problems += self._secret_problems()
        if self.database_url.startswith("sqlite") and self.reads("DATABASE_URL"):
            problems.append(
                "DATABASE_URL is SQLite, which only one machine can share: set a PostgreSQL URL"
            )
        if self.storage_backend == "local" and "storage_local_dir" not in self.model_fields_set:
            problems.append(
                "STORAGE_LOCAL_DIR is the default local directory: set it to a volume shared "
                "by the API and the http-worker, or use STORAGE_BACKEND=s3"
            )
        urls = {"CHATBOT_URL": [self.chatbot_url], "ELASTICSEARCH_URL": self.elasticsearch_hosts}
        if self.storage_backend == "local":
            urls["PUBLIC_API_URL"] = [self.public_api_url]
        hosts = {name: [urlsplit(v).hostname for v in values] for name, values in urls.items()}
        hosts["REDIS_URL"] = redisconn.hosts(self.redis_url)
        for name, values in hosts.items():
            if any(is_this_machine(host) for host in values):
                problems.append(
                    f"{name} points at this machine (loopback or unspecified): set the "
                    "service's address"
                )
        # Listening on 0.0.0.0 (every interface) is what a pod does; loopback is not.
        for name, host in (("API_HOST", self.api_host), ("FLOWER_HOST", self.flower_host)):
            if is_loopback(host):
                problems.append(f"{name} listens on loopback only: set {name}=0.0.0.0")
        return problems

    def _secret_problems(self) -> list[str]:
        problems: list[str] = []
        # Compared as the bytes a decoder reads, not as text: base64 decoders skip characters
        # outside the alphabet and missing padding, so other text can be the same key.
        public = key_bytes(DEV_SECRETS_KEY)
        if self.reads("SECRETS_KEY") and any(key_bytes(k) == public for k in self.secrets_keys):
            problems.append("SECRETS_KEY is the public development key: set private Fernet keys")
        if self.auth_jwks_url is None and self.reads("AUTH_JWT_SECRET"):
            secret = self.auth_jwt_secret
            if secret is None or secret.get_secret_value() == DEV_JWT_SECRET:
                problems.append(
                    "AUTH_JWT_SECRET is the public development secret: set AUTH_JWKS_URL "
                    "or a private AUTH_JWT_SECRET"
                )
        if self.flower_basic_auth is None and self.reads("FLOWER_BASIC_AUTH"):
            problems.append("FLOWER_BASIC_AUTH is unset: set user:password for Flower")
        return problems

    @property
    def secrets_keys(self) -> list[str]:
        """The sealing keys, newest (the one that seals and signs) first."""
        return split_keys(self.secrets_key.get_secret_value())

    @property
    def fair_share(self) -> FairShare:
        """The fair-share policy: bound and weights per customer."""
        return FairShare(self.fair_share_bound, parse_weights(self.fair_share_weights))

    @property
    def elasticsearch_hosts(self) -> list[str]:
        """The Elasticsearch URLs as a list."""
        return [u.strip() for u in self.elasticsearch_url.split(",") if u.strip()]

    @property
    def embedding_fields(self) -> list[str]:
        """Names of the item fields whose text is embedded."""
        return [f.strip() for f in self.embeddings_text_fields.split(",") if f.strip()]

    @property
    def allowed_upload_types(self) -> frozenset[str]:
        """Content types accepted for uploads."""
        return frozenset(t.strip() for t in self.upload_allowed_types.split(",") if t.strip())

    def time_limits(self, soft_s: int | None, hard_s: int | None) -> tuple[float, float]:
        """A task's (soft, hard) run-time limits: its own, capped by the settings' limits.

        The settings' limits are the default of a task without its own and the most any task
        may run, so that the visibility timeout and the attempt lease can be checked here.
        """
        hard = float(min(hard_s or self.task_time_limit_s, self.task_time_limit_s))
        soft = float(min(soft_s or self.task_soft_time_limit_s, self.task_soft_time_limit_s))
        return (soft if soft < hard else hard * 0.8), hard

    @property
    def processing_stale_s(self) -> float:
        """After this long a 'processing' task without a message is lost, not running."""
        return float(self.task_time_limit_s + self.broker_visibility_timeout_s + 60)

    def settle_s(self, downstreams: Iterable[Downstream]) -> float:
        """How long a write sent to these downstreams may still land after its sender
        stopped waiting for it (died, or gave up): their client timeouts. The retry of an
        attempt lost with its process waits that long in the log first, so that what it
        fences (the delete memory) comes after anything the lost attempt sent."""
        timeouts = {
            Downstream.ELASTICSEARCH: self.elasticsearch_request_timeout_s,
            Downstream.CHATBOT: self.chatbot_read_timeout_s,
        }
        return max((timeouts.get(d, 0.0) for d in downstreams), default=0.0)

    def retry_budget_s(self, queue: Queue) -> int:
        """Seconds a task of this queue may keep retrying after it was accepted."""
        return {
            Queue.ES: self.es_retry_budget_s,
            Queue.HTTP: self.http_retry_budget_s,
            Queue.MAINTENANCE: self.maintenance_retry_budget_s,
        }[queue]

    def max_retries(self, queue: Queue) -> int | None:
        """Optional count limit of retries for a task of this queue."""
        return {Queue.ES: self.es_max_retries, Queue.HTTP: self.http_max_retries}.get(queue)


def _check_fernet_keys(keys: list[str]) -> None:
    if not keys:
        raise ValueError("SECRETS_KEY is empty: give at least one Fernet key")
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except ValueError:
            # The key itself is never part of the message.
            raise ValueError(
                f"SECRETS_KEY: key {index} of {len(keys)} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return Settings()
