"""The order saga's rules: which message moves an order to which status, and what it sends next.

Every transition of an order, in one table (S1, P6):

    ===================  ===============  ===============  =====================================
    message              from             to               sends
    ===================  ===============  ===============  =====================================
    Checkout             (new)            payment_pending  CapturePayment
    PaymentCaptured      payment_pending  paid             HoldFunds
    PaymentFailed        payment_pending  cancelled        (nothing: the reason is kept)
    FundsHeld            paid             in_escrow
    ConfirmReceipt       in_escrow        releasing        ReleaseFunds
    FundsReleased        releasing        completed        CreditWallet (the seller, what escrow
                                                           still held: price - returned)
    RequestRefund        in_escrow        in_escrow        ReturnFunds (the refund is returning)
    FundsReturned        in_escrow        in_escrow        RefundPayment (the refund is refunding)
    PaymentRefunded      in_escrow        in_escrow        (the refund is refunded; the order's
                                                           refunded total grows and is announced)
    PaymentRefunded      in_escrow        refunded         (the last unit of the price came back)
    RefundFailed         in_escrow        in_escrow        (the refund is failed: an operator's)
    ===================  ===============  ===============  =====================================

The order is complete once escrow has released the funds to the seller's payable
account; paying them into the seller's wallet follows from the outbox and is
idempotent in the account service, so the saga does not wait for it.

Refunds (P6) happen while the order is in escrow, one at a time, each with its own
:class:`Refund` record (returning -> refunding -> refunded, or failed): escrow gives that
part of the hold back first, then the payment service pays it back to the buyer's sources.
``returned`` is what left escrow, ``refunded`` what the buyer has back; the seller is
released only what escrow still holds (price - returned). A refund is refused before
escrow (nothing paid yet, or the hold is still being placed) and after release (the seller
has the money: disputes, later). Receipt cannot be confirmed while a refund is under way.

A message that does not fit the order's status is a duplicate or late delivery and
changes nothing; an event whose money or parties do not match is ignored (handlers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from contracts import (
    CapturePayment,
    Checkout,
    Command,
    CreditWallet,
    HoldFunds,
    Money,
    OrderStatus,
    PriceBreakdown,
    RefundPayment,
    ReleaseFunds,
    ReturnFunds,
    SecurityMethod,
)
from shared.errors import CommandRefused


class OrderRuleBroken(CommandRefused):
    """A command the order's rules refuse."""


@dataclass(slots=True)
class Step:
    """What one message did to an order: its status change (if any) and the commands to send.

    ``announce`` names news worth an OrderStatusChanged although the status stays (a refund
    done or failed); it also keys that announcement, so each is sent once.
    """

    from_status: OrderStatus | None
    to_status: OrderStatus | None
    commands: list[Command] = field(default_factory=list)
    announce: str | None = None

    @property
    def changed(self) -> bool:
        return self.to_status is not None and self.to_status != self.from_status


NOTHING = Step(None, None)


class RefundStatus(StrEnum):
    """Where one refund is (S1's refund branch): requested and returning, refunding, done."""

    RETURNING = "returning"  # ReturnFunds sent: escrow is taking it out of the hold
    REFUNDING = "refunding"  # out of escrow; RefundPayment sent: the payment pays it back to the buyer
    REFUNDED = "refunded"  # the buyer has it back
    FAILED = "failed"  # out of escrow, but the payment could not pay it back: an operator's case


@dataclass(slots=True)
class Refund:
    """One refund of an order, by the marketplace's refund id (a repeat with it is the same refund)."""

    order_id: str
    refund_id: str
    amount: Money
    reason: str = ""
    status: RefundStatus = RefundStatus.RETURNING
    failure: str | None = None

    def check_same_request(self, amount: Money) -> None:
        """P5: the same refund id with another amount is refused (the same amount is a repeat)."""
        if amount != self.amount:
            raise OrderRuleBroken(
                "refund_conflict",
                f"refund {self.refund_id} of order {self.order_id} was already asked for {self.amount}, not {amount}",
            )


# Why an order that is not in escrow cannot be refunded, by status (a refunded order can:
# the amount check then says nothing is left).
_NOT_REFUNDABLE = {
    OrderStatus.CREATED: "the buyer has not paid yet",
    OrderStatus.PAYMENT_PENDING: "the buyer has not paid yet",
    OrderStatus.PAID: "the escrow hold is still being placed; refund once the order is in escrow",
    OrderStatus.CANCELLED: "nothing was paid",
    OrderStatus.RELEASING: "the funds are being released to the seller; a dispute can take it further",
    OrderStatus.COMPLETED: "the seller has been paid; a dispute can take it further",
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
    status: OrderStatus = OrderStatus.CREATED
    reason: str | None = None
    returned_minor: int = 0  # of the price, out of escrow towards the buyer (P6)
    refunded_minor: int = 0  # of the price, back with the buyer
    refunding: str | None = None  # the refund id under way, if any: one at a time

    @classmethod
    def place(cls, checkout: Checkout) -> tuple[Order, Step]:
        if checkout.buyer_id == checkout.seller_id:
            raise OrderRuleBroken("invalid_order", f"order {checkout.order_id}: buyer and seller are the same account")
        if checkout.amount.amount_minor <= 0:
            raise OrderRuleBroken("invalid_order", f"order {checkout.order_id}: the amount must be positive")
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
        )
        capture = CapturePayment(
            order_id=order.order_id,
            buyer_id=order.buyer_id,
            amount=order.amount,
            marketplace_id=order.marketplace_id,
            source_id=order.source_id,
            security_method=order.security_method,
            security_proof=order.security_proof,
            use_balance_first=order.use_balance_first,
            quote_id=order.quote_id,
        )
        return order, order._move(OrderStatus.PAYMENT_PENDING, capture)

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

    # ------------------------------------------------------------------ checks

    def check_same_checkout(self, checkout: Checkout) -> None:
        """A repeated checkout must describe the same order."""
        asked = (checkout.buyer_id, checkout.seller_id, checkout.amount, checkout.marketplace_id, checkout.source_id)
        if asked != (self.buyer_id, self.seller_id, self.amount, self.marketplace_id, self.source_id):
            raise OrderRuleBroken(
                "order_conflict",
                f"order {self.order_id} already exists with another buyer, seller, amount, marketplace or source",
            )

    def answers(
        self, *, amount: Money, buyer_id: str | None = None, seller_id: str | None = None, held: bool = False
    ) -> bool:
        """Whether an event is about this order's money and parties (an id alone is not trusted):
        the price, or with ``held`` what escrow still holds of it (a release after refunds)."""
        expected = self.still_held if held else self.amount
        return amount == expected and buyer_id in (None, self.buyer_id) and seller_id in (None, self.seller_id)

    def answers_refund(self, refund: Refund, *, amount: Money, buyer_id: str) -> bool:
        """Whether a refund's event is about that refund of this order: its amount, this buyer."""
        return refund.order_id == self.order_id and amount == refund.amount and buyer_id == self.buyer_id

    # ------------------------------------------------------------------ the happy path

    def payment_captured(self, breakdown: PriceBreakdown | None = None) -> Step:
        """Hold the price in escrow, with the payment's breakdown so escrow books what the buyer
        paid in their currency and settles the seller in theirs (E4)."""
        if self.status is not OrderStatus.PAYMENT_PENDING:
            return NOTHING
        hold = HoldFunds(
            order_id=self.order_id,
            buyer_id=self.buyer_id,
            seller_id=self.seller_id,
            amount=self.amount,
            breakdown=breakdown,
        )
        return self._move(OrderStatus.PAID, hold)

    def payment_failed(self, reason: str) -> Step:
        if self.status is not OrderStatus.PAYMENT_PENDING:
            return NOTHING
        self.reason = reason
        return self._move(OrderStatus.CANCELLED)

    def funds_held(self) -> Step:
        if self.status is not OrderStatus.PAID:
            return NOTHING
        return self._move(OrderStatus.IN_ESCROW)

    def confirm_receipt(self, buyer_id: str) -> Step:
        if buyer_id != self.buyer_id:
            raise OrderRuleBroken("not_the_buyer", f"only the buyer of order {self.order_id} can confirm receipt")
        if self.status in (OrderStatus.RELEASING, OrderStatus.COMPLETED):
            return NOTHING
        if self.status is not OrderStatus.IN_ESCROW:
            raise OrderRuleBroken(
                "not_in_escrow",
                f"order {self.order_id} is {self.status.value}; receipt can be confirmed once in escrow",
            )
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
        return self._move(OrderStatus.RELEASING, ReleaseFunds(order_id=self.order_id))

    def funds_released(self) -> Step:
        if self.status is not OrderStatus.RELEASING:
            return NOTHING
        pay_seller = CreditWallet(account_id=self.seller_id, order_id=self.order_id, amount=self.still_held)
        return self._move(OrderStatus.COMPLETED, pay_seller)

    # ------------------------------------------------------------------ refunds (P6)

    def request_refund(self, refund_id: str, amount: Money, reason: str = "") -> tuple[Refund, Step]:
        """A new refund (a repeat of a known refund id is the handler's: it changes nothing)."""
        self._check_refundable(amount)
        self.refunding = refund_id
        refund = Refund(self.order_id, refund_id, amount, reason)
        give_back = ReturnFunds(order_id=self.order_id, refund_id=refund_id, amount=amount)
        return refund, self._stay(give_back)

    def funds_returned(self, refund: Refund) -> Step:
        """Escrow gave the refund's part back: the payment pays it to the buyer's sources."""
        if refund.status is not RefundStatus.RETURNING or self.refunding != refund.refund_id:
            return NOTHING
        refund.status = RefundStatus.REFUNDING
        self.returned_minor += refund.amount.amount_minor
        pay_back = RefundPayment(
            order_id=self.order_id, refund_id=refund.refund_id, amount=refund.amount, reason=refund.reason
        )
        return self._stay(pay_back)

    def payment_refunded(self, refund: Refund) -> Step:
        """The buyer has the refund back; the last unit of the price makes the order refunded."""
        if refund.status is not RefundStatus.REFUNDING:
            return NOTHING
        refund.status = RefundStatus.REFUNDED
        self.refunding = None
        self.refunded_minor += refund.amount.amount_minor
        if self.refunded_minor == self.amount.amount_minor:
            return self._move(OrderStatus.REFUNDED)
        return self._stay(announce=f"refunded:{refund.refund_id}")

    def refund_failed(self, refund: Refund, reason: str) -> Step:
        """The payment could not pay the refund back. Kept simple on purpose: the money is out
        of escrow but not with the buyer, so it is neither held nor refundable again; the
        refund stays visible as failed with the reason, on the order too, and an operator takes
        it from there. Other refunds of what escrow still holds may go ahead."""
        if refund.status is not RefundStatus.REFUNDING:
            return NOTHING
        refund.status = RefundStatus.FAILED
        refund.failure = reason
        self.refunding = None
        self.reason = f"refund {refund.refund_id} of {refund.amount} failed: {reason}"
        return self._stay(announce=f"refund_failed:{refund.refund_id}")

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

    # ------------------------------------------------------------------ moving

    def _move(self, to_status: OrderStatus, *commands: Command) -> Step:
        step = Step(self.status, to_status, list(commands))
        self.status = to_status
        return step

    def _stay(self, *commands: Command, announce: str | None = None) -> Step:
        return Step(self.status, self.status, list(commands), announce)


def unknown_order(order_id: str) -> OrderRuleBroken:
    return OrderRuleBroken("order_not_found", f"order {order_id} does not exist")
