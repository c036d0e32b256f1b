"""Settings every service reads from the environment (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where the broker is and how hard to batch; shared by every process."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(default="127.0.0.1:19092", description="host:port[,host:port]")
    max_batch_records: int = Field(default=500, ge=1, description="Records handled per consumer batch.")
    batch_timeout_ms: int = Field(
        default=5,
        ge=1,
        description="How long a poll waits for records; an idle consumer also sleeps this long between polls.",
    )
    commit_interval_ms: int = Field(
        default=100, ge=0, description="Least time between offset commits; a crash redelivers at most this much."
    )
    session_timeout_ms: int = Field(
        default=6000, ge=1000, description="A consumer silent this long is dropped from its group."
    )
    linger_ms: int = Field(default=2, ge=0, description="Producer wait to fill a batch.")


class ServiceSettings(BaseSettings):
    """Per-service settings; each service subclasses this with its own env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="SQLAlchemy async URL of the service's own database.")
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="auto", description="'json', 'console' or 'auto' (console on a terminal).")
    handler_attempts: int = Field(
        default=3, ge=1, description="Tries per message before it goes to the dead-letter topic."
    )
    outbox_poll_seconds: float = Field(
        default=1.0, gt=0, description="Fallback outbox scan interval; commits wake the relay at once."
    )
    ready_file: Path | None = Field(
        default=None, description="Touched while the consumer holds partitions (for launchers and tests)."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
