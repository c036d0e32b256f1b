from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AccountSettings(ServiceSettings):
    """Environment: ACCOUNT_DATABASE_URL, ACCOUNT_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="ACCOUNT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/account.db"
