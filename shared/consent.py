"""The buyer's consent (SPEC X9, A5): a command that moves a buyer's money or gives up their
protection is taken only when the marketplace says it acts for that very buyer.

The envelope's ``actor`` names the person the marketplace authenticated (``contracts.Actor``);
the marketplace's signature (``shared.signing``) vouches for it. ``contracts.catalogue.CONSENT``
says, per command, which role the actor must have and which payload field must name them: a
``ConfirmReceipt`` must come from its ``buyer_id``, an ``AnswerDispute`` from its ``seller_id``.
The services then check that party against the order, as they always did, so the chain runs from
the authenticated person to the order's own buyer. A command without its actor, or for someone
else, is refused with a ``CommandRejected`` (the command's fault), never applied.
"""

from __future__ import annotations

from typing import Any

from contracts import Envelope
from contracts.catalogue import CONSENT
from shared.errors import CommandRefused


def check_consent(envelope: Envelope[Any]) -> None:
    """Refuse ``envelope`` unless its actor may send its command (nothing to check for others)."""
    needed = CONSENT.get(envelope.type)
    if needed is None:
        return
    role, field = needed
    party = getattr(envelope.payload, field)
    actor = envelope.actor
    if actor is None:
        raise CommandRefused(
            "consent_missing",
            f"{envelope.type} needs the {role.value}'s consent: the envelope names no actor "
            f"(the marketplace must say it acts for {role.value} {party!r})",
        )
    if actor.role is not role or actor.account_id != party:
        raise CommandRefused(
            "consent_mismatch",
            f"{envelope.type} needs the consent of {role.value} {party!r}; "
            f"the marketplace acts for {actor.role.value} {actor.account_id!r}",
        )
