"""The account (A1, A6): its status machine, its phone code, and the failed checks that lock it.

The whole life of an account is the table :data:`ALLOWED_MOVES`; every status change goes
through :meth:`Account.move_to`, which refuses a move the table does not allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from contracts import AccountStatus, DeclineReason, VerificationLevel
from services.account.domain.errors import PaymentDeclined
from shared.errors import CommandRefused

S = AccountStatus
ALLOWED_MOVES: dict[AccountStatus, frozenset[AccountStatus]] = {
    S.PENDING: frozenset({S.ACTIVE, S.CLOSED}),  # the phone code proves the number
    S.ACTIVE: frozenset({S.RESTRICTED, S.LOCKED, S.CLOSED}),  # an operator restricts; failed checks lock
    S.RESTRICTED: frozenset({S.ACTIVE, S.LOCKED, S.CLOSED}),  # an operator lifts the restriction
    S.LOCKED: frozenset({S.ACTIVE, S.CLOSED}),  # an operator unlocks after review
    S.CLOSED: frozenset(),  # for good
}
"""Which status an account may move to from each status: the whole state machine."""


class IllegalMove(CommandRefused):
    def __init__(self, account_id: str, current: AccountStatus, wanted: AccountStatus) -> None:
        allowed = ", ".join(sorted(ALLOWED_MOVES[current])) or "none: it is closed for good"
        super().__init__(
            "illegal_status_change",
            f"account {account_id} is {current}; it cannot become {wanted} (allowed from {current}: {allowed})",
        )


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """How hard the account guards itself; from the service's settings."""

    phone_code_ttl: timedelta = timedelta(minutes=5)
    phone_code_attempts: int = 5
    phone_code_sends: int = 4  # the first code and three resends
    failed_check_limit: int = 5
    failed_check_window: timedelta = timedelta(minutes=15)


class CodeCheck(StrEnum):
    """What checking a phone code found."""

    ACCEPTED = "accepted"
    WRONG = "code_wrong"
    EXPIRED = "code_expired"
    EXHAUSTED = "too_many_attempts"


@dataclass(frozen=True, slots=True)
class StatusChange:
    previous: AccountStatus
    status: AccountStatus
    reason: str
    changed_by: str


@dataclass(slots=True)
class Account:
    """One account holder: who they are, how they prove it, and what state the account is in."""

    account_id: str
    phone: str  # E.164
    full_name: str
    country: str
    currency: str
    language: str
    password_hash: str
    status: AccountStatus = AccountStatus.PENDING
    level: VerificationLevel = VerificationLevel.L0
    legal_name: str | None = None
    pin_hash: str | None = None
    totp_secret_box: str | None = None  # the TOTP secret, encrypted with the service's storage key
    default_source_id: str | None = None
    phone_code_digest: str | None = None
    phone_code_expires_at: datetime | None = None
    phone_code_attempts: int = 0
    phone_codes_sent: int = 0
    failed_checks: int = 0  # within the window, as of the last failure
    recent_failures: str = ""  # comma-separated POSIX times of the failures still within the window
    known_countries: str = ""  # comma-separated ISO codes this holder signed in or registered from

    # ------------------------------------------------------------------ status

    def move_to(self, status: AccountStatus, *, reason: str, by: str) -> StatusChange:
        if status not in ALLOWED_MOVES[self.status]:
            raise IllegalMove(self.account_id, self.status, status)
        change = StatusChange(self.status, status, reason, by)
        self.status = status
        if status is AccountStatus.ACTIVE:
            self.record_passed_check()
        return change

    def check_open(self) -> None:
        """Refuse a holder's command on an account that cannot take it: not yet proven by its
        phone (so a pending account offers no password to guess), locked, or closed."""
        if self.status is AccountStatus.PENDING:
            raise CommandRefused("phone_not_verified", f"account {self.account_id} must verify its phone number first")
        if self.status is AccountStatus.CLOSED:
            raise CommandRefused("account_closed", f"account {self.account_id} is closed")
        if self.status is AccountStatus.LOCKED:
            raise CommandRefused(
                "account_locked", f"account {self.account_id} is locked after failed checks; an operator must unlock it"
            )

    def check_can_receive(self) -> None:
        """Money may come into any account that is not locked or closed (a pending one too)."""
        if self.status in (AccountStatus.LOCKED, AccountStatus.CLOSED):
            self.check_open()

    def check_can_pay(self) -> None:
        """A payment needs an active account."""
        if self.status is AccountStatus.LOCKED:
            raise PaymentDeclined(
                DeclineReason.ACCOUNT_LOCKED,
                f"account {self.account_id} is locked after repeated failed checks; contact support to unlock it",
            )
        if self.status is not AccountStatus.ACTIVE:
            raise PaymentDeclined(
                DeclineReason.ACCOUNT_NOT_ACTIVE,
                f"account {self.account_id} is {self.status}; only an active account can pay",
            )

    # ------------------------------------------------------------------ phone code

    def issue_phone_code(self, digest: str, now: datetime, policy: SecurityPolicy) -> int:
        """Store the digest of a new code (the old one stops working); returns sends left."""
        if self.status is not AccountStatus.PENDING:
            raise CommandRefused("phone_already_verified", f"account {self.account_id} has verified its phone")
        if self.phone_codes_sent >= policy.phone_code_sends:
            raise CommandRefused(
                "resend_limit",
                f"account {self.account_id} was sent {self.phone_codes_sent} codes, the most allowed; contact support",
            )
        self.phone_code_digest = digest
        self.phone_code_expires_at = now + policy.phone_code_ttl
        self.phone_code_attempts = 0
        self.phone_codes_sent += 1
        return policy.phone_code_sends - self.phone_codes_sent

    @property
    def code_sequence(self) -> int:
        """Which code this is (each send makes the next): the same re-run makes the same code."""
        return self.phone_codes_sent

    def check_phone_code(self, digest: str, now: datetime, policy: SecurityPolicy) -> CodeCheck:
        if self.status is not AccountStatus.PENDING:
            raise CommandRefused("phone_already_verified", f"account {self.account_id} has verified its phone")
        if self.phone_code_digest is None or self.phone_code_expires_at is None:
            return CodeCheck.EXPIRED
        if self.phone_code_attempts >= policy.phone_code_attempts:
            return CodeCheck.EXHAUSTED
        if now >= self.phone_code_expires_at:
            return CodeCheck.EXPIRED
        self.phone_code_attempts += 1
        if digest != self.phone_code_digest:
            return CodeCheck.EXHAUSTED if self.phone_code_attempts >= policy.phone_code_attempts else CodeCheck.WRONG
        self.phone_code_digest = None
        self.phone_code_expires_at = None
        return CodeCheck.ACCEPTED

    def attempts_left(self, policy: SecurityPolicy) -> int:
        return max(0, policy.phone_code_attempts - self.phone_code_attempts)

    # ------------------------------------------------------------------ failed checks

    def record_failed_check(self, now: datetime, policy: SecurityPolicy) -> StatusChange | None:
        """Count a wrong password, PIN or TOTP code; the one that makes ``failed_check_limit``
        within any window of ``failed_check_window`` (sliding) locks the account (returned),
        so guessing is bounded."""
        since = (now - policy.failed_check_window).timestamp()
        times = [float(t) for t in self.recent_failures.split(",") if t and float(t) > since]
        times = [*times, now.timestamp()][-policy.failed_check_limit :]
        self.recent_failures = ",".join(f"{t:.3f}" for t in times)
        self.failed_checks = len(times)
        if self.failed_checks >= policy.failed_check_limit and AccountStatus.LOCKED in ALLOWED_MOVES[self.status]:
            minutes = int(policy.failed_check_window.total_seconds() // 60)
            return self.move_to(
                AccountStatus.LOCKED,
                reason=f"{self.failed_checks} failed security checks within {minutes} minutes",
                by="system",
            )
        return None

    def record_passed_check(self) -> None:
        self.failed_checks, self.recent_failures = 0, ""

    # ------------------------------------------------------------------ countries

    def first_time_from(self, country: str) -> bool:
        """Remember ``country``; True when the holder was never seen from it before."""
        known = set(filter(None, self.known_countries.split(",")))
        if country in known:
            return False
        self.known_countries = ",".join(sorted(known | {country}))
        return True
