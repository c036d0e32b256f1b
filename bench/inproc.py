"""What each service's own code costs per order, without Kafka and without other processes.

    python -m bench.inproc [--orders 300] [--batches 1,10,100]

Every service's real ``BatchConsumer`` and ``OutboxRelay`` run in this one process, each on
its own SQLite file, and an in-memory router stands in for Kafka: records a relay publishes
are handed to every service that consumes their topic (as its subscriber would receive
them, headers included), ``batch`` records at a time. The driver side funds buyers, sends
the Checkouts and answers ``OrderStatusChanged(in_escrow)`` with ConfirmReceipt, like
bench.run. For each service it counts CPU time (``time.process_time``, which includes the
aiosqlite worker threads), SQL statements (cursor executes plus commits) and transactions
per completed order, and the orders/s one free core would allow it (1000 / CPU ms per order).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.orders import BUYER_BALANCE, PRICE
from contracts import (
    BindingScope,
    Checkout,
    ConfirmReceipt,
    DocumentType,
    FundWallet,
    GrantMarketplaceAccess,
    Message,
    RegisterAccount,
    SubmitIdentity,
    VerificationLevel,
    VerifyPhone,
    envelope_for,
)
from contracts.catalogue import party_actor
from contracts.sealing import Purpose
from contracts.topics import MESSAGE_TYPE_HEADER
from scripts.onboarding import MARKETPLACE_ID, Person
from scripts.stack import SERVICES
from services.account.ports import AccountPorts
from services.account.settings import AccountSettings
from services.payment.settings import PaymentSettings
from shared.clock import SYSTEM_CLOCK
from shared.consumer import BatchConsumer
from shared.db import create_engine, migrate
from shared.logging import configure_logging
from shared.outbox import OutboxRelay, OutgoingRecord
from shared.service import ServiceDefinition
from shared.signing import ensure_keyring, install, load_keyring, process_keyring
from shared.sql import open_database

RELAY_BATCH = 1000  # OutboxRelay's default batch_size


@dataclass(slots=True)
class FakeRecord:
    """Looks like an aiokafka ConsumerRecord to BatchConsumer."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch, as Kafka stamps a record
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_type: int = 0  # CreateTime, as the producer stamped it


class CapturingPublisher:
    """A RecordPublisher that keeps what it is given and acks at once."""

    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []

    async def send(self, record: OutgoingRecord) -> asyncio.Future[object]:
        self.records.append(record)
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack


@dataclass(slots=True)
class ServiceUnderTest:
    name: str
    definition: ServiceDefinition
    engine: AsyncEngine
    consumer: BatchConsumer
    relay: OutboxRelay
    publisher: CapturingPublisher
    inbox: deque[FakeRecord] = field(default_factory=deque)
    cpu_seconds: float = 0.0
    statements: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    records_in: int = 0


async def start_service(name: str, data_dir: Path) -> ServiceUnderTest:
    definition: ServiceDefinition = importlib.import_module(f"services.{name}.app").DEFINITION
    if not (data_dir / "keys" / "signing").exists():  # every record is signed and verified, as in a stack (X9)
        install(load_keyring(ensure_keyring(data_dir / "keys" / "signing")))
    engine = create_engine(f"sqlite+aiosqlite:///{data_dir / f'{name}.db'}")
    await migrate(engine, definition.migrations)
    publisher = CapturingPublisher()
    database = open_database(engine)
    relay = OutboxRelay(engine, publisher, database=database, batch_size=RELAY_BATCH)
    consumer = BatchConsumer(
        name=name,
        engine=engine,
        handlers=definition.handlers,
        rejections_topic=definition.rejections_topic,
        hand_over=relay.hand_over,
        database=database,
        dependencies=_dependencies(definition, data_dir),
    )
    service = ServiceUnderTest(name, definition, engine, consumer, relay, publisher)
    _count_statements(service)
    return service


def _dependencies(definition: ServiceDefinition, data_dir: Path) -> object:
    if definition.dependencies is None:
        return None
    if definition.name != "account":  # the payment service's network port: wallet orders never call it
        return definition.dependencies(PaymentSettings(), SYSTEM_CLOCK)
    settings = AccountSettings(
        database_url="sqlite+aiosqlite:///unused.db",
        sealing_key_file=data_dir / "keys" / "sealing.json",
        storage_key_file=data_dir / "keys" / "storage.key",
        sms_outbox=data_dir / "sms.jsonl",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
    )
    return definition.dependencies(settings, SYSTEM_CLOCK)


def onboarding_commands(ports: AccountPorts, buyer: str, n: int) -> list[tuple[Message, str]]:
    """Register, prove the phone (the driver derives the texted code: it holds the service's
    key), verify the identity at L1 (its limits) and bind ``buyer`` to the marketplace."""
    key = ports.unsealer.public_key
    code = ports.hasher.phone_code(buyer, 1)
    password = Person(buyer, "", "").password
    return [
        (
            RegisterAccount(
                account_id=buyer,
                phone=f"+4474{n:08d}",
                full_name="Bench Buyer",
                country="US",
                password=key.seal(password, purpose=Purpose.password(buyer)),
            ),
            f"register-{buyer}",
        ),
        (VerifyPhone(account_id=buyer, code=key.seal(code, purpose=Purpose.phone_code(buyer))), f"verify-{buyer}"),
        (
            SubmitIdentity(
                account_id=buyer,
                level=VerificationLevel.L1,
                legal_name="Bench Buyer",
                document_type=DocumentType.PASSPORT,
                document_number=key.seal("P1234567", purpose=Purpose.document(buyer)),
                birth_date=date(1990, 5, 17),
                country="US",
            ),
            f"identity-{buyer}",
        ),
        (
            GrantMarketplaceAccess(
                account_id=buyer,
                marketplace_id=MARKETPLACE_ID,
                scopes=[BindingScope.PAY],
                expires_at=SYSTEM_CLOCK.now() + timedelta(days=30),
                profile_legal_name="Bench Buyer",
                profile_country="US",
                password=key.seal(password, purpose=Purpose.password(buyer)),
            ),
            f"grant-{buyer}",
        ),
    ]


def _count_statements(service: ServiceUnderTest) -> None:
    sync_engine = service.engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        service.statements[statement.split(None, 1)[0].upper()] += 1

    @event.listens_for(sync_engine, "commit")
    def _commit(_conn: Any) -> None:
        service.statements["COMMIT"] += 1

    @event.listens_for(sync_engine, "rollback")
    def _rollback(_conn: Any) -> None:
        service.statements["ROLLBACK"] += 1


@contextlib.contextmanager
def cpu_timer(service: ServiceUnderTest) -> Iterator[None]:
    start = time.process_time()
    try:
        yield
    finally:
        service.cpu_seconds += time.process_time() - start


class Router:
    """Kafka's stand-in: topic -> the services that consume it."""

    def __init__(self, services: list[ServiceUnderTest]) -> None:
        self.services = services
        self._offset = 0
        self.completed: set[str] = set()

    def publish(self, record: OutgoingRecord) -> None:
        self._offset += 1
        fake = FakeRecord(
            record.topic, 0, self._offset, int(time.time() * 1000), record.key, record.value, list(record.headers)
        )
        for service in self.services:
            if any(t.name == record.topic for t in service.definition.consumes):
                service.inbox.append(fake)
        self._react(record)

    def command(self, message: Message, key: str) -> None:
        envelope = envelope_for(
            message, correlation_id=key, idempotency_key=key, source="bench", actor=party_actor(message)
        )
        record_key, value, kind = (
            message.partition_key.encode(),
            envelope.model_dump_json().encode(),
            message.message_type,
        )
        signature = process_keyring().sign("marketplace", message.topic.name, record_key, kind, value)
        self.publish(
            OutgoingRecord(message.topic.name, record_key, value, ((MESSAGE_TYPE_HEADER, kind.encode()), *signature))
        )

    def _react(self, record: OutgoingRecord) -> None:
        """The marketplace's part: confirm receipt once in escrow; note completions."""
        if dict(record.headers).get(MESSAGE_TYPE_HEADER) != b"OrderStatusChanged":
            return
        payload = json.loads(record.value)["payload"]
        if payload["status"] == "in_escrow":
            order_id = payload["order_id"]
            self.command(ConfirmReceipt(order_id=order_id, buyer_id=payload["buyer_id"]), f"confirm-{order_id}")
        elif payload["status"] == "completed":
            self.completed.add(payload["order_id"])

    async def run_until_idle(self, batch: int) -> None:
        while any(s.inbox for s in self.services):
            for service in self.services:
                if not service.inbox:
                    continue
                records = [service.inbox.popleft() for _ in range(min(batch, len(service.inbox)))]
                with cpu_timer(service):
                    await service.consumer.consume(records)
                    await service.relay.publish_handed_over()  # what one wake-up of OutboxRelay.run does
                service.batches += 1
                service.records_in += len(records)
                for record in service.publisher.records:
                    self.publish(record)
                service.publisher.records.clear()


async def measure(orders: int, batch: int) -> dict[str, Any]:
    """Push ``orders`` orders through all five services, ``batch`` records per consume call."""
    with tempfile.TemporaryDirectory(prefix="tg-inproc-") as tmp:
        services = [await start_service(name, Path(tmp)) for name in SERVICES]
        router = Router(services)
        try:
            buyers = [f"buyer-{i}" for i in range(max(1, orders // 10))]
            account = next(s for s in services if s.name == "account")
            assert isinstance(account.consumer._dependencies, AccountPorts)
            for n, buyer in enumerate(buyers):
                for command, key in onboarding_commands(account.consumer._dependencies, buyer, n):
                    router.command(command, key)
                router.command(FundWallet(account_id=buyer, amount=BUYER_BALANCE), f"fund-{buyer}")
            await router.run_until_idle(batch)
            for service in services:  # count the orders only
                service.cpu_seconds, service.batches, service.records_in = 0.0, 0, 0
                service.statements.clear()
            for n in range(orders):
                checkout = Checkout(
                    marketplace_id=MARKETPLACE_ID,
                    order_id=f"order-{n}",
                    buyer_id=buyers[n % len(buyers)],
                    seller_id=f"seller-{n % 7}",
                    amount=PRICE,
                )
                router.command(checkout, f"checkout-{n}")
            await router.run_until_idle(batch)
        finally:
            for service in services:
                await service.engine.dispose()
    done = len(router.completed) or 1
    per_service = {
        s.name: {
            "cpu_ms_per_order": round(1000 * s.cpu_seconds / done, 2),
            "orders_per_s_on_one_core": round(done / s.cpu_seconds, 1) if s.cpu_seconds else None,
            "statements_per_order": round(sum(s.statements.values()) / done, 1),
            "statements_by_kind_per_order": {k: round(v / done, 2) for k, v in s.statements.most_common()},
            "records_consumed_per_order": round(s.records_in / done, 1),
            "consume_calls": s.batches,
        }
        for s in services
    }
    total = sum(s.cpu_seconds for s in services)
    return {
        "orders": orders,
        "completed": len(router.completed),
        "batch": batch,
        "services": per_service,
        "all_services_cpu_ms_per_order": round(1000 * total / done, 2),
    }


def print_result(result: dict[str, Any]) -> None:
    print(
        f"\nbatch {result['batch']}: {result['completed']}/{result['orders']} orders completed, "
        f"all services {result['all_services_cpu_ms_per_order']} CPU ms/order"
    )
    print(f"{'service':13s} {'CPU ms/order':>12s} {'orders/s/core':>13s} {'SQL/order':>9s} {'records in/order':>16s}")
    for name, s in result["services"].items():
        print(
            f"{name:13s} {s['cpu_ms_per_order']:12.2f} {s['orders_per_s_on_one_core'] or 0:13.1f} "
            f"{s['statements_per_order']:9.1f} {s['records_consumed_per_order']:16.1f}   {s['statements_by_kind_per_order']}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--batches", default="1,10,100", help="records per consume call, comma-separated")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    configure_logging("inproc", "WARNING", "json")
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        result = await measure(args.orders, batch)
        print_result(result)
        results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
