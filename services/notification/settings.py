from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    """Environment: NOTIFICATION_DATABASE_URL, NOTIFICATION_SMTP_HOST, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/notification.db"
    smtp_host: str = Field(default="127.0.0.1", description="The SMTP server email goes to (N2).")
    smtp_port: int = Field(default=19025, ge=1, le=65535, description="`make run` starts a local one here.")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_validate_certs: bool = Field(default=True, description="Check the server's certificate after STARTTLS.")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = Field(default="TradeGuard <notifications@tradeguard.example>")
    retry_first_seconds: float = Field(default=2.0, gt=0, description="First wait after a failed send.")
    retry_cap_seconds: float = Field(default=300.0, gt=0, description="Longest wait between sends.")
    retry_attempts: int = Field(default=10, ge=1, description="Sends before an email is dead-lettered.")

    @property
    def retry_first(self) -> timedelta:
        return timedelta(seconds=self.retry_first_seconds)

    @property
    def retry_cap(self) -> timedelta:
        return timedelta(seconds=self.retry_cap_seconds)
