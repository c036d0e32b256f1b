"""E1 ledger errors; the tree is drawn in the package docstring."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import CommandRefused, TradeGuardError


class RefusalCode(StrEnum):
    """The machine-readable ``code`` of every :class:`LedgerRefused`."""

    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    ACCOUNTS_MUST_DIFFER = "accounts_must_differ"
    CURRENCY_MISMATCH = "currency_mismatch"
    TIMEOUT_NOT_IN_FUTURE = "timeout_not_in_future"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    PENDING_NOT_FOUND = "pending_not_found"
    NOT_A_PENDING_TRANSFER = "not_a_pending_transfer"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    PENDING_NOT_EXPIRED = "pending_not_expired"
    PENDING_TRANSFER_DIFFERS = "pending_transfer_differs"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"
    AMOUNT_DIFFERS_FROM_PENDING = "amount_differs_from_pending"
    ID_EXISTS_WITH_DIFFERENT_CONTENT = "id_exists_with_different_content"
    ID_EXISTS_IN_OTHER_SET = "id_exists_in_other_set"
    LINKED_EVENT_FAILED = "linked_event_failed"


class LedgerRefused(CommandRefused):
    """A transfer the ledger will not apply; nothing changed.

    ``code`` is the :class:`RefusalCode`'s value (``refusal`` the member), ``transfer_id`` names the
    transfer, and ``detail`` is the reason without that id.
    """

    def __init__(self, code: RefusalCode, transfer_id: str, reason: str) -> None:
        super().__init__(str(code), f"transfer {transfer_id}: {reason}")
        self.refusal = code
        self.transfer_id = transfer_id
        self.detail = reason  # the reason without the transfer's id, for a linked set's message


class InvalidTransfer(LedgerRefused):
    """The transfer itself is wrong whatever the balances: its amount, accounts, currency or timeout."""


class BalanceRefused(LedgerRefused):
    """The transfer would break an account's flags or pass the balance bound."""


class PendingRefused(LedgerRefused):
    """A post, void or expiry that does not fit the pending transfer it names."""


class IdConflict(LedgerRefused):
    """The transfer id was used before, for other content or outside this linked set."""


class LinkedSetRefused(LedgerRefused):
    """One transfer of a linked set was refused, so none was applied.

    ``index`` is its position in the set (0-based), ``transfer_id`` its id and ``cause`` its own
    refusal (also the exception's ``__cause__``).
    """

    def __init__(self, index: int, size: int, cause: LedgerRefused) -> None:
        reason = (
            f"linked set of {size} refused, none applied: transfer {index + 1} of {size} "
            f"was refused with {cause.code}: {cause.detail}"
        )
        LedgerRefused.__init__(self, RefusalCode.LINKED_EVENT_FAILED, cause.transfer_id, reason)
        self.index = index
        self.cause = cause


class LedgerCorrupt(TradeGuardError):
    """A stored log that does not replay: a record the rules refuse, or one that replays differently."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"ledger log record {seq}: {reason}")
        self.seq = seq
