"""The shared consumer against real databases (SQLite and PostgreSQL), X2: effects, inbox,
outbox, dead letters and rejections all land in one transaction per batch, and every kind of
failure gets the verdict of the table in shared/consumer.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import AuthorizePayment, CommandRejected, FundWallet, Money, WalletFunded, parse_envelope
from contracts.money import max_amount_minor, max_balance_minor
from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
)
from services.account.app import DEFINITION as ACCOUNT
from services.account.domain.wallets import Wallet
from services.account.ports import AccountPorts
from services.account.store import WALLETS, movements, wallets
from shared.clock import ManualClock
from shared.consumer import BatchConsumer, HandlerContext, MessageHandlers
from shared.db import migrate
from shared.errors import CommandRefused, SystemFault
from shared.outbox import StoredRecord, decode_headers
from shared.tables import inbox, outbox
from tests.support.accounts import MARKETPLACE, AccountDriver
from tests.support.records import Record, raw_record, record_of

USD = "USD"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency=USD)


@pytest.fixture
async def account_db(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine, ACCOUNT.migrations)
    return engine


def consumer(  # noqa: PLR0917 - keywords everywhere it is called
    engine: AsyncEngine,
    handlers: MessageHandlers = ACCOUNT.handlers,
    attempts: int = 3,
    handed_over: list[StoredRecord] | None = None,
    clock: ManualClock | None = None,
    ports: AccountPorts | None = None,
) -> BatchConsumer:
    return BatchConsumer(
        dependencies=ports,
        name="account",
        engine=engine,
        handlers=handlers,
        rejections_topic=ACCOUNT.rejections_topic,
        hand_over=(handed_over if handed_over is not None else []).extend,
        attempts=attempts,
        clock=clock or ManualClock(),
    )


async def outbox_rows(engine: AsyncEngine) -> Sequence[sa.Row[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()


async def dead_letters(engine: AsyncEngine) -> list[sa.Row[tuple[object, ...]]]:
    return [r for r in await outbox_rows(engine) if r.topic == DEAD_LETTER.name]


def headers_of(row: sa.Row[tuple[object, ...]]) -> dict[str, bytes]:
    return dict(decode_headers(row.headers))


async def balance(engine: AsyncEngine, account_id: str) -> int | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(sa.select(wallets.c.balance_minor).where(wallets.c.account_id == account_id))
        ).scalar_one_or_none()


async def inbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(inbox))).scalar_one())


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
    assert rows[0].key == b"alice"
    # The committed rows are handed to the relay as stored, so it need not read them back.
    assert [(row_id, record.value) for row_id, record in handed_over] == [(rows[0].id, rows[0].value)]


async def test_a_redelivered_message_changes_nothing(account_db: AsyncEngine) -> None:
    record = record_of(FundWallet(account_id="bob", amount=usd(700)))
    # Same record in one batch and again in a later batch (as after a crash before the offset commit).
    await consumer(account_db).consume([record, record])
    await consumer(account_db).consume([record])

    assert await balance(account_db, "bob") == 700
    assert types_in(await outbox_rows(account_db)) == ["WalletFunded"]
    assert await inbox_count(account_db) == 1


def _with(record: Record, **changes: object) -> Record:
    fields = {f: getattr(record, f) for f in ("topic", "value", "key", "partition", "offset", "headers")}
    return Record(**{**fields, **changes})


def _valid(account: str = "carol") -> Record:
    return record_of(FundWallet(account_id=account, amount=usd(100)))


def _with_payload(record: Record, **payload: object) -> Record:
    envelope = json.loads(record.value or b"")
    envelope["payload"].update(payload)
    return _with(record, value=json.dumps(envelope).encode())


POISON: dict[str, tuple[Callable[[Record], Record], str]] = {
    "not JSON": (lambda r: _with(r, value=b"\x00not json at all"), "not JSON"),
    "empty value": (lambda r: _with(r, value=b""), "no value"),
    "no value": (lambda r: _with(r, value=None), "no value"),
    "missing envelope field": (lambda r: _with(r, value=json.dumps({"type": "FundWallet"}).encode()), "Field required"),
    "type header not UTF-8": (lambda r: _with(r, headers=((MESSAGE_TYPE_HEADER, b"\xc3\x28"),)), "not valid UTF-8"),
    "key not UTF-8": (lambda r: _with(r, key=b"\xff\xfe"), "record key"),
    "no key": (lambda r: _with(r, key=None), "record key none"),
    "key is another account": (lambda r: _with(r, key=b"mallory"), "is not the message's account_id"),
    "type header twice": (
        lambda r: _with(r, headers=((MESSAGE_TYPE_HEADER, b"FundWallet"), (MESSAGE_TYPE_HEADER, b"x"))),
        "appears 2 times",
    ),
    "a type of another topic": (
        lambda r: _with(r, headers=((MESSAGE_TYPE_HEADER, b"Checkout"),)),
        "a Checkout does not belong on tradeguard.account.commands",
    ),
    "header and envelope disagree": (
        lambda r: _with(r, headers=((MESSAGE_TYPE_HEADER, b"CreditWallet"),)),
        "header tg-type says 'CreditWallet'",
    ),
    "oversized value": (lambda r: _with(r, value=b"{" + b" " * (2 * 1024 * 1024) + b"}"), "exceeds"),
    "amount as a string": (lambda r: _with_payload(r, amount={"amount_minor": "100", "currency": USD}), "amount"),
    "unknown currency": (lambda r: _with_payload(r, amount={"amount_minor": 100, "currency": "ZZZ"}), "currency"),
}


@pytest.mark.parametrize("case", POISON)
async def test_x2_a_record_that_cannot_be_read_is_dead_lettered_at_once_and_its_neighbours_go_through(
    account_db: AsyncEngine, case: str
) -> None:
    spoil, reason_part = POISON[case]
    before, bad, after = _valid("carol"), spoil(_valid("carol")), _valid("carol")

    await consumer(account_db).consume([before, bad, after])

    (dead,) = await dead_letters(account_db)
    headers = headers_of(dead)
    assert dead.value == (bad.value or b"")  # the original bytes, untouched
    assert dead.key == bad.key
    assert reason_part in headers[DEAD_LETTER_REASON].decode()
    assert headers[DEAD_LETTER_CLASS] == b"record"
    assert headers[DEAD_LETTER_SOURCE] == f"{bad.topic}/{bad.partition}/{bad.offset}".encode()
    assert headers[DEAD_LETTER_CONSUMER] == b"account"
    assert [(k, v) for k, v in decode_headers(dead.headers) if not k.startswith("tg-dead-letter-")] == list(bad.headers)
    assert await balance(account_db, "carol") == 200  # the records before and after it went through
    assert await inbox_count(account_db) == 2  # a dead letter is not "handled": it can be re-driven


async def test_payload_that_breaks_the_contract_is_dead_lettered_with_the_field_named(account_db: AsyncEngine) -> None:
    bad = _with_payload(_valid("dave"), amount={"amount_minor": 1.5, "currency": "usd"})

    await consumer(account_db).consume([bad])

    (dead,) = await dead_letters(account_db)
    reason = headers_of(dead)[DEAD_LETTER_REASON].decode()
    assert "amount.amount_minor" in reason
    assert "amount.currency" in reason
    assert await balance(account_db, "dave") is None


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


async def test_x2_a_command_refused_after_its_handler_wrote_leaves_nothing(account_db: AsyncEngine) -> None:
    handlers = MessageHandlers()

    @handlers.on(FundWallet, loads=[WALLETS.by("account_id")])
    def write_then_refuse(command: FundWallet, ctx: HandlerContext) -> None:
        wallet = ctx.add(WALLETS, Wallet.open(command.account_id, USD))
        wallet.balance = command.amount
        ctx.emit(WalletFunded(account_id=command.account_id, amount=command.amount, balance=command.amount))
        if command.account_id == "refused":
            raise CommandRefused("no_thanks", "refused after writing")

    records = [_valid("kept-1"), _valid("refused"), _valid("kept-2")]
    await consumer(account_db, handlers).consume(records)

    assert await balance(account_db, "refused") is None  # its write did not survive
    assert await balance(account_db, "kept-1") == 100
    assert await balance(account_db, "kept-2") == 100
    assert types_in(await outbox_rows(account_db)) == ["WalletFunded", "CommandRejected", "WalletFunded"]


async def test_x2_an_amount_that_would_overflow_a_balance_is_rejected_not_dead_lettered(
    account_db: AsyncEngine,
) -> None:
    most = max_amount_minor(USD)
    top_ups = [
        record_of(FundWallet(account_id="rich", amount=usd(most))) for _ in range(max_balance_minor(USD) // most)
    ]
    await consumer(account_db).consume(top_ups)
    assert await balance(account_db, "rich") == max_balance_minor(USD)

    await consumer(account_db).consume([record_of(FundWallet(account_id="rich", amount=usd(1)))])

    assert await balance(account_db, "rich") == max_balance_minor(USD)  # unchanged
    assert await dead_letters(account_db) == []
    rejected = CommandRejected.model_validate(parse_envelope((await outbox_rows(account_db))[-1].value).payload)
    assert rejected.code == "balance_limit"


async def test_x2_a_handler_bug_is_retried_then_dead_lettered_and_after_the_fix_a_redrive_applies_once(
    account_db: AsyncEngine,
) -> None:
    calls: list[str] = []
    buggy = MessageHandlers()

    @buggy.on(FundWallet, loads=[WALLETS.by("account_id")])
    def fund(command: FundWallet, ctx: HandlerContext) -> None:
        calls.append(command.account_id)
        ctx.add(WALLETS, Wallet.open(command.account_id, USD))
        if command.account_id == "poison":
            raise RuntimeError("boom")

    records = [_valid("ok-1"), _valid("poison"), _valid("ok-2")]
    await consumer(account_db, buggy, attempts=3).consume(records)

    assert calls.count("poison") == 3
    (dead,) = await dead_letters(account_db)
    reason = headers_of(dead)[DEAD_LETTER_REASON].decode()
    assert "handler failed 3 times: RuntimeError: boom at test_batch_consumer.py" in reason
    assert headers_of(dead)[DEAD_LETTER_CLASS] == b"bug"
    assert await balance(account_db, "poison") is None
    assert await balance(account_db, "ok-1") == 0

    # The fix is deployed (the real handlers) and the dead letter re-driven: the same record
    # again, at a new offset. It takes effect once; a second re-drive is a duplicate.
    redriven = _with(records[1], offset=records[1].offset + 1000)
    await consumer(account_db).consume([redriven])
    await consumer(account_db).consume([_with(redriven, offset=redriven.offset + 1)])
    assert await balance(account_db, "poison") == 100
    assert types_in(await outbox_rows(account_db)).count("WalletFunded") == 1


async def test_x2_a_database_outage_is_a_system_fault_never_a_dead_letter(account_db: AsyncEngine) -> None:
    handlers = MessageHandlers()

    @handlers.on(FundWallet)
    def fine(command: FundWallet, ctx: HandlerContext) -> None:
        ctx.emit(WalletFunded(account_id=command.account_id, amount=command.amount, balance=command.amount))

    broken = consumer(account_db, handlers)

    async def database_down(*_: object, **__: object) -> None:
        raise OperationalError("INSERT", {}, ConnectionError("connection refused"))

    broken._apply = database_down  # type: ignore[method-assign,assignment]
    with pytest.raises(SystemFault, match="connection refused"):
        await broken.consume([_valid("gina")])

    # Nothing recorded: no dead letter, no inbox row, so the batch offered again will be handled.
    assert await outbox_rows(account_db) == []
    assert await inbox_count(account_db) == 0


async def _state(
    engine: AsyncEngine,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    async with engine.connect() as conn:
        wallet_rows = (
            await conn.execute(sa.select(wallets.c.account_id, wallets.c.balance_minor).order_by(wallets.c.account_id))
        ).all()
        movement_rows = (
            await conn.execute(
                sa.select(
                    movements.c.account_id, movements.c.kind, movements.c.reference, movements.c.amount_minor
                ).order_by(movements.c.id)
            )
        ).all()
    emitted: list[tuple[object, ...]] = []
    for row in await outbox_rows(engine):
        if row.topic == DEAD_LETTER.name:
            emitted.append(("dead letter", headers_of(row)[DEAD_LETTER_REASON]))
        else:
            envelope = parse_envelope(row.value)
            emitted.append((row.topic, envelope.type, envelope.payload))
    # Kafka keeps order per topic partition, not across topics: compare each topic's sequence.
    emitted.sort(key=lambda e: str(e[0]))
    return [tuple(r) for r in wallet_rows], sorted(tuple(r) for r in movement_rows), emitted


async def test_x2_a_mixed_batch_has_exactly_the_effects_of_its_messages_one_by_one(
    account_db: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    # Several aggregates (wallets, movements) touched by several messages, a duplicate, a
    # refused command, a declined payment and a poison record, all in one batch.
    clock = ManualClock()
    driver = AccountDriver.create(account_db, tmp_path, clock)
    onboarding = [
        record_of(message)
        for account in ("a", "b")
        for message in (driver.register(account), driver.verify(account), driver.grant(account))
    ]

    def authorize(account: str, order: str, amount: int) -> AuthorizePayment:
        return AuthorizePayment(account_id=account, order_id=order, marketplace_id=MARKETPLACE, amount=usd(amount))

    fund_a = record_of(FundWallet(account_id="a", amount=usd(1000)), idempotency_key="fund-a")
    batch = [
        fund_a,
        record_of(FundWallet(account_id="b", amount=usd(300))),
        record_of(authorize("a", "o-1", 400)),
        fund_a,  # duplicate
        record_of(FundWallet(account_id="a", amount=Money(amount_minor=5, currency="EUR"))),  # refused
        raw_record(FundWallet, b"{broken", key=b"a"),  # poison
        record_of(authorize("b", "o-2", 500)),  # declined: the balance is short
        record_of(authorize("a", "o-1", 400)),  # same payment, new id
        record_of(FundWallet(account_id="a", amount=usd(1)), idempotency_key="fund-a"),  # same key, other amount
    ]
    await consumer(account_db, clock=clock, ports=driver.ports).consume(onboarding)
    onboarded = len((await _state(account_db))[2])
    await consumer(account_db, clock=clock, ports=driver.ports).consume(batch)

    one_by_one = await _fresh_account_db(database_url)
    try:
        await consumer(one_by_one, clock=clock, ports=driver.ports).consume(onboarding)
        for record in batch:
            await consumer(one_by_one, clock=clock, ports=driver.ports).consume([record])
        assert await _state(account_db) == await _state(one_by_one)
    finally:
        await one_by_one.dispose()
    wallet_rows, _, emitted = await _state(account_db)
    assert wallet_rows == [("a", 600), ("b", 300)]
    assert [e[1] for e in emitted if e[0] != "dead letter"][onboarded:] == [
        "WalletFunded",
        "WalletFunded",
        "PaymentAuthorized",
        "CommandRejected",
        "PaymentAuthorizationDeclined",
        "PaymentAuthorized",
        "CommandRejected",
    ]


async def _fresh_account_db(database_url: str) -> AsyncEngine:
    from shared.db import create_engine
    from tests.conftest import fresh_database_like

    engine = create_engine(fresh_database_like(database_url))
    await migrate(engine, ACCOUNT.migrations)
    return engine
