"""`make run` / `make demo`: local Kafka, the five services as processes, and a demo order.

python -m scripts.devstack run    # demo, then keep everything up until Ctrl-C
python -m scripts.devstack demo   # demo, then stop everything; exit 0 iff the order completed

SIGINT or SIGTERM, to this process alone (``kill PID``) or to its whole group (Ctrl-C), at any
moment stops every service and simulator (SIGTERM, then SIGKILL after 15 s) and the Kafka
broker this run started; a broker that was running before it is someone else's and is left
alone. `run` then exits 0; an interrupted `demo` 128 + the signal's number.

Environment: ``KAFKA_DATA_DIR``, ``KAFKA_PORT`` and ``KAFKA_CONTROLLER_PORT`` as scripts/kafka.sh
reads them (the bootstrap servers are ``127.0.0.1:$KAFKA_PORT`` unless
``KAFKA_BOOTSTRAP_SERVERS`` says otherwise); ``TRADEGUARD_STATE_DIR``: the stack's state folder
(default ``.data``), so a second stack (a test's) keeps its own. Each process's log
(``<state>/logs/<name>.log``) rotates by size: ``TRADEGUARD_LOG_MAX_BYTES`` (10 MiB; 0: never) and
``TRADEGUARD_LOG_BACKUPS`` (5 old files), see scripts/log_rotation.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

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
from scripts.console.app import serve
from scripts.console.settings import settings_for
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person, Phone
from scripts.stack import DEFAULT_STATE_DIR, ROOT, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics
from shared.broker_security import use_broker_credentials

console = Console() if sys.stdout.isatty() else Console(width=160)
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '19092')}"
STATE_DIR_VARIABLE = "TRADEGUARD_STATE_DIR"
KAFKA_SH = ROOT / "scripts" / "kafka.sh"


def state_dir() -> Path:
    """The stack's state folder: ``TRADEGUARD_STATE_DIR``, else ``.data``."""
    named = os.environ.get(STATE_DIR_VARIABLE)
    return Path(named).resolve() if named else DEFAULT_STATE_DIR


def kafka_data_dir() -> Path:
    """The broker's folder as scripts/kafka.sh finds it (a relative one is the repo root's)."""
    data = Path(os.environ.get("KAFKA_DATA_DIR", ".cache/kafka/data"))
    return data if data.is_absolute() else ROOT / data


class LocalBroker:
    """The broker scripts/kafka.sh runs; :meth:`stop` stops it only if :meth:`start` started it."""

    def __init__(self) -> None:
        self.ours = False

    async def start(self) -> None:
        # Decided before starting, so a start cut short by a signal still stops what it began.
        self.ours = await _kafka_sh("status", quiet=True) != 0
        if await _kafka_sh("start") != 0:
            raise RuntimeError("scripts/kafka.sh start failed (its output is above)")
        use_broker_credentials(kafka_data_dir())

    def stop(self) -> None:
        if not self.ours:
            console.print("leaving the Kafka broker running: it was running before this stack started")
            return
        console.print("stopping the Kafka broker...")
        # In a session of its own: a second Ctrl-C must not cut the stop short.
        subprocess.run(["bash", str(KAFKA_SH), "stop"], check=False, start_new_session=True)
        self.ours = False


async def _kafka_sh(command: str, *, quiet: bool = False) -> int:
    """scripts/kafka.sh ``command``; its exit code. In a session of its own, so a terminal's
    Ctrl-C does not cut it short; cancelled, it is stopped with whatever it started."""
    output = asyncio.subprocess.DEVNULL if quiet else None
    process = await asyncio.create_subprocess_exec(
        "bash", str(KAFKA_SH), command, stdout=output, stderr=output, start_new_session=True
    )
    try:
        return await process.wait()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the script, the broker it launched, its set-up
        await process.wait()
        raise


class CancelOnSignal:
    """SIGINT and SIGTERM cancel the task that made this (its ``finally`` stops the stack); the
    first is kept in :attr:`received`, later ones (during the clean-up) change nothing."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self.received is None and self._task is not None:
            self.received = signum
            console.print(f"{signum.name}: stopping the stack...")
            self._task.cancel()


async def demo_order(bootstrap: str, services: ServiceProcesses, console_url: str | None = None) -> bool:
    """One order through the happy path; prints its timeline (and its page in the operator
    console, when one is served); True when it completed."""
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
        if console_url is not None:
            console.print(f"follow it in the operator console: {console_url}/orders/{order_id}")
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
    signals = CancelOnSignal()
    console.rule("TradeGuard local stack")
    state = state_dir()
    broker = LocalBroker()
    services = ServiceProcesses(BOOTSTRAP, sqlite_urls(state), state / "logs")
    try:
        await broker.start()
        await ensure_topics(BOOTSTRAP, ALL_TOPICS)
        services.start()
        console.print(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in services.processes.items())}")
        await services.wait_ready()
        console.print("every service has joined its consumer group")
        console_url = await start_console(state) if mode == "run" else None
        completed = await demo_order(BOOTSTRAP, services, console_url)
        if mode == "run":
            console.print(
                f"Stack is running (Kafka on {BOOTSTRAP}, logs in {state / 'logs'}, {_rotation(services)}). "
                "Press Ctrl-C to stop."
            )
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        return 0 if mode == "run" else 128 + signals.received
    else:
        return 0 if completed else 1
    finally:
        await stop_background()  # the console first: it answers from the services
        # Blocking on purpose: a signal now only queues, so it cannot cut the clean-up short.
        console.print("stopping services...")
        services.stop()
        broker.stop()


async def start_console(state: Path) -> str:
    """Serve the operator console beside the stack (on this loop, until the run ends); its address."""
    settings = settings_for(state)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, BOOTSTRAP, listening.set_result))
    _background.add(task)
    waiting: set[asyncio.Future[Any]] = {listening, task}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if task in done:  # it stopped before listening: the port is taken, say so and run without it
        task.result()
    url = listening.result()
    console.print(
        f"[bold]Operator console[/]: {url} (sign in as {settings.operator_id}; the password is in "
        f"{settings.password_file})"
    )
    return url


_background: set[asyncio.Task[None]] = set()
"""Tasks that live as long as the run (a reference keeps them from being collected)."""


async def stop_background() -> None:
    for task in _background:
        task.cancel()
    await asyncio.gather(*_background, return_exceptions=True)
    _background.clear()


def _rotation(services: ServiceProcesses) -> str:
    rotation = services.log_rotation
    if rotation is None:
        return "not rotated (TRADEGUARD_LOG_MAX_BYTES=0)"
    return f"each rotated at {rotation.max_bytes / 2**20:g} MiB, {rotation.backups} old files kept"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("run", "demo"))
    try:
        sys.exit(asyncio.run(main(parser.parse_args().mode)))
    except KeyboardInterrupt:
        sys.exit(0)
