"""What a free-text reason on an event says, for a notice to explain it: the reason code the advice
book explains (data/advice.toml), and for a cancelled order whether the saga gave up after its
retries or the payment window closed.

The saga writes these reasons for people and the audit trail (services/saga/domain/orders.py):
``insufficient_funds: <detail>`` (a decline), ``gave up after 3 attempts: issuer_unavailable:
<detail>`` (S2: a transient failure, retried until the retries were spent) and ``not paid within
the payment window (last failure: insufficient_funds: <detail>)`` (S4). Anything else has no code:
the notice then says that the order was cancelled, without a reason it cannot put in plain words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CODE = r"([a-z_]+)(?::|$)"
_GAVE_UP = re.compile(r"^gave up after ([0-9]+) attempts?: " + _CODE)
_UNPAID = re.compile(r"^not paid within the payment window(?: \(last failure: ([a-z_]+)[:)])?")
_PLAIN = re.compile(r"^" + _CODE)


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
    if match := _GAVE_UP.match(reason):
        return Reason(code=match.group(2), gave_up_after=int(match.group(1)))
    if match := _UNPAID.match(reason):
        return Reason(code=match.group(1), unpaid=True)
    if match := _PLAIN.match(reason):
        return Reason(code=match.group(1))
    return Reason()
