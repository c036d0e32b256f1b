"""S6 end to end: `tradeguard orders` against the real stack (broker, five service processes).

An operator reads an order as the saga keeps it (`orders show`), lists what is stuck (`orders
stuck`), and acts: a paid order cannot be cancelled; a declined one is, once per action id; a
dispute the seller answered waits on an operator until `orders resolve` splits it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from contracts import (
    AnswerDispute,
    Checkout,
    DisputeAnswered,
    DisputeOpened,
    DisputeReason,
    FundWallet,
    Money,
    OpenDispute,
    OperatorActionTaken,
    OrderStatus,
    OrderStatusChanged,
)
from scripts.cli import app
from scripts.cli.orders import to_minor
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


async def placed_order(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, *, wallet: int, price: int, until: OrderStatus
) -> tuple[str, str, str]:
    """A fresh buyer with ``wallet`` cents checks out ``price`` cents from the wallet; returns
    (buyer, seller, order id) once the order reaches ``until``."""
    run = uuid.uuid4().hex[:10]
    buyer, seller, order_id = f"buyer-s6-{run}", f"seller-s6-{run}", f"order-s6-{run}"
    await onboarding.buyer(Person.numbered(buyer, int(run, 16) % 10**8))
    await market.publish(FundWallet(account_id=buyer, amount=usd(wallet)), correlation_id=buyer, idempotency_key=run)
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id=seller, amount=usd(price)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    await watcher.wait_for(reaches(order_id, until))
    return buyer, seller, order_id


async def answered_dispute(
    market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, price: int = 3_000
) -> tuple[str, str]:
    """An order of ``price`` cents in escrow whose buyer disputed it (damaged) and whose seller
    answered: it waits on an operator. (order id, dispute id)."""
    buyer, seller, order_id = await placed_order(
        market, watcher, onboarding, wallet=10_000, price=price, until=OrderStatus.IN_ESCROW
    )
    dispute_id = f"dispute-s6-{uuid.uuid4().hex[:8]}"
    opened = OpenDispute(order_id=order_id, dispute_id=dispute_id, buyer_id=buyer, reason=DisputeReason.DAMAGED)
    await market.publish(opened, correlation_id=order_id, idempotency_key=f"open-{dispute_id}")
    await watcher.wait_for(lambda s: isinstance(s.message, DisputeOpened) and s.message.dispute_id == dispute_id)
    answer = AnswerDispute(order_id=order_id, dispute_id=dispute_id, seller_id=seller, statement="It left intact")
    await market.publish(answer, correlation_id=order_id, idempotency_key=f"answer-{dispute_id}")
    await watcher.wait_for(lambda s: isinstance(s.message, DisputeAnswered) and s.message.dispute_id == dispute_id)
    return order_id, dispute_id


async def cli(*args: str, answer: str | None = None) -> Result:
    """The ``tradeguard`` command in a thread (it runs its own event loop); ``answer``: typed at its prompt."""
    runner = CliRunner()
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), input=answer))


def one_line(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines and table cells


async def shown(stack: ServiceProcesses, order_id: str) -> dict[str, Any]:
    result = await cli("orders", "show", order_id, "--state-dir", str(stack.state_dir), "--json")
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


# --- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("15.33", "USD", 1533), ("15", "USD", 1500), ("0.5", "USD", 50), ("1200", "JPY", 1200), ("1.234", "KWD", 1234)],
)
def test_s6_a_split_in_major_units_is_exactly_that_many_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("15.333", "USD"), ("15.3", "JPY"), ("1e3", "USD"), ("-5", "USD"), ("1,000", "USD"), ("NaN", "USD"), ("", "USD")],
)
def test_s6_a_split_that_is_not_an_exact_amount_is_refused(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match=r"amount|decimal"):
        to_minor(amount, currency)


# --- against the stack -------------------------------------------------------------------------


async def test_s6_show_an_order_in_escrow_and_refuse_to_cancel_it(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, kafka_bootstrap: str
) -> None:
    _, _, order_id = await placed_order(
        market, watcher, onboarding, wallet=10_000, price=2_500, until=OrderStatus.IN_ESCROW
    )
    state = ["--state-dir", str(stack.state_dir)]

    table = await cli("orders", "show", order_id, *state)

    assert table.exit_code == 0, table.output
    out = one_line(table.stdout)
    assert f"order {order_id}: in_escrow" in out
    assert "price 25.00 USD; still held 25.00 USD; returned 0.00 USD; refunded 0.00 USD" in out
    # The reminder falls 3 days before the auto-release (saga.toml), so it comes first.
    assert "next deadline: release_reminder at" in out
    assert "then auto_release at" in out
    assert "needs an operator: no" in out
    assert out.index("Checkout") < out.index("PaymentCaptured") < out.index("FundsHeld")
    assert "paid -> in_escrow" in out
    body = await shown(stack, order_id)
    assert body["status"] == "in_escrow"
    assert set(body["timers"]) == {"release_reminder", "auto_release"}

    refused = await cli(
        "orders", "cancel", order_id, "--operator", "ops-s6", "--reason", "buyer asked", "--yes",
        "-b", kafka_bootstrap, *state,
    )  # fmt: skip

    assert refused.exit_code == 1, refused.output
    assert "not_cancellable" in one_line(refused.output)
    assert (await shown(stack, order_id))["status"] == "in_escrow"


async def test_s6_a_declined_order_is_cancelled_by_an_operator_once_per_action_id(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, kafka_bootstrap: str
) -> None:
    # A wallet of 5.00 USD for a 25.00 USD order: declined, the order waits for another payment.
    _, _, order_id = await placed_order(
        market, watcher, onboarding, wallet=500, price=2_500, until=OrderStatus.PAYMENT_FAILED
    )
    action_id = f"act-{uuid.uuid4().hex[:8]}"
    cancel = [
        "orders", "cancel", order_id, "--operator", "ops-s6", "--reason", "buyer gave up", "--action-id", action_id,
        "-b", kafka_bootstrap, "--state-dir", str(stack.state_dir),
    ]  # fmt: skip

    # Asked first; "no" sends nothing.
    declined = await cli(*cancel, answer="n\n")
    assert declined.exit_code == 1, declined.output
    assert "Aborted" in declined.output
    assert (await shown(stack, order_id))["status"] == "payment_failed"

    done = await cli(*cancel, "--yes")

    assert done.exit_code == 0, done.output
    out = one_line(done.stdout)
    assert f"carried out: cancel {action_id} by ops-s6" in out
    assert f"order {order_id} is now cancelled (cancelled_by_operator" in out
    taken = await watcher.wait_for(
        lambda s: isinstance(s.message, OperatorActionTaken) and s.message.action_id == action_id
    )
    assert taken.message.order_id == order_id  # type: ignore[attr-defined]
    cancelled = await shown(stack, order_id)
    assert cancelled["status"] == "cancelled"
    assert cancelled["reason"].startswith("cancelled_by_operator")
    assert cancelled["timers"] == {}

    again = await cli(*cancel, "--yes")

    assert again.exit_code == 0, again.output
    assert "nothing changed" in one_line(again.stdout)
    # The saga handles an order's commands in order: once a later one is answered, the repeat was handled.
    after = await cli(
        "orders", "retry", order_id, "--operator", "ops-s6", "--reason", "check", "--yes",
        "-b", kafka_bootstrap, "--state-dir", str(stack.state_dir),
    )  # fmt: skip
    assert after.exit_code == 1, after.output
    assert "nothing_to_do" in one_line(after.output)
    assert [
        s for s in watcher.seen if isinstance(s.message, OperatorActionTaken) and s.message.order_id == order_id
    ] == [taken]
    now = await shown(stack, order_id)
    assert (now["status"], now["reason"]) == ("cancelled", cancelled["reason"])
    assert [row["to_status"] for row in now["audit"]].count("cancelled") == 1


async def test_s6_stuck_lists_an_answered_dispute_until_an_operator_splits_it(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, onboarding: Onboarding, kafka_bootstrap: str
) -> None:
    order_id, dispute_id = await answered_dispute(market, watcher, onboarding)
    state = ["--state-dir", str(stack.state_dir)]

    listed = await cli("orders", "stuck", "--reason", "waiting_on_operator", *state)

    assert listed.exit_code == 0, listed.output
    out = one_line(listed.stdout)
    assert "stuck orders by reason" in out
    assert order_id in out
    counted = await cli("orders", "stuck", "--json", *state)
    body = json.loads(counted.stdout)
    assert set(body["counts"]) == {"waiting_on_operator", "compensating", "retrying", "no_progress"}
    assert body["counts"]["waiting_on_operator"] >= 1
    assert {o["order_id"]: o["stuck"] for o in body["orders"]}[order_id] == "waiting_on_operator"
    show = await cli("orders", "show", order_id, *state)
    assert f"dispute {dispute_id}: answered (damaged)" in one_line(show.stdout)
    # The timeline (G3) ends saying so too.
    timeline = await cli("timeline", order_id, "-b", kafka_bootstrap, *state)
    needs = f"needs an operator: dispute {dispute_id} answered by the seller: an operator decides"
    assert needs in one_line(timeline.stdout)

    resolve = [
        "orders", "resolve", order_id, dispute_id, "--operator", "ops-s6", "--reason", "photos reviewed",
        "--yes", "-b", kafka_bootstrap, *state,
    ]  # fmt: skip
    inexact = await cli(*resolve, "--split", "15.333")
    assert inexact.exit_code == 2, inexact.output  # refused before anything is sent
    both = await cli(*resolve, "--split", "15.33", "--release")
    assert both.exit_code == 2, both.output

    split = await cli(*resolve, "--split", "15.33")

    assert split.exit_code == 0, split.output
    assert "15.33 USD back to the buyer, 14.67 USD to the seller" in one_line(split.stdout)
    after = await shown(stack, order_id)
    assert after["dispute"]["resolution"] == "split"
    assert after["dispute"]["refund"] == usd(1533).model_dump()
    assert after["attention"] is None
    still = json.loads((await cli("orders", "stuck", "--reason", "waiting_on_operator", "--json", *state)).stdout)
    assert order_id not in {o["order_id"] for o in still["orders"]}
