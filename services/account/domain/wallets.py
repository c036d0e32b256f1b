"""Wallet rules: balances never go negative, never mix currencies, never pass their limit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contracts import DeclineReason, Money
from contracts.money import Balance, max_balance_minor
from services.account.domain.errors import PaymentDeclined
from shared.errors import CommandRefused


class WalletRuleBroken(PaymentDeclined):
    """A wallet debit that the rules decline (answered with PaymentAuthorizationDeclined, not a rejection)."""


class BalanceLimitReached(CommandRefused):
    """A top-up or credit that would take a balance past the most it may hold."""

    def __init__(self, account_id: str, balance: Balance, amount: Money) -> None:
        limit = Balance(amount_minor=max_balance_minor(balance.currency), currency=balance.currency)
        super().__init__(
            "balance_limit",
            f"wallet {account_id} holds {balance}; adding {amount} would pass its limit of {limit}",
        )


class MovementKind(StrEnum):
    TOP_UP = "top_up"
    DEBIT = "debit"
    CREDIT = "credit"


@dataclass(slots=True)
class Movement:
    """One change of a wallet's balance, unique per (account, kind, reference): a repeat of
    the same reference gets this first result."""

    account_id: str
    kind: MovementKind
    reference: str
    amount: Money
    balance_after: Balance

    def check_same_amount(self, amount: Money) -> None:
        """P5: the same reference with different content is refused."""
        if amount != self.amount:
            raise CommandRefused(
                "idempotency_conflict",
                f"{self.kind.value} {self.reference} of wallet {self.account_id} was already made for {self.amount}",
            )


@dataclass(slots=True)
class Wallet:
    """An account's balance in its one currency."""

    account_id: str
    balance: Balance

    @classmethod
    def open(cls, account_id: str, currency: str) -> Wallet:
        return cls(account_id, Balance(amount_minor=0, currency=currency))

    def top_up(self, amount: Money, reference: str) -> Movement:
        return self._add(MovementKind.TOP_UP, amount, reference)

    def credit(self, amount: Money, reference: str) -> Movement:
        return self._add(MovementKind.CREDIT, amount, reference)

    def debit(self, amount: Money, reference: str) -> Movement:
        self._check_currency(amount)
        if amount.amount_minor > self.balance.amount_minor:
            raise WalletRuleBroken(
                DeclineReason.INSUFFICIENT_FUNDS,
                f"wallet {self.account_id} holds {self.balance}, {amount} needed; "
                "top up the wallet or pay with another source",
            )
        self.balance = self.balance - amount
        return Movement(self.account_id, MovementKind.DEBIT, reference, amount, self.balance)

    def _add(self, kind: MovementKind, amount: Money, reference: str) -> Movement:
        self._check_currency(amount)
        if self.balance.amount_minor + amount.amount_minor > max_balance_minor(amount.currency):
            raise BalanceLimitReached(self.account_id, self.balance, amount)
        self.balance = self.balance + amount
        return Movement(self.account_id, kind, reference, amount, self.balance)

    def _check_currency(self, amount: Money) -> None:
        if amount.currency != self.balance.currency:
            raise WalletRuleBroken(
                DeclineReason.CURRENCY_MISMATCH,
                f"wallet {self.account_id} is in {self.balance.currency}, the amount is in {amount.currency}",
            )


def payment_debit_reference(order_id: str, attempt: int = 1) -> str:
    """The reference of the wallet debit one attempt at paying an order makes: one debit per
    (order, attempt), so attempt 2 after a failed split (whose wallet leg was credited back)
    debits again, once, while a repeat of an attempt gets its first debit (S2). Attempt 1 keeps
    the order id alone, as debits were recorded before there were attempts."""
    return order_id if attempt == 1 else f"{order_id}:{attempt}"


def missing_wallet(account_id: str) -> WalletRuleBroken:
    return WalletRuleBroken(DeclineReason.WALLET_NOT_FOUND, f"account {account_id} has no wallet; fund it first")
