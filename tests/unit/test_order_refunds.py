"""P6 refunds through the saga and escrow, as pure rules: no Kafka, no database.

A refund is taken out of the escrow hold first (ReturnFunds -> FundsReturned), then paid back
to the buyer by the payment service (RefundPayment -> PaymentRefunded); the order stays in
escrow with less held until the last unit of its price is back, and then it is refunded.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    Checkout,
    CreditWallet,
    Money,
    OrderStatus,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import Order, OrderRuleBroken, Refund, RefundStatus, Step

PRICE = 4250


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def in_escrow(price: int = PRICE) -> Order:
    """An order paid and held in escrow."""
    checkout = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(price), marketplace_id="m")
    order, _ = Order.place(checkout)
    order.payment_captured()
    order.funds_held()
    assert order.status is OrderStatus.IN_ESCROW
    return order


def refund_fully(order: Order, refund_id: str, amount: Money) -> tuple[Refund, list[Step]]:
    """One refund through every step the saga takes: requested, returned by escrow, refunded."""
    refund, requested = order.request_refund(refund_id, amount, "damaged")
    return refund, [requested, order.funds_returned(refund), order.payment_refunded(refund)]


def refused(order: Order, amount: Money, refund_id: str = "r-x") -> OrderRuleBroken:
    with pytest.raises(OrderRuleBroken) as caught:
        order.request_refund(refund_id, amount)
    return caught.value


class TestSagaRefunds:
    def test_p6_a_refund_goes_through_escrow_then_the_payment(self) -> None:
        order = in_escrow()

        # The marketplace asks for 10.00 USD back: escrow gives that part of the hold back first.
        refund, requested = order.request_refund("r1", usd(1000), "scratched")
        assert requested.commands == [ReturnFunds(order_id="o1", refund_id="r1", amount=usd(1000))]
        assert (refund.status, order.refunding) == (RefundStatus.RETURNING, "r1")
        # Escrow answers: the payment pays it back to the buyer's sources.
        returned = order.funds_returned(refund)
        assert returned.commands == [RefundPayment(order_id="o1", refund_id="r1", amount=usd(1000), reason="scratched")]
        assert (refund.status, order.returned, order.still_held) == (RefundStatus.REFUNDING, usd(1000), usd(3250))
        # The payment answers: the order stays in escrow, its refunded total announced.
        done = order.payment_refunded(refund)
        assert (done.to_status, done.changed, done.announce) == (OrderStatus.IN_ESCROW, False, "refunded:r1")
        assert (refund.status, order.refunding, order.refunded) == (RefundStatus.REFUNDED, None, usd(1000))

    def test_p6_partials_up_to_the_price_refund_the_order(self) -> None:
        order = in_escrow()
        for refund_id, minor in (("r1", 1000), ("r2", 750)):
            _, steps = refund_fully(order, refund_id, usd(minor))
            assert steps[-1].to_status is OrderStatus.IN_ESCROW
        # The rest of the price: the last unit back makes the order refunded (terminal).
        _, steps = refund_fully(order, "r3", usd(PRICE - 1750))
        assert (steps[-1].from_status, steps[-1].to_status) == (OrderStatus.IN_ESCROW, OrderStatus.REFUNDED)
        assert (order.refunded, order.still_held) == (usd(PRICE), usd(0))
        # A fourth refund is refused, naming the nothing that is left.
        fourth = refused(order, usd(100), "r4")
        assert fourth.code == "refund_exceeds_remaining"
        assert "order o1 has 0.00 USD left to refund; a refund of 1.00 USD is more than that" in fourth.reason

    def test_p6_a_refund_beyond_what_remains_names_the_remaining_amount(self) -> None:
        order = in_escrow()
        refund_fully(order, "r1", usd(2750))
        too_much = refused(order, usd(3000))
        assert too_much.code == "refund_exceeds_remaining"
        assert "order o1 has 15.00 USD left to refund; a refund of 30.00 USD is more than that" in too_much.reason
        assert (order.refunded, order.refunding) == (usd(2750), None)  # nothing changed

    @pytest.mark.parametrize(
        ("amount", "says"),
        [(usd(0), "must be positive"), (Money(amount_minor=1000, currency="EUR"), "priced in USD")],
    )
    def test_p6_a_refund_of_nothing_or_in_another_currency_is_refused(self, amount: Money, says: str) -> None:
        caught = refused(in_escrow(), amount)
        assert caught.code == "invalid_refund"
        assert says in caught.reason

    def test_p6_one_refund_at_a_time(self) -> None:
        order = in_escrow()
        first, _ = order.request_refund("r1", usd(1000))
        assert refused(order, usd(500), "r2").code == "refund_in_progress"
        order.funds_returned(first)
        in_flight = refused(order, usd(500), "r2")
        assert in_flight.code == "refund_in_progress"
        assert "r1" in in_flight.reason
        order.payment_refunded(first)
        second, _ = order.request_refund("r2", usd(500))  # now it may go
        assert second.status is RefundStatus.RETURNING

    @pytest.mark.parametrize(
        ("reach", "status", "why"),
        [
            ((), OrderStatus.PAYMENT_PENDING, "has not paid yet"),
            (("captured",), OrderStatus.PAID, "still being placed"),
            (("failed",), OrderStatus.CANCELLED, "nothing was paid"),
            (("captured", "held", "confirm"), OrderStatus.RELEASING, "dispute"),
            (("captured", "held", "confirm", "released"), OrderStatus.COMPLETED, "dispute"),
        ],
    )
    def test_p6_only_an_order_in_escrow_is_refundable(
        self, reach: tuple[str, ...], status: OrderStatus, why: str
    ) -> None:
        order, _ = Order.place(
            Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), marketplace_id="m")
        )
        moves = {
            "captured": order.payment_captured,
            "failed": lambda: order.payment_failed("x"),
            "held": order.funds_held,
            "confirm": lambda: order.confirm_receipt("b"),
            "released": order.funds_released,
        }
        for move in reach:
            moves[move]()
        assert order.status is status
        caught = refused(order, usd(100))
        assert caught.code == "not_refundable"
        assert f"order o1 is {status.value}" in caught.reason
        assert why in caught.reason

    def test_p6_a_repeated_refund_id_must_ask_the_same(self) -> None:
        refund, _ = in_escrow().request_refund("r1", usd(1000))
        refund.check_same_request(usd(1000))  # a repeat: the handler changes nothing
        with pytest.raises(OrderRuleBroken) as caught:
            refund.check_same_request(usd(999))
        assert caught.value.code == "refund_conflict"

    def test_p6_duplicate_and_late_refund_events_change_nothing(self) -> None:
        order = in_escrow()
        refund, _ = order.request_refund("r1", usd(1000))
        assert order.payment_refunded(refund).commands == []  # out of order: not out of escrow yet
        assert order.refunded == usd(0)
        order.funds_returned(refund)
        assert order.funds_returned(refund).commands == []  # duplicate: RefundPayment sent once
        assert order.returned == usd(1000)
        order.payment_refunded(refund)
        assert order.payment_refunded(refund).announce is None  # duplicate: counted once
        assert order.refunded == usd(1000)

    def test_p6_a_refund_event_must_answer_the_refund_and_the_buyer(self) -> None:
        order = in_escrow()
        refund, _ = order.request_refund("r1", usd(1000))
        assert order.answers_refund(refund, amount=usd(1000), buyer_id="b")
        assert not order.answers_refund(refund, amount=usd(999), buyer_id="b")
        assert not order.answers_refund(refund, amount=usd(1000), buyer_id="mallory")

    def test_p6_a_failed_refund_is_kept_with_its_reason_for_an_operator(self) -> None:
        order = in_escrow()
        refund, _ = order.request_refund("r1", usd(1000))
        order.funds_returned(refund)
        failed = order.refund_failed(refund, "issuer_unavailable: try later")
        assert (failed.to_status, failed.announce) == (OrderStatus.IN_ESCROW, "refund_failed:r1")
        assert (refund.status, refund.failure) == (RefundStatus.FAILED, "issuer_unavailable: try later")
        assert order.reason is not None
        assert "refund r1 of 10.00 USD failed: issuer_unavailable" in order.reason
        # The money is out of escrow, not with the buyer: neither held nor refundable again.
        assert (order.refunded, order.still_held, order.refunding) == (usd(0), usd(3250), None)
        assert order.refund_failed(refund, "again").announce is None  # a duplicate changes nothing

    def test_p6_receipt_after_partial_refunds_releases_only_what_is_still_held(self) -> None:
        order = in_escrow()
        refund_fully(order, "r1", usd(1000))
        refund_fully(order, "r2", usd(750))

        releasing = order.confirm_receipt("b")
        assert releasing.commands == [ReleaseFunds(order_id="o1")]
        # Escrow releases 25.00 USD, not the 42.50 USD price: that is the release the saga accepts.
        assert order.answers(amount=usd(2500), seller_id="s", held=True)
        assert not order.answers(amount=usd(PRICE), seller_id="s", held=True)
        completed = order.funds_released()
        assert completed.to_status is OrderStatus.COMPLETED
        assert completed.commands == [CreditWallet(account_id="s", order_id="o1", amount=usd(2500))]

    def test_p6_receipt_waits_for_a_refund_under_way_and_needs_something_held(self) -> None:
        order = in_escrow()
        refund, _ = order.request_refund("r1", usd(PRICE))
        with pytest.raises(OrderRuleBroken) as caught:
            order.confirm_receipt("b")
        assert caught.value.code == "refund_in_progress"
        order.funds_returned(refund)
        order.refund_failed(refund, "declined: closed card")  # all of it out of escrow, none back
        with pytest.raises(OrderRuleBroken) as nothing:
            order.confirm_receipt("b")
        assert nothing.value.code == "nothing_held"

    @given(st.lists(st.tuples(st.sampled_from(["request", "returned", "refunded", "failed"]), st.integers(-5, PRICE))))
    def test_p6_refunds_never_exceed_the_price_and_each_command_goes_once(self, moves: list[tuple[str, int]]) -> None:
        order = in_escrow()
        refunds: list[Refund] = []
        sent: list[tuple[str, str]] = []
        for move, minor in moves:
            with contextlib.suppress(OrderRuleBroken, ValueError):  # ValueError: a negative Money
                if move == "request":
                    refund, step = order.request_refund(f"r{len(refunds)}", usd(minor))
                    refunds.append(refund)
                elif refunds:
                    step = answer(order, move, refunds[-1])
                else:
                    continue
                sent += [(type(c).__name__, str(getattr(c, "refund_id", ""))) for c in step.commands]
            assert 0 <= order.refunded_minor <= order.returned_minor <= PRICE
        assert len(sent) == len(set(sent))
        assert (order.status is OrderStatus.REFUNDED) == (order.refunded_minor == PRICE)


def answer(order: Order, move: str, refund: Refund) -> Step:
    """What the saga does with escrow's or the payment's answer about ``refund``."""
    if move == "returned":
        return order.funds_returned(refund)
    if move == "refunded":
        return order.payment_refunded(refund)
    return order.refund_failed(refund, "x")
