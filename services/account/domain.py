"""Wallet rules: balances never go negative and never mix currencies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import DeclineReason, Money
from shared.errors import CommandRefused


class WalletRuleBroken(CommandRefused):
    """A wallet movement that the rules forbid."""

    def __init__(self, reason: DeclineReason, detail: str) -> None:
        super().__init__(reason.value, detail)
        self.decline_reason = reason


class MovementKind(StrEnum):
    TOP_UP = "top_up"
    DEBIT = "debit"
    CREDIT = "credit"


@dataclass(slots=True)
class Wallet:
    """An account's balance in its one currency."""

    account_id: str
    balance: Money

    @classmethod
    def open(cls, account_id: str, currency: str) -> Wallet:
        return cls(account_id, Money(amount_minor=0, currency=currency))

    def top_up(self, amount: Money) -> None:
        self._check_currency(amount)
        self.balance = self.balance + amount

    def debit(self, amount: Money) -> None:
        self._check_currency(amount)
        if amount.amount_minor > self.balance.amount_minor:
            raise WalletRuleBroken(
                DeclineReason.INSUFFICIENT_FUNDS,
                f"wallet {self.account_id} holds {self.balance.amount_minor} {self.balance.currency} minor units, "
                f"{amount.amount_minor} needed; top up the wallet or pay with another source",
            )
        self.balance = self.balance - amount

    def credit(self, amount: Money) -> None:
        self._check_currency(amount)
        self.balance = self.balance + amount

    def _check_currency(self, amount: Money) -> None:
        if amount.currency != self.balance.currency:
            raise WalletRuleBroken(
                DeclineReason.CURRENCY_MISMATCH,
                f"wallet {self.account_id} is in {self.balance.currency}, the amount is in {amount.currency}",
            )


def missing_wallet(account_id: str) -> WalletRuleBroken:
    return WalletRuleBroken(DeclineReason.WALLET_NOT_FOUND, f"account {account_id} has no wallet; fund it first")
