"""Feature P6: refund rules (services/payment/domain/refunds.py) and the network request of a
refund's card or bank part (services/payment/domain/network.py).

The worked examples price an order at USD 100.00 and say what the buyer paid in their own
currency; the properties check the rounding rule against an independent computation in
Decimal, for a zero-, two- and three-decimal currency (JPY, USD, KWD).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import FundingType, Money, NetworkOutcome, NetworkRequestKind
from services.payment.domain.network import MAX_ATTEMPTS, NetworkRequest, RequestState, Step
from services.payment.domain.payments import Payment, PaymentStatus
from services.payment.domain.pricing import Breakdown
from services.payment.domain.refunds import (
    PaymentNotCaptured,
    Refund,
    RefundChargeUnknown,
    RefundConflict,
    RefundCurrencyMismatch,
    RefundExceedsRemaining,
    RefundNotPositive,
    RefundStatus,
    accept_refund,
    buyer_total,
    paid_legs,
    refundable,
)
from services.payment.network import Declined, NotFound, Refunded, Unavailable, Unknown
from services.payment.worker import _outcome

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WALLET, CARD, BANK = FundingType.WALLET, FundingType.CARD, FundingType.BANK_ACCOUNT
CURRENCIES = ("JPY", "USD", "KWD")  # 0, 2 and 3 decimals


def money(minor: int, currency: str = "USD") -> Money:
    return Money(amount_minor=minor, currency=currency)


def captured(
    price: Money,
    paid: Money | None = None,
    *,
    funding: FundingType = WALLET,
    wallet_leg: int | None = None,
    source_leg: int | None = None,
    charge_id: str | None = "ch_test1",
) -> Payment:
    """A captured payment of ``price`` for which the buyer paid ``paid`` (their currency)."""
    paid = paid or price
    zero = money(0, paid.currency)
    breakdown = Breakdown(
        amount=price,
        converted=paid,
        rate=None,
        fee=zero,
        discount=zero,
        total=paid,
        settlement=price,
        funding_type=funding,
    )
    return Payment(
        "o-1",
        "buyer-1",
        price,
        status=PaymentStatus.CAPTURED,
        funding_type=funding,
        charge_id=charge_id if funding is not WALLET else None,
        wallet_leg=None if wallet_leg is None else money(wallet_leg, paid.currency),
        source_leg=None if source_leg is None else money(source_leg, paid.currency),
        pricing={"breakdowns": {funding.value: breakdown.to_dict()}},
    )


def refund(payment: Payment, minor: int, refund_id: str = "r-1") -> Refund:
    return accept_refund(payment, payment.order_id, refund_id, money(minor, payment.amount.currency))


# --- what the buyer gets back -----------------------------------------------------------------


def test_p6_a_full_refund_gives_back_exactly_what_was_paid_at_the_original_rate() -> None:
    payment = captured(money(10_000), money(15_923, "JPY"))  # USD 100.00 paid as JPY 15,923
    given = refund(payment, 10_000)
    assert (given.amount, given.buyer_amount, given.wallet_part) == (
        money(10_000),
        money(15_923, "JPY"),
        given.buyer_amount,
    )
    assert refundable(payment) == money(0)


def test_p6_partials_are_rounded_cumulatively_so_they_end_exactly_at_what_was_paid() -> None:
    payment = captured(money(10_000), money(15_001, "JPY"))
    # 33.33 of 100.00: 15,001 x 0.3333 = 4,999.83 -> 5,000; 66.66: 9,999.67 -> 10,000; the rest: 5,001.
    amounts = [refund(payment, minor, f"r-{i}").buyer_amount.amount_minor for i, minor in enumerate((3333, 3333, 3334))]
    assert amounts == [5000, 5000, 5001]
    assert payment.refunded_to_buyer == money(15_001, "JPY")


def test_p6_a_half_minor_unit_rounds_up_and_the_next_refund_makes_up_for_it() -> None:
    payment = captured(money(10_000), money(15_001, "JPY"))
    assert refund(payment, 5000, "r-1").buyer_amount == money(7501, "JPY")  # 7,500.5 -> 7,501
    assert refund(payment, 5000, "r-2").buyer_amount == money(7500, "JPY")


def test_p6_a_refund_too_small_to_be_worth_a_minor_unit_gives_back_nothing_yet() -> None:
    payment = captured(money(10_000, "JPY"), money(4_000))  # JPY 10,000 paid as USD 40.00
    assert refund(payment, 1, "r-1").buyer_amount == money(0)  # JPY 1 is 0.4 cents: rounds to nothing
    assert refund(payment, 9_999, "r-2").buyer_amount == money(4_000)


# --- where it goes ----------------------------------------------------------------------------


def test_p6_a_split_is_refunded_card_first_then_wallet() -> None:
    payment = captured(money(10_000), funding=CARD, wallet_leg=4000, source_leg=6000)
    first = refund(payment, 7000, "r-1")
    assert (first.source_part, first.wallet_part) == (money(6000), money(1000))
    assert first.legs == [(CARD, money(6000)), (WALLET, money(1000))]
    second = refund(payment, 3000, "r-2")
    assert (second.source_part, second.wallet_part, second.legs) == (money(0), money(3000), [(WALLET, money(3000))])
    assert (payment.source_refunded, payment.wallet_refunded) == (money(6000), money(4000))


def test_p6_a_wallet_payment_goes_back_to_the_wallet_and_a_card_or_bank_payment_to_its_source() -> None:
    wallet = refund(captured(money(5000), funding=WALLET, wallet_leg=5000), 2000)
    assert (wallet.source_part, wallet.wallet_part, wallet.needs_network) == (money(0), money(2000), False)
    card = refund(captured(money(5000), funding=CARD, source_leg=5000), 2000)
    assert (card.source_part, card.wallet_part, card.legs) == (money(2000), money(0), [(CARD, money(2000))])
    bank = refund(captured(money(5000), funding=BANK), 2000)  # no legs recorded: all from the bank account
    assert bank.legs == [(BANK, money(2000))]


def test_p6_a_split_the_wallet_covered_alone_goes_back_to_the_wallet() -> None:
    payment = captured(money(5000), funding=CARD, wallet_leg=5000, source_leg=0, charge_id=None)
    assert paid_legs(payment) == (money(0), money(5000))
    assert refund(payment, 5000).legs == [(WALLET, money(5000))]


# --- refusals ---------------------------------------------------------------------------------


def test_p6_a_refund_beyond_what_remains_is_refused_naming_what_remains() -> None:
    payment = captured(money(10_000))
    refund(payment, 8500, "r-1")
    with pytest.raises(RefundExceedsRemaining) as refused:
        refund(payment, 3000, "r-2")
    assert refused.value.code == "refund_exceeds_remaining"
    assert refused.value.reason == "a refund of 30.00 USD exceeds what remains refundable of order o-1: 15.00 USD"
    assert refused.value.remaining == money(1500)
    assert payment.refunded == money(8500)  # the refused refund counted nothing


@pytest.mark.parametrize("status", [PaymentStatus.PENDING, PaymentStatus.FAILED, None])
def test_p6_only_a_captured_payment_is_refunded(status: PaymentStatus | None) -> None:
    payment = None if status is None else captured(money(1000))
    if payment is not None and status is not None:
        payment.status = status
    with pytest.raises(PaymentNotCaptured) as refused:
        accept_refund(payment, "o-1", "r-1", money(100))
    assert refused.value.code == "payment_not_captured"


def test_p6_a_refund_in_another_currency_than_the_price_or_of_nothing_is_refused() -> None:
    payment = captured(money(1000), money(150_000, "JPY"))
    with pytest.raises(RefundCurrencyMismatch) as mismatch:
        accept_refund(payment, "o-1", "r-1", money(100, "JPY"))  # the buyer's currency is not the price's
    assert mismatch.value.code == "currency_mismatch"
    with pytest.raises(RefundNotPositive) as nothing:
        accept_refund(payment, "o-1", "r-1", money(0))
    assert nothing.value.code == "refund_amount_not_positive"


def test_p6_a_card_leg_without_the_networks_charge_id_cannot_be_refunded() -> None:
    payment = captured(money(1000), funding=CARD, source_leg=1000, charge_id=None)
    with pytest.raises(RefundChargeUnknown):
        refund(payment, 500)
    assert payment.refunded is None


def test_p6_a_refund_id_asked_again_with_other_details_is_a_conflict() -> None:
    given = refund(captured(money(1000)), 500)
    given.check_same_request("o-1", money(500), "")
    with pytest.raises(RefundConflict) as conflict:
        given.check_same_request("o-1", money(501), "")
    assert conflict.value.code == "idempotency_conflict"


def test_p6_a_refund_ends_once() -> None:
    given = refund(captured(money(1000), funding=CARD), 500)
    assert given.status is RefundStatus.PENDING
    assert given.complete(money(500))
    assert not given.complete(money(0))
    assert not given.fail("issuer_unavailable", "late")
    assert (given.status, given.remaining) == (RefundStatus.REFUNDED, money(500))


# --- properties -------------------------------------------------------------------------------


def _oracle(paid: int, price: int, refunded: int) -> int:
    """round_half_up(paid x refunded / price) in Decimal, with precision to spare."""
    with localcontext() as context:
        context.prec = 80
        return int((Decimal(paid) * refunded / price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@st.composite
def refund_runs(draw: st.DrawFn) -> tuple[Payment, list[int]]:
    """A captured payment (any of the three currencies each side, split or not) and a sequence
    of partial refunds that sums to its price."""
    seller, buyer = draw(st.sampled_from(CURRENCIES)), draw(st.sampled_from(CURRENCIES))
    price = draw(st.integers(1, 10**9))
    paid = draw(st.integers(0, 10**11))
    funding = draw(st.sampled_from([WALLET, CARD, BANK]))
    source = 0 if funding is WALLET else draw(st.integers(0, paid))
    payment = captured(
        money(price, seller),
        money(paid, buyer),
        funding=funding,
        wallet_leg=paid - source,
        source_leg=None if funding is WALLET else source,
    )
    cuts = draw(st.lists(st.integers(1, price - 1), max_size=8, unique=True)) if price > 1 else []
    bounds = [0, *sorted(cuts), price]
    return payment, [b - a for a, b in pairwise(bounds)]


@settings(database=None, max_examples=300)
@given(refund_runs())
def test_p6_property_partials_summing_to_the_price_give_back_exactly_what_was_paid(
    run: tuple[Payment, list[int]],
) -> None:
    payment, parts = run
    paid, price = payment.paid.amount_minor, payment.amount.amount_minor
    source_leg, wallet_leg = paid_legs(payment)
    given, refunded = [], 0
    for i, part in enumerate(parts):
        one = refund(payment, part, f"r-{i}")
        refunded += part
        given.append(one)
        assert one.buyer_amount.amount_minor >= 0
        assert one.source_part.amount_minor + one.wallet_part.amount_minor == one.buyer_amount.amount_minor
        # Cumulative and never more than paid: the rule, checked against Decimal.
        assert payment.refunded_to_buyer == money(_oracle(paid, price, refunded), payment.paid.currency)
        assert payment.refunded_to_buyer.amount_minor <= paid
        # Reverse order of the split: the wallet gets something only once the card leg is all back.
        if one.wallet_part.amount_minor > 0:
            assert payment.source_refunded == source_leg
    assert sum(one.buyer_amount.amount_minor for one in given) == paid
    assert (payment.source_refunded, payment.wallet_refunded) == (source_leg, wallet_leg)
    assert refundable(payment).amount_minor == 0
    with pytest.raises(RefundExceedsRemaining):
        refund(payment, 1, "r-after")


@settings(database=None, max_examples=300)
@given(st.integers(0, 10**11), st.integers(1, 10**9), st.data())
def test_p6_property_the_share_is_monotonic_and_exact_at_both_ends(paid: int, price: int, data: st.DataObject) -> None:
    low = data.draw(st.integers(0, price))
    high = data.draw(st.integers(low, price))
    assert buyer_total(paid, price, low) <= buyer_total(paid, price, high) <= paid
    assert buyer_total(paid, price, low) == _oracle(paid, price, low)
    assert (buyer_total(paid, price, 0), buyer_total(paid, price, price)) == (0, paid)


# --- the card or bank part on the network -----------------------------------------------------

REFUND_KIND, REFUND_STATUS = NetworkRequestKind.REFUND, NetworkRequestKind.REFUND_STATUS


def refund_request() -> NetworkRequest:
    return NetworkRequest("refund:r-1", "o-1", "", money(2500), kind=REFUND_KIND, charge_id="ch_test1")


def test_p6_a_refunded_answer_ends_the_request() -> None:
    request = refund_request()
    assert request.answer(REFUND_KIND, NetworkOutcome.REFUNDED, None, NOW) is Step.REFUNDED
    assert (request.state, request.attempts) == (RequestState.DONE, 1)
    assert request.answer(REFUND_KIND, NetworkOutcome.REFUNDED, None, NOW) is Step.IGNORE


def test_p6_an_unknown_refund_is_asked_about_before_it_is_sent_again() -> None:
    request = refund_request()
    assert request.answer(REFUND_KIND, NetworkOutcome.UNKNOWN, "network_timeout", NOW) is Step.WAIT
    assert request.kind is REFUND_STATUS
    assert request.answer(REFUND_KIND, NetworkOutcome.REFUNDED, None, NOW) is Step.IGNORE  # only the inquiry counts
    assert request.answer(REFUND_STATUS, NetworkOutcome.UNKNOWN, "connection_lost", NOW) is Step.WAIT
    assert request.kind is REFUND_STATUS  # still unknown: ask again
    assert request.answer(REFUND_STATUS, NetworkOutcome.NOT_FOUND, None, NOW) is Step.WAIT
    assert (request.kind, request.attempts) == (REFUND_KIND, 1)  # never applied: send it again
    assert request.not_before is not None
    assert request.not_before > NOW
    assert request.answer(REFUND_KIND, NetworkOutcome.REFUNDED, None, NOW) is Step.REFUNDED


def test_p6_an_inquiry_that_finds_the_refund_applied_ends_it() -> None:
    request = refund_request()
    request.answer(REFUND_KIND, NetworkOutcome.UNKNOWN, "network_timeout", NOW)
    assert request.answer(REFUND_STATUS, NetworkOutcome.REFUNDED, None, NOW) is Step.REFUNDED
    assert request.attempts == 1


def test_p6_an_issuer_that_stays_unavailable_hands_the_refund_to_an_operator() -> None:
    request = refund_request()
    steps = [
        request.answer(REFUND_KIND, NetworkOutcome.UNAVAILABLE, "issuer_unavailable", NOW) for _ in range(MAX_ATTEMPTS)
    ]
    assert steps == [Step.WAIT] * (MAX_ATTEMPTS - 1) + [Step.FAIL_TRANSIENTLY]
    assert request.state is RequestState.DONE


def test_p6_a_declined_refund_fails_at_once() -> None:
    request = refund_request()
    assert request.answer(REFUND_KIND, NetworkOutcome.DECLINED, "network_request_refused", NOW) is Step.FAIL_PERMANENTLY


def test_p6_the_worker_reports_each_refund_answer_as_its_outcome() -> None:
    assert _outcome(Refunded("re_1", money(100), money(0))) == (NetworkOutcome.REFUNDED, None, None)
    assert _outcome(Unknown("network_timeout")) == (NetworkOutcome.UNKNOWN, None, "network_timeout")
    assert _outcome(Unavailable("issuer_unavailable"))[0] is NetworkOutcome.UNAVAILABLE
    assert _outcome(NotFound()) == (NetworkOutcome.NOT_FOUND, None, None)
    assert _outcome(Declined("network_request_refused"))[0] is NetworkOutcome.DECLINED
