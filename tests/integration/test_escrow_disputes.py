"""E3 on real databases (SQLite and PostgreSQL), and once over the real broker: escrow freezes a
hold for a dispute and carries out only that dispute's resolution (a split, a full refund or a
release); every other release or return is refused with a rejection naming the dispute, and a
refusal changes no row. The books are checked whole after each resolution: the ledger's own
check on its replayed log against the stored balances, and the G1 audit over escrow's read API
with what the saga and the payment service would say of the order.

The commands are the saga's, fed as records to the escrow consumer (and, in the last test,
published on the escrow commands topic to the escrow service running in-process).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    Command,
    CommandRejected,
    FreezeFunds,
    FundsFrozen,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    HoldFunds,
    Message,
    Money,
    OrderStatus,
    ReleaseFunds,
    ReturnFunds,
)
from scripts.audit.books import (
    Books,
    HoldSnapshot,
    LedgerSnapshot,
    OrderSnapshot,
    PaymentSnapshot,
    balance_from_json,
    record_from_json,
)
from scripts.audit.checks import audit
from scripts.marketplace import EventWatcher, Marketplace
from services.escrow import read_api
from services.escrow.app import DEFINITION as ESCROW
from services.escrow.app import create_service
from services.escrow.domain.ledger import AccountId, Ledger
from services.escrow.settings import EscrowSettings
from services.escrow.store import holds, ledger_accounts, ledger_transfers, returns
from shared.db import migrate
from shared.settings import KafkaSettings
from tests.support.escrow import handle, published

PRICE = 4250
BUYER_PART = 1500  # the split: back to the buyer; the seller is released the rest
START = datetime(2026, 1, 1, tzinfo=UTC)  # ManualClock's start: when the consumer says things happened


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


@pytest.fixture
async def escrow_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ESCROW.migrations)
    return engine


async def answers(engine: AsyncEngine) -> list[Message]:
    """Every event escrow published, in order."""
    return await published(engine, FundsHeld, FundsFrozen, FundsReturned, FundsReleased, CommandRejected)


async def last(engine: AsyncEngine) -> Message:
    return (await answers(engine))[-1]


async def refused(engine: AsyncEngine) -> CommandRejected:
    answer = await last(engine)
    assert isinstance(answer, CommandRejected), answer
    return answer


async def snapshot(engine: AsyncEngine) -> tuple[Any, ...]:
    """Every stored row of the holds, the returns and the ledger (a refusal must change none)."""
    async with engine.connect() as conn:
        return tuple(
            [
                tuple((await conn.execute(sa.select(table))).all())
                for table in (holds, returns, ledger_accounts, ledger_transfers)
            ]
        )


async def posted(engine: AsyncEngine) -> dict[str, int]:
    """Each ledger account's posted credit balance."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(ledger_accounts))).all()
    return {r.code: r.credits_posted - r.debits_posted for r in rows}


async def the_hold(engine: AsyncEngine, order_id: str = "o1") -> dict[str, Any]:
    """The hold as the read API shows it."""
    status, body = await read_api.holds(engine, {"per_page": "100"})
    assert status == 200
    return next(h for h in body["holds"] if h["order_id"] == order_id)


async def escrow_books(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The ledger's log, its balances and the holds, through escrow's read API (as the audit reads them)."""
    records: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        status, body = await read_api.records(engine, {"limit": "3"} | ({} if after is None else {"after": after}))
        assert status == 200
        records += body["records"]
        if body["next"] is None:
            break
        after = str(body["next"])
    _, balances = await read_api.balances(engine, {})
    _, held = await read_api.holds(engine, {"per_page": "100"})
    return records, balances["accounts"], held["holds"]


async def books_check(engine: AsyncEngine) -> None:
    """E1: the log replays through every rule, gives exactly the stored balances, and checks whole."""
    records, balances, _holds = await escrow_books(engine)
    log = [record_from_json(row) for row in records]
    stored = {b.account: b for b in map(balance_from_json, balances)}
    replayed = Ledger.replay(log)
    assert replayed.balances() == stored
    report = replayed.check(balances=stored)
    assert report.ok, report


async def audit_at_rest(engine: AsyncEngine, order: OrderSnapshot, payment: PaymentSnapshot) -> None:
    """G1 over escrow's read API, with the order as the saga would show it and its payment as the
    payment service would: every captured unit held, released or refunded exactly once."""
    records, balances, held = await escrow_books(engine)
    served = [balance_from_json(row) for row in balances]
    books = Books(
        taken_at=START + timedelta(days=1),
        ledger=LedgerSnapshot(
            tuple(record_from_json(row) for row in records), {balance.account: balance for balance in served}
        ),
        holds=tuple(HoldSnapshot.from_json(row) for row in held),
        orders=(order,),
        payments=(payment,),
    )
    report = audit(books)
    assert report.ok, report.summary()


def order_at_rest(status: OrderStatus, returned: int) -> OrderSnapshot:
    return OrderSnapshot("o1", "b", "s", usd(PRICE), status, START, returned_minor=returned, refunded_minor=returned)


HOLD = HoldFunds(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE))
FREEZE = FreezeFunds(order_id="o1", dispute_id="d1")


def release(dispute_id: str | None = None) -> ReleaseFunds:
    return ReleaseFunds(order_id="o1", dispute_id=dispute_id)


def give_back(refund_id: str, minor: int, dispute_id: str | None = None) -> ReturnFunds:
    return ReturnFunds(order_id="o1", refund_id=refund_id, amount=usd(minor), dispute_id=dispute_id)


# --- the freeze ------------------------------------------------------------------------------


async def test_e3_a_freeze_holds_everything_and_refuses_every_release_and_return_but_its_disputes(
    escrow_db: AsyncEngine,
) -> None:
    # The hold, then the dispute's freeze: nothing moves in the ledger, the hold says who froze it.
    await handle(escrow_db, HOLD)
    unfrozen = await snapshot(escrow_db)
    await handle(escrow_db, FREEZE)
    frozen = await last(escrow_db)
    assert isinstance(frozen, FundsFrozen)
    assert (frozen.order_id, frozen.dispute_id, frozen.held) == ("o1", "d1", usd(PRICE))
    assert (await snapshot(escrow_db))[2:] == unfrozen[2:]  # the ledger's rows: untouched
    shown = await the_hold(escrow_db)
    assert (shown["status"], shown["frozen"], shown["dispute_id"]) == (
        "held",
        {"dispute_id": "d1", "since": START.isoformat()},
        "d1",
    )

    # A repeat of the same freeze answers the same and changes nothing.
    before = await snapshot(escrow_db)
    await handle(escrow_db, FREEZE)
    assert await last(escrow_db) == frozen
    assert await snapshot(escrow_db) == before

    # Every release or return but the freezing dispute's is refused, naming that dispute; no row changes.
    for command in (release(), release("d2"), give_back("r1", 1000), give_back("r1", 1000, "d2")):
        await handle(escrow_db, command)
        rejection = await refused(escrow_db)
        assert rejection.code == "hold_frozen", rejection
        assert "frozen by dispute d1 since 2026-01-01T00:00:00+00:00" in rejection.reason
        assert await snapshot(escrow_db) == before
    # Another dispute cannot freeze it as well.
    await handle(escrow_db, FreezeFunds(order_id="o1", dispute_id="d2"))
    rejection = await refused(escrow_db)
    assert (rejection.code, rejection.reason) == (
        "hold_frozen",
        "order o1's hold is frozen by dispute d1 since 2026-01-01T00:00:00+00:00: dispute d2 cannot freeze it as well",
    )
    assert await snapshot(escrow_db) == before
    await books_check(escrow_db)


async def test_e3_release_with_the_freezing_disputes_id_pays_the_seller_and_ends_the_freeze(
    escrow_db: AsyncEngine,
) -> None:
    await handle(escrow_db, HOLD, FREEZE, release("d1"))
    released = await last(escrow_db)
    assert isinstance(released, FundsReleased)
    assert (released.amount, released.seller_id) == (usd(PRICE), "s")
    shown = await the_hold(escrow_db)
    assert (shown["status"], shown["frozen"], shown["dispute_id"]) == ("released", None, "d1")
    assert (await posted(escrow_db))["seller_payable:o1:USD"] == PRICE
    # A repeat of the resolution answers the same and moves nothing.
    before = await snapshot(escrow_db)
    await handle(escrow_db, release("d1"))
    assert await last(escrow_db) == released
    assert await snapshot(escrow_db) == before
    await books_check(escrow_db)
    await audit_at_rest(
        escrow_db, order_at_rest(OrderStatus.COMPLETED, 0), PaymentSnapshot("o1", usd(PRICE), "captured")
    )


# --- the resolutions -------------------------------------------------------------------------


async def test_e3_a_split_returns_the_buyers_part_then_releases_the_rest_and_the_books_are_whole(
    escrow_db: AsyncEngine,
) -> None:
    await handle(escrow_db, HOLD, FREEZE)

    # The buyer's part goes back: the hold keeps the rest and stays frozen by the dispute.
    await handle(escrow_db, give_back("d1-refund", BUYER_PART, "d1"))
    returned = await last(escrow_db)
    assert isinstance(returned, FundsReturned)
    assert (returned.amount, returned.still_held, returned.buyer_id) == (usd(BUYER_PART), usd(PRICE - BUYER_PART), "b")
    shown = await the_hold(escrow_db)
    assert (shown["status"], shown["still_held"]["amount_minor"], shown["frozen"]["dispute_id"]) == (
        "held",
        PRICE - BUYER_PART,
        "d1",
    )
    await books_check(escrow_db)
    before = await snapshot(escrow_db)
    await handle(escrow_db, release())  # the protection window's release, say: still frozen
    assert (await refused(escrow_db)).code == "hold_frozen"
    assert await snapshot(escrow_db) == before

    # The rest to the seller, with the dispute's id: the freeze ends with the hold.
    await handle(escrow_db, release("d1"))
    released = await last(escrow_db)
    assert isinstance(released, FundsReleased)
    assert released.amount == usd(PRICE - BUYER_PART)
    found = await posted(escrow_db)
    assert (found["refunds_out:o1:USD"], found["seller_payable:o1:USD"], found["escrow_holding:o1:USD"]) == (
        BUYER_PART,
        PRICE - BUYER_PART,
        0,
    )
    assert BUYER_PART + (PRICE - BUYER_PART) == PRICE  # nothing lost to rounding: minor units split exactly
    shown = await the_hold(escrow_db)
    assert (shown["status"], shown["frozen"], shown["dispute_id"]) == ("released", None, "d1")
    await books_check(escrow_db)
    await audit_at_rest(
        escrow_db,
        order_at_rest(OrderStatus.COMPLETED, BUYER_PART),
        PaymentSnapshot("o1", usd(PRICE), "captured", refunded=usd(BUYER_PART)),
    )

    # Once resolved: another dispute's release is refused, a new freeze too.
    await handle(escrow_db, release("d2"))
    assert (await refused(escrow_db)).code == "not_frozen"
    await handle(escrow_db, FREEZE)
    assert (await refused(escrow_db)).code == "not_held"


async def test_e3_a_full_refund_while_frozen_returns_everything_and_the_freeze_ends_with_the_hold(
    escrow_db: AsyncEngine,
) -> None:
    await handle(escrow_db, HOLD, give_back("r0", 250))  # a refund before the dispute: not frozen yet
    await handle(escrow_db, FREEZE)
    frozen = await last(escrow_db)
    assert isinstance(frozen, FundsFrozen)
    assert frozen.held == usd(PRICE - 250)  # what the hold keeps now

    await handle(escrow_db, give_back("d1-refund", PRICE - 250, "d1"))
    returned = await last(escrow_db)
    assert isinstance(returned, FundsReturned)
    assert (returned.amount, returned.still_held) == (usd(PRICE - 250), usd(0))
    shown = await the_hold(escrow_db)
    assert (shown["status"], shown["frozen"], shown["dispute_id"]) == ("returned", None, "d1")
    found = await posted(escrow_db)
    assert (found["refunds_out:o1:USD"], found["escrow_holding:o1:USD"]) == (PRICE, 0)
    assert found.get("seller_payable:o1:USD", 0) == 0
    await books_check(escrow_db)
    await audit_at_rest(
        escrow_db,
        order_at_rest(OrderStatus.REFUNDED, PRICE),
        PaymentSnapshot("o1", usd(PRICE), "captured", refunded=usd(PRICE)),
    )

    # A repeat of the dispute's refund answers the same; nothing is left to release.
    before = await snapshot(escrow_db)
    await handle(escrow_db, give_back("d1-refund", PRICE - 250, "d1"))
    assert await last(escrow_db) == returned
    await handle(escrow_db, release("d1"))
    assert (await refused(escrow_db)).code == "not_held"
    assert await snapshot(escrow_db) == before


# --- refusals, by code -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "command", "code"),
    [
        pytest.param((), release("d1"), "not_frozen", id="release-for-a-dispute-on-a-hold-not-frozen"),
        pytest.param((), give_back("r1", 100, "d1"), "not_frozen", id="return-for-a-dispute-on-a-hold-not-frozen"),
        pytest.param((FREEZE,), release(), "hold_frozen", id="release-without-the-dispute"),
        pytest.param((FREEZE,), release("d2"), "hold_frozen", id="release-for-another-dispute"),
        pytest.param((FREEZE,), give_back("r1", 100), "hold_frozen", id="return-without-the-dispute"),
        pytest.param((FREEZE,), give_back("r1", 100, "d2"), "hold_frozen", id="return-for-another-dispute"),
        pytest.param((FREEZE,), FreezeFunds(order_id="o1", dispute_id="d2"), "hold_frozen", id="another-freeze"),
        pytest.param((FREEZE,), give_back("r1", PRICE + 1, "d1"), "exceeds_held", id="refund-beyond-the-hold"),
        pytest.param((), FreezeFunds(order_id="nope", dispute_id="d1"), "hold_not_found", id="freeze-unknown"),
        pytest.param((release(),), FREEZE, "not_held", id="freeze-released"),
        pytest.param((give_back("r1", PRICE),), FREEZE, "not_held", id="freeze-returned"),
        pytest.param(
            (FREEZE, give_back("r1", 100, "d1")), give_back("r1", 100), "idempotency_conflict", id="refund-id-reused"
        ),
    ],
)
async def test_e3_a_refused_dispute_command_is_named_by_its_code_and_changes_nothing(
    escrow_db: AsyncEngine, setup: tuple[Message, ...], command: Message, code: str
) -> None:
    await handle(escrow_db, HOLD, *setup)
    before = await snapshot(escrow_db)
    await handle(escrow_db, command)
    rejection = await refused(escrow_db)
    assert rejection.code == code, rejection
    assert await snapshot(escrow_db) == before
    await books_check(escrow_db)


async def test_e3_a_freeze_is_persisted_and_the_read_api_lists_it(escrow_db: AsyncEngine) -> None:
    await handle(escrow_db, HOLD, HoldFunds(order_id="o2", buyer_id="b", seller_id="s", amount=usd(100)), FREEZE)
    async with escrow_db.connect() as conn:
        rows = (await conn.execute(sa.select(holds.c.order_id, holds.c.frozen_by, holds.c.frozen_at))).all()
    stored = {row.order_id: (row.frozen_by, row.frozen_at) for row in rows}
    assert stored["o2"] == (None, None)
    dispute, since = stored["o1"]
    assert dispute == "d1"
    assert since.replace(tzinfo=since.tzinfo or UTC) == START
    status, body = await read_api.holds(escrow_db, {"status": "held"})
    assert status == 200
    assert {h["order_id"]: h["frozen"] for h in body["holds"]} == {
        "o1": {"dispute_id": "d1", "since": START.isoformat()},
        "o2": None,
    }


# --- over the broker -------------------------------------------------------------------------


@pytest.fixture
async def escrow_service(database_url: str, kafka_bootstrap: str) -> AsyncIterator[AsyncEngine]:
    """The escrow service in-process: its own consumer group on the real broker, its database."""
    settings = EscrowSettings(database_url=database_url, kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap))
    service = create_service(settings)
    await service.start()
    try:
        yield service.engine
    finally:
        await service.stop()


M = TypeVar("M", bound=Message)


def about(order_id: str, kind: type[Message]) -> Any:
    return lambda seen: isinstance(seen.message, kind) and getattr(seen.message, "order_id", None) == order_id


def rejection_of(message_id: Any) -> Any:
    return lambda seen: isinstance(seen.message, CommandRejected) and seen.message.rejected_message_id == message_id


async def test_e3_over_the_broker_a_split_after_a_refused_release_leaves_the_books_whole(
    escrow_service: AsyncEngine, kafka_bootstrap: str
) -> None:
    order = f"order-{uuid.uuid4().hex[:12]}"
    dispute = f"dispute-{uuid.uuid4().hex[:8]}"
    async with Marketplace(kafka_bootstrap, source="saga") as saga, EventWatcher(kafka_bootstrap) as watcher:

        async def send(command: Command, kind: type[M], key: str) -> M:
            """Publish as the saga does, and the answer escrow publishes to it."""
            sent = await saga.publish(command, correlation_id=order, idempotency_key=f"{key}:{order}")
            wanted = rejection_of(sent.message_id) if kind is CommandRejected else about(order, kind)
            answer = (await watcher.wait_for(wanted)).message
            assert isinstance(answer, kind)
            return answer

        await send(HoldFunds(order_id=order, buyer_id="b-e3", seller_id="s-e3", amount=usd(PRICE)), FundsHeld, "hold")
        frozen = await send(FreezeFunds(order_id=order, dispute_id=dispute), FundsFrozen, "freeze")
        assert frozen.held == usd(PRICE)
        refusal = await send(ReleaseFunds(order_id=order), CommandRejected, "auto-release")
        assert refusal.code == "hold_frozen"
        assert f"frozen by dispute {dispute}" in refusal.reason
        back = ReturnFunds(order_id=order, refund_id=f"{dispute}:refund", amount=usd(BUYER_PART), dispute_id=dispute)
        returned = await send(back, FundsReturned, "refund")
        assert returned.still_held == usd(PRICE - BUYER_PART)
        released = await send(ReleaseFunds(order_id=order, dispute_id=dispute), FundsReleased, "resolve")
        assert released.amount == usd(PRICE - BUYER_PART)

    found = await posted(escrow_service)
    assert (found[f"refunds_out:{order}:USD"], found[f"seller_payable:{order}:USD"]) == (BUYER_PART, PRICE - BUYER_PART)
    assert found[f"escrow_holding:{order}:USD"] == 0
    shown = await the_hold(escrow_service, order)
    assert (shown["status"], shown["frozen"], shown["dispute_id"]) == ("released", None, dispute)
    await books_check(escrow_service)
    # Every currency sums to zero over the whole stored ledger (other tests' orders included).
    totals: dict[str, int] = {}
    for code, balance in found.items():
        currency = AccountId.parse(code).currency
        totals[currency] = totals.get(currency, 0) + balance
    assert all(total == 0 for total in totals.values()), totals
