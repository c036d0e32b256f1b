"""The shared consumer against real databases (SQLite and PostgreSQL): effects, inbox,
outbox, dead letters and rejections all land in one transaction per batch."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import CommandRejected, FundWallet, Money, WalletFunded, parse_envelope
from contracts.topics import DEAD_LETTER, DEAD_LETTER_CONSUMER, DEAD_LETTER_REASON, DEAD_LETTER_SOURCE
from services.account.app import DEFINITION as ACCOUNT
from services.account.store import wallets
from shared.consumer import BatchConsumer, HandlerContext, MessageHandlers
from shared.db import migrate
from shared.outbox import StoredRecord
from shared.tables import inbox, outbox
from tests.support.records import Record, raw_record, record_of

USD = "USD"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency=USD)


@pytest.fixture
async def account_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


def consumer(
    engine: AsyncEngine,
    handlers: MessageHandlers = ACCOUNT.handlers,
    attempts: int = 3,
    handed_over: list[StoredRecord] | None = None,
) -> BatchConsumer:
    return BatchConsumer(
        name="account",
        engine=engine,
        handlers=handlers,
        rejections_topic=ACCOUNT.rejections_topic,
        hand_over=(handed_over if handed_over is not None else []).extend,
        attempts=attempts,
    )


async def outbox_rows(engine: AsyncEngine) -> Sequence[sa.Row[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()


async def balance(engine: AsyncEngine, account_id: str) -> int | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(sa.select(wallets.c.balance_minor).where(wallets.c.account_id == account_id))
        ).scalar_one_or_none()


def types_in(rows: Sequence[sa.Row[tuple[object, ...]]]) -> list[str]:
    return [parse_envelope(row.value).type for row in rows if row.topic != DEAD_LETTER.name]


async def test_handled_message_changes_state_and_emits_into_the_outbox(account_db: AsyncEngine) -> None:
    handed_over: list[StoredRecord] = []
    await consumer(account_db, handed_over=handed_over).consume(
        [record_of(FundWallet(account_id="alice", amount=usd(5000)))]
    )

    assert await balance(account_db, "alice") == 5000
    rows = await outbox_rows(account_db)
    assert types_in(rows) == ["WalletFunded"]
    funded = WalletFunded.model_validate(parse_envelope(rows[0].value).payload)
    assert funded.balance == usd(5000)
    assert rows[0].key == "alice"
    # The committed rows are handed to the relay as stored, so it need not read them back.
    assert [(row_id, record.value) for row_id, record in handed_over] == [(rows[0].id, rows[0].value)]


async def test_a_redelivered_message_changes_nothing(account_db: AsyncEngine) -> None:
    record = record_of(FundWallet(account_id="bob", amount=usd(700)))
    # Same record in one batch and again in a later batch (as after a crash before the offset commit).
    await consumer(account_db).consume([record, record])
    await consumer(account_db).consume([record])

    assert await balance(account_db, "bob") == 700
    assert types_in(await outbox_rows(account_db)) == ["WalletFunded"]
    async with account_db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one() == 1


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (b"\x00not json at all", "invalid message"),
        (json.dumps({"type": "FundWallet"}).encode(), "correlation_id: Field required"),
        (b"", "invalid message"),
    ],
)
async def test_malformed_records_go_to_the_dead_letter_topic_and_the_batch_goes_on(
    account_db: AsyncEngine, value: bytes, reason_part: str
) -> None:
    bad = raw_record(FundWallet, value, key=b"carol")
    good = record_of(FundWallet(account_id="carol", amount=usd(100)))

    await consumer(account_db).consume([bad, good])

    rows = await outbox_rows(account_db)
    dead = [r for r in rows if r.topic == DEAD_LETTER.name]
    assert len(dead) == 1
    assert dead[0].value == value  # the original bytes, untouched
    assert reason_part in dead[0].headers[DEAD_LETTER_REASON]
    assert dead[0].headers[DEAD_LETTER_SOURCE] == f"{bad.topic}/{bad.partition}/{bad.offset}"
    assert dead[0].headers[DEAD_LETTER_CONSUMER] == "account"
    assert await balance(account_db, "carol") == 100


async def test_payload_that_breaks_the_contract_is_dead_lettered_with_the_field_named(account_db: AsyncEngine) -> None:
    valid = record_of(FundWallet(account_id="dave", amount=usd(100)))
    envelope = json.loads(valid.value or b"")
    envelope["payload"]["amount"] = {"amount_minor": 1.5, "currency": "usd"}
    bad = Record(topic=valid.topic, value=json.dumps(envelope).encode(), key=b"dave")

    await consumer(account_db).consume([bad])

    (dead,) = await outbox_rows(account_db)
    reason = dead.headers[DEAD_LETTER_REASON]
    assert "amount.amount_minor" in reason
    assert "amount.currency" in reason
    assert await balance(account_db, "dave") is None


async def test_unknown_message_type_is_dead_lettered(account_db: AsyncEngine) -> None:
    valid = record_of(FundWallet(account_id="erin", amount=usd(100)))
    envelope = json.loads(valid.value or b"")
    envelope["type"] = "FundWalletTwice"

    await consumer(account_db).consume([Record(topic=valid.topic, value=json.dumps(envelope).encode())])

    (dead,) = await outbox_rows(account_db)
    assert "unknown message type 'FundWalletTwice'" in dead.headers[DEAD_LETTER_REASON]


async def test_a_refused_command_is_answered_with_command_rejected(account_db: AsyncEngine) -> None:
    first = record_of(FundWallet(account_id="frank", amount=usd(100)))
    other_currency = record_of(FundWallet(account_id="frank", amount=Money(amount_minor=100, currency="EUR")))

    await consumer(account_db).consume([first, other_currency])

    rows = await outbox_rows(account_db)
    assert types_in(rows) == ["WalletFunded", "CommandRejected"]
    rejected = CommandRejected.model_validate(parse_envelope(rows[1].value).payload)
    assert rejected.code == "currency_mismatch"
    assert "EUR" in rejected.reason
    assert rejected.rejected_message_id == parse_envelope(other_currency.value or b"").message_id
    assert rows[1].topic == ACCOUNT.rejections_topic.name
    assert await balance(account_db, "frank") == 100


async def test_a_failing_handler_is_retried_then_dead_lettered_while_others_go_through(account_db: AsyncEngine) -> None:
    calls: list[str] = []
    handlers = MessageHandlers()

    @handlers.on(FundWallet)
    async def flaky(command: FundWallet, ctx: HandlerContext) -> None:
        calls.append(command.account_id)
        await ctx.connection.execute(
            wallets.insert().values(
                account_id=command.account_id, currency=USD, balance_minor=1, updated_at=sa.func.now()
            )
        )
        ctx.emit(WalletFunded(account_id=command.account_id, amount=command.amount, balance=command.amount))
        if command.account_id == "poison":
            raise RuntimeError("boom")

    records = [record_of(FundWallet(account_id=name, amount=usd(1))) for name in ("ok-1", "poison", "ok-2")]
    await consumer(account_db, handlers, attempts=3).consume(records)

    # One optimistic pass over the batch, then each message in its own savepoint: poison 3 times.
    assert calls.count("poison") == 1 + 3
    rows = await outbox_rows(account_db)
    assert types_in(rows) == ["WalletFunded", "WalletFunded"]
    (dead,) = [r for r in rows if r.topic == DEAD_LETTER.name]
    assert "handler failed 3 times: RuntimeError: boom" in dead.headers[DEAD_LETTER_REASON]
    assert await balance(account_db, "poison") is None  # its partial write was rolled back
    assert await balance(account_db, "ok-1") == 1
    assert await balance(account_db, "ok-2") == 1


async def test_a_database_outage_is_not_blamed_on_the_message(account_db: AsyncEngine) -> None:
    handlers = MessageHandlers()

    @handlers.on(FundWallet)
    async def database_down(command: FundWallet, ctx: HandlerContext) -> None:
        raise OperationalError("INSERT", {}, ConnectionError("connection refused"))

    with pytest.raises(OperationalError):
        await consumer(account_db, handlers).consume([record_of(FundWallet(account_id="gina", amount=usd(1)))])

    # Nothing recorded: no dead letter, no inbox row, so the redelivered batch will be handled.
    assert await outbox_rows(account_db) == []
    async with account_db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one() == 0
