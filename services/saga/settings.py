from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SagaSettings(ServiceSettings):
    """Environment: SAGA_DATABASE_URL, SAGA_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/saga.db"
