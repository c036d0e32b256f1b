from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    """Environment: PAYMENT_DATABASE_URL, PAYMENT_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="PAYMENT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/payment.db"
