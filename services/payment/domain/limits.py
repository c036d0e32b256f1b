"""Payments P2: per-payment, daily and monthly limits, by region, verification level and account age.

The payment service keeps a read copy of each buyer's limits, :class:`AccountLimits`, from the
account service's events: ``AccountRegistered`` brings the L0 limits of the account's region,
each ``IdentityVerified`` the limits of the level just reached (:meth:`AccountLimits.apply_level`).
What the buyer has spent is the payment service's own, one :class:`SpendingWindow` row per
account, window kind and window start.

**Limits.** A payment is checked, in this order, against

1. ``per_payment``: the amount alone may not exceed it;
2. ``daily``: what the current day's window has spent plus the amount may not exceed it;
3. ``monthly``: the same for the current month's window.

The first limit broken refuses the payment with :class:`LimitExceeded` (code
``limit_exceeded``), whose reason names the limit, the window, the limit's amount, what is
already spent and the headroom left, for example::

    daily limit of 5000.00 USD for day 2026-12-01 UTC: 4800.00 USD spent, 200.00 USD left;
    this payment is 300.00 USD

Using the headroom exactly is allowed; one minor unit more is refused.

**Account age.** While an account is younger than :data:`NEW_ACCOUNT_AGE` (30 days: ``now -
registered_at < 30 days``) its ``daily`` and ``monthly`` limits are halved: integer division
of the amount in minor units by two, rounding down (2000.01 USD -> 1000.00 USD). The
``per_payment`` limit is not halved. From the moment the account is 30 days old the full limits
apply. A refusal under a halved limit says so in its reason.

**Windows** are calendar days and calendar months in UTC: the day window of an instant starts at
00:00 UTC of its date, the month window at 00:00 UTC of the first day of its month. A window's
``start`` is that first day as an ISO date string (``"2026-12-01"`` for the day 1 December 2026
and for the month December 2026), so a key is a plain ``(account_id, "day" | "month",
"YYYY-MM-DD")`` tuple (:func:`window_keys`). Spending never carries over: at midnight UTC a new
day window (and on the 1st a new month window) starts from zero.

**Currency.** Limits are in the account's region currency (its wallet currency). An amount in
another currency must be converted by the caller (P3) before the check: a different currency is
a programming error here and raises :class:`ValueError`, not a refusal.

**Concurrency.** :func:`check_and_reserve` decides on the two window objects in memory and adds
the amount to both. The caller's unit of work then writes both rows with their ``version``
checked (optimistic concurrency; the field belongs to the framework, not to these classes). Two
payments racing for the same headroom cannot both pass: both read the same version of the day
(and month) row, the first write wins, and the second write of the same window row fails its
version check (a window with no row yet is read as version 0, so its second insert fails the
same way); that batch is rolled back and re-run on fresh state, where the second payment sees
the first one's spending and is refused if the headroom is gone.

**Release.** A payment that fails after reserving gives its amount back with :func:`release`,
on the windows the reservation was made in (the keys of :func:`window_keys` at the time of the
reservation, not of the failure); spending never goes below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Literal

from contracts.money import Money
from contracts.registration import Limits
from contracts.verification import VerificationLevel
from shared.errors import CommandRefused

NEW_ACCOUNT_AGE = timedelta(days=30)
"""An account younger than this has its daily and monthly limits halved."""

_LEVEL_RANK = {level: rank for rank, level in enumerate(VerificationLevel)}  # L0 < L1 < L2

LimitName = Literal["per_payment", "daily", "monthly"]


class WindowKind(StrEnum):
    """The two spending windows: a calendar day and a calendar month, both in UTC."""

    DAY = "day"
    MONTH = "month"


WindowKey = tuple[str, WindowKind, str]
"""``(account_id, kind, start)``: the key of a :class:`SpendingWindow` row."""


class LimitExceeded(CommandRefused):
    """A payment would break one of the buyer's limits; the reason names which and by how much.

    ``limit`` is the limit's name (``per_payment``, ``daily`` or ``monthly``), ``limit_amount``
    the limit that applied (halved for a new account), ``spent`` what the window had already
    spent (zero for ``per_payment``), ``remaining`` the headroom that was left (the whole limit
    for ``per_payment``), ``amount`` the payment and ``window`` the window's label (``None`` for
    ``per_payment``).
    """

    def __init__(
        self,
        limit: LimitName,
        *,
        limit_amount: Money,
        spent: Money,
        remaining: Money,
        amount: Money,
        window: str | None,
        full_limit: Money | None = None,
    ) -> None:
        halved = "" if full_limit is None else f" (half the {_show(full_limit)} limit: {_young_account_text()})"
        if window is None:
            reason = f"{limit} limit of {_show(limit_amount)}{halved}: this payment is {_show(amount)}"
        else:
            reason = (
                f"{limit} limit of {_show(limit_amount)} for {window}{halved}: "
                f"{_show(spent)} spent, {_show(remaining)} left; this payment is {_show(amount)}"
            )
        super().__init__("limit_exceeded", reason)
        self.limit: LimitName = limit
        self.limit_amount = limit_amount
        self.spent = spent
        self.remaining = remaining
        self.amount = amount
        self.window = window


@dataclass(slots=True)
class AccountLimits:
    """The payment service's read copy of what an account may pay at its current level."""

    account_id: str
    per_payment: Money
    daily: Money
    monthly: Money
    registered_at: datetime
    level: VerificationLevel = VerificationLevel.L0
    country: str | None = None  # the buyer's region (region-limited promotions, P3)

    def __post_init__(self) -> None:
        _require_aware(self.registered_at, "registered_at")
        self.level = VerificationLevel(self.level)
        currencies = {self.per_payment.currency, self.daily.currency, self.monthly.currency}
        if len(currencies) != 1:
            msg = f"limits of account {self.account_id} mix currencies {sorted(currencies)}: they are in one region's"
            raise ValueError(msg)

    @classmethod
    def registered(
        cls, account_id: str, limits: Limits, registered_at: datetime, country: str | None = None
    ) -> AccountLimits:
        """The copy an ``AccountRegistered`` event starts: the region's L0 limits."""
        return cls(
            account_id=account_id,
            per_payment=limits.per_payment,
            daily=limits.daily,
            monthly=limits.monthly,
            registered_at=registered_at,
            level=VerificationLevel.L0,
            country=country,
        )

    @property
    def currency(self) -> str:
        """The region's currency, which every limit (and every amount checked) is in."""
        return self.per_payment.currency

    @property
    def limits(self) -> Limits:
        """The level's limits as the account service announced them (before any age rule)."""
        return Limits(per_payment=self.per_payment, daily=self.daily, monthly=self.monthly)

    def apply_level(self, level: VerificationLevel, limits: Limits) -> bool:
        """Take a newer level's limits (from ``IdentityVerified``); False, changing nothing, for a
        level not above the current one (a repeated or late event: levels only go up)."""
        level = VerificationLevel(level)
        if _LEVEL_RANK[level] <= _LEVEL_RANK[self.level]:
            return False
        for name, money in (("per_payment", limits.per_payment), ("daily", limits.daily), ("monthly", limits.monthly)):
            if money.currency != self.currency:
                msg = (
                    f"{level} {name} limit of account {self.account_id} is in {money.currency}, "
                    f"but its limits are in {self.currency}"
                )
                raise ValueError(msg)
        self.per_payment, self.daily, self.monthly = limits.per_payment, limits.daily, limits.monthly
        self.level = level
        return True

    def is_new(self, now: datetime) -> bool:
        """Whether the account is younger than :data:`NEW_ACCOUNT_AGE` at ``now`` (halved limits)."""
        _require_aware(now, "now")
        return now - self.registered_at < NEW_ACCOUNT_AGE

    def effective(self, now: datetime) -> Limits:
        """The limits that apply at ``now``: daily and monthly halved (rounding down) for a new account."""
        if not self.is_new(now):
            return self.limits
        return Limits(per_payment=self.per_payment, daily=_half(self.daily), monthly=_half(self.monthly))


@dataclass(slots=True)
class SpendingWindow:
    """What an account has spent (reserved) in one calendar day or month, UTC.

    ``start`` is the window's first day as an ISO date (``"2026-12-01"``); for a month window it
    is always the 1st. The row's ``version`` is the framework's (see the module docstring).
    """

    account_id: str
    kind: WindowKind
    start: str
    spent: Money

    def __post_init__(self) -> None:
        self.kind = WindowKind(self.kind)
        try:
            first = date.fromisoformat(self.start)
        except ValueError:
            msg = f"window start must be an ISO date such as '2026-12-01', not {self.start!r}"
            raise ValueError(msg) from None
        if first.isoformat() != self.start:
            msg = f"window start must be written YYYY-MM-DD, not {self.start!r}"
            raise ValueError(msg)
        if self.kind is WindowKind.MONTH and first.day != 1:
            msg = f"a month window starts on the 1st, not {self.start!r}"
            raise ValueError(msg)

    @classmethod
    def empty(cls, account_id: str, kind: WindowKind, now: datetime, currency: str) -> SpendingWindow:
        """The window of ``kind`` that contains ``now``, with nothing spent (no row yet)."""
        return cls(
            account_id=account_id,
            kind=kind,
            start=window_start(kind, now),
            spent=Money(amount_minor=0, currency=currency),
        )

    @property
    def key(self) -> WindowKey:
        return (self.account_id, self.kind, self.start)

    @property
    def label(self) -> str:
        """How a reason names the window: ``"day 2026-12-01 UTC"`` or ``"month 2026-12 UTC"``."""
        if self.kind is WindowKind.DAY:
            return f"day {self.start} UTC"
        return f"month {self.start[:7]} UTC"

    def covers(self, now: datetime) -> bool:
        """Whether ``now`` falls in this window."""
        return self.start == window_start(self.kind, now)


def window_start(kind: WindowKind, now: datetime) -> str:
    """The first day (ISO date, UTC) of the window of ``kind`` containing ``now``."""
    _require_aware(now, "now")
    today = now.astimezone(UTC).date()
    if WindowKind(kind) is WindowKind.MONTH:
        today = today.replace(day=1)
    return today.isoformat()


def window_keys(account_id: str, now: datetime) -> tuple[WindowKey, WindowKey]:
    """The keys of the day and month windows containing ``now``: what a payment handler loads."""
    return (
        (account_id, WindowKind.DAY, window_start(WindowKind.DAY, now)),
        (account_id, WindowKind.MONTH, window_start(WindowKind.MONTH, now)),
    )


def check_and_reserve(
    limits: AccountLimits, day: SpendingWindow, month: SpendingWindow, amount: Money, now: datetime
) -> None:
    """Refuse ``amount`` with :class:`LimitExceeded` if it breaks a limit; else add it to both windows.

    ``day`` and ``month`` must be the account's windows containing ``now`` (ValueError
    otherwise, as for an amount in another currency than the limits'). Nothing changes on a
    refusal.
    """
    _require_aware(now, "now")
    _require_window(limits, day, WindowKind.DAY, now)
    _require_window(limits, month, WindowKind.MONTH, now)
    _require_currency(limits, amount, "the payment")
    effective = limits.effective(now)
    if amount.amount_minor > effective.per_payment.amount_minor:
        raise LimitExceeded(
            "per_payment",
            limit_amount=effective.per_payment,
            spent=_zero(limits.currency),
            remaining=effective.per_payment,
            amount=amount,
            window=None,
        )
    halved = limits.is_new(now)
    checks: tuple[tuple[LimitName, SpendingWindow, Money, Money], ...] = (
        ("daily", day, effective.daily, limits.daily),
        ("monthly", month, effective.monthly, limits.monthly),
    )
    for name, window, limit, full in checks:
        left = max(limit.amount_minor - window.spent.amount_minor, 0)
        if amount.amount_minor > left:
            raise LimitExceeded(
                name,
                limit_amount=limit,
                spent=window.spent,
                remaining=Money(amount_minor=left, currency=limits.currency),
                amount=amount,
                window=window.label,
                full_limit=full if halved else None,
            )
    day.spent = day.spent + amount
    month.spent = month.spent + amount


def release(day: SpendingWindow, month: SpendingWindow, amount: Money) -> None:
    """Give back a reservation of a payment that failed after :func:`check_and_reserve`.

    ``day`` and ``month`` are the windows the reservation was made in; spending is taken down
    by ``amount`` but never below zero (a repeated release, or one after a rollover, cannot make
    headroom that was never used).
    """
    if day.kind is not WindowKind.DAY or month.kind is not WindowKind.MONTH:
        msg = f"release takes a day and a month window, not {day.kind} and {month.kind}"
        raise ValueError(msg)
    for window in (day, month):
        if window.spent.currency != amount.currency:
            msg = f"cannot release {_show(amount)} from {window.label} spending in {window.spent.currency}"
            raise ValueError(msg)
        window.spent = Money(
            amount_minor=max(window.spent.amount_minor - amount.amount_minor, 0), currency=amount.currency
        )


# --- helpers ---------------------------------------------------------------------------------------


def _show(money: Money) -> str:
    """``5000.00 USD``: the amount in major units with the currency's digits, no grouping."""
    return f"{money.decimal} {money.currency}"


def _young_account_text() -> str:
    return f"the account is younger than {NEW_ACCOUNT_AGE.days} days"


def _half(money: Money) -> Money:
    return Money(amount_minor=money.amount_minor // 2, currency=money.currency)


def _zero(currency: str) -> Money:
    return Money(amount_minor=0, currency=currency)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"{name} must be an aware datetime, not naive {moment.isoformat()}"
        raise ValueError(msg)


def _require_currency(limits: AccountLimits, money: Money, what: str) -> None:
    if money.currency != limits.currency:
        msg = (
            f"{what} is in {money.currency} but the limits of account {limits.account_id} are in "
            f"{limits.currency}: convert {_show(money)} to {limits.currency} before checking limits"
        )
        raise ValueError(msg)


def _require_window(limits: AccountLimits, window: SpendingWindow, kind: WindowKind, now: datetime) -> None:
    expected = (limits.account_id, kind, window_start(kind, now))
    if window.key != expected:
        msg = (
            f"expected the {kind} window {expected[2]} of account {limits.account_id} for {now.isoformat()}, "
            f"got the {window.kind} window {window.start} of account {window.account_id}: load window_keys(...)"
        )
        raise ValueError(msg)
    _require_currency(limits, window.spent, f"{window.label} spending")
