"""The restore drill (issue 19): the account database restored from a backup comes back consistent
by itself, on SQLite and PostgreSQL, over the real broker and the five services as processes.

While orders flow, ``tradeguard backup`` copies the account database; 200 more orders go through;
the account service stops, orders placed meanwhile wait for it, ``tradeguard restore`` puts the
backup back and the service starts again. It has lost every wallet movement since the backup; the
offsets stored with its effects make it replay exactly those records from Kafka. Then: every order
completes, the wallets hold what they held before the restore (each debit and payout exactly once),
escrow made no transfer twice, and the books audit is clean.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from contracts import Checkout, ConfirmReceipt, FundWallet, OrderStatus, WalletFunded
from scripts.audit.checks import AuditLimits
from scripts.audit.reader import audit_stack
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person, Phone
from scripts.stack import FAST_PASSWORD_HASHING, ROOT, SERVICES, ServiceProcesses, sqlite_urls
from services.account.store import movements, wallets
from services.escrow.store import ledger_transfers
from shared.clock import FileClock
from shared.db import create_engine, reading
from tests.conftest import fresh_database_like
from tests.support.eventually import eventually
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

BUYERS = 20
FUNDS_MINOR = 100_000
"""Each buyer's top-up: far more than the orders take, and below L1's daily limit."""
CONCURRENCY = 25
ORDER_TIMEOUT = 90.0
CATCH_UP_TIMEOUT = 90.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def drill_stack(
    request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path: Path
) -> AsyncIterator[ServiceProcesses]:
    """The five services as processes, each on its own database of the kind under test."""
    state = tmp_path / "stack"
    if request.param == "sqlite":
        urls = sqlite_urls(state)
    else:
        request.getfixturevalue("postgres_server")
        urls = {name: fresh_database_like("postgresql") for name in SERVICES}
    services = ServiceProcesses(kafka_bootstrap, urls, state / "logs", extra_env=FAST_PASSWORD_HASHING)
    services.start()
    try:
        await services.wait_ready(timeout=90)
        yield services
    finally:
        services.stop()


@dataclass
class Shop:
    """Orders of a few funded buyers, each driven from checkout to completed."""

    market: Marketplace
    watcher: EventWatcher
    buyers: list[str]
    run: str
    completed: list[str] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def order(self) -> str:
        n = next(self._numbers)
        order_id, buyer = f"order-{self.run}-{n:04d}", self.buyers[n % len(self.buyers)]
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer,
            seller_id=f"seller-{self.run}-{n % 5}",
            amount=usd(500 + 37 * (n % 11)),
        )
        await self.market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
        await self.watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=ORDER_TIMEOUT)
        await self.market.publish(
            ConfirmReceipt(order_id=order_id, buyer_id=buyer),
            correlation_id=order_id,
            idempotency_key=f"confirm-{order_id}",
        )
        await self.watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=ORDER_TIMEOUT)
        async with self._progress:
            self.completed.append(order_id)
            self._progress.notify_all()
        return order_id

    async def until_completed(self, count: int) -> None:
        async with asyncio.timeout(ORDER_TIMEOUT), self._progress:
            await self._progress.wait_for(lambda: len(self.completed) >= count)

    async def orders(self, count: int) -> list[str]:
        """``count`` orders, at most CONCURRENCY under way at once; each one completed."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> str:
            async with gate:
                return await self.order()

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def tradeguard(stack: ServiceProcesses, *args: str) -> str:
    """The ``tradeguard`` command as an operator runs it, against the drill's stack; its output."""
    env = {**os.environ, "ACCOUNT_DATABASE_URL": stack.database_urls["account"]}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.cli",
        *args,
        "--state-dir",
        str(stack.state_dir),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    return text


async def rows(url: str, statement: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        async with reading(engine) as conn:  # a snapshot that waits for no writer
            return [tuple(r) for r in (await conn.execute(statement)).all()]
    finally:
        await engine.dispose()  # a connection left open would make the restore refuse


@dataclass(frozen=True)
class Books:
    """The money records the drill compares: wallet movements and balances, escrow transfers."""

    movements: Counter[tuple[str, str, str, int]]
    balances: dict[str, int]
    transfers: Counter[tuple[str, str, str]]

    def debits_and_payouts_of(self, orders: list[str]) -> Counter[tuple[str, str]]:
        wanted, found = set(orders), Counter[tuple[str, str]]()
        for (_, kind, reference, _), times in self.movements.items():
            if reference in wanted:
                found[kind, reference] += times
        return found


async def books(stack: ServiceProcesses, run: str) -> Books:
    account, escrow = stack.database_urls["account"], stack.database_urls["escrow"]
    mine = f"%-{run}%"
    moved = await rows(
        account,
        sa.select(movements.c.account_id, movements.c.kind, movements.c.reference, movements.c.amount_minor).where(
            movements.c.account_id.like(mine)
        ),
    )
    held = await rows(
        account, sa.select(wallets.c.account_id, wallets.c.balance_minor).where(wallets.c.account_id.like(mine))
    )
    transfers = await rows(
        escrow,
        sa.select(ledger_transfers.c.order_id, ledger_transfers.c.kind, ledger_transfers.c.code).where(
            ledger_transfers.c.order_id.like(mine)
        ),
    )
    return Books(
        Counter((str(a), str(k), str(r), int(m)) for a, k, r, m in moved),
        {str(a): int(b) for a, b in held},
        Counter((str(o), str(k), str(c)) for o, k, c in transfers),
    )


def each_order_debited_and_paid_once(orders: list[str]) -> Callable[[Books], bool]:
    def done(found: Books) -> bool:
        effects = found.debits_and_payouts_of(orders)
        return all(effects[("debit", o)] == 1 and effects[("credit", o)] == 1 for o in orders)

    return done


async def funded_buyers(onboarding: Onboarding, market: Marketplace, watcher: EventWatcher, run: str) -> list[str]:
    people = [Person.numbered(f"buyer-{run}-{i:02d}", int(run, 16) % 10**6 * 100 + i) for i in range(BUYERS)]
    await onboarding.many(people)
    for person in people:
        await market.publish(
            FundWallet(account_id=person.account_id, amount=usd(FUNDS_MINOR)),
            correlation_id=person.account_id,
            idempotency_key=f"fund-{person.account_id}",
        )
    for person in people:
        await watcher.wait_for(funded(person.account_id), timeout=ORDER_TIMEOUT)
    return [p.account_id for p in people]


def funded(account_id: str) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        return isinstance(seen.message, WalletFunded) and seen.message.account_id == account_id

    return matches


async def test_restore_drill_the_account_database_restored_replays_what_it_lacks(
    drill_stack: ServiceProcesses, market: Marketplace, tmp_path: Path
) -> None:
    stack, run = drill_stack, uuid.uuid4().hex[:6]
    backups = tmp_path / "backups"
    async with EventWatcher(stack.bootstrap_servers) as watcher:
        onboarding = Onboarding(
            market,
            watcher,
            Phone(stack.sms_outbox),
            stack.sealing_key(),
            clock=FileClock(stack.clock_file),
            payment_url=stack.payment_url,
        )
        shop = Shop(market, watcher, await funded_buyers(onboarding, market, watcher, run), run)
        await shop.orders(20)

        # While orders flow (the first 10 of 40 completed, the rest under way), the backup.
        flowing = asyncio.create_task(shop.orders(40))
        await shop.until_completed(30)
        made = await tradeguard(stack, "backup", "--service", "account", str(backups))
        await flowing
        # 200 more orders through, with their sellers' payouts.
        await shop.orders(200)
        before = await eventually(
            lambda: books(stack, run), each_order_debited_and_paid_once(shop.completed), timeout=CATCH_UP_TIMEOUT
        )
        assert each_order_debited_and_paid_once(shop.completed)(before), "the payouts never all arrived"

        # The account service stops; orders placed now wait for it.
        stack.stop_one("account")
        waiting = asyncio.create_task(shop.orders(20))
        put_back = await tradeguard(stack, "restore", "--service", "account", str(backups))
        restored = await books(stack, run)
        stack.start_one("account")
        await stack.wait_ready(timeout=90)
        await waiting
        await shop.orders(10)

        everything = list(shop.completed)
        after_restore = await eventually(
            lambda: books(stack, run), each_order_debited_and_paid_once(everything), timeout=CATCH_UP_TIMEOUT
        )

    print(made, put_back, sep="\n")
    assert len(everything) == 290
    # The restored database lacked every wallet movement of the 200 orders after the backup ...
    since_backup = shop.completed[60:260]
    assert restored.debits_and_payouts_of(since_backup) == Counter()
    assert restored.balances != before.balances
    # ... and the service replayed each of them, once, as every order after them.
    effects = after_restore.debits_and_payouts_of(everything)
    missing = sorted(o for o in everything if effects[("debit", o)] != 1 or effects[("credit", o)] != 1)
    assert missing == [], (
        f"{len(missing)} of {len(everything)} orders lack their wallet debit or payout after the restore "
        f"(records between the backup and the committed offset not replayed?): {missing[:10]}"
    )
    # Each movement once, and the same ones as before the restore, plus the 30 orders' since.
    assert [m for m, n in after_restore.movements.items() if n != 1] == []
    assert set(before.movements) <= set(after_restore.movements)
    new = set(after_restore.movements) - set(before.movements)
    assert {reference for _, _, reference, _ in new} <= set(everything[-30:])
    # Balances: each wallet holds what its movements say, and every buyer paid each order once.
    net = Counter[str]()
    paid = Counter[str]()
    for account, kind, _, amount in after_restore.movements:
        net[account] += -amount if kind == "debit" else amount
        paid[account] += amount if kind == "debit" else 0
    assert after_restore.balances == dict(net)
    assert {b: after_restore.balances[b] for b in shop.buyers} == {b: FUNDS_MINOR - paid[b] for b in shop.buyers}
    # Escrow made no transfer twice (a replayed authorisation must not hold the money again).
    assert [t for t, n in after_restore.transfers.items() if n != 1] == []
    assert set(before.transfers) <= set(after_restore.transfers)
    # The books of the whole system balance.
    report = await audit_stack(stack.state_dir, AuditLimits(), attempts=3)
    assert report.ok, report.summary()


@pytest.mark.long  # make test runs the drill itself on both databases; this edge case is in make test-long
@pytest.mark.parametrize("drill_stack", ["sqlite"], indirect=True)
async def test_restore_drill_a_backup_taken_before_the_first_record_replays_everything_since(
    drill_stack: ServiceProcesses, market: Marketplace, tmp_path: Path
) -> None:
    """The same promise for a young database: backed up before the account service consumed from
    some partition (here: from any), restored after orders went through, it must replay them all."""
    stack, run = drill_stack, uuid.uuid4().hex[:6]
    backups = tmp_path / "backups"
    await tradeguard(stack, "backup", "--service", "account", str(backups))
    async with EventWatcher(stack.bootstrap_servers) as watcher:
        onboarding = Onboarding(
            market,
            watcher,
            Phone(stack.sms_outbox),
            stack.sealing_key(),
            clock=FileClock(stack.clock_file),
            payment_url=stack.payment_url,
        )
        shop = Shop(market, watcher, await funded_buyers(onboarding, market, watcher, run), run)
        await shop.orders(20)
        before = await eventually(
            lambda: books(stack, run), each_order_debited_and_paid_once(shop.completed), timeout=CATCH_UP_TIMEOUT
        )
        assert each_order_debited_and_paid_once(shop.completed)(before), "the payouts never all arrived"

        stack.stop_one("account")
        await tradeguard(stack, "restore", "--service", "account", str(backups))
        stack.start_one("account")
        await stack.wait_ready(timeout=90)
        after_restore = await eventually(
            lambda: books(stack, run), lambda found: found.movements == before.movements, timeout=30
        )

    assert after_restore.movements == before.movements
    assert after_restore.balances == before.balances
