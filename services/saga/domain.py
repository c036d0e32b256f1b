"""The order saga's rules: which message moves an order to which status, and what it sends next.

Happy path (S1):

    Checkout          -> payment_pending, send CapturePayment
    PaymentCaptured   -> paid,            send HoldFunds
    FundsHeld         -> in_escrow
    ConfirmReceipt    -> releasing,       send ReleaseFunds
    FundsReleased     -> completed,       send CreditWallet (pay the seller's wallet)

The order is complete once escrow has released the funds to the seller's payable
account; paying them into the seller's wallet follows from the outbox and is
idempotent in the account service, so the saga does not wait for it.

Failure branch: PaymentFailed -> cancelled. A message that does not fit the
order's status is a duplicate or late delivery and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts import (
    CapturePayment,
    Checkout,
    Command,
    CreditWallet,
    HoldFunds,
    Money,
    OrderStatus,
    ReleaseFunds,
    SecurityMethod,
)
from shared.errors import CommandRefused


class OrderRuleBroken(CommandRefused):
    """A command the order's rules refuse."""


@dataclass(slots=True)
class Step:
    """What one message did to an order: its status change (if any) and the commands to send."""

    from_status: OrderStatus | None
    to_status: OrderStatus | None
    commands: list[Command] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.to_status is not None and self.to_status != self.from_status


NOTHING = Step(None, None)


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
    status: OrderStatus = OrderStatus.CREATED
    reason: str | None = None

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
        )
        return order, order._move(OrderStatus.PAYMENT_PENDING, capture)

    def check_same_checkout(self, checkout: Checkout) -> None:
        """A repeated checkout must describe the same order."""
        asked = (checkout.buyer_id, checkout.seller_id, checkout.amount, checkout.marketplace_id, checkout.source_id)
        if asked != (self.buyer_id, self.seller_id, self.amount, self.marketplace_id, self.source_id):
            raise OrderRuleBroken(
                "order_conflict",
                f"order {self.order_id} already exists with another buyer, seller, amount, marketplace or source",
            )

    def answers(self, *, amount: Money, buyer_id: str | None = None, seller_id: str | None = None) -> bool:
        """Whether an event is about this order's money and parties (an id alone is not trusted)."""
        return amount == self.amount and buyer_id in (None, self.buyer_id) and seller_id in (None, self.seller_id)

    def payment_captured(self) -> Step:
        if self.status is not OrderStatus.PAYMENT_PENDING:
            return NOTHING
        hold = HoldFunds(order_id=self.order_id, buyer_id=self.buyer_id, seller_id=self.seller_id, amount=self.amount)
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
        return self._move(OrderStatus.RELEASING, ReleaseFunds(order_id=self.order_id))

    def funds_released(self) -> Step:
        if self.status is not OrderStatus.RELEASING:
            return NOTHING
        pay_seller = CreditWallet(account_id=self.seller_id, order_id=self.order_id, amount=self.amount)
        return self._move(OrderStatus.COMPLETED, pay_seller)

    def _move(self, to_status: OrderStatus, *commands: Command) -> Step:
        step = Step(self.status, to_status, list(commands))
        self.status = to_status
        return step


def unknown_order(order_id: str) -> OrderRuleBroken:
    return OrderRuleBroken("order_not_found", f"order {order_id} does not exist")
