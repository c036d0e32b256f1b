"""P6 and E1/E2 on real databases (SQLite and PostgreSQL): the escrow service takes refunds'
parts back out of a hold, once per refund id, and releases only what is still held; the
ledger's accounts balance after every step. The commands are the saga's, fed as records."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    CommandRejected,
    FundsReleased,
    FundsReturned,
    HoldFunds,
    Message,
    Money,
    ReleaseFunds,
    ReturnFunds,
)
from services.escrow.app import DEFINITION as ESCROW
from services.escrow.domain import HoldStatus
from services.escrow.store import holds, ledger_accounts, ledger_transfers
from shared.db import migrate
from tests.support.escrow import handle, published

PRICE = 4250
ESCROW_HOLDING = "escrow_holding:o1:USD"
BUYER = "buyer_funds_in:b:USD"
REFUNDS_OUT = "refunds_out:o1:USD"
SELLER_PAYABLE = "seller_payable:o1:USD"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


@pytest.fixture
async def escrow_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ESCROW.migrations)
    return engine


async def answers(engine: AsyncEngine) -> list[Message]:
    """Every event escrow published, in order."""
    return await published(engine, FundsReturned, FundsReleased, CommandRejected)


async def books(engine: AsyncEngine, order_id: str = "o1") -> Counter[str]:
    """Each ledger account's posted credit balance (``ledger_accounts``), and how many transfer
    records the order has (``entries``)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_accounts))).all()
        entries = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(ledger_transfers).where(ledger_transfers.c.order_id == order_id)
            )
        ).scalar_one()
    balances: Counter[str] = Counter()
    for row in rows:
        balances[row.code] += row.credits_posted - row.debits_posted
    balances["entries"] = entries
    return Counter({code: value for code, value in balances.items() if value})


async def hold_row(engine: AsyncEngine) -> tuple[str, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(holds.c.status, holds.c.returned_minor))).one()
    return row.status, row.returned_minor


HOLD = HoldFunds(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE))


def give_back(refund_id: str, minor: int) -> ReturnFunds:
    return ReturnFunds(order_id="o1", refund_id=refund_id, amount=usd(minor))


async def test_p6_returns_take_the_hold_back_once_per_refund_and_the_books_balance(escrow_db: AsyncEngine) -> None:
    # The hold, and a first refund's part, repeated in the same batch and in a later one.
    await handle(escrow_db, HOLD, give_back("r1", 1000), give_back("r1", 1000))
    await handle(escrow_db, give_back("r1", 1000))
    # The repeat answers the same each time; the money moved once.
    returned = [e for e in await answers(escrow_db) if isinstance(e, FundsReturned)]
    assert [(e.refund_id, e.amount, e.still_held, e.buyer_id) for e in returned] == [
        ("r1", usd(1000), usd(3250), "b")
    ] * 3
    assert await books(escrow_db) == Counter({BUYER: -PRICE, ESCROW_HOLDING: 3250, REFUNDS_OUT: 1000, "entries": 5})

    # The rest, in two more refunds: nothing is left held and the hold is returned (terminal).
    await handle(escrow_db, give_back("r2", 750), give_back("r3", 2500))
    last = (await answers(escrow_db))[-1]
    assert isinstance(last, FundsReturned)
    assert last.still_held == usd(0)
    assert await hold_row(escrow_db) == (HoldStatus.RETURNED.value, PRICE)
    balances = await books(escrow_db)
    assert (balances[ESCROW_HOLDING], balances[REFUNDS_OUT], balances["entries"]) == (0, PRICE, 10)
    assert sum(v for k, v in balances.items() if k != "entries") == 0

    # A returned hold releases nothing to the seller.
    await handle(escrow_db, ReleaseFunds(order_id="o1"))
    refused = (await answers(escrow_db))[-1]
    assert isinstance(refused, CommandRejected)
    assert refused.code == "not_held"


async def test_p6_a_return_beyond_the_hold_is_refused_naming_what_is_held(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, HOLD, give_back("r1", 2750), give_back("r2", 3000))

    refused = (await answers(escrow_db))[-1]
    assert isinstance(refused, CommandRejected)
    assert refused.code == "exceeds_held"
    assert "order o1 holds 15.00 USD" in refused.reason
    assert await hold_row(escrow_db) == (HoldStatus.HELD.value, 2750)  # the refused one moved nothing
    assert (await books(escrow_db))["entries"] == 5


async def test_e2_release_after_a_partial_return_pays_the_seller_what_is_held(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, HOLD, give_back("r1", 1000))
    await handle(escrow_db, ReleaseFunds(order_id="o1"), ReleaseFunds(order_id="o1"))

    released = [e for e in await answers(escrow_db) if isinstance(e, FundsReleased)]
    assert [(e.amount, e.seller_id) for e in released] == [(usd(3250), "s")] * 2  # a repeat answers the same
    balances = await books(escrow_db)
    assert (balances[ESCROW_HOLDING], balances[SELLER_PAYABLE], balances["entries"]) == (0, 3250, 6)
    # Nothing comes back once released.
    await handle(escrow_db, give_back("r2", 100))
    refused = (await answers(escrow_db))[-1]
    assert isinstance(refused, CommandRejected)
    assert refused.code == "not_held"
