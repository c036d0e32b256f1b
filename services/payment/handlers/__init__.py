"""Payment service handlers: thin glue between messages and the payment rules.

payments.py: a capture, the account's authorisation, the network's answers (P1, P4);
limits.py: the read copy of each buyer's limits and the spending counted against them (P2);
pricing.py: quotes, each payment's price per funding type, promotion budgets (P3);
refunds.py: refunds back to the sources they were paid from, and the network's answers about them (P6);
reversals.py: a charge the network applied that no payment captured (a late answer) is given back (P4).
All register on the one ``handlers`` table.
"""

from shared.consumer import MessageHandlers

handlers = MessageHandlers()

# Imported for their registrations on `handlers`.
from services.payment.handlers import limits, payments, pricing, refunds, reversals  # noqa: E402

__all__ = ["handlers", "limits", "payments", "pricing", "refunds", "reversals"]
