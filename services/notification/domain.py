"""Which events become notifications, to whom, and what they say."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import (
    FundsHeld,
    FundsReleased,
    Message,
    OrderStatus,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentFailed,
    WalletCredited,
    WalletFunded,
)


class NoticeKind(StrEnum):
    WALLET_FUNDED = "wallet_funded"
    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    FUNDS_HELD = "funds_held"
    FUNDS_RELEASED = "funds_released"
    PAYOUT_CREDITED = "payout_credited"
    ORDER_COMPLETED = "order_completed"
    ORDER_CANCELLED = "order_cancelled"


TEMPLATES: dict[NoticeKind, str] = {
    NoticeKind.WALLET_FUNDED: "Your wallet was topped up with {amount}. Balance: {balance}.",
    NoticeKind.PAYMENT_SUCCEEDED: "Payment of {amount} for order {order_id} succeeded.",
    NoticeKind.PAYMENT_FAILED: "Payment for order {order_id} failed: {detail}",
    NoticeKind.FUNDS_HELD: "{amount} for order {order_id} is held safely in escrow; confirm receipt when it arrives.",
    NoticeKind.FUNDS_RELEASED: "The buyer confirmed order {order_id}: {amount} was released to you.",
    NoticeKind.PAYOUT_CREDITED: "{amount} for order {order_id} was paid into your wallet. Balance: {balance}.",
    NoticeKind.ORDER_COMPLETED: "Order {order_id} is complete. Thank you!",
    NoticeKind.ORDER_CANCELLED: "Order {order_id} was cancelled: {detail}",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification for one person; (recipient, kind, reference) makes it unique per step."""

    recipient_id: str
    kind: NoticeKind
    reference: str
    body: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.recipient_id, self.kind.value, self.reference)


def _notice(recipient: str, kind: NoticeKind, reference: str, **fields: object) -> Notice:
    text = {k: str(v) for k, v in fields.items()}
    return Notice(recipient, kind, reference, TEMPLATES[kind].format(**text))


def notice_for(event: Message, idempotency_key: str) -> Notice | None:  # noqa: PLR0911 - one return per event
    """The notification an event deserves, or None when nobody needs to hear of it."""
    match event:
        case WalletFunded():
            return _notice(
                event.account_id, NoticeKind.WALLET_FUNDED, idempotency_key, amount=event.amount, balance=event.balance
            )
        case PaymentCaptured():
            return _notice(event.buyer_id, NoticeKind.PAYMENT_SUCCEEDED, event.order_id, **_order(event))
        case PaymentFailed():
            return _notice(
                event.buyer_id, NoticeKind.PAYMENT_FAILED, event.order_id, detail=event.detail, **_order(event)
            )
        case FundsHeld():
            return _notice(event.buyer_id, NoticeKind.FUNDS_HELD, event.order_id, **_order(event))
        case FundsReleased():
            return _notice(event.seller_id, NoticeKind.FUNDS_RELEASED, event.order_id, **_order(event))
        case WalletCredited():
            return _notice(
                event.account_id, NoticeKind.PAYOUT_CREDITED, event.order_id, balance=event.balance, **_order(event)
            )
        case OrderStatusChanged(status=OrderStatus.COMPLETED):
            return _notice(event.buyer_id, NoticeKind.ORDER_COMPLETED, event.order_id, **_order(event))
        case OrderStatusChanged(status=OrderStatus.CANCELLED):
            return _notice(
                event.buyer_id, NoticeKind.ORDER_CANCELLED, event.order_id, detail=event.reason or "", **_order(event)
            )
    return None


def _order(
    event: PaymentCaptured | PaymentFailed | FundsHeld | FundsReleased | WalletCredited | OrderStatusChanged,
) -> dict[str, object]:
    return {"order_id": event.order_id, "amount": event.amount}
