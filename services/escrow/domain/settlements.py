"""E4 the settlement report: what became each seller's payable, per seller and per UTC day, with
the total per currency (pure: the store finds the releases, the read API serves the report).

A :class:`Release` is one posted reservation: the order's ``seller_payable`` credited with what
the hold still held, in the seller's currency (holds.py). The fee was booked to fee revenue and
the conversion through the FX positions when the hold was placed, so what a release posts is
already net of them. Amounts are integer minor units and totals are sums of them: nothing is
rounded, and a day's total is exactly what its releases posted. A day is a UTC calendar day, so
a release at 23:59:59 UTC and one at 00:00:00 UTC the next day fall on two days wherever the
reader is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from contracts import Money


@dataclass(frozen=True, slots=True)
class Release:
    """One release posted to a seller's payable."""

    order_id: str
    seller_id: str
    amount: Money
    released_at: datetime

    def __post_init__(self) -> None:
        if self.released_at.utcoffset() is None:  # a naive time has no UTC day
            raise ValueError(f"released_at must be an aware datetime, not {self.released_at.isoformat()}")

    @property
    def day(self) -> date:
        """The UTC day the release falls on."""
        return self.released_at.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class SellerDay:
    """One seller's settlement for one UTC day: its releases in the order they were posted."""

    seller_id: str
    day: date
    releases: tuple[Release, ...] = ()

    @property
    def count(self) -> int:
        return len(self.releases)

    @property
    def totals(self) -> tuple[Money, ...]:
        """The sum per currency, sorted by currency (a seller may sell in several)."""
        sums: dict[str, int] = defaultdict(int)
        for release in self.releases:
            sums[release.amount.currency] += release.amount.amount_minor
        return tuple(Money(amount_minor=minor, currency=currency) for currency, minor in sorted(sums.items()))


def day_span(day: date) -> tuple[datetime, datetime]:
    """The UTC day as [start, end): what the store selects a day's releases by."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def by_seller_and_day(releases: Iterable[Release]) -> list[SellerDay]:
    """Releases grouped per seller and UTC day, sorted by (seller, day), each in the order given."""
    groups: dict[tuple[str, date], list[Release]] = defaultdict(list)
    for release in releases:
        groups[(release.seller_id, release.day)].append(release)
    return [SellerDay(seller, day, tuple(found)) for (seller, day), found in sorted(groups.items())]


def settlement(seller_id: str, day: date, releases: Iterable[Release]) -> SellerDay:
    """``seller_id``'s settlement on ``day`` out of ``releases`` (those of other sellers and days
    are left out); an empty one when nothing was released to them that day."""
    mine = [r for r in releases if r.seller_id == seller_id and r.day == day]
    return SellerDay(seller_id, day, tuple(mine))
