"""Real-name verification (A2): a submission per level, reviewed by the automatic rules of the
simulator or by an operator, with reasons from a fixed list; a rejected level may be resubmitted.

L1 needs a document that matches the holder; L2 needs L1 first and a proof of address. The
document number is kept only as a keyed digest and a mask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from contracts import DocumentType, IdentityRejectionReason, VerificationLevel
from services.account.domain.accounts import Account
from services.account.domain.credentials import normalized_name
from shared.errors import CommandRefused

ADULT_AGE = 18
R = IdentityRejectionReason

DOCUMENT_NUMBER_FORMATS: dict[DocumentType, re.Pattern[str]] = {
    DocumentType.PASSPORT: re.compile(r"[A-Z0-9]{6,9}"),
    DocumentType.NATIONAL_ID: re.compile(r"[A-Z0-9]{5,20}"),
    DocumentType.DRIVING_LICENCE: re.compile(r"[A-Z0-9]{5,20}"),
}
"""What a document number may look like, by type (checked without looking it up anywhere)."""


class ReviewStatus(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(slots=True)
class IdentityReview:
    """One level's submission and its outcome; keyed by (account, level)."""

    account_id: str
    level: VerificationLevel
    legal_name: str
    document_type: DocumentType
    document_digest: str
    document_masked: str
    birth_date: date
    country: str
    address: str | None
    submitted_at: datetime
    status: ReviewStatus = ReviewStatus.SUBMITTED
    reasons: str = ""  # comma-separated IdentityRejectionReason values
    reviewed_by: str | None = None
    submissions: int = 1

    def resubmit(self, other: IdentityReview) -> None:
        """A new submission replaces a rejected one; an approved or pending one stays."""
        if self.status is ReviewStatus.APPROVED:
            raise CommandRefused("already_verified", f"account {self.account_id} is verified at {self.level}")
        if self.status is ReviewStatus.SUBMITTED:
            raise CommandRefused(
                "review_pending", f"the {self.level} submission of account {self.account_id} is still being reviewed"
            )
        submissions = self.submissions + 1
        for name in self.__slots__:
            setattr(self, name, getattr(other, name))
        self.submissions = submissions

    def approve(self, by: str) -> None:
        self._check_pending()
        self.status, self.reviewed_by, self.reasons = ReviewStatus.APPROVED, by, ""

    def reject(self, reasons: list[IdentityRejectionReason], by: str) -> None:
        self._check_pending()
        self.status, self.reviewed_by = ReviewStatus.REJECTED, by
        self.reasons = ",".join(r.value for r in reasons)

    @property
    def rejection_reasons(self) -> list[IdentityRejectionReason]:
        return [IdentityRejectionReason(r) for r in self.reasons.split(",") if r]

    def _check_pending(self) -> None:
        if self.status is not ReviewStatus.SUBMITTED:
            raise CommandRefused(
                "no_pending_review",
                f"account {self.account_id} has no {self.level} submission waiting for review (it is {self.status})",
            )


MIN_DOCUMENT_LENGTH = 5
"""No document type has shorter numbers; a mask of a shorter one would show too much of it."""


def mask_document(number: str) -> str:
    """All but the last two characters hidden; all of it when it is too short to show any."""
    if len(number) < MIN_DOCUMENT_LENGTH:
        return "*" * len(number)
    return "*" * (len(number) - 2) + number[-2:]


def check_document_number(number: str) -> None:
    """The least any document number is: refused before it is digested or masked."""
    if not re.fullmatch(rf"[A-Z0-9]{{{MIN_DOCUMENT_LENGTH},20}}", number):
        raise CommandRefused(
            "document_number_invalid",
            f"document_number: must be {MIN_DOCUMENT_LENGTH} to 20 letters or digits (spaces and dashes ignored)",
        )


def normalized_document_number(number: str) -> str:
    return re.sub(r"[\s-]", "", number).upper()


def check_submission_order(account: Account, level: VerificationLevel) -> None:
    if level is VerificationLevel.L0:
        raise CommandRefused("invalid_level", "level: L0 is where every account starts; submit for L1 or L2")
    if level is VerificationLevel.L2 and account.level is VerificationLevel.L0:
        raise CommandRefused("level_order", f"level: account {account.account_id} must reach L1 before L2")


def age_on(birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def automatic_findings(review: IdentityReview, account: Account, document_number: str, today: date) -> list[R]:
    """The simulator's rule set: what is wrong with a submission (empty: approve)."""
    findings: list[R] = []
    if not DOCUMENT_NUMBER_FORMATS[review.document_type].fullmatch(document_number):
        findings.append(R.DOCUMENT_NUMBER_INVALID)
    if age_on(review.birth_date, today) < ADULT_AGE:
        findings.append(R.UNDERAGE)
    expected_name = account.legal_name if review.level is VerificationLevel.L2 else account.full_name
    if expected_name is not None and normalized_name(review.legal_name) != normalized_name(expected_name):
        findings.append(R.NAME_MISMATCH)
    if review.country != account.country:
        findings.append(R.COUNTRY_MISMATCH)
    if review.level is VerificationLevel.L2 and not (review.address or "").strip():
        findings.append(R.ADDRESS_MISSING)
    return findings


def describe(reasons: list[IdentityRejectionReason]) -> str:
    words = {
        R.DOCUMENT_NUMBER_INVALID: "the document number does not have the form of that document type",
        R.DOCUMENT_UNREADABLE: "the document could not be read",
        R.UNDERAGE: f"the holder must be at least {ADULT_AGE}",
        R.NAME_MISMATCH: "the legal name differs from the account's name",
        R.COUNTRY_MISMATCH: "the document's country differs from the account's region",
        R.ADDRESS_MISSING: "enhanced verification needs a proof of address",
        R.LEVEL_ORDER: "the previous level must be verified first",
        R.SUSPECTED_FRAUD: "the submission needs a manual investigation",
    }
    return "; ".join(words[r] for r in reasons) + "; correct it and submit again"
