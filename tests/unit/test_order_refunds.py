"""P6/S3 refunds through the saga and escrow, as pure rules: no Kafka, no database.

A refund is taken out of the escrow hold first (ReturnFunds -> FundsReturned), then paid back
to the buyer by the payment service (RefundPayment -> PaymentRefunded); the order stays in
escrow with less held until the last unit of its price is back, and then it is refunded. A
refund the payment could not pay is tried again after a backoff (a COMPENSATION_RETRY timer,
each try the same payment refund id with a higher ``attempt``) and, once the compensation
policy's attempts are spent, it is failed and an operator's; until it ends it stays the order's
refund under way (``order.refunding``).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    Checkout,
    CreditWallet,
    Deadline,
    DisputeReason,
    Money,
    OpenDispute,
    OrderStatus,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import Order, OrderRuleBroken, Refund, RefundStatus, SagaPolicy, Step, default_policy
from services.saga.domain.refunds import refund_of

PRICE = 4250
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = default_policy()
RETRY = POLICY.compensation.retry


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def placed(price: int = PRICE) -> Order:
    checkout = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(price), marketplace_id="m")
    order, _ = Order.place(checkout, T0, POLICY)
    return order


def in_escrow(price: int = PRICE) -> Order:
    """An order paid and held in escrow."""
    order = placed(price)
    order.payment_captured(1)
    order.funds_held(T0, POLICY)
    assert order.status is OrderStatus.IN_ESCROW
    return order


def requested(order: Order, refund_id: str, amount: Money, reason: str = "") -> Refund:
    step = order.request_refund(refund_id, amount, reason)
    assert step.refund is not None
    return step.refund


def refund_fully(order: Order, refund_id: str, amount: Money) -> tuple[Refund, list[Step]]:
    """One refund through every step the saga takes: requested, returned by escrow, refunded."""
    asked = order.request_refund(refund_id, amount, "damaged")
    assert asked.refund is not None
    refund = asked.refund
    return refund, [asked, order.funds_returned(refund), order.payment_refunded(refund)]


def refused(order: Order, amount: Money, refund_id: str = "r-x") -> OrderRuleBroken:
    with pytest.raises(OrderRuleBroken) as caught:
        order.request_refund(refund_id, amount)
    return caught.value


def fail(
    order: Order, refund: Refund, now: datetime = T0, policy: SagaPolicy = POLICY, *, answered: int | None = None
) -> Step:
    return order.refund_failed(refund, "issuer_unavailable", "try later", now, policy, answered=answered)


def payment_ids(step: Step) -> list[tuple[str, int]]:
    """Each RefundPayment the step sends: (payment refund id, attempt)."""
    return [(message.refund_id, message.attempt) for message in step.messages if isinstance(message, RefundPayment)]


def fire_due(order: Order, now: datetime) -> list[Step]:
    """What the deadline sweeper's nudge does: every timer due at ``now``, once."""
    return [order.fire(deadline, now, POLICY, None) for deadline in order.due(now)]


class TestSagaRefunds:
    def test_p6_a_refund_goes_through_escrow_then_the_payment(self) -> None:
        order = in_escrow()

        # The marketplace asks for 10.00 USD back: escrow gives that part of the hold back first.
        asked = order.request_refund("r1", usd(1000), "scratched")
        assert asked.messages == [ReturnFunds(order_id="o1", refund_id="r1", amount=usd(1000))]
        assert asked.refund is not None
        refund = asked.refund
        assert (refund.status, order.refunding, asked.changed) == (RefundStatus.RETURNING, "r1", False)
        # Escrow answers: the payment pays it back to the buyer's sources.
        returned = order.funds_returned(refund)
        assert returned.messages == [RefundPayment(order_id="o1", refund_id="r1", amount=usd(1000), reason="scratched")]
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
        assert (order.refunded, order.still_held, order.final) == (usd(PRICE), usd(0), True)
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

    @pytest.mark.parametrize("refund_id", ["compensation", "dispute", "r1~retry2"])
    def test_p6_refund_ids_the_saga_keeps_for_itself_are_refused(self, refund_id: str) -> None:
        order = in_escrow()
        caught = refused(order, usd(100), refund_id)
        assert (caught.code, order.refunding) == ("invalid_refund", None)
        assert "reserved" in caught.reason

    def test_p6_one_refund_at_a_time(self) -> None:
        order = in_escrow()
        first = requested(order, "r1", usd(1000))
        assert refused(order, usd(500), "r2").code == "refund_in_progress"
        order.funds_returned(first)
        in_flight = refused(order, usd(500), "r2")
        assert in_flight.code == "refund_in_progress"
        assert "r1" in in_flight.reason
        order.payment_refunded(first)
        second = requested(order, "r2", usd(500))  # now it may go
        assert second.status is RefundStatus.RETURNING

    @pytest.mark.parametrize(
        ("reach", "status", "why"),
        [
            ((), OrderStatus.PAYMENT_PENDING, "has not paid yet"),
            (("transient",), OrderStatus.PAYMENT_RETRYING, "has not paid yet"),
            (("declined",), OrderStatus.PAYMENT_FAILED, "has not paid yet"),
            (("captured",), OrderStatus.PAID, "still being placed"),
            (("order-ending",), OrderStatus.CANCELLED, "was cancelled"),
            (("captured", "hold refused"), OrderStatus.COMPENSATING, "being given back"),
            (("captured", "held", "dispute"), OrderStatus.DISPUTED, "a dispute is open"),
            (("captured", "held", "confirm"), OrderStatus.RELEASING, "being released"),
            (("captured", "held", "confirm", "released"), OrderStatus.COMPLETED, "the seller has been paid"),
        ],
    )
    def test_p6_only_an_order_in_escrow_is_refundable(
        self, reach: tuple[str, ...], status: OrderStatus, why: str
    ) -> None:
        order = placed()
        dispute = OpenDispute(order_id="o1", dispute_id="d1", buyer_id="b", reason=DisputeReason.DAMAGED)
        moves = {
            "transient": lambda: order.payment_failed(
                1, "issuer_unavailable", "x", permanent=False, now=T0, policy=POLICY
            ),
            "declined": lambda: order.payment_failed(1, "card_declined", "x", permanent=True, now=T0, policy=POLICY),
            "order-ending": lambda: order.payment_failed(
                1, "account_locked", "x", permanent=True, now=T0, policy=POLICY
            ),
            "captured": lambda: order.payment_captured(1),
            "hold refused": lambda: order.hold_refused("hold_refused", "x"),
            "held": lambda: order.funds_held(T0, POLICY),
            "dispute": lambda: order.open_dispute(dispute, T0, POLICY),
            "confirm": lambda: order.confirm_receipt("b"),
            "released": order.funds_released,
        }
        for move in reach:
            moves[move]()
        assert order.status is status
        before = (order.refunding, order.returned_minor, order.refunded_minor)
        caught = refused(order, usd(100))
        assert caught.code == "not_refundable"
        assert f"order o1 is {status.value}" in caught.reason
        assert why in caught.reason
        assert (order.refunding, order.returned_minor, order.refunded_minor) == before

    def test_p6_a_repeated_refund_id_must_ask_the_same(self) -> None:
        refund = requested(in_escrow(), "r1", usd(1000))
        refund.check_same_request(usd(1000))  # a repeat: the handler changes nothing
        with pytest.raises(OrderRuleBroken) as caught:
            refund.check_same_request(usd(999))
        assert caught.value.code == "refund_conflict"

    def test_s5_duplicate_and_late_refund_events_change_nothing(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        assert order.payment_refunded(refund).messages == []  # out of order: not out of escrow yet
        assert fail(order, refund).did_something is False  # nor can it have failed yet
        assert order.refunded == usd(0)
        order.funds_returned(refund)
        assert order.funds_returned(refund).messages == []  # duplicate: RefundPayment sent once
        assert order.returned == usd(1000)
        order.payment_refunded(refund)
        assert order.payment_refunded(refund).announce is None  # duplicate: counted once
        assert fail(order, refund).did_something is False  # a late failure after it was paid back
        assert (order.refunded, order.refunding, order.timers.get(Deadline.COMPENSATION_RETRY.value)) == (
            usd(1000),
            None,
            None,
        )

    def test_p6_a_refund_event_must_answer_the_refund_and_the_buyer(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        assert order.answers_refund(refund, amount=usd(1000), buyer_id="b")
        assert not order.answers_refund(refund, amount=usd(999), buyer_id="b")
        assert not order.answers_refund(refund, amount=usd(1000), buyer_id="mallory")

    def test_p6_receipt_after_partial_refunds_releases_only_what_is_still_held(self) -> None:
        order = in_escrow()
        refund_fully(order, "r1", usd(1000))
        refund_fully(order, "r2", usd(750))

        releasing = order.confirm_receipt("b")
        assert releasing.messages == [ReleaseFunds(order_id="o1")]
        # Escrow releases 25.00 USD, not the 42.50 USD price: that is the release the saga accepts.
        assert order.answers(amount=usd(2500), seller_id="s", held=True)
        assert not order.answers(amount=usd(PRICE), seller_id="s", held=True)
        completed = order.funds_released()
        assert completed.to_status is OrderStatus.COMPLETED
        assert completed.messages == [CreditWallet(account_id="s", order_id="o1", amount=usd(2500))]

    def test_p6_receipt_and_the_auto_release_wait_for_a_refund_under_way(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(PRICE))
        with pytest.raises(OrderRuleBroken) as caught:
            order.confirm_receipt("b")
        assert caught.value.code == "refund_in_progress"
        order.funds_returned(refund)
        for _ in range(RETRY.maximum_attempts):  # every try fails: all of it out of escrow, none back
            fail(order, refund)
            order.retry_refund("timer compensation_retry")
        assert refund.status is RefundStatus.FAILED
        # Still the order's refund under way: no release of a hold that is no longer there.
        with pytest.raises(OrderRuleBroken) as still:
            order.confirm_receipt("b")
        assert still.value.code == "refund_in_progress"
        assert order.release_at is not None
        fire_due(order, order.release_at - POLICY.protection.reminder_before)
        (postponed,) = fire_due(order, order.release_at)
        assert (postponed.to_status, postponed.messages) == (OrderStatus.IN_ESCROW, [])
        assert "postponed" in postponed.note
        assert order.timers[Deadline.AUTO_RELEASE.value] == (order.release_at + timedelta(hours=1)).isoformat()

    @given(
        st.lists(
            st.tuples(st.sampled_from(["request", "returned", "refunded", "failed", "retry"]), st.integers(-5, PRICE))
        )
    )
    def test_p6_refunds_never_exceed_the_price_and_each_command_goes_once(self, moves: list[tuple[str, int]]) -> None:
        order = in_escrow()
        refunds: list[Refund] = []
        sent: list[tuple[str, str, int]] = []
        for move, minor in moves:
            with contextlib.suppress(OrderRuleBroken, ValueError):  # ValueError: a negative Money
                if move == "request":
                    step = order.request_refund(f"r{len(refunds)}", usd(minor))
                    assert step.refund is not None
                    refunds.append(step.refund)
                elif refunds:
                    step = answer(order, move, refunds[-1])
                else:
                    continue
                sent += [
                    (type(c).__name__, str(getattr(c, "refund_id", "")), getattr(c, "attempt", 1))
                    for c in step.messages
                ]
            assert 0 <= order.refunded_minor <= order.returned_minor <= PRICE
            assert order.still_held.amount_minor == PRICE - order.returned_minor
        assert len(sent) == len(set(sent))
        assert (order.status is OrderStatus.REFUNDED) == (order.refunded_minor == PRICE)


def answer(order: Order, move: str, refund: Refund) -> Step:
    """What the saga does with escrow's or the payment's answer about ``refund``, or its retry timer."""
    if move == "returned":
        return order.funds_returned(refund)
    if move == "refunded":
        return order.payment_refunded(refund)
    if move == "retry":
        return order.retry_refund("timer compensation_retry")
    return fail(order, refund)


class TestRefundRetries:
    """S3: a refund the payment could not pay is retried with backoff, then handed to an operator."""

    def test_s3_a_failed_refund_is_retried_after_a_backoff_as_a_later_attempt_of_the_same_refund(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        order.funds_returned(refund)

        failed = fail(order, refund)
        # Not yet an operator's case: the refund is still under way, a retry timer is set.
        assert (failed.to_status, failed.announce, failed.messages) == (OrderStatus.IN_ESCROW, None, [])
        assert (refund.status, refund.failure, order.refunding, order.attention) == (
            RefundStatus.REFUNDING,
            "issuer_unavailable: try later",
            "r1",
            None,
        )
        at = order.timers[Deadline.COMPENSATION_RETRY.value]
        delay = datetime.fromisoformat(at) - T0
        expected = RETRY.initial_interval
        assert expected * (1 - RETRY.jitter) <= delay <= expected * (1 + RETRY.jitter)
        assert delay == RETRY.delay(1, "o1:r1")  # the same schedule every time it is computed
        assert order.next_due_at == datetime.fromisoformat(at)  # before the release reminder
        assert "try 2" in failed.note

        # The timer fires: the payment is asked again for the same refund, as attempt 2 (it tries
        # the card part again under the same network request id), for the same amount and reason.
        (retried,) = fire_due(order, datetime.fromisoformat(at))
        assert retried.messages == [RefundPayment(order_id="o1", refund_id="r1", amount=usd(1000), attempt=2)]
        assert Deadline.COMPENSATION_RETRY.value not in order.timers
        assert refund_of("r1~retry2") == "r1"  # how earlier versions named retries still reads
        # This time it is paid back.
        done = order.payment_refunded(refund)
        assert (done.announce, refund.status, order.refunding, order.refunded) == (
            "refunded:r1",
            RefundStatus.REFUNDED,
            None,
            usd(1000),
        )
        assert (order.refund_attempt, order.refund_retry) == (0, None)

    def test_s3_a_refund_failed_every_try_is_kept_with_its_reason_for_an_operator(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        order.funds_returned(refund)
        now, sent = T0, [("r1", 1)]
        for attempt in range(1, RETRY.maximum_attempts):
            assert fail(order, refund, now).announce is None
            now = datetime.fromisoformat(order.timers[Deadline.COMPENSATION_RETRY.value])
            (retried,) = fire_due(order, now)
            sent += payment_ids(retried)
            assert order.refund_attempt == attempt + 1
        assert sent == [("r1", attempt) for attempt in range(1, 6)]

        last = fail(order, refund, now)
        assert (last.to_status, last.announce) == (OrderStatus.IN_ESCROW, "refund_failed:r1")
        assert (refund.status, refund.failure) == (RefundStatus.FAILED, "issuer_unavailable: try later")
        assert Deadline.COMPENSATION_RETRY.value not in order.timers
        assert order.reason is not None
        assert "refund r1 of 10.00 USD failed: issuer_unavailable" in order.reason
        assert order.attention is not None
        assert "failed 5 times" in order.attention
        assert "an operator must act" in order.attention
        # The money is out of escrow, not with the buyer; the refund stays the one under way.
        assert (order.refunded, order.still_held, order.refunding) == (usd(0), usd(3250), "r1")
        assert fail(order, refund, now).did_something is False  # a duplicate changes nothing
        assert order.retry_refund("timer compensation_retry").did_something is False  # only an operator now
        assert refused(order, usd(100), "r2").code == "refund_in_progress"

        # An operator pays it again: a later attempt, the operator's case closed.
        again = order.retry_refund("operator ops-1: compensate now", reset=True)
        assert payment_ids(again) == [("r1", 6)]
        assert order.attention is None
        assert order.payment_refunded(refund).announce == "refunded:r1"
        assert (order.refunded, order.refunding) == (usd(1000), None)

    def test_s2_a_non_retryable_refund_failure_goes_to_an_operator_at_once(self) -> None:
        strict = POLICY.model_copy(
            update={
                "compensation": POLICY.compensation.model_copy(
                    update={"retry": RETRY.model_copy(update={"non_retryable": frozenset({"card_closed"})})}
                )
            }
        )
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        order.funds_returned(refund)
        failed = order.refund_failed(refund, "card_closed", "the card was closed", T0, strict)
        assert (failed.announce, refund.status) == ("refund_failed:r1", RefundStatus.FAILED)
        assert Deadline.COMPENSATION_RETRY.value not in order.timers

    def test_s3_a_refund_paid_back_after_it_was_an_operators_case_clears_the_case(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        order.funds_returned(refund)
        for _ in range(RETRY.maximum_attempts):
            fail(order, refund)
            order.retry_refund("timer compensation_retry")
        assert refund.status is RefundStatus.FAILED
        order.payment_refunded(refund)  # the payment paid it after all (RefundStatus.FAILED is in flight)
        assert order.refunded == usd(1000)
        # A second refund fails once: its retry timer must pay it again.
        second = requested(order, "r2", usd(500))
        order.funds_returned(second)
        fail(order, second)
        due_at = datetime.fromisoformat(order.timers[Deadline.COMPENSATION_RETRY.value])
        retried = fire_due(order, due_at)
        assert [payment_ids(step) for step in retried] == [[("r2", 2)]]
        assert order.attention is None

    def test_s3_an_operator_retry_while_the_payment_has_not_answered_pays_nothing_twice(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        assert payment_ids(order.funds_returned(refund)) == [("r1", 1)]  # in flight, no answer yet
        with contextlib.suppress(OrderRuleBroken):  # refusing it is as good as re-sending the same try
            again = order.retry_refund("operator ops-1: compensate now", reset=True)
            assert payment_ids(again) in ([], [("r1", 1)])

    def test_s3_a_repeated_failure_of_an_earlier_try_does_not_start_another_payment(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        unanswered = set(payment_ids(order.funds_returned(refund)))  # {("r1", 1)}
        now = T0
        # The payment fails attempt 1; the saga retries it as attempt 2.
        fail(order, refund, now, answered=1)
        unanswered.discard(("r1", 1))
        now = datetime.fromisoformat(order.timers[Deadline.COMPENSATION_RETRY.value])
        for step in fire_due(order, now):
            unanswered |= set(payment_ids(step))
        assert unanswered == {("r1", 2)}
        # A repeat of attempt 1's RefundFailed arrives again (redelivered): it must start nothing.
        assert refund_of("r1") == refund.refund_id  # the handler finds the same refund record
        fail(order, refund, now, answered=1)
        now += timedelta(hours=1)
        for step in fire_due(order, now):
            new = set(payment_ids(step))
            assert not (new and unanswered), f"{new} sent while {unanswered} has no answer"
            unanswered |= new

    def test_s3_an_operators_retry_that_fails_again_goes_back_to_the_operator(self) -> None:
        order = in_escrow()
        refund = requested(order, "r1", usd(1000))
        order.funds_returned(refund)
        for _ in range(RETRY.maximum_attempts):
            fail(order, refund)
            order.retry_refund("timer compensation_retry")
        assert payment_ids(order.retry_refund("operator ops-1: compensate now", reset=True)) == [("r1", 6)]
        failed_again = fail(order, refund)
        assert failed_again.announce == "refund_failed:r1"
        assert order.attention is not None

    def test_s3_the_retry_of_a_refund_with_a_long_id_is_traced_back_to_it(self) -> None:
        long_id = "r" * 95  # within the contracts' 100 characters
        order = in_escrow()
        try:
            refund = requested(order, long_id, usd(1000))
        except OrderRuleBroken:
            return  # refusing an id too long is a fix too
        order.funds_returned(refund)
        fail(order, refund)
        ((retried, attempt),) = payment_ids(order.retry_refund("timer compensation_retry"))
        assert len(retried) <= 100
        assert (refund_of(retried), attempt) == (long_id, 2)
