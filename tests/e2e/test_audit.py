"""G1 end to end: orders through the real stack (broker, five service processes), then the books
audit reads every service's read API and finds the books balanced; the saga's and payment's
read routes it relies on answer what they promise."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from contracts import Checkout, ConfirmReceipt, FundWallet, Money, OrderStatus, OrderStatusChanged
from scripts.audit import audit_stack
from scripts.cli import app
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def reaches(order_id: str, *statuses: OrderStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    return matches


async def place(market: Marketplace, watcher: EventWatcher, buyer: str, seller: str, minor: int) -> str:
    order_id = f"order-g1-{uuid.uuid4().hex[:10]}"
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id=seller, amount=usd(minor)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await watcher.wait_for(reaches(order_id, OrderStatus.IN_ESCROW, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED))
    return order_id


async def test_g1_orders_through_the_stack_leave_books_the_audit_finds_balanced(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    n = uuid.uuid4().int % 10**8
    buyer = Person.numbered(f"buyer-g1-{n}", n)
    seller = f"seller-g1-{n}"
    await onboarding.buyer(buyer)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(10_000)),
        correlation_id=buyer.account_id,
        idempotency_key=f"fund-{n}",
    )
    # One order completes, one stays in escrow, one is declined (more than the wallet has left).
    completed = await place(market, watcher, buyer.account_id, seller, 2_500)
    await market.publish(
        ConfirmReceipt(order_id=completed, buyer_id=buyer.account_id),
        correlation_id=completed,
        idempotency_key=f"confirm-{completed}",
    )
    await watcher.wait_for(reaches(completed, OrderStatus.COMPLETED))
    held = await place(market, watcher, buyer.account_id, seller, 4_000)
    declined = await place(market, watcher, buyer.account_id, seller, 9_000)

    report = await audit_stack(stack.state_dir, attempts=3)

    assert report.ok, report.summary()
    assert report.figures["captured payments"] >= 2
    assert any(t.currency == "USD" and t.ledger_minor == t.orders_minor >= 4_000 for t in report.escrow)

    async with httpx.AsyncClient(timeout=10) as client:
        # The saga's read API: every order, filtered by status, paged.
        in_escrow = await client.get(f"{stack.saga_url}/orders", params={"status": "in_escrow", "per_page": 100})
        declined_ones = await client.get(
            f"{stack.saga_url}/orders", params={"status": "payment_failed", "per_page": 100}
        )
        unknown = await client.get(f"{stack.saga_url}/orders", params={"status": "lost"})
        # The payment's read route for the audit: every account's payments in one status.
        captured = await client.get(f"{stack.payment_url}/payments", params={"status": "captured", "per_page": 100})

    assert in_escrow.status_code == 200
    mine = {o["order_id"]: o for o in in_escrow.json()["orders"] if o["buyer_id"] == buyer.account_id}
    assert list(mine) == [held]
    assert (mine[held]["amount"], mine[held]["still_held"], mine[held]["reason"]) == (
        usd(4_000).model_dump(),
        usd(4_000).model_dump(),
        None,
    )
    reasons = {o["order_id"]: o["reason"] or "" for o in declined_ones.json()["orders"]}
    assert "insufficient_funds" in reasons[declined], reasons
    assert unknown.status_code == 400
    assert captured.status_code == 200
    orders = {p["order_id"] for p in captured.json()["payments"]}
    assert {completed, held} <= orders
    assert declined not in orders
    PLACED.update(completed=completed, held=held, declined=declined)


PLACED: dict[str, str] = {}
"""The first test's orders, which the tampering test below breaks the books of."""


def test_g1_tradeguard_audit_over_the_stack_exits_0(stack: ServiceProcesses) -> None:
    """The CLI over the same stack (the orders of the test above, and any other's): the books balance."""
    done = CliRunner().invoke(app, ["audit", "--state-dir", str(stack.state_dir)])

    assert done.exit_code == 0, done.stdout
    assert "the books balance" in done.stdout


async def restart(stack: ServiceProcesses, *names: str) -> None:
    for name in names:
        stack.stop_one(name)
        stack.layout.ready_file(name).unlink(missing_ok=True)
        stack.start_one(name)
    await stack.wait_ready(timeout=90)


def database_files(service_db: dict[str, str], name: str) -> list[Path]:
    """A stopped service's SQLite file with its WAL and shared-memory files."""
    main = service_db[name].removeprefix("sqlite+aiosqlite:///")
    return [Path(f"{main}{suffix}") for suffix in ("", "-wal", "-shm")]


def copy_aside(files: list[Path], folder: Path) -> None:
    for file in files:
        if file.exists():
            shutil.copy2(file, folder / file.name)


def put_back(files: list[Path], folder: Path) -> None:
    for file in files:
        file.unlink(missing_ok=True)
        if (copy := folder / file.name).exists():
            shutil.copy2(copy, file)


def tamper(database: Path, statement: str, *parameters: str) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute(statement, parameters).rowcount


async def test_g1_the_audit_names_each_break_of_real_databases_tampered_with(
    stack: ServiceProcesses, service_db: dict[str, str], tmp_path: Path
) -> None:
    """The first test's books, broken on purpose in the services' own SQLite files (each copied
    aside first): the declined order's payment marked captured, and the held order's transfers
    taken out of the ledger. The audit names both breaks; with the copies put back, it is clean."""
    assert PLACED, "runs after the first test of this module, on its orders"
    touched = ("payment", "escrow")
    for name in touched:
        stack.stop_one(name)
        copy_aside(database_files(service_db, name), tmp_path)
    payment, escrow = database_files(service_db, "payment")[0], database_files(service_db, "escrow")[0]
    marked = tamper(payment, "UPDATE payments SET status = 'captured' WHERE order_id = ?", PLACED["declined"])
    gone = tamper(escrow, "DELETE FROM ledger_transfers WHERE order_id = ?", PLACED["held"])
    assert (marked, gone >= 1) == (1, True)
    await restart(stack, *touched)

    broken = await audit_stack(stack.state_dir, attempts=3)

    named = [str(b) for b in broken.breaks]
    assert not broken.ok
    assert any(n.startswith("captured_not_accounted") and PLACED["declined"] in n for n in named), named
    assert any(PLACED["held"] in n for n in named), named
    assert not any(PLACED["completed"] in n for n in named), named  # untouched: not named

    for name in touched:
        stack.stop_one(name)
        put_back(database_files(service_db, name), tmp_path)
    await restart(stack, *touched)
    mended = await audit_stack(stack.state_dir, attempts=3)
    assert mended.ok, mended.summary()
