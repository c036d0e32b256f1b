"""S4: the order's durable timers, as pure rules (services/saga/domain/timers.py, orders.py).

A timer is set, moved or cleared only by the order's own rules; ``next_due_at`` (what the
deadline sweeper reads) is always the earliest of them. Time is a plain ``now`` the test moves
forward, as the saga's clock abstraction lets a test or a scenario do: no sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import (
    AutoReleaseApproaching,
    CapturePayment,
    Checkout,
    Deadline,
    Money,
    OrderStatus,
    PayAgain,
    ProtectionExtended,
    ReleaseFunds,
)
from services.saga.domain import Order, OrderRuleBroken, Step, default_policy, timers
from services.saga.domain.orders import RELEASE_POSTPONED_BY

S = OrderStatus
PRICE = 4250
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = default_policy()
PROTECTION = POLICY.protection


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def placed(shipping_method: str | None = None, now: datetime = T0) -> Order:
    checkout = Checkout(
        order_id="o1",
        buyer_id="b",
        seller_id="s",
        amount=usd(PRICE),
        marketplace_id="m",
        shipping_method=shipping_method,
    )
    order, _ = Order.place(checkout, now, POLICY)
    check_next_due(order)
    return order


def in_escrow(shipping_method: str | None = None) -> Order:
    order = placed(shipping_method)
    order.payment_captured(1)
    order.funds_held(T0, POLICY)
    check_next_due(order)
    return order


def at(order: Order, deadline: Deadline) -> datetime | None:
    return timers.timer_at(order.timers, deadline)


def check_next_due(order: Order) -> None:
    """The sweeper's column is the earliest timer, or nothing without timers."""
    earliest = min((datetime.fromisoformat(t) for t in order.timers.values()), default=None)
    assert order.next_due_at == earliest


def fire_due(order: Order, now: datetime) -> list[Step]:
    """The deadline sweeper's nudge, as the handler does it: every timer due at ``now``, once."""
    steps = [order.fire(deadline, now, POLICY, None) for deadline in order.due(now)]
    check_next_due(order)
    return steps


def sent(steps: list[Step]) -> list[str]:
    return [type(message).__name__ for step in steps for message in step.messages]


class TestTimerTable:
    def test_s4_timers_are_kept_as_iso_times_and_due_earliest_first(self) -> None:
        table: timers.TimerTable = {}
        timers.set_timer(table, Deadline.AUTO_RELEASE, T0 + timedelta(days=2))
        timers.set_timer(table, Deadline.RELEASE_REMINDER, T0 + timedelta(days=1))
        timers.set_timer(table, Deadline.SELLER_RESPONSE, T0 + timedelta(days=1))  # a tie: Deadline's order
        assert table[Deadline.AUTO_RELEASE.value] == "2026-03-03T12:00:00+00:00"
        assert timers.next_due(table) == (Deadline.RELEASE_REMINDER, T0 + timedelta(days=1))
        assert timers.due(table, T0) == []
        assert timers.due(table, T0 + timedelta(days=1)) == [Deadline.RELEASE_REMINDER, Deadline.SELLER_RESPONSE]
        assert timers.due(table, T0 + timedelta(days=3)) == [
            Deadline.RELEASE_REMINDER,
            Deadline.SELLER_RESPONSE,
            Deadline.AUTO_RELEASE,
        ]
        timers.clear_timers(table, Deadline.RELEASE_REMINDER, Deadline.PAYMENT_WINDOW)  # clearing an unset one is fine
        assert timers.next_due(table) == (Deadline.SELLER_RESPONSE, T0 + timedelta(days=1))
        timers.clear_timers(table, Deadline.SELLER_RESPONSE, Deadline.AUTO_RELEASE)
        assert (table, timers.next_due(table), timers.timer_at(table, Deadline.AUTO_RELEASE)) == ({}, None, None)


class TestPaymentTimers:
    def test_s4_checkout_sets_the_payment_window_and_capture_clears_it(self) -> None:
        order = placed()
        assert order.timers == {Deadline.PAYMENT_WINDOW.value: (T0 + POLICY.payment.window).isoformat()}
        assert order.next_due_at == order.pay_by == T0 + timedelta(minutes=30)
        assert order.next_deadline() == (Deadline.PAYMENT_WINDOW, order.pay_by)

        # A transient failure sets the retry timer, sooner than the window: it becomes next.
        order.payment_failed(1, "issuer_unavailable", "x", permanent=False, now=T0, policy=POLICY)
        check_next_due(order)
        retry_at = at(order, Deadline.PAYMENT_RETRY)
        assert retry_at is not None
        assert order.next_deadline() == (Deadline.PAYMENT_RETRY, retry_at)
        fire_due(order, retry_at)
        assert order.next_deadline() == (Deadline.PAYMENT_WINDOW, order.pay_by)

        order.payment_captured(2)
        assert (order.timers, order.next_due_at, order.next_deadline()) == ({}, None, None)

    def test_s4_nothing_fires_before_its_time(self) -> None:
        order = placed()
        assert order.pay_by is not None
        assert order.due(order.pay_by - timedelta(microseconds=1)) == []
        assert order.due(order.pay_by) == [Deadline.PAYMENT_WINDOW]
        assert fire_due(order, order.pay_by - timedelta(seconds=1)) == []
        assert order.status is S.PAYMENT_PENDING

    def test_s4_the_payment_window_fires_once(self) -> None:
        order = placed()
        assert order.pay_by is not None
        (closed,) = fire_due(order, order.pay_by)
        assert (closed.to_status, order.timers) == (S.CANCELLED, {})
        assert fire_due(order, order.pay_by + timedelta(days=1)) == []  # nothing left to fire

    def test_s4_no_payment_is_attempted_once_the_window_has_closed(self) -> None:
        order = placed()
        order.payment_failed(
            1, "issuer_unavailable", "x", permanent=False, now=T0 + timedelta(minutes=1), policy=POLICY
        )
        assert order.pay_by is not None
        steps = fire_due(order, order.pay_by + timedelta(minutes=15))
        assert order.status is S.CANCELLED
        assert "CapturePayment" not in sent(steps)


class TestProtectionTimers:
    @pytest.mark.parametrize("method", [None, *sorted(PROTECTION.windows)])
    def test_s4_funds_held_sets_the_auto_release_and_its_reminder_by_shipping_method(self, method: str | None) -> None:
        order = in_escrow(method)
        window = PROTECTION.windows[method or PROTECTION.default_method]
        assert order.release_at == T0 + window
        assert at(order, Deadline.AUTO_RELEASE) == T0 + window
        assert at(order, Deadline.RELEASE_REMINDER) == T0 + window - PROTECTION.reminder_before
        assert order.next_deadline() == (Deadline.RELEASE_REMINDER, T0 + window - PROTECTION.reminder_before)
        assert set(order.timers) == {Deadline.AUTO_RELEASE.value, Deadline.RELEASE_REMINDER.value}

    def test_s4_the_standard_window_is_fifteen_days(self) -> None:
        assert in_escrow().release_at == T0 + timedelta(days=15)
        assert in_escrow("express").release_at == T0 + timedelta(days=10)

    def test_s4_an_unknown_shipping_method_is_refused_at_checkout(self) -> None:
        with pytest.raises(OrderRuleBroken) as caught:
            placed("teleport")
        assert caught.value.code == "invalid_order"
        assert "'teleport' is not one of economy, express, freight, standard" in caught.value.reason

    def test_s4_the_reminder_goes_once_before_the_release(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        remind_at = order.release_at - PROTECTION.reminder_before
        assert fire_due(order, remind_at - timedelta(seconds=1)) == []
        (reminded,) = fire_due(order, remind_at)
        assert reminded.messages == [
            AutoReleaseApproaching(
                order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), release_at=order.release_at
            )
        ]
        assert reminded.to_status is S.IN_ESCROW
        # The reminder fired: it is gone, so a second nudge sends nothing.
        assert Deadline.RELEASE_REMINDER.value not in order.timers
        assert order.due(remind_at + timedelta(hours=1)) == []
        assert fire_due(order, remind_at + timedelta(hours=1)) == []

    def test_s4_the_auto_release_releases_when_the_protection_ends(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        fire_due(order, order.release_at - PROTECTION.reminder_before)
        (released,) = fire_due(order, order.release_at)
        assert (released.from_status, released.to_status) == (S.IN_ESCROW, S.RELEASING)
        assert released.messages == [ReleaseFunds(order_id="o1")]
        assert (order.timers, order.next_due_at) == ({}, None)

    def test_s4_receipt_confirmed_first_clears_the_release_timers(self) -> None:
        order = in_escrow()
        order.confirm_receipt("b")
        assert (order.status, order.timers, order.next_due_at) == (S.RELEASING, {}, None)

    def test_s4_an_auto_release_during_a_refund_waits_and_looks_again(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        fire_due(order, order.release_at - PROTECTION.reminder_before)
        refund = order.request_refund("r1", usd(1000)).refund
        assert refund is not None
        (postponed,) = fire_due(order, order.release_at)
        assert (postponed.to_status, postponed.messages) == (S.IN_ESCROW, [])
        assert at(order, Deadline.AUTO_RELEASE) == order.release_at + RELEASE_POSTPONED_BY
        order.funds_returned(refund)
        order.payment_refunded(refund)
        (released,) = fire_due(order, order.release_at + RELEASE_POSTPONED_BY)
        assert (released.to_status, sent([released])) == (S.RELEASING, ["ReleaseFunds"])
        assert order.still_held == usd(PRICE - 1000)

    def test_s4_protection_is_extended_once_moving_both_timers(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        release_at, remind_at = order.release_at, at(order, Deadline.RELEASE_REMINDER)
        assert remind_at is not None
        now = T0 + timedelta(days=2)

        extended = order.extend_protection("b", now, POLICY)
        assert extended.messages == [
            ProtectionExtended(order_id="o1", buyer_id="b", seller_id="s", release_at=release_at + PROTECTION.extension)
        ]
        assert (extended.to_status, order.protection_extended) == (S.IN_ESCROW, True)
        assert order.release_at == release_at + PROTECTION.extension
        assert at(order, Deadline.AUTO_RELEASE) == release_at + PROTECTION.extension
        assert at(order, Deadline.RELEASE_REMINDER) == remind_at + PROTECTION.extension
        check_next_due(order)
        # The old times pass with nothing due.
        assert fire_due(order, release_at) == []

        with pytest.raises(OrderRuleBroken) as twice:
            order.extend_protection("b", now, POLICY)
        assert twice.value.code == "already_extended"
        assert order.release_at == release_at + PROTECTION.extension  # unchanged

    def test_s4_an_extension_after_the_protection_ended_is_refused(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        end = order.release_at
        before = dict(order.timers)
        with pytest.raises(OrderRuleBroken) as late:
            order.extend_protection("b", end, POLICY)
        assert late.value.code == "protection_ended"
        assert (order.timers, order.release_at, order.protection_extended) == (before, end, False)

    @pytest.mark.parametrize(
        ("buyer", "reach", "code"),
        [
            ("mallory", "in_escrow", "not_the_buyer"),
            ("b", "paid", "not_in_escrow"),
            ("b", "releasing", "not_in_escrow"),
        ],
    )
    def test_s4_only_the_buyer_extends_an_order_in_escrow(self, buyer: str, reach: str, code: str) -> None:
        order = placed()
        order.payment_captured(1)
        if reach != "paid":
            order.funds_held(T0, POLICY)
        if reach == "releasing":
            order.confirm_receipt("b")
        with pytest.raises(OrderRuleBroken) as caught:
            order.extend_protection(buyer, T0, POLICY)
        assert caught.value.code == code

    def test_s4_an_extension_after_the_reminder_sets_a_new_one(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        remind_at = order.release_at - PROTECTION.reminder_before
        fire_due(order, remind_at)
        order.extend_protection("b", remind_at + timedelta(hours=1), POLICY)
        assert at(order, Deadline.RELEASE_REMINDER) == remind_at + PROTECTION.extension
        (reminded,) = fire_due(order, remind_at + PROTECTION.extension)
        assert [getattr(m, "release_at", None) for m in reminded.messages] == [order.release_at]


class TestFiring:
    @pytest.mark.parametrize("deadline", list(Deadline))
    def test_s4_a_timer_that_no_longer_applies_changes_nothing_but_leaves_a_note(self, deadline: Deadline) -> None:
        order = placed()
        order.payment_captured(1)
        order.funds_held(T0, POLICY)
        order.confirm_receipt("b")
        assert order.status is S.RELEASING
        step = order.fire(deadline, T0 + timedelta(days=60), POLICY, None)
        assert (step.from_status, step.to_status, step.messages, step.changed) == (S.RELEASING, S.RELEASING, [], False)
        assert step.note == f"timer {deadline.value}: nothing to do while releasing"
        assert step.did_something  # the audit trail keeps the note
        assert order.status is S.RELEASING

    def test_s4_firing_a_timer_removes_it_before_its_rule_runs(self) -> None:
        order = placed()
        order.payment_failed(1, "card_declined", "x", permanent=True, now=T0, policy=POLICY)
        assert order.pay_by is not None
        order.fire(Deadline.PAYMENT_WINDOW, order.pay_by, POLICY, None)
        assert order.timers == {}
        assert order.status is S.CANCELLED

    def test_s4_a_retry_timer_fired_after_the_buyer_paid_again_changes_nothing(self) -> None:
        order = placed()
        order.payment_failed(1, "issuer_unavailable", "x", permanent=False, now=T0, policy=POLICY)
        retry_at = at(order, Deadline.PAYMENT_RETRY)
        assert retry_at is not None
        again = order.pay_again(PayAgain(order_id="o1", buyer_id="b", source_id="card-2"), T0)
        assert [type(m).__name__ for m in again.messages] == ["CapturePayment"]
        assert Deadline.PAYMENT_RETRY.value not in order.timers  # PayAgain took the retry's place
        late = order.fire(Deadline.PAYMENT_RETRY, retry_at, POLICY, None)
        assert (late.messages, order.attempt) == ([], 2)
        assert [m.attempt for m in again.messages if isinstance(m, CapturePayment)] == [2]

    def test_s4_a_refunded_order_keeps_no_timers(self) -> None:
        order = in_escrow()
        refund = order.request_refund("r1", usd(PRICE)).refund
        assert refund is not None
        order.funds_returned(refund)
        order.payment_refunded(refund)
        assert order.status is S.REFUNDED
        assert (order.timers, order.next_due_at) == ({}, None)

    def test_s4_no_reminder_once_the_release_time_has_come(self) -> None:
        order = in_escrow()
        assert order.release_at is not None
        steps = fire_due(order, order.release_at + timedelta(hours=1))
        assert sent(steps) == ["ReleaseFunds"]
