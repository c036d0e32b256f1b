"""Faults (X2): each failure class of shared.consumer against the real broker and the five
services as processes: poison records mixed into a producer batch of valid commands, a
balance limit refused as a command's fault, the account database locked by another process,
two saga instances racing for the same group, and the broker itself going away.

Every test ends the same way: each order it placed reached its final state exactly once,
money is conserved (read from the account service's SQLite file), and every service's
consumer group has caught up to the end of the topics it reads.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from contracts import (
    Checkout,
    CommandRejected,
    ConfirmReceipt,
    FundWallet,
    OrderStatus,
    OrderStatusChanged,
    WalletFunded,
)
from contracts.catalogue import party_actor
from contracts.envelope import envelope_for
from contracts.money import max_amount_minor, max_balance_minor
from contracts.topics import (
    ACCOUNT_EVENTS,
    DEAD_LETTER,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    ORDER_COMMANDS,
    Topic,
)
from scripts.marketplace import EventWatcher, Marketplace, RawRecord, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import SERVICES, ServiceProcesses
from shared.broker_security import ADMIN, client_options
from shared.signing import process_keyring
from tests.support import kafka as test_kafka
from tests.support.eventually import eventually
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

FUNDS = 5000
PRICE = 1500
SQLITE_PREFIX = "sqlite+aiosqlite:///"


class Order:
    """One order a test placed: its buyer and seller are its own, so balances tell its story."""

    def __init__(self, run: str | None = None, order_id: str | None = None) -> None:
        self.run = run or uuid.uuid4().hex[:10]
        self.order_id = order_id or f"order-{self.run}"
        self.buyer = f"buyer-{self.run}"
        self.seller = f"seller-{self.run}"

    @property
    def person(self) -> Person:
        return Person.numbered(self.buyer, int(self.run, 16) % 10**8)

    def fund(self) -> FundWallet:
        return FundWallet(account_id=self.buyer, amount=usd(FUNDS))

    def checkout(self) -> Checkout:
        return Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=self.order_id,
            buyer_id=self.buyer,
            seller_id=self.seller,
            amount=usd(PRICE),
        )


async def onboard(onboarding: Onboarding, orders: list[Order]) -> None:
    """Every order's buyer registered and bound to the marketplace (before any fault starts)."""
    await onboarding.many([order.person for order in orders])


async def place(market: Marketplace, order: Order) -> None:
    await market.publish(order.fund(), correlation_id=order.order_id, idempotency_key=f"fund-{order.run}")
    await market.publish(order.checkout(), correlation_id=order.order_id, idempotency_key=f"checkout-{order.run}")


def envelope_bytes(command: FundWallet | Checkout | ConfirmReceipt, correlation_id: str, key: str) -> bytes:
    envelope = envelope_for(
        command, correlation_id=correlation_id, idempotency_key=key, source="marketplace", actor=party_actor(command)
    )
    return envelope.model_dump_json().encode()


def signed_headers(topic: str, key: bytes, kind: str, value: bytes) -> list[tuple[str, bytes]]:
    """The headers the marketplace sends with a record on ``topic``: its type and its MACs (X9)."""
    return [(MESSAGE_TYPE_HEADER, kind.encode()), *process_keyring().sign("marketplace", topic, key, kind, value)]


async def complete(market: Marketplace, watcher: EventWatcher, orders: list[Order], timeout: float = 60) -> None:
    """Every order reaches in_escrow, is confirmed, reaches completed, each status exactly once."""
    for order in orders:
        await watcher.wait_for(reached(order.order_id, OrderStatus.IN_ESCROW), timeout=timeout)
        await market.publish(
            ConfirmReceipt(order_id=order.order_id, buyer_id=order.buyer),
            correlation_id=order.order_id,
            idempotency_key=f"confirm-{order.run}",
        )
    for order in orders:
        await watcher.wait_for(reached(order.order_id, OrderStatus.COMPLETED), timeout=timeout)
    for order in orders:
        # A republished record keeps its message_id; a step taken twice would have a new one.
        ids_per_status: dict[OrderStatus, set[object]] = {}
        for seen in watcher.about(order.order_id):
            if isinstance(seen.message, OrderStatusChanged):
                ids_per_status.setdefault(seen.message.status, set()).add(seen.envelope.message_id)
        assert all(len(ids) == 1 for ids in ids_per_status.values()), (order.order_id, ids_per_status)
        assert OrderStatus.COMPLETED in ids_per_status


def wallet_balances(service_db: Mapping[str, str], accounts: list[str]) -> dict[str, int]:
    path = service_db["account"].removeprefix(SQLITE_PREFIX)
    connection = sqlite3.connect(path, timeout=30)
    try:
        marks = ",".join("?" * len(accounts))
        rows = connection.execute(
            f"SELECT account_id, balance_minor FROM wallets WHERE account_id IN ({marks})",
            accounts,
        ).fetchall()
    finally:
        connection.close()
    return {str(account): int(balance) for account, balance in rows}


async def assert_money_conserved(service_db: Mapping[str, str], orders: list[Order]) -> None:
    """Each buyer debited exactly once, each seller credited exactly once."""
    expected = {o.buyer: FUNDS - PRICE for o in orders} | {o.seller: PRICE for o in orders}
    accounts = list(expected)
    # The account service commits its rows before it publishes the events we awaited, so
    # this holds at once; eventually() only absorbs the read racing a write in progress.
    balances = await eventually(lambda: asyncio.to_thread(wallet_balances, service_db, accounts), expected.__eq__)
    assert balances == expected


def consumed_topics(service: str) -> tuple[Topic, ...]:
    definition = importlib.import_module(f"services.{service}.app").DEFINITION
    topics: tuple[Topic, ...] = definition.consumes
    return topics


async def group_lags(bootstrap: str) -> dict[str, dict[str, int]]:
    """Per service group: partitions whose committed offset is behind the end of the log."""
    admin = AIOKafkaAdminClient(**client_options(ADMIN), bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(**client_options(ADMIN), bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lags: dict[str, dict[str, int]] = {}
        for service in SERVICES:
            partitions = [TopicPartition(t.name, p) for t in consumed_topics(service) for p in range(t.partitions)]
            committed = await admin.list_consumer_group_offsets(service, partitions=partitions)
            ends = await consumer.end_offsets(partitions)
            behind = {}
            for partition in partitions:
                meta = committed.get(partition)
                position = meta.offset if meta is not None and meta.offset >= 0 else 0
                if ends[partition] > position:
                    behind[f"{partition.topic}/{partition.partition}"] = ends[partition] - position
            lags[service] = behind
        return lags
    finally:
        await consumer.stop()
        await admin.close()


async def assert_no_lag(bootstrap: str, timeout: float = 30) -> None:
    lags = await eventually(lambda: group_lags(bootstrap), lambda lags: not any(lags.values()), timeout=timeout)
    assert not any(lags.values()), lags


def dead_letters(watcher: EventWatcher) -> list[RawRecord]:
    return [r for r in watcher.raw if r.topic == DEAD_LETTER.name]


async def finish(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: Mapping[str, str],
    orders: list[Order],
    *,
    dead_lettered: int = 0,
) -> None:
    """The common end of every test: orders completed, money conserved, groups caught up."""
    await complete(market, watcher, orders)
    await assert_money_conserved(service_db, orders)
    await assert_no_lag(stack.bootstrap_servers)
    stack.check_alive()
    assert len(dead_letters(watcher)) == dead_lettered, [
        (r.headers.get(DEAD_LETTER_SOURCE), r.headers.get(DEAD_LETTER_REASON)) for r in dead_letters(watcher)
    ]


def dead_letter_of(source: bytes) -> Callable[[RawRecord], bool]:
    def matches(record: RawRecord) -> bool:
        return record.topic == DEAD_LETTER.name and record.headers.get(DEAD_LETTER_SOURCE) == source

    return matches


def partition_of(key: bytes, partitions: int) -> int:
    partition: int = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    return partition


def orders_on_partition(partition: int, count: int) -> list[Order]:
    """Orders whose ids hash to ``partition`` of the order commands topic."""
    found: list[Order] = []
    while len(found) < count:
        order = Order()
        if partition_of(order.order_id.encode(), ORDER_COMMANDS.partitions) == partition:
            found.append(order)
    return found


# ---------------------------------------------------------------------- (a) the record's fault


async def test_x2_poison_records_in_one_producer_batch_are_dead_lettered_and_valid_orders_complete(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: dict[str, str],
    onboarding: Onboarding,
) -> None:
    bad_key = b"\xff\xfe"
    partition = partition_of(bad_key, ORDER_COMMANDS.partitions)
    before, after = orders_on_partition(partition, 4), orders_on_partition(partition, 2)
    await onboard(onboarding, [*before, *after])
    for order in [*before, *after]:
        await market.publish(order.fund(), correlation_id=order.order_id, idempotency_key=f"fund-{order.run}")

    topic = ORDER_COMMANDS.name
    typed = [(MESSAGE_TYPE_HEADER, Checkout.message_type.encode())]
    stray = Order()  # a valid envelope, sent under a key that is not UTF-8
    poison: dict[str, tuple[bytes, bytes, list[tuple[str, bytes]]]] = {
        "bad type header": (
            before[1].order_id.encode(),
            envelope_bytes(before[1].checkout(), before[1].order_id, f"bad-header-{before[1].run}"),
            [(MESSAGE_TYPE_HEADER, b"\xc3\x28")],
        ),
        "bad key": (bad_key, envelope_bytes(stray.checkout(), stray.order_id, f"bad-key-{stray.run}"), typed),
        "empty value": (before[2].order_id.encode(), b"", typed),
        "oversized value": (before[3].order_id.encode(), b"{" + b" " * (2 * 1024 * 1024) + b"}", typed),
    }
    expected_reason = {
        "bad type header": "not valid UTF-8",
        "bad key": "record key",
        "empty value": "no value",
        "oversized value": "exceeds",
    }

    producer = AIOKafkaProducer(
        **client_options(ADMIN),
        bootstrap_servers=stack.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=50,
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:

        def checkout(o: Order) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
            key, value = o.order_id.encode(), envelope_bytes(o.checkout(), o.order_id, f"checkout-{o.run}")
            return key, value, signed_headers(Checkout.topic.name, key, Checkout.message_type, value)

        # Queued without awaiting any acknowledgement in between, within one linger window: the
        # small records share a producer batch (the 2 MB one exceeds batch_size and goes alone).
        records = [checkout(o) for o in before] + list(poison.values()) + [checkout(o) for o in after]
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert {m.partition for m in metadata} == {partition}
    poison_at = dict(zip(poison, metadata[len(before) : len(before) + len(poison)], strict=True))

    sources = {name: f"{topic}/{m.partition}/{m.offset}".encode() for name, m in poison_at.items()}
    for name, source in sources.items():
        letter = await watcher.wait_for_record(dead_letter_of(source), timeout=60)
        assert letter.headers[DEAD_LETTER_CLASS] == b"record", name
        assert expected_reason[name] in letter.headers[DEAD_LETTER_REASON].decode(), (name, letter.headers)
        assert (letter.value or b"") == poison[name][1], name  # the original bytes, whole

    await finish(stack, market, watcher, service_db, [*before, *after], dead_lettered=len(poison))
    for name, source in sources.items():  # exactly once each, even after everything settled
        assert sum(r.headers.get(DEAD_LETTER_SOURCE) == source for r in dead_letters(watcher)) == 1, name


# ---------------------------------------------------------------------- (b) the command's fault


async def test_x2_a_top_up_past_the_largest_balance_is_rejected_not_dead_lettered(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: dict[str, str],
    onboarding: Onboarding,
) -> None:
    account = f"whale-{uuid.uuid4().hex[:10]}"
    largest, step = max_balance_minor("USD"), max_amount_minor("USD")
    producer = AIOKafkaProducer(
        **client_options(ADMIN), bootstrap_servers=stack.bootstrap_servers, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        amounts = [step] * (largest // step) + ([largest % step] if largest % step else [])
        futures = []
        for n, amount in enumerate(amounts):
            command = FundWallet(account_id=account, amount=usd(amount))
            value = envelope_bytes(command, account, f"fill-{account}-{n}")
            headers = signed_headers(command.topic.name, account.encode(), command.message_type, value)
            futures.append(await producer.send(command.topic.name, value, key=account.encode(), headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    def funded_to(balance: int) -> Callable[[Seen], bool]:
        def matches(seen: Seen) -> bool:
            m = seen.message
            return isinstance(m, WalletFunded) and m.account_id == account and m.balance.amount_minor == balance

        return matches

    await watcher.wait_for(funded_to(largest), timeout=60)
    one_more = await market.publish(
        FundWallet(account_id=account, amount=usd(1)), correlation_id=account, idempotency_key=f"over-{account}"
    )
    rejected = await watcher.wait_for(
        lambda s: isinstance(s.message, CommandRejected) and s.message.rejected_message_id == one_more.message_id
    )
    assert rejected.topic == ACCOUNT_EVENTS.name
    assert isinstance(rejected.message, CommandRejected)
    assert rejected.message.code == "balance_limit", rejected.message
    assert rejected.message.subject_id == account

    # The balance did not move: no WalletFunded after the limit, and the row says so too.
    funded = [
        s.message for s in watcher.seen if isinstance(s.message, WalletFunded) and s.message.account_id == account
    ]
    assert len(funded) == len(amounts)
    assert funded[-1].balance.amount_minor == largest
    assert await asyncio.to_thread(wallet_balances, service_db, [account]) == {account: largest}

    order = Order()  # the stack still serves orders after the refusal
    await onboard(onboarding, [order])
    await place(market, order)
    await finish(stack, market, watcher, service_db, [order])


# ---------------------------------------------------------------------- (d) the system's fault

LOCK_SECONDS = 15
_HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
connection.close()
print("released", flush=True)
"""


def assignments(log: Path) -> int:
    return sum("partitions assigned" in line for line in log.read_text(errors="replace").splitlines())


@pytest.mark.long
async def test_x2_the_account_database_locked_by_another_process_delays_orders_without_loss(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: dict[str, str],
    onboarding: Onboarding,
) -> None:
    account_log = stack.log_dir / "account.log"
    assigned_before = assignments(account_log)
    path = service_db["account"].removeprefix(SQLITE_PREFIX)
    orders = [Order() for _ in range(20)]
    await onboard(onboarding, orders)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_LOCK, path, str(LOCK_SECONDS), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        locked_at = time.monotonic()
        for order in orders:
            await place(market, order)
        assert await asyncio.wait_for(holder.wait(), LOCK_SECONDS + 30) == 0
        released_at = time.time()
        assert time.monotonic() - locked_at >= LOCK_SECONDS - 1
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    # Nothing of the account service's could be stored, hence published, while the lock was held.
    ours = {o.order_id for o in orders}
    early = [s for s in watcher.seen if s.topic == ACCOUNT_EVENTS.name and s.envelope.correlation_id in ours]
    assert all(s.received_at >= released_at - 1 for s in early), "account events while its database was locked"

    await finish(stack, market, watcher, service_db, orders)
    assert stack.processes["account"].poll() is None  # it waited; it never exited
    log_text = account_log.read_text(errors="replace")
    assert "UnknownMemberId" not in log_text
    assert assignments(account_log) - assigned_before <= 1, "the account service's group rebalanced during the lock"


# ---------------------------------------------------------------------- (c) conflicts


async def test_x2_two_saga_instances_racing_on_one_database_complete_each_order_once(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: dict[str, str],
    onboarding: Onboarding,
) -> None:
    orders = [Order() for _ in range(20)]
    await onboard(onboarding, orders)
    second = ServiceProcesses(stack.bootstrap_servers, stack.database_urls, stack.log_dir.parent / "second-saga")
    second.start(("saga",))
    try:
        for order in orders[:10]:  # while the second instance joins: the group rebalances
            await place(market, order)
        await second.wait_ready(timeout=60)
        for order in orders[10:]:  # while both hold partitions
            await place(market, order)
        for order in orders:
            await watcher.wait_for(reached(order.order_id, OrderStatus.IN_ESCROW), timeout=60)
        second.check_alive()
    finally:
        second.stop()  # another rebalance: the first instance takes every partition back
    await finish(stack, market, watcher, service_db, orders)


# ---------------------------------------------------------------------- (d) the broker goes away

OUTAGE_SECONDS = 10
OUTAGE_LOG_LINES = 200


def controllable_broker(bootstrap: str) -> dict[str, str] | None:
    """The scripts/kafka.sh environment of the broker at ``bootstrap``, if this run may stop it.

    Either the fixture started it (tests.support.kafka's own data dir and ports), or the
    caller named it with KAFKA_BOOTSTRAP_SERVERS and the same KAFKA_DATA_DIR / KAFKA_PORT /
    KAFKA_CONTROLLER_PORT it was started with. Anything else is someone else's broker.
    """
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        data, port, controller = test_kafka.TEST_DATA_DIR, test_kafka.TEST_PORT, test_kafka.TEST_CONTROLLER_PORT
    else:
        named = [os.environ.get(k) for k in ("KAFKA_DATA_DIR", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT")]
        if not all(named):
            return None
        data = Path(str(named[0]))
        data = data if data.is_absolute() else test_kafka.REPO_ROOT / data
        port, controller = int(str(named[1])), int(str(named[2]))
    if bootstrap != f"127.0.0.1:{port}" or not (data / "kafka.pid").exists():
        return None
    return {
        **os.environ,
        "KAFKA_DATA_DIR": str(data),
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
    }


def kafka_sh(command: str, env: Mapping[str, str]) -> None:
    subprocess.run(["bash", str(test_kafka.KAFKA_SH), command], env=env, check=True, capture_output=True)


def log_lines(stack: ServiceProcesses) -> dict[str, int]:
    return {name: len((stack.log_dir / f"{name}.log").read_text(errors="replace").splitlines()) for name in SERVICES}


@contextmanager
def broker_down(env: Mapping[str, str]) -> Iterator[None]:
    kafka_sh("stop", env)
    try:
        yield
    finally:
        kafka_sh("start", env)  # always: the rest of the session needs its broker


async def test_x2_the_broker_stopped_mid_flow_and_restarted_loses_and_repeats_nothing(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    service_db: dict[str, str],
    onboarding: Onboarding,
) -> None:
    env = controllable_broker(stack.bootstrap_servers)
    if env is None:
        pytest.skip(
            "the broker is not a scripts/kafka.sh broker this run controls; set KAFKA_DATA_DIR, KAFKA_PORT and "
            "KAFKA_CONTROLLER_PORT to the ones it was started with"
        )
    first, second = [Order() for _ in range(5)], [Order() for _ in range(5)]
    await onboard(onboarding, [*first, *second])
    for order in first:
        await place(market, order)
    await watcher.wait_for(reached(first[0].order_id, OrderStatus.PAYMENT_PENDING))  # in flight, not finished

    lines_before = log_lines(stack)
    with broker_down(env):
        await asyncio.to_thread(time.sleep, OUTAGE_SECONDS)  # the fault itself: the broker is away this long
        stack.check_alive()  # nobody gave up and exited
    for order in second:
        await place(market, order)

    await finish(stack, market, watcher, service_db, [*first, *second])
    lines_after = log_lines(stack)
    noise = {name: lines_after[name] - lines_before[name] for name in SERVICES}
    assert all(n < OUTAGE_LOG_LINES for n in noise.values()), noise
