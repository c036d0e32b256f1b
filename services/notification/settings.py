from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    """Environment: NOTIFICATION_DATABASE_URL, NOTIFICATION_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/notification.db"
