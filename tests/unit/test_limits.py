"""Payments P2: per-payment, daily and monthly limits, the new-account rule and UTC windows.

Figures are the US tiers of services/account/data/regions.toml (L0 100/200/500 USD, L1
2000/5000/20000 USD), written out here so the test does not depend on the data file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.money import Money
from contracts.registration import Limits
from contracts.verification import VerificationLevel
from services.payment.domain.limits import (
    NEW_ACCOUNT_AGE,
    AccountLimits,
    LimitExceeded,
    SpendingWindow,
    WindowKey,
    WindowKind,
    check_and_reserve,
    release,
    window_keys,
)
from shared.aggregates import Aggregate
from shared.errors import CommandRefused

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)
OLD = datetime(2026, 1, 1, tzinfo=UTC)  # registered long before NOW: full limits


def usd(cents: int) -> Money:
    return Money(amount_minor=cents, currency="USD")


L0 = Limits(per_payment=usd(100_00), daily=usd(200_00), monthly=usd(500_00))
L1 = Limits(per_payment=usd(2000_00), daily=usd(5000_00), monthly=usd(20000_00))


def account(
    limits: Limits = L1, registered_at: datetime = OLD, level: VerificationLevel = VerificationLevel.L1
) -> AccountLimits:
    copy = AccountLimits.registered("buyer-1", L0, registered_at)
    if level is not VerificationLevel.L0:
        assert copy.apply_level(level, limits)
    return copy


def windows(now: datetime = NOW, day_spent: int = 0, month_spent: int = 0) -> tuple[SpendingWindow, SpendingWindow]:
    day = SpendingWindow.empty("buyer-1", WindowKind.DAY, now, "USD")
    month = SpendingWindow.empty("buyer-1", WindowKind.MONTH, now, "USD")
    day.spent, month.spent = usd(day_spent), usd(max(month_spent, day_spent))
    return day, month


def refusal(
    limits: AccountLimits, day: SpendingWindow, month: SpendingWindow, amount: Money, now: datetime = NOW
) -> LimitExceeded:
    before = (day.spent, month.spent)
    with pytest.raises(LimitExceeded) as caught:
        check_and_reserve(limits, day, month, amount, now)
    assert (day.spent, month.spent) == before, "a refused payment reserves nothing"
    return caught.value


# --------------------------------------------------------------------------- each limit, exact reasons


def test_p2_daily_limit_refused_with_exact_reason() -> None:
    day, month = windows(day_spent=4800_00)
    error = refusal(account(), day, month, usd(300_00))
    assert issubclass(LimitExceeded, CommandRefused)
    assert error.code == "limit_exceeded"
    assert error.reason == (
        "daily limit of 5000.00 USD for day 2026-12-01 UTC: 4800.00 USD spent, 200.00 USD left; "
        "this payment is 300.00 USD"
    )
    assert (error.limit, error.limit_amount, error.spent, error.remaining) == (
        "daily",
        usd(5000_00),
        usd(4800_00),
        usd(200_00),
    )
    assert (error.amount, error.window) == (usd(300_00), "day 2026-12-01 UTC")


def test_p2_monthly_limit_refused_with_exact_reason() -> None:
    day, month = windows(day_spent=0, month_spent=19500_00)
    error = refusal(account(), day, month, usd(600_00))
    assert error.reason == (
        "monthly limit of 20000.00 USD for month 2026-12 UTC: 19500.00 USD spent, 500.00 USD left; "
        "this payment is 600.00 USD"
    )
    assert (error.limit, error.remaining, error.window) == ("monthly", usd(500_00), "month 2026-12 UTC")


def test_p2_per_payment_limit_refused_with_exact_reason_before_the_windows() -> None:
    day, month = windows(day_spent=4999_00)  # daily would refuse as well: per_payment is checked first
    error = refusal(account(), day, month, usd(2000_01))
    assert error.reason == "per_payment limit of 2000.00 USD: this payment is 2000.01 USD"
    assert (error.limit, error.limit_amount, error.remaining, error.spent, error.window) == (
        "per_payment",
        usd(2000_00),
        usd(2000_00),
        usd(0),
        None,
    )


def test_p2_daily_is_checked_before_monthly() -> None:
    day, month = windows(day_spent=4900_00, month_spent=19950_00)
    assert refusal(account(), day, month, usd(200_00)).limit == "daily"


def test_p2_spending_above_a_limit_leaves_zero_headroom_not_negative() -> None:
    day, month = windows(day_spent=6000_00)  # e.g. written under another region table revision
    error = refusal(account(), day, month, usd(1))
    assert error.remaining == usd(0)
    assert "6000.00 USD spent, 0.00 USD left" in error.reason


# --------------------------------------------------------------------------- headroom boundaries


@pytest.mark.parametrize(
    ("day_spent", "month_spent", "headroom"),
    [
        pytest.param(0, 0, 2000_00, id="per_payment"),
        pytest.param(4000_00, 4000_00, 1000_00, id="daily"),
        pytest.param(0, 19250_00, 750_00, id="monthly"),
    ],
)
def test_p2_headroom_exactly_used_is_allowed_one_minor_unit_more_refused(
    day_spent: int, month_spent: int, headroom: int
) -> None:
    limits = account()
    day, month = windows(day_spent=day_spent, month_spent=month_spent)
    refusal(limits, day, month, usd(headroom + 1))
    check_and_reserve(limits, day, month, usd(headroom), NOW)
    assert (day.spent, month.spent) == (usd(day_spent + headroom), usd(month_spent + headroom))


def test_p2_success_adds_the_amount_to_both_windows() -> None:
    limits = account()
    day, month = windows(day_spent=100_00, month_spent=900_00)
    check_and_reserve(limits, day, month, usd(250_00), NOW)
    assert (day.spent, month.spent) == (usd(350_00), usd(1150_00))


# --------------------------------------------------------------------------- new accounts


def test_p2_new_account_daily_and_monthly_halved_rounding_down_per_payment_not() -> None:
    odd = Limits(per_payment=usd(2000_00), daily=usd(5000_01), monthly=usd(20000_01))
    limits = account(odd, registered_at=NOW - timedelta(days=3))
    effective = limits.effective(NOW)
    assert effective == Limits(per_payment=usd(2000_00), daily=usd(2500_00), monthly=usd(10000_00))
    day, month = windows(day_spent=1000_00)
    error = refusal(limits, day, month, usd(1500_01))
    assert error.reason == (
        "daily limit of 2500.00 USD for day 2026-12-01 UTC (half the 5000.01 USD limit: the account is younger "
        "than 30 days): 1000.00 USD spent, 1500.00 USD left; this payment is 1500.01 USD"
    )
    assert error.limit_amount == usd(2500_00)
    check_and_reserve(limits, day, month, usd(1500_00), NOW)
    # per_payment keeps its full amount for a new account
    fresh_day, fresh_month = windows()
    check_and_reserve(limits, fresh_day, fresh_month, usd(2000_00), NOW)


def test_p2_halving_ends_exactly_when_the_account_is_30_days_old() -> None:
    assert timedelta(days=30) == NEW_ACCOUNT_AGE
    registered = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    limits = account(registered_at=registered)
    just_before = registered + NEW_ACCOUNT_AGE - timedelta(microseconds=1)
    at_age = registered + NEW_ACCOUNT_AGE
    assert limits.is_new(just_before)
    assert limits.effective(just_before).daily == usd(2500_00)
    assert not limits.is_new(at_age)
    assert limits.effective(at_age) == L1

    day, month = windows(just_before, day_spent=1000_00)
    assert refusal(limits, day, month, usd(1500_01), just_before).limit == "daily"  # 1000 + 1500.01 > 2500
    day, month = windows(at_age, day_spent=1000_00)
    check_and_reserve(limits, day, month, usd(1500_01), at_age)  # the full 5000 daily applies
    assert day.spent == usd(2500_01)


def test_p2_new_account_monthly_halved_names_the_full_limit() -> None:
    limits = account(registered_at=NOW - timedelta(days=1))
    day, month = windows(month_spent=9900_00)
    error = refusal(limits, day, month, usd(200_00))
    assert error.reason == (
        "monthly limit of 10000.00 USD for month 2026-12 UTC (half the 20000.00 USD limit: the account is younger "
        "than 30 days): 9900.00 USD spent, 100.00 USD left; this payment is 200.00 USD"
    )


# --------------------------------------------------------------------------- windows


def test_p2_window_keys_are_utc_calendar_day_and_month() -> None:
    assert window_keys("buyer-1", NOW) == (("buyer-1", "day", "2026-12-01"), ("buyer-1", "month", "2026-12-01"))
    # 01:30 on 1 January in UTC+05:00 is still 31 December in UTC
    east = datetime(2027, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    assert window_keys("buyer-1", east) == (("buyer-1", "day", "2026-12-31"), ("buyer-1", "month", "2026-12-01"))
    assert window_keys("b", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))[0][2] == "2026-12-31"
    assert window_keys("b", datetime(2027, 1, 1, tzinfo=UTC)) == (
        ("b", "day", "2027-01-01"),
        ("b", "month", "2027-01-01"),
    )
    day, month = windows()
    assert (day.key, month.key) == window_keys("buyer-1", NOW)


def test_p2_day_window_rolls_over_at_midnight_utc() -> None:
    limits = account()
    last_second = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
    day, month = windows(last_second)
    for _ in range(2):
        check_and_reserve(limits, day, month, usd(2000_00), last_second)
    assert refusal(limits, day, month, usd(1000_01), last_second).limit == "daily"

    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert not day.covers(midnight)
    assert month.covers(midnight)
    with pytest.raises(ValueError, match="expected the day window 2026-12-02"):
        check_and_reserve(limits, day, month, usd(1), midnight)  # yesterday's window is not today's
    next_day = SpendingWindow.empty("buyer-1", WindowKind.DAY, midnight, "USD")
    check_and_reserve(limits, next_day, month, usd(2000_00), midnight)
    assert (next_day.spent, month.spent) == (usd(2000_00), usd(6000_00))


def test_p2_month_window_rolls_over_at_the_first_of_the_month_utc() -> None:
    limits = account()
    month_end = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    day, month = windows(month_end, month_spent=20000_00)
    assert refusal(limits, day, month, usd(1), month_end).limit == "monthly"

    new_month = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert not month.covers(new_month)
    day, month = windows(new_month)
    assert month.start == "2027-01-01"
    check_and_reserve(limits, day, month, usd(2000_00), new_month)
    assert month.spent == usd(2000_00)


def test_p2_window_rows_are_validated() -> None:
    with pytest.raises(ValueError, match="a month window starts on the 1st"):
        SpendingWindow("buyer-1", WindowKind.MONTH, "2026-12-02", usd(0))
    with pytest.raises(ValueError, match="ISO date"):
        SpendingWindow("buyer-1", WindowKind.DAY, "yesterday", usd(0))
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        SpendingWindow("buyer-1", WindowKind.DAY, "20261201", usd(0))
    assert SpendingWindow("buyer-1", "day", "2026-12-01", usd(0)).kind is WindowKind.DAY  # type: ignore[arg-type]


# --------------------------------------------------------------------------- release


def test_p2_release_gives_back_and_never_goes_below_zero() -> None:
    limits = account()
    day, month = windows(day_spent=0, month_spent=1000_00)
    check_and_reserve(limits, day, month, usd(300_00), NOW)
    release(day, month, usd(300_00))
    assert (day.spent, month.spent) == (usd(0), usd(1000_00))
    release(day, month, usd(300_00))  # a repeated release cannot make headroom that was never used
    assert (day.spent, month.spent) == (usd(0), usd(700_00))
    release(day, month, usd(5000_00))
    assert (day.spent, month.spent) == (usd(0), usd(0))


def test_p2_release_refuses_another_currency_and_swapped_windows() -> None:
    day, month = windows(day_spent=100_00)
    with pytest.raises(ValueError, match=r"cannot release 1\.00 EUR"):
        release(day, month, Money(amount_minor=100, currency="EUR"))
    with pytest.raises(ValueError, match="a day and a month window"):
        release(month, day, usd(1))
    assert (day.spent, month.spent) == (usd(100_00), usd(100_00))


# --------------------------------------------------------------------------- currency and misuse


def test_p2_amount_in_another_currency_must_be_converted_first() -> None:
    day, month = windows()
    with pytest.raises(ValueError, match=r"the payment is in EUR .* convert 10.00 EUR to USD before checking limits"):
        check_and_reserve(account(), day, month, Money(amount_minor=1000, currency="EUR"), NOW)
    assert (day.spent, month.spent) == (usd(0), usd(0))


def test_p2_windows_of_another_account_or_currency_or_a_naive_now_are_errors() -> None:
    limits = account()
    day, month = windows()
    other = SpendingWindow.empty("buyer-2", WindowKind.DAY, NOW, "USD")
    with pytest.raises(ValueError, match="account buyer-2"):
        check_and_reserve(limits, other, month, usd(1), NOW)
    with pytest.raises(ValueError, match="expected the day window"):
        check_and_reserve(limits, month, day, usd(1), NOW)
    euro_day = SpendingWindow.empty("buyer-1", WindowKind.DAY, NOW, "EUR")
    with pytest.raises(ValueError, match="spending is in EUR"):
        check_and_reserve(limits, euro_day, month, usd(1), NOW)
    with pytest.raises(ValueError, match="aware datetime"):
        check_and_reserve(limits, day, month, usd(1), NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware datetime"):
        AccountLimits.registered("buyer-1", L0, datetime(2026, 1, 1))  # noqa: DTZ001


# --------------------------------------------------------------------------- levels and the read copy


def test_p2_apply_level_takes_only_a_higher_level() -> None:
    limits = AccountLimits.registered("buyer-1", L0, OLD)
    assert (limits.level, limits.limits) == (VerificationLevel.L0, L0)
    assert limits.level == "L0"
    assert limits.apply_level(VerificationLevel.L1, L1)
    assert (limits.level, limits.limits) == (VerificationLevel.L1, L1)
    assert not limits.apply_level(VerificationLevel.L1, L0)  # a repeated event
    assert not limits.apply_level(VerificationLevel.L0, L0)  # a late one
    assert limits.limits == L1
    yen = Limits(
        per_payment=Money(amount_minor=1, currency="JPY"),
        daily=Money(amount_minor=1, currency="JPY"),
        monthly=Money(amount_minor=1, currency="JPY"),
    )
    with pytest.raises(ValueError, match="is in JPY, but its limits are in USD"):
        limits.apply_level(VerificationLevel.L2, yen)
    assert limits.level is VerificationLevel.L1


def test_p2_read_copies_map_to_rows_as_aggregates() -> None:
    metadata = sa.MetaData()
    limits_table = sa.Table(
        "account_limits",
        metadata,
        sa.Column("account_id", sa.String, primary_key=True),
        *(
            column
            for name in ("per_payment", "daily", "monthly")
            for column in (sa.Column(f"{name}_minor", sa.BigInteger), sa.Column(f"{name}_currency", sa.String))
        ),
        sa.Column("registered_at", sa.DateTime(timezone=True)),
        sa.Column("level", sa.String),
        sa.Column("country", sa.String),
        sa.Column("version", sa.Integer),
    )
    windows_table = sa.Table(
        "spending_windows",
        metadata,
        sa.Column("account_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("start", sa.String, primary_key=True),
        sa.Column("spent_minor", sa.BigInteger),
        sa.Column("spent_currency", sa.String),
        sa.Column("version", sa.Integer),
    )
    limits_aggregate = Aggregate(AccountLimits, limits_table, key="account_id")
    windows_aggregate = Aggregate(SpendingWindow, windows_table, key=("account_id", "kind", "start"))

    limits = account()
    row = limits_aggregate.to_row(limits)
    assert row["level"] == "L1"
    assert (row["daily_minor"], row["daily_currency"]) == (5000_00, "USD")
    assert limits_aggregate.from_row(row) == limits

    day, _month = windows(day_spent=123_45)
    row = windows_aggregate.to_row(day)
    assert row == {
        "account_id": "buyer-1",
        "kind": "day",
        "start": "2026-12-01",
        "spent_minor": 123_45,
        "spent_currency": "USD",
    }
    assert windows_aggregate.from_row(row) == day
    assert windows_aggregate.key_of(day) == window_keys("buyer-1", NOW)[0]


# --------------------------------------------------------------------------- property


payment_steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6 * 3600),  # seconds since the previous step: crosses days and months
        st.integers(min_value=1, max_value=2500_00),  # amount in cents, some above per_payment
        st.booleans(),  # release the payment afterwards (a failure after reserving)
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=payment_steps,
    age_days=st.integers(min_value=0, max_value=40),
    start_offset=st.integers(min_value=0, max_value=3 * 24 * 3600),
)
def test_p2_property_accepted_payments_never_exceed_day_or_month_limits(
    steps: list[tuple[int, int, bool]], age_days: int, start_offset: int
) -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC) + timedelta(seconds=start_offset)
    limits = account(registered_at=now - timedelta(days=age_days))
    rows: dict[WindowKey, SpendingWindow] = {}
    accepted: dict[WindowKey, int] = {}
    for gap, cents, fails_later in steps:
        now += timedelta(seconds=gap)
        day_key, month_key = window_keys("buyer-1", now)
        for key in (day_key, month_key):
            rows.setdefault(key, SpendingWindow.empty("buyer-1", key[1], now, "USD"))
        day, month = rows[day_key], rows[month_key]
        try:
            check_and_reserve(limits, day, month, usd(cents), now)
        except LimitExceeded:
            continue
        if fails_later:
            release(day, month, usd(cents))
        else:
            for key in (day_key, month_key):
                accepted[key] = accepted.get(key, 0) + cents
        effective = limits.effective(now)
        assert day.spent.amount_minor <= effective.daily.amount_minor
        assert month.spent.amount_minor <= effective.monthly.amount_minor
        assert cents <= effective.per_payment.amount_minor
    for key, window in rows.items():
        assert window.spent.amount_minor == accepted.get(key, 0)
        full = limits.daily if key[1] == WindowKind.DAY else limits.monthly
        assert window.spent.amount_minor <= full.amount_minor
