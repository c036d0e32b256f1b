"""E1 ledger accounts: kinds, the flags table, ids and the four balances (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from contracts.money import minor_unit_exponent

PLATFORM = "platform"
"""The owner of the platform's own accounts (fee revenue, FX position)."""

Side = Literal["debit", "credit"]


class AccountKind(StrEnum):
    """What a ledger account is for; see the module docstring's tables."""

    BUYER_FUNDS_IN = "buyer_funds_in"
    ESCROW_HOLDING = "escrow_holding"
    SELLER_PAYABLE = "seller_payable"
    FEE_REVENUE = "fee_revenue"
    FX_POSITION = "fx_position"
    REFUNDS_OUT = "refunds_out"


@dataclass(frozen=True, slots=True)
class AccountFlags:
    """Which way an account's balance may not go (TigerBeetle's account flags)."""

    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False

    def __str__(self) -> str:
        names = [
            name for name in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits") if getattr(self, name)
        ]
        return ", ".join(names) or "no flags"


_CREDIT_NORMAL = AccountFlags(debits_must_not_exceed_credits=True)

ACCOUNT_FLAGS: Mapping[AccountKind, AccountFlags] = MappingProxyType(
    {
        AccountKind.BUYER_FUNDS_IN: AccountFlags(credits_must_not_exceed_debits=True),
        AccountKind.ESCROW_HOLDING: _CREDIT_NORMAL,
        AccountKind.SELLER_PAYABLE: _CREDIT_NORMAL,
        AccountKind.FEE_REVENUE: _CREDIT_NORMAL,
        AccountKind.FX_POSITION: AccountFlags(),
        AccountKind.REFUNDS_OUT: _CREDIT_NORMAL,
    }
)
"""The flags of each account kind: the one place that says which balance may go which way."""


@dataclass(frozen=True, slots=True, order=True)
class AccountId:
    """One ledger account: ``kind:owner:currency``, for example ``escrow_holding:order-1:USD``."""

    kind: AccountKind
    owner: str
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AccountKind(self.kind))
        # ':' separates the parts of the code, so an owner with one could not be parsed back.
        if not self.owner or ":" in self.owner:
            raise ValueError(f"an account owner is a non-empty id without ':', not {self.owner!r}")
        minor_unit_exponent(self.currency)  # ValueError for a code that is not money

    @property
    def code(self) -> str:
        return f"{self.kind}:{self.owner}:{self.currency}"

    def __str__(self) -> str:
        return self.code

    @classmethod
    def parse(cls, code: str) -> AccountId:
        """The account a code names; ValueError for anything that is not ``kind:owner:currency``."""
        parts = code.split(":")
        if len(parts) != 3:
            raise ValueError(f"an account code is kind:owner:currency, not {code!r}")
        kind, owner, currency = parts
        try:
            return cls(AccountKind(kind), owner, currency)
        except ValueError as error:
            raise ValueError(f"account code {code!r}: {error}") from None

    @classmethod
    def buyer_funds_in(cls, buyer_id: str, currency: str) -> AccountId:
        return cls(AccountKind.BUYER_FUNDS_IN, buyer_id, currency)

    @classmethod
    def escrow_holding(cls, order_id: str, currency: str) -> AccountId:
        return cls(AccountKind.ESCROW_HOLDING, order_id, currency)

    @classmethod
    def seller_payable(cls, seller_id: str, currency: str) -> AccountId:
        return cls(AccountKind.SELLER_PAYABLE, seller_id, currency)

    @classmethod
    def fee_revenue(cls, currency: str) -> AccountId:
        return cls(AccountKind.FEE_REVENUE, PLATFORM, currency)

    @classmethod
    def fx_position(cls, currency: str) -> AccountId:
        return cls(AccountKind.FX_POSITION, PLATFORM, currency)

    @classmethod
    def refunds_out(cls, buyer_id: str, currency: str) -> AccountId:
        return cls(AccountKind.REFUNDS_OUT, buyer_id, currency)


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    """An account and the flags its kind gives it."""

    id: AccountId
    flags: AccountFlags


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's four totals in minor units of its currency, as TigerBeetle keeps them."""

    account: AccountId
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def debits(self) -> int:
        """Pending plus posted debits: what ``debits_must_not_exceed_credits`` counts."""
        return self.debits_pending + self.debits_posted

    @property
    def credits(self) -> int:
        """Pending plus posted credits: what ``credits_must_not_exceed_debits`` counts."""
        return self.credits_pending + self.credits_posted

    @property
    def credit_balance(self) -> int:
        """Posted credits minus posted debits (what a credit-normal account holds)."""
        return self.credits_posted - self.debits_posted

    @property
    def is_zero(self) -> bool:
        return not (self.debits_pending or self.debits_posted or self.credits_pending or self.credits_posted)

    def moved(self, side: Side, pending: int, posted: int) -> AccountBalance:
        """This balance with ``pending`` and ``posted`` added to its debit or credit side."""
        if side == "debit":
            return AccountBalance(
                self.account,
                self.debits_pending + pending,
                self.debits_posted + posted,
                self.credits_pending,
                self.credits_posted,
            )
        return AccountBalance(
            self.account,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending + pending,
            self.credits_posted + posted,
        )
