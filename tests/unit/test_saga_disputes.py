"""E3: an order's dispute in the saga, as pure rules (services/saga/domain/disputes.py, orders.py).

The buyer opens a dispute while the order is in escrow and before its protection ends: the
funds freeze and the release timers stop; the seller answers before ``answer_by`` (silence
counts for the buyer); an operator resolves it by a release, a full refund or a split, and the
saga carries the money side out through escrow and the payment service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import (
    Checkout,
    CreditWallet,
    Deadline,
    DisputeAnswered,
    DisputeOpened,
    DisputeReason,
    DisputeResolution,
    DisputeResolved,
    FreezeFunds,
    Money,
    OpenDispute,
    OrderStatus,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import (
    Dispute,
    DisputeStatus,
    Order,
    OrderRuleBroken,
    RefundStatus,
    Step,
    default_policy,
    refund_of,
)

S = OrderStatus
R = DisputeResolution
PRICE = 4250
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
OPENED_AT = T0 + timedelta(days=3)
POLICY = default_policy()
ANSWER_BY = OPENED_AT + POLICY.dispute.seller_response


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def in_escrow() -> Order:
    checkout = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), marketplace_id="m")
    order, _ = Order.place(checkout, T0, POLICY)
    order.payment_captured(1)
    order.funds_held(T0, POLICY)
    return order


def open_dispute(dispute_id: str = "d1", buyer_id: str = "b") -> OpenDispute:
    return OpenDispute(
        order_id="o1",
        dispute_id=dispute_id,
        buyer_id=buyer_id,
        reason=DisputeReason.NOT_AS_DESCRIBED,
        description="blue, not red",
        evidence=["photo-1"],
    )


def disputed() -> tuple[Order, Dispute]:
    order = in_escrow()
    step = order.open_dispute(open_dispute(), OPENED_AT, POLICY)
    assert step.dispute is not None
    return order, step.dispute


def kinds(step: Step) -> list[str]:
    return [type(message).__name__ for message in step.messages]


def refused(call: object, *args: object, **kwargs: object) -> OrderRuleBroken:
    assert callable(call)
    with pytest.raises(OrderRuleBroken) as caught:
        call(*args, **kwargs)
    return caught.value


def resolve(order: Order, dispute: Dispute, resolution: DisputeResolution, refund: Money | None = None) -> Step:
    return order.resolve_dispute(dispute, resolution, refund, "operator:ops-1", "looked at the photos")


class TestOpening:
    def test_e3_a_dispute_before_the_deadline_freezes_the_funds_and_stops_the_release(self) -> None:
        order = in_escrow()
        assert Deadline.AUTO_RELEASE.value in order.timers
        step = order.open_dispute(open_dispute(), OPENED_AT, POLICY)

        assert (step.from_status, step.to_status) == (S.IN_ESCROW, S.DISPUTED)
        assert step.messages == [
            FreezeFunds(order_id="o1", dispute_id="d1"),
            DisputeOpened(
                order_id="o1",
                dispute_id="d1",
                buyer_id="b",
                seller_id="s",
                amount=usd(PRICE),
                reason=DisputeReason.NOT_AS_DESCRIBED,
                description="blue, not red",
                evidence=["photo-1"],
                answer_by=ANSWER_BY,
            ),
        ]
        assert step.dispute is not None
        dispute = step.dispute
        assert (dispute.dispute_id, dispute.status, dispute.opened_at, dispute.answer_by) == (
            "d1",
            DisputeStatus.OPEN,
            OPENED_AT,
            ANSWER_BY,
        )
        # The release is frozen: only the seller's deadline is left.
        assert order.timers == {Deadline.SELLER_RESPONSE.value: ANSWER_BY.isoformat()}
        assert (order.next_due_at, order.dispute_id) == (ANSWER_BY, "d1")
        # The protection's end passes with nothing released.
        assert order.release_at is not None
        assert order.due(order.release_at) == [Deadline.SELLER_RESPONSE]
        # Escrow confirms the freeze, once.
        assert order.funds_frozen(dispute, "d1").note == "FundsFrozen for dispute d1"
        assert dispute.frozen
        assert order.funds_frozen(dispute, "d1").did_something is False
        assert order.funds_frozen(dispute, "d2").did_something is False

    def test_e3_a_dispute_after_the_protection_ended_is_refused(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        caught = refused(order.open_dispute, open_dispute(), order.release_at, POLICY)
        assert caught.code == "dispute_window_closed"
        assert (order.status, order.dispute_id) == (S.IN_ESCROW, None)

    def test_e3_only_the_buyer_disputes(self) -> None:
        order = in_escrow()
        assert refused(order.open_dispute, open_dispute(buyer_id="mallory"), OPENED_AT, POLICY).code == "not_the_buyer"
        assert order.status is S.IN_ESCROW

    def test_e3_an_order_is_disputed_once(self) -> None:
        order, dispute = disputed()
        # The handler meets a second OpenDispute with the dispute it has: the same one repeated is
        # nothing, another is refused; and the rules refuse to open one on a disputed order.
        dispute.check_same("d1")
        assert refused(dispute.check_same, "d2").code == "already_disputed"
        assert refused(order.open_dispute, open_dispute("d2"), OPENED_AT, POLICY).code == "not_disputable"
        assert order.dispute_id == "d1"

    @pytest.mark.parametrize("reach", ["paid", "releasing"])
    def test_e3_only_an_order_in_escrow_is_disputed(self, reach: str) -> None:
        checkout = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), marketplace_id="m")
        order, _ = Order.place(checkout, T0, POLICY)
        order.payment_captured(1)
        if reach == "releasing":
            order.funds_held(T0, POLICY)
            order.confirm_receipt("b")
        assert refused(order.open_dispute, open_dispute(), OPENED_AT, POLICY).code == "not_disputable"

    def test_e3_no_dispute_while_a_refund_is_under_way(self) -> None:
        order = in_escrow()
        order.request_refund("r1", usd(1000))
        assert refused(order.open_dispute, open_dispute(), OPENED_AT, POLICY).code == "refund_in_progress"


class TestAnswering:
    def test_e3_the_seller_answers_and_an_operator_is_waited_for(self) -> None:
        order, dispute = disputed()
        step = order.answer_dispute(
            dispute, "s", "it was red when shipped", ["photo-9"], ANSWER_BY - timedelta(hours=1)
        )
        assert step.messages == [
            DisputeAnswered(
                order_id="o1",
                dispute_id="d1",
                buyer_id="b",
                seller_id="s",
                statement="it was red when shipped",
                evidence=["photo-9"],
            )
        ]
        assert (dispute.status, dispute.statement, dispute.seller_evidence) == (
            DisputeStatus.ANSWERED,
            "it was red when shipped",
            ["photo-9"],
        )
        assert (order.status, order.timers, order.next_due_at) == (S.DISPUTED, {}, None)
        assert order.attention is not None
        assert "an operator decides" in order.attention
        # A second answer is refused.
        assert refused(order.answer_dispute, dispute, "s", "again", [], ANSWER_BY - timedelta(hours=1)).code == (
            "dispute_not_open"
        )

    def test_e3_an_answer_after_answer_by_is_refused(self) -> None:
        order, dispute = disputed()
        caught = refused(order.answer_dispute, dispute, "s", "too late", [], ANSWER_BY)
        assert caught.code == "answer_window_closed"
        assert (dispute.status, order.attention) == (DisputeStatus.OPEN, None)
        assert Deadline.SELLER_RESPONSE.value in order.timers

    def test_e3_only_the_seller_answers(self) -> None:
        order, dispute = disputed()
        assert refused(order.answer_dispute, dispute, "b", "me", [], OPENED_AT).code == "not_the_seller"
        dispute.check_is("d1")  # the dispute it is: no refusal
        assert refused(dispute.check_is, "d2").code == "dispute_not_found"

    def test_e3_a_silent_seller_loses_a_full_refund_decided_by_the_deadline(self) -> None:
        order, dispute = disputed()
        assert order.due(ANSWER_BY - timedelta(seconds=1)) == []
        (deadline,) = order.due(ANSWER_BY)
        step = order.fire(deadline, ANSWER_BY, POLICY, dispute)
        resolved = step.messages[0]
        assert isinstance(resolved, DisputeResolved)
        assert (resolved.resolution, resolved.decided_by, resolved.refund, resolved.release) == (
            R.REFUND_IN_FULL,
            "deadline",
            usd(PRICE),
            usd(0),
        )
        assert step.messages[1:] == [
            ReturnFunds(order_id="o1", refund_id="dispute", amount=usd(PRICE), dispute_id="d1")
        ]
        assert (dispute.status, dispute.decided_by, dispute.refund) == (DisputeStatus.RESOLVED, "deadline", usd(PRICE))
        assert order.timers == {}

    def test_e3_the_deadline_after_an_answer_changes_nothing(self) -> None:
        order, dispute = disputed()
        order.answer_dispute(dispute, "s", "no", [], OPENED_AT)
        step = order.fire(Deadline.SELLER_RESPONSE, ANSWER_BY, POLICY, dispute)
        assert (step.messages, dispute.status) == ([], DisputeStatus.ANSWERED)


class TestResolving:
    def test_e3_a_release_pays_the_seller_what_escrow_holds(self) -> None:
        order, dispute = disputed()
        step = resolve(order, dispute, R.RELEASE)
        assert (step.from_status, step.to_status) == (S.DISPUTED, S.RELEASING)
        assert kinds(step) == ["DisputeResolved", "ReleaseFunds"]
        assert step.messages[1] == ReleaseFunds(order_id="o1", dispute_id="d1")  # ends the freeze
        resolved = step.messages[0]
        assert isinstance(resolved, DisputeResolved)
        assert (resolved.refund, resolved.release, resolved.decided_by) == (usd(0), usd(PRICE), "operator:ops-1")
        completed = order.funds_released()
        assert completed.messages == [CreditWallet(account_id="s", order_id="o1", amount=usd(PRICE))]
        assert (order.status, order.final) == (S.COMPLETED, True)

    def test_e3_a_full_refund_gives_back_everything_escrow_holds(self) -> None:
        order, dispute = disputed()
        step = resolve(order, dispute, R.REFUND_IN_FULL)
        assert step.to_status is S.DISPUTED  # until the money is back
        assert kinds(step) == ["DisputeResolved", "ReturnFunds"]
        assert step.messages[1] == ReturnFunds(order_id="o1", refund_id="dispute", amount=usd(PRICE), dispute_id="d1")
        assert step.refund is not None
        refund = step.refund
        assert (refund.dispute_id, refund.status, order.refunding) == ("d1", RefundStatus.RETURNING, "dispute")

        (pay_back,) = order.funds_returned(refund).messages
        assert isinstance(pay_back, RefundPayment)
        assert (refund_of(pay_back.refund_id), pay_back.amount, pay_back.reason) == (
            "dispute",
            usd(PRICE),
            refund.reason,
        )
        done = order.payment_refunded(refund)
        assert (done.from_status, done.to_status) == (S.DISPUTED, S.REFUNDED)
        assert (order.refunded, order.still_held, order.final) == (usd(PRICE), usd(0), True)
        assert order.funds_released().did_something is False  # nothing is released after it

    def test_e3_a_split_refunds_the_buyers_part_then_releases_exactly_the_rest(self) -> None:
        order, dispute = disputed()
        step = resolve(order, dispute, R.SPLIT, usd(1500))
        resolved = step.messages[0]
        assert isinstance(resolved, DisputeResolved)
        assert (resolved.refund, resolved.release) == (usd(1500), usd(PRICE - 1500))
        assert step.messages[1] == ReturnFunds(order_id="o1", refund_id="dispute", amount=usd(1500), dispute_id="d1")
        assert step.refund is not None
        refund = step.refund
        order.funds_returned(refund)
        assert order.still_held == usd(PRICE - 1500)

        # The buyer has their part back: the seller's part is released, with the dispute's id.
        back = order.payment_refunded(refund)
        assert (back.from_status, back.to_status, back.announce) == (S.DISPUTED, S.RELEASING, "refunded:dispute")
        assert back.messages == [ReleaseFunds(order_id="o1", dispute_id="d1")]
        assert order.answers(amount=usd(PRICE - 1500), seller_id="s", held=True)
        paid = order.funds_released()
        assert paid.messages == [CreditWallet(account_id="s", order_id="o1", amount=usd(PRICE - 1500))]
        credited = paid.messages[0]
        assert isinstance(credited, CreditWallet)
        assert order.refunded.amount_minor + credited.amount.amount_minor == PRICE  # not a unit lost or made
        assert (order.status, order.final) == (S.COMPLETED, True)

    def test_e3_a_split_after_a_partial_refund_splits_what_is_left(self) -> None:
        order = in_escrow()
        first = order.request_refund("r1", usd(1000)).refund
        assert first is not None
        order.funds_returned(first)
        order.payment_refunded(first)
        opened = order.open_dispute(open_dispute(), OPENED_AT, POLICY)
        assert opened.dispute is not None
        assert isinstance(opened.messages[1], DisputeOpened)
        assert opened.messages[1].amount == usd(PRICE - 1000)
        step = resolve(order, opened.dispute, R.SPLIT, usd(250))
        assert step.refund is not None
        order.funds_returned(step.refund)
        order.payment_refunded(step.refund)
        (credit,) = order.funds_released().messages
        assert isinstance(credit, CreditWallet)
        assert (order.refunded, credit.amount) == (usd(1250), usd(PRICE - 1250))

    @pytest.mark.parametrize(
        ("refund", "why"),
        [
            (usd(0), "more than nothing"),
            (usd(PRICE), "less than the"),
            (usd(PRICE + 1), "less than the"),
            (Money(amount_minor=100, currency="EUR"), "in USD"),
            (None, "in USD"),
        ],
    )
    def test_e3_an_invalid_split_is_refused(self, refund: Money | None, why: str) -> None:
        order, dispute = disputed()
        caught = refused(resolve, order, dispute, R.SPLIT, refund)
        assert caught.code == "invalid_resolution"
        assert why in caught.reason
        assert (order.status, dispute.status, order.refunding, order.release_after_refund) == (
            S.DISPUTED,
            DisputeStatus.OPEN,
            None,
            False,
        )
        assert Deadline.SELLER_RESPONSE.value in order.timers

    def test_e3_a_dispute_is_resolved_once(self) -> None:
        order, dispute = disputed()
        resolve(order, dispute, R.REFUND_IN_FULL)
        assert refused(resolve, order, dispute, R.RELEASE).code == "dispute_resolved"

    def test_e3_only_a_disputed_order_is_resolved(self) -> None:
        order, dispute = disputed()
        resolve(order, dispute, R.RELEASE)
        assert refused(resolve, order, dispute, R.REFUND_IN_FULL).code == "not_disputed"

    def test_e3_a_resolution_closes_the_operators_case_and_the_sellers_deadline(self) -> None:
        order, dispute = disputed()
        order.answer_dispute(dispute, "s", "no", [], OPENED_AT)
        assert order.attention is not None
        resolve(order, dispute, R.RELEASE)
        assert order.attention is None
        assert order.timers == {}
