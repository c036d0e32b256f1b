"""The operator's actions: each planned from a form (checked before anything is sent), confirmed
by the operator on a page of its own, carried out once per action id, and written to the audit log.

An action's id is drawn when its form is drawn and travels with it through the confirmation, so
a form posted twice (a double click, a reload) is one action: the second finds the first in the
audit log and changes nothing. The saga also carries out each ``OperatorOrderAction`` id once,
and every command's idempotency key is made from the action id, so the services' inboxes drop
a copy too.

Each command goes out as the ``operator`` producer, names the signed-in operator, and is answered
by the service that applies it (the answer's causation id is the command's message id); the
outcome, or that no answer came in time, is what the operator sees and what the log keeps.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from contracts import (
    AccountStatusChanged,
    ApproveIdentity,
    Command,
    CommandRejected,
    DisputeResolution,
    DisputeResolved,
    IdentityRejected,
    IdentityRejectionReason,
    IdentityVerified,
    Message,
    Money,
    OperatorActionTaken,
    OperatorOrderAction,
    RedriveNotification,
    RejectIdentity,
    ResolveDispute,
    Topic,
    UnlockAccount,
    VerificationLevel,
)
from contracts.topics import ACCOUNT_EVENTS, ORDER_EVENTS
from scripts.cli.kafka_io import KafkaUnavailableError, fetch_dead_letters, publish_redrives
from scripts.cli.model import DeadLetterId, InvalidIdError, Redrive, RedriveRefusedError, plan_redrive
from scripts.cli.orders import to_minor
from scripts.marketplace import EventWatcher, Marketplace
from scripts.stack import client_keyring
from shared.clock import Clock

E = TypeVar("E", bound=StrEnum)
OPERATOR = "operator"  # the producer contracts/catalogue.py names for operator commands

ORDER_ACTIONS: dict[str, str] = {
    "retry_now": "Retry the step the order waits to retry, now",
    "cancel": "Cancel the order (what was paid comes back)",
    "compensate_now": "Run the order's compensation or refund under way again, now",
}
RESOLUTIONS: dict[str, str] = {
    DisputeResolution.REFUND_IN_FULL.value: "refund the buyer in full",
    DisputeResolution.RELEASE.value: "release everything held to the seller",
    DisputeResolution.SPLIT.value: "split: the amount below back to the buyer, the rest to the seller",
}
REJECTION_REASONS = tuple(reason.value for reason in IdentityRejectionReason)


class ActionRefused(ValueError):
    """The form does not make an action (a field missing or out of its rule): nothing was sent."""


@dataclass(frozen=True, slots=True)
class Planned:
    """An action ready to confirm: what it does in words, and what it sends."""

    kind: str
    """``retry_now``, ``resolve``, ``unlock``, ``redrive_letter``, ...: the audit log's ``action``."""
    subject: str
    """What it acts on: an order, an account, a dead letter, a notification."""
    summary: str
    """What the confirmation page asks."""
    reason: str
    action_id: str
    fields: dict[str, str]
    """The form as posted: the confirmation page posts it again, with ``confirmed``."""
    command: Command | None = None
    answered_by: tuple[type[Message], ...] = ()
    answers_on: Topic | None = None
    idempotency_key: str = ""
    redrive: Redrive | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    text: str
    earlier: bool = False
    """Carried out before under the same action id: nothing was sent this time."""

    @classmethod
    def done(cls, text: str) -> Outcome:
        return cls(ok=True, text=text)

    @classmethod
    def failed(cls, text: str) -> Outcome:
        return cls(ok=False, text=text)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: str
    operator_id: str
    action: str
    subject: str
    action_id: str
    reason: str
    ok: bool
    outcome: str
    message_id: str | None = None


def _text(form: Mapping[str, str], name: str, *, least: int = 1, most: int = 500) -> str:
    value = str(form.get(name, "")).strip()
    if not least <= len(value) <= most:
        raise ActionRefused(f"{name}: {least} to {most} characters, not {len(value)}")
    return value


def _choice(form: Mapping[str, str], name: str, kind: type[E]) -> E:
    value = str(form.get(name, ""))
    try:
        return kind(value)
    except ValueError:
        raise ActionRefused(f"{name}: one of {', '.join(k.value for k in kind)}, not {value[:40]!r}") from None


def _action_id(form: Mapping[str, str]) -> str:
    value = _text(form, "action_id", most=100)
    if not all(c.isalnum() or c in "-_" for c in value):
        raise ActionRefused("action_id: letters, digits, - and _ only")
    return value


def new_action_id() -> str:
    return f"console-{uuid.uuid4().hex}"


def plan(
    kind: str, subject: str, form: Mapping[str, str], operator_id: str, order: Mapping[str, Any] | None
) -> Planned:
    """The action ``kind`` on ``subject`` the form asks for; ActionRefused saying what is wrong.
    ``order``: the saga's view of the order, for the order actions (a split's currency)."""
    action_id, reason = _action_id(form), _text(form, "reason", least=3)
    fields = {k: str(v) for k, v in form.items() if k not in ("csrf_token", "confirmed")}
    base = Planned(kind, subject, summary="", reason=reason, action_id=action_id, fields=fields)
    try:
        if kind in ORDER_ACTIONS:
            return _order_action(kind, subject, operator_id, base)
        if kind == "resolve":
            return _resolve(subject, form, operator_id, order, base)
        if kind in ("approve_identity", "reject_identity"):
            return _identity(kind, subject, form, operator_id, base)
        if kind == "unlock":
            return replace(
                base,
                summary=f"Unlock account {subject} (it becomes active again)",
                command=UnlockAccount(account_id=subject, operator_id=operator_id, reason=reason),
                answered_by=(AccountStatusChanged,),
                answers_on=ACCOUNT_EVENTS,
                idempotency_key=f"UnlockAccount:{subject}:{action_id}",
            )
        if kind == "redrive_notification":
            redrive = RedriveNotification(
                account_id=_text(form, "account_id", most=100),
                notification_id=uuid.UUID(subject),
                operator_id=operator_id,
            )
            return replace(
                base,
                summary=f"Send email {subject} again (its attempts start over)",
                command=redrive,
                idempotency_key=f"RedriveNotification:{subject}:{action_id}",
            )
        if kind == "redrive_letter":
            DeadLetterId.parse(subject)
            return replace(base, summary=f"Re-drive dead letter {subject} to the topic it was read from")
    except (ValueError, InvalidIdError) as error:  # pydantic's ValidationError is a ValueError
        raise ActionRefused(str(error)) from None
    raise ActionRefused(f"no such action: {kind[:40]!r}")


def _order_action(kind: str, order_id: str, operator_id: str, base: Planned) -> Planned:
    command = OperatorOrderAction(
        order_id=order_id, action_id=base.action_id, action=kind, operator_id=operator_id, reason=base.reason
    )
    return replace(
        base,
        summary=f"{ORDER_ACTIONS[kind]}: order {order_id}",
        command=command,
        answered_by=(OperatorActionTaken,),
        answers_on=ORDER_EVENTS,
        # As `tradeguard orders` keys it: one intent per action id.
        idempotency_key=f"OperatorOrderAction:{order_id}:{base.action_id}",
    )


def _resolve(
    order_id: str, form: Mapping[str, str], operator_id: str, order: Mapping[str, Any] | None, base: Planned
) -> Planned:
    if order is None:
        raise ActionRefused(f"the saga has no order {order_id!r}")
    resolution = _choice(form, "resolution", DisputeResolution)
    refund = None
    currency = str(order["amount"]["currency"])
    if resolution is DisputeResolution.SPLIT:
        refund = Money(amount_minor=to_minor(_text(form, "refund", most=30), currency), currency=currency)
    dispute_id = _text(form, "dispute_id", most=100)
    command = ResolveDispute(
        order_id=order_id,
        dispute_id=dispute_id,
        operator_id=operator_id,
        resolution=resolution,
        refund=refund,
        reason=base.reason,
    )
    back = f": {refund} back to the buyer, the rest to the seller" if refund is not None else ""
    return replace(
        base,
        summary=f"Resolve dispute {dispute_id} of order {order_id}: {RESOLUTIONS[resolution.value]}{back}",
        command=command,
        answered_by=(DisputeResolved,),
        answers_on=ORDER_EVENTS,
        idempotency_key=f"ResolveDispute:{order_id}:{dispute_id}:{base.action_id}",
    )


def _identity(kind: str, account_id: str, form: Mapping[str, str], operator_id: str, base: Planned) -> Planned:
    level = _choice(form, "level", VerificationLevel)
    command: Command
    if kind == "approve_identity":
        command = ApproveIdentity(account_id=account_id, level=level, operator_id=operator_id)
        summary = f"Approve {account_id}'s identity for level {level.value}"
    else:
        reasons = [
            _choice({"reasons": r}, "reasons", IdentityRejectionReason) for r in form.get("reasons", "").split(",") if r
        ]
        if not reasons:
            raise ActionRefused(f"reasons: at least one of {', '.join(REJECTION_REASONS)}")
        command = RejectIdentity(account_id=account_id, level=level, operator_id=operator_id, reasons=reasons)
        summary = f"Reject {account_id}'s identity for level {level.value}: {', '.join(r.value for r in reasons)}"
    return replace(
        base,
        summary=summary,
        command=command,
        answered_by=(IdentityVerified, IdentityRejected),
        answers_on=ACCOUNT_EVENTS,
        idempotency_key=f"{type(command).__name__}:{account_id}:{level.value}:{base.action_id}",
    )


@dataclass
class Desk:
    """Carries out planned actions on the stack's broker, one at a time, and keeps the audit log."""

    bootstrap_servers: str
    state_dir: Any
    audit_file: Any
    clock: Clock
    answer_seconds: float = 30.0
    _client: Marketplace | None = None
    _one_at_a_time: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _operator(self) -> Marketplace:
        """The operator's producer, started at the first action (the console serves its pages
        while the broker is away)."""
        if self._client is None:
            client = Marketplace(self.bootstrap_servers, OPERATOR, client_keyring(self.state_dir))
            await client.__aenter__()
            self._client = client
        return self._client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.__aexit__()

    def history(self) -> list[AuditRecord]:
        """The audit log, newest first."""
        if not self.audit_file.exists():
            return []
        lines = self.audit_file.read_text(encoding="utf-8").splitlines()
        return [AuditRecord(**json.loads(line)) for line in reversed(lines) if line.strip()]

    def done_before(self, action_id: str) -> AuditRecord | None:
        return next((r for r in self.history() if r.action_id == action_id and r.ok), None)

    async def carry_out(self, planned: Planned, operator_id: str) -> Outcome:
        async with self._one_at_a_time:
            earlier = self.done_before(planned.action_id)
            if earlier is not None:
                text = f"carried out before, at {earlier.at} by {earlier.operator_id}: {earlier.outcome}"
                return Outcome(ok=True, text=text, earlier=True)
            outcome, message_id = await self._send(planned)
            self._log(planned, operator_id, outcome, message_id)
            return outcome

    async def _send(self, planned: Planned) -> tuple[Outcome, str | None]:
        if planned.kind == "redrive_letter":
            return await self._redrive(planned), None
        assert planned.command is not None, planned.kind
        operator = await self._operator()
        if planned.answers_on is None:
            sent = await operator.publish(
                planned.command, correlation_id=planned.subject, idempotency_key=planned.idempotency_key
            )
            return Outcome.done("sent; the service acts on it now"), str(sent.message_id)
        async with EventWatcher(self.bootstrap_servers, [planned.answers_on]) as watcher:
            sent = await operator.publish(
                planned.command, correlation_id=planned.subject, idempotency_key=planned.idempotency_key
            )
            wanted: tuple[type[Message], ...] = (*planned.answered_by, CommandRejected)
            try:
                seen = await watcher.wait_for(
                    lambda s: isinstance(s.message, wanted), timeout=self.answer_seconds, caused_by=sent.message_id
                )
            except TimeoutError:
                late = Outcome.failed(f"no answer in {self.answer_seconds:.0f} s: it may still be acted on")
                return late, str(sent.message_id)
        return _answered(seen.message), str(sent.message_id)

    async def _redrive(self, planned: Planned) -> Outcome:
        letter_id = DeadLetterId.parse(planned.subject)
        try:
            lookup = await fetch_dead_letters(self.bootstrap_servers, [letter_id])
            redrive = plan_redrive(letter_id, lookup.dead_letters.get(letter_id), lookup.partitions)
            [published] = await publish_redrives(self.bootstrap_servers, [redrive])
        except (RedriveRefusedError, KafkaUnavailableError) as error:
            return Outcome.failed(str(error))
        if published.error is not None:
            return Outcome.failed(f"not re-driven: {published.error}")
        return Outcome.done(f"re-driven to {redrive.topic}/{redrive.partition} (re-drive #{redrive.count})")

    def _log(self, planned: Planned, operator_id: str, outcome: Outcome, message_id: str | None) -> None:
        record = AuditRecord(
            at=_iso(self.clock.now()),
            operator_id=operator_id,
            action=planned.kind,
            subject=planned.subject,
            action_id=planned.action_id,
            reason=planned.reason,
            ok=outcome.ok,
            outcome=outcome.text,
            message_id=message_id,
        )
        self.audit_file.parent.mkdir(parents=True, exist_ok=True)
        with self.audit_file.open("a", encoding="utf-8") as log:
            log.write(json.dumps(asdict(record)) + "\n")


def _answered(message: Message) -> Outcome:  # noqa: PLR0911 - one line per kind of answer
    if isinstance(message, CommandRejected):
        return Outcome.failed(f"refused: {message.code}: {message.reason}")
    if isinstance(message, OperatorActionTaken):
        return Outcome.done(f"carried out: {message.action} by {message.operator_id}: {message.outcome}")
    if isinstance(message, DisputeResolved):
        return Outcome.done(
            f"resolved {message.resolution.value}: {message.refund} back to the buyer, {message.release} to the seller",
        )
    if isinstance(message, IdentityVerified):
        return Outcome.done(f"identity verified: level {message.level.value}")
    if isinstance(message, IdentityRejected):
        return Outcome.done(f"identity rejected: {', '.join(r.value for r in message.reasons)}")
    if isinstance(message, AccountStatusChanged):
        return Outcome.done(f"account {message.account_id} is now {message.status.value}: {message.reason}")
    return Outcome.done(f"answered: {type(message).__name__}")


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
