"""S5, S1: property tests of the order saga's pure rules under random event orders.

:class:`Saga` drives one :class:`Order` the way the saga's handlers do (services/saga/handlers/:
a refusal keeps none of its changes, a refund or dispute a step creates is stored, a known
refund id or dispute is the handler's repeat), and stands in for the services that answer
the saga's commands: the payment service captures an order at most once and answers each
attempt and each payment refund id once (a repeat gets the first answer again), escrow holds,
returns and releases exactly what it is asked. Every answer is recorded, so any of them can be
delivered again later, a duplicate or a late delivery.

After every step the harness checks:

- every status change is a row of the lifecycle table (lifecycle.ALLOWED);
- no money-moving command (CapturePayment per attempt, HoldFunds, ReleaseFunds, CreditWallet,
  ReturnFunds per refund id, RefundPayment per payment refund id) is issued twice, and a refund
  is paid again only once its last RefundPayment failed (never two unanswered at once);
- ``refunded_minor <= returned_minor <= price`` (a compensation gives the price back with
  nothing returned from escrow); what the seller was credited plus what the buyer got back
  never exceeds what was captured; and the order's figures are the services' (what escrow
  returned, what the payment paid back, what the seller was credited);
- ``next_due_at`` is the earliest timer;
- once final (lifecycle.FINAL with no refund under way) nothing ever sends money again, except
  the compensation of a payment captured after an unpaid order was cancelled;
- a refused command changed nothing.

:func:`test_s1_answering_every_command_and_moving_the_clock_ends_every_order` drives random
paths to completion by always answering the last command sent and moving the clock to the
next timer when nothing is awaited, and checks that every one ends in a final state.

Answers may be delivered again at any time, a stale RefundFailed of an earlier try included,
and an operator may retry a refund whose last RefundPayment has no answer yet.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import (
    CapturePayment,
    Checkout,
    CreditWallet,
    DisputeReason,
    DisputeResolution,
    FreezeFunds,
    HoldFunds,
    Message,
    Money,
    OpenDispute,
    OrderStatus,
    PayAgain,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import (
    COMPENSATION,
    FINAL,
    NOTHING,
    Dispute,
    DisputeStatus,
    IllegalTransition,
    Order,
    OrderRuleBroken,
    Refund,
    RefundStatus,
    Step,
    default_policy,
    lifecycle,
    refund_of,
)

S = OrderStatus
PRICE = 4250
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = default_policy()

# (reason, permanent): a transient failure that is retried, one that is never retried, a
# decline the buyer may pay again after, and a decline that ends the order.
PAYMENT_FAILURES = {
    "transient": ("issuer_unavailable", False),
    "not retried": ("rate_limited", False),
    "decline": ("card_declined", True),
    "order-ending": ("account_locked", True),
}
OUTCOMES = {
    "capture": ("captured", *PAYMENT_FAILURES),
    "hold": ("held", "refused"),
    "release": ("released",),
    "return": ("returned",),
    "refund": ("refunded", "failed"),
    "freeze": ("frozen",),
}
SUCCESS = {"capture": "captured", "hold": "held", "release": "released", "return": "returned", "refund": "refunded"}
CLOCK_MOVES = [
    timedelta(seconds=1),
    timedelta(seconds=30),
    timedelta(minutes=5),
    timedelta(minutes=31),
    timedelta(hours=2),
    timedelta(days=1),
    timedelta(days=4),
    timedelta(days=13),
    timedelta(days=16),
    timedelta(days=50),
]
clock_moves = st.one_of(st.sampled_from(CLOCK_MOVES), st.integers(1, 7200).map(lambda s: timedelta(seconds=s)))

# An amount of the price, or None for all that escrow still holds (a full refund, an invalid split).
amounts = st.one_of(st.none(), st.integers(0, PRICE + 10))

Key = tuple[str, str]  # (what is awaited, which one): ("capture", "2"), ("refund", "r1#2"), ...


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def refund_try(message: RefundPayment) -> str:
    """One try at paying a refund back: its payment refund id and attempt (``r1#2``)."""
    return f"{message.refund_id}#{message.attempt}"


def tried(which: str) -> tuple[str, int]:
    """The saga's refund id and the attempt behind a :func:`refund_try`."""
    payment_refund, _, attempt = which.rpartition("#")
    return refund_of(payment_refund), int(attempt)


def money_key(message: Message) -> Key | None:
    """The identity of a money-moving command: each is issued at most once."""
    match message:
        case CapturePayment():
            return ("CapturePayment", str(message.attempt))
        case HoldFunds() | ReleaseFunds() | CreditWallet():
            return (type(message).__name__, "")
        case RefundPayment():
            return (type(message).__name__, refund_try(message))
        case ReturnFunds():
            return (type(message).__name__, message.refund_id)
    return None


AWAITED = {
    CapturePayment: "capture",
    HoldFunds: "hold",
    ReleaseFunds: "release",
    ReturnFunds: "return",
    RefundPayment: "refund",
    FreezeFunds: "freeze",
}


def awaited(message: Message) -> Key | None:
    """The answer a command the saga sent waits for, if any: which attempt, refund or dispute."""
    kind = AWAITED.get(type(message))
    if kind is None:
        return None
    match message:
        case CapturePayment():
            which = str(message.attempt)
        case RefundPayment():
            which = refund_try(message)
        case ReturnFunds():
            which = message.refund_id
        case FreezeFunds():
            which = message.dispute_id
        case _:
            which = ""
    return (kind, which)


@dataclass(slots=True)
class Answer:
    """An answer some service gave, kept to be delivered again."""

    key: Key
    outcome: str
    deliver: Callable[[], None]


class Saga:
    """One order, applied to the way the handlers do, and the services answering it."""

    def __init__(self) -> None:
        self.now = T0
        checkout = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), marketplace_id="m")
        self.order, placed = Order.place(checkout, self.now, POLICY)
        self.refunds: dict[str, Refund] = {}
        self.dispute: Dispute | None = None
        self.steps: list[Step] = []
        self.sent: Counter[Key] = Counter()
        self.outstanding: dict[Key, Message] = {}  # sent, not answered yet (in the order sent)
        self.last_payment: dict[str, str] = {}  # refund id -> the payment refund id of its last try
        self.answers: list[Answer] = []
        # The services' books.
        self.captured = False
        self.escrow_held = 0
        self.escrow_returned = 0
        self.escrow_released = 0
        self.paid_back = 0
        self.credited = 0
        # Finality: an order final without money may still meet a late capture (its compensation).
        self.final_unpaid = False
        self.closed = False  # final with money moved: nothing may send money again
        self.apply(placed)

    # ------------------------------------------------------------------ the handlers' side

    def apply(self, step: Step) -> None:
        if step.changed:
            source = None if step.from_status is S.CREATED else step.from_status
            assert step.to_status is not None
            assert lifecycle.allowed(source, step.to_status), f"{step.from_status} -> {step.to_status}: {step.note}"
            assert self.order.status is step.to_status
        if step.refund is not None:
            self.refunds[step.refund.refund_id] = step.refund
        if step.dispute is not None:
            self.dispute = step.dispute
        for message in step.messages:
            self.send(message)
        self.steps.append(step)
        self.check()

    def send(self, message: Message) -> None:
        key = money_key(message)
        if key is not None:
            assert self.sent[key] == 0, f"{key} issued twice"
            self.sent[key] += 1
            assert not self.closed, f"{key} sent by a final order ({self.order.status.value})"
            if self.final_unpaid:
                assert key[0] == "RefundPayment", f"{key} sent after the unpaid order was {self.order.status.value}"
                assert tried(key[1])[0] == COMPENSATION
        if isinstance(message, RefundPayment):  # a refund is paid again only once its last try failed
            refund_id = refund_of(message.refund_id)
            unanswered = [
                which for kind, which in self.outstanding if kind == "refund" and tried(which)[0] == refund_id
            ]
            assert not unanswered, f"{refund_try(message)} sent while {unanswered} has no answer"
            self.last_payment[refund_id] = refund_try(message)
        if isinstance(message, CreditWallet):
            assert message.account_id == "s"
            self.credited += message.amount.amount_minor
        if (wait := awaited(message)) is not None:
            self.outstanding[wait] = message

    def command(self, decide: Callable[[], Step | None]) -> str | None:
        """A command: its step applied, or its refusal code with nothing of it kept."""
        before = copy.deepcopy((self.order, self.refunds, self.dispute))
        try:
            step = decide()
        except IllegalTransition:
            raise
        except OrderRuleBroken as refusal:
            refused = refusal.code
        else:
            if step is not None:
                self.apply(step)
            return None
        assert (self.order, self.refunds, self.dispute) == before, f"refused ({refused}) but changed"
        return refused

    def refund_for(self, payment_refund: str) -> Refund:
        refund = self.refunds[tried(payment_refund)[0]]
        assert self.order.answers_refund(refund, amount=refund.amount, buyer_id="b")
        return refund

    # Events, as their handlers apply them.

    def captured_event(self, attempt: int) -> None:
        self.apply(self.order.payment_captured(attempt, None))

    def failed_event(self, attempt: int, reason: str, permanent: bool) -> None:
        step = self.order.payment_failed(
            attempt, reason, "as the network said", permanent=permanent, now=self.now, policy=POLICY
        )
        self.apply(step)

    def held_event(self) -> None:
        self.apply(self.order.funds_held(self.now, POLICY))

    def hold_refused_event(self) -> None:
        self.apply(self.order.hold_refused("hold_refused", "the seller cannot be paid"))

    def released_event(self, amount: int) -> None:
        if self.order.answers(amount=usd(amount), seller_id="s", held=True):
            self.apply(self.order.funds_released())

    def returned_event(self, refund_id: str) -> None:
        self.apply(self.order.funds_returned(self.refunds[refund_id]))

    def refunded_event(self, payment_refund: str) -> None:
        self.apply(self.order.payment_refunded(self.refund_for(payment_refund)))

    def refund_failed_event(self, payment_refund: str) -> None:
        refund = self.refund_for(payment_refund)
        step = self.order.refund_failed(
            refund, "issuer_unavailable", "try later", self.now, POLICY, answered=tried(payment_refund)[1]
        )
        self.apply(step)

    def frozen_event(self, dispute_id: str) -> None:
        self.apply(self.order.funds_frozen(self.dispute, dispute_id))

    def tick(self, by: timedelta) -> None:
        """The clock moves; the sweeper's nudge fires every timer then due, once."""
        self.now += by
        self.fire_due()

    def fire_due(self) -> None:
        for deadline in self.order.due(self.now):
            self.apply(self.order.fire(deadline, self.now, POLICY, self.dispute))

    # Commands, as their handlers apply them.

    def pay_again(self, buyer_id: str, source_id: str) -> str | None:
        command = PayAgain(order_id="o1", buyer_id=buyer_id, source_id=source_id)
        return self.command(lambda: self.order.pay_again(command, self.now))

    def confirm(self, buyer_id: str) -> str | None:
        return self.command(lambda: self.order.confirm_receipt(buyer_id))

    def extend(self, buyer_id: str) -> str | None:
        return self.command(lambda: self.order.extend_protection(buyer_id, self.now, POLICY))

    def request_refund(self, refund_id: str, minor: int) -> str | None:
        def decide() -> Step | None:
            known = self.refunds.get(refund_id)
            if known is not None:  # the handler's repeat: the same request changes nothing
                known.check_same_request(usd(minor))
                return None
            return self.order.request_refund(refund_id, usd(minor), "as the marketplace asked")

        return self.command(decide)

    def open_dispute(self, dispute_id: str, buyer_id: str) -> str | None:
        command = OpenDispute(order_id="o1", dispute_id=dispute_id, buyer_id=buyer_id, reason=DisputeReason.DAMAGED)

        def decide() -> Step | None:
            if self.dispute is not None:
                self.dispute.check_same(dispute_id)
                return None
            return self.order.open_dispute(command, self.now, POLICY)

        return self.command(decide)

    def the_dispute(self, dispute_id: str) -> Dispute:
        if self.dispute is None:
            raise OrderRuleBroken("dispute_not_found", f"no dispute {dispute_id}")
        self.dispute.check_is(dispute_id)
        return self.dispute

    def answer_dispute(self, dispute_id: str, seller_id: str) -> str | None:
        return self.command(
            lambda: self.order.answer_dispute(self.the_dispute(dispute_id), seller_id, "shipped fine", [], self.now)
        )

    def resolve_dispute(self, dispute_id: str, resolution: DisputeResolution, minor: int) -> str | None:
        refund = usd(minor) if resolution is DisputeResolution.SPLIT else None
        return self.command(
            lambda: self.order.resolve_dispute(self.the_dispute(dispute_id), resolution, refund, "operator:ops", "why")
        )

    def refund_payment_awaited(self) -> bool:
        """Whether the RefundPayment of the refund under way still has no answer."""
        return any(kind == "refund" and tried(which)[0] == self.order.refunding for kind, which in self.outstanding)

    def operator(self, action: str) -> str | None:
        """OperatorOrderAction, as handlers/orders.py carries it out."""

        def decide() -> Step:
            if action == "cancel":
                return self.order.cancel_by_operator("ops", "asked to")
            step = self.order.retry_payment("operator ops: retry now", self.now) if action == "retry_now" else NOTHING
            if not step.did_something:
                step = self.order.retry_refund(f"operator ops: {action}", reset=True)
            if not step.did_something:
                raise OrderRuleBroken("nothing_to_do", "nothing waits")
            return step

        return self.command(decide)

    # ------------------------------------------------------------------ the services' side

    def outcomes(self, key: Key) -> tuple[str, ...]:
        kind = key[0]
        if kind == "capture" and self.captured:
            return tuple(PAYMENT_FAILURES)  # the payment captures an order once
        return OUTCOMES[kind]

    def likely_outcomes(self, key: Key) -> tuple[str, ...]:
        """The outcomes, success three times as likely as each failure (to get past the payment)."""
        outcomes = self.outcomes(key)
        success = SUCCESS.get(key[0])
        return (success, success, *outcomes) if success in outcomes else outcomes

    def answer_well(self, *kinds: str) -> None:
        """Answer the awaited commands of ``kinds`` with success (to start deeper in the lifecycle)."""
        for key in [key for key in self.outstanding if key[0] in kinds]:
            self.answer(key, SUCCESS[key[0]])

    def answer(self, key: Key, outcome: str) -> None:
        """The service decides what ``key`` comes to (once), and the saga hears it."""
        assert outcome in self.outcomes(key)
        message = self.outstanding.pop(key)
        deliver = self.decide(key, outcome, message)
        self.answers.append(Answer(key, outcome, deliver))
        deliver()

    def decide(self, key: Key, outcome: str, message: Message) -> Callable[[], None]:  # noqa: PLR0911 - one answer per kind
        kind, which = key
        if kind == "capture":
            attempt = int(which)
            if outcome == "captured":
                self.captured = True
                return lambda: self.captured_event(attempt)
            reason, permanent = PAYMENT_FAILURES[outcome]
            return lambda: self.failed_event(attempt, reason, permanent)
        if kind == "hold":
            if outcome == "held":
                self.escrow_held = PRICE
                return self.held_event
            return self.hold_refused_event
        if kind == "release":
            released, self.escrow_held = self.escrow_held, 0
            self.escrow_released += released
            return lambda: self.released_event(released)
        if kind == "return":
            assert isinstance(message, ReturnFunds)
            amount = message.amount.amount_minor
            assert amount <= self.escrow_held, "escrow asked to return more than it holds"
            self.escrow_held -= amount
            self.escrow_returned += amount
            return lambda: self.returned_event(which)
        if kind == "refund":
            assert isinstance(message, RefundPayment)
            if outcome == "refunded":
                self.paid_back += message.amount.amount_minor
                assert self.paid_back <= PRICE, "the payment paid back more than it captured"
                return lambda: self.refunded_event(which)
            return lambda: self.refund_failed_event(which)
        return lambda: self.frozen_event(which)

    def redeliverable(self) -> list[Answer]:
        """Answers that may be delivered again (see the module's note on the known bugs)."""
        return list(self.answers)

    def _stale_refund_failure(self, answer: Answer) -> bool:
        kind, which = answer.key
        if kind != "refund" or answer.outcome != "failed" or self.order.refunding != tried(which)[0]:
            return False
        return which != self.last_payment[tried(which)[0]]

    # ------------------------------------------------------------------ invariants

    def check(self) -> None:
        order = self.order
        assert Step(None, None) == NOTHING, "the shared NOTHING step was changed"
        earliest = min((datetime.fromisoformat(at) for at in order.timers.values()), default=None)
        assert order.next_due_at == earliest
        if COMPENSATION in self.refunds:
            assert order.returned_minor == 0
            assert order.refunded_minor in (0, PRICE)
        else:
            assert 0 <= order.refunded_minor <= order.returned_minor <= PRICE
        # The order's figures are the services' books.
        assert order.refunded_minor == self.paid_back
        assert order.returned_minor == self.escrow_returned
        assert self.credited == self.escrow_released
        assert self.credited + self.paid_back <= (PRICE if self.captured else 0)
        if order.status in (S.IN_ESCROW, S.DISPUTED, S.RELEASING):
            assert order.still_held.amount_minor == self.escrow_held
        if order.final:
            if self.captured:
                self.closed = True
            else:
                self.final_unpaid = True
        if self.closed:
            assert order.final, f"a final order moved on to {order.status.value}"


# ---------------------------------------------------------------------- the state machine


class OrderSagaMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.saga = Saga()

    @initialize(start=st.sampled_from(["checkout", "paid", "in_escrow"]))
    def start(self, start: str) -> None:
        if start != "checkout":
            self.saga.answer_well("capture")
        if start == "in_escrow":
            self.saga.answer_well("hold")

    @precondition(lambda self: bool(self.saga.outstanding))
    @rule(data=st.data())
    def a_service_answers(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(list(self.saga.outstanding)), label="command")
        self.saga.answer(key, data.draw(st.sampled_from(self.saga.likely_outcomes(key)), label="outcome"))

    @precondition(lambda self: bool(self.saga.redeliverable()))
    @rule(data=st.data())
    def an_answer_is_delivered_again(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(self.saga.redeliverable()), label="duplicate").deliver()

    @rule(by=clock_moves)
    def the_clock_moves(self, by: timedelta) -> None:
        self.saga.tick(by)

    @rule(buyer=st.sampled_from(["b", "mallory"]), source=st.sampled_from(["card-2", "bank-1"]))
    def the_buyer_pays_again(self, buyer: str, source: str) -> None:
        self.saga.pay_again(buyer, source)

    @rule(buyer=st.sampled_from(["b", "b", "mallory"]))
    def the_buyer_confirms(self, buyer: str) -> None:
        self.saga.confirm(buyer)

    @rule(buyer=st.sampled_from(["b", "mallory"]))
    def the_buyer_extends(self, buyer: str) -> None:
        self.saga.extend(buyer)

    @rule(refund_id=st.sampled_from(["r1", "r2", "r3", "compensation"]), minor=amounts)
    def the_marketplace_refunds(self, refund_id: str, minor: int | None) -> None:
        self.saga.request_refund(refund_id, self.saga.order.still_held.amount_minor if minor is None else minor)

    @rule(dispute_id=st.sampled_from(["d1", "d2"]), buyer=st.sampled_from(["b", "b", "mallory"]))
    def the_buyer_disputes(self, dispute_id: str, buyer: str) -> None:
        self.saga.open_dispute(dispute_id, buyer)

    @rule(dispute_id=st.sampled_from(["d1", "d2"]), seller=st.sampled_from(["s", "s", "b"]))
    def the_seller_answers(self, dispute_id: str, seller: str) -> None:
        self.saga.answer_dispute(dispute_id, seller)

    @rule(
        dispute_id=st.sampled_from(["d1", "d1", "d2"]),
        resolution=st.sampled_from(list(DisputeResolution)),
        minor=amounts,
    )
    def an_operator_resolves(self, dispute_id: str, resolution: DisputeResolution, minor: int | None) -> None:
        self.saga.resolve_dispute(
            dispute_id, resolution, self.saga.order.still_held.amount_minor if minor is None else minor
        )

    @rule(action=st.sampled_from(["retry_now", "cancel", "compensate_now"]))
    def an_operator_acts(self, action: str) -> None:
        self.saga.operator(action)

    @invariant()
    def books_agree(self) -> None:
        self.saga.check()

    @invariant()
    def money_commands_go_once(self) -> None:
        assert all(count == 1 for count in self.saga.sent.values())


OrderSagaMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestS5OrderSagaUnderRandomEvents = OrderSagaMachine.TestCase


# ---------------------------------------------------------------------- every path ends


FITTING_ACTS = {
    S.PAYMENT_FAILED: ["pay again"],
    S.IN_ESCROW: ["refund", "refund", "dispute", "dispute", "confirm", "extend"],
    S.DISPUTED: ["answer"],
}
ACTS = ["refund", "dispute", "answer", "confirm", "pay again", "extend"]


def the_buyer_acts(saga: Saga, data: st.DataObject) -> None:
    """Something a buyer, seller or the marketplace may do, mostly what fits the order's status
    (anything else is refused and must change nothing)."""
    acts = [*FITTING_ACTS.get(saga.order.status, []), *ACTS]
    match data.draw(st.sampled_from(acts), label="act"):
        case "refund":
            left = saga.order.still_held.amount_minor
            saga.request_refund(
                data.draw(st.sampled_from(["r1", "r2", "r3"])), data.draw(st.sampled_from([left, 1, 1000]))
            )
        case "dispute":
            saga.open_dispute("d1", "b")
        case "answer":
            saga.answer_dispute("d1", "s")
        case "confirm":
            saga.confirm("b")
        case "pay again":
            saga.pay_again("b", "card-2")
        case _:
            saga.extend("b")


def an_operator_decides(saga: Saga, data: st.DataObject) -> None:
    """The order waits on an operator: a dispute the seller answered, or a refund that failed for good."""
    dispute = saga.dispute
    if saga.order.status is S.DISPUTED and dispute is not None and dispute.status is DisputeStatus.ANSWERED:
        resolution = data.draw(st.sampled_from(list(DisputeResolution)))
        share = data.draw(st.integers(1, max(1, saga.order.still_held.amount_minor - 1)))
        assert saga.resolve_dispute("d1", resolution, share) is None
        return
    assert saga.order.refunding is not None
    assert saga.refunds[saga.order.refunding].status is RefundStatus.FAILED
    assert saga.operator("compensate_now") is None


@dataclass(slots=True)
class Path:
    """A random path towards the end: a few acts of people, a bounded number of failures."""

    saga: Saga
    data: st.DataObject
    acts: int = 0
    failures: int = 0
    late: bool = False

    def answer_the_last_command(self) -> None:
        saga, order = self.saga, self.saga.order
        key = list(saga.outstanding)[-1]
        late_capture = key[0] == "capture" and not self.late and order.pay_by is not None
        if late_capture and order.pay_by is not None and self.data.draw(st.integers(0, 4), label="late") == 0:
            self.late = True  # the answer comes after the payment window closed
            saga.tick(max(order.pay_by - saga.now, timedelta(0)))
        outcomes = saga.likely_outcomes(key)
        if self.failures >= 6 and SUCCESS.get(key[0]) in outcomes:
            outcomes = (SUCCESS[key[0]],)  # enough has gone wrong: let it go through
        outcome = self.data.draw(st.sampled_from(outcomes), label=f"answer to {key}")
        self.failures += outcome not in SUCCESS.values()
        saga.answer(key, outcome)

    def someone_acts_first(self) -> bool:
        if self.acts >= 8 or self.data.draw(st.integers(0, 2), label="act first") != 0:
            return False
        self.acts += 1
        the_buyer_acts(self.saga, self.data)
        return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_s1_answering_every_command_and_moving_the_clock_ends_every_order(data: st.DataObject) -> None:
    saga = Saga()
    path = Path(saga, data)
    for _ in range(400):
        order = saga.order
        if order.final and not saga.outstanding:
            break
        if path.someone_acts_first():
            continue
        if saga.outstanding:
            path.answer_the_last_command()
        elif order.attention is not None:
            an_operator_decides(saga, data)
        elif order.next_due_at is not None:
            saga.tick(max(order.next_due_at - saga.now, timedelta(0)))
        else:
            break
    order = saga.order
    assert order.final, f"stuck in {order.status.value}: {[step.note for step in saga.steps[-5:]]}"
    assert order.status in FINAL
    assert not saga.outstanding
    # Where the money ended: all with the seller, all back with the buyer, or some of each.
    if saga.captured:
        assert saga.credited + saga.paid_back == PRICE
    else:
        assert (saga.credited, saga.paid_back, order.status) == (0, 0, S.CANCELLED)
