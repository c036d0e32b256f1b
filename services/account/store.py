"""Wallets and their append-only movements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Money
from services.account.domain import MovementKind, Wallet

metadata = sa.MetaData()

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

movements = sa.Table(
    "wallet_movements",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_after_minor", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("account_id", "kind", "reference", name="uq_movement_reference"),
)


# Statements are built once: building one per call cost more than running it.
_SELECT_WALLET = sa.select(wallets).where(wallets.c.account_id == sa.bindparam("key"))
_SELECT_MOVEMENT = sa.select(movements).where(
    movements.c.account_id == sa.bindparam("key"),
    movements.c.kind == sa.bindparam("movement_kind"),
    movements.c.reference == sa.bindparam("movement_reference"),
)
_INSERT_WALLET = wallets.insert()
_UPDATE_WALLET = wallets.update().where(wallets.c.account_id == sa.bindparam("key"))
_INSERT_MOVEMENT = movements.insert()


@dataclass(frozen=True, slots=True)
class Movement:
    amount: Money
    balance_after: Money


class WalletStore:
    """Reads and writes wallets inside the caller's transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, account_id: str) -> Wallet | None:
        row = (await self._connection.execute(_SELECT_WALLET, {"key": account_id})).first()
        if row is None:
            return None
        return Wallet(row.account_id, Money(amount_minor=row.balance_minor, currency=row.currency))

    async def find_movement(self, account_id: str, kind: MovementKind, reference: str) -> Movement | None:
        """The movement already made for this reference: a repeat gets the first result."""
        params = {"key": account_id, "movement_kind": kind.value, "movement_reference": reference}
        row = (await self._connection.execute(_SELECT_MOVEMENT, params)).first()
        if row is None:
            return None
        return Movement(
            Money(amount_minor=row.amount_minor, currency=row.currency),
            Money(amount_minor=row.balance_after_minor, currency=row.currency),
        )

    async def save(self, wallet: Wallet, *, is_new: bool, kind: MovementKind, reference: str, amount: Money) -> None:
        now = datetime.now(UTC)
        values = {"balance_minor": wallet.balance.amount_minor, "currency": wallet.balance.currency, "updated_at": now}
        if is_new:
            await self._connection.execute(_INSERT_WALLET, {"account_id": wallet.account_id, **values})
        else:
            await self._connection.execute(_UPDATE_WALLET, {"key": wallet.account_id, **values})
        await self._connection.execute(
            _INSERT_MOVEMENT,
            {
                "account_id": wallet.account_id,
                "kind": kind.value,
                "reference": reference,
                "amount_minor": amount.amount_minor,
                "currency": amount.currency,
                "balance_after_minor": wallet.balance.amount_minor,
                "created_at": now,
            },
        )
