"""The money model's invariants: what must hold at every instant, and once the system settled.

Money is followed per order and per currency where it really is: the buyer's wallet (the
account's movements), the buyer's card (the funding network's book), the escrow ledger, and the
seller's wallet. For an order::

    taken    = wallet debits of its attempts + card charges
               - what came back (wallet credits of its refunds and returned wallet legs + card refunds)
    to_seller = the seller's wallet credit for it

**At every instant**: every currency of the ledger sums to zero (posted and pending apart), no
account breaks its flags and no pending figure is below zero; every wallet's balance is what
its movements say (an effect without its record would show); per order, nothing is created
(``to_seller`` + what came back <= what was taken in all), the seller is never paid more than
escrow released, escrow never books more than the price in or gives more back than it took,
the payment never refunds more than the price, and no ledger step happens twice (one hold,
one release, one return per refund, one end per reservation: :func:`ledger_steps`).

**Once settled** (nothing pending, no timer left): every order is final; per order what was
taken is exactly what the seller got (a completed order: the price less its refunds; a
cancelled or refunded one: nothing), escrow holds nothing and reserves nothing, what escrow
gave back and what the payment refunded are the order's own figures; per currency what left
the buyers is what the sellers got; the ledger's log replays through every rule to the stored
balances; and the G1 books audit (scripts/audit/checks.py, the one a chaos run ends with)
finds no break.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from contracts import Money, OrderStatus
from scripts.audit.books import Books, HoldSnapshot, LedgerSnapshot, OrderSnapshot, PaymentSnapshot
from scripts.audit.checks import audit
from services.account.domain.wallets import Movement, MovementKind
from services.escrow.domain import AccountState, EscrowHold
from services.escrow.domain.ledger import ACCOUNT_FLAGS, AccountKind, Ledger, TransferRecord
from services.escrow.store import HOLDS, LEDGER_ACCOUNTS, LEDGER_TRANSFERS
from services.payment.domain.network import RequestState
from services.payment.domain.payments import Payment, PaymentStatus
from services.payment.domain.refunds import Refund as PaymentRefund
from services.payment.domain.refunds import RefundStatus as PaymentRefundStatus
from services.payment.store import PAYMENTS
from services.payment.store import REFUNDS as PAYMENT_REFUNDS
from services.saga.domain import Order
from shared.aggregates import Row
from tests.support.model.system import System

_REFUND_REFERENCE = "refund:"


@dataclass
class OrderMoney:
    """Where one order's money is, by the services' own books."""

    order_id: str
    price: Money
    debited: int = 0
    charged: int = 0
    credited_back: int = 0
    card_refunded: int = 0
    to_seller: int = 0
    booked_in: int = 0  # into the escrow holding
    held: int = 0  # the holding's balance now
    payable: int = 0  # released to the seller payable (posted)
    reserved: int = 0  # reserved for the seller (pending)
    returned: int = 0  # out of the holding towards the buyer (refunds out)

    @property
    def gross(self) -> int:
        return self.debited + self.charged

    @property
    def back(self) -> int:
        return self.credited_back + self.card_refunded

    @property
    def taken(self) -> int:
        return self.gross - self.back

    def __str__(self) -> str:
        return (
            f"{self.order_id} {self.price}: taken {self.taken} (wallet {self.debited}, card {self.charged}, "
            f"back {self.credited_back} + card {self.card_refunded}), seller got {self.to_seller}; escrow in "
            f"{self.booked_in}, held {self.held}, released {self.payable}, reserved {self.reserved}, "
            f"returned {self.returned}"
        )


def _order_of_reference(reference: str, orders: set[str]) -> str | None:
    """The order a debit or a returned wallet leg is for: ``<order>`` or ``<order>:<attempt>``."""
    if reference in orders:
        return reference
    head, _, attempt = reference.rpartition(":")
    return head if head in orders and attempt.isdigit() else None


def money_by_order(system: System) -> dict[str, OrderMoney]:
    orders = set(system.plans)
    found = {o: OrderMoney(o, plan.amount) for o, plan in system.plans.items()}
    refunds = {r.refund_id: r for r in system.payment.store.all(PAYMENT_REFUNDS)}
    buyers = {plan.buyer_id for plan in system.plans.values()} | set(system.buyers)
    for movement in system.movements():
        _place(movement, found, orders, refunds, buyers)
    for charge in system.network.charges.values():
        if charge.charge_id is not None:
            found[charge.order_id].charged += charge.amount.amount_minor
    for refund in system.network.refunds.values():
        found[refund.order_id].card_refunded += refund.amount.amount_minor
    for state in ledger_accounts(system):
        if state.order_id is None or state.order_id not in found:
            continue
        money = found[state.order_id]
        match state.kind:
            case AccountKind.ESCROW_HOLDING:
                money.booked_in += state.credits_posted
                money.held += state.credits_posted - state.debits_posted
            case AccountKind.SELLER_PAYABLE:
                money.payable += state.credits_posted
                money.reserved += state.credits_pending
            case AccountKind.REFUNDS_OUT:
                money.returned += state.credits_posted
    return found


def _place(
    movement: Movement,
    found: dict[str, OrderMoney],
    orders: set[str],
    refunds: dict[str, PaymentRefund],
    buyers: set[str],
) -> None:
    minor, reference = movement.amount.amount_minor, movement.reference
    if movement.kind is MovementKind.TOP_UP:
        return
    if movement.kind is MovementKind.DEBIT:
        order_id = _order_of_reference(reference, orders)
        assert order_id is not None, f"a wallet debit {reference} of no order"
        found[order_id].debited += minor
        return
    if movement.account_id not in buyers:  # a seller's payout, one per order
        assert reference in orders, f"a seller credit {reference} of no order"
        found[reference].to_seller += minor
        return
    if reference.startswith(_REFUND_REFERENCE):
        refund = refunds.get(reference.removeprefix(_REFUND_REFERENCE))
        assert refund is not None, f"a refund credit {reference} the payment knows nothing of"
        found[refund.order_id].credited_back += minor
        return
    order_id = _order_of_reference(reference, orders)
    assert order_id is not None, f"a buyer credit {reference} of no order"
    found[order_id].credited_back += minor  # a failed split's wallet leg, given back


def ledger_accounts(system: System) -> list[AccountState]:
    """Every ledger account (an order's and the shared ones: one table, read two ways)."""
    return system.escrow.store.all(LEDGER_ACCOUNTS)


def ledger_records(system: System) -> list[TransferRecord]:
    rows = system.escrow.store.journals[LEDGER_TRANSFERS.name]
    return [TransferRecord.from_row({**row, "seq": seq}) for seq, row in enumerate(rows)]


def ledger_steps(rows: list[Row]) -> Counter[tuple[str, str]]:
    """How often each (order, step) moved money in the ledger: the hold's money in, its release,
    each refund's return, and each reservation's end (post or void)."""
    steps: Counter[tuple[str, str]] = Counter()
    for row in rows:
        order_id, name = row["order_id"], row["transfer_id"]
        if row["pending_id"] is not None:
            steps[(order_id, f"end of {row['pending_id']}")] += 1
        if name == f"hold:{order_id}" or (name.startswith("return:") and not name.endswith((":void", ":reserve"))):
            steps[(order_id, name)] += 1
        elif name == f"release:{order_id}":
            steps[(order_id, "release")] += 1
    return steps


# ---------------------------------------------------------------------- at every instant


def check_every_instant(system: System) -> None:
    _check_ledger(system)
    _check_wallets(system)
    money = money_by_order(system)
    for order_money in money.values():
        _check_nothing_created(order_money)
    for payment in system.payment.store.all(PAYMENTS):
        refunded = 0 if payment.refunded is None else payment.refunded.amount_minor
        assert refunded <= payment.amount.amount_minor, (
            f"payment {payment.order_id} refunded {refunded} of {payment.amount}"
        )
    twice = {step: n for step, n in ledger_steps(system.escrow.store.journals[LEDGER_TRANSFERS.name]).items() if n > 1}
    assert not twice, f"one ledger effect per (order, step) broken: {twice}"


def _check_ledger(system: System) -> None:
    sums: Counter[tuple[str, str]] = Counter()
    for state in ledger_accounts(system):
        sums[(state.currency, "posted")] += state.credits_posted - state.debits_posted
        sums[(state.currency, "pending")] += state.credits_pending - state.debits_pending
        flags = ACCOUNT_FLAGS[AccountKind(state.kind)]
        if flags.debits_must_not_exceed_credits:
            assert state.debits_pending + state.debits_posted <= state.credits_posted, f"negative balance: {state}"
        if flags.credits_must_not_exceed_debits:
            assert state.credits_pending + state.credits_posted <= state.debits_posted, f"negative balance: {state}"
        assert min(state.debits_pending, state.credits_pending) >= 0, f"a pending figure below zero: {state}"
    unbalanced = {key: total for key, total in sums.items() if total}
    assert not unbalanced, f"the ledger does not sum to zero: {unbalanced}"


def _check_wallets(system: System) -> None:
    moved: Counter[str] = Counter()
    for movement in system.movements():
        sign = -1 if movement.kind is MovementKind.DEBIT else 1
        moved[movement.account_id] += sign * movement.amount.amount_minor
    for account_id, total in moved.items():
        balance = system.balance(account_id)
        assert balance is not None, f"movements of a wallet {account_id} that does not exist"
        assert balance.amount_minor == total, f"wallet {account_id} holds {balance}, its movements say {total}"


def _check_nothing_created(money: OrderMoney) -> None:
    assert money.to_seller + money.back <= money.gross, f"money created: {money}"
    assert money.to_seller <= money.payable <= money.price.amount_minor, f"seller paid past the release: {money}"
    assert money.booked_in <= money.price.amount_minor, f"escrow booked more than the price: {money}"
    assert money.returned + money.payable <= money.booked_in, f"escrow gave out more than it took in: {money}"


# ---------------------------------------------------------------------- once settled


def check_settled(system: System) -> None:
    assert not system.pending, f"undelivered: {[str(letter) for letter in system.pending]}"
    open_requests = [r.request_id for r in system.network_requests() if r.state is RequestState.DUE]
    assert not open_requests, f"network requests never answered: {open_requests}"
    orders = {order.order_id: order for order in system.orders()}
    assert set(orders) == set(system.plans), f"orders never placed: {set(system.plans) - set(orders)}"
    stuck = [_describe(order) for order in orders.values() if not order.final]
    assert not stuck, f"orders not final once every message was delivered and every timer passed: {stuck}"
    payments = {p.order_id: p for p in system.payment.store.all(PAYMENTS)}
    refunds = system.payment.store.all(PAYMENT_REFUNDS)
    unfinished = [f"{r.refund_id} {r.status.value}" for r in refunds if r.status is not PaymentRefundStatus.REFUNDED]
    assert not unfinished, f"payment refunds not paid back: {unfinished}"
    pending_payments = [p.order_id for p in payments.values() if p.status is PaymentStatus.PENDING]
    assert not pending_payments, f"payments never decided: {pending_payments}"
    money = money_by_order(system)
    for order_id, order in orders.items():
        _check_order_settled(order, money[order_id], payments.get(order_id))
    _check_currencies(system, money)
    _check_log(system)
    _check_audit(system, list(orders.values()), list(payments.values()))


def _describe(order: Order) -> str:
    why = order.attention or order.reason or "no reason given"
    return f"{order.order_id} {order.status.value} (refunding {order.refunding}): {why}"


def _check_order_settled(order: Order, money: OrderMoney, payment: Payment | None) -> None:
    assert money.held == 0, f"money stuck in escrow: {money}"
    assert money.reserved == 0, f"money still reserved in escrow: {money}"
    assert money.taken == money.to_seller, f"money lost or created ({order.status.value}): {money}"
    if order.status is OrderStatus.COMPLETED:
        assert money.to_seller == order.amount.amount_minor - order.refunded_minor == money.payable, str(money)
    else:
        assert money.to_seller == 0 == money.taken, f"{order.status.value} yet money moved: {money}"
    assert money.returned == order.returned_minor, (
        f"escrow returned {money.returned}, the saga says {order.returned_minor}"
    )
    refunded = 0 if payment is None or payment.refunded is None else payment.refunded.amount_minor
    assert refunded == order.refunded_minor, f"the payment refunded {refunded}, the saga says {order.refunded_minor}"


def _check_currencies(system: System, money: dict[str, OrderMoney]) -> None:
    """Per currency, from the wallets and the network alone: what left the buyers reached the sellers."""
    left_buyers: Counter[str] = Counter()
    for buyer in system.buyers.values():
        balance = system.balance(buyer.account_id)
        left_buyers[buyer.currency] += buyer.wallet_minor - (0 if balance is None else balance.amount_minor)
    for charge in system.network.charges.values():
        if charge.charge_id is not None:
            left_buyers[charge.amount.currency] += charge.amount.amount_minor - charge.refunded_minor
    reached_sellers: Counter[str] = Counter()
    for order_money in money.values():
        reached_sellers[order_money.price.currency] += order_money.to_seller
    assert +left_buyers == +reached_sellers, (
        f"per currency, buyers paid {dict(left_buyers)}, sellers got {dict(reached_sellers)}"
    )


def _check_log(system: System) -> None:
    records = ledger_records(system)
    replayed = Ledger.replay(records)  # LedgerCorrupt if a record does not go through the rules again
    stored = {state.account: state.balance for state in ledger_accounts(system)}
    assert replayed.balances() == {a: stored[a] for a in replayed.balances()}, "the log replays to other balances"
    report = replayed.check(system.clock.now(), balances=stored)
    assert report.ok, report


def _check_audit(system: System, orders: list[Order], payments: list[Payment]) -> None:
    """The G1 books audit on the settled system, read as its read APIs would serve it."""
    long_ago = system.clock.now() - timedelta(days=1)  # nothing in flight: every order is checked
    holds: list[EscrowHold] = system.escrow.store.all(HOLDS)
    books = Books(
        taken_at=system.clock.now(),
        ledger=LedgerSnapshot(
            tuple(ledger_records(system)), {state.account: state.balance for state in ledger_accounts(system)}
        ),
        holds=tuple(
            HoldSnapshot(h.order_id, h.buyer_id, h.seller_id, h.amount, h.still_held, h.status.value) for h in holds
        ),
        orders=tuple(
            OrderSnapshot(
                o.order_id,
                o.buyer_id,
                o.seller_id,
                o.amount,
                o.status,
                long_ago,
                o.reason,
                o.returned_minor,
                o.refunded_minor,
                o.refunding,
                o.attention,
                o.next_due_at,
            )
            for o in orders
        ),
        payments=tuple(
            PaymentSnapshot(p.order_id, p.amount, p.status.value, p.refunded)
            for p in payments
            if p.status is PaymentStatus.CAPTURED
        ),
    )
    report = audit(books)
    assert report.ok, report.summary()


__all__ = ["OrderMoney", "check_every_instant", "check_settled", "ledger_steps", "money_by_order"]
