"""G1, the books audit's checks on snapshots: clean books pass, and each deliberately broken copy
is named by its break (a currency off zero, escrow differing from the orders, a captured payment
neither held nor refunded, one both released and refunded, a pending transfer past its timeout,
a stuck order)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Money, OrderStatus
from scripts.audit.books import Books, HoldSnapshot, LedgerSnapshot, OrderSnapshot, PaymentSnapshot
from scripts.audit.checks import AuditBreak, AuditCode, AuditLimits, AuditReport, Check, audit
from services.escrow.domain.ledger import (
    AccountBalance,
    AccountId,
    Ledger,
    Transfer,
    TransferCode,
    TransferKind,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD_TIMEOUT = timedelta(days=30)
BUYER, SELLER = "buyer-1", "seller-1"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def _hold(order_id: str, minor: int, *, expires_at: datetime | None = None) -> Transfer:
    return Transfer(
        f"hold:{order_id}",
        AccountId.buyer_funds_in(BUYER, "USD"),
        AccountId.escrow_holding(order_id, "USD"),
        usd(minor),
        order_id,
        TransferCode.HOLD,
        TransferKind.PENDING,
        expires_at=expires_at,
    )


def _out(order_id: str, to: AccountId, minor: int, code: TransferCode, suffix: str) -> Transfer:
    return Transfer(
        f"{code}:{order_id}:{suffix}", AccountId.escrow_holding(order_id, "USD"), to, usd(minor), order_id, code
    )


def ledger_of_four_orders(t0: datetime = T0) -> Ledger:
    """held: 25.00 still in escrow (a pending hold with a timeout); done: 25.00 released to the
    seller; back: 25.00 refunded in full; part: 40.00, 10.00 refunded, then 30.00 released;
    reserved: 10.00 held the way the escrow service books it, the seller's payout reserved."""
    ledger = Ledger()
    seller = AccountId.seller_payable(SELLER, "USD")
    refunds = AccountId.refunds_out(BUYER, "USD")
    ledger.apply(_hold("held", 2500, expires_at=t0 + HOLD_TIMEOUT), now=t0)
    done = _hold("done", 2500)
    ledger.apply(done, now=t0)
    ledger.apply_linked([done.post("post:done"), _out("done", seller, 2500, TransferCode.RELEASE, "seller")], now=t0)
    back = _hold("back", 2500)
    ledger.apply(back, now=t0)
    ledger.apply_linked([back.post("post:back"), _out("back", refunds, 2500, TransferCode.REFUND, "r1")], now=t0)
    part = _hold("part", 4000)
    ledger.apply(part, now=t0)
    ledger.apply(part.post("post:part"), now=t0)
    ledger.apply(_out("part", refunds, 1000, TransferCode.REFUND, "r1"), now=t0)
    ledger.apply(_out("part", seller, 3000, TransferCode.RELEASE, "seller"), now=t0)
    # reserved: held as escrow does it, posted into the holding with the seller's payout reserved
    # (a pending transfer out of it) until release: still all in escrow.
    ledger.apply(
        Transfer(
            "hold:reserved",
            AccountId.buyer_funds_in(BUYER, "USD"),
            AccountId.escrow_holding("reserved", "USD"),
            usd(1000),
            "reserved",
            TransferCode.HOLD,
        ),
        now=t0,
    )
    payout = Transfer(
        "payout:reserved",
        AccountId.escrow_holding("reserved", "USD"),
        AccountId.seller_payable("reserved", "USD"),
        usd(1000),
        "reserved",
        TransferCode.RELEASE,
        TransferKind.PENDING,
    )
    ledger.apply(payout, now=t0)
    return ledger


def order(order_id: str, minor: int, status: OrderStatus, *, t0: datetime = T0, **fields: object) -> OrderSnapshot:
    base = OrderSnapshot(order_id, BUYER, SELLER, usd(minor), status, updated_at=t0)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def hold(order_id: str, minor: int, still: int, status: str) -> HoldSnapshot:
    return HoldSnapshot(order_id, BUYER, SELLER, usd(minor), usd(still), status)


def clean_books(taken_at: datetime | None = None, *, t0: datetime = T0) -> Books:
    """The books of :func:`ledger_of_four_orders` from ``t0`` as every service tells them, an hour
    later unless ``taken_at`` says otherwise: they balance."""
    ledger = ledger_of_four_orders(t0)
    return Books(
        taken_at=t0 + timedelta(hours=1) if taken_at is None else taken_at,
        ledger=LedgerSnapshot(ledger.records, ledger.balances()),
        holds=(
            hold("held", 2500, 2500, "held"),
            hold("done", 2500, 2500, "released"),
            hold("back", 2500, 0, "returned"),
            hold("part", 4000, 3000, "released"),
            hold("reserved", 1000, 1000, "held"),
        ),
        orders=(
            order("held", 2500, OrderStatus.IN_ESCROW, t0=t0),
            order("done", 2500, OrderStatus.COMPLETED, t0=t0),
            order("back", 2500, OrderStatus.REFUNDED, returned_minor=2500, refunded_minor=2500, t0=t0),
            order("part", 4000, OrderStatus.COMPLETED, returned_minor=1000, refunded_minor=1000, t0=t0),
            order("reserved", 1000, OrderStatus.IN_ESCROW, t0=t0),
            order("declined", 9000, OrderStatus.CANCELLED, reason="insufficient_funds", t0=t0),
        ),
        payments=(
            PaymentSnapshot("held", usd(2500), "captured"),
            PaymentSnapshot("done", usd(2500), "captured"),
            PaymentSnapshot("back", usd(2500), "captured", refunded=usd(2500)),
            PaymentSnapshot("part", usd(4000), "captured", refunded=usd(1000)),
            PaymentSnapshot("reserved", usd(1000), "captured"),
        ),
    )


def only(report: AuditReport, code: str) -> list[AuditBreak]:
    return [found for found in report.breaks if found.code == code]


def test_g1_clean_books_balance() -> None:
    report = audit(clean_books())

    assert report.breaks == ()
    assert report.ok
    assert [(t.currency, t.ledger_minor, t.orders_minor) for t in report.escrow] == [("USD", 3500, 3500)]
    assert report.figures["captured payments"] == 5
    assert report.figures["orders in flight"] == 0


def test_g1_a_currency_not_summing_to_zero_in_the_served_balances_is_named() -> None:
    books = clean_books()
    account = AccountId.seller_payable(SELLER, "USD")
    served = dict(books.ledger.balances)
    kept = served[account]
    served[account] = dataclasses.replace(kept, credits_posted=kept.credits_posted + 1)  # one cent from nowhere

    report = audit(dataclasses.replace(books, ledger=LedgerSnapshot(books.ledger.records, served)))

    (unbalanced,) = only(report, AuditCode.SERVED_CURRENCY_UNBALANCED)
    assert (unbalanced.check, unbalanced.subject) == (Check.LEDGER, "USD")
    assert "-0.01 USD apart" in unbalanced.detail
    (mismatch,) = only(report, "stored_balance_mismatch")
    assert mismatch.subject == str(account)


def test_g1_a_log_record_that_does_not_balance_its_currency_is_named() -> None:
    books = clean_books()
    records = list(books.ledger.records)
    # The release of `done` credited to a EUR account: USD loses a credit, EUR gains one from nowhere.
    at = next(i for i, r in enumerate(records) if r.transfer_id == "release:done:seller")
    records[at] = dataclasses.replace(records[at], credit_account="seller_payable:seller-1:EUR")
    rebuilt = Ledger.replay(records, verify=False).balances()

    report = audit(dataclasses.replace(books, ledger=LedgerSnapshot(tuple(records), rebuilt)))

    assert {found.subject for found in only(report, "currency_unbalanced")} == {"USD", "EUR"}
    assert only(report, "invalid_record")[0].subject == "record 3 (release:done:seller)"


def test_g1_escrow_holding_differing_from_the_orders_in_escrow_is_named() -> None:
    books = clean_books()
    # The saga believes 5.00 USD of `held` went back to the buyer; the ledger still holds all 25.00.
    orders = tuple(dataclasses.replace(o, returned_minor=500) if o.order_id == "held" else o for o in books.orders)

    report = audit(dataclasses.replace(books, orders=orders))

    (per_order,) = only(report, AuditCode.ORDER_HOLDING_MISMATCH)
    assert per_order.subject == "order held"
    assert "the ledger's escrow holding holds 25.00 USD" in per_order.detail
    assert "the saga's order (in_escrow) 20.00 USD" in per_order.detail
    (total,) = only(report, AuditCode.ESCROW_TOTAL_MISMATCH)
    assert (total.subject, total.detail.endswith("5.00 USD apart")) == ("USD", True)


def test_g1_a_hold_the_ledger_does_not_show_is_named() -> None:
    books = clean_books()
    records = tuple(r for r in books.ledger.records if r.order_id != "held")  # the hold never booked
    rebuilt = Ledger.replay(records, verify=False).balances()

    report = audit(dataclasses.replace(books, ledger=LedgerSnapshot(records, rebuilt)))

    assert [b.subject for b in only(report, AuditCode.ORDER_HOLDING_MISMATCH)] == ["order held"]
    assert only(report, AuditCode.ESCROW_TOTAL_MISMATCH)[0].detail.startswith(
        "escrow holding in the ledger 10.00 USD != what the orders in escrow hold 35.00 USD"
    )


def test_g1_a_captured_payment_neither_held_nor_refunded_is_named() -> None:
    books = clean_books()
    lost = PaymentSnapshot("lost", usd(1500), "captured")
    orders = (*books.orders, order("lost", 1500, OrderStatus.CANCELLED, reason="hold failed"))

    report = audit(dataclasses.replace(books, payments=(*books.payments, lost), orders=orders))

    (found,) = report.breaks
    assert (found.check, found.code, found.subject) == (Check.PAYMENTS, AuditCode.CAPTURED_NOT_ACCOUNTED, "order lost")
    assert "escrow has no hold for it" in found.detail
    assert "15.00 USD is neither held, released nor refunded" in found.detail


def test_g1_a_partial_refund_not_paid_back_leaves_money_unaccounted() -> None:
    books = clean_books()
    payments = tuple(dataclasses.replace(p, refunded=usd(400)) if p.order_id == "part" else p for p in books.payments)

    report = audit(dataclasses.replace(books, payments=payments))

    (found,) = report.breaks
    assert (found.code, found.subject) == (AuditCode.CAPTURED_NOT_ACCOUNTED, "order part")
    assert "released 30.00 USD, refunded 4.00 USD" in found.detail
    assert "6.00 USD is neither held, released nor refunded" in found.detail


def test_g1_a_payment_both_released_and_refunded_is_named() -> None:
    books = clean_books()
    payments = tuple(dataclasses.replace(p, refunded=usd(2500)) if p.order_id == "done" else p for p in books.payments)

    report = audit(dataclasses.replace(books, payments=payments))

    (found,) = report.breaks
    assert (found.check, found.code, found.subject) == (Check.PAYMENTS, AuditCode.COUNTED_TWICE, "order done")
    assert "both released and refunded" in found.detail
    assert "25.00 USD counted twice" in found.detail


def test_g1_a_hold_without_a_captured_payment_is_named() -> None:
    books = clean_books()
    payments = tuple(p for p in books.payments if p.order_id != "done")

    report = audit(dataclasses.replace(books, payments=payments))

    (found,) = report.breaks
    assert (found.code, found.subject) == (AuditCode.HOLD_WITHOUT_CAPTURE, "order done")


def test_g1_a_pending_transfer_past_its_timeout_is_named() -> None:
    report = audit(clean_books(taken_at=T0 + HOLD_TIMEOUT + timedelta(seconds=1)))

    (found,) = report.breaks
    assert (found.check, found.code, found.subject) == (Check.LEDGER, "pending_past_timeout", "record 0 (hold:held)")


def test_g1_a_stuck_order_is_named_unless_it_carries_a_reason() -> None:
    books = clean_books()
    stuck = order("stuck", 1200, OrderStatus.PAYMENT_PENDING, updated_at=books.taken_at - timedelta(hours=2))
    explained = order("explained", 1200, OrderStatus.PAID, updated_at=T0, reason="an operator is looking")

    report = audit(
        dataclasses.replace(books, orders=(*books.orders, stuck, explained)), AuditLimits(timedelta(minutes=15))
    )

    (found,) = report.breaks
    assert (found.check, found.code, found.subject) == (Check.ORDERS, AuditCode.STUCK_ORDER, "order stuck")
    assert "payment_pending since" in found.detail
    assert "2h without progress (limit 15m)" in found.detail
    assert audit(dataclasses.replace(books, orders=(*books.orders, stuck)), AuditLimits(timedelta(hours=3))).ok


def test_g1_a_refund_under_way_too_long_is_stuck_but_in_flight_within_the_limit() -> None:
    books = clean_books()
    returning = order("held", 2500, OrderStatus.IN_ESCROW, returned_minor=500, refunding="r1")
    orders = tuple(returning if o.order_id == "held" else o for o in books.orders)
    recent = dataclasses.replace(books, orders=orders, taken_at=T0 + timedelta(minutes=1))

    assert audit(recent).ok  # the refund is between escrow and the payment: in flight, left out
    later = audit(dataclasses.replace(recent, taken_at=T0 + timedelta(hours=1)))
    assert {b.code for b in later.breaks} == {
        AuditCode.STUCK_ORDER,
        AuditCode.ORDER_HOLDING_MISMATCH,
        AuditCode.ESCROW_TOTAL_MISMATCH,
    }
    assert "(refund r1 under way)" in only(later, AuditCode.STUCK_ORDER)[0].detail


def test_g1_an_order_in_flight_is_left_out_of_the_money_checks() -> None:
    books = clean_books()
    paid = order("fresh", 1800, OrderStatus.PAID, updated_at=books.taken_at - timedelta(seconds=5))
    captured = PaymentSnapshot("fresh", usd(1800), "captured")  # the hold is still being placed

    report = audit(dataclasses.replace(books, orders=(*books.orders, paid), payments=(*books.payments, captured)))

    assert report.ok
    assert report.figures["orders in flight"] == 1


def test_g1_an_order_waiting_for_the_buyer_counts_as_stuck_only_past_its_own_limit() -> None:
    books = clean_books(taken_at=T0 + timedelta(days=20))
    limits = AuditLimits(timedelta(minutes=15), awaiting_buyer_after=timedelta(days=15))

    assert audit(books).ok  # in escrow, waiting on a person: not the system's to move
    found = audit(books, limits).breaks
    assert [(b.code, b.subject) for b in found] == [
        (AuditCode.STUCK_ORDER, "order held"),
        (AuditCode.STUCK_ORDER, "order reserved"),
    ]
    assert "waiting on the buyer's receipt" in found[0].detail


def test_g1_every_break_of_a_badly_broken_copy_is_named_at_once() -> None:
    books = clean_books(taken_at=T0 + HOLD_TIMEOUT + timedelta(days=1))
    served = {
        account: dataclasses.replace(b, debits_posted=b.debits_posted + 7)
        if account == AccountId.fee_revenue("USD")
        else b
        for account, b in {
            **books.ledger.balances,
            AccountId.fee_revenue("USD"): AccountBalance(AccountId.fee_revenue("USD")),
        }.items()
    }
    payments = tuple(dataclasses.replace(p, refunded=usd(2500)) if p.order_id == "done" else p for p in books.payments)
    stuck = order("stuck", 1200, OrderStatus.RELEASING)

    report = audit(
        dataclasses.replace(
            books,
            ledger=LedgerSnapshot(books.ledger.records, served),
            payments=(*payments, PaymentSnapshot("lost", usd(100), "captured")),
            orders=(*books.orders, stuck),
        )
    )

    assert report.codes() >= {
        "pending_past_timeout",
        "stored_balance_mismatch",
        AuditCode.SERVED_CURRENCY_UNBALANCED,
        AuditCode.COUNTED_TWICE,
        AuditCode.CAPTURED_NOT_ACCOUNTED,
        AuditCode.STUCK_ORDER,
    }
    assert "break(s) in the books" in report.summary()


@pytest.mark.parametrize("wrong", [timedelta(0), timedelta(minutes=-1)])
def test_g1_limits_must_be_positive(wrong: timedelta) -> None:
    with pytest.raises(ValueError, match="stuck_after must be positive"):
        AuditLimits(wrong)
