"""How a marketplace's client reaches one TradeGuard stack: a connection profile.

A stack's operators hand the marketplace its profile: where the brokers are, the marketplace
principal's SCRAM credentials, its key file (every record it produces carries its MACs, and it
checks the MACs of every record it reads: ``contracts.signatures``), the account service's public
sealing key (a PIN for a payment above the region's threshold is sealed with it) and the
marketplace's id. A sandbox (``tradeguard sandbox``, the pytest plugin's stack) writes one as a
JSON file of exactly these fields, mode 0600, and adds ``control_url``: its test helpers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

PROFILE_VARIABLE = "TRADEGUARD_PROFILE"
"""Names the profile file when none is given."""


class ProfileError(ValueError):
    """A profile that cannot be read, or that says something a client cannot use."""


class ConnectionProfile(BaseModel):
    """Everything a marketplace's client needs to talk to one stack."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...] of the brokers.")
    username: str = Field(min_length=1, description="The marketplace principal's SCRAM username.")
    password: SecretStr
    security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    ssl_cafile: Path | None = Field(default=None, description="The brokers' CA, with SASL_SSL.")
    signing_key_file: Path = Field(description="The marketplace principal's key file (contracts.signatures).")
    sealing_key_file: Path | None = Field(default=None, description="The account service's public sealing key.")
    marketplace_id: str = Field(min_length=1, description="This marketplace's account: what a checkout charges as.")
    control_url: str | None = Field(default=None, description="A sandbox's test helpers; None for a real stack.")

    @classmethod
    def load(cls, path: str | Path | None = None) -> ConnectionProfile:
        """The profile in ``path``, else in the file ``$TRADEGUARD_PROFILE`` names."""
        chosen = path or os.environ.get(PROFILE_VARIABLE)
        if not chosen:
            raise ProfileError(f"no connection profile: pass its path or set {PROFILE_VARIABLE}")
        file = Path(chosen)
        try:
            data: Any = json.loads(file.read_text())
        except FileNotFoundError:
            raise ProfileError(f"no connection profile at {file}") from None
        except (OSError, ValueError) as error:
            raise ProfileError(f"{file} is not a connection profile (JSON): {error}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'profile'}: {e['msg']}" for e in error.errors())
            raise ProfileError(f"{file} is not a usable connection profile: {problems}") from None

    def kafka_options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client of this profile takes."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }
        if self.security_protocol == "SASL_SSL":
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        return options
