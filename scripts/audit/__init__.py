"""G1, the books audit: one check of the whole system's books through the services' read APIs.

``books`` holds the snapshots, ``checks`` the pure checks (:func:`audit`), ``reader`` fetches the
snapshots from a running stack, ``report`` prints them. ``tradeguard audit`` and ``make audit``
run it; every scenario ends with it (scripts/scenarios/runner.py).
"""

from scripts.audit.books import (
    Books,
    HoldSnapshot,
    LedgerSnapshot,
    OrderSnapshot,
    PaymentSnapshot,
    SnapshotError,
)
from scripts.audit.checks import AuditBreak, AuditCode, AuditLimits, AuditReport, Check, audit
from scripts.audit.reader import BooksReader, Endpoints, SourceUnreadable, audit_endpoints, audit_stack, read_books

__all__ = [
    "AuditBreak",
    "AuditCode",
    "AuditLimits",
    "AuditReport",
    "Books",
    "BooksReader",
    "Check",
    "Endpoints",
    "HoldSnapshot",
    "LedgerSnapshot",
    "OrderSnapshot",
    "PaymentSnapshot",
    "SnapshotError",
    "SourceUnreadable",
    "audit",
    "audit_endpoints",
    "audit_stack",
    "read_books",
]
