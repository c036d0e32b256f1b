"""S5 faults: the saga coordinator SIGKILLed at the worst moments finishes every order once.

Two moments (shared/crash.py): after a batch was handled but before it was stored (the
broker redelivers it to the restarted process), and after it was stored but before its
outgoing commands were published (the restarted outbox relay publishes them). Either way
the order completes, each step taken once (one message id per command and per status), and
the books audit finds nothing wrong.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from contracts import (
    Checkout,
    ConfirmReceipt,
    FundWallet,
    HoldFunds,
    OrderStatus,
    OrderStatusChanged,
    ReleaseFunds,
)
from scripts.audit import audit_stack
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import FAST_PASSWORD_HASHING, ServiceProcesses
from shared.crash import CRASH_AT, CRASH_MARK
from tests.support.eventually import eventually
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


async def restart_saga(stack: ServiceProcesses, env: dict[str, str]) -> None:
    stack.extra_env = {**FAST_PASSWORD_HASHING, **env}
    stack.stop_one("saga")
    stack.layout.ready_file("saga").unlink(missing_ok=True)
    stack.start_one("saga")
    await stack.wait_ready(timeout=90)


@pytest.mark.parametrize(
    "crash",
    [
        "saga:before_store:PaymentCaptured",
        "saga:after_store:PaymentCaptured",
        pytest.param("saga:after_store:ConfirmReceipt", marks=pytest.mark.long),
    ],
)
async def test_s5_a_saga_killed_mid_step_finishes_the_order_once(  # noqa: PLR0917 - pytest passes fixtures by position
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    tmp_path: Path,
    crash: str,
) -> None:
    mark = tmp_path / "crashed"
    await restart_saga(stack, {CRASH_AT: crash, CRASH_MARK: str(mark)})
    run = uuid.uuid4().hex[:8]
    buyer, order_id = f"buyer-{run}", f"order-{run}"
    await onboarding.buyer(Person.numbered(buyer, int(run, 16) % 10**8))
    await market.publish(FundWallet(account_id=buyer, amount=usd(5000)), correlation_id=order_id, idempotency_key=run)
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID, order_id=order_id, buyer_id=buyer, seller_id=f"seller-{run}", amount=usd(1500)
    )
    await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{run}")
    if crash.endswith("ConfirmReceipt"):
        await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=60)
        confirm = ConfirmReceipt(order_id=order_id, buyer_id=buyer)
        await market.publish(confirm, correlation_id=order_id, idempotency_key=f"confirm-{run}")

    saga = stack.processes["saga"]

    async def dead() -> bool:
        return mark.exists() and saga.poll() is not None

    await eventually(dead, bool, timeout=60)
    assert saga.returncode == -9  # SIGKILL: no graceful stop, no offsets committed, nothing flushed
    await restart_saga(stack, {CRASH_AT: crash, CRASH_MARK: str(mark)})  # the mark is there: no second crash

    if not crash.endswith("ConfirmReceipt"):
        await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=60)
        confirm = ConfirmReceipt(order_id=order_id, buyer_id=buyer)
        await market.publish(confirm, correlation_id=order_id, idempotency_key=f"confirm-{run}")
    await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=60)

    seen = watcher.about(order_id)
    # A record published just before the kill may be published again with the same message id
    # (consumers deduplicate on it); a step taken twice would carry a second message id.
    for kind in (HoldFunds, ReleaseFunds):
        ids = {s.envelope.message_id for s in seen if isinstance(s.message, kind)}
        assert len(ids) == 1, f"{kind.__name__} sent {len(ids)} times"
    per_status: dict[OrderStatus, set[object]] = {}
    for s in seen:
        if isinstance(s.message, OrderStatusChanged):
            per_status.setdefault(s.message.status, set()).add(s.envelope.message_id)
    assert all(len(ids) == 1 for ids in per_status.values()), per_status
    report = await audit_stack(stack.state_dir, attempts=5)
    assert report.ok, report.summary()
