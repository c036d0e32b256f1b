"""Escrow E4: settlement. A hold paid in another currency becomes the seller's payable in the
seller's currency, the fee goes to fee revenue and the conversion through the FX position of
each currency; the report groups releases per seller and UTC day with exact totals per
currency (services/escrow/domain/settlements.py); the stored account rows and the ledger view a
command goes through (services/escrow/domain/books.py). Every figure is an integer of minor
units: nothing is rounded anywhere, so nothing can be lost to rounding."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from contracts import FundingType, Money, PriceBreakdown
from services.escrow.domain import AccountState, EscrowHold, settle, view
from services.escrow.domain.ledger import AccountId, AccountKind, Transfer, TransferCode, TransferKind, TransferRecord
from services.escrow.domain.settlements import Release, SellerDay, by_seller_and_day, day_span, settlement

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = date(2026, 3, 1)


def money(minor: int, currency: str) -> Money:
    return Money(amount_minor=minor, currency=currency)


class Books:
    """Stored account rows, booked through a view as the escrow handlers book them."""

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

    def posted(self, code: str) -> int:
        """An account's posted credit balance (credits less debits)."""
        state = self.states.get(AccountId.parse(code))
        return 0 if state is None else state.credits_posted - state.debits_posted

    def sums(self) -> Counter[str]:
        """Per currency, posted credits less debits over every account, and the pending ones."""
        totals: Counter[str] = Counter()
        for state in self.states.values():
            totals[state.currency] += state.credits_posted - state.debits_posted
            totals[f"{state.currency} pending"] += state.credits_pending - state.debits_pending
        return totals


def paid_abroad(price: Money, converted: Money, fee: int, discount: int = 0) -> PriceBreakdown:
    return PriceBreakdown(
        funding_type=FundingType.CARD,
        amount=price,
        converted=converted,
        fee=money(fee, converted.currency),
        discount=money(discount, converted.currency),
        total=money(converted.amount_minor + fee - discount, converted.currency),
        settlement=price,
    )


def hold_and_release(
    order_id: str, price: Money, breakdown: PriceBreakdown | None, books: Books, refund: int = 0
) -> Release:
    """Hold ``price`` for seller s1, give ``refund`` of it back, release the rest: the release
    the settlement report lists (what the post credited to the seller's payable)."""
    hold, transfers = EscrowHold.place(order_id, "b1", "s1", price, breakdown=breakdown, now=NOW)
    books.book(transfers)
    if refund:
        reservation = hold.reservation()
        _given, transfers = hold.give_back(f"{order_id}-r", money(refund, price.currency), NOW)
        books.book(transfers, reservation)
    reservation = hold.reservation()
    posts = hold.release()
    assert posts is not None
    books.book(posts, reservation)
    (post,) = posts
    assert post.kind is TransferKind.POST_PENDING
    assert post.credit_account == AccountId.seller_payable(order_id, price.currency)
    return Release(order_id, hold.seller_id, post.amount, NOW)


# --------------------------------------------------------------------------- cross-currency settlement


class TestCrossCurrency:
    def test_e4_paid_in_yen_the_seller_is_owed_dollars_the_fee_is_revenue_and_fx_carries_the_rest(self) -> None:
        books = Books()
        breakdown = paid_abroad(money(4250, "USD"), money(6263, "JPY"), fee=249)
        release = hold_and_release("o1", money(4250, "USD"), breakdown, books)

        assert release.amount == money(4250, "USD")  # the seller's currency, the full settlement
        assert books.posted("seller_payable:o1:USD") == 4250
        assert books.posted("fee_revenue:platform:JPY") == 249  # in the buyer's currency, exactly the fee
        assert books.posted("fx_position:platform:JPY") == 6263  # the platform took the yen in...
        assert books.posted("fx_position:platform:USD") == -4250  # ...and owes the dollars out
        assert books.posted("buyer_funds_in:b1:JPY") == -6512
        assert books.posted("escrow_holding:o1:USD") == 0
        assert not any(books.sums().values())  # JPY and USD each sum to zero, pending and posted

    def test_e4_a_refund_before_release_leaves_the_seller_the_rest_and_the_fee_where_it_was(self) -> None:
        books = Books()
        breakdown = paid_abroad(money(10_000, "EUR"), money(1_650_000, "JPY"), fee=4_950, discount=1_000)
        release = hold_and_release("o1", money(10_000, "EUR"), breakdown, books, refund=2_501)

        assert release.amount == money(7_499, "EUR")
        assert (books.posted("refunds_out:o1:EUR"), books.posted("seller_payable:o1:EUR")) == (2_501, 7_499)
        assert books.posted("fee_revenue:platform:JPY") == 4_950
        assert books.posted("fx_position:platform:JPY") == 1_650_000 - 1_000  # the discount came off the converted
        assert books.posted("fx_position:platform:EUR") == -10_000
        assert not any(books.sums().values())

    def test_e4_three_digit_and_zero_digit_currencies_settle_to_the_minor_unit(self) -> None:
        """KWD has three decimals, JPY none: the seller is owed exactly the fils, the fee exactly the yen."""
        books = Books()
        breakdown = paid_abroad(money(12_345, "KWD"), money(5_987, "JPY"), fee=1)
        release = hold_and_release("o1", money(12_345, "KWD"), breakdown, books, refund=1)

        assert str(release.amount) == "12.344 KWD"
        assert books.posted("fee_revenue:platform:JPY") == 1
        assert books.posted("refunds_out:o1:KWD") == 1
        assert not any(books.sums().values())

    def test_e4_domestic_settlement_books_no_fee_and_no_fx(self) -> None:
        books = Books()
        release = hold_and_release("o1", money(999, "USD"), None, books)

        assert release.amount == money(999, "USD")
        assert {state.kind for state in books.states.values()} == {
            AccountKind.BUYER_FUNDS_IN,
            AccountKind.ESCROW_HOLDING,
            AccountKind.SELLER_PAYABLE,
        }


# --------------------------------------------------------------------------- the report per seller and day


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class TestReport:
    def test_e4_releases_group_per_seller_and_utc_day_in_posting_order(self) -> None:
        releases = [
            Release("o1", "s1", money(100, "USD"), at("2026-03-01T00:00:00+00:00")),
            Release("o2", "s2", money(200, "USD"), at("2026-03-01T10:00:00+00:00")),
            Release("o3", "s1", money(300, "USD"), at("2026-03-01T23:59:59.999999+00:00")),
            Release("o4", "s1", money(400, "USD"), at("2026-03-02T00:00:00+00:00")),  # the next UTC day
            Release("o5", "s1", money(500, "EUR"), at("2026-03-01T20:30:00-05:00")),  # 01:30 UTC on the 2nd
            Release("o6", "s1", money(600, "USD"), at("2026-03-02T00:30:00+01:00")),  # 23:30 UTC on the 1st
        ]
        groups = by_seller_and_day(releases)

        assert [(g.seller_id, g.day.isoformat(), [r.order_id for r in g.releases]) for g in groups] == [
            ("s1", "2026-03-01", ["o1", "o3", "o6"]),
            ("s1", "2026-03-02", ["o4", "o5"]),
            ("s2", "2026-03-01", ["o2"]),
        ]
        first, second, other = groups
        assert (first.count, first.totals) == (3, (money(1_000, "USD"),))
        assert second.totals == (money(500, "EUR"), money(400, "USD"))  # one total per currency, sorted
        assert other.totals == (money(200, "USD"),)
        assert sum(g.count for g in groups) == len(releases)  # every release in exactly one group

    def test_e4_one_sellers_day_leaves_out_other_sellers_and_days(self) -> None:
        releases = [
            Release("o1", "s1", money(100, "USD"), at("2026-03-01T08:00:00+00:00")),
            Release("o2", "s2", money(200, "USD"), at("2026-03-01T09:00:00+00:00")),
            Release("o3", "s1", money(300, "USD"), at("2026-03-02T08:00:00+00:00")),
        ]
        mine = settlement("s1", DAY, releases)
        assert ([r.order_id for r in mine.releases], mine.totals) == (["o1"], (money(100, "USD"),))
        nothing = settlement("s3", DAY, releases)
        assert nothing == SellerDay("s3", DAY)
        assert (nothing.count, nothing.totals) == (0, ())

    def test_e4_a_day_is_the_utc_day_from_its_first_instant_to_the_next_days(self) -> None:
        start, end = day_span(DAY)
        assert (start, end) == (at("2026-03-01T00:00:00+00:00"), at("2026-03-02T00:00:00+00:00"))
        assert Release("o1", "s1", money(1, "USD"), start).day == DAY
        assert Release("o1", "s1", money(1, "USD"), end - timedelta(microseconds=1)).day == DAY
        assert Release("o1", "s1", money(1, "USD"), end).day == date(2026, 3, 2)
        # The last day of a year, and a leap day.
        assert day_span(date(2026, 12, 31))[1] == datetime(2027, 1, 1, tzinfo=UTC)
        assert day_span(date(2028, 2, 29))[1] == datetime(2028, 3, 1, tzinfo=UTC)

    def test_e4_a_release_time_without_a_zone_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            Release("o1", "s1", money(1, "USD"), datetime(2026, 3, 1, 12))  # noqa: DTZ001

    def test_e4_totals_are_exact_sums_of_minor_units(self) -> None:
        """A thousand one-cent releases are exactly 10.00 USD; three one-fils KWD are 0.003 KWD;
        nothing passes through a float."""
        noon = at("2026-03-01T12:00:00+00:00")
        cents = [Release(f"o{i}", "s1", money(1, "USD"), noon) for i in range(1_000)]
        fils = [Release(f"k{i}", "s1", money(1, "KWD"), noon) for i in range(3)]
        yen = [Release(f"j{i}", "s1", money(33_333, "JPY"), noon) for i in range(3)]
        (day,) = by_seller_and_day(cents + fils + yen)
        assert [str(total) for total in day.totals] == ["99,999 JPY", "0.003 KWD", "10.00 USD"]
        assert all(isinstance(total.amount_minor, int) for total in day.totals)

    def test_e4_the_report_of_booked_releases_adds_up_to_what_the_sellers_payables_hold(self) -> None:
        """Releases booked through the ledger, some after a refund, some paid abroad: the day's
        total per currency is exactly what the sellers' payable accounts were credited."""
        books = Books()
        releases = [
            hold_and_release("o1", money(4_251, "USD"), None, books, refund=2_125),  # an odd split: 2,125 + 2,126
            hold_and_release(
                "o2", money(4_250, "USD"), paid_abroad(money(4_250, "USD"), money(6_263, "JPY"), 249), books
            ),
            hold_and_release("o3", money(10_000, "EUR"), None, books, refund=1),
        ]
        (day,) = by_seller_and_day(releases)
        payable: Counter[str] = Counter()
        for state in books.states.values():
            if state.kind == AccountKind.SELLER_PAYABLE:
                payable[state.currency] += state.credits_posted
        assert {total.currency: total.amount_minor for total in day.totals} == dict(payable)
        assert day.totals == (money(9_999, "EUR"), money(2_126 + 4_250, "USD"))
        assert books.posted("refunds_out:o1:USD") + books.posted("seller_payable:o1:USD") == 4_251


# --------------------------------------------------------------------------- books.py: stored rows and views


class TestStoredAccounts:
    def test_e1_an_orders_own_accounts_are_found_by_order_the_others_by_code(self) -> None:
        holding = AccountState.opened(AccountId.escrow_holding("o1", "USD"))
        fee = AccountState.opened(AccountId.fee_revenue("JPY"))
        assert (holding.code, holding.kind, holding.owner, holding.order_id) == (
            "escrow_holding:o1:USD",
            "escrow_holding",
            "o1",
            "o1",
        )
        assert (fee.code, fee.order_id) == ("fee_revenue:platform:JPY", None)
        assert holding.balance.is_zero
        assert holding.account == AccountId.escrow_holding("o1", "USD")

    def test_e1_a_view_applies_through_the_stored_totals_and_settle_writes_them_back(self) -> None:
        fx, payable = AccountId.fx_position("USD"), AccountId.seller_payable("o1", "USD")
        states = [
            AccountState.opened(fx),
            AccountState(payable.code, payable.kind, payable.owner, "USD", "o1", 0, 0, 0, 5),
        ]
        ledger = view(states)
        ledger.apply(Transfer("t1", fx, payable, money(7, "USD"), "o1", TransferCode.FX_CONVERSION), now=NOW)
        assert states[1].credits_posted == 5  # nothing is written until settled
        settle(ledger, states)
        assert (states[0].debits_posted, states[1].credits_posted) == (7, 12)
        assert states[1].balance == ledger.balance(payable)

    def test_e1_a_view_with_an_open_reservation_posts_it_once(self) -> None:
        books = Books()
        hold, transfers = EscrowHold.place("o1", "b1", "s1", money(4_250, "USD"), breakdown=None, now=NOW)
        books.book(transfers)
        reservation = hold.reservation()
        assert reservation is not None
        states = list(books.states.values())
        ledger = view(states, (reservation,))
        ledger.apply(reservation.transfer.post("release:o1"), now=NOW)
        settle(ledger, states)
        assert books.posted("seller_payable:o1:USD") == 4_250
        assert books.states[AccountId.seller_payable("o1", "USD")].credits_pending == 0

    def test_e1_a_view_refuses_stored_totals_that_do_not_cover_its_reservation(self) -> None:
        """Stored rows that disagree with the reservation (damage) are a bug, not a refusal."""
        hold, _transfers = EscrowHold.place("o1", "b1", "s1", money(4_250, "USD"), breakdown=None, now=NOW)
        reservation = hold.reservation()
        assert reservation is not None
        empty = [AccountState.opened(hold.holding), AccountState.opened(hold.payable)]
        with pytest.raises(ValueError, match="less than its open pending transfers"):
            view(empty, (reservation,))


def test_e4_settlement_module_works_in_any_zone() -> None:
    """The same instant in two zones falls on the same UTC day."""
    tokyo = timezone(timedelta(hours=9))
    instant = datetime(2026, 3, 2, 8, 59, tzinfo=tokyo)  # 23:59 UTC on the 1st
    assert Release("o1", "s1", money(1, "USD"), instant).day == DAY
