"""Secrets on the wire, sealed: a password, a one-time code, a PIN, a TOTP secret or a document
number never travels in clear text, not even inside a command.

The client (the marketplace's app gateway) seals each secret with the account service's
public key (libsodium's sealed box: X25519 + XSalsa20-Poly1305, anonymous sender) together
with a *purpose* that names what it is for (``"login:buyer-1"``, ``"payment:order-7f3a"``).
Only the account service can open it, and it opens a sealed value only for the purpose it
expects, so a sealed password lifted from one command cannot be replayed as another
account's, nor a PIN sealed for one order as the consent to another.

Wire form: ``sealed.v1.<key id>.<base64url ciphertext>``; the key id says which of the
service's keys opens it, so keys can be rotated while old ones still open in-flight commands.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from nacl.public import PublicKey, SealedBox
from pydantic import Field

SEALED_PREFIX = "sealed.v1."
SEALED_PATTERN = r"^sealed\.v1\.[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{40,4000}$"

Sealed = Annotated[
    str,
    Field(
        pattern=SEALED_PATTERN,
        max_length=4100,
        description="A secret sealed for the account service (contracts.sealing); never the secret itself.",
        examples=["sealed.v1.k1.3q2-7wEAAAAAbXlfc2VjcmV0X2lzX3NlYWxlZF9mb3JfdGhlX2FjY291bnQ"],
    ),
]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SealingKey:
    """The account service's public sealing key, as clients hold it."""

    key_id: str
    public_key: bytes

    @classmethod
    def from_file(cls, path: Path) -> SealingKey:
        """Read ``{"key_id": ..., "public_key": <base64url>}`` (written by the service's key tool)."""
        data = json.loads(path.read_text())
        return cls(str(data["key_id"]), unb64(str(data["public_key"])))

    def seal(self, secret: str, *, purpose: str) -> str:
        """The secret and its purpose sealed for the account service, in wire form."""
        plaintext = json.dumps({"purpose": purpose, "value": secret}, separators=(",", ":")).encode()
        ciphertext = SealedBox(PublicKey(self.public_key)).encrypt(plaintext)
        return f"{SEALED_PREFIX}{self.key_id}.{b64(ciphertext)}"


class Purpose:
    """What each sealed secret is for: the account service opens a value only for its own purpose."""

    @staticmethod
    def password(account_id: str) -> str:
        return f"password:{account_id}"

    @staticmethod
    def phone_code(account_id: str) -> str:
        return f"phone-code:{account_id}"

    @staticmethod
    def document(account_id: str) -> str:
        return f"document:{account_id}"

    @staticmethod
    def pin(account_id: str) -> str:
        return f"pin:{account_id}"

    @staticmethod
    def totp_secret(account_id: str) -> str:
        return f"totp-secret:{account_id}"

    @staticmethod
    def totp_code(account_id: str) -> str:
        return f"totp-code:{account_id}"

    @staticmethod
    def payment(order_id: str) -> str:
        """The buyer's security check for one order: a PIN or TOTP code sealed for it."""
        return f"payment:{order_id}"
