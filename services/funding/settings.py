"""Settings of the funding network simulator (environment variables ``FUNDING_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Only for development and tests: production sets FUNDING_FINGERPRINT_KEY to a secret of its own,
# since anyone holding the key can test a guessed card number against a stored fingerprint.
DEV_FINGERPRINT_KEY = "tradeguard-dev-fingerprint-key-not-for-production"


class FundingSettings(BaseSettings):
    """Environment: FUNDING_HOST, FUNDING_HTTP_PORT, FUNDING_DATABASE_PATH, ..."""

    model_config = SettingsConfigDict(env_prefix="FUNDING_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface the HTTP API listens on.")
    http_port: int = Field(
        default=19480, ge=0, le=65535, description="Port of the HTTP API; 0 takes any free port (see ready_file)."
    )
    database_path: Path = Field(default=Path(".data/funding.db"), description="SQLite file of the vault's tokens.")
    fingerprint_key: str = Field(
        default=DEV_FINGERPRINT_KEY,
        min_length=16,
        repr=False,  # a secret: never in a repr, a traceback or a log line
        description="HMAC-SHA256 key of card fingerprints.",
    )
    ready_file: Path | None = Field(
        default=None,
        description="Written with the API's base URL once the server listens; removed when it stops.",
    )
    clock_file: Path | None = Field(
        default=None, description="Read 'now' from this file instead of the system clock (tests, scenarios)."
    )
    seed: int = Field(
        default=0, description="Seed of the run-level faults: the same seed makes the same decisions (SPEC G2)."
    )
    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added to every charge and refund answer.")
    transient_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of first attempts answered 503 without being applied."
    )
    lost_answer_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of first attempts applied but answered only after slow_answer_seconds.",
    )
    slow_answer_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="How late a timed-out or lost answer comes: longer than any caller's timeout.",
    )
    log_level: str = Field(default="INFO")
    log_format: str = Field(default="auto", description="'json', 'console' or 'auto' (console on a terminal).")

    @model_validator(mode="after")
    def _rates_fit(self) -> Self:
        if self.transient_rate + self.lost_answer_rate > 1.0:
            raise ValueError("FUNDING_TRANSIENT_RATE + FUNDING_LOST_ANSWER_RATE must be at most 1")
        return self
