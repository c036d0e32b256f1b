"""P4: what each funding-network answer does to a charge request (services/payment/domain/network.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import Money, NetworkOutcome, NetworkRequestKind
from services.payment.domain.network import MAX_ATTEMPTS, MAX_INQUIRY_BACKOFF, NetworkRequest, RequestState, Step

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CHARGE, STATUS = NetworkRequestKind.CHARGE, NetworkRequestKind.STATUS


def request() -> NetworkRequest:
    return NetworkRequest("charge:o-1", "o-1", "tok_abc12345", Money(amount_minor=4250, currency="USD"))


def test_p4_an_issuer_that_stays_unavailable_is_given_up_after_the_stated_attempts() -> None:
    charge = request()
    steps = [charge.answer(CHARGE, NetworkOutcome.UNAVAILABLE, "issuer_unavailable", NOW) for _ in range(MAX_ATTEMPTS)]
    assert steps == [Step.WAIT] * (MAX_ATTEMPTS - 1) + [Step.FAIL_TRANSIENTLY]
    assert (charge.state, charge.attempts) == (RequestState.DONE, MAX_ATTEMPTS)
    assert (
        charge.answer(CHARGE, NetworkOutcome.CHARGED, None, NOW) is Step.IGNORE
    )  # decided: a late answer decides nothing here (the handler gives a late charge back)


def test_p4_after_the_last_attempt_an_inquiry_that_proves_nothing_is_asked_again_with_a_growing_bounded_backoff() -> (
    None
):
    charge = request()
    for _ in range(MAX_ATTEMPTS - 1):
        charge.answer(CHARGE, NetworkOutcome.UNAVAILABLE, "issuer_unavailable", NOW)
    assert charge.answer(CHARGE, NetworkOutcome.UNKNOWN, "network_timeout", NOW) is Step.WAIT  # the last: lost
    waits = []
    for outcome in [NetworkOutcome.UNAVAILABLE, NetworkOutcome.UNKNOWN] * 20:
        assert charge.answer(STATUS, outcome, "issuer_unavailable", NOW) is Step.WAIT  # never given up unknown
        assert (charge.kind, charge.state) == (STATUS, RequestState.DUE)
        assert charge.not_before is not None
        waits.append(charge.not_before - NOW)
    assert waits[5] > waits[0]
    assert max(waits) <= MAX_INQUIRY_BACKOFF
    assert charge.answer(STATUS, NetworkOutcome.CHARGED, None, NOW) is Step.CAPTURE


def test_p4_an_unknown_outcome_is_asked_about_before_the_charge_is_sent_again() -> None:
    charge = request()
    assert charge.answer(CHARGE, NetworkOutcome.UNKNOWN, "network_timeout", NOW) is Step.WAIT
    assert charge.kind is STATUS
    assert charge.answer(CHARGE, NetworkOutcome.CHARGED, None, NOW) is Step.IGNORE  # only the inquiry's answer counts
    assert charge.answer(STATUS, NetworkOutcome.NOT_FOUND, None, NOW) is Step.WAIT
    assert (charge.kind, charge.attempts) == (CHARGE, 1)  # the inquiry is not a charge
    assert charge.answer(CHARGE, NetworkOutcome.CHARGED, None, NOW) is Step.CAPTURE


def test_p4_a_decline_ends_the_request_at_once() -> None:
    charge = request()
    assert charge.answer(CHARGE, NetworkOutcome.DECLINED, "do_not_honor", NOW) is Step.FAIL_PERMANENTLY
    assert charge.state is RequestState.DONE
