"""A person-readable timeline of every message about some accounts and orders (G3 in the terminal).

Messages are shown in the order they arrived: services stamp envelopes with the stack's
clock, which a scenario may have moved forward, while the marketplace stamps its commands
with the real time; the ``clock`` column shows the time each producer put on its message.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import Enum

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from contracts import Balance, FundingSource, Limits
from contracts.sealing import SEALED_PREFIX
from scripts.marketplace import Seen

SUBJECT_FIELDS = ("order_id", "account_id", "subject_id", "buyer_id", "seller_id")
"""Fields that name what a message is about."""
DETAIL_FIELDS = (
    "status",
    "code",
    "reason",
    "amount",
    "balance",
    "funding_type",
    "source",
    "level",
    "limits",
    "kind",
    "check",
    "failures_in_window",
    "changed_by",
    "country",
    "currency",
)
"""Fields shown as details when a message has them (secrets never: sealed values are skipped)."""
MAX_DETAIL = 110


def about(seen: Iterable[Seen], ids: Collection[str]) -> list[Seen]:
    """The messages whose correlation id, or any field naming a subject, is one of ``ids``."""
    return [s for s in seen if s.envelope.correlation_id in ids or any(v in ids for v in subjects(s))]


def subjects(seen: Seen) -> list[str]:
    """The ids a message names (its order, account, buyer, seller)."""
    values = (getattr(seen.message, name, None) for name in SUBJECT_FIELDS)
    return [v for v in values if isinstance(v, str)]


def print_timeline(console: Console, seen: list[Seen], title: str) -> None:
    """Print ``seen`` as a table: +ms since the first, the producer's clock, producer, message, subject, details."""
    if not seen:
        console.print(f"[red]{title}: no messages seen[/]")
        return
    start = seen[0].received_at
    table = Table(title=title, title_justify="left")
    for column in ("+ms", "clock", "from", "message", "about", "details"):
        table.add_column(column, overflow="fold")
    for s in seen:
        table.add_row(
            f"{(s.received_at - start) * 1000:8.0f}",
            s.envelope.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            s.envelope.source,
            s.envelope.type,
            subjects(s)[0] if subjects(s) else "",
            details(s),
        )
    console.print(table)


def details(seen: Seen) -> str:
    """The fields of :data:`DETAIL_FIELDS` the message has, as ``name=value``."""
    message = seen.message
    parts = []
    for name in DETAIL_FIELDS:
        if name not in type(message).model_fields:
            continue
        value = getattr(message, name)
        if value is None or (isinstance(value, str) and value.startswith(SEALED_PREFIX)):
            continue
        parts.append(f"{name}={_shown(value)}")
    return ", ".join(parts)


def _shown(value: object) -> str:
    if isinstance(value, Balance):
        return str(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Limits):
        return f"per payment {value.per_payment} / daily {value.daily} / monthly {value.monthly}"
    if isinstance(value, FundingSource):
        brand = value.brand.value if value.brand else value.type.value
        expiry = (
            f" exp {value.expiry_month:02d}/{value.expiry_year}" if value.expiry_month and value.expiry_year else ""
        )
        return f"{brand} ••{value.last4}{expiry}"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    text = str(value)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
