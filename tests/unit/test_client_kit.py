"""Issue 20: the integrator kit's pieces that need no broker: the connection profile, an order
handle's waiting rules, the record signature as the Node example makes it, the sandbox's helpers."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from contracts import (
    Checkout,
    CommandRejected,
    Money,
    OrderStatus,
    OrderStatusChanged,
    catalogue,
)
from contracts.envelope import envelope_for
from contracts.signatures import Verifier, load_principal
from scripts.sandbox.control import SandboxControl
from services.funding.vault import load_scripted_cards
from shared.clock import FileClock
from shared.signing import ensure_keyring
from tradeguard_client import CommandRefused, ConnectionProfile, OrderEnded, ProfileError, Sent
from tradeguard_client.client import Order, OrderEvent

ROOT = Path(__file__).resolve().parents[2]
PRICE = Money(amount_minor=1_000, currency="USD")


def profile_data(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {
        "bootstrap_servers": "127.0.0.1:1",
        "username": "marketplace-x",
        "password": "not-a-real-one",
        "signing_key_file": str(tmp_path / "marketplace.json"),
        "marketplace_id": "marketplace-1",
        **changes,
    }


def test_a_profile_is_read_from_its_file_and_never_shows_its_password(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile_data(tmp_path, unknown_field="ignored")))
    profile = ConnectionProfile.load(path)
    assert profile.kafka_options()["sasl_plain_password"] == "not-a-real-one"
    assert "not-a-real-one" not in repr(profile)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no connection profile at"),
        ("{not json", r"is not a connection profile \(JSON\)"),
        ('{"bootstrap_servers": ""}', "bootstrap_servers"),
    ],
)
def test_a_wrong_profile_says_what_is_wrong(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "profile.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ProfileError, match=says):
        ConnectionProfile.load(path)


def test_no_profile_at_all_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEGUARD_PROFILE", raising=False)
    with pytest.raises(ProfileError, match="TRADEGUARD_PROFILE"):
        ConnectionProfile.load()


# ---------------------------------------------------------------------- an order's handle


def changed(status: OrderStatus, reason: str | None = None, cause: uuid.UUID | None = None) -> OrderEvent:
    event = OrderStatusChanged(
        order_id="order-1", buyer_id="buyer-1", seller_id="seller-1", amount=PRICE, status=status, reason=reason
    )
    return OrderEvent(
        envelope_for(event, correlation_id="order-1", idempotency_key="k", source="saga", causation_id=cause)
    )


def checkout_sent() -> Sent:
    command = Checkout(order_id="order-1", buyer_id="buyer-1", seller_id="seller-1", amount=PRICE, marketplace_id="m")
    return Sent(
        envelope_for(command, correlation_id="order-1", idempotency_key="checkout:order-1", source="marketplace")
    )


def handle() -> Order:
    order = Order(client=None, order_id="order-1", buyer_id="buyer-1")  # type: ignore[arg-type]
    order.checkout = checkout_sent()
    return order


async def test_wait_for_returns_the_status_even_when_it_came_before_the_wait() -> None:
    order = handle()
    await order._arrived(changed(OrderStatus.PAYMENT_PENDING))
    await order._arrived(changed(OrderStatus.IN_ESCROW))
    assert (await order.wait_for(OrderStatus.IN_ESCROW, timeout=1)).status is OrderStatus.IN_ESCROW
    assert order.status is OrderStatus.IN_ESCROW


async def test_wait_for_wakes_when_the_status_arrives() -> None:
    order = handle()
    waiting = asyncio.create_task(order.wait_for(OrderStatus.COMPLETED, timeout=5))
    await asyncio.sleep(0)
    await order._arrived(changed(OrderStatus.COMPLETED))
    assert (await waiting).status is OrderStatus.COMPLETED


async def test_an_order_ending_elsewhere_says_so_instead_of_waiting_out_the_timeout() -> None:
    order = handle()
    await order._arrived(changed(OrderStatus.CANCELLED, reason="payment_window_closed"))
    with pytest.raises(OrderEnded, match=r"ended cancelled \(payment_window_closed\) while waiting for in_escrow"):
        await order.wait_for(OrderStatus.IN_ESCROW, timeout=5)


async def test_a_refused_checkout_raises_its_code_and_reason() -> None:
    order = handle()
    assert order.checkout is not None
    rejection = CommandRejected(
        subject_id="order-1",
        rejected_message_id=order.checkout.message_id,
        rejected_type="Checkout",
        code="marketplace_not_granted",
        reason="the buyer has not let marketplace-1 charge them",
    )
    envelope = envelope_for(
        rejection,
        correlation_id="order-1",
        idempotency_key="r",
        source="saga",
        causation_id=order.checkout.message_id,
    )
    await order._arrived(OrderEvent(envelope))
    with pytest.raises(CommandRefused, match="Checkout refused: marketplace_not_granted"):
        await order.wait_for(OrderStatus.IN_ESCROW, timeout=5)
    with pytest.raises(CommandRefused):
        await order.answer(order.checkout, timeout=1)


async def test_a_timeout_names_the_order_and_its_last_status() -> None:
    order = handle()
    await order._arrived(changed(OrderStatus.PAYMENT_PENDING))
    with pytest.raises(
        TimeoutError, match=r"order order-1 did not reach in_escrow within 0.05 s \(status: payment_pending\)"
    ):
        await order.wait_for(OrderStatus.IN_ESCROW, timeout=0.05)


async def test_events_end_after_a_final_status() -> None:
    order = handle()
    for status in (OrderStatus.PAYMENT_PENDING, OrderStatus.IN_ESCROW, OrderStatus.REFUNDED):
        await order._arrived(changed(status))
    seen = [e.message.status async for e in order.events(timeout=1) if isinstance(e.message, OrderStatusChanged)]
    assert seen == [OrderStatus.PAYMENT_PENDING, OrderStatus.IN_ESCROW, OrderStatus.REFUNDED]


# ---------------------------------------------------------------------- the Node example's signature


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_example_signs_a_record_the_way_the_contract_checks_it(tmp_path: Path) -> None:
    """The Node example's MAC, made with node:crypto from the key file and the AsyncAPI document,
    verifies as the saga verifies a marketplace's Checkout (contracts.signatures)."""
    keyring = ensure_keyring(tmp_path / "signing")
    script = (ROOT / "examples" / "integrator" / "node" / "checkout.mjs").read_text()
    functions = script[script.index("function consumersOf") : script.index("async function main")]
    value = b'{"type": "Checkout"}'
    program = f"""
import {{ createHmac }} from "node:crypto";
import {{ readFileSync }} from "node:fs";
import {{ join }} from "node:path";
const DOMAIN = Buffer.from("tradeguard-record-signature-v1\\0");
const contracts = {json.dumps(str(ROOT / "contracts"))};
const profile = {{ signing_key_file: {json.dumps(str(keyring / "marketplace.json"))} }};
{functions}
console.log(JSON.stringify(signatureHeaders("tradeguard.order.commands", "order-1", "Checkout", Buffer.from({json.dumps(value.decode())}))));
"""
    ran = subprocess.run(["node", "--input-type=module", "-e", program], capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    headers = [(name, text.encode()) for name, text in json.loads(ran.stdout).items()]
    saga = load_principal(keyring / "saga.json")[1]
    assert isinstance(saga, Verifier)
    signer = saga.check(
        headers, message_type="Checkout", topic="tradeguard.order.commands", key=b"order-1", value=value
    )
    assert signer == "marketplace"
    assert "saga" in catalogue.CONSUMERS["tradeguard.order.commands"]


# ---------------------------------------------------------------------- the sandbox's helpers


def helpers(tmp_path: Path) -> TestClient:
    control = SandboxControl(runner=None, state_dir=tmp_path, clock_file=tmp_path / "clock.json")  # type: ignore[arg-type]
    return TestClient(control.app())


def test_the_sandbox_lists_every_test_card_with_its_behaviour(tmp_path: Path) -> None:
    cards = helpers(tmp_path).get("/test-cards").json()["cards"]
    assert {c["number"] for c in cards} == set(load_scripted_cards())
    assert cards[0]["behaviour"] == "approve"
    assert {"decline_insufficient_funds", "timeout_once", "lost_answer"} <= {c["behaviour"] for c in cards}


def test_the_sandbox_clock_moves_every_service_forward(tmp_path: Path) -> None:
    client = helpers(tmp_path)
    before = datetime.fromisoformat(client.get("/clock").json()["now"])
    moved = datetime.fromisoformat(client.post("/clock/advance", json={"seconds": 86_400}).json()["now"])
    assert (moved - before).total_seconds() >= 86_400
    assert FileClock(tmp_path / "clock.json").now() >= moved
    assert moved.tzinfo is not None
    assert moved > datetime.now(UTC)


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/clock/advance", {"seconds": -1}, "seconds"),
        ("/clock/advance", {"minutes": 5}, "minutes"),
        ("/buyers", {"country": "USA"}, "country"),
        ("/buyers", {"wallet": {"amount_minor": 5, "currency": "XYZ"}}, "wallet.currency"),
    ],
)
def test_a_wrong_helper_request_is_answered_422_naming_the_field(
    tmp_path: Path, path: str, body: dict[str, Any], says: str
) -> None:
    answer = helpers(tmp_path).post(path, json=body)
    assert answer.status_code == 422
    assert says in json.dumps(answer.json()["fields"])


def test_a_helper_body_that_is_not_json_is_answered_422(tmp_path: Path) -> None:
    answer = helpers(tmp_path).post("/buyers", content=b"{nope")
    assert answer.status_code == 422
    assert answer.json() == {"error": "the body is not JSON"}


def test_the_documented_test_cards_are_the_simulators() -> None:
    """docs/integrate.md's table of test cards lists every card of the simulator's data file with
    its behaviour, and no other (the data file is the truth; the page must not drift from it)."""
    page = (ROOT / "docs" / "integrate.md").read_text()
    documented = set(re.findall(r"^\| `(\d{12,19})` \| \w+ \| `(\w+)` \|", page, flags=re.MULTILINE))
    assert documented == {(c.number, c.behaviour.value) for c in load_scripted_cards().values()}


def test_a_wrong_audit_parameter_is_answered_400_naming_it(tmp_path: Path) -> None:
    answer = helpers(tmp_path).get("/audit", params={"attempts": "many"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("attempts: a whole number from 1 to 30")
