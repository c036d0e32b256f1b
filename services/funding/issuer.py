"""The simulated network's charges, refunds and status inquiries over HTTP (SPEC P1, P4, P6).

- ``POST /v1/charges`` ``{"request_id", "token", "amount": {"amount_minor", "currency"}}`` ->
  201 ``{"request_id", "charge_id", "status": "captured", "amount", "token", "created_at"}``, or
  402 ``{"request_id", "status": "declined", "decline_reason", "amount", "token", "created_at"}``
- ``GET /v1/charges/{request_id}`` -> 200 the charge as above (captured or declined), or 404
  ``{"request_id", "status": "not_found"}`` when no charge of that request id was applied
- ``POST /v1/refunds`` ``{"request_id", "charge_id", "amount"}`` -> 201 ``{"request_id",
  "refund_id", "charge_id", "status": "refunded", "amount", "refunded_total", "remaining",
  "created_at"}``; more than remains -> 422 ``exceeds_remaining`` with ``remaining``
- ``GET /v1/refunds/{request_id}`` -> 200 the refund as above, or 404 ``not_found``
- ``GET /v1/ledger[?token=tok_...]`` -> 200 ``{"currencies": {"USD": {"captured_minor",
  "captures", "refunded_minor", "refunds", "declines", "net_minor"}}}``

Every write is idempotent by ``request_id``: a repeat of the same body gets the first answer
(status and body) and applies nothing; the same request id with another body gets 409
``idempotency_conflict`` naming what differs. A transient failure is 503 ``{"error": {"rule":
"issuer_unavailable", "message"}}`` and applies nothing. Malformed bodies get 422 naming the field.

The faults (:mod:`services.funding.faults`): each card's scripted behaviour for its charges, and
the run's seeded plan for the first attempt of every charge and refund. ``FUNDING_LATENCY_MS`` is
added to every answer of these endpoints; a lost or timed-out answer comes after
``FUNDING_SLOW_ANSWER_SECONDS``. Status inquiries and the ledger only meet the latency.

Deciding and applying run one request at a time (an :class:`asyncio.Lock` around a worker
thread's few SQLite statements); the sleeps are outside it, so a slow answer holds up no one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts.money import Money
from services.funding.bodies import BadRequest, read_object, refusal
from services.funding.book import ChargeRecord, ChargeStatus, NetworkBook, RefundExceedsRemaining, RefundRecord
from services.funding.cards import Behaviour
from services.funding.faults import ONE_SHOT_BEHAVIOURS, FaultPlan, Operation, Outcome, RunFault, decide_charge
from services.funding.settings import FundingSettings
from services.funding.vault import CardVault
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~@+=-]{0,199}")
"""A caller's idempotency key: up to 200 characters, nothing a URL path would split or escape."""
_TOKEN = re.compile(r"tok_[A-Za-z0-9]{1,60}")
_CHARGE_ID = re.compile(r"ch_[A-Za-z0-9]{1,60}")
_CHARGE_FIELDS = {"request_id": str, "token": str, "amount": dict}
_REFUND_FIELDS = {"request_id": str, "charge_id": str, "amount": dict}
UNAVAILABLE_RULE = "issuer_unavailable"


def fault_plan(settings: FundingSettings) -> FaultPlan:
    return FaultPlan(settings.seed, settings.transient_rate, settings.lost_answer_rate, settings.latency_ms)


@dataclass(frozen=True, slots=True)
class _Answer:
    response: Response
    late: bool = False
    """Answer only after ``slow_answer_seconds``: the caller will have timed out."""


def _money(money: Money) -> dict[str, object]:
    return {"amount_minor": money.amount_minor, "currency": money.currency}


def _charge_body(charge: ChargeRecord) -> dict[str, object]:
    body: dict[str, object] = {"request_id": charge.request_id, "status": charge.status.value}
    if charge.status is ChargeStatus.CAPTURED:
        body["charge_id"] = charge.charge_id
    else:
        assert charge.decline_reason is not None
        body["decline_reason"] = charge.decline_reason.value
    body |= {"amount": _money(charge.amount), "token": charge.token, "created_at": charge.created_at.isoformat()}
    return body


def _charge_answer(charge: ChargeRecord) -> JSONResponse:
    return JSONResponse(_charge_body(charge), status_code=201 if charge.status is ChargeStatus.CAPTURED else 402)


def _refund_body(refund: RefundRecord) -> dict[str, object]:
    return {
        "request_id": refund.request_id,
        "refund_id": refund.refund_id,
        "charge_id": refund.charge_id,
        "status": "refunded",
        "amount": _money(refund.amount),
        "refunded_total": _money(refund.refunded_total),
        "remaining": _money(refund.remaining),
        "created_at": refund.created_at.isoformat(),
    }


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse({"error": {"rule": UNAVAILABLE_RULE, "message": message}}, status_code=503)


def _not_found(request_id: str) -> JSONResponse:
    return JSONResponse({"request_id": request_id, "status": "not_found"}, status_code=404)


def _conflict(request_id: str, first: str, now: str) -> JSONResponse:
    message = f"request_id {request_id!r} was first used for {first}; this request asks for {now}"
    return refusal("request_id", "idempotency_conflict", message, status=409)


def _request_id(value: str) -> str:
    if not REQUEST_ID.fullmatch(value):
        raise BadRequest(
            "request_id", "format", "request_id: 1 to 200 letters, digits or ._:~@+=- (starting with a letter or digit)"
        )
    return value


def _token(value: str) -> str:
    # Never echoed nor stored when malformed: a confused caller might have sent a card number here.
    if not _TOKEN.fullmatch(value):
        raise BadRequest("token", "format", "token: must be a vault token (tok_ and up to 60 letters or digits)")
    return value


def _amount(value: dict[str, Any]) -> Money:
    try:
        money = Money.model_validate(value)
    except ValidationError as invalid:
        first = invalid.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadRequest("amount", "money", f"amount{'.' + where if where else ''}: {first['msg']}") from None
    if money.amount_minor < 1:
        raise BadRequest("amount", "positive", "amount: must be at least one minor unit")
    return money


def _describe_charge(token: str, amount: Money) -> str:
    return f"a charge of {amount} on {token}"


class IssuerApi:
    """The charge and refund endpoints, over the vault (for the tokens) and the network's book."""

    def __init__(self, settings: FundingSettings, clock: Clock, vault: Callable[[], CardVault]) -> None:
        self._settings = settings
        self._clock = clock
        self._vault = vault
        self._plan = fault_plan(settings)
        self._lock = asyncio.Lock()
        self._opened: NetworkBook | None = None

    @property
    def _book(self) -> NetworkBook:
        assert self._opened is not None, "the lifespan opens the book before any request"
        return self._opened

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._opened = await asyncio.to_thread(NetworkBook.open, self._settings.database_path)
        try:
            yield
        finally:
            await asyncio.to_thread(self._opened.close)
            self._opened = None

    def routes(self) -> list[Route]:
        return [
            Route("/v1/charges", self.charge, methods=["POST"]),
            Route("/v1/charges/{request_id}", self.charge_status, methods=["GET"]),
            Route("/v1/refunds", self.refund, methods=["POST"]),
            Route("/v1/refunds/{request_id}", self.refund_status, methods=["GET"]),
            Route("/v1/ledger", self.ledger, methods=["GET"]),
        ]

    # --- charges ------------------------------------------------------------------------------

    async def charge(self, request: Request) -> Response:
        try:
            body = await read_object(request, _CHARGE_FIELDS)
            request_id, token, amount = _request_id(body["request_id"]), _token(body["token"]), _amount(body["amount"])
        except BadRequest as bad:
            log.info("charge refused", field=bad.field, rule=bad.rule)
            return refusal(bad.field, bad.rule, bad.message, bad.status)
        return await self._answer(lambda: self._charge_now(request_id, token, amount))

    def _charge_now(self, request_id: str, token: str, amount: Money) -> _Answer:
        book = self._book
        first = book.charge_by_request(request_id)
        if first is not None:
            if (first.token, first.amount) != (token, amount):
                was, asked = _describe_charge(first.token, first.amount), _describe_charge(token, amount)
                log.info("charge conflicts with its first request", request_id=request_id)
                return _Answer(_conflict(request_id, was, asked))
            log.info("charge repeated", request_id=request_id, status=first.status.value)
            return _Answer(_charge_answer(first))

        now = self._clock.now()
        attempt = book.note_attempt(Operation.CHARGE, request_id, now)
        run_fault = self._plan.first_attempt(Operation.CHARGE, request_id) if attempt == 1 else RunFault.NONE
        card = self._vault().lookup(token)
        spent = card is not None and card.behaviour in ONE_SHOT_BEHAVIOURS and book.one_shot_spent(token)
        first_request = (
            card is None
            or card.behaviour is not Behaviour.UNAVAILABLE_FIRST_REQUEST
            or book.first_request(token, request_id) == request_id
        )
        decision = decide_charge(
            card, now.date(), one_shot_spent=spent, run_fault=run_fault, first_request=first_request
        )
        if decision.spends_one_shot and card is not None:
            book.spend_one_shot(token, card.behaviour, now)
        if decision.outcome is Outcome.UNAVAILABLE:
            log.info("charge unavailable", request_id=request_id, token=token, attempt=attempt)
            return _Answer(_unavailable(decision.message))
        if decision.outcome is Outcome.TIME_OUT:
            log.info("charge timing out, not applied", request_id=request_id, token=token)
            return _Answer(_unavailable(decision.message), late=True)

        charge = book.record_charge(request_id, token, amount, now, decision.decline_reason)
        log.info(
            f"charge {charge.status.value}",
            request_id=request_id,
            charge_id=charge.charge_id,
            token=token,
            amount_minor=amount.amount_minor,
            currency=amount.currency,
            decline_reason=charge.decline_reason.value if charge.decline_reason is not None else None,
            answer_lost=decision.answer_late,
        )
        return _Answer(_charge_answer(charge), late=decision.answer_late)

    async def charge_status(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        await self._latency()
        charge = await asyncio.to_thread(self._book.charge_by_request, request_id)
        return _not_found(request_id) if charge is None else JSONResponse(_charge_body(charge))

    # --- refunds ------------------------------------------------------------------------------

    async def refund(self, request: Request) -> Response:
        try:
            body = await read_object(request, _REFUND_FIELDS)
            request_id, charge_id, amount = _request_id(body["request_id"]), body["charge_id"], _amount(body["amount"])
        except BadRequest as bad:
            log.info("refund refused", field=bad.field, rule=bad.rule)
            return refusal(bad.field, bad.rule, bad.message, bad.status)
        return await self._answer(lambda: self._refund_now(request_id, charge_id, amount))

    def _refund_now(self, request_id: str, charge_id: str, amount: Money) -> _Answer:
        book = self._book
        first = book.refund_by_request(request_id)
        if first is not None:
            if (first.charge_id, first.amount) != (charge_id, amount):
                was, asked = f"a refund of {first.amount} of {first.charge_id}", f"a refund of {amount} of {charge_id}"
                log.info("refund conflicts with its first request", request_id=request_id)
                return _Answer(_conflict(request_id, was, asked))
            log.info("refund repeated", request_id=request_id, refund_id=first.refund_id)
            return _Answer(JSONResponse(_refund_body(first), status_code=201))

        charge = book.charge_by_id(charge_id) if _CHARGE_ID.fullmatch(charge_id) else None
        refused = self._refund_refused(charge, charge_id, amount)
        if refused is not None:
            return _Answer(refused)
        assert charge is not None

        now = self._clock.now()
        attempt = book.note_attempt(Operation.REFUND, request_id, now)
        run_fault = self._plan.first_attempt(Operation.REFUND, request_id) if attempt == 1 else RunFault.NONE
        if run_fault is RunFault.TRANSIENT:
            log.info("refund unavailable", request_id=request_id, charge_id=charge_id, attempt=attempt)
            return _Answer(_unavailable("the network is busy; nothing was refunded, try again"))
        try:
            refund = book.record_refund(request_id, charge, amount, now)
        except RefundExceedsRemaining as exceeds:
            return _Answer(self._exceeds(exceeds))
        late = run_fault is RunFault.LOST_ANSWER
        log.info(
            "refund applied",
            request_id=request_id,
            refund_id=refund.refund_id,
            charge_id=charge_id,
            token=charge.token,
            amount_minor=amount.amount_minor,
            remaining_minor=refund.remaining.amount_minor,
            answer_lost=late,
        )
        return _Answer(JSONResponse(_refund_body(refund), status_code=201), late=late)

    def _refund_refused(self, charge: ChargeRecord | None, charge_id: str, amount: Money) -> Response | None:
        """Why a new refund cannot be applied (a caller's mistake, 422), or None."""
        if charge is None or charge.status is not ChargeStatus.CAPTURED:
            return refusal("charge_id", "unknown_charge", "charge_id: no captured charge has this id")
        if amount.currency != charge.amount.currency:
            message = f"amount: the charge is in {charge.amount.currency}, the refund in {amount.currency}"
            return refusal("amount", "currency", message)
        remaining = self._book.remaining(charge)
        if amount.amount_minor > remaining.amount_minor:
            return self._exceeds(RefundExceedsRemaining(charge_id, amount, remaining))
        return None

    @staticmethod
    def _exceeds(exceeds: RefundExceedsRemaining) -> Response:
        log.info("refund exceeds what remains", remaining_minor=exceeds.remaining.amount_minor)
        return refusal("amount", "exceeds_remaining", f"amount: {exceeds}", remaining=_money(exceeds.remaining))

    async def refund_status(self, request: Request) -> Response:
        request_id = request.path_params["request_id"]
        await self._latency()
        refund = await asyncio.to_thread(self._book.refund_by_request, request_id)
        return _not_found(request_id) if refund is None else JSONResponse(_refund_body(refund))

    # --- the audit's view ---------------------------------------------------------------------

    async def ledger(self, request: Request) -> Response:
        token = request.query_params.get("token")
        await self._latency()
        totals = await asyncio.to_thread(self._book.ledger, token)
        return JSONResponse(
            {
                "currencies": {
                    t.currency: {
                        "captured_minor": t.captured_minor,
                        "captures": t.captures,
                        "refunded_minor": t.refunded_minor,
                        "refunds": t.refunds,
                        "declines": t.declines,
                        "net_minor": t.captured_minor - t.refunded_minor,
                    }
                    for t in totals
                }
            }
        )

    # --- timing -------------------------------------------------------------------------------

    async def _answer(self, decide_and_apply: Callable[[], _Answer]) -> Response:
        await self._latency()
        async with self._lock:
            answer = await asyncio.to_thread(decide_and_apply)
        if answer.late:
            await asyncio.sleep(self._settings.slow_answer_seconds)
        return answer.response

    async def _latency(self) -> None:
        if self._plan.latency_ms:
            await asyncio.sleep(self._plan.latency_seconds)
