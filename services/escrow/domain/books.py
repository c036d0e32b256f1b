"""E1 persisted: each ledger account as a versioned row of its four totals, and the ledger view a
command's transfers go through.

The unit of work loads the :class:`AccountState` s a command may touch (an order's own accounts
by order and kind, the others by code), :func:`view` makes a :class:`Ledger` of them and of the
order's open reservation, the transfers are applied through it (every flag and balance rule is
the ledger's), and :func:`settle` writes the new totals back into the states. Pure: no database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.escrow.domain.holds import ORDER_ACCOUNT_KINDS
from services.escrow.domain.ledger import AccountBalance, AccountId, AccountKind, Ledger, TransferRecord


@dataclass(slots=True)
class AccountState:
    """One ledger account's stored totals, in minor units of its currency.

    ``order_id`` is set for the accounts an order owns (escrow holding, seller payable, refunds
    out): a command that names only the order finds them by (order, kind).
    """

    code: str
    kind: str
    owner: str
    currency: str
    order_id: str | None = None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @classmethod
    def opened(cls, account: AccountId) -> AccountState:
        """A new account with nothing on it (it exists from its first transfer)."""
        owned_by_order = account.kind in ORDER_ACCOUNT_KINDS
        return cls(
            account.code, str(account.kind), account.owner, account.currency, account.owner if owned_by_order else None
        )

    @property
    def account(self) -> AccountId:
        return AccountId(AccountKind(self.kind), self.owner, self.currency)

    @property
    def balance(self) -> AccountBalance:
        return AccountBalance(
            self.account, self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted
        )

    def take(self, balance: AccountBalance) -> None:
        """The totals ``balance`` says (after transfers applied through a view)."""
        self.debits_pending, self.debits_posted = balance.debits_pending, balance.debits_posted
        self.credits_pending, self.credits_posted = balance.credits_pending, balance.credits_posted


def view(states: Iterable[AccountState], open_pending: Iterable[TransferRecord] = ()) -> Ledger:
    """A ledger over exactly these accounts and open pending transfers."""
    return Ledger.from_state((state.balance for state in states), open_pending)


def settle(ledger: Ledger, states: Iterable[AccountState]) -> None:
    """Write the view's totals back into the states it was made of."""
    balances = ledger.balances()
    for state in states:
        state.take(balances[state.account])
