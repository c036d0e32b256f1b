"""The product's scenarios; importing this package registers every one in CATALOGUE.

Modules are imported in the order the catalogue lists them: an order first, then accounts.
"""

from scripts.scenarios.catalogue import orders  # noqa: I001 - the catalogue's order, not the alphabet's
from scripts.scenarios.catalogue import pricing  # early: before other scenarios move the clock months on
from scripts.scenarios.catalogue import accounts, bindings, funding, notifications, payments, refunds, security
from scripts.scenarios.catalogue import disputes, saga  # last: they move the clock by weeks
from scripts.scenarios.registry import CATALOGUE

__all__ = [
    "CATALOGUE",
    "accounts",
    "bindings",
    "disputes",
    "funding",
    "notifications",
    "orders",
    "payments",
    "pricing",
    "refunds",
    "saga",
    "security",
]
