"""Money on the wire: integer minor units plus an ISO 4217 currency code, never a float."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# ISO 4217 minor-unit exponents that differ from the usual 2.
_EXPONENTS = {
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "HUF": 2,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}

CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code.", examples=["USD"]),
]


class Money(BaseModel):
    """An amount in the currency's minor unit (cents for USD, fen for CNY)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: int = Field(
        ge=0,
        description="Amount in minor units of the currency; never a float.",
        examples=[12999],
    )
    currency: CurrencyCode

    def __add__(self, other: Money) -> Money:
        self._require_same_currency(other)
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._require_same_currency(other)
        return Money(amount_minor=self.amount_minor - other.amount_minor, currency=self.currency)

    def _require_same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            msg = f"cannot combine {self.currency} with {other.currency}"
            raise ValueError(msg)

    @property
    def decimal(self) -> Decimal:
        """The amount in major units, exactly (12999 USD minor units -> Decimal('129.99'))."""
        return Decimal(self.amount_minor).scaleb(-_EXPONENTS.get(self.currency, 2))

    def __str__(self) -> str:
        return f"{self.decimal:,} {self.currency}"
