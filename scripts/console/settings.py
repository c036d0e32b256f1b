"""The console's settings, from the environment (``CONSOLE_*``) as every service's are."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts.console.auth import hash_password


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=19080, ge=0, le=65535, description="0: any free port (tests).")
    operator_id: str = Field(default="ops", min_length=1, max_length=100, description="The one operator account.")
    password_hash: str = Field(
        default="",
        description="The operator's password as an argon2 hash (argon2-cffi's encoded form); "
        "`make run` makes one and writes the password to <state>/console/password.",
    )
    session_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="A session ends this long after its last use."
    )
    state_dir: Path = Field(default=Path(".data"), description="The stack's state folder (endpoints, clock, keys).")
    answer_seconds: float = Field(default=30.0, gt=0, description="How long an action waits for its service's answer.")

    @property
    def audit_file(self) -> Path:
        """Every action the console carried out or tried: a JSON object a line."""
        return self.state_dir / "console" / "audit.jsonl"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "console" / "password"


def local_password(settings: ConsoleSettings) -> str:
    """The local stack's operator password (``make run``, ``tradeguard console``): made once, kept
    in ``<state>/console/password`` readable by its owner only, and never printed."""
    path = settings.password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(secrets.token_urlsafe(12) + "\n")
    return path.read_text().strip()


def settings_for(state_dir: Path, port: int | None = None) -> ConsoleSettings:
    """The console's settings for the stack in ``state_dir``: the environment's, with the local
    password's hash when no hash is configured."""
    settings = ConsoleSettings(state_dir=state_dir)
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    if not settings.password_hash:
        settings = settings.model_copy(update={"password_hash": hash_password(local_password(settings))})
    return settings
