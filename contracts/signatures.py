"""Signed records, on the wire (SPEC X9, issue 18): how a record says which principal made it,
and proves it. Like :mod:`contracts.sealing`, this is part of the contract: every producer and
consumer, in this repository or a marketplace's, signs and checks records exactly this way.
Managing the keys (making, rotating, retiring them) is the stack's business: :mod:`shared.signing`.

A *principal* is a producer or a consumer the catalogue names (``contracts.catalogue.PRODUCERS``
and ``CONSUMERS``): the five services, the marketplace integration and the operators' tools.

Why pairwise MACs. A public-key signature (Ed25519, until issue 18's benchmark) cost 27 µs to
make and 89 µs to check per record, about 8% of the CPU an order takes; an HMAC-SHA256 costs
about 3 µs. A single MAC key per producer would let every consumer that checks the producer's
records also forge them to every other consumer. So each record carries one MAC *per consumer
of its topic*, each under a key only that producer and that consumer know:

* every principal C that reads topics (a *receiver*) has receive secrets S_C (32 random bytes
  each, with a key id; newest first);
* the pair key of producer P for consumer C is K_PC = HMAC-SHA256(S_C, pair domain + P). The
  consumer derives it from its own secret for whatever producer a record names; the producer
  holds only its own K_PC, one per consumer (from a K_PC it cannot compute K_P'C for another
  producer P': HMAC is a PRF). A consumer that checks P's records therefore holds nothing that
  makes a record P's for anyone else.

A principal's key file (``<principal>.json``, mode 0600) holds everything that principal needs
and nothing of anyone else's::

    {"principal": "marketplace",
     "receive_secrets": [{"key_id", "secret"}, ...],          # newest first; none for a non-reader
     "send_keys": {"account": [{"key_id", "key"}, ...], ...}}  # K_PC per receiver, newest first

A record produced by P on topic T carries ``tg-signer: P`` and, for each consumer C of T in the
catalogue, ``tg-mac-<C>: <key id>:<base64url of HMAC-SHA256(K_PC, signed bytes)>``, with C's
newest key. The signed bytes (:func:`signed_bytes`) are the signer, that key id, the record key,
the ``tg-type`` header and the value, so a changed byte, a swapped type header, key or key id,
a MAC made for another consumer or with another producer's pair key all fail. The dead-letter
topic has no consumer: a dead letter keeps the original record's headers and is not signed again.

Consumer C (:class:`Verifier`) accepts a record when ``tg-mac-<C>`` verifies with the key it
derives from its own secret for the named signer *and* the catalogue lets that signer send the
message type (a ``CommandRejected`` only from a service, on its own events topic). Anything else
is the record's fault (:class:`SignatureRefused`, with a reason code for the metric and a text
naming what was wrong, never a key). A verifier meeting a key id it does not know re-reads its
file (at most once a second): a rotation put a new secret in front.

Nothing here logs, and no error text holds key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.catalogue import CONSUMERS, PRODUCERS, REJECTIONS
from contracts.sealing import unb64
from contracts.topics import MAC_HEADER_PREFIX, MESSAGE_TYPE_HEADER, SIGNER_HEADER

RECEIVERS: tuple[str, ...] = tuple(sorted({name for names in CONSUMERS.values() for name in names}))
"""Every principal that reads topics: each has receive secrets, every producer a key for it."""

PRINCIPALS: tuple[str, ...] = tuple(sorted({name for names in PRODUCERS.values() for name in names} | set(RECEIVERS)))
"""Every producer and consumer the catalogue names: each has its own file."""

MAC_BYTES = 32  # HMAC-SHA256
_DOMAIN = b"tradeguard-record-signature-v1\x00"  # a MAC made here means nothing anywhere else
_PAIR_DOMAIN = b"tradeguard-pair-key-v1\x00"  # K_PC = HMAC(S_C, this + P)
RELOAD_EVERY = 1.0
"""Seconds: the least time between two re-reads of a receiver's file for an unknown key id."""

Headers = tuple[tuple[str, bytes], ...]


class SigningError(Exception):
    """Root of this module's errors."""


class SigningNotConfiguredError(SigningError, RuntimeError):
    """This process has no keyring (or an unusable one): signing is not optional, so it cannot start."""


class SignatureRefused(SigningError, ValueError):
    """A record whose MAC does not prove that a principal allowed to send it made it.

    ``code`` is short and fixed (the metric's label): ``unsigned``, ``malformed``,
    ``unknown_signer``, ``unknown_key``, ``bad_signature``, ``not_allowed``."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"signature {code}: {reason}")
        self.code = code
        self.reason = f"signature {code}: {reason}"


def mac_header(consumer: str) -> str:
    return f"{MAC_HEADER_PREFIX}{consumer}"


def recipients(topic: str) -> tuple[str, ...]:
    """The consumers a record on ``topic`` is MACed for: the catalogue's readers of it (none for
    the dead-letter topic or a topic the catalogue does not name)."""
    return tuple(sorted(CONSUMERS.get(topic, ())))


def signing_headers(topic: str) -> tuple[str, ...]:
    """The names of the headers a record on ``topic`` is signed with, in the order they are sent."""
    return (SIGNER_HEADER, *(mac_header(consumer) for consumer in recipients(topic)))


_U32 = struct.Struct(">I").pack


def _length_prefixed(*parts: bytes) -> bytes:
    return b"".join(_U32(len(part)) + part for part in parts)


def signed_bytes(signer: str, key_id: str, key: bytes | None, message_type: bytes | None, value: bytes) -> bytes:
    """What a MAC covers: every part length-prefixed, so no two records share it."""
    return _DOMAIN + _length_prefixed(signer.encode(), key_id.encode(), key or b"", message_type or b"") + value


def pair_key(secret: bytes, producer: str) -> bytes:
    """K_PC: producer P's key for the receiver whose secret this is."""
    return hmac.digest(secret, _PAIR_DOMAIN + producer.encode(), hashlib.sha256)


def _keyed(pair: bytes, signer: str, key_id: str) -> hmac.HMAC:
    """An HMAC under ``pair`` already fed the part of the signed bytes that is the same for every
    record of this signer and key id: each record copies it and feeds only its own bytes."""
    return hmac.new(pair, _DOMAIN + _length_prefixed(signer.encode(), key_id.encode()), hashlib.sha256)


def _record_part(key: bytes | None, message_type: bytes | None) -> bytes:
    """The record's own part of the signed bytes before the value (per record: kept cheap)."""
    key, message_type = key or b"", message_type or b""
    return _U32(len(key)) + key + _U32(len(message_type)) + message_type


@dataclass(frozen=True, slots=True)
class _Recipient:
    """What signing for one consumer takes: its header, the key id in front, the keyed HMAC."""

    header: str
    key_id: str
    key_id_prefix: bytes
    keyed: hmac.HMAC


class Signer:
    """One principal's newest send key for every receiver: MACs the records that principal makes."""

    def __init__(self, principal: str, send_keys: Mapping[str, tuple[str, bytes]]) -> None:
        """``send_keys``: receiver -> (key id, K_PC), the newest of each."""
        self.principal = principal
        self._principal_bytes = principal.encode()
        self._keys = {
            consumer: _Recipient(mac_header(consumer), key_id, f"{key_id}:".encode(), _keyed(key, principal, key_id))
            for consumer, (key_id, key) in send_keys.items()
        }
        self._by_topic: dict[str, tuple[_Recipient, ...]] = {}

    def key_id(self, consumer: str) -> str:
        """The id of the key this signer MACs for ``consumer`` with."""
        return self._recipient(consumer).key_id

    def headers(self, topic: str, key: bytes | None, message_type: str | bytes | None, value: bytes) -> Headers:
        """``tg-signer`` and one ``tg-mac-<consumer>`` per consumer of ``topic``."""
        kind = message_type.encode() if isinstance(message_type, str) else message_type
        targets = self._by_topic.get(topic)
        if targets is None:
            targets = self._by_topic[topic] = tuple(self._recipient(consumer) for consumer in recipients(topic))
        part = _record_part(key, kind)
        headers: list[tuple[str, bytes]] = [(SIGNER_HEADER, self._principal_bytes)]
        for target in targets:
            mac = target.keyed.copy()
            mac.update(part)
            mac.update(value)
            headers.append((target.header, target.key_id_prefix + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")))
        return tuple(headers)

    def _recipient(self, consumer: str) -> _Recipient:
        found = self._keys.get(consumer)
        if found is None:
            msg = f"{self.principal!r} holds no send key for {consumer!r}: run `python -m shared.signing init`"
            raise SigningError(msg)
        return found

    def __repr__(self) -> str:  # never a key
        return f"Signer({self.principal!r}, consumers={tuple(self._keys)})"


def allowed_senders(message_type: str, topic: str) -> tuple[str, ...]:
    """The principals that may send ``message_type`` on ``topic``, from the catalogue."""
    if message_type == "CommandRejected":  # a service's refusals, on its own events topic only
        return tuple(service for service, own in REJECTIONS.items() if own.name == topic)
    return PRODUCERS.get(message_type, ())


_ABSENT: Any = object()  # a header not met yet (Kafka allows a header without a value: None)


@dataclass(frozen=True, slots=True)
class _Pair:
    """A producer's pair key for this receiver, as a keyed HMAC, and the names it was met under."""

    signer: str
    key_id: str
    keyed: hmac.HMAC


class Verifier:
    """Checks records as one receiver: derives each producer's pair key from its own receive
    secrets (once per producer and key id). Re-reads its file (at most once a second) when a
    record names a key id it does not know yet: a rotation."""

    def __init__(
        self,
        principal: str,
        receive_secrets: Sequence[tuple[str, bytes]],
        path: Path | None = None,
        *,
        reload_every: float = RELOAD_EVERY,
    ) -> None:
        self.principal = principal
        self._header = mac_header(principal)
        self._secrets = dict(receive_secrets)
        self._pairs: dict[tuple[bytes, bytes], _Pair] = {}  # by (signer, key id) as sent
        self._path = path
        self._reload_every = reload_every
        self._read_at = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path, principal: str, *, reload_every: float = RELOAD_EVERY) -> Verifier:
        path = principal_file(directory, principal)
        return cls(principal, read_key_file(path).receive, path, reload_every=reload_every)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def verify(self, headers: Sequence[tuple[str, bytes]], *, key: bytes | None, value: bytes) -> str:
        """The principal that made the record, or :class:`SignatureRefused` saying why not."""
        signer, tagged, message_type = self._read_headers(headers)
        key_id, _, encoded = tagged.partition(b":")
        pair = self._pairs.get((signer, key_id)) or self._pair(signer, tagged)
        mac = pair.keyed.copy()
        mac.update(_record_part(key, message_type))
        mac.update(value)
        # Compared as sent (base64url, unpadded): decoded only to say why a MAC that differs is refused.
        if not hmac.compare_digest(base64.urlsafe_b64encode(mac.digest()).rstrip(b"="), encoded):
            raise self._mismatch(pair, encoded)
        return pair.signer

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

    def _read_headers(self, headers: Sequence[tuple[str, bytes]]) -> tuple[bytes, bytes, bytes | None]:
        """(signer, this receiver's MAC header, tg-type) as sent, each there at most once, or why not."""
        signer = tagged = message_type = _ABSENT
        for name, value in headers:
            if name == SIGNER_HEADER:
                signer = self._once(headers, name, signer, value)
            elif name == self._header:
                tagged = self._once(headers, name, tagged, value)
            elif name == MESSAGE_TYPE_HEADER:
                message_type = self._once(headers, name, message_type, value)
        if signer is _ABSENT or signer is None:
            raise SignatureRefused("unsigned", f"the record has no {SIGNER_HEADER} header")
        if tagged is _ABSENT or tagged is None:
            raise SignatureRefused(
                "unsigned", f"the record has no {self._header} header: no MAC for {self.principal!r}"
            )
        return signer, tagged, None if message_type is _ABSENT else message_type

    @staticmethod
    def _once(headers: Sequence[tuple[str, bytes]], name: str, seen: object, value: bytes) -> bytes:
        if seen is not _ABSENT:
            count = sum(1 for other, _ in headers if other == name)
            raise SignatureRefused("malformed", f"header {name} appears {count} times")
        return value

    def _pair(self, signer_bytes: bytes, tagged: bytes) -> _Pair:
        """The keyed HMAC of a signer and key id met for the first time, derived once and kept; or why not."""
        key_id_bytes, colon, _ = tagged.partition(b":")
        try:
            signer, key_id = signer_bytes.decode(), key_id_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureRefused("malformed", f"the {SIGNER_HEADER} or {self._header} header is not text") from None
        if not colon or not key_id:
            raise SignatureRefused("malformed", f"header {self._header} is not <key id>:<MAC>")
        if signer not in PRINCIPALS:  # checked before deriving, so the cache only holds real pairs
            raise SignatureRefused(
                "unknown_signer", f"signed as {signer[:60]!r}, which is no principal of the catalogue"
            )
        secret = self._secrets.get(key_id) or self._reloaded(key_id)
        if secret is None:
            raise SignatureRefused(
                "unknown_key", f"{self.principal!r} has no valid key {key_id[:60]!r} (retired or never made)"
            )
        pair = _Pair(signer, key_id, _keyed(pair_key(secret, signer), signer, key_id))
        self._pairs[signer_bytes, key_id_bytes] = pair
        return pair

    def _mismatch(self, pair: _Pair, encoded: bytes) -> SignatureRefused:
        try:
            size = len(base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
        except (binascii.Error, ValueError):
            return SignatureRefused("malformed", f"the MAC in {self._header} is not base64")
        if size != MAC_BYTES:
            return SignatureRefused("malformed", f"the MAC is {size} bytes, not {MAC_BYTES}")
        return SignatureRefused(
            "bad_signature",
            f"the MAC for {self.principal!r} does not match the record for {pair.signer!r} with key "
            f"{pair.key_id!r}: the record was changed after it was made, or MACed with another key",
        )

    def _reloaded(self, key_id: str) -> bytes | None:
        """The secret after re-reading this receiver's file, if it is time to (one added by rotation)."""
        if self._path is None:
            return None
        with self._lock:
            if time.monotonic() - self._read_at >= self._reload_every:
                self._read_at = time.monotonic()
                # A file being rewritten: the secrets known so far still stand.
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError, SigningError):
                    self._secrets = dict(read_key_file(self._path).receive)
                    self._pairs = {}  # derived from the secrets read before: a retired one must go
        return self._secrets.get(key_id)

    def __repr__(self) -> str:  # never a secret
        return f"Verifier({self.principal!r}, key_ids={self.key_ids})"


# ---------------------------------------------------------------------- a principal's file


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One principal's file, read: receive secrets and send keys, newest first."""

    receive: tuple[tuple[str, bytes], ...]
    send: dict[str, tuple[tuple[str, bytes], ...]]


def principal_file(directory: Path, principal: str) -> Path:
    if principal not in PRINCIPALS:
        msg = f"{principal!r} is no principal of the catalogue (principals: {', '.join(PRINCIPALS)})"
        raise SigningError(msg)
    return directory / f"{principal}.json"


def _key_list(entries: Any, field: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(entry["key_id"]), unb64(str(entry[field]))) for entry in entries)


def read_key_file(path: Path) -> KeyFile:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "receive_secrets" not in data or "send_keys" not in data:
        msg = f"{path} is not a keyring file of this version: run `python -m shared.signing init` to remake it"
        raise SigningNotConfiguredError(msg)
    send = {str(consumer): _key_list(keys, "key") for consumer, keys in data["send_keys"].items()}
    return KeyFile(_key_list(data["receive_secrets"], "secret"), send)


def signer_from(principal: str, file: KeyFile, path: Path) -> Signer:
    missing = [consumer for consumer in RECEIVERS if not file.send.get(consumer)]
    if missing:
        msg = f"{path} has no send key for {', '.join(missing)}: run `python -m shared.signing init`"
        raise SigningNotConfiguredError(msg)
    return Signer(principal, {consumer: keys[0] for consumer, keys in file.send.items() if keys})


def load_principal(path: Path) -> tuple[Signer, Verifier | None]:
    """What the principal whose key file ``path`` is needs to sign the records it makes and, if
    it reads topics, to check the records it reads (a marketplace's client: both)."""
    principal = path.stem
    if principal not in PRINCIPALS:
        msg = f"{path.name}: {principal!r} is no principal of the catalogue (principals: {', '.join(PRINCIPALS)})"
        raise SigningNotConfiguredError(msg)
    file = read_key_file(path)
    verifier = Verifier(principal, file.receive, path) if principal in RECEIVERS else None
    return signer_from(principal, file, path), verifier
