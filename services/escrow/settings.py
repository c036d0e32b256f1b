from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EscrowSettings(ServiceSettings):
    """Environment: ESCROW_DATABASE_URL, ESCROW_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="ESCROW_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/escrow.db"
