"""One in-process TradeGuard of several orders: the saga's, the payment's, escrow's and the
account's real handlers (services/*/handlers) over the in-memory wire, with the funding network,
the payment's network worker and the saga's deadline sweeper played by the model.

Nothing is delivered on its own: every record a service emits waits in :attr:`System.pending`
until the caller (a hypothesis state machine, or a test by hand) delivers it, in any order Kafka
allows (:meth:`System.deliverable`: each topic's records of one key in the order written). The
caller may also deliver a record again (the same message id: the inbox must drop it), repeat a
client's command or a sweeper's nudge under a new message id, lose a network answer or a nudge
(both are sent again), restart the network worker (it sends what is due again, answers of the
first sends maybe still on their way), inject a foreign record, and move the clock. :meth:`System.settle` then plays the end of a chaos
run: the faults stop, everything is delivered in order, the network answers, an operator takes
what waits for one, and the clock moves past every timer.

The account service's rows are seeded as registration, verification, a marketplace grant, two
cards (one expired) and a top-up would leave them (prices stay under each region's security
threshold, so no PIN is asked). Prices are domestic (the buyer pays in the order's currency):
the payment's real pricing rules price them with no conversion and no fee.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import (
    AnswerDispute,
    BindingScope,
    CardBrand,
    Checkout,
    ConfirmReceipt,
    DisputeReason,
    DisputeResolution,
    ExtendProtection,
    FundingType,
    Message,
    Money,
    OpenDispute,
    OperatorOrderAction,
    OrderDeadlineReached,
    PayAgain,
    RecordNetworkAnswer,
    RequestRefund,
    ResolveDispute,
)
from contracts.money import Balance
from contracts.orders import OperatorAction
from contracts.registration import AccountStatus
from contracts.topics import ACCOUNT_EVENTS, ESCROW_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS
from services.account.domain.accounts import Account, SecurityPolicy
from services.account.domain.bindings import MarketplaceGrant
from services.account.domain.funding_sources import StoredSource
from services.account.domain.regions import default_regions
from services.account.domain.wallets import Movement, Wallet
from services.account.handlers import handlers as account_handlers
from services.account.ports import AccountPorts
from services.account.store import ACCOUNTS, FUNDING_SOURCES, GRANTS, MOVEMENTS, WALLETS
from services.escrow.handlers import handlers as escrow_handlers
from services.escrow.store import LEDGER_TRANSFERS
from services.payment.domain.network import NetworkRequest, RequestState
from services.payment.domain.quotes import PricingRules
from services.payment.handlers import handlers as payment_handlers
from services.payment.ports import PaymentPorts
from services.payment.store import NETWORK_REQUESTS
from services.saga.domain import Dispute, DisputeStatus, Order, RefundStatus
from services.saga.handlers import handlers as saga_handlers
from services.saga.ports import SagaPorts
from services.saga.store import DISPUTES, ORDERS, REFUNDS
from tests.support.model.network import Fault, FundingNetwork
from tests.support.model.wire import Consumer, Handled, Letter, ModelClock, envelope, letter_of, routes

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
MARKETPLACE = "mkt-1"
CURRENCIES = {"USD": "US", "EUR": "DE", "JPY": "JP"}
BAD_SELLER = "s:closed"
"""A seller id no ledger account can be named by: escrow refuses the hold (invalid_party), the
way the scenario hold-refused-compensated makes the saga compensate (S3)."""
CARD, OLD_CARD = "card", "old-card"
CLIENTS = frozenset({"marketplace", "operator"})


def buyer_of(currency: str, n: int) -> str:
    return f"b{n}-{currency.lower()}"


def seller_of(currency: str, n: int) -> str:
    return f"s{n}-{currency.lower()}"


@dataclass(frozen=True, slots=True)
class Buyer:
    account_id: str
    currency: str
    wallet_minor: int
    locked: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """One order as the marketplace checks it out."""

    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    source_id: str | None = None  # None: the wallet
    use_balance_first: bool = False

    def checkout(self) -> Checkout:
        return Checkout(
            order_id=self.order_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            amount=self.amount,
            marketplace_id=MARKETPLACE,
            source_id=self.source_id,
            use_balance_first=self.use_balance_first,
        )


class _NoNetwork:
    """The payment's network port: only the model's worker talks to the network."""


def _account_ports() -> AccountPorts:
    """What authorize_payment reads of the account's ports: the regions (no PIN is asked below
    the thresholds, so the unsealer, hasher, vault and SMS gateway are never reached)."""
    return AccountPorts(
        unsealer=None,  # type: ignore[arg-type]
        hasher=None,  # type: ignore[arg-type]
        vault=None,  # type: ignore[arg-type]
        sms=None,  # type: ignore[arg-type]
        regions=default_regions(),
        policy=SecurityPolicy(),
        automatic_review=True,
    )


@dataclass
class Step:
    """What the last action did, for the failing example's notes."""

    what: str
    handled: Handled | None = None


@dataclass
class Counts:
    delivered: Counter[str] = field(default_factory=Counter)
    duplicates_absorbed: int = 0
    repeats_sent: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    poison_refused: int = 0
    network_faults: Counter[str] = field(default_factory=Counter)
    answers_lost: int = 0
    nudges_lost: int = 0
    left_the_model: Counter[str] = field(default_factory=Counter)


class System:
    def __init__(self, buyers: list[Buyer], *, pricing: PricingRules | None = None) -> None:
        self.clock = ModelClock(T0)
        self.saga = Consumer("saga", saga_handlers, self.clock, deps=SagaPorts(), rejections=ORDER_EVENTS)
        self.payment = Consumer(
            "payment",
            payment_handlers,
            self.clock,
            deps=PaymentPorts(_NoNetwork(), pricing or PricingRules.shipped()),  # type: ignore[arg-type]
            rejections=PAYMENT_EVENTS,
        )
        self.escrow = Consumer("escrow", escrow_handlers, self.clock, deps=None, rejections=ESCROW_EVENTS)
        self.escrow.store.declare_unique(LEDGER_TRANSFERS, "transfer_id")  # as the database's unique key does
        self.account = Consumer(
            "account", account_handlers, self.clock, deps=_account_ports(), rejections=ACCOUNT_EVENTS
        )
        self.consumers = {c.name: c for c in (self.saga, self.payment, self.escrow, self.account)}
        self._consumers_of = routes(self.consumers.values())
        self.network = FundingNetwork()
        self.worker_sent: dict[str, int] = {}  # request id -> the row version it was sent at
        self.pending: list[Letter] = []
        self.delivered: list[Letter] = []
        self.plans: dict[str, Plan] = {}
        self.buyers = {buyer.account_id: buyer for buyer in buyers}
        self.counts = Counts()
        self.operator_took: set[tuple[str, str]] = set()  # (order, why it waited) an operator acted on
        self._ids = 0
        for buyer in buyers:
            self._seed(buyer)

    # ------------------------------------------------------------------ the account's rows

    def _seed(self, buyer: Buyer) -> None:
        store, now = self.account.store, self.clock.now()
        store.put(
            ACCOUNTS,
            Account(
                buyer.account_id,
                phone=f"+1555000{len(store.rows['Account']):04d}",
                full_name=f"Buyer {buyer.account_id}",
                country=CURRENCIES[buyer.currency],
                currency=buyer.currency,
                language="en",
                password_hash="argon2id$not-used",
                status=AccountStatus.LOCKED if buyer.locked else AccountStatus.ACTIVE,
            ),
        )
        scopes = f"{BindingScope.PAY.value},{BindingScope.REFUND.value}"
        store.put(GRANTS, MarketplaceGrant(buyer.account_id, MARKETPLACE, scopes, now + timedelta(days=365), now))
        for source_id, year in ((CARD, now.year + 4), (OLD_CARD, now.year - 2)):
            source = StoredSource(
                buyer.account_id,
                source_id,
                FundingType.CARD,
                token=f"tok-{buyer.account_id}-{source_id}",
                last4="4242",
                brand=CardBrand.VISA,
                expiry_month=12,
                expiry_year=year,
            )
            store.put(FUNDING_SOURCES, source)
        wallet = Wallet.open(buyer.account_id, buyer.currency)
        if buyer.wallet_minor:
            top_up = wallet.top_up(Money(amount_minor=buyer.wallet_minor, currency=buyer.currency), "seed")
            store.put(MOVEMENTS, top_up)
        store.put(WALLETS, wallet)

    # ------------------------------------------------------------------ the wire

    def _next_id(self) -> uuid.UUID:
        self._ids += 1
        return uuid.UUID(int=self._ids)

    def consumers_of(self, message_type: str, source: str) -> list[str]:
        if message_type == "CommandRejected":  # the saga reads the payment's and escrow's events topics only
            return ["saga"] if source in ("payment", "escrow") else []
        return self._consumers_of(message_type)

    def post(self, letter_envelope: Any, source: str, topic: str) -> None:
        to = self.consumers_of(letter_envelope.type, source)
        if not to:
            self.counts.left_the_model[letter_envelope.type] += 1
        self.pending.extend(Letter(letter_envelope, name, topic) for name in to)

    def deliverable(self) -> list[int]:
        """The pending records Kafka could hand over next: any partition's oldest (records of
        one key on one topic reach their consumer in the order they were written; across keys
        and topics, in any order)."""
        first: dict[tuple[str, str, str], int] = {}
        for index, letter in enumerate(self.pending):
            first.setdefault(letter.partition, index)
        return sorted(first.values())

    def send(self, message: Message, *, source: str, key: str, causation_id: uuid.UUID | None = None) -> None:
        """A record from a client of the model (the marketplace, an operator, the sweeper, the worker)."""
        made = envelope(
            message,
            source=source,
            now=self.clock.now(),
            idempotency_key=key,
            causation_id=causation_id,
            message_id=self._next_id(),
        )
        self.post(made, source, message.topic.name)

    def deliver(self, index: int) -> Step:
        assert index in self.deliverable(), "Kafka hands a partition's records over in order"
        letter = self.pending.pop(index)
        handled = self.receive(letter)
        self.delivered.append(letter)
        return Step(f"deliver {letter}" + _outcome(handled), handled)

    def receive(self, letter: Letter) -> Handled:
        consumer = self.consumers[letter.to]
        handled = consumer.receive(letter)
        if handled.duplicate:
            self.counts.duplicates_absorbed += 1
            return handled
        self.counts.delivered[letter.type] += 1
        if handled.refused is not None:
            self.counts.refused[f"{letter.type}:{handled.refused}"] += 1
        for record in handled.emitted:
            self.post(letter_of(record, "").envelope, consumer.name, record.topic)
        return handled

    def deliver_all(self) -> list[str]:
        """Every pending record, in order, and what they send, until the wire is quiet (the
        network worker and the clock stand still)."""
        done = []
        while self.pending:
            done.append(self.deliver(0).what)
        return done

    def deliver_again(self, index: int) -> Step:
        """The same record again (a redelivery after a crash, a producer's retry): the inbox drops it."""
        letter = self.delivered[index]
        before = self.consumers[letter.to].store.fingerprint()
        handled = self.receive(letter)
        assert handled.duplicate, f"{letter} delivered again under its message id was handled again"
        assert self.consumers[letter.to].store.fingerprint() == before
        return Step(f"deliver again {letter}", handled)

    def repeatable(self) -> list[Letter]:
        """Records whose sender may send them again under a new message id: a client's retry
        (the marketplace's or an operator's command, same idempotency key) and the sweeper's
        re-nudge. A service's own records leave through its outbox under one message id: they
        are only ever delivered again as they were (:meth:`deliver_again`). The network worker
        hands an answer back again only by sending its request again (:meth:`restart_worker`):
        the network then answers afresh, from its book."""
        return [
            letter
            for letter in (*self.delivered, *self.pending)
            if letter.envelope.source in CLIENTS or isinstance(letter.message, OrderDeadlineReached)
        ]

    def answers_in_flight(self, request_id: str) -> int:
        return sum(
            1
            for letter in self.pending
            if isinstance(letter.message, RecordNetworkAnswer) and letter.message.request_id == request_id
        )

    def repeat(self, letter: Letter) -> Step:
        """The same message under a new message id, as its sender's retry would send it."""
        again = letter.envelope.model_copy(update={"message_id": self._next_id()})
        self.pending.append(Letter(again, letter.to, letter.topic))
        self.counts.repeats_sent += 1
        return Step(f"repeat {letter} under a new message id")

    # ------------------------------------------------------------------ the network worker

    def due_requests(self) -> list[NetworkRequest]:
        """Requests the worker would send now: due, and not sent at their row's current version."""
        self._forget_finished()
        store, now = self.payment.store, self.clock.now()
        due = []
        for request in store.all(NETWORK_REQUESTS):
            if request.state is not RequestState.DUE:
                continue
            if request.not_before is not None and request.not_before > now:
                continue
            if self.worker_sent.get(request.request_id) == store.version(NETWORK_REQUESTS, request.request_id):
                continue
            due.append(request)
        return sorted(due, key=lambda r: r.request_id)

    def _forget_finished(self) -> None:
        """The worker forgets a request once it is no longer due (as the real one does)."""
        due = {r.request_id for r in self.payment.store.all(NETWORK_REQUESTS) if r.state is RequestState.DUE}
        self.worker_sent = {rid: version for rid, version in self.worker_sent.items() if rid in due}

    def network_answers(self, request: NetworkRequest, fault: Fault) -> Step:
        """The worker sends one request; the network's answer is handed back as RecordNetworkAnswer."""
        answer = self.network.answer(request, fault)
        if fault is not Fault.NONE:
            self.counts.network_faults[fault.value] += 1
        self.worker_sent[request.request_id] = self.payment.store.version(NETWORK_REQUESTS, request.request_id)
        message = RecordNetworkAnswer(
            order_id=request.order_id,
            request_id=request.request_id,
            kind=request.kind,
            outcome=answer.outcome,
            amount=request.amount,
            charge_id=answer.charge_id,
            reason=answer.reason,
        )
        self.send(message, source="payment", key=f"{request.request_id}:{request.kind.value}:{self.network.calls}")
        return Step(f"network {request.kind.value} {request.request_id} ({fault.value}): {answer.outcome.value}")

    def lose_network_answer(self, index: int) -> Step:
        """The worker's hand-back never reached the broker: the row is still due, so it is sent again."""
        letter = self.pending.pop(index)
        assert isinstance(letter.message, RecordNetworkAnswer)
        self.worker_sent.pop(letter.message.request_id, None)
        self.counts.answers_lost += 1
        return Step(f"lose {letter}")

    def restart_worker(self) -> Step:
        """A crashed worker forgets what it sent: every due request goes again (same request
        ids), answers of the first sends maybe still on their way. (A second payment instance's
        worker sends every due request too: the same.)"""
        forgotten = len(self.worker_sent)
        self.worker_sent.clear()
        return Step(f"the network worker restarts ({forgotten} sent requests forgotten)")

    # ------------------------------------------------------------------ time

    def orders(self) -> list[Order]:
        return self.saga.store.all(ORDERS)

    def order(self, order_id: str) -> Order | None:
        return self.saga.store.load(ORDERS, order_id)

    def dispute(self, order_id: str) -> Dispute | None:
        return self.saga.store.load(DISPUTES, order_id)

    def next_timer(self) -> datetime | None:
        times = [o.next_due_at for o in self.orders() if o.next_due_at is not None]
        times += [
            r.not_before
            for r in self.payment.store.all(NETWORK_REQUESTS)
            if r.state is RequestState.DUE and r.not_before is not None
        ]
        return min(times, default=None)

    def move_clock(self, by: timedelta) -> Step:
        self.clock.move_to(self.clock.now() + by)
        return Step(f"the clock moves {by} to {self.clock.now().isoformat()}; {self.sweep()} nudged")

    def move_to_next_timer(self) -> Step:
        upcoming = self.next_timer()
        if upcoming is not None and upcoming > self.clock.now():
            self.clock.move_to(upcoming)
        return Step(f"the clock moves to {self.clock.now().isoformat()}; {self.sweep()} nudged")

    def sweep(self) -> int:
        """The saga's deadline sweeper: a nudge for every order due that has none on its way."""
        nudged = {letter.subject for letter in self.pending if isinstance(letter.message, OrderDeadlineReached)}
        count = 0
        for order in self.orders():
            if order.next_due_at is not None and order.next_due_at <= self.clock.now() and order.order_id not in nudged:
                nudge = OrderDeadlineReached(order_id=order.order_id, due_at=order.next_due_at)
                self.send(nudge, source="saga", key=f"nudge:{order.order_id}:{order.next_due_at.isoformat()}")
                count += 1
        return count

    def lose_nudge(self, index: int) -> Step:
        letter = self.pending.pop(index)
        assert isinstance(letter.message, OrderDeadlineReached)
        self.counts.nudges_lost += 1
        return Step(f"lose {letter} (the sweeper nudges again)")

    # ------------------------------------------------------------------ people

    def place(self, plan: Plan) -> Step:
        self.plans[plan.order_id] = plan
        self.send(plan.checkout(), source="marketplace", key=f"checkout:{plan.order_id}")
        return Step(f"checkout {plan}")

    def _people(self, message: Message, key: str, source: str = "marketplace") -> Step:
        self.send(message, source=source, key=key)
        return Step(f"send {type(message).__name__}({message.partition_key}) {key}")

    def confirm(self, order_id: str) -> Step:
        plan = self.plans[order_id]
        return self._people(ConfirmReceipt(order_id=order_id, buyer_id=plan.buyer_id), f"confirm:{order_id}")

    def extend(self, order_id: str) -> Step:
        plan = self.plans[order_id]
        return self._people(ExtendProtection(order_id=order_id, buyer_id=plan.buyer_id), f"extend:{order_id}")

    def pay_again(self, order_id: str, source_id: str | None) -> Step:
        plan = self.plans[order_id]
        again = PayAgain(order_id=order_id, buyer_id=plan.buyer_id, source_id=source_id)
        return self._people(again, f"pay-again:{order_id}:{self._next_id().int}")

    def request_refund(self, order_id: str, n: int, minor: int) -> Step:
        """A refund id of the marketplace's own (global at the payment, so it names the order)."""
        amount = Money(amount_minor=minor, currency=self.plans[order_id].amount.currency)
        refund_id = f"r{n}-{order_id}"
        request = RequestRefund(order_id=order_id, refund_id=refund_id, amount=amount, reason="asked")
        return self._people(request, f"refund:{refund_id}")

    def open_dispute(self, order_id: str) -> Step:
        plan = self.plans[order_id]
        opened = OpenDispute(
            order_id=order_id, dispute_id=f"d-{order_id}", buyer_id=plan.buyer_id, reason=DisputeReason.DAMAGED
        )
        return self._people(opened, f"dispute:{order_id}")

    def answer_dispute(self, order_id: str) -> Step:
        plan = self.plans[order_id]
        answer = AnswerDispute(
            order_id=order_id, dispute_id=f"d-{order_id}", seller_id=plan.seller_id, statement="it left intact"
        )
        return self._people(answer, f"answer:{order_id}")

    def resolve_dispute(self, order_id: str, resolution: DisputeResolution, minor: int | None = None) -> Step:
        currency = self.plans[order_id].amount.currency
        refund = None if minor is None else Money(amount_minor=minor, currency=currency)
        resolved = ResolveDispute(
            order_id=order_id,
            dispute_id=f"d-{order_id}",
            operator_id="ops-1",
            resolution=resolution,
            refund=refund,
            reason="looked at the evidence",
        )
        return self._people(resolved, f"resolve:{order_id}:{self._next_id().int}", source="operator")

    def operator_acts(self, order_id: str, action: OperatorAction) -> Step:
        acted = OperatorOrderAction(
            order_id=order_id,
            action_id=f"act-{self._next_id().int}",
            action=action,
            operator_id="ops-1",
            reason="the order waits on us",
        )
        return self._people(acted, f"operator:{acted.action_id}", source="operator")

    # ------------------------------------------------------------------ the end of a run

    def settle(
        self,
        *,
        rounds: int = 400,
        timers: bool = True,
        faults: Callable[[NetworkRequest], Fault] = lambda _request: Fault.NONE,
    ) -> list[str]:
        """The faults stop: deliver everything in order, let the network answer, let an operator
        take what waits for one, and move the clock past every timer (``timers=False``: stop
        once the wire is quiet instead); what was done, in order. ``faults``: what the network
        does with each call (a test by hand may still want one to fail)."""
        log: list[str] = []
        for _ in range(rounds):
            if self.pending:
                log.append(self.deliver(0).what)
                continue
            due = self.due_requests()
            if due:
                log.append(self.network_answers(due[0], faults(due[0])).what)
                continue
            if not timers:
                return log
            acted = self._operator_takes_over()
            if acted:
                log.append(acted)
                continue
            upcoming = self.next_timer()
            if upcoming is None:
                return log
            log.append(self.move_to_next_timer().what)
        raise AssertionError(f"the system did not settle in {rounds} rounds; last steps: {log[-8:]}")

    def _operator_takes_over(self) -> str | None:
        """What an operator does at the end of a run for an order waiting on one: resolve an
        answered dispute (release), or pay a refund that failed for good again."""
        for order in self.orders():
            if order.attention is None or (order.order_id, order.attention) in self.operator_took:
                continue
            self.operator_took.add((order.order_id, order.attention))
            dispute = self.dispute(order.order_id)
            if dispute is not None and dispute.status is DisputeStatus.ANSWERED:
                return self.resolve_dispute(order.order_id, DisputeResolution.RELEASE).what
            refund = (
                None if order.refunding is None else self.saga.store.load(REFUNDS, (order.order_id, order.refunding))
            )
            if refund is not None and refund.status is RefundStatus.FAILED:
                return self.operator_acts(order.order_id, "compensate_now").what
        return None

    # ------------------------------------------------------------------ reading

    def letters(self, kind: type[Message] | None = None) -> Iterator[tuple[int, Letter]]:
        for index, letter in enumerate(self.pending):
            if kind is None or isinstance(letter.message, kind):
                yield index, letter

    def network_requests(self) -> list[NetworkRequest]:
        return self.payment.store.all(NETWORK_REQUESTS)

    def balance(self, account_id: str) -> Balance | None:
        wallet = self.account.store.load(WALLETS, account_id)
        return None if wallet is None else wallet.balance

    def movements(self) -> list[Movement]:
        return self.account.store.all(MOVEMENTS)


def _outcome(handled: Handled) -> str:
    if handled.duplicate:
        return ": a duplicate, dropped"
    if handled.refused is not None:
        return f": refused ({handled.refused})"
    sent = ", ".join(letter_of(r, "").type for r in handled.emitted)
    return f": sent {sent}" if sent else ""


__all__ = [
    "BAD_SELLER",
    "CARD",
    "CURRENCIES",
    "OLD_CARD",
    "T0",
    "Buyer",
    "Plan",
    "Step",
    "System",
    "buyer_of",
    "seller_of",
]
