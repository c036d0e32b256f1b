"""Signed records (SPEC X9, issue 18): every record says which principal made it, and proves it.

A *principal* is a producer the catalogue names (``contracts.catalogue.PRODUCERS``): the five
services, the marketplace integration and the operators' tools. Each has Ed25519 keys in the
stack's keyring folder (``<state dir>/keys/signing/``, named by ``TRADEGUARD_SIGNING_DIR``;
mode 0700, files 0600):

* ``<principal>.json``: ``{"keys": [{"key_id", "private_key"}, ...]}``, newest first. The
  first key signs; the others are kept only so the public file still lists them.
* ``trust.json``: the trust store, every listed public key of every principal,
  ``{"principals": {"saga": [{"key_id", "public_key"}, ...], ...}}``. It is written from the
  private files, so it never lists a key that no principal holds any more.

Every record carries three headers: ``tg-signer`` (the principal), ``tg-key-id`` and
``tg-signature``, an Ed25519 signature over the signer, the key id, the record key, the
``tg-type`` header and the value bytes, so a changed byte, a swapped type header, key or key
id, or another principal's key all fail. A consumer accepts a record when the signature
verifies with a key the trust store lists for the named signer *and* the catalogue lets that
signer send the message type (a ``CommandRejected`` only from a service, on its own events
topic). Anything else is the record's fault (:class:`SignatureRefused`, with a reason code for
the metric and a text naming what was wrong, never a key).

Rotation: :func:`rotate` puts a new key in front of a principal's list (it signs from the
next start on; consumers that meet its id re-read the trust store, at most once a second);
:func:`retire` removes the old key once no record signed with it can still be unread.

Nothing here logs, and no error text holds key material.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from contracts.catalogue import PRODUCERS, REJECTIONS
from contracts.sealing import b64, unb64
from contracts.topics import MESSAGE_TYPE_HEADER

SIGNING_DIR_VARIABLE = "TRADEGUARD_SIGNING_DIR"
"""Names the stack's keyring folder; every process of a stack needs it."""

SIGNER_HEADER = "tg-signer"
KEY_ID_HEADER = "tg-key-id"
SIGNATURE_HEADER = "tg-signature"
SIGNING_HEADERS = (SIGNER_HEADER, KEY_ID_HEADER, SIGNATURE_HEADER)

PRINCIPALS: tuple[str, ...] = tuple(sorted({name for names in PRODUCERS.values() for name in names}))
"""Every producer the catalogue names: each has its own keys."""

TRUST_FILE = "trust.json"
SIGNATURE_BYTES = 64  # Ed25519
_DOMAIN = b"tradeguard-record-signature-v1\x00"  # a signature made here means nothing anywhere else
RELOAD_EVERY = 1.0
"""Seconds: the least time between two re-reads of the trust store for an unknown key id."""

Headers = tuple[tuple[str, bytes], ...]


class SigningError(Exception):
    """Root of this module's errors."""


class SigningNotConfiguredError(SigningError, RuntimeError):
    """This process has no keyring: signing is not optional, so it cannot start."""


class SignatureRefused(SigningError, ValueError):
    """A record whose signature does not prove that a principal allowed to send it made it.

    ``code`` is short and fixed (the metric's label): ``unsigned``, ``malformed``,
    ``unknown_signer``, ``unknown_key``, ``bad_signature``, ``not_allowed``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"signature {code}: {reason}")
        self.code = code
        self.reason = f"signature {code}: {reason}"


def signed_bytes(signer: str, key_id: str, key: bytes | None, message_type: bytes | None, value: bytes) -> bytes:
    """What a signature covers: every part length-prefixed, so no two records share it."""
    parts = (signer.encode(), key_id.encode(), key or b"", message_type or b"")
    head = b"".join(struct.pack(">I", len(part)) + part for part in parts)
    return _DOMAIN + head + value


@dataclass(frozen=True, slots=True)
class Signer:
    """One principal's newest key: signs the records that principal makes."""

    principal: str
    key_id: str
    key: SigningKey

    def headers(self, key: bytes | None, message_type: str | bytes | None, value: bytes) -> Headers:
        """The three signature headers for a record with this key, ``tg-type`` and value."""
        kind = message_type.encode() if isinstance(message_type, str) else message_type
        signature = self.key.sign(signed_bytes(self.principal, self.key_id, key, kind, value)).signature
        return (
            (SIGNER_HEADER, self.principal.encode()),
            (KEY_ID_HEADER, self.key_id.encode()),
            (SIGNATURE_HEADER, b64(signature).encode()),
        )

    def __repr__(self) -> str:  # never the key
        return f"Signer({self.principal!r}, key_id={self.key_id!r})"


def allowed_senders(message_type: str, topic: str) -> tuple[str, ...]:
    """The principals that may send ``message_type`` on ``topic``, from the catalogue."""
    if message_type == "CommandRejected":  # a service's refusals, on its own events topic only
        return tuple(service for service, own in REJECTIONS.items() if own.name == topic)
    return PRODUCERS.get(message_type, ())


class TrustStore:
    """Every principal's valid public keys; verifies records. Re-reads its file (at most once a
    second) when a known principal names a key id it does not know yet: a rotation."""

    def __init__(
        self,
        keys: Mapping[str, Mapping[str, VerifyKey]],
        path: Path | None = None,
        *,
        reload_every: float = RELOAD_EVERY,
    ) -> None:
        self._keys = {principal: dict(by_id) for principal, by_id in keys.items()}
        self._path = path
        self._reload_every = reload_every
        self._read_at = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, reload_every: float = RELOAD_EVERY) -> TrustStore:
        return cls(_read_trust(path), path, reload_every=reload_every)

    def key_ids(self, principal: str) -> tuple[str, ...]:
        return tuple(self._keys.get(principal, {}))

    def verify(self, headers: Sequence[tuple[str, bytes]], *, key: bytes | None, value: bytes) -> str:
        """The principal that signed the record, or :class:`SignatureRefused` saying why not."""
        signer, key_id, signature = _signature_headers(headers)
        message_type = _single(headers, MESSAGE_TYPE_HEADER)
        verify_key = self._verify_key(signer, key_id)
        try:
            verify_key.verify(signed_bytes(signer, key_id, key, message_type, value), signature)
        except BadSignatureError:
            raise SignatureRefused(
                "bad_signature",
                f"the signature does not match the record for {signer!r}'s key {key_id!r}: "
                "the record was changed after it was signed, or signed with another key",
            ) from None
        return signer

    def check(
        self, headers: Sequence[tuple[str, bytes]], *, message_type: str, topic: str, key: bytes | None, value: bytes
    ) -> str:
        """:meth:`verify`, then that the catalogue lets the signer send ``message_type`` on ``topic``."""
        signer = self.verify(headers, key=key, value=value)
        allowed = allowed_senders(message_type, topic)
        if signer not in allowed:
            who = ", ".join(allowed) or "no principal"
            raise SignatureRefused(
                "not_allowed", f"signed by {signer!r}, who may not send {message_type} on {topic} (only {who})"
            )
        return signer

    def _verify_key(self, signer: str, key_id: str) -> VerifyKey:
        if signer not in self._keys and signer not in PRINCIPALS:
            raise SignatureRefused(
                "unknown_signer", f"signed as {signer[:60]!r}, which is no principal of the catalogue"
            )
        found = self._keys.get(signer, {}).get(key_id) or self._reloaded(signer, key_id)
        if found is None:
            raise SignatureRefused(
                "unknown_key", f"{signer!r} has no valid key {key_id[:60]!r} (retired or never made)"
            )
        return found

    def _reloaded(self, signer: str, key_id: str) -> VerifyKey | None:
        """The key after re-reading the trust store, if it is time to (a key added by rotation)."""
        if self._path is None:
            return None
        with self._lock:
            if time.monotonic() - self._read_at >= self._reload_every:
                self._read_at = time.monotonic()
                # A trust store being rewritten: the keys known so far still stand.
                with contextlib.suppress(OSError, ValueError, KeyError):
                    self._keys = _read_trust(self._path)
        return self._keys.get(signer, {}).get(key_id)


def _single(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    values = [value for header, value in headers if header == name]
    if len(values) > 1:
        raise SignatureRefused("malformed", f"header {name} appears {len(values)} times")
    return values[0] if values else None


def _signature_headers(headers: Sequence[tuple[str, bytes]]) -> tuple[str, str, bytes]:
    signer, key_id, signature = (_single(headers, name) for name in SIGNING_HEADERS)
    if signer is None or key_id is None or signature is None:
        missing = [n for n, v in zip(SIGNING_HEADERS, (signer, key_id, signature), strict=True) if v is None]
        raise SignatureRefused("unsigned", f"the record has no {', '.join(missing)} header")
    try:
        decoded = unb64(signature.decode("ascii"))
        names = signer.decode(), key_id.decode()
    except (UnicodeDecodeError, ValueError):
        raise SignatureRefused("malformed", "the signature headers are not text, or the signature not base64") from None
    if len(decoded) != SIGNATURE_BYTES:
        raise SignatureRefused("malformed", f"the signature is {len(decoded)} bytes, not {SIGNATURE_BYTES}")
    return (*names, decoded)


class Keyring:
    """What one process holds: the private keys of the principals it signs as, and the trust store."""

    def __init__(self, signers: Mapping[str, Signer], trust: TrustStore, directory: Path | None = None) -> None:
        self._signers = dict(signers)
        self.trust = trust
        self.directory = directory

    @property
    def principals(self) -> tuple[str, ...]:
        return tuple(self._signers)

    def signer(self, principal: str) -> Signer:
        found = self._signers.get(principal)
        if found is None:
            held = ", ".join(self._signers) or "none"
            where = f" in {self.directory}" if self.directory else ""
            msg = f"cannot sign as {principal!r}: this process holds no key of it{where} (it holds: {held})"
            raise SigningError(msg)
        return found

    def sign(self, principal: str, key: bytes | None, message_type: str | bytes | None, value: bytes) -> Headers:
        return self.signer(principal).headers(key, message_type, value)

    def __repr__(self) -> str:
        return f"Keyring(principals={self.principals}, directory={self.directory})"


# ---------------------------------------------------------------------- files


def _write_private(path: Path, content: object, *, exclusive: bool) -> bool:
    """Write ``content`` as JSON, mode 0600, whole or not at all. ``exclusive``: only if ``path``
    does not exist yet (two processes creating the keyring at once: the first file wins)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out)
    try:
        if exclusive:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        else:
            temporary.replace(path)
            return True
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _new_key() -> dict[str, str]:
    return {"key_id": f"{secrets.token_hex(4)}", "private_key": b64(bytes(SigningKey.generate()))}


def _private_file(directory: Path, principal: str) -> Path:
    if principal not in PRINCIPALS:
        msg = f"{principal!r} is no principal of the catalogue (principals: {', '.join(PRINCIPALS)})"
        raise SigningError(msg)
    return directory / f"{principal}.json"


def _read_private(path: Path) -> list[tuple[str, SigningKey]]:
    data = json.loads(path.read_text())
    keys = [(str(k["key_id"]), SigningKey(unb64(str(k["private_key"])))) for k in data["keys"]]
    if not keys:
        msg = f"{path} lists no key"
        raise SigningError(msg)
    return keys


def _read_trust(path: Path) -> dict[str, dict[str, VerifyKey]]:
    data = json.loads(path.read_text())
    return {
        str(principal): {str(k["key_id"]): VerifyKey(unb64(str(k["public_key"]))) for k in keys}
        for principal, keys in data["principals"].items()
    }


def _write_trust(directory: Path) -> None:
    """The public file, from every private file: deterministic, so writers racing agree."""
    principals = {
        principal: [
            {"key_id": key_id, "public_key": b64(bytes(key.verify_key))}
            for key_id, key in _read_private(_private_file(directory, principal))
        ]
        for principal in PRINCIPALS
        if _private_file(directory, principal).exists()
    }
    _write_private(directory / TRUST_FILE, {"principals": principals}, exclusive=False)


def ensure_keyring(directory: Path) -> Path:
    """Create the keyring folder (0700) with one key per principal that has none, and the
    trust store; idempotent, and safe when several processes start at once."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for principal in PRINCIPALS:
        path = _private_file(directory, principal)
        if not path.exists():
            _write_private(path, {"keys": [_new_key()]}, exclusive=True)
    _write_trust(directory)
    return directory


def load_keyring(directory: Path, principals: Iterable[str] = PRINCIPALS) -> Keyring:
    """The signers of ``principals`` (their newest key each) and the trust store of ``directory``."""
    if not (directory / TRUST_FILE).exists():
        msg = (
            f"no signing keyring at {directory} (no {TRUST_FILE}): the stack makes it when it starts "
            f"(scripts/stack.py); set {SIGNING_DIR_VARIABLE} to the folder of the stack's keyring"
        )
        raise SigningNotConfiguredError(msg)
    signers: dict[str, Signer] = {}
    for principal in principals:
        path = _private_file(directory, principal)
        if path.exists():
            key_id, key = _read_private(path)[0]
            signers[principal] = Signer(principal, key_id, key)
    return Keyring(signers, TrustStore.load(directory / TRUST_FILE), directory)


def rotate(directory: Path, principal: str) -> str:
    """Put a new key in front of ``principal``'s list; returns its id. Processes sign with it from
    their next start; until then (and after) the old key still verifies."""
    path = _private_file(directory, principal)
    data = json.loads(path.read_text())
    new = _new_key()
    _write_private(path, {"keys": [new, *data["keys"]]}, exclusive=False)
    _write_trust(directory)
    return new["key_id"]


def retire(directory: Path, principal: str, key_id: str) -> None:
    """Remove ``key_id`` from ``principal``'s keys: records signed with it are refused from now on
    (by processes that re-read the trust store: at their start, or on meeting an unknown key)."""
    path = _private_file(directory, principal)
    keys = json.loads(path.read_text())["keys"]
    kept = [k for k in keys if k["key_id"] != key_id]
    if len(kept) == len(keys):
        msg = f"{principal!r} has no key {key_id!r}"
        raise SigningError(msg)
    if not kept:
        msg = f"cannot retire {principal!r}'s only key: rotate first"
        raise SigningError(msg)
    _write_private(path, {"keys": kept}, exclusive=False)
    _write_trust(directory)


# ---------------------------------------------------------------------- this process


_lock = threading.Lock()
_process_keyring: Keyring | None = None


def install(keyring: Keyring | None) -> None:
    """Make ``keyring`` this process's (None: forget it, the next use reads the environment)."""
    global _process_keyring  # noqa: PLW0603 - one keyring per process, like the metrics registry
    with _lock:
        _process_keyring = keyring


def process_keyring() -> Keyring:
    """This process's keyring: the one installed, else the one ``TRADEGUARD_SIGNING_DIR`` names
    (read once). :class:`SigningNotConfiguredError` when there is none."""
    global _process_keyring  # noqa: PLW0603
    with _lock:
        if _process_keyring is None:
            _process_keyring = load_keyring(signing_dir_from_environment())
        return _process_keyring


def signing_dir_from_environment() -> Path:
    directory = os.environ.get(SIGNING_DIR_VARIABLE)
    if not directory:
        msg = (
            f"{SIGNING_DIR_VARIABLE} is not set: every record is signed (SPEC X9), so this process needs the "
            "stack's keyring folder (scripts/stack.py creates it under <state dir>/keys/signing)"
        )
        raise SigningNotConfiguredError(msg)
    return Path(directory)


# ---------------------------------------------------------------------- rotation by hand


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shared.signing {init,show,rotate,retire} ...``: prints key ids only, never a key."""
    parser = argparse.ArgumentParser(prog="python -m shared.signing", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help=f"the keyring folder (default: ${SIGNING_DIR_VARIABLE})")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="make the keyring unless it exists (what a stack does at start)")
    commands.add_parser("show", help="every principal's key ids, newest first")
    rotating = commands.add_parser("rotate", help="a new key in front of a principal's keys")
    rotating.add_argument("principal", choices=PRINCIPALS)
    retiring = commands.add_parser("retire", help="remove a principal's old key")
    retiring.add_argument("principal", choices=PRINCIPALS)
    retiring.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        directory = args.dir or signing_dir_from_environment()
        if args.command == "init":
            ensure_keyring(directory)
        elif args.command == "rotate":
            new = rotate(directory, args.principal)
            sys.stdout.write(f"{args.principal}: new key {new}; its processes sign with it from their next start\n")
        elif args.command == "retire":
            retire(directory, args.principal, args.key_id)
            sys.stdout.write(f"{args.principal}: key {args.key_id} retired\n")
        trust = TrustStore.load(directory / TRUST_FILE)
        for principal in PRINCIPALS:
            sys.stdout.write(f"{principal}: {' '.join(trust.key_ids(principal)) or '-'}\n")
    except (SigningError, OSError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
