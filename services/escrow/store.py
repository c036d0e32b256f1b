"""Escrow holds, the refunds' returns and the E1 ledger: tables, aggregate declarations and the read queries.

The ledger is stored as TigerBeetle keeps it: a versioned row per account with its four totals
(``ledger_accounts``) and an append-only log of transfer records (``ledger_transfers``) whose
database-assigned ``id`` is the global order. A batch loads only the accounts its commands touch.

Concurrency: the platform's accounts (``fee_revenue:platform:*``, ``fx_position:platform:*``) and
a buyer's ``buyer_funds_in`` row are touched by every cross-currency hold (the latter by each of
that buyer's holds), so two instances holding orders at once contend for them: the later write
finds another version and its batch re-runs on fresh state (VersionConflict). That is acceptable
for now: each partition has one consumer, so the only contention is between partitions, a
re-run costs one batch, and versions make a lost update impossible. Releases and returns touch
only their order's own rows and never contend. Should holds outgrow it, the platform accounts
can be split per partition (``fx_position:platform-<n>``) and summed when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Money
from services.escrow.domain import AccountState, EscrowHold, FundsReturn
from services.escrow.domain.ledger import AccountKind, TransferCode, TransferKind, TransferRecord
from services.escrow.domain.settlements import Release, day_span
from shared.aggregates import Aggregate, Journal

metadata = sa.MetaData()
WHEN = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

holds = sa.Table(
    "escrow_holds",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("seller_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("returned_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("reservation_id", sa.String(200), nullable=True),
    sa.Column("reserved_at", WHEN, nullable=True),
    sa.Column("frozen_by", sa.String(100), nullable=True),  # E3: the dispute that froze the hold
    sa.Column("frozen_at", WHEN, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("updated_at", WHEN, nullable=False),
)

returns = sa.Table(
    "escrow_returns",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("refund_id", sa.String(100), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("still_held_minor", sa.BigInteger, nullable=False),
    sa.Column("dispute_id", sa.String(100), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("updated_at", WHEN, nullable=False),
)

# The simple two-entries-per-movement ledger of before escrow_0004; no longer written, kept for its rows.
ledger = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("transfer_id", sa.String(36), nullable=False, index=True),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("account", sa.String(150), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("created_at", WHEN, nullable=False),
)

ledger_accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("code", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("order_id", sa.String(100), nullable=True),
    sa.Column("debits_pending", sa.BigInteger, nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_pending", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("updated_at", WHEN, nullable=False),
    # An order's own accounts are found by (order, kind); NULL for the others, which never collide.
    sa.UniqueConstraint("order_id", "kind", name="uq_ledger_accounts_order_kind"),
)

ledger_transfers = sa.Table(
    "ledger_transfers",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("transfer_id", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("debit_account", sa.String(200), nullable=False),
    sa.Column("credit_account", sa.String(200), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("code", sa.String(20), nullable=False),
    sa.Column("pending_id", sa.String(200), nullable=True),
    sa.Column("expires_at", WHEN, nullable=True),
    sa.Column("applied_at", WHEN, nullable=False),
    sa.Column("linked_set", sa.String(200), nullable=True),
)

HOLDS = Aggregate(EscrowHold, holds, key="order_id", money={"amount": ("amount_minor", "currency")})
# Both amounts of a return are in the hold's one currency: they share its column.
RETURNS = Aggregate(
    FundsReturn,
    returns,
    key=("order_id", "refund_id"),
    money={"amount": ("amount_minor", "currency"), "still_held": ("still_held_minor", "currency")},
)
# One table, two ways in: the accounts an order owns by (order, kind) (ReleaseFunds names only the
# order, not the currency), every other account by its code. An account is always reached the same
# way (AccountState.order_id decides), so no row is ever in a batch twice.
LEDGER_ACCOUNTS = Aggregate(AccountState, ledger_accounts, key="code")
ORDER_ACCOUNTS = Aggregate(AccountState, ledger_accounts, key=("order_id", "kind"))
LEDGER_TRANSFERS = Journal(ledger_transfers)


def transfer_row(record: TransferRecord) -> dict[str, Any]:
    """A record as a ``ledger_transfers`` row: its ``seq`` is the view's, the database numbers it."""
    row = record.to_row()
    del row["seq"]
    return row


def record_of(row: Any) -> TransferRecord:
    """A stored row as a record, with the database id as its ``seq`` (increasing, not gapless)."""
    values = dict(row._mapping)
    values["seq"] = values["id"]
    for name in ("applied_at", "expires_at"):
        if values[name] is not None and values[name].tzinfo is None:
            values[name] = values[name].replace(tzinfo=UTC)
    return TransferRecord.from_row(values)


# ---------------------------------------------------------------------- reads (the read API, tests)


async def records_after(connection: AsyncConnection, after: int, limit: int) -> list[TransferRecord]:
    query = (
        sa.select(ledger_transfers).where(ledger_transfers.c.id > after).order_by(ledger_transfers.c.id).limit(limit)
    )
    return [record_of(row) for row in (await connection.execute(query)).all()]


async def account_states(connection: AsyncConnection) -> list[AccountState]:
    rows = (await connection.execute(sa.select(ledger_accounts).order_by(ledger_accounts.c.code))).all()
    return [LEDGER_ACCOUNTS.from_row(row._mapping) for row in rows]


async def holds_page(
    connection: AsyncConnection, status: str | None, page: int, per_page: int
) -> tuple[list[EscrowHold], int]:
    query = sa.select(holds)
    count = sa.select(sa.func.count()).select_from(holds)
    if status is not None:
        query, count = query.where(holds.c.status == status), count.where(holds.c.status == status)
    query = query.order_by(holds.c.created_at, holds.c.order_id).limit(per_page).offset((page - 1) * per_page)
    rows = (await connection.execute(query)).all()
    total = int((await connection.execute(count)).scalar_one())
    return [HOLDS.from_row(row._mapping) for row in rows], total


@dataclass(frozen=True, slots=True)
class OrderBooks:
    """Everything escrow keeps about one order: its hold, the ledger accounts it owns, and every
    transfer booked for it, oldest first."""

    hold: EscrowHold | None
    accounts: list[AccountState]
    transfers: list[TransferRecord]


async def order_books(connection: AsyncConnection, order_id: str) -> OrderBooks:
    hold = (await connection.execute(sa.select(holds).where(holds.c.order_id == order_id))).first()
    accounts = (
        await connection.execute(
            sa.select(ledger_accounts).where(ledger_accounts.c.order_id == order_id).order_by(ledger_accounts.c.code)
        )
    ).all()
    transfers = (
        await connection.execute(
            sa.select(ledger_transfers).where(ledger_transfers.c.order_id == order_id).order_by(ledger_transfers.c.id)
        )
    ).all()
    return OrderBooks(
        HOLDS.from_row(hold._mapping) if hold is not None else None,
        [LEDGER_ACCOUNTS.from_row(row._mapping) for row in accounts],
        [record_of(row) for row in transfers],
    )


async def releases(connection: AsyncConnection, seller_id: str, day: date) -> list[Release]:
    """Each release posted to ``seller_id``'s payable on ``day`` (UTC), in the order they were posted."""
    start, end = day_span(day)
    query = (
        sa.select(
            ledger_transfers.c.order_id,
            ledger_transfers.c.amount_minor,
            ledger_transfers.c.currency,
            ledger_transfers.c.applied_at,
        )
        .join(holds, holds.c.order_id == ledger_transfers.c.order_id)
        .where(
            holds.c.seller_id == seller_id,
            ledger_transfers.c.kind == TransferKind.POST_PENDING.value,
            ledger_transfers.c.code == TransferCode.HOLD.value,
            ledger_transfers.c.credit_account.like(f"{AccountKind.SELLER_PAYABLE.value}:%"),
            ledger_transfers.c.applied_at >= start,
            ledger_transfers.c.applied_at < end,
        )
        .order_by(ledger_transfers.c.id)
    )
    return [
        Release(
            r.order_id,
            seller_id,
            Money(amount_minor=int(r.amount_minor), currency=r.currency),
            r.applied_at if r.applied_at.tzinfo is not None else r.applied_at.replace(tzinfo=UTC),
        )
        for r in (await connection.execute(query)).all()
    ]


async def balance(connection: AsyncConnection, code: str) -> dict[str, int] | None:
    """One account's four totals (tests, the audit), None when no transfer touched it."""
    row = (await connection.execute(sa.select(ledger_accounts).where(ledger_accounts.c.code == code))).first()
    if row is None:
        return None
    names = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
    return {name: int(getattr(row, name)) for name in names}
