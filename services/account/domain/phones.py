"""One account per phone number: the number is claimed at registration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class PhoneClaim:
    phone: str  # E.164
    account_id: str
