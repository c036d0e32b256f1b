"""Settings every service reads from the environment (pydantic-settings)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where the broker is and how to batch; shared by every process."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(default="127.0.0.1:19092", description="host:port[,host:port]")
    credentials_dir: Path | None = Field(
        default=None,
        description="The broker's credentials folder (<principal>.json each); "
        "unset: KAFKA_CREDENTIALS_DIR is read when a client connects.",
    )
    max_batch_records: int = Field(default=500, ge=1, description="Records handled per consumer batch.")
    poll_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="Longest a poll waits for records; records wake it at once, so this only bounds idle waits.",
    )
    fetch_max_wait_ms: int = Field(
        default=5000,
        ge=0,
        description="How long the broker holds a fetch that has no records yet (long poll: a record ends it at once).",
    )
    fetch_gather_ms: int = Field(
        default=0,
        ge=0,
        description="How long the broker may gather records per fetch for services on an order's path "
        "(0: answer each record at once; a service that no order waits on sets its own).",
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        description="Least time between offset commits; a crash redelivers at most this much (the inbox ignores it).",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="A consumer that sends no heartbeat this long is dropped from its group."
    )
    max_poll_interval_ms: int = Field(
        default=600_000,
        ge=10_000,
        description="A consumer that does not poll this long leaves its group (a database outage longer than this rebalances).",
    )
    linger_ms: int = Field(default=1, ge=0, description="Producer wait to fill a batch.")
    retry_backoff_ms: int = Field(
        default=200, ge=10, description="Client wait between retries while the broker is away."
    )


class RetentionSettings(BaseSettings):
    """How long each service keeps what is not a money record, and how its pruner paces itself
    (shared.retention, docs/operations.md); shared by every service, like ``KAFKA_*``."""

    model_config = SettingsConfigDict(env_prefix="RETENTION_", extra="ignore")

    enabled: bool = Field(default=True, description="Run the background pruner at all.")
    inbox_days: float = Field(
        default=7.0,
        gt=0,
        description="Handled message ids are kept this long: a producer's duplicate within it is recognised.",
    )
    idempotency_key_hours: float = Field(
        default=24.0, gt=0, description="A keyed command's repeat after this long is a new command (Stripe: 24 hours)."
    )
    archive_after_days: float = Field(
        default=30.0, gt=0, description="Notifications and order transitions older than this go to the archive."
    )
    archive_dir: Path | None = Field(
        default=None,
        description="Where archived rows go (a folder per service inside); unset: 'archive' beside a "
        "SQLite database, .data/archive for PostgreSQL.",
    )
    batch_rows: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Rows deleted or moved per transaction (200 inbox ids: about 5 ms on SQLite, which runs "
        "its statements on the service's event loop).",
    )
    archive_batch_rows: int = Field(
        default=1000,
        ge=1,
        le=5000,
        description="Rows per archive file and its delete transaction (a file costs fsyncs; the delete walks "
        "the primary key in order).",
    )
    pause_ms: float = Field(default=20.0, ge=0, description="Least pause between two batches.")
    busy_ratio: float = Field(
        default=9.0,
        ge=0,
        description="After a batch that took t, the pruner pauses at least t times this (9: at most a tenth "
        "of the time in the database), so a slow, busy database gets longer pauses.",
    )
    idle_seconds: float = Field(
        default=2.0,
        gt=0,
        description="The consumer applied no batch for this long: the busy ratio is dropped and batches follow "
        "each other after pause_ms alone (a backlog clears in quiet hours).",
    )
    every_seconds: float = Field(default=60.0, gt=0, description="Pause between two passes over every table.")

    @property
    def inbox_window(self) -> timedelta:
        return timedelta(days=self.inbox_days)

    @property
    def idempotency_window(self) -> timedelta:
        return timedelta(hours=self.idempotency_key_hours)

    @property
    def archive_after(self) -> timedelta:
        return timedelta(days=self.archive_after_days)


class ServiceSettings(BaseSettings):
    """Per-service settings; each service subclasses this with its own env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="SQLAlchemy async URL of the service's own database.")
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="auto", description="'json', 'console' or 'auto' (console on a terminal).")
    handler_attempts: int = Field(
        default=3, ge=1, description="Tries per message before a failing handler's message is dead-lettered."
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address /health, /ready, /metrics and the read API listen on (0.0.0.0 in a container).",
    )
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of /health, /ready, /metrics and the read API (none if unset)."
    )
    ready_file: Path | None = Field(
        default=None, description="Exists while the service is ready (holds partitions, database answering)."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
