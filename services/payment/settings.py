from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.payment.domain.pricing import DEFAULT_FEES_FILE, DEFAULT_RATES_FILE
from shared.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    """Environment: PAYMENT_DATABASE_URL, PAYMENT_FUNDING_NETWORK_URL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="PAYMENT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/payment.db"
    funding_network_url: str = Field(
        default="http://127.0.0.1:19480", description="The funding network's API (the simulator's by default)."
    )
    network_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long a request to the network may take before its outcome is unknown."
    )
    rates_file: Path = Field(default=DEFAULT_RATES_FILE, description="Exchange rates and spread (P3).")
    fees_file: Path = Field(default=DEFAULT_FEES_FILE, description="Cross-border fees and promotions (P3).")
