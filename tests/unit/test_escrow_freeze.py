"""Escrow E3: a hold frozen by a dispute, rule by rule (the table in services/escrow/domain/holds.py).
A freeze moves no money; only the freezing dispute's resolution ends it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Money
from services.escrow.domain import EscrowHold, EscrowRuleBroken, HoldStatus

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
PRICE = 4250


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def held() -> EscrowHold:
    hold, _transfers = EscrowHold.place("o1", "b1", "s1", usd(PRICE), breakdown=None, now=NOW)
    return hold


def frozen(dispute_id: str = "d1") -> EscrowHold:
    hold = held()
    assert hold.freeze(dispute_id, NOW) is True
    return hold


def test_e3_a_freeze_marks_the_hold_and_moves_nothing() -> None:
    hold = held()
    reservation = hold.reservation()
    assert hold.freeze("d1", LATER) is True
    assert (hold.frozen, hold.frozen_by, hold.frozen_at, hold.status) == (True, "d1", LATER, HoldStatus.HELD)
    assert hold.reservation() == reservation  # the seller's reservation stands as it was
    assert hold.still_held == usd(PRICE)


def test_e3_the_same_freeze_again_is_a_repeat_that_changes_nothing() -> None:
    hold = frozen()
    before = copy.deepcopy(hold)
    assert hold.freeze("d1", LATER) is False
    assert hold == before  # not even the time it was frozen


@pytest.mark.parametrize(
    ("act", "code", "says"),
    [
        pytest.param(lambda h: h.freeze("d2", NOW), "hold_frozen", "dispute d2 cannot freeze it", id="freeze-d2"),
        pytest.param(lambda h: h.release(), "hold_frozen", "nothing can be released without a dispute", id="release"),
        pytest.param(lambda h: h.release("d2"), "hold_frozen", "released for dispute d2", id="release-d2"),
        pytest.param(
            lambda h: h.give_back("r1", usd(1), NOW), "hold_frozen", "given back without a dispute", id="return"
        ),
        pytest.param(
            lambda h: h.give_back("r1", usd(1), NOW, "d2"), "hold_frozen", "given back for dispute d2", id="return-d2"
        ),
        pytest.param(
            lambda h: h.give_back("r1", usd(PRICE + 1), NOW, "d1"), "exceeds_held", "holds 42.50 USD", id="too-much"
        ),
    ],
)
def test_e3_a_frozen_hold_refuses_all_but_its_disputes_resolution_and_changes_nothing(
    act: Callable[[EscrowHold], object], code: str, says: str
) -> None:
    hold = frozen()
    before = copy.deepcopy(hold)
    with pytest.raises(EscrowRuleBroken) as caught:
        act(hold)
    assert caught.value.code == code
    assert says in caught.value.reason
    if code == "hold_frozen":
        assert "frozen by dispute d1 since 2026-03-01T12:00:00+00:00" in caught.value.reason
    assert hold == before


@pytest.mark.parametrize(
    "act",
    [
        pytest.param(lambda h: h.release("d1"), id="release"),
        pytest.param(lambda h: h.give_back("r1", usd(1), NOW, "d1"), id="return"),
    ],
)
def test_e3_a_disputes_resolution_on_a_hold_it_did_not_freeze_is_refused(act: Callable[[EscrowHold], object]) -> None:
    hold = held()
    with pytest.raises(EscrowRuleBroken) as caught:
        act(hold)
    assert caught.value.code == "not_frozen"
    assert caught.value.reason == (
        "order o1's hold is not frozen by dispute d1: a dispute's resolution applies only to a hold that dispute froze"
    )
    assert not hold.frozen


def test_e3_a_split_returns_the_buyers_part_stays_frozen_then_releases_the_rest() -> None:
    hold = frozen()
    given, transfers = hold.give_back("d1:refund", usd(1500), NOW, "d1")
    assert (given.amount, given.still_held, given.dispute_id) == (usd(1500), usd(PRICE - 1500), "d1")
    assert [t.kind for t in transfers] == ["void_pending", "single_phase", "pending"]
    assert hold.frozen  # the rest is still the dispute's to decide
    posts = hold.release("d1")
    assert posts is not None
    assert posts[0].amount == usd(PRICE - 1500)
    assert (hold.status, hold.frozen, hold.frozen_by) == (HoldStatus.RELEASED, False, "d1")
    assert hold.release("d1") is None  # a repeat of the resolution
    assert hold.release() is None  # and of a plain release: it is released
    with pytest.raises(EscrowRuleBroken) as caught:
        hold.release("d2")
    assert caught.value.code == "not_frozen"


def test_e3_a_full_refund_ends_the_freeze_with_the_hold() -> None:
    hold = frozen()
    hold.give_back("d1:refund", usd(PRICE), NOW, "d1")
    assert (hold.status, hold.frozen, hold.reservation_id) == (HoldStatus.RETURNED, False, None)
    for act in (lambda: hold.release("d1"), lambda: hold.freeze("d1", NOW), lambda: hold.freeze("d2", NOW)):
        with pytest.raises(EscrowRuleBroken) as caught:
            act()
        assert caught.value.code == "not_held"


def test_e3_a_released_hold_cannot_be_frozen() -> None:
    hold = held()
    hold.release()
    with pytest.raises(EscrowRuleBroken) as caught:
        hold.freeze("d1", NOW)
    assert caught.value.code == "not_held"
    assert hold.frozen_by is None


def test_e3_a_refund_repeated_for_another_dispute_is_an_idempotency_conflict() -> None:
    hold = frozen()
    given, _transfers = hold.give_back("d1:refund", usd(100), NOW, "d1")
    given.check_same_request(usd(100), "d1")  # the same: fine
    with pytest.raises(EscrowRuleBroken) as caught:
        given.check_same_request(usd(100), None)
    assert (caught.value.code, caught.value.reason) == (
        "idempotency_conflict",
        "refund d1:refund of order o1 was given back for dispute d1, not for no dispute",
    )
