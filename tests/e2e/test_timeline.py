"""G3 (terminal) end to end: an order through the real stack (broker, five service processes), then
`tradeguard timeline ORDER_ID` lists its messages across the services in order, with the order's
status now and its next deadline; and E4's `tradeguard settlements` shows what escrow released to the seller that day."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from contracts import Checkout, ConfirmReceipt, FundsReleased, FundWallet, Money, OrderStatus, OrderStatusChanged
from scripts.cli import app
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import ServiceProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def reaches(order_id: str, status: OrderStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status is status

    return matches


def released(order_id: str) -> Callable[[Seen], bool]:
    return lambda seen: isinstance(seen.message, FundsReleased) and seen.message.order_id == order_id


async def order_in_escrow(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, seller: str, minor: int
) -> tuple[str, str]:
    """A fresh buyer pays ``minor`` cents from the wallet; (buyer, order id) once it is in escrow."""
    n = uuid.uuid4().int % 10**8
    buyer = Person.numbered(f"buyer-g3-{n}", n)
    await onboarding.buyer(buyer)
    await market.publish(
        FundWallet(account_id=buyer.account_id, amount=usd(10_000)),
        correlation_id=buyer.account_id,
        idempotency_key=f"fund-{n}",
    )
    order_id = f"order-g3-{uuid.uuid4().hex[:10]}"
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer.account_id, seller_id=seller, amount=usd(minor)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await watcher.wait_for(reaches(order_id, OrderStatus.IN_ESCROW))
    return buyer.account_id, order_id


async def completed_order(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, seller: str, minor: int
) -> tuple[str, Seen]:
    """A fresh buyer pays ``minor`` cents from the wallet and confirms receipt: the order completes.
    Returns the order id and escrow's FundsReleased."""
    buyer, order_id = await order_in_escrow(market, watcher, onboarding, seller, minor)
    await market.publish(
        ConfirmReceipt(order_id=order_id, buyer_id=buyer),
        correlation_id=order_id,
        idempotency_key=f"confirm-{order_id}",
    )
    await watcher.wait_for(reaches(order_id, OrderStatus.COMPLETED))
    return order_id, await watcher.wait_for(released(order_id))


async def cli(*args: str) -> Result:
    """The ``tradeguard`` command in a thread: it runs its own event loop, and the test's is busy."""
    runner = CliRunner()
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args)))


def is_subsequence(wanted: list[Any], items: list[Any]) -> bool:
    remaining = iter(items)
    return all(any(item == w for item in remaining) for w in wanted)


async def test_g3_timeline_lists_one_orders_messages_across_the_services_in_order(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    kafka_bootstrap: str,
) -> None:
    order_id, _ = await completed_order(market, watcher, onboarding, f"seller-g3-{uuid.uuid4().hex[:8]}", 2_500)
    args = ["timeline", order_id, "--state-dir", str(stack.state_dir), "--bootstrap-servers", kafka_bootstrap]

    as_json = await cli(*args, "--json")

    assert as_json.exit_code == 0, as_json.output
    *messages, status = [json.loads(line) for line in as_json.stdout.splitlines()]
    steps = [(m["service"], m["type"]) for m in messages]
    assert is_subsequence(
        [
            ("marketplace", "Checkout"),
            ("saga", "CapturePayment"),
            ("payment", "PaymentCaptured"),
            ("saga", "HoldFunds"),
            ("escrow", "FundsHeld"),
            ("marketplace", "ConfirmReceipt"),
            ("saga", "ReleaseFunds"),
            ("escrow", "FundsReleased"),
        ],
        steps,
    ), steps
    statuses = [m["what_changed"] for m in messages if m["type"] == "OrderStatusChanged"]
    assert [s.split(",")[0] for s in statuses] == [
        "status=payment_pending",
        "status=paid",
        "status=in_escrow",
        "status=releasing",
        "status=completed",
    ], statuses
    # Nothing about another order, each message once, and each on its own topic.
    assert len({m["message_id"] for m in messages}) == len(messages)
    assert {m["topic"] for m in messages if m["type"] == "FundsHeld"} == {"tradeguard.escrow.events"}
    assert status == {
        "order_id": order_id,
        "status": "completed",
        "reason": None,
        "next_deadline": None,
        "next_deadline_at": None,
        "attention": None,
        "status_from": "the saga",
    }

    table = await cli(*args)

    assert table.exit_code == 0, table.output
    out = table.stdout
    assert out.index("Checkout") < out.index("PaymentCaptured") < out.index("FundsHeld") < out.index("FundsReleased")
    assert "tradeguard.payment.events" in out
    assert "status now: completed, as told by the saga" in out


async def test_g3_timeline_ends_with_the_next_deadline_even_when_the_saga_cannot_be_asked(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    kafka_bootstrap: str,
) -> None:
    _, order_id = await order_in_escrow(market, watcher, onboarding, f"seller-g3-{uuid.uuid4().hex[:8]}", 1_200)
    args = ["timeline", order_id, "--bootstrap-servers", kafka_bootstrap]
    shown = await cli("orders", "show", order_id, "--state-dir", str(stack.state_dir), "--json")
    timers = json.loads(shown.stdout)["timers"]
    # The reminder falls 3 days before the auto-release (saga.toml): it is the next deadline.
    reminder = datetime.fromisoformat(timers["release_reminder"])

    table = await cli(*args, "--state-dir", str(stack.state_dir))

    assert table.exit_code == 0, table.output
    out = " ".join(table.stdout.split())
    assert "status now: in_escrow, as told by the saga" in out
    assert f"next deadline: release_reminder at {reminder.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in out
    assert "needs an operator" not in out
    as_json = await cli(*args, "--state-dir", str(stack.state_dir), "--json")
    told = json.loads(as_json.stdout.splitlines()[-1])
    assert (told["next_deadline"], datetime.fromisoformat(told["next_deadline_at"])) == ("release_reminder", reminder)

    # A state folder with no stack in it: the saga cannot be asked, the last OrderStatusChanged still tells.
    elsewhere = stack.state_dir / "no-stack-here"
    elsewhere.mkdir(exist_ok=True)
    away = await cli(*args, "--state-dir", str(elsewhere), "--json")

    assert away.exit_code == 0, away.output
    status = json.loads(away.stdout.splitlines()[-1])
    assert status["status_from"].startswith("the last OrderStatusChanged (")
    assert "endpoints.json not found" in status["status_from"]
    assert (status["status"], status["next_deadline"]) == ("in_escrow", "release_reminder")
    assert datetime.fromisoformat(status["next_deadline_at"]) == reminder


def test_g3_timeline_of_an_order_no_message_names_exits_1(stack: ServiceProcesses, kafka_bootstrap: str) -> None:
    unknown = f"order-g3-never-{uuid.uuid4().hex[:8]}"

    done = CliRunner().invoke(
        app, ["timeline", unknown, "--state-dir", str(stack.state_dir), "--bootstrap-servers", kafka_bootstrap]
    )

    assert done.exit_code == 1, done.output
    assert f"no message about order '{unknown}'" in done.output


async def test_e4_tradeguard_settlements_shows_the_sellers_release_and_total(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding
) -> None:
    seller = f"seller-e4-{uuid.uuid4().hex[:8]}"
    order_id, release = await completed_order(market, watcher, onboarding, seller, 3_150)
    day = release.envelope.occurred_at.astimezone(UTC).date().isoformat()  # escrow's clock, as it books it

    shown = await cli("settlements", seller, "--day", day, "--state-dir", str(stack.state_dir))

    assert shown.exit_code == 0, shown.output
    title = " ".join(shown.stdout.split())  # rich wraps a title wider than its table
    assert f"settlements of {seller} on {day}: 1 released, {usd(3_150)}" in title
    assert order_id in shown.stdout
    as_json = await cli("settlements", seller, "--day", day, "--state-dir", str(stack.state_dir), "--json")
    body = json.loads(as_json.stdout)
    assert (body["count"], body["totals"]) == (1, [usd(3_150).model_dump()])
    assert [r["order_id"] for r in body["releases"]] == [order_id]
