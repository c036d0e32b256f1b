"""The order saga's rules: which message or timer moves an order where, and what it sends.

The status changes are the table in lifecycle.py (S1); every move is checked against it. This
module holds the rules behind each row, grouped by branch: paying (S2: retries with backoff,
paying again another way, the payment window), escrow (E2: release on confirmation or when
the protection ends, the reminder before, one extension), disputes (E3), refunds and
compensations (P6, S3), and the timers that drive them (S4). Each rule returns a
:class:`Step`: the status change (if any), the messages to send, and a note for the order's
audit trail (S6). Pure: the handlers load and store, the rules decide.

A message that does not fit the order's state is a duplicate or a late delivery and changes
nothing (S5), except money that arrives where it should not: a payment captured after the
order was cancelled is refunded, never kept and never resurrecting the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts import (
    AutoReleaseApproaching,
    CapturePayment,
    Checkout,
    CreditWallet,
    Deadline,
    DisputeAnswered,
    DisputeOpened,
    DisputeResolution,
    DisputeResolved,
    FreezeFunds,
    HoldFunds,
    Message,
    Money,
    OpenDispute,
    OrderStatus,
    PayAgain,
    PriceBreakdown,
    ProtectionExtended,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
    SecurityMethod,
)
from services.saga.domain import timers
from services.saga.domain.disputes import Dispute, DisputeStatus
from services.saga.domain.lifecycle import FINAL, allowed
from services.saga.domain.policy import SagaPolicy
from services.saga.domain.refunds import (
    COMPENSATION,
    DISPUTE_REFUND,
    OrderRuleBroken,
    Refund,
    RefundStatus,
    check_refund_id,
    payment_refund_id,
)

S = OrderStatus
PAYING = frozenset({S.PAYMENT_PENDING, S.PAYMENT_RETRYING, S.PAYMENT_FAILED})
# An auto-release that falls while a refund is under way waits this long and looks again.
RELEASE_POSTPONED_BY = timedelta(hours=1)
MAX_ATTEMPTS = 100  # CapturePayment.attempt's bound: retries and paying again together


class IllegalTransition(OrderRuleBroken):
    """A move the lifecycle table does not have: a bug, refused and recorded, never applied."""


@dataclass(slots=True)
class Step:
    """What one message did to an order: its status change, what to send, what to note.

    ``announce`` names news worth an OrderStatusChanged although the status stays (a refund
    done or failed); it also keys that announcement, so each is sent once. ``refund`` and
    ``dispute`` are records the step created, for the handler to store.
    """

    from_status: OrderStatus | None
    to_status: OrderStatus | None
    messages: list[Message] = field(default_factory=list)
    announce: str | None = None
    note: str = ""
    refund: Refund | None = None
    dispute: Dispute | None = None

    @property
    def changed(self) -> bool:
        return self.to_status is not None and self.to_status != self.from_status

    @property
    def did_something(self) -> bool:
        return self.to_status is not None or bool(self.messages) or bool(self.note)


NOTHING = Step(None, None)

# Why an order that is not in escrow cannot be refunded, by status (a refunded order can:
# the amount check then says nothing is left).
_NOT_REFUNDABLE = {
    S.CREATED: "the buyer has not paid yet",
    S.PAYMENT_PENDING: "the buyer has not paid yet",
    S.PAYMENT_RETRYING: "the buyer has not paid yet",
    S.PAYMENT_FAILED: "the buyer has not paid yet",
    S.PAID: "the escrow hold is still being placed; refund once the order is in escrow",
    S.CANCELLED: "the order was cancelled: whatever was paid is refunded by the saga itself",
    S.COMPENSATING: "the order's payment is being given back already",
    S.DISPUTED: "a dispute is open: its resolution decides what goes back to the buyer",
    S.RELEASING: "the funds are being released to the seller",
    S.COMPLETED: "the seller has been paid: the marketplace settles it with the seller",
}


@dataclass(slots=True)
class Order:
    order_id: str
    buyer_id: str
    seller_id: str
    amount: Money
    marketplace_id: str = ""
    source_id: str | None = None
    security_method: SecurityMethod | None = None
    security_proof: str | None = None  # sealed for the account service; the saga cannot open it
    use_balance_first: bool = False
    quote_id: str | None = None  # the price the buyer accepted (P3), passed to the payment
    shipping_method: str | None = None  # sets the protection window (E2)
    status: OrderStatus = S.CREATED
    reason: str | None = None
    returned_minor: int = 0  # of the price, out of escrow towards the buyer (P6)
    refunded_minor: int = 0  # of the price, back with the buyer
    refunding: str | None = None  # the refund id under way, if any: one at a time
    attempt: int = 1  # the payment attempt under way or last made (S2)
    pay_by: datetime | None = None  # the payment window's end
    release_at: datetime | None = None  # the protection's end: the auto-release (E2)
    protection_extended: bool = False
    dispute_id: str | None = None
    release_after_refund: bool = False  # a split dispute: release the rest once the buyer's part is back
    refund_attempt: int = 0  # payments made of the refund under way (S3 retries)
    refund_retry: dict[str, Any] | None = None  # the RefundPayment to send again when retried
    attention: str | None = None  # why an operator must act, while one must (S6)
    timers: dict[str, str] = field(default_factory=dict)  # Deadline -> ISO time (S4)
    next_due_at: datetime | None = None  # the earliest timer, for the deadline sweeper
    actions: list[str] = field(default_factory=list)  # operator action ids carried out (S6)
    sent: dict[str, str] = field(default_factory=dict)  # escrow commands sent: answer slot -> message id

    # ------------------------------------------------------------------ placing

    @classmethod
    def place(cls, checkout: Checkout, now: datetime, policy: SagaPolicy) -> tuple[Order, Step]:
        if checkout.buyer_id == checkout.seller_id:
            raise OrderRuleBroken("invalid_order", f"order {checkout.order_id}: buyer and seller are the same account")
        if checkout.amount.amount_minor <= 0:
            raise OrderRuleBroken("invalid_order", f"order {checkout.order_id}: the amount must be positive")
        try:
            policy.protection.window(checkout.shipping_method)
        except KeyError as unknown:
            raise OrderRuleBroken("invalid_order", f"order {checkout.order_id}: {unknown.args[0]}") from None
        order = cls(
            checkout.order_id,
            checkout.buyer_id,
            checkout.seller_id,
            checkout.amount,
            marketplace_id=checkout.marketplace_id,
            source_id=checkout.source_id,
            security_method=checkout.security_method,
            security_proof=checkout.security_proof,
            use_balance_first=checkout.use_balance_first,
            quote_id=checkout.quote_id,
            shipping_method=checkout.shipping_method,
            pay_by=now + policy.payment.window,
        )
        assert order.pay_by is not None
        order._set_timer(Deadline.PAYMENT_WINDOW, order.pay_by)
        return order, order._move(S.PAYMENT_PENDING, "Checkout", order._capture())

    def check_same_checkout(self, checkout: Checkout) -> None:
        """A repeated checkout must describe the same order."""
        asked = (checkout.buyer_id, checkout.seller_id, checkout.amount, checkout.marketplace_id, checkout.source_id)
        if asked != (self.buyer_id, self.seller_id, self.amount, self.marketplace_id, self.source_id):
            raise OrderRuleBroken(
                "order_conflict",
                f"order {self.order_id} already exists with another buyer, seller, amount, marketplace or source",
            )

    # ------------------------------------------------------------------ money of the order

    @property
    def returned(self) -> Money:
        """What left escrow for the buyer (refunds under way, done or failed)."""
        return self._of_price(self.returned_minor)

    @property
    def refunded(self) -> Money:
        """What the buyer has back of the price."""
        return self._of_price(self.refunded_minor)

    @property
    def still_held(self) -> Money:
        """What escrow holds for the seller once the order is in escrow: the price less what was returned."""
        return self._of_price(self.amount.amount_minor - self.returned_minor)

    def _of_price(self, minor: int) -> Money:
        return Money(amount_minor=minor, currency=self.amount.currency)

    def answers(
        self, *, amount: Money, buyer_id: str | None = None, seller_id: str | None = None, held: bool = False
    ) -> bool:
        """Whether an event is about this order's money and parties (an id alone is not trusted):
        the price, or with ``held`` what escrow still holds of it (a release after refunds)."""
        expected = self.still_held if held else self.amount
        return amount == expected and buyer_id in (None, self.buyer_id) and seller_id in (None, self.seller_id)

    def caused_by_us(self, slot: str, causation_id: object) -> bool:
        """Whether an answer was caused by the command the saga sent for ``slot`` (X9: events only
        as answers). An order placed before commands were recorded has nothing to compare with."""
        expected = self.sent.get(slot)
        return expected is None or expected == str(causation_id)

    def answers_refund(self, refund: Refund, *, amount: Money, buyer_id: str) -> bool:
        """Whether a refund's event is about that refund of this order: its amount, this buyer."""
        return refund.order_id == self.order_id and amount == refund.amount and buyer_id == self.buyer_id

    # ------------------------------------------------------------------ paying (S2)

    def _capture(self) -> CapturePayment:
        return CapturePayment(
            order_id=self.order_id,
            buyer_id=self.buyer_id,
            amount=self.amount,
            marketplace_id=self.marketplace_id,
            source_id=self.source_id,
            security_method=self.security_method,
            security_proof=self.security_proof,
            use_balance_first=self.use_balance_first,
            quote_id=self.quote_id,
            attempt=self.attempt,
        )

    def payment_captured(self, attempt: int, breakdown: PriceBreakdown | None = None) -> Step:
        """Paid: hold the price in escrow, with the payment's breakdown so escrow books what the
        buyer paid in their currency and settles the seller in theirs (E4). Paid after the order
        was cancelled (the window closed, an operator cancelled): give it back (S5)."""
        if self.status in PAYING and attempt <= self.attempt:
            self._clear_timers(Deadline.PAYMENT_WINDOW, Deadline.PAYMENT_RETRY)
            self.reason = None
            hold = HoldFunds(
                order_id=self.order_id,
                buyer_id=self.buyer_id,
                seller_id=self.seller_id,
                amount=self.amount,
                breakdown=breakdown,
            )
            return self._move(S.PAID, f"PaymentCaptured, attempt {attempt}", hold)
        if self.status is S.CANCELLED and self.refunding is None and self.refunded_minor == 0:
            return self._compensate(
                "PaymentCaptured after the order was cancelled", "paid after the order was cancelled"
            )
        return NOTHING

    def payment_failed(
        self, attempt: int, reason: str, detail: str, *, permanent: bool, now: datetime, policy: SagaPolicy
    ) -> Step:
        """A transient failure is retried after a backoff; a decline waits for the buyer to pay
        again another way; an order-ending decline or the last retry cancels."""
        if self.status is not S.PAYMENT_PENDING or attempt != self.attempt:
            return NOTHING
        self.reason = f"{reason}: {detail}"
        if permanent:
            if reason in policy.payment.cancel_at_once:
                return self._cancel(f"PaymentFailed ({reason}), order-ending")
            return self._move(
                S.PAYMENT_FAILED, f"PaymentFailed ({reason}): the buyer may pay again until {self.pay_by}"
            )
        retry = policy.payment.retry
        if not retry.retries(reason, attempt):
            self.reason = f"{reason}: {detail} (gave up after {attempt} attempts)"
            return self._cancel(f"PaymentFailed ({reason}), retries exhausted")
        at = now + retry.delay(attempt, self.order_id)
        self._set_timer(Deadline.PAYMENT_RETRY, at)
        return self._move(S.PAYMENT_RETRYING, f"PaymentFailed ({reason}), transient: attempt {attempt + 1} at {at}")

    def retry_payment(self, why: str, now: datetime) -> Step:
        """The next attempt, after a backoff or on an operator's word; never after the window
        closed (a retry fired late, with the window, closes the order instead)."""
        if self.status is not S.PAYMENT_RETRYING:
            return NOTHING
        if self.pay_by is not None and now >= self.pay_by:
            return self.payment_window_closed()
        if self.attempt >= MAX_ATTEMPTS:
            return self._cancel(f"{why}: {MAX_ATTEMPTS} attempts made")
        self._clear_timers(Deadline.PAYMENT_RETRY)
        self.attempt += 1
        return self._move(S.PAYMENT_PENDING, f"{why}: attempt {self.attempt}", self._capture())

    def pay_again(self, command: PayAgain, now: datetime) -> Step:
        """The buyer pays a declined order again another way, while the payment window is open."""
        self._check_buyer(command.buyer_id, "pay for")
        if self.status not in (S.PAYMENT_FAILED, S.PAYMENT_RETRYING):
            raise OrderRuleBroken(
                "not_awaiting_payment",
                f"order {self.order_id} is {self.status.value}: it can be paid again only after a failed payment",
            )
        if self.pay_by is not None and now >= self.pay_by:
            raise OrderRuleBroken(
                "payment_window_closed", f"order {self.order_id} had to be paid by {self.pay_by.isoformat()}"
            )
        if self.attempt >= MAX_ATTEMPTS:
            raise OrderRuleBroken(
                "too_many_attempts", f"order {self.order_id} was tried {self.attempt} times: place a new order"
            )
        self._clear_timers(Deadline.PAYMENT_RETRY)
        self.source_id, self.security_method = command.source_id, command.security_method
        self.security_proof = command.security_proof
        self.use_balance_first = command.use_balance_first
        self.attempt += 1
        self.reason = None
        return self._move(S.PAYMENT_PENDING, f"PayAgain: attempt {self.attempt}", self._capture())

    def payment_window_closed(self) -> Step:
        if self.status not in PAYING:
            return NOTHING
        last = f" (last failure: {self.reason})" if self.reason else ""
        self.reason = f"payment_window_expired: not paid within the payment window{last}"
        return self._cancel("timer payment_window")

    def cancel_by_operator(self, operator_id: str, why: str) -> Step:
        if self.status not in PAYING:
            raise OrderRuleBroken(
                "not_cancellable",
                f"order {self.order_id} is {self.status.value}: only an unpaid order is cancelled; "
                "a paid one is refunded or disputed",
            )
        self.reason = f"cancelled_by_operator: {operator_id}: {why}"
        return self._cancel(f"operator {operator_id} cancelled")

    def _cancel(self, why: str) -> Step:
        self._clear_timers(Deadline.PAYMENT_WINDOW, Deadline.PAYMENT_RETRY)
        return self._move(S.CANCELLED, why)

    # ------------------------------------------------------------------ escrow (E2)

    def funds_held(self, now: datetime, policy: SagaPolicy) -> Step:
        """In escrow: the protection window starts; the auto-release and its reminder are set."""
        if self.status is not S.PAID:
            return NOTHING
        self.release_at = now + policy.protection.window(self.shipping_method)
        self._set_release_timers(now, policy)
        return self._move(S.IN_ESCROW, f"FundsHeld: released to the seller at {self.release_at} unless disputed")

    def hold_refused(self, code: str, why: str) -> Step:
        """Escrow refused the hold after the payment was captured: give the payment back (S3)."""
        if self.status is not S.PAID:
            return NOTHING
        self.reason = f"hold_refused: escrow refused the hold ({code}): {why}"
        return self._compensate(f"HoldFunds refused ({code})", "the escrow hold was refused")

    def confirm_receipt(self, buyer_id: str) -> Step:
        self._check_buyer(buyer_id, "confirm receipt of")
        if self.status in (S.RELEASING, S.COMPLETED):
            return NOTHING
        if self.status is not S.IN_ESCROW:
            raise OrderRuleBroken(
                "not_in_escrow",
                f"order {self.order_id} is {self.status.value}; receipt can be confirmed once in escrow",
            )
        self._check_releasable()
        return self._release("ConfirmReceipt")

    def remind_release(self, now: datetime) -> Step:
        if self.status is not S.IN_ESCROW or self.release_at is None or now >= self.release_at:
            return NOTHING  # a reminder fired late, as the release happens, would tell nothing
        reminder = AutoReleaseApproaching(
            order_id=self.order_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            amount=self.still_held,
            release_at=self.release_at,
        )
        return self._stay(reminder, note=f"timer release_reminder: release at {self.release_at}")

    def protection_ended(self, now: datetime) -> Step:
        """The protection window ended with no dispute: the seller is paid (E2)."""
        if self.status is not S.IN_ESCROW:
            return NOTHING
        if self.refunding is not None:  # escrow's amount is about to change: look again later
            self._set_timer(Deadline.AUTO_RELEASE, now + RELEASE_POSTPONED_BY)
            return self._stay(note=f"timer auto_release postponed: refund {self.refunding} under way")
        if self.still_held.amount_minor == 0:
            return NOTHING
        return self._release("timer auto_release")

    def extend_protection(self, buyer_id: str, now: datetime, policy: SagaPolicy) -> Step:
        """Once per order, the buyer pushes the release back (S4)."""
        self._check_buyer(buyer_id, "extend the protection of")
        if self.status is not S.IN_ESCROW or self.release_at is None:
            raise OrderRuleBroken(
                "not_in_escrow", f"order {self.order_id} is {self.status.value}: only an order in escrow is protected"
            )
        if self.protection_extended:
            raise OrderRuleBroken("already_extended", f"order {self.order_id}'s protection was extended once already")
        if now >= self.release_at:
            raise OrderRuleBroken(
                "protection_ended", f"order {self.order_id}'s protection ended at {self.release_at.isoformat()}"
            )
        self.protection_extended = True
        self.release_at += policy.protection.extension
        self._set_release_timers(now, policy)
        extended = ProtectionExtended(
            order_id=self.order_id, buyer_id=self.buyer_id, seller_id=self.seller_id, release_at=self.release_at
        )
        return self._stay(extended, note=f"ExtendProtection: release now at {self.release_at}")

    def funds_released(self) -> Step:
        if self.status is not S.RELEASING:
            return NOTHING
        pay_seller = CreditWallet(account_id=self.seller_id, order_id=self.order_id, amount=self.still_held)
        return self._move(S.COMPLETED, "FundsReleased", pay_seller)

    def _set_release_timers(self, now: datetime, policy: SagaPolicy) -> None:
        assert self.release_at is not None
        self._set_timer(Deadline.AUTO_RELEASE, self.release_at)
        remind_at = self.release_at - policy.protection.reminder_before
        if remind_at > now:
            self._set_timer(Deadline.RELEASE_REMINDER, remind_at)
        else:
            self._clear_timers(Deadline.RELEASE_REMINDER)

    def _check_releasable(self) -> None:
        # Escrow releases what it holds; with a refund under way that is about to change, and
        # the release would no longer match what the saga expects: the refund finishes first.
        if self.refunding is not None:
            raise OrderRuleBroken(
                "refund_in_progress",
                f"order {self.order_id} has refund {self.refunding} under way; confirm receipt once it is done",
            )
        if self.still_held.amount_minor == 0:
            raise OrderRuleBroken(
                "nothing_held", f"order {self.order_id} has nothing left in escrow to release to the seller"
            )

    def _release(self, why: str) -> Step:
        self._clear_timers(Deadline.AUTO_RELEASE, Deadline.RELEASE_REMINDER)
        return self._move(S.RELEASING, why, ReleaseFunds(order_id=self.order_id, dispute_id=self.dispute_id))

    # ------------------------------------------------------------------ disputes (E3)

    def open_dispute(self, command: OpenDispute, now: datetime, policy: SagaPolicy) -> Step:
        """The funds freeze and the release timer stops; the seller has a deadline to answer."""
        self._check_buyer(command.buyer_id, "dispute")
        if self.release_at is not None and now >= self.release_at:
            raise OrderRuleBroken(
                "dispute_window_closed",
                f"order {self.order_id}'s protection ended at {self.release_at.isoformat()}: it can no longer be disputed",
            )
        if self.status is not S.IN_ESCROW:
            raise OrderRuleBroken(
                "not_disputable", f"order {self.order_id} is {self.status.value}: only an order in escrow is disputed"
            )
        if self.refunding is not None:
            raise OrderRuleBroken(
                "refund_in_progress", f"order {self.order_id} has refund {self.refunding} under way; dispute after it"
            )
        answer_by = now + policy.dispute.seller_response
        dispute = Dispute(
            self.order_id,
            command.dispute_id,
            self.buyer_id,
            command.reason,
            opened_at=now,
            answer_by=answer_by,
            description=command.description,
            evidence=list(command.evidence),
        )
        self.dispute_id = command.dispute_id
        self._clear_timers(Deadline.AUTO_RELEASE, Deadline.RELEASE_REMINDER)
        self._set_timer(Deadline.SELLER_RESPONSE, answer_by)
        opened = DisputeOpened(
            order_id=self.order_id,
            dispute_id=dispute.dispute_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            amount=self.still_held,
            reason=dispute.reason,
            description=dispute.description,
            evidence=dispute.evidence,
            answer_by=answer_by,
        )
        freeze = FreezeFunds(order_id=self.order_id, dispute_id=dispute.dispute_id)
        step = self._move(S.DISPUTED, f"OpenDispute ({dispute.reason.value})", freeze, opened)
        step.dispute = dispute
        return step

    def answer_dispute(
        self, dispute: Dispute, seller_id: str, statement: str, evidence: list[str], now: datetime
    ) -> Step:
        if seller_id != self.seller_id:
            raise OrderRuleBroken("not_the_seller", f"only the seller of order {self.order_id} can answer its dispute")
        dispute.answer(statement, evidence, now)
        self._clear_timers(Deadline.SELLER_RESPONSE)
        self.attention = f"dispute {dispute.dispute_id} answered by the seller: an operator decides"
        answered = DisputeAnswered(
            order_id=self.order_id,
            dispute_id=dispute.dispute_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            statement=statement,
            evidence=list(evidence),
        )
        return self._stay(answered, note="AnswerDispute")

    def seller_silent(self, dispute: Dispute | None) -> Step:
        """The seller did not answer in time: that counts for the buyer, a full refund."""
        if self.status is not S.DISPUTED or dispute is None or dispute.status is not DisputeStatus.OPEN:
            return NOTHING
        why = f"the seller did not answer by {dispute.answer_by.isoformat()}"
        return self.resolve_dispute(dispute, DisputeResolution.REFUND_IN_FULL, None, "deadline", why)

    def resolve_dispute(
        self,
        dispute: Dispute,
        resolution: DisputeResolution,
        refund: Money | None,
        decided_by: str,
        why: str,
    ) -> Step:
        """Carry the decision out: refund all or part of what escrow holds, release the rest."""
        if self.status is not S.DISPUTED:
            raise OrderRuleBroken(
                "not_disputed", f"order {self.order_id} is {self.status.value}: it has no open dispute to resolve"
            )
        back = self._dispute_refund(resolution, refund)
        dispute.resolve(resolution, back, decided_by, why)
        self._clear_timers(Deadline.SELLER_RESPONSE)
        self.attention = None
        resolved = DisputeResolved(
            order_id=self.order_id,
            dispute_id=dispute.dispute_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            resolution=resolution,
            refund=back,
            release=self._of_price(self.still_held.amount_minor - back.amount_minor),
            decided_by=decided_by,
            reason=why,
        )
        if resolution is DisputeResolution.RELEASE:
            step = self._release(f"ResolveDispute ({resolution.value}) by {decided_by}")
            step.messages.insert(0, resolved)
            return step
        self.release_after_refund = resolution is DisputeResolution.SPLIT
        refund_record = Refund(
            self.order_id,
            DISPUTE_REFUND,
            back,
            reason=f"dispute {dispute.dispute_id}: {why}"[:200],
            dispute_id=dispute.dispute_id,
        )
        return self._start_refund(refund_record, resolved, note=f"ResolveDispute ({resolution.value}) by {decided_by}")

    def _dispute_refund(self, resolution: DisputeResolution, refund: Money | None) -> Money:
        held = self.still_held
        if resolution is DisputeResolution.REFUND_IN_FULL:
            return held
        if resolution is DisputeResolution.RELEASE:
            return self._of_price(0)
        if refund is None or refund.currency != held.currency:
            raise OrderRuleBroken(
                "invalid_resolution", f"a split of order {self.order_id} states the buyer's refund in {held.currency}"
            )
        if not 0 < refund.amount_minor < held.amount_minor:
            raise OrderRuleBroken(
                "invalid_resolution",
                f"a split of order {self.order_id} gives the buyer more than nothing and less than the {held} held",
            )
        return refund

    def funds_frozen(self, dispute: Dispute | None, dispute_id: str) -> Step:
        if dispute is None or dispute.dispute_id != dispute_id or dispute.frozen:
            return NOTHING
        dispute.frozen = True
        return self._stay(note=f"FundsFrozen for dispute {dispute_id}")

    # ------------------------------------------------------------------ refunds (P6) and compensation (S3)

    def request_refund(self, refund_id: str, amount: Money, reason: str = "") -> Step:
        """A new refund (a repeat of a known refund id is the handler's: it changes nothing)."""
        check_refund_id(refund_id)
        self._check_refundable(amount)
        return self._start_refund(Refund(self.order_id, refund_id, amount, reason), note=f"RequestRefund {refund_id}")

    def _start_refund(self, refund: Refund, *first: Message, note: str) -> Step:
        self.refunding = refund.refund_id
        give_back = ReturnFunds(
            order_id=self.order_id, refund_id=refund.refund_id, amount=refund.amount, dispute_id=refund.dispute_id
        )
        step = self._stay(*first, give_back, note=note)
        step.refund = refund
        return step

    def funds_returned(self, refund: Refund) -> Step:
        """Escrow gave the refund's part back: the payment pays it to the buyer's sources."""
        if refund.status is not RefundStatus.RETURNING or self.refunding != refund.refund_id:
            return NOTHING
        refund.status = RefundStatus.REFUNDING
        self.returned_minor += refund.amount.amount_minor
        return self._stay(self._pay_back(refund), note=f"FundsReturned for {refund.refund_id}")

    def _pay_back(self, refund: Refund) -> RefundPayment:
        self.refund_attempt += 1
        command = RefundPayment(
            order_id=self.order_id,
            refund_id=payment_refund_id(self.order_id, refund.refund_id),
            amount=refund.amount,
            reason=refund.reason,
            attempt=self.refund_attempt,
        )
        self.refund_retry = command.model_dump(mode="json")
        return command

    def _compensate(self, why: str, reason: str) -> Step:
        """Give the captured payment back: nothing is in escrow, so straight to the payment."""
        refund = Refund(self.order_id, COMPENSATION, self.amount, reason, status=RefundStatus.REFUNDING)
        self.refunding = refund.refund_id
        step = self._move(S.COMPENSATING, why, self._pay_back(refund))
        step.refund = refund
        return step

    def payment_refunded(self, refund: Refund) -> Step:
        """The buyer has the refund back: a compensation ends in cancelled, the last unit of the
        price in refunded, a split dispute goes on to release the seller's part."""
        if not refund.in_flight or self.refunding != refund.refund_id:
            return NOTHING
        if refund.status is RefundStatus.FAILED:  # an operator's case that ended well after all
            self.attention = None
            if self.reason and self.reason.startswith("refund_failed"):
                self.reason = None
        refund.status, refund.failure = RefundStatus.REFUNDED, None
        self._refund_done()
        self.refunded_minor += refund.amount.amount_minor
        if self.status is S.COMPENSATING:
            return self._move(S.CANCELLED, f"PaymentRefunded: the compensation of {refund.amount} is done")
        if self.refunded_minor == self.amount.amount_minor:
            return self._move(S.REFUNDED, f"PaymentRefunded {refund.refund_id}: the whole price is back")
        if self.release_after_refund:
            self.release_after_refund = False
            step = self._release(f"PaymentRefunded {refund.refund_id}: the seller's part of the split follows")
            step.announce = f"refunded:{refund.refund_id}"
            return step
        return self._stay(announce=f"refunded:{refund.refund_id}", note=f"PaymentRefunded {refund.refund_id}")

    def refund_failed(
        self,
        refund: Refund,
        code: str,
        detail: str,
        now: datetime,
        policy: SagaPolicy,
        *,
        answered: int | None = None,
    ) -> Step:
        """The payment could not pay the refund back: try again after a backoff; once the
        compensation policy's attempts are spent, the refund is failed and an operator's.

        Only the failure of the try under way counts (``answered``: the attempt the event
        names): an earlier try's failure may arrive again after a retry was sent (a repeat is
        answered with the outcome as it stood), and must not start another."""
        if not refund.in_flight or self.refunding != refund.refund_id or self.attention is not None:
            return NOTHING
        waiting = timers.timer_at(self.timers, Deadline.COMPENSATION_RETRY) is not None
        if (answered is not None and answered != self.refund_attempt) or waiting:
            return NOTHING
        reason = refund.failure = f"{code}: {detail}"
        retry = policy.compensation.retry
        if retry.retries(code, self.refund_attempt):
            at = now + retry.delay(self.refund_attempt, f"{self.order_id}:{refund.refund_id}")
            self._set_timer(Deadline.COMPENSATION_RETRY, at)
            return self._stay(note=f"RefundFailed {refund.refund_id} ({reason}): try {self.refund_attempt + 1} at {at}")
        refund.status = RefundStatus.FAILED
        self.attention = (
            f"refund {refund.refund_id} of {refund.amount} failed {self.refund_attempt} times ({reason}): "
            "out of escrow, not back with the buyer; an operator must act"
        )
        self.reason = f"refund_failed: refund {refund.refund_id} of {refund.amount} failed: {reason}"
        return self._stay(announce=f"refund_failed:{refund.refund_id}", note=self.attention)

    def retry_refund(self, why: str, *, reset: bool = False) -> Step:
        """Pay the refund under way again (a timer, or an operator with ``reset``)."""
        if self.refunding is None or self.refund_retry is None:
            return NOTHING
        scheduled = timers.timer_at(self.timers, Deadline.COMPENSATION_RETRY) is not None
        if not reset and (self.attention is not None or not scheduled):
            return NOTHING  # the timer path: only a retry that was scheduled (after a failure) goes
        if self.attention is None and not scheduled:
            return NOTHING  # the last try has no answer yet: another one now could pay twice
        self._clear_timers(Deadline.COMPENSATION_RETRY)
        self.attention = None
        self.refund_attempt += 1
        again = RefundPayment.model_validate({**self.refund_retry, "attempt": self.refund_attempt})
        return self._stay(again, note=f"{why}: refund {self.refunding}, payment {self.refund_attempt}")

    def _refund_done(self) -> None:
        self.refunding, self.refund_attempt, self.refund_retry = None, 0, None
        self._clear_timers(Deadline.COMPENSATION_RETRY)

    def _check_refundable(self, amount: Money) -> None:
        if amount.currency != self.amount.currency:
            raise OrderRuleBroken(
                "invalid_refund",
                f"order {self.order_id} is priced in {self.amount.currency}; a refund in {amount.currency} is refused",
            )
        if amount.amount_minor <= 0:
            raise OrderRuleBroken("invalid_refund", f"order {self.order_id}: a refund must be positive")
        if (why := _NOT_REFUNDABLE.get(self.status)) is not None:
            raise OrderRuleBroken("not_refundable", f"order {self.order_id} is {self.status.value}: {why}")
        if self.refunding is not None:
            raise OrderRuleBroken(
                "refund_in_progress",
                f"order {self.order_id} has refund {self.refunding} under way; ask again once it is done",
            )
        left = self.still_held  # what is neither refunded nor on its way back to the buyer
        if amount.amount_minor > left.amount_minor:
            raise OrderRuleBroken(
                "refund_exceeds_remaining",
                f"order {self.order_id} has {left} left to refund; a refund of {amount} is more than that",
            )

    # ------------------------------------------------------------------ timers (S4)

    def due(self, now: datetime) -> list[Deadline]:
        return timers.due(self.timers, now)

    def next_deadline(self) -> tuple[Deadline, datetime] | None:
        return timers.next_due(self.timers)

    def _set_timer(self, deadline: Deadline, at: datetime) -> None:
        timers.set_timer(self.timers, deadline, at)
        self._sync_next_due()

    def _clear_timers(self, *deadlines: Deadline) -> None:
        timers.clear_timers(self.timers, *deadlines)
        self._sync_next_due()

    def fire(self, deadline: Deadline, now: datetime, policy: SagaPolicy, dispute: Dispute | None) -> Step:  # noqa: ARG002 - the rules of tomorrow's timers may need it
        """One due timer: removed, then its rule (which may find it no longer applies). The
        compensation's retry looks at its own timer, so it is removed after."""
        if deadline is not Deadline.COMPENSATION_RETRY:
            self._clear_timers(deadline)
        step = self._fire(deadline, now, dispute)
        if deadline is Deadline.COMPENSATION_RETRY:
            self._clear_timers(deadline)
        if not step.did_something:
            return self._stay(note=f"timer {deadline.value}: nothing to do while {self.status.value}")
        return step

    def _fire(self, deadline: Deadline, now: datetime, dispute: Dispute | None) -> Step:
        match deadline:
            case Deadline.PAYMENT_WINDOW:
                return self.payment_window_closed()
            case Deadline.PAYMENT_RETRY:
                return self.retry_payment("timer payment_retry", now)
            case Deadline.RELEASE_REMINDER:
                return self.remind_release(now)
            case Deadline.AUTO_RELEASE:
                return self.protection_ended(now)
            case Deadline.SELLER_RESPONSE:
                return self.seller_silent(dispute)
            case Deadline.COMPENSATION_RETRY:
                return self.retry_refund("timer compensation_retry")

    def _sync_next_due(self) -> None:
        upcoming = timers.next_due(self.timers)
        self.next_due_at = None if upcoming is None else upcoming[1]

    # ------------------------------------------------------------------ moving

    @property
    def final(self) -> bool:
        return self.status in FINAL and self.refunding is None

    def _check_buyer(self, buyer_id: str, doing: str) -> None:
        if buyer_id != self.buyer_id:
            raise OrderRuleBroken("not_the_buyer", f"only the buyer of order {self.order_id} can {doing} it")

    def _move(self, to_status: OrderStatus, note: str, *messages: Message) -> Step:
        source = None if self.status is S.CREATED else self.status
        if not allowed(source, to_status):
            raise IllegalTransition(
                "illegal_transition",
                f"order {self.order_id}: {self.status.value} -> {to_status.value} is not in the lifecycle ({note})",
            )
        step = Step(self.status, to_status, list(messages), note=note)
        self.status = to_status
        if to_status in FINAL:  # nothing is left to wait for
            self._clear_timers(*Deadline)
        return step

    def noted(self, note: str) -> Step:
        """Nothing moves; the audit trail says why (a refusal an operator must look at)."""
        return self._stay(note=note)

    def _stay(self, *messages: Message, announce: str | None = None, note: str = "") -> Step:
        return Step(self.status, self.status, list(messages), announce, note)


def unknown_order(order_id: str) -> OrderRuleBroken:
    return OrderRuleBroken("order_not_found", f"order {order_id} does not exist")
