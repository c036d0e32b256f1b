"""N1 and N2 rules without Kafka or a database: who hears of what (the table's rows for the
contracts' newer events), channels per category and preference, the delivery's state machine,
backoff with jitter, the ids that make a notification once, and the notices a recipient holds
until its profile arrives (issue 11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from contracts import (
    AutoReleaseApproaching,
    DisputeAnswered,
    DisputeOpened,
    DisputeReason,
    DisputeResolution,
    DisputeResolved,
    EmailOutcome,
    Event,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    ProtectionExtended,
)
from services.notification.domain.delivery import (
    DeliveryState,
    EmailDelivery,
    RetryPolicy,
    Step,
    message_id_for,
)
from services.notification.domain.notices import HeldNotice
from services.notification.domain.orders import OrderCopy
from services.notification.domain.reasons import Reason, read_reason
from services.notification.domain.recipients import MAX_HELD, Recipient, channels_for
from services.notification.domain.rules import (
    CATEGORY_OF,
    REMINDER_KINDS,
    RULE_OF,
    RULES,
    UNTOLD_ORDER_STATUSES,
    Category,
    NoticeKind,
    notification_id,
    rules_for,
)
from tests.support.examples import example

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(first=timedelta(seconds=1), cap=timedelta(seconds=30), attempts=4)


def someone(*, email: bool = True, marketing: bool = True, address: str | None = "ana@example.com") -> Recipient:
    return Recipient("buyer-1", email=address, email_enabled=email, marketing_enabled=marketing)


class TestChannels:
    def test_n2_security_mail_goes_even_to_who_opted_out_of_everything(self) -> None:
        channels = channels_for(someone(email=False, marketing=False), Category.SECURITY)
        assert channels.inbox
        assert channels.email

    @pytest.mark.parametrize("category", [Category.ACCOUNT, Category.TRANSACTIONAL])
    def test_n2_email_off_keeps_the_inbox(self, category: Category) -> None:
        channels = channels_for(someone(email=False), category)
        assert channels.inbox
        assert not channels.email

    def test_n2_marketing_opt_out_is_every_channel(self) -> None:
        assert channels_for(someone(marketing=False), Category.MARKETING).none

    def test_n2_no_address_no_email(self) -> None:
        assert not channels_for(someone(address=None), Category.SECURITY).email
        assert channels_for(None, Category.TRANSACTIONAL).inbox

    def test_n2_locks_and_suspicious_activity_are_security(self) -> None:
        for kind in (NoticeKind.ACCOUNT_LOCKED, NoticeKind.SUSPICIOUS_ACTIVITY, NoticeKind.FUNDING_SOURCE_ADDED):
            assert CATEGORY_OF[kind] is Category.SECURITY


def delivery() -> EmailDelivery:
    nid = str(notification_id("buyer-1", NoticeKind.PAYMENT_FAILED, "order-1"))
    return EmailDelivery.new(nid, "buyer-1", "ana@example.com", NoticeKind.PAYMENT_FAILED, "order-1")


class TestDelivery:
    def test_n2_the_same_notice_has_the_same_id_and_message_id(self) -> None:
        first = notification_id("buyer-1", NoticeKind.PAYMENT_FAILED, "order-1")
        assert first == notification_id("buyer-1", NoticeKind.PAYMENT_FAILED, "order-1")
        assert first != notification_id("buyer-1", NoticeKind.PAYMENT_FAILED, "order-2")
        assert message_id_for(str(first)) == f"<{first}@notifications.tradeguard>"

    def test_n2_sent_is_final(self) -> None:
        d = delivery()
        assert d.record(EmailOutcome.SENT, 1, "250 OK", NOW, POLICY) is Step.DELIVERED
        assert d.state is DeliveryState.SENT
        assert d.sent_at == NOW
        assert d.record(EmailOutcome.SENT, 2, "250 OK", NOW, POLICY) is Step.IGNORED

    def test_n2_unavailable_retries_with_growing_jittered_waits_then_dead_letters(self) -> None:
        d = delivery()
        waits = []
        for attempt in range(1, POLICY.attempts):
            assert d.record(EmailOutcome.UNAVAILABLE, attempt, "connection refused", NOW, POLICY) is Step.RETRY
            assert d.not_before is not None
            waits.append(d.not_before - NOW)
        assert waits == sorted(waits)
        assert d.record(EmailOutcome.UNAVAILABLE, POLICY.attempts, "connection refused", NOW, POLICY) is Step.DEAD
        assert d.state is DeliveryState.DEAD
        assert d.last_error is not None
        assert "unavailable after 4 attempts: connection refused" in d.last_error

    def test_n2_a_5xx_dead_letters_at_once_with_the_reason(self) -> None:
        d = delivery()
        assert d.record(EmailOutcome.REFUSED, 1, "550 no such user", NOW, POLICY) is Step.DEAD
        assert d.last_error == "refused by the mail server: 550 no such user"

    def test_n2_a_late_or_repeated_answer_changes_nothing(self) -> None:
        d = delivery()
        d.record(EmailOutcome.UNAVAILABLE, 1, "down", NOW, POLICY)
        assert d.record(EmailOutcome.UNAVAILABLE, 1, "down", NOW, POLICY) is Step.IGNORED
        assert d.attempts == 1

    def test_n2_redrive_only_from_dead_and_with_fresh_attempts(self) -> None:
        d = delivery()
        assert not d.redrive()
        d.record(EmailOutcome.REFUSED, 1, "550", NOW, POLICY)
        assert d.redrive()
        assert (d.state, d.attempts, d.not_before) == (DeliveryState.PENDING, 0, None)

    def test_stale_reminder_is_suppressed_only_while_pending(self) -> None:
        d = delivery()
        assert d.suppress()
        assert d.state is DeliveryState.SUPPRESSED
        sent = delivery()
        sent.record(EmailOutcome.SENT, 1, "250", NOW, POLICY)
        assert not sent.suppress()


class TestBackoff:
    def test_n2_waits_double_up_to_the_cap_within_the_jitter_band(self) -> None:
        for attempt in range(1, 10):
            ceiling = min(POLICY.cap, POLICY.first * 2 ** (attempt - 1))
            wait = POLICY.delay("n-1", attempt)
            assert ceiling / 2 <= wait <= ceiling

    def test_n2_jitter_spreads_deliveries_that_failed_together_and_is_repeatable(self) -> None:
        waits = {POLICY.delay(f"n-{i}", 3) for i in range(20)}
        assert len(waits) > 10
        assert POLICY.delay("n-1", 3) == POLICY.delay("n-1", 3)


# ---------------------------------------------------------------------- N1: who hears of what (contracts 0.6.0)


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def payment_failed(*, permanent: bool, attempt: int = 1) -> PaymentFailed:
    return PaymentFailed(
        order_id="order-1",
        buyer_id="buyer-1",
        amount=usd(12999),
        reason="insufficient_funds" if permanent else "issuer_unavailable",
        detail="for logs",
        permanent=permanent,
        attempt=attempt,
    )


def told(event: Event) -> set[tuple[NoticeKind, str]]:
    return {(rule.kind, getattr(event, rule.recipient)) for rule in rules_for(event)}


NEXT_WEEK = NOW + timedelta(days=7)


class TestWhoHearsOfWhat:
    def test_n1_a_transient_payment_failure_is_not_told_a_decline_is(self) -> None:
        assert told(payment_failed(permanent=False)) == set()  # the saga retries it (S2)
        assert told(payment_failed(permanent=True)) == {(NoticeKind.PAYMENT_FAILED, "buyer-1")}

    def test_n1_each_payment_attempt_is_its_own_notice_and_the_first_keeps_the_order_id(self) -> None:
        (rule,) = rules_for(payment_failed(permanent=True))
        first = rule.reference(payment_failed(permanent=True), None)
        again = rule.reference(payment_failed(permanent=True, attempt=2), None)
        assert first == "order-1"  # the id notices had before attempts existed: no second notice after an upgrade
        assert again != first
        assert rule.reference(payment_failed(permanent=True, attempt=2), None) == again

    def test_n1_a_failure_is_not_told_once_the_capture_was_or_the_order_ended(self) -> None:
        (rule,) = rules_for(payment_failed(permanent=True))
        assert rule.superseded is not None
        assert not rule.superseded(OrderCopy("order-1", status=OrderStatus.PAYMENT_PENDING))
        assert rule.superseded(OrderCopy("order-1", status=OrderStatus.PAYMENT_PENDING, captured=True))
        assert rule.superseded(OrderCopy("order-1", status=OrderStatus.CANCELLED))
        (captured,) = rules_for(PaymentCaptured(order_id="order-1", buyer_id="buyer-1", amount=usd(1)))
        assert captured.superseded is None  # a success is always told

    def test_n1_auto_release_approaching_reminds_the_buyer_and_goes_stale_with_the_order(self) -> None:
        event = AutoReleaseApproaching(
            order_id="order-1", buyer_id="buyer-1", seller_id="seller-1", amount=usd(100), release_at=NEXT_WEEK
        )
        (rule,) = rules_for(event)
        assert (rule.kind, rule.recipient, rule.reminder) == (NoticeKind.AUTO_RELEASE_APPROACHING, "buyer_id", True)
        assert rule.kind in REMINDER_KINDS

    def test_n1_protection_extended_tells_buyer_and_seller(self) -> None:
        event = ProtectionExtended(order_id="order-1", buyer_id="b", seller_id="s", release_at=NEXT_WEEK)
        assert told(event) == {(NoticeKind.PROTECTION_EXTENDED, "b"), (NoticeKind.PROTECTION_EXTENDED_SELLER, "s")}

    def test_n1_a_dispute_is_told_to_both_parties_at_each_step_the_answer_to_the_buyer(self) -> None:
        opened = DisputeOpened(
            order_id="order-1",
            dispute_id="d-1",
            buyer_id="b",
            seller_id="s",
            amount=usd(100),
            reason=DisputeReason.DAMAGED,
            answer_by=NEXT_WEEK,
        )
        answered = DisputeAnswered(order_id="order-1", dispute_id="d-1", buyer_id="b", seller_id="s", statement="x")
        resolved = DisputeResolved(
            order_id="order-1",
            dispute_id="d-1",
            buyer_id="b",
            seller_id="s",
            resolution=DisputeResolution.SPLIT,
            refund=usd(40),
            release=usd(60),
            decided_by="operator:ops-1",
            reason="half the items were damaged",
        )
        assert told(opened) == {(NoticeKind.DISPUTE_OPENED, "b"), (NoticeKind.DISPUTE_OPENED_SELLER, "s")}
        assert told(answered) == {(NoticeKind.DISPUTE_ANSWERED, "b")}
        assert told(resolved) == {(NoticeKind.DISPUTE_RESOLVED, "b"), (NoticeKind.DISPUTE_RESOLVED_SELLER, "s")}
        (seller_rule,) = [r for r in rules_for(opened) if r.recipient == "seller_id"]
        assert seller_rule.reminder  # "answer by": stale once the order is final

    @pytest.mark.parametrize(
        "status",
        [OrderStatus.PAYMENT_RETRYING, OrderStatus.PAYMENT_FAILED, OrderStatus.DISPUTED, OrderStatus.COMPENSATING],
    )
    def test_n1_the_new_order_statuses_are_not_told_by_themselves(self, status: OrderStatus) -> None:
        event = OrderStatusChanged(order_id="o", buyer_id="b", seller_id="s", amount=usd(1), status=status)
        assert rules_for(event) == ()
        assert status in UNTOLD_ORDER_STATUSES

    def test_n1_every_order_status_is_told_by_a_rule_or_named_untold_with_a_reason(self) -> None:
        def is_told(status: OrderStatus) -> bool:
            event = OrderStatusChanged(order_id="o", buyer_id="b", seller_id="s", amount=usd(1), status=status)
            return bool(rules_for(event))

        told_statuses = {s for s in OrderStatus if is_told(s)}
        assert told_statuses == {OrderStatus.COMPLETED, OrderStatus.CANCELLED}
        assert set(UNTOLD_ORDER_STATUSES) == set(OrderStatus) - told_statuses
        assert all(UNTOLD_ORDER_STATUSES.values())

    def test_n1_every_reminder_is_found_by_its_order_when_the_order_ends(self) -> None:
        """The status change that ends an order suppresses its reminders by (recipient, kind, order id)."""
        for rule in RULES:
            if rule.reminder:
                event = example(rule.event)
                assert rule.reference(event, None) == event.order_id, rule.kind  # type: ignore[attr-defined]

    def test_n1_each_kind_has_one_rule(self) -> None:
        assert len(RULE_OF) == len(RULES)


# ---------------------------------------------------------------------- issue 11: held until the profile arrives


def held_notice(n: int = 1) -> HeldNotice:
    event = payment_failed(permanent=True).model_copy(update={"amount": usd(n)})
    nid = str(notification_id("buyer-1", NoticeKind.PAYMENT_FAILED, f"order-1:{n}"))
    return HeldNotice.of(nid, NoticeKind.PAYMENT_FAILED, event, "Visa •••• 4242")


class TestHeld:
    def test_n1_a_held_notice_keeps_the_event_as_its_contract_reads_it(self) -> None:
        notice = held_notice()
        again = HeldNotice.from_json(json.loads(json.dumps(notice.to_json())))
        assert again == notice
        assert again.event() == payment_failed(permanent=True).model_copy(update={"amount": usd(1)})
        assert again.card == "Visa •••• 4242"

    def test_n1_a_recipient_holds_notices_in_order_until_its_profile_releases_them(self) -> None:
        recipient = Recipient("buyer-1")
        assert recipient.held is None
        assert recipient.hold(held_notice(1)) is None
        assert recipient.hold(held_notice(2)) is None
        assert [n.notification_id for n in recipient.release()] == [
            held_notice(1).notification_id,
            held_notice(2).notification_id,
        ]
        assert recipient.held is None
        assert recipient.release() == ()

    def test_n1_holding_never_changes_the_stored_value_in_place(self) -> None:
        """The batch compares a row with the one it read: a value changed in place would not be written."""
        recipient = Recipient("buyer-1")
        recipient.hold(held_notice(1))
        before = recipient.held
        recipient.hold(held_notice(2))
        assert before is not None
        assert recipient.held != before
        assert len(json.loads(before)) == 1

    def test_n1_past_the_cap_the_oldest_held_notice_is_let_go(self) -> None:
        recipient = Recipient("seller-never-registered")
        for n in range(1, MAX_HELD + 1):
            assert recipient.hold(held_notice(n)) is None
        dropped = recipient.hold(held_notice(MAX_HELD + 1))
        assert dropped == held_notice(1)
        kept = recipient.release()
        assert len(kept) == MAX_HELD
        assert kept[0] == held_notice(2)

    def test_n2_a_held_email_has_no_address_is_sent_once_released_and_suppressible(self) -> None:
        nid = str(notification_id("buyer-1", NoticeKind.FUNDS_HELD, "order-1"))
        held = EmailDelivery.held(nid, "buyer-1", NoticeKind.FUNDS_HELD, "order-1")
        assert (held.state, held.address, held.message_id) == (DeliveryState.HELD, None, message_id_for(nid))
        assert held.record(EmailOutcome.UNAVAILABLE, 1, "down", NOW, POLICY) is Step.RETRY
        assert held.state is DeliveryState.PENDING
        stale = EmailDelivery.held(nid, "buyer-1", NoticeKind.FUNDS_HELD, "order-1")
        assert stale.suppress()
        assert stale.state is DeliveryState.SUPPRESSED
        assert stale.record(EmailOutcome.SENT, 1, "250", NOW, POLICY) is Step.IGNORED


class TestReasons:
    @pytest.mark.parametrize(
        ("reason", "read"),
        [
            ("insufficient_funds: the wallet holds 10.00", Reason(code="insufficient_funds")),
            (
                "issuer_unavailable: the issuer did not answer (gave up after 3 attempts)",
                Reason(code="issuer_unavailable", gave_up_after=3),
            ),
            (
                "payment_window_expired: not paid within the payment window (last failure: card_expired: expired 01/25)",
                Reason(code="card_expired", unpaid=True),
            ),
            ("payment_window_expired: not paid within the payment window", Reason(unpaid=True)),
            ("cancelled by ops-1: the buyer asked", Reason()),
            ("escrow refused the hold (frozen): x", Reason()),
            (None, Reason()),
        ],
    )
    def test_n1_a_cancellation_reason_in_the_sagas_words_is_read_for_the_notice(
        self, reason: str | None, read: Reason
    ) -> None:
        assert read_reason(reason) == read
