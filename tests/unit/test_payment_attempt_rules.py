"""S2, P4: the payment rules for attempts at paying an order (services/payment/domain/payments.py)
and the account's debit reference per attempt (services/account/domain/wallets.py). No Kafka, no
database."""

from __future__ import annotations

import pytest

from contracts import FundingType, Money
from services.account.domain.wallets import MovementKind, Wallet, payment_debit_reference
from services.payment.domain.payments import (
    AttemptAsked,
    Payment,
    PaymentInProgress,
    PaymentStatus,
    per_attempt,
    wallet_leg_reference,
)


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def failed_split(attempt: int = 1) -> Payment:
    """A split payment whose card leg failed: its wallet leg was paid, its share counted."""
    payment = Payment(
        "o-1",
        "buyer-1",
        usd(10_000),
        attempt=attempt,
        funding_type=FundingType.CARD,
        limit_reserved=usd(10_000),
        limit_day="2026-12-01",
        limit_month="2026-12-01",
        wallet_leg=usd(4_000),
        source_leg=usd(6_000),
        quote_id="q-1",
        pricing={"breakdowns": {}},
    )
    assert payment.fail("issuer_unavailable", "the issuer did not answer")
    return payment


def test_s2_attempt_1_keeps_the_ids_it_had_before_attempts_and_later_ones_get_their_own() -> None:
    assert per_attempt("charge", "order-7", 1) == "charge:order-7"
    assert per_attempt("charge", "order-7", 2) == "charge:order-7:2"
    assert per_attempt("return-wallet-leg", "order-7", 12) == "return-wallet-leg:order-7:12"
    assert Payment("order-7", "b", usd(1), attempt=3).attempt_key("captured") == "captured:order-7:3"
    # The wallet leg comes back under the reference the account debited it under.
    assert wallet_leg_reference("order-7", 1) is None  # CreditWallet's default: the order id
    assert (wallet_leg_reference("order-7", 2), payment_debit_reference("order-7", 2)) == ("order-7:2", "order-7:2")
    assert payment_debit_reference("order-7", 1) == payment_debit_reference("order-7") == "order-7"


def test_s2_what_each_attempt_number_is_to_a_failed_payment() -> None:
    payment = failed_split(attempt=2)
    assert payment.attempt_asked(2) is AttemptAsked.REPEAT
    assert payment.attempt_asked(1) is AttemptAsked.STALE
    assert payment.attempt_asked(3) is AttemptAsked.NEW
    assert payment.attempt_asked(9) is AttemptAsked.NEW  # numbers may skip (the saga's own count)


def test_s2_a_later_attempt_of_a_paid_order_is_told_it_was_paid() -> None:
    payment = Payment("o-1", "b", usd(100))
    assert payment.capture("ch_1")
    assert payment.attempt_asked(2) is AttemptAsked.PAID
    assert payment.attempt_asked(1) is AttemptAsked.REPEAT


def test_s2_a_later_attempt_while_the_current_one_is_pending_is_refused() -> None:
    payment = Payment("o-1", "b", usd(100), attempt=2)
    with pytest.raises(PaymentInProgress) as refused:
        payment.attempt_asked(3)
    assert refused.value.code == "payment_in_progress"
    assert "attempt 2 is still in progress" in refused.value.reason
    assert payment.attempt_asked(1) is AttemptAsked.STALE  # an older one is still only stale


def test_s2_a_new_attempt_forgets_everything_the_failed_one_decided() -> None:
    payment = failed_split()
    payment.start_attempt(2, "q-2")
    assert payment.attempt == 2
    assert (payment.status, payment.failure_reason, payment.failure_detail) == (PaymentStatus.PENDING, None, None)
    assert (payment.funding_type, payment.charge_id, payment.pricing, payment.quote_id) == (None, None, None, "q-2")
    assert (payment.limit_reserved, payment.limit_day, payment.limit_month) == (None, None, None)
    assert (payment.wallet_leg, payment.source_leg) == (None, None)
    assert (payment.order_id, payment.buyer_id, payment.amount) == ("o-1", "buyer-1", usd(10_000))


def test_s2_only_a_failed_payment_starts_a_later_attempt() -> None:
    pending = Payment("o-1", "b", usd(100))
    with pytest.raises(ValueError, match="cannot follow"):
        pending.start_attempt(2, None)
    captured = Payment("o-1", "b", usd(100))
    captured.capture()
    with pytest.raises(ValueError, match="cannot follow"):
        captured.start_attempt(2, None)
    failed = failed_split(attempt=2)
    with pytest.raises(ValueError, match="cannot follow"):
        failed.start_attempt(2, None)  # the same attempt again is a repeat, not a new one


def test_s2_an_answer_counts_only_for_the_current_attempt() -> None:
    payment = Payment("o-1", "buyer-1", usd(100), attempt=2)
    assert payment.answers("buyer-1", usd(100), 2)
    assert not payment.answers("buyer-1", usd(100), 1)  # a late answer to the failed attempt 1
    assert not payment.answers("buyer-1", usd(100), 3)
    assert not payment.answers("someone-else", usd(100), 2)


def test_s2_each_attempt_reaches_its_own_outcome_once() -> None:
    payment = failed_split()
    assert not payment.capture()  # attempt 1 failed: nothing captures it
    payment.start_attempt(2, None)
    assert payment.capture("ch_2")
    assert not payment.fail("do_not_honor", "late")
    assert (payment.status, payment.attempt, payment.charge_id) == (PaymentStatus.CAPTURED, 2, "ch_2")


def test_s2_the_wallet_is_debited_once_per_attempt() -> None:
    wallet = Wallet.open("buyer-1", "USD")
    wallet.top_up(usd(10_000), "t-1")
    first = wallet.debit(usd(4_000), payment_debit_reference("o-1", 1))
    wallet.credit(usd(4_000), "o-1")  # the failed split's wallet leg, given back
    second = wallet.debit(usd(4_000), payment_debit_reference("o-1", 2))
    assert [(m.kind, m.reference) for m in (first, second)] == [
        (MovementKind.DEBIT, "o-1"),
        (MovementKind.DEBIT, "o-1:2"),
    ]
    assert wallet.balance == usd(6_000)
