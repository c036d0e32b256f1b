"""G2, X6, S3, S5, E1, P4, P6: a property-based model of the saga and the ledger across services.

One in-process TradeGuard of two to four orders (tests/support/model/): the saga's, payment's,
escrow's and account's real handlers exchange the real contract records, and hypothesis is the
broker. Each step it chooses what happens next:

- which pending record is delivered (reordering across orders, topics and services; a topic's
  records of one key keep their order, as a Kafka partition does);
- a record delivered again under its message id (the inbox must drop it), or a client's
  command or a sweeper's nudge repeated under a new one;
- the network worker sends a due request and the funding network answers it, or declines, is
  away, or loses the request or the answer (P4: the payment must inquire, never charge twice);
  a handed-back answer lost, a worker restart (what is due is sent again), a nudge lost;
- a foreign record (another causation, amount, party, attempt or request): refused without effect;
- the clock moves (by a little, or to the next timer) and the sweeper nudges what is due;
- a buyer, seller, the marketplace or an operator acts on an order (confirm, extend, pay again,
  refund, dispute, answer, resolve, retry, cancel, compensate), sense or nonsense.

After every step the invariants of every instant hold (tests/support/model/books.py: the ledger
sums to zero per currency, no balance goes negative, wallets agree with their movements, no
money is created for any order, no ledger step happens twice). At the end the faults stop and
the system settles (every record delivered in order, the network answers, an operator takes
what waits for one, the clock passes every timer); then every order is final, no money is lost,
created or stuck per order and per currency, the ledger replays, and the G1 audit is clean:
the same invariants the chaos run checks (scripts/chaos), found here in a second, without Kafka.

Profiles: ``money-model`` (TestG2X6MoneyModel, derandomized: ``make test`` always runs the same
examples) and ``money-model-explore`` (TestG2X6MoneyModelLongExploration, marked slow and run
only with ``TRADEGUARD_MONEY_MODEL=explore``: random, more and longer examples;
``--hypothesis-seed=N`` replays a run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import structlog
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from contracts import (
    DisputeResolution,
    Money,
    NetworkRequestKind,
    OrderDeadlineReached,
    OrderStatus,
    RecordNetworkAnswer,
)
from contracts.orders import OperatorAction
from services.account.store import WALLETS
from services.payment.domain.network import NetworkRequest
from services.saga.store import AUDIT
from tests.support.model.books import check_every_instant, check_settled, money_by_order
from tests.support.model.network import Fault
from tests.support.model.poison import foreign_records, inject
from tests.support.model.system import (
    BAD_SELLER,
    CARD,
    CURRENCIES,
    OLD_CARD,
    Buyer,
    Plan,
    System,
    buyer_of,
    seller_of,
)

PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
"""No explain phase: on a model this size it costs minutes and says little the notes do not."""
settings.register_profile(
    "money-model",
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "money-model-explore",
    max_examples=2000,
    stateful_step_count=60,
    deadline=None,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXPLORE = os.environ.get("TRADEGUARD_MONEY_MODEL") == "explore"
PROFILE = settings.get_profile("money-model")

BUYERS = [buyer_of(currency, n) for currency in CURRENCIES for n in (1, 2)]
FAULTS = [Fault.NONE, Fault.NONE, Fault.NONE, Fault.DECLINE, Fault.UNAVAILABLE, Fault.LOST_BEFORE, Fault.LOST_AFTER]
CLOCK_MOVES = [
    *(timedelta(seconds=1), timedelta(seconds=1), timedelta(seconds=3), timedelta(seconds=20)),  # the retries
    *(timedelta(minutes=5), timedelta(minutes=31)),  # the payment window closes (S4)
    *(timedelta(days=4), timedelta(days=13), timedelta(days=16)),  # the dispute window, the protection
]
OPERATOR_ACTIONS: list[OperatorAction] = ["retry_now", "cancel", "compensate_now"]
PEOPLE = ["confirm", "extend", "pay again", "refund", "dispute", "answer", "resolve", "operator"]
FITTING = {
    OrderStatus.PAYMENT_FAILED: ["pay again"],
    OrderStatus.PAYMENT_RETRYING: ["pay again", "operator"],
    OrderStatus.IN_ESCROW: ["refund", "refund", "dispute", "dispute", "confirm", "extend"],
    OrderStatus.DISPUTED: ["answer", "answer", "resolve"],
    OrderStatus.COMPENSATING: ["operator"],
}
"""What people mostly do to an order in each status (anything else is tried too, and refused)."""

STARTS = ["checkout", "in escrow", "refund under way", "disputed", "dispute answered"]
"""Where an example's orders start: just checked out, or paid and in escrow (a refund asked, not
yet delivered; or a dispute opened and the funds frozen; or the seller's answer in too, so an
operator must resolve it)."""

plans = st.tuples(
    st.sampled_from(["USD", "USD", "EUR", "JPY"]),
    st.integers(1, 2),  # which buyer of that currency
    st.sampled_from(["s1", "s1", "s2", "s2", "bad"]),  # a bad seller: escrow refuses the hold (S3)
    st.integers(100, 15_000),
    st.sampled_from([None, None, CARD, OLD_CARD, "split"]),
)


def make_plan(n: int, drawn: tuple[str, int, str, int, str | None]) -> Plan:
    currency, buyer, seller, minor, source = drawn
    return Plan(
        order_id=f"o{n}",
        buyer_id=buyer_of(currency, buyer),
        seller_id=BAD_SELLER if seller == "bad" else seller_of(currency, int(seller[1])),
        amount=Money(amount_minor=minor, currency=currency),
        source_id=CARD if source == "split" else source,
        use_balance_first=source == "split",
    )


@pytest.fixture(autouse=True)
def quiet_services() -> Iterator[None]:
    """The services log every foreign record and duplicate they ignore: kept, not printed."""
    with structlog.testing.capture_logs():
        yield


class MoneyModel(RuleBasedStateMachine):
    """Several orders through the real handlers, with hypothesis as the broker."""

    def __init__(self) -> None:
        super().__init__()
        self.system = System([])
        self.strangers = 0

    @initialize(
        drawn=st.lists(plans, min_size=2, max_size=4),
        wallets=st.lists(st.integers(0, 30_000), min_size=len(BUYERS), max_size=len(BUYERS)),
        locked=st.sets(st.sampled_from(BUYERS), max_size=1),
        start=st.sampled_from(STARTS),
        data=st.data(),
    )
    def place_orders(
        self,
        drawn: list[tuple[str, int, str, int, str | None]],
        wallets: list[int],
        locked: set[str],
        start: str,
        data: st.DataObject,
    ) -> None:
        """Two to four orders checked out. Most examples then start further on (see STARTS), with
        their records so far delivered in order, so the faults fall on refunds, disputes and
        releases as often as on paying."""
        buyers = [
            Buyer(account_id, account_id.rsplit("-", 1)[1].upper(), minor, locked=account_id in locked)
            for account_id, minor in zip(BUYERS, wallets, strict=True)
        ]
        system = self.system = System(buyers)
        self._start = start
        for n, plan in enumerate(drawn, start=1):
            note(system.place(make_plan(n, plan)).what)
        if start == "checkout":
            return

        def network(request: NetworkRequest) -> Fault:
            return data.draw(st.sampled_from(FAULTS), label=f"the network on {request.request_id}")

        system.settle(timers=False, faults=network)
        in_escrow = [o.order_id for o in system.orders() if o.status is OrderStatus.IN_ESCROW]
        for order_id in in_escrow:
            if start == "refund under way":
                system.request_refund(order_id, 1, max(1, system.plans[order_id].amount.amount_minor // 2))
            elif start.startswith("dispute"):
                system.open_dispute(order_id)
                system.settle(timers=False, faults=network)
                if start == "dispute answered":
                    system.answer_dispute(order_id)
                    system.settle(timers=False, faults=network)
        note(f"start: {start}: " + ", ".join(f"{o.order_id} {o.status.value}" for o in system.orders()))

    # ------------------------------------------------------------------ the broker

    @precondition(lambda self: bool(self.system.pending))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Any partition's next record, while the network worker sends what is due between them."""
        for _ in range(data.draw(st.integers(1, 8), label="how many")):
            due = self.system.due_requests()
            worker_first = data.draw(st.booleans(), label="the worker sends") if due else False
            if worker_first:
                self._network_answers(data, due)
                continue
            if not self.system.pending:
                return
            note(self.system.deliver(data.draw(st.sampled_from(self.system.deliverable()), label="which")).what)

    @precondition(lambda self: bool(self.system.pending))
    @rule(count=st.integers(1, 8))
    def deliver_in_order(self, count: int) -> None:
        for _ in range(min(count, len(self.system.pending))):
            note(self.system.deliver(0).what)

    @precondition(lambda self: bool(self.system.pending))
    @rule()
    def deliver_everything_in_order(self) -> None:
        """The wire catches up (the clock stands still): what that sends is delivered too."""
        for _ in range(60):
            if not self.system.pending:
                return
            note(self.system.deliver(0).what)

    @precondition(lambda self: bool(self.system.delivered))
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.system.delivered) - 1), label="delivered")
        note(self.system.deliver_again(index).what)

    @precondition(lambda self: bool(self.system.repeatable()))
    @rule(data=st.data())
    def repeat_under_a_new_id(self, data: st.DataObject) -> None:
        """A client's retry, a re-nudge, the worker's answer handed back again (System.repeatable)."""
        letters = self.system.repeatable()
        letter = letters[data.draw(st.integers(0, len(letters) - 1), label="repeated")]
        note(self.system.repeat(letter).what)

    # ------------------------------------------------------------------ the funding network

    @precondition(lambda self: bool(self.system.due_requests()))
    @rule(data=st.data())
    def the_network_answers(self, data: st.DataObject) -> None:
        self._network_answers(data, self.system.due_requests())

    def _network_answers(self, data: st.DataObject, due: list[NetworkRequest]) -> None:
        request = due[data.draw(st.integers(0, len(due) - 1), label="request")]
        fault = data.draw(st.sampled_from(FAULTS), label="fault")
        note(self.system.network_answers(request, fault).what)

    @precondition(lambda self: any(True for _ in self.system.letters(RecordNetworkAnswer)))
    @rule(data=st.data())
    def a_network_answer_is_lost(self, data: st.DataObject) -> None:
        found = [index for index, _ in self.system.letters(RecordNetworkAnswer)]
        note(self.system.lose_network_answer(data.draw(st.sampled_from(found), label="answer")).what)

    @precondition(lambda self: bool(self.system.worker_sent))
    @rule()
    def the_worker_restarts(self) -> None:
        note(self.system.restart_worker().what)

    # ------------------------------------------------------------------ time

    @rule(by=st.sampled_from(CLOCK_MOVES))
    def the_clock_moves(self, by: timedelta) -> None:
        note(self.system.move_clock(by).what)

    @precondition(lambda self: (self.system.next_timer() or self.system.clock.now()) > self.system.clock.now())
    @rule()
    def the_clock_moves_to_the_next_timer(self) -> None:
        note(self.system.move_to_next_timer().what)

    @precondition(lambda self: any(True for _ in self.system.letters(OrderDeadlineReached)))
    @rule(data=st.data())
    def a_nudge_is_lost(self, data: st.DataObject) -> None:
        found = [index for index, _ in self.system.letters(OrderDeadlineReached)]
        note(self.system.lose_nudge(data.draw(st.sampled_from(found), label="nudge")).what)

    # ------------------------------------------------------------------ poison

    @rule(data=st.data())
    def a_foreign_record(self, data: st.DataObject) -> None:
        plan = data.draw(st.sampled_from(list(self.system.plans.values())), label="order")
        self.strangers += 1
        stranger = uuid.UUID(int=(1 << 120) + self.strangers)
        foreign = data.draw(st.sampled_from(foreign_records(self.system, plan, stranger)), label="foreign")
        note(inject(self.system, foreign, uuid.UUID(int=(1 << 121) + self.strangers)))

    # ------------------------------------------------------------------ people

    @rule(data=st.data(), acts=st.integers(1, 2))
    def people_act(self, data: st.DataObject, acts: int) -> None:
        """A buyer, seller, the marketplace or an operator acts on an order, fitting its state or not."""
        for _ in range(acts):
            self._someone_acts(data)

    def _someone_acts(self, data: st.DataObject) -> None:
        system = self.system
        in_play = [o.order_id for o in system.orders() if not o.final]
        waiting = [o.order_id for o in system.orders() if o.attention is not None]
        order_id = data.draw(st.sampled_from([*waiting, *in_play, *sorted(system.plans)]), label="order")
        order = system.order(order_id)
        held = system.plans[order_id].amount.amount_minor if order is None else order.still_held.amount_minor
        share = data.draw(st.sampled_from([held, max(1, held // 2), 1]), label="share")
        fitting = FITTING.get(OrderStatus.CREATED if order is None else order.status, [])
        if order is not None and order.attention is not None:
            fitting = ["resolve", "operator"]
        match data.draw(st.sampled_from([*fitting, *fitting, *PEOPLE]), label="who"):
            case "confirm":
                step = system.confirm(order_id)
            case "extend":
                step = system.extend(order_id)
            case "pay again":
                step = system.pay_again(order_id, data.draw(st.sampled_from([None, CARD]), label="source"))
            case "refund":
                step = system.request_refund(order_id, data.draw(st.integers(1, 2), label="refund"), share)
            case "dispute":
                step = system.open_dispute(order_id)
            case "answer":
                step = system.answer_dispute(order_id)
            case "resolve":
                resolution = data.draw(st.sampled_from(list(DisputeResolution)), label="resolution")
                step = system.resolve_dispute(
                    order_id, resolution, share if resolution is DisputeResolution.SPLIT else None
                )
            case _:
                action = data.draw(st.sampled_from(OPERATOR_ACTIONS), label="action")
                step = system.operator_acts(order_id, action)
        note(step.what)

    # ------------------------------------------------------------------ the invariants

    @invariant()
    def every_instant(self) -> None:
        check_every_instant(self.system)

    def teardown(self) -> None:
        """The faults stop; once everything is delivered and every timer passed, the books close."""
        if not self.system.plans:
            return
        log = self.system.settle()
        self._tell(log)
        try:
            check_settled(self.system)
        except AssertionError:
            note("settling: " + "\n  ".join(log[-60:]))
            for money in money_by_order(self.system).values():
                note(str(money))
            raise

    def _tell(self, log: list[str]) -> None:
        """What the example reached, for --hypothesis-show-statistics."""
        counts = self.system.counts
        for order in self.system.orders():
            event(f"order ended {order.status.value}")
            if order.refunded_minor:
                event(f"order {order.status.value} with refunds")
            if order.status is OrderStatus.CANCELLED and order.reason:
                event(f"cancelled: {order.reason.split(':', 1)[0]}")
        for row in self.system.saga.store.journals[AUDIT.name]:
            if row["to_status"]:
                event(f"reached {row['to_status']}")
        for name, value in (
            ("delivered during the faults", sum(counts.delivered.values()) - len(log)),
            ("duplicates absorbed", counts.duplicates_absorbed),
            ("foreign records refused", counts.poison_refused),
            ("network faults", sum(counts.network_faults.values())),
        ):
            event(f"{name}: {'none' if not value else 'some' if value < 5 else 'many'}")
        for refused in counts.refused:
            event(f"refused {refused}")
        for fault in counts.network_faults:
            event(f"network fault {fault}")


MoneyModel.TestCase.settings = PROFILE


@pytest.mark.timeout(1200)  # passing takes seconds; a failure is shrunk, which takes minutes
class TestG2X6MoneyModel(MoneyModel.TestCase):  # type: ignore[misc,valid-type]
    """G2/X6: several orders under random interleavings keep every money invariant, at every
    step and once settled (``make test``: the derandomized profile)."""


class LongMoneyModel(MoneyModel):
    """The same model, explored longer (random: ``--hypothesis-seed=N`` replays a run)."""


LongMoneyModel.TestCase.settings = settings.get_profile("money-model-explore")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not EXPLORE, reason="the long exploration runs with TRADEGUARD_MONEY_MODEL=explore")
class TestG2X6MoneyModelLongExploration(LongMoneyModel.TestCase):  # type: ignore[misc,valid-type]
    """G2/X6: the long exploration of the same invariants."""


# ---------------------------------------------------------------------- by hand


def settled(system: System) -> System:
    system.settle()
    check_settled(system)
    return system


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def test_g2_the_model_settles_a_wallet_order_a_card_order_and_a_compensated_one() -> None:
    """The model by hand: a wallet order completes, a card order completes, an order whose seller
    escrow cannot pay is compensated (S3); every unit ends with the seller or back with the buyer."""
    system = System([Buyer("b1-usd", "USD", 10_000), Buyer("b2-usd", "USD", 0)])
    system.place(Plan("o1", "b1-usd", "s1-usd", usd(4250)))
    system.place(Plan("o2", "b2-usd", "s1-usd", usd(3000), source_id=CARD))
    system.place(Plan("o3", "b1-usd", BAD_SELLER, usd(1000)))
    settled(system)
    statuses = {order.order_id: order.status for order in system.orders()}
    assert statuses == {"o1": OrderStatus.COMPLETED, "o2": OrderStatus.COMPLETED, "o3": OrderStatus.CANCELLED}
    assert system.balance("b1-usd") == usd(10_000 - 4250)
    assert system.balance("s1-usd") == usd(4250 + 3000)
    assert system.network.charged_minor("o2") == 3000


def test_x6_a_payout_repeated_under_a_new_message_id_pays_the_seller_once() -> None:
    system = System([Buyer("b1-usd", "USD", 10_000)])
    system.place(Plan("o1", "b1-usd", "s1-usd", usd(4250)))
    settled(system)
    payout = next(letter for letter in system.delivered if letter.type == "CreditWallet")
    system.repeat(payout)
    settled(system)
    assert system.balance("s1-usd") == usd(4250)


def test_x6_the_invariants_fail_when_money_appears_or_goes_missing() -> None:
    """The checks can fail: a wallet credited with no movement behind it (money created), and a
    seller's payout that never arrived (money lost: taken from the buyer, not with the seller)."""
    system = System([Buyer("b1-usd", "USD", 10_000)])
    system.place(Plan("o1", "b1-usd", "s1-usd", usd(4250)))
    settled(system)
    store = system.account.store
    seller = store.load(WALLETS, "s1-usd")
    assert seller is not None
    seller.balance = seller.balance + usd(1)
    store.put(WALLETS, seller)
    with pytest.raises(AssertionError, match="its movements say"):
        check_every_instant(system)

    system = System([Buyer("b1-usd", "USD", 10_000)])
    system.place(Plan("o1", "b1-usd", "s1-usd", usd(4250)))
    for _ in range(100):
        if system.pending and system.pending[0].type == "CreditWallet":
            system.pending.pop(0)  # the payout lost on its way to the account
        elif system.pending:
            system.deliver(0)
        elif system.next_timer() is not None:
            system.move_to_next_timer()
    assert system.order("o1") is not None
    with pytest.raises(AssertionError, match="money lost or created"):
        check_settled(system)


def declined_once(kind: NetworkRequestKind) -> Callable[[NetworkRequest], Fault]:
    """The network declines the first call of ``kind``, and takes every other."""
    declined: list[str] = []

    def fault(request: NetworkRequest) -> Fault:
        if request.kind is kind and not declined:
            declined.append(request.request_id)
            return Fault.DECLINE
        return Fault.NONE

    return fault


@pytest.mark.parametrize("refund", ["compensation of a refused hold", "half of the price, in escrow"])
def test_s3_p6_a_refund_whose_card_part_failed_once_is_paid_back_once_retried(refund: str) -> None:
    """S3/P6: a card refund the issuer declines once is retried by the saga (compensation policy)
    and must reach the buyer exactly once; the books must close."""
    seller = BAD_SELLER if refund.startswith("compensation") else "s1-jpy"
    system = System([Buyer("b1-jpy", "JPY", 0)])
    system.place(Plan("o1", "b1-jpy", seller, Money(amount_minor=14_035, currency="JPY"), source_id=CARD))
    issuer = declined_once(NetworkRequestKind.REFUND)
    system.settle(timers=False, faults=issuer)
    if seller != BAD_SELLER:
        system.request_refund("o1", 1, 7_000)
    system.settle(faults=issuer)
    check_settled(system)


def away_three_times() -> System:
    """A card order whose first three charges find the issuer away (each answer recorded)."""
    system = System([Buyer("b1-usd", "USD", 0)])
    system.place(Plan("o1", "b1-usd", "s1-usd", usd(4250), source_id=CARD))
    system.deliver_all()
    for _ in range(3):
        answer_the_charge(system, Fault.UNAVAILABLE)
        system.deliver_all()
        system.move_to_next_timer()
    return system


def answer_the_charge(system: System, fault: Fault) -> None:
    (request,) = system.due_requests()
    system.network_answers(request, fault)


def test_p4_a_charge_whose_answer_was_lost_and_whose_inquiry_found_the_issuer_away_is_never_charged_twice() -> None:
    """P4: the fourth charge goes through, its answer is lost; the status inquiry finds the
    issuer away. The outcome is still unknown: the payment must ask again, not give up."""
    system = away_three_times()
    answer_the_charge(system, Fault.LOST_AFTER)
    system.deliver_all()
    system.move_to_next_timer()
    answer_the_charge(system, Fault.UNAVAILABLE)  # the inquiry
    system.settle()
    check_settled(system)


def test_p4_a_last_charge_sent_twice_away_then_charged_is_never_charged_twice() -> None:
    """P4: the fourth charge is sent twice (a second worker, or one restarted before its answer
    was recorded): the issuer is away for the first, and charges the second."""
    system = away_three_times()
    answer_the_charge(system, Fault.UNAVAILABLE)  # its answer still on its way
    system.restart_worker()
    answer_the_charge(system, Fault.NONE)
    system.settle()
    check_settled(system)
    # The first answer failed the payment; the second's charge was given back, whole, once.
    (reversal,) = [refund for refund in system.network.refunds.values() if refund.request_id.startswith("reversal:")]
    assert reversal.amount == usd(4250)
