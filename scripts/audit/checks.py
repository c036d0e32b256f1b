"""G1: the books audit's checks, pure functions of the snapshots (:mod:`scripts.audit.books`).

Each check returns the breaks it finds; :func:`audit` runs them all. What is checked:

- **ledger** (the escrow ledger's own books check, :meth:`Ledger.check` on its log replayed
  unchecked): every currency's debits equal its credits, pending and posted apart; every
  post, void and expiry ends one pending transfer; every account keeps its flags; the
  balances the service keeps equal those its log gives; no pending transfer is past its
  timeout. And the balances as served sum to zero per currency on their own.
- **escrow**: what the ledger's escrow holding accounts hold equals what the saga's orders in
  escrow hold (price less what refunds took out), per currency and per order, and escrow's
  own hold record says the same.
- **payments**: every unit of a captured payment is in exactly one place: still held in
  escrow, released to the seller, or refunded to the buyer. Less is money lost
  (``captured_not_accounted``), more is money counted twice (``counted_twice``: released and
  refunded, say). A hold with no captured payment behind it is money from nowhere.
- **orders**: no order waits on the system (created, payment pending, paid, releasing, or a
  refund under way) without progress for longer than ``AuditLimits.stuck_after``, unless it
  carries a reason. An order in escrow waiting for the buyer's receipt waits on a person, not
  the system; it counts as stuck only past ``awaiting_buyer_after`` when that is given (the
  protection window, S4, will bound it).

**In flight.** An order that waits on the system and moved within ``stuck_after`` may be
between two services' steps (the payment captured, the hold not yet placed), so the
cross-service checks leave it out; the report counts such orders. Run the audit on a stack at
rest (after a scenario) and nothing is in flight.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from contracts import Money, OrderStatus
from contracts.money import minor_unit_exponent
from scripts.audit.books import Books, HoldSnapshot, OrderSnapshot, PaymentSnapshot
from services.escrow.domain.ledger import AccountBalance, AccountId, AccountKind, Ledger

WAITING_ON_THE_SYSTEM = frozenset(
    {
        OrderStatus.CREATED,
        OrderStatus.PAYMENT_PENDING,
        OrderStatus.PAID,
        OrderStatus.RELEASING,
        OrderStatus.COMPENSATING,
    }
)
"""Statuses whose next step is a service's, not a person's or a timer's (an order in escrow
with a refund under way too)."""
HOLDING = frozenset({OrderStatus.IN_ESCROW, OrderStatus.DISPUTED})
"""Statuses in which escrow holds the order's funds (frozen while disputed)."""
FINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.REFUNDED})
HOLD_HELD, HOLD_RELEASED = "held", "released"
CAPTURED = "captured"


class Check(StrEnum):
    """Which part of the books a break is about."""

    SOURCES = "sources"
    LEDGER = "ledger"
    ESCROW = "escrow"
    PAYMENTS = "payments"
    ORDERS = "orders"


class AuditCode(StrEnum):
    """The audit's own break codes (the ledger's are :class:`services.escrow.domain.ledger.BreakCode`)."""

    SOURCE_UNREADABLE = "source_unreadable"
    SERVED_CURRENCY_UNBALANCED = "served_currency_unbalanced"
    ESCROW_TOTAL_MISMATCH = "escrow_total_mismatch"
    ORDER_HOLDING_MISMATCH = "order_holding_mismatch"
    CAPTURED_NOT_ACCOUNTED = "captured_not_accounted"
    COUNTED_TWICE = "counted_twice"
    HOLD_WITHOUT_CAPTURE = "hold_without_capture"
    STUCK_ORDER = "stuck_order"
    TIMER_OVERDUE = "timer_overdue"


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """One thing wrong with the books: where, its code, what it is about, and the figures."""

    check: Check
    code: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code} {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True)
class AuditLimits:
    """How long an order may stand still (the audit's options)."""

    stuck_after: timedelta = timedelta(minutes=15)
    awaiting_buyer_after: timedelta | None = None

    def __post_init__(self) -> None:
        if self.stuck_after <= timedelta(0):
            raise ValueError(f"stuck_after must be positive, not {self.stuck_after}")
        if self.awaiting_buyer_after is not None and self.awaiting_buyer_after <= timedelta(0):
            raise ValueError(f"awaiting_buyer_after must be positive, not {self.awaiting_buyer_after}")


@dataclass(frozen=True, slots=True)
class EscrowTotal:
    """One currency's escrow: what the ledger's holding accounts hold, what the orders in escrow hold."""

    currency: str
    ledger_minor: int
    orders_minor: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The audit's verdict: every break (none when the books are right) and the figures it saw."""

    taken_at: datetime
    breaks: tuple[AuditBreak, ...]
    figures: Mapping[str, int] = field(default_factory=dict)
    escrow: tuple[EscrowTotal, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.breaks

    def codes(self) -> set[str]:
        return {found.code for found in self.breaks}

    def summary(self) -> str:
        """One line: the breaks, each named, or that the books balance."""
        if self.ok:
            return "the books balance"
        return f"{len(self.breaks)} break(s) in the books: " + "; ".join(str(found) for found in self.breaks)


def show(minor: int, currency: str) -> str:
    """``25.00 USD``: minor units in major units with the currency's digits."""
    return f"{Decimal(minor).scaleb(-minor_unit_exponent(currency))} {currency}"


def _money(money: Money) -> str:
    return show(money.amount_minor, money.currency)


# --------------------------------------------------------------------------- orders: in flight, stuck


def waits_on_the_system(order: OrderSnapshot) -> bool:
    return order.status in WAITING_ON_THE_SYSTEM or (order.status in HOLDING and order.refunding is not None)


def in_flight(orders: Iterable[OrderSnapshot], now: datetime, limits: AuditLimits) -> set[str]:
    """Orders that wait on the system and moved within ``stuck_after``: maybe between two steps."""
    return {o.order_id for o in orders if waits_on_the_system(o) and now - o.updated_at <= limits.stuck_after}


def overdue_timers(orders: Iterable[OrderSnapshot], now: datetime, limits: AuditLimits) -> Iterator[AuditBreak]:
    """S4: a timer due longer ago than ``stuck_after`` has not fired: the deadline sweeper or the
    saga is not doing its work."""
    for order in sorted(orders, key=lambda o: o.order_id):
        due = order.next_deadline_at
        if due is not None and now - due > limits.stuck_after:
            yield AuditBreak(
                Check.ORDERS,
                AuditCode.TIMER_OVERDUE,
                f"order {order.order_id}",
                f"{order.status.value}: a timer due at {due.isoformat()} has not fired "
                f"({_duration(now - due)} late, limit {_duration(limits.stuck_after)})",
            )


def stuck_orders(orders: Iterable[OrderSnapshot], now: datetime, limits: AuditLimits) -> Iterator[AuditBreak]:
    for order in sorted(orders, key=lambda o: o.order_id):
        if order.status in FINAL or order.reason or order.attention or order.next_deadline_at is not None:
            continue  # final, explained, an operator's, or waiting on its own timer (overdue_timers)
        still = now - order.updated_at
        if waits_on_the_system(order):
            limit, waiting = limits.stuck_after, "the system"
        elif limits.awaiting_buyer_after is not None:
            limit, waiting = limits.awaiting_buyer_after, "the buyer's receipt"
        else:
            continue
        if still > limit:
            refund = f" (refund {order.refunding} under way)" if order.refunding else ""
            yield AuditBreak(
                Check.ORDERS,
                AuditCode.STUCK_ORDER,
                f"order {order.order_id}",
                f"{order.status.value}{refund} since {order.updated_at.isoformat()}, waiting on {waiting}: "
                f"{_duration(still)} without progress (limit {_duration(limit)}) and no reason",
            )


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return " ".join(parts) or "0s"


# --------------------------------------------------------------------------- the ledger


def ledger_breaks(books: Books, ledger: Ledger) -> Iterator[AuditBreak]:
    """The ledger's own books check (replayed unchecked from its log) and the served balances' sums."""
    served = books.ledger.balances
    report = ledger.check(books.taken_at, balances=served)
    for found in report.breaks:
        yield AuditBreak(Check.LEDGER, str(found.code), found.subject, found.detail)
    yield from _served_currencies(served.values())


def _served_currencies(balances: Iterable[AccountBalance]) -> Iterator[AuditBreak]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for b in balances:
        sums = totals[b.account.currency]
        sums[0] += b.debits_pending
        sums[1] += b.credits_pending
        sums[2] += b.debits_posted
        sums[3] += b.credits_posted
    for currency, (dp, cp, dpo, cpo) in sorted(totals.items()):
        for phase, debit_total, credit_total in (("pending", dp, cp), ("posted", dpo, cpo)):
            if debit_total != credit_total:
                yield AuditBreak(
                    Check.LEDGER,
                    AuditCode.SERVED_CURRENCY_UNBALANCED,
                    currency,
                    f"the balances escrow serves sum {phase} debits {show(debit_total, currency)} against {phase} "
                    f"credits {show(credit_total, currency)}: {show(debit_total - credit_total, currency)} apart",
                )


def escrow_holdings(balances: Mapping[AccountId, AccountBalance]) -> dict[tuple[str, str], int]:
    """What each order's escrow holding account holds, by (order, currency): its credits, pending
    included (a hold booked as a reservation into escrow is held), less its posted debits only (a
    reservation out of escrow, such as the seller's payout awaiting release, has not left yet)."""
    return {
        (account.owner, account.currency): balance.credits - balance.debits_posted
        for account, balance in balances.items()
        if account.kind is AccountKind.ESCROW_HOLDING
    }


# --------------------------------------------------------------------------- escrow against the orders


def _held_by_hold(hold: HoldSnapshot | None) -> int:
    return hold.still_held.amount_minor if hold is not None and hold.status == HOLD_HELD else 0


def _held_by_order(order: OrderSnapshot | None) -> int:
    return order.still_held.amount_minor if order is not None and order.status in HOLDING else 0


def escrow_breaks(
    books: Books, holdings: Mapping[tuple[str, str], int], skip: set[str]
) -> tuple[list[AuditBreak], tuple[EscrowTotal, ...]]:
    """Per order and per currency: the ledger's escrow holding, escrow's hold and the saga's order agree."""
    orders = {o.order_id: o for o in books.orders}
    holds = {h.order_id: h for h in books.holds}
    keys = set(holdings)
    keys |= {(o.order_id, o.amount.currency) for o in books.orders if o.status in HOLDING}
    keys |= {(h.order_id, h.amount.currency) for h in books.holds if h.status == HOLD_HELD}
    breaks: list[AuditBreak] = []
    ledger_total: dict[str, int] = defaultdict(int)
    orders_total: dict[str, int] = defaultdict(int)
    for order_id, currency in sorted(keys):
        if order_id in skip:
            continue
        order, hold = orders.get(order_id), holds.get(order_id)
        in_ledger = holdings.get((order_id, currency), 0)
        by_hold = _held_by_hold(hold) if hold is not None and hold.amount.currency == currency else 0
        by_order = _held_by_order(order) if order is not None and order.amount.currency == currency else 0
        ledger_total[currency] += in_ledger
        orders_total[currency] += by_order
        if not in_ledger == by_hold == by_order:
            breaks.append(
                AuditBreak(
                    Check.ESCROW,
                    AuditCode.ORDER_HOLDING_MISMATCH,
                    f"order {order_id}",
                    f"the ledger's escrow holding holds {show(in_ledger, currency)}, "
                    f"escrow's hold ({hold.status if hold else 'none'}) {show(by_hold, currency)}, "
                    f"the saga's order ({order.status.value if order else 'none'}) {show(by_order, currency)}",
                )
            )
    totals = tuple(
        EscrowTotal(c, ledger_total[c], orders_total[c]) for c in sorted(ledger_total.keys() | orders_total.keys())
    )
    for total in totals:
        if total.ledger_minor != total.orders_minor:
            c = total.currency
            breaks.append(
                AuditBreak(
                    Check.ESCROW,
                    AuditCode.ESCROW_TOTAL_MISMATCH,
                    c,
                    f"escrow holding in the ledger {show(total.ledger_minor, c)} != what the orders in escrow hold "
                    f"{show(total.orders_minor, c)}: {show(total.ledger_minor - total.orders_minor, c)} apart",
                )
            )
    return breaks, totals


# --------------------------------------------------------------------------- captured payments


def payment_breaks(books: Books, skip: set[str]) -> Iterator[AuditBreak]:
    """Every unit of each captured payment held, released or refunded: exactly one of them."""
    holds = {h.order_id: h for h in books.holds}
    captured = {p.order_id: p for p in books.payments if p.status == CAPTURED}
    for order_id, payment in sorted(captured.items()):
        if order_id not in skip:
            yield from _placement(payment, holds.get(order_id))
    for order_id, hold in sorted(holds.items()):
        if order_id not in captured and order_id not in skip:
            yield AuditBreak(
                Check.PAYMENTS,
                AuditCode.HOLD_WITHOUT_CAPTURE,
                f"order {order_id}",
                f"escrow holds {_money(hold.amount)} ({hold.status}) but the payment service has no captured "
                "payment for it",
            )


def _placement(payment: PaymentSnapshot, hold: HoldSnapshot | None) -> Iterator[AuditBreak]:
    price = payment.amount
    currency = price.currency
    if hold is not None and hold.amount != price:
        yield AuditBreak(
            Check.PAYMENTS,
            AuditCode.CAPTURED_NOT_ACCOUNTED,
            f"order {payment.order_id}",
            f"captured {_money(price)} but escrow's hold is for {_money(hold.amount)}",
        )
        return
    parts = {
        "held": _held_by_hold(hold),
        "released": hold.still_held.amount_minor if hold is not None and hold.status == HOLD_RELEASED else 0,
        "refunded": payment.refunded_minor,
    }
    placed = sum(parts.values())
    named = ", ".join(f"{name} {show(minor, currency)}" for name, minor in parts.items())
    where = "" if hold is not None else "; escrow has no hold for it"
    if placed < price.amount_minor:
        yield AuditBreak(
            Check.PAYMENTS,
            AuditCode.CAPTURED_NOT_ACCOUNTED,
            f"order {payment.order_id}",
            f"captured {_money(price)}: {named}{where}; {show(price.amount_minor - placed, currency)} is neither "
            "held, released nor refunded",
        )
    elif placed > price.amount_minor:
        twice = " and ".join(name for name, minor in parts.items() if minor)
        yield AuditBreak(
            Check.PAYMENTS,
            AuditCode.COUNTED_TWICE,
            f"order {payment.order_id}",
            f"captured {_money(price)} but both {twice}: {named}, {show(placed - price.amount_minor, currency)} "
            "counted twice",
        )


# --------------------------------------------------------------------------- everything


def audit(books: Books, limits: AuditLimits | None = None) -> AuditReport:
    """Every check on ``books``; the report names each break (none: the books balance)."""
    limits = limits or AuditLimits()
    now = books.taken_at
    ledger = Ledger.replay(books.ledger.records, verify=False)
    skip = in_flight(books.orders, now, limits)
    breaks = list(ledger_breaks(books, ledger))
    found, totals = escrow_breaks(books, escrow_holdings(ledger.balances()), skip)
    breaks += found
    breaks += payment_breaks(books, skip)
    breaks += stuck_orders(books.orders, now, limits)
    breaks += overdue_timers(books.orders, now, limits)
    figures = {
        "ledger records": len(books.ledger.records),
        "ledger accounts": len(ledger.balances()),
        "orders": len(books.orders),
        "orders in escrow": sum(o.status in HOLDING for o in books.orders),
        "orders in flight": len(skip),
        "captured payments": sum(p.status == CAPTURED for p in books.payments),
        "escrow holds": len(books.holds),
    }
    return AuditReport(now, tuple(breaks), figures, totals)


def unreadable(taken_at: datetime, source: str, detail: str) -> AuditReport:
    """The report when a service's read API could not be read: no check can be trusted then."""
    return AuditReport(taken_at, (AuditBreak(Check.SOURCES, AuditCode.SOURCE_UNREADABLE, source, detail),))
