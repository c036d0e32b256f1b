"""S1, S2, S5: the order lifecycle as pure rules (services/saga/domain), no Kafka, no database.

Each test narrates one branch of the lifecycle: what the saga is told, what it sends, where
the order moves. Every step with a status change is checked against the one table
(lifecycle.ALLOWED); duplicates and late answers change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import (
    CapturePayment,
    Checkout,
    CreditWallet,
    Deadline,
    HoldFunds,
    Message,
    Money,
    OrderStatus,
    PayAgain,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
)
from services.saga.domain import (
    COMPENSATION,
    FINAL,
    LIFECYCLE,
    IllegalTransition,
    Order,
    OrderRuleBroken,
    RefundStatus,
    RetryPolicy,
    Step,
    default_policy,
    lifecycle,
    load_policy,
    refund_of,
)
from services.saga.domain.policy import DEFAULT_POLICY_FILE, PolicyFileInvalid
from services.saga.handlers import answer_slot

S = OrderStatus
PRICE = 4250
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = default_policy()
PAYMENT_RETRY = POLICY.payment.retry
DOC = Path(__file__).resolve().parents[2] / "docs" / "saga-lifecycle.md"


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


class Journal:
    """One order and everything it did: each step checked against the lifecycle table."""

    def __init__(self, order_id: str = "o1", **checkout: Any) -> None:
        fields: dict[str, object] = {
            "order_id": order_id,
            "buyer_id": "b",
            "seller_id": "s",
            "amount": usd(PRICE),
            "marketplace_id": "m",
        }
        fields.update(checkout)
        self.order, placed = Order.place(Checkout.model_validate(fields), T0, POLICY)
        self.steps: list[Step] = []
        self.record(placed)

    def record(self, step: Step) -> Step:
        assert_legal(step)
        self.steps.append(step)
        return step

    @property
    def sent(self) -> list[Message]:
        return [message for step in self.steps for message in step.messages]

    def sent_of(self, kind: type[Message]) -> list[Message]:
        return [message for message in self.sent if isinstance(message, kind)]

    def fail(self, attempt: int, reason: str, *, permanent: bool, now: datetime = T0) -> Step:
        step = self.order.payment_failed(
            attempt, reason, f"{reason} happened", permanent=permanent, now=now, policy=POLICY
        )
        return self.record(step)

    def fire_due(self, now: datetime) -> list[Step]:
        return [self.record(self.order.fire(d, now, POLICY, None)) for d in self.order.due(now)]


def assert_legal(step: Step) -> None:
    if step.changed:
        source = None if step.from_status is S.CREATED else step.from_status
        assert step.to_status is not None
        assert lifecycle.allowed(source, step.to_status), f"{step.from_status} -> {step.to_status} is not in the table"


def kinds(messages: Iterable[Message]) -> list[str]:
    return [type(message).__name__ for message in messages]


def timer(order: Order, deadline: Deadline) -> datetime | None:
    at = order.timers.get(deadline.value)
    return None if at is None else datetime.fromisoformat(at)


def pay_again(order: Order, buyer_id: str = "b", source_id: str = "card-2") -> PayAgain:
    return PayAgain(order_id=order.order_id, buyer_id=buyer_id, source_id=source_id)


class TestHappyPath:
    def test_s1_happy_path_sends_each_money_command_once(self) -> None:
        journal = Journal()
        order = journal.order
        assert (order.status, kinds(journal.sent)) == (S.PAYMENT_PENDING, ["CapturePayment"])

        # The payment is captured, escrow holds it, the buyer confirms, escrow releases: each
        # answer delivered twice, the second changes nothing.
        answers: list[Callable[[], Step]] = [
            lambda: order.payment_captured(1),
            lambda: order.funds_held(T0, POLICY),
            lambda: order.confirm_receipt("b"),
            order.funds_released,
        ]
        for answer in answers:
            journal.record(answer())
            again = journal.record(answer())
            assert (again.messages, again.changed) == ([], False)

        statuses = [step.to_status for step in journal.steps if step.changed]
        assert statuses == [S.PAYMENT_PENDING, S.PAID, S.IN_ESCROW, S.RELEASING, S.COMPLETED]
        assert kinds(journal.sent) == ["CapturePayment", "HoldFunds", "ReleaseFunds", "CreditWallet"]
        assert journal.sent_of(HoldFunds) == [
            HoldFunds(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), breakdown=None)
        ]
        assert journal.sent_of(ReleaseFunds) == [ReleaseFunds(order_id="o1")]
        assert journal.sent_of(CreditWallet) == [CreditWallet(account_id="s", order_id="o1", amount=usd(PRICE))]
        assert (order.final, order.timers, order.next_due_at) == (True, {}, None)

    def test_s1_the_checkout_capture_carries_what_the_buyer_chose(self) -> None:
        journal = Journal(source_id="card-1", use_balance_first=True, quote_id="q1")
        (capture,) = journal.sent_of(CapturePayment)
        assert capture == CapturePayment(
            order_id="o1",
            buyer_id="b",
            amount=usd(PRICE),
            marketplace_id="m",
            source_id="card-1",
            use_balance_first=True,
            quote_id="q1",
            attempt=1,
        )

    @pytest.mark.parametrize(
        ("changes", "code"),
        [({"seller_id": "b"}, "invalid_order"), ({"amount": usd(0)}, "invalid_order")],
    )
    def test_s1_an_order_that_cannot_be_paid_is_refused_at_checkout(self, changes: dict[str, Any], code: str) -> None:
        with pytest.raises(OrderRuleBroken) as caught:
            Journal(**changes)
        assert caught.value.code == code

    def test_s5_a_repeated_checkout_must_describe_the_same_order(self) -> None:
        order = Journal().order
        same = Checkout(order_id="o1", buyer_id="b", seller_id="s", amount=usd(PRICE), marketplace_id="m")
        order.check_same_checkout(same)
        with pytest.raises(OrderRuleBroken) as caught:
            order.check_same_checkout(same.model_copy(update={"amount": usd(PRICE + 1)}))
        assert caught.value.code == "order_conflict"


class TestTheTable:
    def test_s1_every_row_of_the_table_is_allowed_and_final_statuses_are_its_ends(self) -> None:
        targets = {row.target for row in LIFECYCLE}
        sources = {source for row in LIFECYCLE for source in row.sources}
        assert targets | {S.CREATED} == set(S)  # every status but the one before checkout is reached
        assert {S.COMPLETED, S.CANCELLED, S.REFUNDED} == FINAL
        # Only a cancelled order leaves a final status: a payment captured after it is given back.
        assert sources & FINAL == {S.CANCELLED}
        assert {row.target for row in LIFECYCLE if S.CANCELLED in row.sources} == {S.COMPENSATING}
        assert lifecycle.allowed(None, S.PAYMENT_PENDING)
        assert not lifecycle.allowed(S.COMPLETED, S.PAID)

    @pytest.mark.parametrize(
        ("source", "target"),
        [(S.PAYMENT_PENDING, S.COMPLETED), (S.CANCELLED, S.PAID), (S.COMPLETED, S.REFUNDED), (S.PAID, S.RELEASING)],
    )
    def test_s1_an_illegal_move_is_refused_and_never_applied(self, source: OrderStatus, target: OrderStatus) -> None:
        order = Journal().order
        order.status = source
        with pytest.raises(IllegalTransition) as caught:
            order._move(target, "a bug")
        assert isinstance(caught.value, OrderRuleBroken)  # refused like any broken rule, with its code
        assert caught.value.code == "illegal_transition"
        assert f"{source.value} -> {target.value} is not in the lifecycle (a bug)" in caught.value.reason
        assert order.status is source

    def test_s1_the_diagram_in_the_docs_is_the_table(self) -> None:
        blocks = re.findall(r"```mermaid\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
        assert blocks == [lifecycle.mermaid()], (
            "docs/saga-lifecycle.md is out of date: paste `uv run --frozen python -m services.saga.domain.lifecycle`"
        )

    def test_s1_the_diagram_draws_every_row(self) -> None:
        diagram = lifecycle.mermaid().splitlines()
        edges = sum(len(row.sources) for row in LIFECYCLE)
        assert diagram[0] == "stateDiagram-v2"
        assert len(diagram) == 1 + edges + len(FINAL)
        assert "    [*] --> payment_pending: Checkout / CapturePayment; timer payment_window" in diagram


class TestRetries:
    def test_s2_a_transient_failure_is_retried_after_a_jittered_backoff(self) -> None:
        journal = Journal()
        order = journal.order
        failed = journal.fail(1, "issuer_unavailable", permanent=False)
        assert (failed.to_status, failed.messages) == (S.PAYMENT_RETRYING, [])
        at = timer(order, Deadline.PAYMENT_RETRY)
        assert at is not None
        delay = at - T0
        first = PAYMENT_RETRY.initial_interval
        assert first * (1 - PAYMENT_RETRY.jitter) <= delay <= first * (1 + PAYMENT_RETRY.jitter)
        assert delay == PAYMENT_RETRY.delay(1, "o1")
        assert order.next_due_at == at  # sooner than the payment window
        assert order.reason == "issuer_unavailable: issuer_unavailable happened"

        # Not yet: nothing is due a moment before.
        assert journal.fire_due(at - timedelta(milliseconds=1)) == []
        (retried,) = journal.fire_due(at)
        assert (retried.from_status, retried.to_status) == (S.PAYMENT_RETRYING, S.PAYMENT_PENDING)
        assert [(type(m).__name__, getattr(m, "attempt", None)) for m in retried.messages] == [("CapturePayment", 2)]
        assert (order.attempt, timer(order, Deadline.PAYMENT_RETRY)) == (2, None)
        assert timer(order, Deadline.PAYMENT_WINDOW) == T0 + POLICY.payment.window  # the window still runs

        # The second attempt is captured: paid, no timer of paying left.
        journal.record(order.payment_captured(2))
        assert (order.status, order.timers) == (S.PAID, {})
        assert order.reason is None

    def test_s2_retries_exhausted_after_maximum_attempts_cancel_with_the_reason(self) -> None:
        journal = Journal()
        order = journal.order
        now = T0
        for attempt in range(1, PAYMENT_RETRY.maximum_attempts):
            assert journal.fail(attempt, "network_timeout", permanent=False, now=now).to_status is S.PAYMENT_RETRYING
            at = timer(order, Deadline.PAYMENT_RETRY)
            assert at is not None
            now = at
            journal.fire_due(now)
        attempts = [m.attempt for m in journal.sent_of(CapturePayment) if isinstance(m, CapturePayment)]
        assert attempts == list(range(1, PAYMENT_RETRY.maximum_attempts + 1))

        last = journal.fail(PAYMENT_RETRY.maximum_attempts, "network_timeout", permanent=False, now=now)
        assert last.to_status is S.CANCELLED
        assert order.reason is not None
        assert order.reason.startswith("network_timeout: network_timeout happened")
        assert "after 4 attempts" in order.reason
        assert (order.timers, order.next_due_at, order.final) == ({}, None, True)

    def test_s2_a_non_retryable_transient_reason_cancels_at_once(self) -> None:
        journal = Journal()
        assert "rate_limited" in PAYMENT_RETRY.non_retryable
        assert journal.fail(1, "rate_limited", permanent=False).to_status is S.CANCELLED
        assert kinds(journal.sent) == ["CapturePayment"]

    def test_s2_a_decline_waits_for_the_buyer_to_pay_again_another_way(self) -> None:
        journal = Journal(source_id="card-1")
        order = journal.order
        declined = journal.fail(1, "card_declined", permanent=True)
        assert "card_declined" not in POLICY.payment.cancel_at_once
        assert (declined.to_status, declined.messages) == (S.PAYMENT_FAILED, [])
        assert list(order.timers) == [Deadline.PAYMENT_WINDOW.value]  # no retry: the buyer decides

        again = journal.record(order.pay_again(pay_again(order), T0 + timedelta(minutes=5)))
        assert (again.from_status, again.to_status) == (S.PAYMENT_FAILED, S.PAYMENT_PENDING)
        (capture,) = again.messages
        assert isinstance(capture, CapturePayment)
        assert (capture.attempt, capture.source_id, order.reason) == (2, "card-2", None)
        journal.record(order.payment_captured(2))
        assert order.status is S.PAID

    def test_s2_pay_again_is_refused_after_the_window_by_another_buyer_or_while_paying(self) -> None:
        order = Journal().order
        with pytest.raises(OrderRuleBroken) as paying:
            order.pay_again(pay_again(order), T0)
        assert paying.value.code == "not_awaiting_payment"
        order.payment_failed(1, "card_declined", "x", permanent=True, now=T0, policy=POLICY)

        with pytest.raises(OrderRuleBroken) as mallory:
            order.pay_again(pay_again(order, buyer_id="mallory"), T0)
        assert mallory.value.code == "not_the_buyer"
        assert order.pay_by is not None
        with pytest.raises(OrderRuleBroken) as late:
            order.pay_again(pay_again(order), order.pay_by)
        assert late.value.code == "payment_window_closed"
        assert (order.status, order.attempt, order.source_id) == (S.PAYMENT_FAILED, 1, None)  # nothing changed

    @pytest.mark.parametrize("reason", sorted(POLICY.payment.cancel_at_once))
    def test_s2_an_order_ending_decline_cancels_at_once(self, reason: str) -> None:
        journal = Journal()
        cancelled = journal.fail(1, reason, permanent=True)
        assert cancelled.to_status is S.CANCELLED
        assert journal.order.reason == f"{reason}: {reason} happened"
        assert journal.order.timers == {}

    @pytest.mark.parametrize("failure", ["none", "declined", "retrying"])
    def test_s2_the_payment_window_cancels_an_unpaid_order(self, failure: str) -> None:
        journal = Journal()
        order = journal.order
        if failure == "declined":
            journal.fail(1, "card_declined", permanent=True)
        elif failure == "retrying":
            journal.fail(
                1, "issuer_unavailable", permanent=False, now=T0 + POLICY.payment.window - timedelta(seconds=1)
            )
        assert order.pay_by == T0 + POLICY.payment.window
        steps = journal.fire_due(order.pay_by)
        assert steps[0].to_status is S.CANCELLED
        assert order.reason is not None
        assert "not paid within the payment window" in order.reason
        assert ("last failure" in order.reason) == (failure != "none")
        assert kinds(journal.sent) == ["CapturePayment"]
        assert order.final

    def test_s5_a_late_capture_after_cancellation_is_refunded_never_kept(self) -> None:
        journal = Journal()
        order = journal.order
        assert order.pay_by is not None
        journal.fire_due(order.pay_by)  # the window closed while attempt 1 was still out
        assert order.status is S.CANCELLED

        late = journal.record(order.payment_captured(1))
        assert (late.from_status, late.to_status) == (S.CANCELLED, S.COMPENSATING)
        (pay_back,) = late.messages
        assert isinstance(pay_back, RefundPayment)
        assert (refund_of(pay_back.refund_id), pay_back.amount, pay_back.reason) == (
            COMPENSATION,
            usd(PRICE),
            "paid after the order was cancelled",
        )
        assert late.refund is not None
        assert (late.refund.refund_id, late.refund.status, order.refunding) == (
            COMPENSATION,
            RefundStatus.REFUNDING,
            COMPENSATION,
        )
        assert not order.final  # money is on its way back
        assert journal.record(order.payment_captured(1)).did_something is False  # a duplicate

        done = journal.record(order.payment_refunded(late.refund))
        assert (done.from_status, done.to_status) == (S.COMPENSATING, S.CANCELLED)
        assert (order.refunded, order.final) == (usd(PRICE), True)
        # Never back to paid, never a second refund.
        assert journal.record(order.payment_captured(1)).did_something is False
        assert kinds(journal.sent) == ["CapturePayment", "RefundPayment"]
        assert S.PAID not in [step.to_status for step in journal.steps]

    def test_s5_a_stale_failure_of_an_older_attempt_changes_nothing(self) -> None:
        journal = Journal()
        order = journal.order
        journal.fail(1, "card_declined", permanent=True)
        journal.record(order.pay_again(pay_again(order), T0))
        before = (order.status, order.attempt, dict(order.timers), order.reason)
        stale = journal.fail(1, "card_declined", permanent=True)
        assert stale.did_something is False
        assert (order.status, order.attempt, dict(order.timers), order.reason) == before
        # And once paid, any failure is late.
        journal.record(order.payment_captured(2))
        assert journal.fail(2, "network_timeout", permanent=False).did_something is False
        assert order.status is S.PAID

    def test_s3_a_refused_hold_gives_the_payment_back(self) -> None:
        journal = Journal()
        order = journal.order
        journal.record(order.payment_captured(1))
        refused = journal.record(order.hold_refused("hold_refused", "the seller's account is closed"))
        assert (refused.from_status, refused.to_status) == (S.PAID, S.COMPENSATING)
        (pay_back,) = refused.messages
        assert isinstance(pay_back, RefundPayment)
        assert (refund_of(pay_back.refund_id), pay_back.amount) == (COMPENSATION, usd(PRICE))
        assert order.reason is not None
        assert order.reason.startswith("hold_refused: ")
        assert "the seller's account is closed" in order.reason
        assert journal.record(order.funds_held(T0, POLICY)).did_something is False  # too late to hold
        assert refused.refund is not None
        journal.record(order.payment_refunded(refused.refund))
        assert (order.status, order.refunded, order.final) == (S.CANCELLED, usd(PRICE), True)

    def test_s3_a_compensation_the_payment_could_not_pay_is_retried(self) -> None:
        journal = Journal()
        order = journal.order
        journal.record(order.payment_captured(1))
        compensation = journal.record(order.hold_refused("hold_refused", "x")).refund
        assert compensation is not None
        journal.record(order.refund_failed(compensation, "issuer_unavailable", "later", T0, POLICY))
        assert order.status is S.COMPENSATING
        at = timer(order, Deadline.COMPENSATION_RETRY)
        assert at is not None
        (retried,) = journal.fire_due(at)
        (again,) = retried.messages
        assert isinstance(again, RefundPayment)
        assert (refund_of(again.refund_id), again.attempt) == (COMPENSATION, 2)
        journal.record(order.payment_refunded(compensation))
        assert (order.status, order.refunded) == (S.CANCELLED, usd(PRICE))

    def test_s2_an_operator_cancels_only_an_unpaid_order(self) -> None:
        journal = Journal()
        order = journal.order
        cancelled = journal.record(order.cancel_by_operator("ops-1", "fraud suspected"))
        assert cancelled.to_status is S.CANCELLED
        assert order.reason is not None
        assert "ops-1" in order.reason
        assert order.reason.endswith("fraud suspected")
        paid = Journal("o2").order
        paid.payment_captured(1)
        with pytest.raises(OrderRuleBroken) as caught:
            paid.cancel_by_operator("ops-1", "x")
        assert caught.value.code == "not_cancellable"

    def test_s2_paying_again_past_the_attempt_limit_is_refused_as_a_rule(self) -> None:
        order = Journal().order
        for attempt in range(1, 100):
            order.payment_failed(attempt, "card_declined", "x", permanent=True, now=T0, policy=POLICY)
            order.pay_again(pay_again(order), T0)
        order.payment_failed(100, "card_declined", "x", permanent=True, now=T0, policy=POLICY)
        with pytest.raises(OrderRuleBroken):
            order.pay_again(pay_again(order), T0)


class TestRetryPolicy:
    def policy(self, **changes: object) -> RetryPolicy:
        fields: dict[str, object] = {
            "initial_interval": timedelta(seconds=2),
            "backoff_coefficient": 2.0,
            "maximum_interval": timedelta(minutes=1),
            "maximum_attempts": 10,
            "jitter": 0.0,
        }
        return RetryPolicy.model_validate({**fields, **changes})

    def test_s2_the_delay_grows_exponentially_and_is_capped(self) -> None:
        delays = [self.policy().delay(n, "o1").total_seconds() for n in range(1, 9)]
        assert delays == [2, 4, 8, 16, 32, 60, 60, 60]

    def test_s2_the_jitter_is_bounded_and_deterministic_per_seed(self) -> None:
        retry = self.policy(jitter=0.2)
        for n in range(1, 9):
            capped = min(retry.initial_interval * 2 ** (n - 1), retry.maximum_interval)
            for seed in ("o1", "o2", "o3"):
                delay = retry.delay(n, seed)
                assert capped * 0.8 <= delay <= capped * 1.2
                assert delay == retry.delay(n, seed)  # a replay computes the same schedule
        spread = {retry.delay(1, f"order-{i}") for i in range(20)}
        assert len(spread) > 1  # orders failing together do not retry together

    def test_s2_retries_stop_at_maximum_attempts_and_never_for_a_non_retryable_reason(self) -> None:
        retry = self.policy(maximum_attempts=3, non_retryable=["rate_limited"])
        assert [retry.retries("network_timeout", n) for n in (1, 2, 3)] == [True, True, False]
        assert not retry.retries("rate_limited", 1)

    def test_s2_the_policy_file_is_checked(self, tmp_path: Path) -> None:
        assert load_policy(DEFAULT_POLICY_FILE) == POLICY
        assert POLICY.payment.window == timedelta(minutes=30)
        broken = tmp_path / "saga.toml"
        broken.write_text(DEFAULT_POLICY_FILE.read_text().replace("jitter = 0.2", "jitter = 1.5", 1))
        with pytest.raises(PolicyFileInvalid) as caught:
            load_policy(broken)
        assert "payment.retry.jitter" in str(caught.value)
        unknown = tmp_path / "default.toml"
        unknown.write_text(
            DEFAULT_POLICY_FILE.read_text().replace('default_method = "standard"', 'default_method = "drone"')
        )
        with pytest.raises(PolicyFileInvalid, match="default_method names no window"):
            load_policy(unknown)

    def test_s2_a_long_retry_policy_keeps_waiting_the_maximum_interval(self) -> None:
        retry = self.policy(maximum_attempts=100)
        assert retry.delay(80, "o1") == retry.maximum_interval


class TestAnswersOnly:
    """X9, S5: escrow's answers are trusted only when caused by the command the saga sent."""

    def test_x9_an_answer_is_trusted_only_from_the_command_the_saga_recorded(self) -> None:
        order = Journal().order
        order.sent = {"HoldFunds": "6f1c0d3e-0000-4000-8000-000000000001"}
        assert order.caused_by_us("HoldFunds", "6f1c0d3e-0000-4000-8000-000000000001")
        assert not order.caused_by_us("HoldFunds", "6f1c0d3e-0000-4000-8000-000000000002")
        assert not order.caused_by_us("HoldFunds", None)

    def test_x9_an_order_from_before_the_records_is_checked_by_money_and_parties_only(self) -> None:
        assert Journal().order.caused_by_us("ReleaseFunds", "anything")

    def test_x9_the_saga_names_the_escrow_commands_whose_answers_it_checks(self) -> None:
        assert answer_slot(ReleaseFunds(order_id="o1")) == "ReleaseFunds"
        assert answer_slot(ReturnFunds(order_id="o1", refund_id="r1", amount=usd(100))) == "ReturnFunds:r1"
        assert answer_slot(CapturePayment(order_id="o1", buyer_id="b", amount=usd(1), marketplace_id="m")) is None
