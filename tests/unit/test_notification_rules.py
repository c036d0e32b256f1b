"""N2 rules without Kafka or a database: channels per category and preference, the delivery's
state machine, backoff with jitter, and the ids that make a notification once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import EmailOutcome
from services.notification.domain.delivery import (
    DeliveryState,
    EmailDelivery,
    RetryPolicy,
    Step,
    message_id_for,
)
from services.notification.domain.recipients import Recipient, channels_for
from services.notification.domain.rules import CATEGORY_OF, Category, NoticeKind, notification_id

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
