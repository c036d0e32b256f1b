"""Escrow E2/E4 (and P6 returns): the hold model's rules, applied through an in-memory E1 ledger
view exactly as the handlers do (services/escrow/domain/holds.py, books.py)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from contracts import FundingType, Money, PriceBreakdown
from services.escrow.domain import AccountState, EscrowHold, EscrowRuleBroken, FundsReturn, HoldStatus, settle, view
from services.escrow.domain.ledger import (
    AccountId,
    AccountKind,
    LinkedSetRefused,
    RefusalCode,
    Transfer,
    TransferCode,
    TransferRecord,
)

PRICE = 4250
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def jpy(minor: int) -> Money:
    return Money(amount_minor=minor, currency="JPY")


class Books:
    """Stored account rows and the log, kept the way the escrow store keeps them."""

    def __init__(self) -> None:
        self.states: dict[AccountId, AccountState] = {}
        self.log: list[TransferRecord] = []

    def book(self, transfers: list[Transfer], reservation: TransferRecord | None = None) -> None:
        accounts = sorted({a for t in transfers for a in (t.debit_account, t.credit_account)})
        states = [self.states.get(a) or AccountState.opened(a) for a in accounts]
        ledger = view(states, () if reservation is None else (reservation,))
        self.log += ledger.apply_linked(transfers, now=NOW)
        settle(ledger, states)
        self.states.update({state.account: state for state in states})

    def credit_balance(self, code: str) -> int:
        state = self.states[AccountId.parse(code)]
        return state.credits_posted - state.debits_posted

    def pending(self, code: str) -> tuple[int, int]:
        state = self.states[AccountId.parse(code)]
        return state.debits_pending, state.credits_pending

    def sums(self) -> Counter[str]:
        """Per currency, posted credits minus posted debits over every account: zero when balanced."""
        totals: Counter[str] = Counter()
        for state in self.states.values():
            totals[state.currency] += state.credits_posted - state.debits_posted
            totals[f"{state.currency} pending"] += state.credits_pending - state.debits_pending
        return totals


def placed(price: int = PRICE, breakdown: PriceBreakdown | None = None) -> tuple[EscrowHold, Books]:
    hold, transfers = EscrowHold.place("o1", "b1", "s1", usd(price), breakdown=breakdown, now=NOW)
    books = Books()
    books.book(transfers)
    return hold, books


def give_back(hold: EscrowHold, books: Books, refund_id: str, minor: int) -> FundsReturn:
    reservation = hold.reservation()
    given, transfers = hold.give_back(refund_id, usd(minor), NOW)
    books.book(transfers, reservation)
    return given


def release(hold: EscrowHold, books: Books) -> None:
    reservation = hold.reservation()
    transfers = hold.release()
    assert transfers is not None
    books.book(transfers, reservation)


def cross_border(fee: int = 249, discount: int = 0) -> PriceBreakdown:
    converted = 6263
    return PriceBreakdown(
        funding_type=FundingType.CARD,
        amount=usd(PRICE),
        converted=jpy(converted),
        fee=jpy(fee),
        discount=jpy(discount),
        total=jpy(converted + fee - discount),
        settlement=usd(PRICE),
    )


class TestHoldAndRelease:
    def test_e2_a_hold_books_the_price_in_and_reserves_it_for_the_seller(self) -> None:
        hold, books = placed()
        assert books.credit_balance("escrow_holding:o1:USD") == PRICE
        assert books.credit_balance("buyer_funds_in:b1:USD") == -PRICE
        # The reservation: pending on both sides, nothing payable to the seller yet.
        assert books.pending("escrow_holding:o1:USD") == (PRICE, 0)
        assert books.pending("seller_payable:o1:USD") == (0, PRICE)
        assert books.credit_balance("seller_payable:o1:USD") == 0
        assert (hold.status, hold.reservation_id) == (HoldStatus.HELD, "hold:o1:reserve")
        assert not any(books.sums().values())

    def test_e2_release_posts_the_reservation_and_empties_the_holding(self) -> None:
        hold, books = placed()
        release(hold, books)
        assert books.credit_balance("seller_payable:o1:USD") == PRICE
        assert books.credit_balance("escrow_holding:o1:USD") == 0
        assert books.pending("escrow_holding:o1:USD") == (0, 0)
        assert (hold.status, hold.reservation_id) == (HoldStatus.RELEASED, None)
        assert hold.release() is None  # a repeat moves nothing
        assert not any(books.sums().values())

    def test_e2_a_reservation_ends_exactly_once_the_ledger_refuses_a_second_end(self) -> None:
        hold, books = placed()
        reservation = hold.reservation()
        assert reservation is not None
        ledger = view(books.states.values(), (reservation,))
        ledger.apply(reservation.transfer.post("release:o1"), now=NOW)
        # Whatever the caller: a second post or a void of the same reservation is the ledger's refusal.
        with pytest.raises(LinkedSetRefused) as caught:
            ledger.apply_linked([reservation.transfer.void("void"), reservation.transfer.post("again")], now=NOW)
        assert caught.value.cause.refusal is RefusalCode.PENDING_ALREADY_POSTED

    def test_e2_a_zero_hold_is_refused(self) -> None:
        with pytest.raises(EscrowRuleBroken, match="positive"):
            EscrowHold.place("o1", "b1", "s1", usd(0), breakdown=None, now=NOW)

    @pytest.mark.parametrize(("buyer", "seller"), [("b:1", "s1"), ("b1", "legacy:s1")])
    def test_e2_an_id_no_account_can_be_named_by_is_refused(self, buyer: str, seller: str) -> None:
        with pytest.raises(EscrowRuleBroken) as caught:
            EscrowHold.place("o1", buyer, seller, usd(1), breakdown=None, now=NOW)
        assert caught.value.code == "invalid_party"


class TestReturns:
    def test_p6_a_return_voids_the_reservation_and_reserves_what_is_left(self) -> None:
        hold, books = placed()
        given = give_back(hold, books, "r1", 1000)
        assert (given.amount, given.still_held) == (usd(1000), usd(3250))
        assert books.credit_balance("refunds_out:o1:USD") == 1000
        assert books.pending("seller_payable:o1:USD") == (0, 3250)
        assert hold.reservation_id == "return:o1:r1:reserve"
        assert [r.kind for r in books.log[-3:]] == ["void_pending", "single_phase", "pending"]
        release(hold, books)
        assert books.credit_balance("seller_payable:o1:USD") == 3250
        assert books.credit_balance("escrow_holding:o1:USD") == 0
        assert not any(books.sums().values())

    def test_p6_returning_everything_ends_the_hold_with_nothing_reserved(self) -> None:
        hold, books = placed()
        for refund_id, minor in (("r1", 1000), ("r2", 750), ("r3", PRICE - 1750)):
            give_back(hold, books, refund_id, minor)
        assert (hold.status, hold.still_held, hold.reservation_id) == (HoldStatus.RETURNED, usd(0), None)
        assert books.credit_balance("refunds_out:o1:USD") == PRICE
        assert books.pending("seller_payable:o1:USD") == (0, 0)
        with pytest.raises(EscrowRuleBroken, match="returned"):
            hold.release()
        assert not any(books.sums().values())

    @pytest.mark.parametrize(
        ("amount", "code"),
        [
            (usd(PRICE + 1), "exceeds_held"),
            (usd(0), "invalid_amount"),
            (Money(amount_minor=100, currency="EUR"), "currency_mismatch"),
        ],
    )
    def test_p6_a_return_that_does_not_fit_is_refused_and_changes_nothing(self, amount: Money, code: str) -> None:
        hold, _books = placed()
        with pytest.raises(EscrowRuleBroken) as caught:
            hold.give_back("r1", amount, NOW)
        assert caught.value.code == code
        assert (hold.status, hold.returned_minor, hold.reservation_id) == (HoldStatus.HELD, 0, "hold:o1:reserve")

    def test_p6_nothing_comes_back_once_released(self) -> None:
        hold, books = placed()
        release(hold, books)
        with pytest.raises(EscrowRuleBroken) as caught:
            hold.give_back("r1", usd(1), NOW)
        assert caught.value.code == "not_held"

    def test_e1_the_ledger_itself_refuses_a_return_beyond_what_is_held(self) -> None:
        """Even past the hold's own check, the holding's flag refuses to pay out more than it holds."""
        hold, books = placed()
        reservation = hold.reservation()
        assert reservation is not None
        holding, out = AccountId.escrow_holding("o1", "USD"), AccountId.refunds_out("o1", "USD")
        too_much = Transfer("x", holding, out, usd(PRICE + 1), "o1", TransferCode.REFUND)
        states = [books.states[holding], AccountState.opened(out), books.states[AccountId.seller_payable("o1", "USD")]]
        with pytest.raises(LinkedSetRefused) as caught:
            view(states, (reservation,)).apply_linked([reservation.transfer.void("v"), too_much], now=NOW)
        assert caught.value.cause.refusal is RefusalCode.EXCEEDS_CREDITS


class TestSettlement:
    def test_e4_another_currency_books_the_total_the_fee_and_the_settlement(self) -> None:
        hold, books = placed(breakdown=cross_border())
        assert books.credit_balance("buyer_funds_in:b1:JPY") == -(6263 + 249)
        assert books.credit_balance("fee_revenue:platform:JPY") == 249
        assert books.credit_balance("fx_position:platform:JPY") == 6263
        assert books.credit_balance("fx_position:platform:USD") == -PRICE
        assert books.credit_balance("escrow_holding:o1:USD") == PRICE
        assert AccountId.parse("buyer_funds_in:b1:USD") not in books.states
        release(hold, books)
        assert books.credit_balance("seller_payable:o1:USD") == PRICE
        assert not any(books.sums().values())  # JPY and USD each sum to zero

    def test_e4_a_discount_larger_than_the_price_leaves_the_fee_what_was_paid(self) -> None:
        _hold, books = placed(breakdown=cross_border(fee=249, discount=6300))
        assert books.credit_balance("fee_revenue:platform:JPY") == 6263 + 249 - 6300
        assert AccountId.parse("fx_position:platform:JPY") not in books.states
        assert not any(books.sums().values())

    @pytest.mark.parametrize(
        "wrong",
        [
            {"amount": usd(PRICE + 1)},
            {"settlement": usd(PRICE - 1)},
        ],
    )
    def test_e4_a_breakdown_of_another_price_is_refused(self, wrong: dict[str, Money]) -> None:
        breakdown = cross_border().model_copy(update=wrong)
        with pytest.raises(EscrowRuleBroken) as caught:
            EscrowHold.place("o1", "b1", "s1", usd(PRICE), breakdown=breakdown, now=NOW)
        assert caught.value.code == "invalid_breakdown"

    def test_e4_a_domestic_breakdown_holds_the_price_directly(self) -> None:
        domestic = cross_border().model_copy(
            update={"converted": usd(PRICE), "fee": usd(0), "discount": usd(0), "total": usd(PRICE)}
        )
        _hold, books = placed(breakdown=domestic)
        assert books.credit_balance("buyer_funds_in:b1:USD") == -PRICE
        assert not any(state.kind == AccountKind.FX_POSITION for state in books.states.values())


def test_e1_a_view_refuses_to_move_an_account_it_was_not_given() -> None:
    hold, books = placed()
    transfers = hold.release()
    assert transfers is not None
    with pytest.raises(ValueError, match="was not given"):
        view([books.states[AccountId.escrow_holding("o1", "USD")]]).apply_linked(
            [
                Transfer(
                    "t",
                    AccountId.escrow_holding("o1", "USD"),
                    AccountId.fee_revenue("USD"),
                    usd(1),
                    "o1",
                    TransferCode.FEE,
                )
            ],
            now=NOW + timedelta(seconds=1),
        )
