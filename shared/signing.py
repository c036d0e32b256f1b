"""The stack's signing keys (SPEC X9, issue 18): making, loading, rotating and retiring them.

How a record is signed and checked is part of the contract (:mod:`contracts.signatures`, which
explains the pairwise MACs and the key file); this module keeps the keyring folder every
process of a stack signs from, and re-exports the contract's names for the services.

The keyring folder (``<state dir>/keys/signing/``, named by ``TRADEGUARD_SIGNING_DIR``; mode
0700, files 0600, each written whole) holds one file per principal, ``<principal>.json``, with
everything that principal's processes need and nothing of anyone else's.
:func:`ensure_keyring` (which sees every file) makes the secrets and derives every send key; a
deployment mounts each process its own file only.

Rotation: :func:`rotate` puts a new receive secret in front of a receiver's list and rewrites
every producer's send keys for it (new first, old kept): producers MAC with the new key from
their next start, and the receiver, meeting its id, re-reads its own file (at most once a
second) and accepts both. :func:`retire` removes an old secret and the send keys derived from it
once no record MACed with it can still be unread.

Nothing here logs, and no error text holds key material.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.sealing import b64
from contracts.signatures import (
    MAC_BYTES,
    PRINCIPALS,
    RECEIVERS,
    RELOAD_EVERY,
    Headers,
    SignatureRefused,
    Signer,
    SigningError,
    SigningNotConfiguredError,
    Verifier,
    allowed_senders,
    load_principal,
    mac_header,
    pair_key,
    principal_file,
    read_key_file,
    recipients,
    signed_bytes,
    signer_from,
    signing_headers,
)

__all__ = [
    "MAC_BYTES",
    "PRINCIPALS",
    "RECEIVERS",
    "RELOAD_EVERY",
    "SIGNING_DIR_VARIABLE",
    "Headers",
    "Keyring",
    "SignatureRefused",
    "Signer",
    "SigningError",
    "SigningNotConfiguredError",
    "Verifier",
    "allowed_senders",
    "ensure_keyring",
    "install",
    "load_keyring",
    "load_principal",
    "mac_header",
    "pair_key",
    "process_keyring",
    "recipients",
    "retire",
    "rotate",
    "signed_bytes",
    "signing_dir_from_environment",
    "signing_headers",
]

SECRET_BYTES = 32

SIGNING_DIR_VARIABLE = "TRADEGUARD_SIGNING_DIR"
"""Names the stack's keyring folder; every process of a stack needs it."""


class Keyring:
    """What one process holds: the signer and the verifier of each principal it runs as."""

    def __init__(
        self, signers: Mapping[str, Signer], verifiers: Mapping[str, Verifier], directory: Path | None = None
    ) -> None:
        self._signers = dict(signers)
        self._verifiers = dict(verifiers)
        self.directory = directory

    @property
    def principals(self) -> tuple[str, ...]:
        return tuple(self._signers)

    def signer(self, principal: str) -> Signer:
        found = self._signers.get(principal)
        if found is None:
            raise SigningError(f"cannot sign as {principal!r}: {self._holds()}")
        return found

    def verifier(self, principal: str) -> Verifier:
        """How ``principal`` checks the records it reads."""
        found = self._verifiers.get(principal)
        if found is None:
            reads = "" if principal in RECEIVERS else f" ({principal!r} reads no topic)"
            raise SigningError(f"cannot verify as {principal!r}{reads}: {self._holds()}")
        return found

    def sign(
        self, principal: str, topic: str, key: bytes | None, message_type: str | bytes | None, value: bytes
    ) -> Headers:
        """The signing headers of a record ``principal`` makes on ``topic``."""
        return self.signer(principal).headers(topic, key, message_type, value)

    def _holds(self) -> str:
        where = f" in {self.directory}" if self.directory else ""
        return f"this process holds no key of it{where} (it holds: {', '.join(self._signers) or 'none'})"

    def __repr__(self) -> str:
        return f"Keyring(principals={self.principals}, directory={self.directory})"


# ---------------------------------------------------------------------- files


def _write_private(path: Path, content: object, *, exclusive: bool) -> bool:
    """Write ``content`` as JSON, mode 0600, whole or not at all. ``exclusive``: only if ``path``
    does not exist yet (two processes creating the keyring at once: the first file wins)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=1, sort_keys=True)
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


def _is_current(path: Path) -> bool:
    try:
        read_key_file(path)
    except FileNotFoundError:
        return False
    except SigningNotConfiguredError:
        return False
    return True


def _content(principal: str, receive: Iterable[Mapping[str, str]], send: Mapping[str, Any]) -> dict[str, Any]:
    return {"principal": principal, "receive_secrets": list(receive), "send_keys": dict(send)}


def _new_secret() -> dict[str, str]:
    return {"key_id": secrets.token_hex(4), "secret": b64(secrets.token_bytes(SECRET_BYTES))}


@contextlib.contextmanager
def _writing(directory: Path) -> Iterator[None]:
    """One writer of the folder at a time (a stack and a test run starting at once, a rotation):
    every send key is derived from the receive secrets as they are while the lock is held."""
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _derive_send_key_list(directory: Path) -> None:
    """Every principal's send keys, from every receiver's secrets (one per secret, in its order);
    a file is rewritten only when they changed."""
    receive = {c: read_key_file(principal_file(directory, c)).receive for c in RECEIVERS}
    for principal in PRINCIPALS:
        path = principal_file(directory, principal)
        data = json.loads(path.read_text())
        send = {
            consumer: [{"key_id": key_id, "key": b64(pair_key(secret, principal))} for key_id, secret in secrets_]
            for consumer, secrets_ in receive.items()
        }
        if data["send_keys"] != send:
            _write_private(path, _content(principal, data["receive_secrets"], send), exclusive=False)


def ensure_keyring(directory: Path) -> Path:
    """Create the keyring folder (0700) with a file per principal that has none (a receive secret
    for each receiver), and derive every send key; idempotent, and safe when several processes
    start at once. A file of an older keyring (Ed25519 keys, a ``trust.json``) is remade."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    with _writing(directory):
        for principal in PRINCIPALS:
            path = principal_file(directory, principal)
            if not _is_current(path):
                receive = [_new_secret()] if principal in RECEIVERS else []
                path.unlink(missing_ok=True)
                _write_private(path, _content(principal, receive, {}), exclusive=True)
        (directory / "trust.json").unlink(missing_ok=True)  # the Ed25519 keyring's public keys
        _derive_send_key_list(directory)
    return directory


def load_keyring(directory: Path, principals: Iterable[str] = PRINCIPALS) -> Keyring:
    """The signers and verifiers of ``principals`` whose files ``directory`` holds (a process
    mounted only its own file holds only its own)."""
    signers: dict[str, Signer] = {}
    verifiers: dict[str, Verifier] = {}
    for principal in principals:
        path = principal_file(directory, principal)
        if not path.exists():
            continue
        file = read_key_file(path)
        signers[principal] = signer_from(principal, file, path)
        if principal in RECEIVERS:
            verifiers[principal] = Verifier(principal, file.receive, path)
    if not signers:
        msg = (
            f"no signing keyring at {directory} (no principal's file): the stack makes it when it starts "
            f"(scripts/stack.py); set {SIGNING_DIR_VARIABLE} to the folder of the stack's keyring"
        )
        raise SigningNotConfiguredError(msg)
    return Keyring(signers, verifiers, directory)


def _receiver_file(directory: Path, principal: str) -> tuple[Path, dict[str, Any]]:
    if principal not in RECEIVERS:
        msg = f"{principal!r} reads no topic, so it has no receive secret (receivers: {', '.join(RECEIVERS)})"
        raise SigningError(msg)
    path = principal_file(directory, principal)
    return path, json.loads(path.read_text())


def rotate(directory: Path, principal: str) -> str:
    """Put a new receive secret in front of ``principal``'s list and every producer's send key
    for it; returns its id. Producers MAC with it from their next start; until then (and after)
    the old one still verifies."""
    with _writing(directory):
        path, data = _receiver_file(directory, principal)
        new = _new_secret()
        _write_private(path, {**data, "receive_secrets": [new, *data["receive_secrets"]]}, exclusive=False)
        _derive_send_key_list(directory)
    return new["key_id"]


def retire(directory: Path, principal: str, key_id: str) -> None:
    """Remove ``key_id`` from ``principal``'s receive secrets, and the send keys derived from it:
    records MACed with it are refused from now on (by processes that re-read the file: at their
    start, or on meeting an unknown key id)."""
    with _writing(directory):
        path, data = _receiver_file(directory, principal)
        keys = data["receive_secrets"]
        kept = [k for k in keys if k["key_id"] != key_id]
        if len(kept) == len(keys):
            msg = f"{principal!r} has no key {key_id!r}"
            raise SigningError(msg)
        if not kept:
            msg = f"cannot retire {principal!r}'s only key: rotate first"
            raise SigningError(msg)
        _write_private(path, {**data, "receive_secrets": kept}, exclusive=False)
        _derive_send_key_list(directory)


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
    commands.add_parser("show", help="every principal's receive key ids, newest first")
    rotating = commands.add_parser("rotate", help="a new receive secret in front of a receiver's secrets")
    rotating.add_argument("principal", choices=RECEIVERS)
    retiring = commands.add_parser("retire", help="remove a receiver's old secret")
    retiring.add_argument("principal", choices=RECEIVERS)
    retiring.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        directory = args.dir or signing_dir_from_environment()
        if args.command == "init":
            ensure_keyring(directory)
        elif args.command == "rotate":
            new = rotate(directory, args.principal)
            sys.stdout.write(
                f"{args.principal}: new key {new}; producers MAC with it from their next start, "
                "the old one is accepted until retired\n"
            )
        elif args.command == "retire":
            retire(directory, args.principal, args.key_id)
            sys.stdout.write(f"{args.principal}: key {args.key_id} retired\n")
        for principal in PRINCIPALS:
            key_ids = [key_id for key_id, _ in read_key_file(principal_file(directory, principal)).receive]
            sys.stdout.write(f"{principal}: {' '.join(key_ids) or '- (reads no topic)'}\n")
    except (SigningError, OSError, ValueError, KeyError) as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
