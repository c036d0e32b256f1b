"""Pure domain rules of each service: no Kafka, no database."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    DeclineReason,
    FundsHeld,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
)
from contracts.money import Balance, max_balance_minor
from services.account.domain.wallets import BalanceLimitReached, MovementKind, Wallet, WalletRuleBroken
from services.notification.domain.rendering import format_money
from services.notification.domain.rules import NoticeKind, rules_for
from services.payment.domain.payments import Payment, PaymentConflict, PaymentStatus


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
