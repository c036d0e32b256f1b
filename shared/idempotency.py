"""Commands handled once per idempotency key (as Stripe's Idempotency-Key).

A client that retries a command sends it again with the same ``idempotency_key`` and a new
message id, which the inbox cannot recognise. For the commands a service declares keyed
(``handlers.on(..., keyed=True)``), the first handling stores the key, a fingerprint of the
payload and the records it produced; a repeat with the same payload publishes those same
records again (the same message ids, so every consumer's inbox ignores them while the client
sees its answer), and a repeat with a different payload is refused with
``idempotency_conflict``. Sealed values are left out of the fingerprint: sealing the same
secret twice never gives the same text. Keys are kept :data:`KEEP_FOR` (``RETENTION_IDEMPOTENCY_KEY_HOURS``)
and then deleted by each service's retention pruner (shared.retention).

A key past its window but not yet deleted (the pruner runs every minute or so) still answers
with its first outcome: treating it as absent here would handle the command again and then
fail to store its key over the old row, which the batch's plain insert cannot replace; so the
window is "at least", as Stripe's is.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.envelope import Envelope
from contracts.sealing import SEALED_PREFIX
from shared.outbox import OutgoingRecord
from shared.retention import Expiry, expire
from shared.sql import Transaction
from shared.tables import idempotency_keys


def scoped_key(envelope: Envelope[Any]) -> str:
    return f"{envelope.type}:{envelope.idempotency_key}"


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return "<sealed>"
    return value


def fingerprint(envelope: Envelope[Any]) -> str:
    payload = _without_secrets(envelope.payload.model_dump(mode="json"))
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FirstOutcome:
    fingerprint: str
    records: list[OutgoingRecord]


def _encode(records: Sequence[OutgoingRecord]) -> str:
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    return json.dumps(
        [
            {"topic": r.topic, "key": b64(r.key), "value": b64(r.value), "headers": [[k, b64(v)] for k, v in r.headers]}
            for r in records
        ]
    )


def _decode(text: str) -> list[OutgoingRecord]:
    def raw(data: str | None) -> bytes | None:
        return None if data is None else base64.b64decode(data)

    return [
        OutgoingRecord(
            topic=r["topic"],
            key=raw(r["key"]),
            value=raw(r["value"]) or b"",
            headers=tuple((k, raw(v) or b"") for k, v in r["headers"]),
        )
        for r in json.loads(text)
    ]


async def first_outcomes(tx: Transaction, keys: Collection[str]) -> dict[str, FirstOutcome]:
    if not keys:
        return {}
    rows = await tx.select_in(idempotency_keys, ("scoped_key",), list(keys))
    return {row["scoped_key"]: FirstOutcome(row["fingerprint"], _decode(row["outcome"])) for row in rows}


async def record_outcomes(
    tx: Transaction, outcomes: Sequence[tuple[str, str, Sequence[OutgoingRecord]]], now: datetime
) -> None:
    """Store (scoped key, fingerprint, records) of commands handled for the first time."""
    if outcomes:
        rows = [{"scoped_key": k, "fingerprint": f, "outcome": _encode(r), "created_at": now} for k, f, r in outcomes]
        await tx.insert(idempotency_keys, rows)


KEEP_FOR = timedelta(hours=24)
"""How long a key is remembered by default, as Stripe does; a repeat after that is a new command.
The services read theirs from ``RETENTION_IDEMPOTENCY_KEY_HOURS`` (shared.settings)."""


async def prune(engine: AsyncEngine, now: datetime, keep_for: timedelta = KEEP_FOR) -> int:
    """Forget the keys older than ``keep_for`` at once, in the retention pruner's batches; how
    many were removed. (Services do not call it: their pruner runs the same step, paced.)"""
    return await expire(engine, Expiry(idempotency_keys, "scoped_key", "created_at", keep_for), now)
