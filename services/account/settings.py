from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.account.domain.accounts import SecurityPolicy
from shared.settings import ServiceSettings


class AccountSettings(ServiceSettings):
    """Environment: ACCOUNT_DATABASE_URL, ACCOUNT_LOG_LEVEL, ... plus KAFKA_*."""

    model_config = SettingsConfigDict(env_prefix="ACCOUNT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///.data/account.db"
    sealing_key_file: Path = Field(
        default=Path(".data/keys/account-sealing.json"),
        description="Private keys that open sealed secrets; created if missing, public half written beside it.",
    )
    storage_key_file: Path = Field(
        default=Path(".data/keys/account-storage.key"),
        description="32 random bytes (created if missing): the HMAC key of codes and digests, and the key "
        "that encrypts stored TOTP secrets.",
    )
    sms_outbox: Path = Field(
        default=Path(".data/sms.jsonl"), description="The SMS gateway simulator: one JSON line per text sent."
    )
    # OWASP's argon2id setting (19 MiB, 2 passes): tens of milliseconds per hash. Hashing runs in
    # the batch on the event loop, so a much dearer setting would stall a burst of sign-ins.
    password_hash_time_cost: int = Field(default=2, ge=1, description="argon2id passes.")
    password_hash_memory_kib: int = Field(
        default=19456, ge=8, description="argon2id memory per hash; tests lower it to run fast, never production."
    )
    automatic_identity_review: bool = Field(
        default=True, description="Let the simulator's rules approve or reject identities without an operator."
    )
    phone_code_ttl_seconds: int = Field(default=300, ge=10)
    phone_code_attempts: int = Field(default=5, ge=1)
    phone_code_sends: int = Field(default=4, ge=1, description="The first code plus resends.")
    failed_check_limit: int = Field(default=5, ge=1, description="Failed checks in the window that lock an account.")
    failed_check_window_seconds: int = Field(default=900, ge=1)

    @property
    def security_policy(self) -> SecurityPolicy:
        return SecurityPolicy(
            phone_code_ttl=timedelta(seconds=self.phone_code_ttl_seconds),
            phone_code_attempts=self.phone_code_attempts,
            phone_code_sends=self.phone_code_sends,
            failed_check_limit=self.failed_check_limit,
            failed_check_window=timedelta(seconds=self.failed_check_window_seconds),
        )
