"""Payment service handlers: thin glue between messages and the payment rules.

payments.py: a capture, the account's authorisation, the network's answers (P1, P4);
limits.py: the read copy of each buyer's limits and the spending counted against them (P2).
All register on the one ``handlers`` table.
"""

from shared.consumer import MessageHandlers

handlers = MessageHandlers()

# Imported for their registrations on `handlers`.
from services.payment.handlers import limits, payments  # noqa: E402

__all__ = ["handlers", "limits", "payments"]
