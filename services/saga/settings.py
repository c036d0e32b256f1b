from pathlib import Path

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SagaSettings(ServiceSettings):
    """Environment: SAGA_DATABASE_URL, SAGA_POLICY_FILE, SAGA_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/saga.db"
    policy_file: Path | None = None
    """The windows and retry policies (services/saga/data/saga.toml when unset)."""
