"""Pure domain rules of each service: no Kafka, no database."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    CapturePayment,
    Checkout,
    CreditWallet,
    DeclineReason,
    FundsHeld,
    HoldFunds,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
    ReleaseFunds,
)
from contracts.money import Balance, max_balance_minor
from services.account.domain.wallets import BalanceLimitReached, MovementKind, Wallet, WalletRuleBroken
from services.notification.domain.rendering import format_money
from services.notification.domain.rules import NoticeKind, rules_for
from services.payment.domain.payments import Payment, PaymentConflict, PaymentStatus
from services.saga.domain import Order, OrderRuleBroken


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


class TestWallet:
    def test_top_up_then_debit_leaves_the_difference(self) -> None:
        wallet = Wallet.open("a", "USD")
        wallet.top_up(usd(1000), "t1")
        movement = wallet.debit(usd(250), "order-1")
        assert wallet.balance == usd(750)
        assert (movement.kind, movement.reference, movement.balance_after) == (MovementKind.DEBIT, "order-1", usd(750))

    def test_debit_beyond_the_balance_is_declined_and_changes_nothing(self) -> None:
        wallet = Wallet("a", usd(100))
        with pytest.raises(WalletRuleBroken) as caught:
            wallet.debit(usd(101), "order-1")
        assert caught.value.decline_reason is DeclineReason.INSUFFICIENT_FUNDS
        assert "1.00 USD" in caught.value.reason
        assert wallet.balance == usd(100)

    def test_other_currency_is_refused(self) -> None:
        with pytest.raises(WalletRuleBroken) as caught:
            Wallet("a", usd(100)).credit(Money(amount_minor=1, currency="CNY"), "order-1")
        assert caught.value.decline_reason is DeclineReason.CURRENCY_MISMATCH

    @given(st.lists(st.tuples(st.sampled_from(["top_up", "debit"]), st.integers(0, 10_000)), max_size=40))
    def test_balance_never_goes_negative(self, moves: list[tuple[str, int]]) -> None:
        wallet = Wallet.open("a", "USD")
        for kind, amount in moves:
            with contextlib.suppress(WalletRuleBroken):
                getattr(wallet, kind)(usd(amount), "ref")
            assert wallet.balance.amount_minor >= 0

    def test_a1_a_balance_never_passes_its_limit(self) -> None:
        wallet = Wallet("a", Balance(amount_minor=max_balance_minor("USD"), currency="USD"))
        with pytest.raises(BalanceLimitReached):
            wallet.top_up(usd(1), "t")
        assert wallet.balance.amount_minor == max_balance_minor("USD")


class TestPayment:
    def test_outcome_is_reached_once(self) -> None:
        payment = Payment("o1", "b", usd(10))
        assert payment.capture() is True
        assert payment.capture() is False
        assert payment.fail("insufficient_funds", "no") is False
        assert payment.status is PaymentStatus.CAPTURED

    def test_repeat_with_other_content_is_a_conflict(self) -> None:
        payment = Payment("o1", "b", usd(10))
        payment.check_same_request("b", usd(10))
        with pytest.raises(PaymentConflict):
            payment.check_same_request("b", usd(11))


def checkout(**overrides: object) -> Checkout:
    fields: dict[str, object] = {
        "order_id": "o1",
        "buyer_id": "b",
        "seller_id": "s",
        "amount": usd(999),
        "marketplace_id": "m",
    }
    return Checkout.model_validate(fields | overrides)


class TestOrderSaga:
    def test_happy_path_sends_each_command_once_and_completes(self) -> None:
        order, step = Order.place(checkout())
        sent = list(step.commands)
        for advance in (
            order.payment_captured,
            order.funds_held,
            lambda: order.confirm_receipt("b"),
            order.funds_released,
        ):
            sent += advance().commands
        assert [type(c) for c in sent] == [CapturePayment, HoldFunds, ReleaseFunds, CreditWallet]
        assert order.status is OrderStatus.COMPLETED

    def test_duplicate_and_late_events_change_nothing(self) -> None:
        order, _ = Order.place(checkout())
        order.payment_captured()
        order.funds_held()
        assert order.payment_captured().commands == []  # duplicate
        assert order.funds_released().commands == []  # out of order: nothing was released yet
        assert order.status is OrderStatus.IN_ESCROW

    def test_payment_failure_cancels_with_the_reason(self) -> None:
        order, _ = Order.place(checkout())
        step = order.payment_failed("insufficient_funds: top up")
        assert step.to_status is OrderStatus.CANCELLED
        assert order.reason == "insufficient_funds: top up"
        assert order.payment_captured().commands == []  # a late capture cannot revive it

    def test_receipt_before_escrow_or_by_someone_else_is_refused(self) -> None:
        order, _ = Order.place(checkout())
        with pytest.raises(OrderRuleBroken, match="payment_pending"):
            order.confirm_receipt("b")
        with pytest.raises(OrderRuleBroken) as caught:
            order.confirm_receipt("mallory")
        assert caught.value.code == "not_the_buyer"

    @pytest.mark.parametrize(
        ("overrides", "code"),
        [({"seller_id": "b"}, "invalid_order"), ({"amount": usd(0)}, "invalid_order")],
    )
    def test_invalid_checkout_is_refused(self, overrides: dict[str, object], code: str) -> None:
        with pytest.raises(OrderRuleBroken) as caught:
            Order.place(checkout(**overrides))
        assert caught.value.code == code

    def test_repeated_checkout_must_match(self) -> None:
        order, _ = Order.place(checkout())
        order.check_same_checkout(checkout())
        with pytest.raises(OrderRuleBroken, match="already exists"):
            order.check_same_checkout(checkout(amount=usd(1)))

    @given(st.lists(st.sampled_from(["captured", "failed", "held", "confirm", "released"]), max_size=30))
    def test_any_event_sequence_sends_each_command_at_most_once(self, events: list[str]) -> None:
        order, step = Order.place(checkout())
        sent = [type(c).__name__ for c in step.commands]
        actions = {
            "captured": order.payment_captured,
            "failed": lambda: order.payment_failed("x"),
            "held": order.funds_held,
            "confirm": lambda: order.confirm_receipt("b"),
            "released": order.funds_released,
        }
        for event in events:
            with contextlib.suppress(OrderRuleBroken):
                sent += [type(c).__name__ for c in actions[event]().commands]
        assert len(sent) == len(set(sent))
        if "ReleaseFunds" in sent:
            assert "HoldFunds" in sent  # never release what was not held


class TestNotices:
    def test_completed_order_notifies_the_buyer(self) -> None:
        event = OrderStatusChanged(
            order_id="o1", buyer_id="b", seller_id="s", amount=usd(12999), status=OrderStatus.COMPLETED
        )
        (rule,) = rules_for(event)
        assert (rule.kind, getattr(event, rule.recipient), rule.reference(event, None)) == (
            NoticeKind.ORDER_COMPLETED,
            "b",
            "o1",
        )

    def test_funds_held_tells_buyer_and_seller_the_exact_amount(self) -> None:
        event = FundsHeld(order_id="o1", buyer_id="b", seller_id="s", amount=usd(12999))
        assert {(r.kind, getattr(event, r.recipient)) for r in rules_for(event)} == {
            (NoticeKind.FUNDS_HELD, "b"),
            (NoticeKind.ORDER_PAID, "s"),
        }
        assert format_money(event.amount, "en") == "$129.99"

    def test_intermediate_statuses_are_not_notified(self) -> None:
        event = OrderStatusChanged(order_id="o1", buyer_id="b", seller_id="s", amount=usd(1), status=OrderStatus.PAID)
        assert rules_for(event) == ()
        assert rules_for(PaymentCaptured(order_id="o1", buyer_id="b", amount=usd(1))) != ()
