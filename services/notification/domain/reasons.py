"""What a free-text reason on an event says, for a notice to explain it: the reason code the advice
book explains (data/advice.toml), and for a cancelled order whether the saga gave up after its
retries or the payment window closed.

The saga writes these reasons for people and the audit trail (services/saga/domain/orders.py):
every one starts with its code: ``insufficient_funds: <detail>`` (a decline),
``issuer_unavailable: <detail> (gave up after 3 attempts)`` (S2: a transient failure, retried
until the retries were spent) and ``payment_window_expired: not paid within the payment window
(last failure: insufficient_funds: <detail>)`` (S4). Anything else has no code: the notice then
says that the order was cancelled, without a reason it cannot put in plain words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PLAIN = re.compile(r"^([a-z_]+)(?::|$)")
_GAVE_UP = re.compile(r"\(gave up after ([0-9]+) attempts?\)$")
_LAST_FAILURE = re.compile(r"\(last failure: ([a-z_]+)[:)]")
UNPAID = "payment_window_expired"


@dataclass(frozen=True, slots=True)
class Reason:
    code: str | None = None
    """A payment_failure code of the advice book (an unknown one gets its default words)."""
    gave_up_after: int | None = None
    """The saga tried this many times (transient failures) before it cancelled."""
    unpaid: bool = False
    """The payment window closed before the order was paid."""


def read_reason(reason: str | None) -> Reason:
    if not reason:
        return Reason()
    plain = _PLAIN.match(reason)
    if plain is None:
        return Reason()
    if plain.group(1) == UNPAID:
        last = _LAST_FAILURE.search(reason)
        return Reason(code=None if last is None else last.group(1), unpaid=True)
    gave_up = _GAVE_UP.search(reason)
    return Reason(code=plain.group(1), gave_up_after=None if gave_up is None else int(gave_up.group(1)))
