"""Steps several scenarios take: onboard a buyer, top up, check out, follow an order, read a balance."""

from __future__ import annotations

from contracts import (
    AddCard,
    Balance,
    Checkout,
    CommandRejected,
    ConfirmReceipt,
    FundingSourceAdded,
    FundWallet,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentRefunded,
    Purpose,
    RawEnvelope,
    RequestRefund,
    ReturnFunds,
    SecurityMethod,
    WalletFunded,
)
from scripts.marketplace import Seen
from scripts.onboarding import MARKETPLACE_ID, Person
from scripts.scenarios.outcome import ScenarioFailed, expect
from scripts.scenarios.world import World

FINAL_AFTER_CHECKOUT = (OrderStatus.IN_ESCROW, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED)
"""Where a checkout's payment ends: held in escrow, cancelled with a reason, or declined with a
reason and waiting for the buyer to pay again another way (S2)."""


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


async def onboard_buyer(world: World, *, country: str = "US") -> Person:
    """A new buyer, registered with the texted code and bound to the marketplace: ready to pay."""
    buyer = world.person("buyer", country=country)
    world.say(f"{buyer.account_id} registers, proves the phone with the texted code, binds the wallet")
    await world.onboarding.buyer(buyer)
    return buyer


async def top_up(world: World, account_id: str, amount: Money) -> Balance:
    """Top the wallet up with the sandbox's test money; the balance after."""
    sent = await world.send(FundWallet(account_id=account_id, amount=amount), about=account_id)
    return (await world.reply(sent, WalletFunded)).balance


async def wallet_balance(world: World, account_id: str, currency: str) -> Balance:
    """The wallet's balance. A client has no balance query, so this tops up one minor unit and
    subtracts it from the balance the top-up reports."""
    one = Money(amount_minor=1, currency=currency)
    return await top_up(world, account_id, one) - one


async def checkout(
    world: World,
    buyer: Person,
    seller_id: str,
    amount: Money,
    *,
    item: str = "",
    source_id: str | None = None,
    with_pin: bool = False,
    use_balance_first: bool = False,
    order_id: str | None = None,
    quote_id: str | None = None,
) -> str:
    """The marketplace checks out a new order (``with_pin``: the buyer confirms it with the
    payment PIN, sealed for this order, as a payment above the region's threshold needs;
    ``quote_id``: at the price quoted for ``order_id``); its id."""
    order_id = order_id or world.fresh("order")
    paying = f"card {source_id}" if source_id else "the wallet"
    world.say(f"the marketplace checks out {order_id}: {buyer.account_id} pays {amount} to {seller_id} from {paying}")
    command = Checkout(
        marketplace_id=MARKETPLACE_ID,
        order_id=order_id,
        buyer_id=buyer.account_id,
        seller_id=seller_id,
        amount=amount,
        item=item,
        source_id=source_id,
        security_method=SecurityMethod.PIN if with_pin else None,
        security_proof=world.key.seal(buyer.pin, purpose=Purpose.payment(order_id)) if with_pin else None,
        use_balance_first=use_balance_first,
        quote_id=quote_id,
    )
    await world.send(command, about=order_id)
    return order_id


async def order_reaches(world: World, order_id: str, *statuses: OrderStatus) -> OrderStatusChanged:
    """The order's first move to one of ``statuses``."""

    def moved(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, OrderStatusChanged) and m.order_id == order_id and m.status in statuses

    names = " or ".join(s.value for s in statuses)
    seen = await world.wait_for(moved, f"order {order_id} to become {names}", timeout=world.timeout * 2, about=order_id)
    assert isinstance(seen.message, OrderStatusChanged)
    return seen.message


async def expect_cancelled(world: World, order_id: str, reason: str) -> OrderStatusChanged:
    """The order's payment fails and the order is cancelled with ``reason`` (its reason's code)."""
    return await _payment_ends(world, order_id, reason, OrderStatus.CANCELLED)


async def expect_declined(world: World, order_id: str, reason: str) -> OrderStatusChanged:
    """The order's payment is declined with ``reason``; the order waits for the buyer to pay
    again another way while its payment window is open (S2)."""
    return await _payment_ends(world, order_id, reason, OrderStatus.PAYMENT_FAILED)


async def _payment_ends(world: World, order_id: str, reason: str, status: OrderStatus) -> OrderStatusChanged:
    # A declined order may still be cancelled later (its window closes): wait for what is asked.
    ends = FINAL_AFTER_CHECKOUT if status is OrderStatus.PAYMENT_FAILED else (status, OrderStatus.IN_ESCROW)
    final = await order_reaches(world, order_id, *ends)
    expect(final.status is status, f"order {order_id} to be {status.value}", got=final.status.value)
    expect(reason_code(final.reason) == reason, f"the reason to be {reason}", got=final.reason)
    world.say(f"{order_id} is {status.value}: {final.reason}")
    return final


async def expect_in_escrow(world: World, order_id: str) -> OrderStatusChanged:
    """The order is paid and its funds held in escrow."""
    final = await order_reaches(world, order_id, *FINAL_AFTER_CHECKOUT)
    expect(
        final.status is OrderStatus.IN_ESCROW,
        f"order {order_id} to be paid and held in escrow",
        got=f"{final.status.value} ({final.reason})",
    )
    world.say(f"{order_id} is paid; escrow holds {final.amount}")
    return final


async def confirm_receipt(world: World, buyer: Person, order_id: str) -> None:
    world.say(f"{buyer.account_id} confirms the goods of {order_id} arrived")
    await world.send(ConfirmReceipt(order_id=order_id, buyer_id=buyer.account_id), about=order_id)


def order_statuses(world: World, order_id: str) -> list[OrderStatus]:
    """Every status the order moved to, in order."""
    return [m.status for m in world.seen(OrderStatusChanged, order_id=order_id)]


def reason_code(reason: str | None) -> str | None:
    """The machine-readable code an order's reason starts with (``insufficient_funds: ...``)."""
    return None if reason is None else reason.split(":", 1)[0].strip()


def sealed_password(world: World, person: Person, password: str | None = None) -> str:
    """``password`` (the person's own by default) sealed for their account, as the app gateway sends it."""
    return world.key.seal(password or person.password, purpose=Purpose.password(person.account_id))


async def add_card(world: World, buyer: Person, number: str, *, month: int = 12, year: int = 2030) -> tuple[str, str]:
    """The buyer's app hands the card number to the vault and adds the card by its token;
    the source id and the token (the number never reaches Kafka)."""
    card = await world.vault.tokenize_card(number, month, year, "123")
    world.say(f"the vault tokenises a {card.brand} ending {card.last4}; the app adds it by token")
    source_id = world.fresh("card")
    add = AddCard(
        account_id=buyer.account_id,
        source_id=source_id,
        token=card.token,
        brand=card.brand,
        last4=card.last4,
        expiry_month=card.expiry_month,
        expiry_year=card.expiry_year,
    )
    added = await world.reply(await world.send(add, about=buyer.account_id), FundingSourceAdded)
    expect(added.source.last4 == card.last4, f"the card ending {card.last4} added", got=added.source)
    return source_id, card.token


# ---------------------------------------------------------------------- refunds (P6)


async def request_refund(world: World, order_id: str, amount: Money, *, reason: str = "") -> tuple[str, RawEnvelope]:
    """The marketplace gives ``amount`` of the order's price back to the buyer under a new
    refund id (P6); the refund id and what was sent (the saga answers ReturnFunds or a rejection)."""
    refund_id = world.fresh("refund")
    world.say(f"the marketplace refunds {amount} of {order_id} ({refund_id})")
    command = RequestRefund(order_id=order_id, refund_id=refund_id, amount=amount, reason=reason)
    return refund_id, await world.send(command, about=order_id)


async def refund(world: World, order_id: str, amount: Money, *, reason: str = "") -> PaymentRefunded:
    """A refund taken to its end: the saga accepts it, escrow gives that part of the hold back,
    the payment pays it back to the buyer's sources, and the order counts it (its status event
    names the new refunded total). What the payment refunded."""
    refund_id, sent = await request_refund(world, order_id, amount, reason=reason)
    accepted = await world.answer(sent, ReturnFunds)
    if isinstance(accepted, CommandRejected):
        raise ScenarioFailed(f"expected refund {refund_id} to be accepted; refused: {accepted.code}: {accepted.reason}")
    paid_back = await world.wait_for(
        lambda s: isinstance(m := s.message, PaymentRefunded) and (m.order_id, m.refund_id) == (order_id, refund_id),
        f"PaymentRefunded of {refund_id}",
        timeout=world.timeout * 2,
        about=order_id,
    )
    refunded = paid_back.message
    assert isinstance(refunded, PaymentRefunded)
    legs = ", ".join(f"{leg.amount} to the {leg.funding_type.value}" for leg in refunded.legs)
    world.say(f"{refunded.refunded} back to {refunded.buyer_id} ({legs}); {refunded.remaining} may still be refunded")
    # The next refund may only be asked once the saga has counted this one (one at a time).
    await world.wait_for(
        lambda s: (
            isinstance(s.message, OrderStatusChanged) and s.envelope.causation_id == paid_back.envelope.message_id
        ),
        f"order {order_id} to count refund {refund_id}",
        caused_by=paid_back.envelope.message_id,
    )
    return refunded


async def refund_refused(world: World, order_id: str, amount: Money, code: str) -> CommandRejected:
    """The marketplace asks for a refund the saga refuses with ``code``; the rejection."""
    _, sent = await request_refund(world, order_id, amount)
    answer = await world.answer(sent, ReturnFunds)
    got = f"{answer.code}: {answer.reason}" if isinstance(answer, CommandRejected) else answer.message_type
    expect(isinstance(answer, CommandRejected) and answer.code == code, f"the refund refused with {code}", got=got)
    assert isinstance(answer, CommandRejected)
    world.say(f"refused: {answer.reason}")
    return answer


async def network_book(world: World, token: str) -> dict[str, dict[str, int]]:
    """The funding network's own book for one token, per currency (captures and refunds)."""
    return await world.vault.book(token)
