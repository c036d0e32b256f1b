"""X9 (issue 18): the buyer's consent. A command that moves a buyer's money or gives up their
protection is taken only when the marketplace says it acts for that very buyer (the envelope's
actor, vouched for by the marketplace's signature); a seller's session can never send one."""

from __future__ import annotations

import pytest

from contracts import Actor, ActorRole, AnswerDispute, Checkout, ConfirmReceipt, Message, Money, RequestRefund
from contracts.catalogue import CONSENT, PRODUCERS, party_actor
from contracts.envelope import envelope_for
from shared.consent import check_consent
from shared.errors import CommandRefused

BUYER, SELLER = "buyer-1", "seller-1"
CONFIRM = ConfirmReceipt(order_id="o-1", buyer_id=BUYER)
CHECKOUT = Checkout(
    marketplace_id="m", order_id="o-1", buyer_id=BUYER, seller_id=SELLER, amount=Money(amount_minor=1, currency="USD")
)
ANSWER = AnswerDispute(order_id="o-1", dispute_id="d-1", seller_id=SELLER, statement="shipped on time")


def sent(message: Message, actor: Actor | None) -> str:
    """``taken``, or the refusal's code."""
    envelope = envelope_for(message, correlation_id="o-1", idempotency_key="k", source="marketplace", actor=actor)
    try:
        check_consent(envelope)
    except CommandRefused as refused:
        return refused.code
    return "taken"


def refusal(message: Message, actor: Actor | None) -> CommandRefused:
    envelope = envelope_for(message, correlation_id="o-1", idempotency_key="k", source="marketplace", actor=actor)
    with pytest.raises(CommandRefused) as refused:
        check_consent(envelope)
    return refused.value


@pytest.mark.parametrize("message", [CONFIRM, CHECKOUT])
def test_x9_the_buyers_own_session_may_send_what_moves_their_money(message: Message) -> None:
    assert sent(message, Actor(account_id=BUYER, role=ActorRole.BUYER, session_id="s-1")) == "taken"


@pytest.mark.parametrize("message", [CONFIRM, CHECKOUT])
def test_x9_a_sellers_session_can_never_send_the_buyers_commands(message: Message) -> None:
    refused = refusal(message, Actor(account_id=SELLER, role=ActorRole.SELLER))
    assert refused.code == "consent_mismatch"
    assert f"needs the consent of buyer {BUYER!r}" in refused.reason
    assert f"acts for seller {SELLER!r}" in refused.reason


def test_x9_another_buyers_session_cannot_confirm_this_buyers_order() -> None:
    assert refusal(CONFIRM, Actor(account_id="buyer-2", role=ActorRole.BUYER)).code == "consent_mismatch"


def test_x9_no_actor_is_no_consent() -> None:
    refused = refusal(CONFIRM, None)
    assert refused.code == "consent_missing"
    assert "the envelope names no actor" in refused.reason


def test_x9_the_seller_answers_a_dispute_for_themselves_only() -> None:
    assert sent(ANSWER, Actor(account_id=SELLER, role=ActorRole.SELLER)) == "taken"
    assert refusal(ANSWER, Actor(account_id=BUYER, role=ActorRole.BUYER)).code == "consent_mismatch"


def test_x9_a_refund_keeps_its_own_rules_and_needs_no_buyers_consent() -> None:
    refund = RequestRefund(order_id="o-1", refund_id="r-1", amount=Money(amount_minor=1, currency="USD"))
    assert sent(refund, None) == "taken"
    assert party_actor(refund) is None


def test_x9_every_command_that_needs_consent_is_the_marketplaces_to_send() -> None:
    assert {PRODUCERS[name] for name in CONSENT} == {("marketplace",)}
    assert party_actor(CONFIRM) == Actor(account_id=BUYER, role=ActorRole.BUYER)
