"""Opening sealed secrets (see contracts.sealing), and the account service's key pair.

The key file holds ``{"keys": [{"key_id", "private_key"}, ...]}``: the first key seals new
secrets (its public half is written beside it, ``<file>.pub.json``, for clients); every key
in the list still opens what was sealed with it, so a key is rotated by adding a new one in
front and removing the old one once no command sealed with it can still be in flight.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from contracts.sealing import SEALED_PREFIX, SealingKey, b64, unb64
from shared.errors import CommandRefused


class SealedSecretRefused(CommandRefused):
    """A sealed field that cannot be opened for its purpose. Says which field, never what it held."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__("sealed_secret_invalid", f"{field}: {why}")
        self.field = field


class Unsealer:
    """Opens secrets sealed for this service, each only for the purpose it was sealed for."""

    def __init__(self, keys: Mapping[str, PrivateKey]) -> None:
        if not keys:
            raise ValueError("an Unsealer needs at least one key")
        self._boxes = {key_id: SealedBox(key) for key_id, key in keys.items()}
        self.current_key_id = next(iter(keys))
        self.public_key = SealingKey(self.current_key_id, bytes(keys[self.current_key_id].public_key))

    def open(self, sealed: str, *, purpose: str, field: str) -> str:
        """The secret, or :class:`SealedSecretRefused` naming ``field``."""
        if not sealed.startswith(SEALED_PREFIX):
            raise SealedSecretRefused(field, "not a sealed value (contracts.sealing)")
        key_id, _, body = sealed.removeprefix(SEALED_PREFIX).partition(".")
        box = self._boxes.get(key_id)
        if box is None:
            raise SealedSecretRefused(field, f"sealed with key '{key_id}', which this service does not hold")
        try:
            content = json.loads(box.decrypt(unb64(body)))
        except (CryptoError, ValueError):
            raise SealedSecretRefused(field, "could not be opened: sealed with another key or damaged") from None
        if not isinstance(content, dict) or content.get("purpose") != purpose:
            raise SealedSecretRefused(field, f"was sealed for another purpose, not '{purpose}'")
        value = content.get("value")
        if not isinstance(value, str):
            raise SealedSecretRefused(field, "holds no text")
        return value


def ensure_key_file(path: Path) -> SealingKey:
    """Create the key file (mode 0600) with one fresh key unless it exists; write the public
    half beside it; return the public key clients seal with."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = PrivateKey.generate()
        key_id = f"k{secrets.token_hex(4)}"
        content = {"keys": [{"key_id": key_id, "private_key": b64(bytes(key))}]}
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(content, out)
        temporary.replace(path)  # two processes starting at once: one file wins, whole
    unsealer = load_unsealer(path)
    public = unsealer.public_key
    public_path(path).write_text(json.dumps({"key_id": public.key_id, "public_key": b64(public.public_key)}))
    return public


def public_path(key_file: Path) -> Path:
    """Where the public half of ``key_file`` is written for clients."""
    return key_file.with_name(key_file.stem + ".pub.json")


def load_unsealer(path: Path) -> Unsealer:
    data = json.loads(path.read_text())
    keys = {str(k["key_id"]): PrivateKey(unb64(str(k["private_key"]))) for k in data["keys"]}
    return Unsealer(keys)
