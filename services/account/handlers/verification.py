"""A2: identity submissions, the simulator's automatic review, and operators' decisions."""

from __future__ import annotations

from contracts import (
    ApproveIdentity,
    IdentityRejected,
    IdentityRejectionReason,
    IdentitySubmitted,
    IdentityVerified,
    RejectIdentity,
    SubmitIdentity,
    VerificationLevel,
)
from contracts.sealing import Purpose
from services.account.domain.accounts import Account
from services.account.domain.verification import (
    IdentityReview,
    automatic_findings,
    check_document_number,
    check_submission_order,
    describe,
    mask_document,
    normalized_document_number,
)
from services.account.handlers import handlers
from services.account.handlers.common import ACCOUNT, REVIEW, account_of, audit
from services.account.ports import ports
from services.account.store import IDENTITY_REVIEWS
from shared.consumer import HandlerContext
from shared.errors import CommandRefused

AUTOMATIC = "automatic"


@handlers.on(SubmitIdentity, loads=[ACCOUNT, REVIEW], keyed=True)
def submit_identity(command: SubmitIdentity, ctx: HandlerContext) -> None:
    deps = ports(ctx)
    account = account_of(ctx, command)
    account.check_open()
    check_submission_order(account, command.level)
    number = normalized_document_number(
        deps.unsealer.open(
            command.document_number, purpose=Purpose.document(account.account_id), field="document_number"
        )
    )
    check_document_number(number)
    submission = IdentityReview(
        account_id=account.account_id,
        level=command.level,
        legal_name=command.legal_name,
        document_type=command.document_type,
        document_digest=deps.hasher.digest("document", number),
        document_masked=mask_document(number),
        birth_date=command.birth_date,
        country=command.country,
        address=command.address,
        submitted_at=ctx.now,
    )
    review = ctx.read(REVIEW, command)
    if review is None:
        review = ctx.add(IDENTITY_REVIEWS, submission)
    else:
        review.resubmit(submission)
    ctx.emit(
        IdentitySubmitted(
            account_id=account.account_id,
            level=review.level,
            document_type=review.document_type,
            document_masked=review.document_masked,
            review=AUTOMATIC if deps.automatic_review else "operator",
        )
    )
    if deps.automatic_review:
        findings = automatic_findings(review, account, number, ctx.now.date())
        if findings:
            _reject(ctx, review, findings, AUTOMATIC)
        else:
            _approve(ctx, account, review, AUTOMATIC)


@handlers.on(ApproveIdentity, loads=[ACCOUNT, REVIEW], keyed=True)
def approve_identity(command: ApproveIdentity, ctx: HandlerContext) -> None:
    account = account_of(ctx, command)
    _approve(ctx, account, _pending(ctx, command), command.operator_id)


@handlers.on(RejectIdentity, loads=[ACCOUNT, REVIEW], keyed=True)
def reject_identity(command: RejectIdentity, ctx: HandlerContext) -> None:
    account_of(ctx, command)
    _reject(ctx, _pending(ctx, command), list(dict.fromkeys(command.reasons)), command.operator_id)


def _pending(ctx: HandlerContext, command: ApproveIdentity | RejectIdentity) -> IdentityReview:
    review = ctx.read(REVIEW, command)
    if review is None:
        raise CommandRefused(
            "no_pending_review", f"account {command.account_id} has submitted nothing for {command.level}"
        )
    return review


def _approve(ctx: HandlerContext, account: Account, review: IdentityReview, by: str) -> None:
    review.approve(by)
    if review.level is VerificationLevel.L1:
        account.legal_name = review.legal_name
    account.level = max(account.level, review.level)  # StrEnum: "L0" < "L1" < "L2"
    region = ports(ctx).regions.get(account.country)
    audit(ctx, account.account_id, f"verified:{review.level}", by, f"{review.document_type} {review.document_masked}")
    ctx.emit(
        IdentityVerified(
            account_id=account.account_id,
            level=account.level,
            legal_name=account.legal_name or account.full_name,
            country=account.country,
            limits=region.limits_for(account.level),
            reviewed_by=by,
        )
    )


def _reject(ctx: HandlerContext, review: IdentityReview, reasons: list[IdentityRejectionReason], by: str) -> None:
    review.reject(reasons, by)
    audit(ctx, review.account_id, f"rejected:{review.level}", by, review.reasons)
    ctx.emit(
        IdentityRejected(
            account_id=review.account_id,
            level=review.level,
            reasons=reasons,
            detail=describe(reasons),
            reviewed_by=by,
        )
    )
