"""E1/E2/E4 on real databases (SQLite and PostgreSQL): the escrow consumer books every hold,
return and release through the two-phase ledger, stored as versioned account rows and an
append-only log of transfer records; the read API answers what is stored. The commands are the
saga's, fed as records."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    CommandRejected,
    FundingType,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    HoldFunds,
    Message,
    Money,
    PriceBreakdown,
    ReleaseFunds,
    ReturnFunds,
    parse_envelope,
)
from services.escrow import read_api
from services.escrow.app import DEFINITION as ESCROW
from services.escrow.domain.ledger import AccountId, AccountKind, Ledger, TransferRecord
from services.escrow.store import holds, ledger_accounts, ledger_transfers
from shared.clock import ManualClock
from shared.consumer import BatchConsumer
from shared.db import migrate
from shared.tables import outbox
from tests.support.records import record_of

PRICE = 4250


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def jpy(minor: int) -> Money:
    return Money(amount_minor=minor, currency="JPY")


@pytest.fixture
async def escrow_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ESCROW.migrations)
    return engine


def consumer(engine: AsyncEngine) -> BatchConsumer:
    return BatchConsumer(
        dependencies=None,
        name="escrow",
        engine=engine,
        handlers=ESCROW.handlers,
        rejections_topic=ESCROW.rejections_topic,
        hand_over=lambda _records: None,
        clock=ManualClock(),
    )


async def handle(engine: AsyncEngine, *commands: Message) -> None:
    await consumer(engine).consume([record_of(c) for c in commands])


async def answers(engine: AsyncEngine) -> list[Message]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.value).order_by(outbox.c.id))).scalars().all()
    models = {m.message_type: m for m in (FundsHeld, FundsReturned, FundsReleased, CommandRejected)}
    events: list[Message] = []
    for value in rows:
        envelope = parse_envelope(value)
        if (model := models.get(envelope.type)) is not None:
            events.append(model.model_validate(envelope.payload))
    return events


async def balances(engine: AsyncEngine) -> dict[str, tuple[int, int, int, int]]:
    """Every account's (debits pending, debits posted, credits pending, credits posted)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_accounts))).all()
    return {r.code: (r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted) for r in rows}


def posted(found: dict[str, tuple[int, int, int, int]], code: str) -> int:
    """An account's posted credit balance."""
    _pending, debited, _reserved, credited = found.get(code, (0, 0, 0, 0))
    return credited - debited


def sums_per_currency(found: dict[str, tuple[int, int, int, int]]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for code, (dp, dpo, cp, cpo) in found.items():
        currency = AccountId.parse(code).currency
        totals[currency] += cpo - dpo
        totals[f"{currency} pending"] += cp - dp
    return totals


async def snapshot(engine: AsyncEngine) -> tuple[Any, ...]:
    """Every stored row of the holds and the ledger (to show that a refusal changed nothing)."""
    async with engine.connect() as conn:
        return tuple(
            [
                tuple((await conn.execute(sa.select(table))).all())
                for table in (holds, ledger_accounts, ledger_transfers)
            ]
        )


async def log(engine: AsyncEngine) -> list[TransferRecord]:
    """The whole log through the read API, page by page (as the audit reads it)."""
    found: list[TransferRecord] = []
    after: int | None = None
    while True:
        query = {"limit": "2"} | ({} if after is None else {"after": str(after)})
        status, body = await read_api.records(engine, query)
        assert status == 200
        for row in body["records"]:
            values = {k: v for k, v in row.items() if k != "id"}
            values["applied_at"] = datetime.fromisoformat(values["applied_at"])
            found.append(TransferRecord.from_row(values))
        if body["next"] is None:
            return found
        after = body["next"]


def hold(order_id: str = "o1", **overrides: Any) -> HoldFunds:
    fields: dict[str, Any] = {"order_id": order_id, "buyer_id": "b", "seller_id": "s", "amount": usd(PRICE)}
    return HoldFunds.model_validate(fields | overrides)


def breakdown() -> PriceBreakdown:
    return PriceBreakdown(
        funding_type=FundingType.CARD,
        amount=usd(PRICE),
        converted=jpy(6263),
        fee=jpy(249),
        discount=jpy(0),
        total=jpy(6512),
        settlement=usd(PRICE),
    )


async def test_e2_hold_then_release_moves_the_price_to_the_seller_and_the_books_balance(escrow_db: AsyncEngine) -> None:
    # The hold: the price in, reserved for the seller.
    await handle(escrow_db, hold())
    found = await balances(escrow_db)
    assert found["escrow_holding:o1:USD"] == (PRICE, 0, 0, PRICE)
    assert found["seller_payable:o1:USD"] == (0, 0, PRICE, 0)
    assert posted(found, "buyer_funds_in:b:USD") == -PRICE

    # The release posts the reservation: the seller is owed the price, the holding is empty.
    await handle(escrow_db, ReleaseFunds(order_id="o1"))
    found = await balances(escrow_db)
    assert found["escrow_holding:o1:USD"] == (0, PRICE, 0, PRICE)
    assert found["seller_payable:o1:USD"] == (0, 0, 0, PRICE)
    assert not any(sums_per_currency(found).values())
    events = await answers(escrow_db)
    assert [type(e).__name__ for e in events] == ["FundsHeld", "FundsReleased"]

    # The log replays through every rule and gives exactly the stored balances.
    records = await log(escrow_db)
    assert [(r.kind, r.code) for r in records] == [
        ("single_phase", "hold"),
        ("pending", "hold"),
        ("post_pending", "hold"),
    ]
    replayed = Ledger.replay(records)
    assert {str(a): b for a, b in replayed.balances().items()} == {
        code: replayed.balance(AccountId.parse(code)) for code in found
    }
    stored = {AccountId.parse(code): replayed.balance(AccountId.parse(code)) for code in found}
    assert replayed.check(balances=stored).ok
    for code, totals in found.items():
        got = replayed.balance(AccountId.parse(code))
        assert (got.debits_pending, got.debits_posted, got.credits_pending, got.credits_posted) == totals


async def test_p6_returns_void_and_re_reserve_and_the_release_pays_what_is_left(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, hold(), ReturnFunds(order_id="o1", refund_id="r1", amount=usd(1000)))
    found = await balances(escrow_db)
    assert posted(found, "refunds_out:o1:USD") == 1000
    assert found["seller_payable:o1:USD"] == (0, 0, PRICE - 1000, 0)  # the new reservation
    await handle(escrow_db, ReleaseFunds(order_id="o1"))
    found = await balances(escrow_db)
    assert posted(found, "seller_payable:o1:USD") == PRICE - 1000
    assert posted(found, "escrow_holding:o1:USD") == 0
    assert not any(sums_per_currency(found).values())
    assert Ledger.replay(await log(escrow_db)).check().ok
    status, body = await read_api.holds(escrow_db, {"status": "released"})
    assert status == 200
    assert body["holds"] == [
        {
            "order_id": "o1",
            "buyer_id": "b",
            "seller_id": "s",
            "amount": {"amount_minor": PRICE, "currency": "USD"},
            "still_held": {"amount_minor": PRICE - 1000, "currency": "USD"},
            "status": "released",
            "frozen": None,
            "dispute_id": None,
        }
    ]


async def test_e4_a_hold_paid_in_yen_books_the_fee_and_settles_in_dollars(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, hold(breakdown=breakdown()))
    found = await balances(escrow_db)
    assert posted(found, "buyer_funds_in:b:JPY") == -6512
    assert posted(found, "fee_revenue:platform:JPY") == 249
    assert posted(found, "fx_position:platform:JPY") == 6263
    assert posted(found, "fx_position:platform:USD") == -PRICE
    assert posted(found, "escrow_holding:o1:USD") == PRICE
    await handle(escrow_db, ReleaseFunds(order_id="o1"))
    found = await balances(escrow_db)
    assert posted(found, "seller_payable:o1:USD") == PRICE
    assert not any(sums_per_currency(found).values())  # JPY and USD each sum to zero
    records = await log(escrow_db)
    assert len({r.linked_set for r in records[:4]}) == 1  # the hold is one linked set
    assert Ledger.replay(records).check().ok

    # The settlement report of that seller and day.
    day = records[-1].applied_at.date().isoformat()
    status, body = await read_api.settlements(escrow_db, {"seller_id": "s", "day": day})
    assert status == 200
    assert (body["count"], body["totals"]) == (1, [{"amount_minor": PRICE, "currency": "USD"}])
    assert (await read_api.settlements(escrow_db, {"seller_id": "s", "day": "2001-01-01"}))[1]["count"] == 0
    assert (await read_api.settlements(escrow_db, {"seller_id": "s", "day": "soon"}))[0] == 400


async def test_e1_a_transfer_the_ledger_refuses_writes_nothing(escrow_db: AsyncEngine) -> None:
    """The ledger enforces the flags whatever the caller: with the holding's row one cent short
    (damage the hold cannot see), giving the whole price back would overdraw it; refused, and
    not one row changes."""
    await handle(escrow_db, hold())
    async with escrow_db.begin() as conn:
        await conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.code == "escrow_holding:o1:USD")
            .values(credits_posted=PRICE - 1, version=ledger_accounts.c.version + 1)
        )
    before = await snapshot(escrow_db)
    await handle(escrow_db, ReturnFunds(order_id="o1", refund_id="r1", amount=usd(PRICE)))
    refused = (await answers(escrow_db))[-1]
    assert isinstance(refused, CommandRejected)
    assert refused.code == "linked_event_failed"
    assert "exceeds_credits" in refused.reason
    assert await snapshot(escrow_db) == before


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (ReleaseFunds(order_id="nope"), "hold_not_found"),
        (ReturnFunds(order_id="o1", refund_id="r1", amount=usd(PRICE + 1)), "exceeds_held"),
        (ReturnFunds(order_id="o1", refund_id="r1", amount=Money(amount_minor=1, currency="EUR")), "currency_mismatch"),
        (hold(seller_id="other"), "idempotency_conflict"),
        (hold("o2", breakdown=breakdown().model_copy(update={"settlement": usd(1)})), "invalid_breakdown"),
        (hold("o3", buyer_id="b:1"), "invalid_party"),
    ],
)
async def test_e2_a_refused_command_changes_nothing(escrow_db: AsyncEngine, command: Message, code: str) -> None:
    await handle(escrow_db, hold())
    before = await snapshot(escrow_db)
    await handle(escrow_db, command)
    refused = (await answers(escrow_db))[-1]
    assert isinstance(refused, CommandRejected)
    assert refused.code == code
    assert await snapshot(escrow_db) == before


async def test_e2_repeated_commands_move_no_money(escrow_db: AsyncEngine) -> None:
    give = ReturnFunds(order_id="o1", refund_id="r1", amount=usd(1000))
    await handle(escrow_db, hold(), hold(), give, give)
    await handle(escrow_db, hold(), give, ReleaseFunds(order_id="o1"))
    once = await snapshot(escrow_db)
    await handle(escrow_db, ReleaseFunds(order_id="o1"), give, hold())
    assert await snapshot(escrow_db) == once
    names = Counter(type(e).__name__ for e in await answers(escrow_db))
    assert names == Counter({"FundsHeld": 4, "FundsReturned": 4, "FundsReleased": 2})
    async with escrow_db.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(ledger_transfers))).scalar_one()
    assert count == 2 + 3 + 1


async def test_e1_the_read_api_pages_the_log_and_lists_every_account(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, hold("o1"), hold("o2"), ReleaseFunds(order_id="o1"))
    records = await log(escrow_db)
    assert [r.seq for r in records] == list(range(5))
    status, body = await read_api.balances(escrow_db, {})
    assert status == 200
    kinds = Counter(row["kind"] for row in body["accounts"])
    assert kinds == Counter(
        {AccountKind.BUYER_FUNDS_IN: 1, AccountKind.ESCROW_HOLDING: 2, AccountKind.SELLER_PAYABLE: 2}
    )
    assert (await read_api.records(escrow_db, {"limit": "0"}))[0] == 400
    assert (await read_api.holds(escrow_db, {"status": "lost"}))[0] == 400
    status, page = await read_api.holds(escrow_db, {"status": "held", "per_page": "1"})
    assert (page["total"], [h["order_id"] for h in page["holds"]]) == (1, ["o2"])


@pytest.mark.postgres
async def test_e2_a_release_and_a_return_racing_on_two_instances_cannot_both_apply(
    escrow_db: AsyncEngine, second_instance: AsyncEngine
) -> None:
    await handle(escrow_db, hold())
    first, second = consumer(escrow_db), consumer(second_instance)
    original_load = first._load
    runs = 0

    async def load_then_race(tx: Any, deliveries: Any) -> Any:
        nonlocal runs
        runs += 1
        uow = await original_load(tx, deliveries)
        if runs == 1:  # another instance returns everything and commits first
            await second.consume([record_of(ReturnFunds(order_id="o1", refund_id="r1", amount=usd(PRICE)))])
        return uow

    first._load = load_then_race  # type: ignore[method-assign]
    await first.consume([record_of(ReleaseFunds(order_id="o1"))])

    assert runs == 2  # the release met the return's versions: re-run on fresh state, then refused
    last = (await answers(escrow_db))[-1]
    assert isinstance(last, CommandRejected)
    assert last.code == "not_held"
    found = await balances(escrow_db)
    assert posted(found, "refunds_out:o1:USD") == PRICE
    assert posted(found, "seller_payable:o1:USD") == 0
    assert Ledger.replay(await log(escrow_db)).check().ok


async def test_e1_a_hold_still_open_from_before_the_ledger_is_carried_into_it_and_releases(
    engine: AsyncEngine,
) -> None:
    """A hold placed before escrow_0004 (booked in the old entries table, no reservation) and
    partly refunded: the upgrade carries it into the E1 books, so its release pays the seller
    what is left and the ledger's own check finds the books whole."""
    await migrate(engine, ESCROW.migrations, to="escrow_0003")
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO escrow_holds (order_id, buyer_id, seller_id, amount_minor, currency, status, "
                "returned_minor, version, created_at, updated_at) "
                "VALUES ('old-1', 'b-old', 's-old', 4250, 'USD', 'held', 1000, 2, :at, :at)"
            ),
            {"at": datetime(2026, 11, 30, 12, 0, tzinfo=UTC)},
        )
    await migrate(engine, ESCROW.migrations)

    await handle(engine, ReleaseFunds(order_id="old-1"))
    released = [m for m in await answers(engine) if isinstance(m, FundsReleased)]
    assert [(m.order_id, m.amount) for m in released] == [("old-1", usd(3_250))]
    found = await balances(engine)
    assert posted(found, "seller_payable:old-1:USD") == 3_250
    assert posted(found, "refunds_out:old-1:USD") == 1_000
    assert posted(found, "escrow_holding:old-1:USD") == 0
    assert all(total == 0 for total in sums_per_currency(found).values())
    books = Ledger.replay(await log(engine), verify=False).check(balances=None)
    assert books.ok, books
