"""Escrow E1: a double-entry, two-phase ledger in the spirit of TigerBeetle (pure: no Kafka, no database).

Money moves only as :class:`Transfer` s between two :class:`AccountId` s of one currency. A
transfer debits one account and credits the other by the same amount, so for every currency the
sum of all debits equals the sum of all credits, posted and pending separately, by construction;
:meth:`Ledger.check` recomputes everything from the log and proves it.

**Accounts.** One per (kind, owner, currency), written ``kind:owner:currency``:

==================  ============  ============================================================
kind                owner         what it is
==================  ============  ============================================================
``buyer_funds_in``  buyer id      money captured from the buyer (the source of every hold)
``escrow_holding``  order id      what the platform holds for one order (E2)
``seller_payable``  order id      what the platform owes the order's seller after release (E4)
``fee_revenue``     ``platform``  the platform's fees
``fx_position``     ``platform``  the platform's position in a currency after conversions (E4)
``refunds_out``     order id      what is owed back to the order's buyer after a refund (P6, E3)
==================  ============  ============================================================

(The escrow service keys a seller's payable and a buyer's refunds by order: its commands name
only the order; see ``services/escrow/domain/holds.py``.) An account exists from its first transfer; its flags come from its kind, through one table,
:data:`ACCOUNT_FLAGS` (a :class:`Ledger` may be given another table):

==================  ==================================  ==================================
kind                ``debits_must_not_exceed_credits``  ``credits_must_not_exceed_debits``
==================  ==================================  ==================================
``buyer_funds_in``  no (it is the source)               yes: never return more than came in
``escrow_holding``  yes: never pay out more than held   no
``seller_payable``  yes                                 no
``fee_revenue``     yes                                 no
``fx_position``     no (either way, per currency)       no
``refunds_out``     yes                                 no
==================  ==================================  ==================================

As in TigerBeetle, ``debits_must_not_exceed_credits`` refuses a transfer after which
``debits_pending + debits_posted > credits_posted`` (``exceeds_credits``): pending debits already
count against the account, pending credits do not count for it yet. ``credits_must_not_exceed_debits``
is the mirror (``exceeds_debits``). No account's debits or credits may pass the balance bound of
:func:`contracts.money.max_balance_minor` (``overflows_debits`` / ``overflows_credits``), so every
figure fits a signed 64-bit column. Amounts are integer minor units, never floats.

**Two-phase transfers.** A transfer's :class:`TransferKind` is one of

- ``single_phase``: posted at once (``debits_posted`` / ``credits_posted`` move);
- ``pending``: a reservation (``debits_pending`` / ``credits_pending`` move), optionally with an
  aware ``expires_at``;
- ``post_pending``: ends a pending transfer by posting ``amount`` of it: at most the pending
  amount, and the rest is released; its accounts, order and code are the pending's;
- ``void_pending``: ends a pending transfer by releasing all of it (its amount is the pending's);
- ``expire_pending``: the void a pending transfer gets from its timeout (:meth:`Ledger.expire`).

A post, void or expiry is itself a new record in the log referencing the pending one by
``pending_id``; nothing in the log is ever changed. A pending transfer ends exactly once: a
second post or void is refused (``pending_already_posted``, ``pending_already_voided``,
``pending_expired``), and from its ``expires_at`` on it can no longer be posted or voided
(``pending_expired``) even before :meth:`Ledger.expire` has recorded its expiry.

**Linked sets.** :meth:`Ledger.apply_linked` applies a list of transfers in order, each checked
against the state the earlier ones left, all or nothing: if one is refused none is applied, and
:class:`LinkedSetRefused` (``linked_event_failed``) names which one and why.

**Idempotency.** A transfer id is used once. Applying the same transfer again (same id, same
content) returns the first record and changes nothing, whatever happened since; the same id with
other content is refused (``id_exists_with_different_content``). A linked set is repeated as a
whole: the same transfers in the same order return the first records.

**Worked example.** A buyer pays 25.00 USD for order-1; at release the platform keeps a 1.25 USD
fee and the seller is owed 23.75 USD (``usd(n)`` is ``Money(amount_minor=n, currency="USD")``)::

    ledger = Ledger()
    hold = Transfer(
        "hold:order-1", AccountId.buyer_funds_in("buyer-1", "USD"), AccountId.escrow_holding("order-1", "USD"),
        usd(2500), "order-1", TransferCode.HOLD, TransferKind.PENDING,
    )
    ledger.apply(hold, now=captured_at)
    # buyer_funds_in:buyer-1:USD   debits_pending  2500
    # escrow_holding:order-1:USD   credits_pending 2500

    escrow = AccountId.escrow_holding("order-1", "USD")
    ledger.apply_linked(
        [
            hold.post("release:order-1:post"),
            Transfer("release:order-1:seller", escrow, AccountId.seller_payable("seller-1", "USD"),
                     usd(2375), "order-1", TransferCode.RELEASE),
            Transfer("release:order-1:fee", escrow, AccountId.fee_revenue("USD"),
                     usd(125), "order-1", TransferCode.FEE),
        ],
        now=confirmed_at,
    )
    # buyer_funds_in:buyer-1:USD   debits_posted 2500
    # escrow_holding:order-1:USD   credits_posted 2500, debits_posted 2500: empty again
    # seller_payable:seller-1:USD  credits_posted 2375
    # fee_revenue:platform:USD     credits_posted 125
    # USD: debits posted 5000 == credits posted 5000; nothing pending

Had the fee been 1.26 USD, the third transfer would overdraw the escrow holding
(``exceeds_credits``: debits 25.01 USD against credits 25.00 USD), the set would be refused
naming it, and the hold would still be pending. A cross-currency release goes through the FX
position of each currency: ``escrow_holding:order-1:USD -> fx_position:platform:USD`` and
``fx_position:platform:EUR -> seller_payable:seller-1:EUR`` in one linked set.

**Persistence.** :class:`TransferRecord` is a frozen row of plain fields (``to_row`` /
``from_row``); the log is an append-only table of them. :meth:`Ledger.from_state` makes a view
of some accounts' stored balances and open pending transfers, so a service applies a batch
through every rule without reading the whole log. :meth:`Ledger.replay` rebuilds a ledger
from its records, re-checking every rule (a log that does not replay raises
:class:`LedgerCorrupt`), or with ``verify=False`` folds them in unchecked so that
:meth:`Ledger.check` can list every break of a damaged copy (the G1 audit).

**Errors**::

    CommandRefused (shared.errors)
    └── LedgerRefused           a transfer the ledger will not apply; nothing changed
        ├── InvalidTransfer     amount_not_positive, accounts_must_differ, currency_mismatch,
        │                       timeout_not_in_future
        ├── BalanceRefused      exceeds_credits, exceeds_debits, overflows_debits, overflows_credits
        ├── PendingRefused      pending_not_found, not_a_pending_transfer, pending_already_posted,
        │                       pending_already_voided, pending_expired, pending_not_expired,
        │                       pending_transfer_differs, exceeds_pending_amount,
        │                       amount_differs_from_pending
        ├── IdConflict          id_exists_with_different_content, id_exists_in_other_set
        └── LinkedSetRefused    linked_event_failed: one transfer of a linked set was refused
    TradeGuardError (shared.errors)
    └── LedgerCorrupt           a stored log that does not replay (a bug or damage, not a refusal)

A malformed value (an account owner with ``:``, a naive datetime, a post without
``pending_id``) is a programming error and raises :class:`ValueError` where it is built.
"""

from services.escrow.domain.ledger.accounts import (
    ACCOUNT_FLAGS,
    PLATFORM,
    AccountBalance,
    AccountFlags,
    AccountId,
    AccountKind,
    LedgerAccount,
)
from services.escrow.domain.ledger.books import BooksBreak, BooksReport, BreakCode
from services.escrow.domain.ledger.errors import (
    BalanceRefused,
    IdConflict,
    InvalidTransfer,
    LedgerCorrupt,
    LedgerRefused,
    LinkedSetRefused,
    PendingRefused,
    RefusalCode,
)
from services.escrow.domain.ledger.ledger import Ledger
from services.escrow.domain.ledger.transfers import PendingStatus, Transfer, TransferCode, TransferKind, TransferRecord

__all__ = [
    "ACCOUNT_FLAGS",
    "PLATFORM",
    "AccountBalance",
    "AccountFlags",
    "AccountId",
    "AccountKind",
    "BalanceRefused",
    "BooksBreak",
    "BooksReport",
    "BreakCode",
    "IdConflict",
    "InvalidTransfer",
    "Ledger",
    "LedgerAccount",
    "LedgerCorrupt",
    "LedgerRefused",
    "LinkedSetRefused",
    "PendingRefused",
    "PendingStatus",
    "RefusalCode",
    "Transfer",
    "TransferCode",
    "TransferKind",
    "TransferRecord",
]
