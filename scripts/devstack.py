"""`make run` / `make demo`: local Kafka, the five services as processes, and a demo order.

python -m scripts.devstack run    # demo, then keep everything up until Ctrl-C
python -m scripts.devstack demo   # demo, then stop everything; exit 0 iff the order completed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from contracts import (
    ALL_TOPICS,
    Checkout,
    ConfirmReceipt,
    FundWallet,
    Money,
    OrderStatus,
    OrderStatusChanged,
)
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person, Phone
from scripts.stack import ROOT, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics
from shared.broker_security import use_broker_credentials

console = Console() if sys.stdout.isatty() else Console(width=160)
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def kafka(command: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), command], check=True)
    data = Path(os.environ.get("KAFKA_DATA_DIR", ".cache/kafka/data"))
    use_broker_credentials(data if data.is_absolute() else ROOT / data)


async def demo_order(bootstrap: str, services: ServiceProcesses) -> bool:
    """One order through the happy path; prints its timeline; True when it completed."""
    suffix = uuid.uuid4().hex[:6]
    buyer, seller, order_id = f"buyer-{suffix}", f"seller-{suffix}", f"order-{suffix}"
    price = Money(amount_minor=12999, currency="USD")
    async with EventWatcher(bootstrap) as watcher, Marketplace(bootstrap) as market:
        onboarding = Onboarding(
            market, watcher, Phone(services.sms_outbox), services.sealing_key(), payment_url=services.payment_url
        )
        person = Person.numbered(buyer, int(suffix, 16) % 10**8, full_name="Ana Li", email=f"{buyer}@example.com")
        console.print(f"[bold]{buyer}[/] registers, proves the phone with the texted code, binds the wallet")
        await onboarding.buyer(person)
        console.print(f"[bold]Demo order {order_id}[/]: {buyer} buys from {seller} for {price}")
        await market.publish(
            FundWallet(account_id=buyer, amount=Money(amount_minor=50000, currency="USD")),
            correlation_id=order_id,
            idempotency_key=f"topup-{suffix}",
        )
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer,
            seller_id=seller,
            amount=price,
            item="Bluetooth speaker",
        )
        await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
        try:
            await watcher.wait_for(_status(order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED), timeout=60)
            console.print("Funds are in escrow; the buyer confirms receipt.")
            await market.publish(
                ConfirmReceipt(order_id=order_id, buyer_id=buyer),
                correlation_id=order_id,
                idempotency_key=f"confirm-{order_id}",
            )
            final = await watcher.wait_for(_status(order_id, OrderStatus.COMPLETED, OrderStatus.CANCELLED), timeout=60)
        except TimeoutError:
            console.print("[red]The order did not finish within 60 s.[/]")
            final = None
        print_timeline(watcher.about(order_id))
    completed = (
        final is not None
        and isinstance(final.message, OrderStatusChanged)
        and (final.message.status is OrderStatus.COMPLETED)
    )
    console.print(
        f"[bold {'green' if completed else 'red'}]Order {order_id}: {'completed' if completed else 'NOT completed'}[/]"
    )
    return completed


def _status(order_id: str, *statuses: OrderStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    return matches


def print_timeline(seen: list[Seen]) -> None:
    if not seen:
        console.print("[red]no messages seen[/]")
        return
    start: datetime = seen[0].envelope.occurred_at
    table = Table(title="Order timeline (every message, in the order it was produced)")
    for column in ("+ms", "service", "message", "topic", "details"):
        table.add_column(column)
    for s in seen:
        elapsed = (s.envelope.occurred_at - start).total_seconds() * 1000
        details = ", ".join(f"{k}={v}" for k, v in _summary(s).items())
        table.add_row(
            f"{elapsed:8.1f}", s.envelope.source, s.envelope.type, s.topic.removeprefix("tradeguard."), details
        )
    console.print(table)


def _summary(seen: Seen) -> dict[str, str]:
    fields = seen.message.model_dump(mode="python")
    out: dict[str, str] = {}
    for key in ("status", "account_id", "amount", "balance", "reason", "code"):
        value = getattr(seen.message, key, None)
        if key in fields and value is not None:
            out[key] = str(value)
    return out


async def main(mode: str) -> int:
    console.rule("TradeGuard local stack")
    kafka("start")
    services = ServiceProcesses(BOOTSTRAP, sqlite_urls(ROOT / ".data"), ROOT / ".data" / "logs")
    try:
        await ensure_topics(BOOTSTRAP, ALL_TOPICS)
        services.start()
        console.print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in services.processes.items())}")
        await services.wait_ready()
        console.print("every service has joined its consumer group")
        completed = await demo_order(BOOTSTRAP, services)
        if mode == "run":
            console.print(f"Stack is running (Kafka on {BOOTSTRAP}, logs in .data/logs). Press Ctrl-C to stop.")
            await asyncio.Event().wait()
        return 0 if completed else 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print("stopping services...")
        services.stop()
        kafka("stop")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("run", "demo"))
    try:
        sys.exit(asyncio.run(main(parser.parse_args().mode)))
    except KeyboardInterrupt:
        sys.exit(0)
