"""The network worker: sends the funding-network requests payments and refunds have stored (a
charge or a refund, or the status inquiry about one), and hands each answer back to the
payment's handlers as a ``RecordNetworkAnswer`` command (P1, P4, P6).

It never changes a payment itself: the handler that records the answer does, in a batch like
any other (services/payment/domain/network.py says what each answer leads to). A request it
sent is not sent again until its row changes (its version moves once the answer is recorded);
after a crash it may be sent again, which the network answers with its first result, because
every request carries the same request id (the network's idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Money, NetworkOutcome, NetworkRequestKind, RecordNetworkAnswer
from services.payment.domain.network import RequestState
from services.payment.network import (
    Charged,
    Declined,
    FundingNetwork,
    NetworkAnswer,
    NetworkRequestRefused,
    NotFound,
    Refunded,
    Unavailable,
    Unknown,
)
from services.payment.ports import PaymentPorts
from services.payment.store import network_requests
from shared.broker import RecordSender
from shared.clock import Clock
from shared.consumer import outgoing
from shared.db import reading
from shared.logging import RateLimitedLog, get_logger

log = get_logger(__name__)
IDLE_WAIT_SECONDS: float | None = None  # nothing due later: sleep until a batch stores a request
BATCH = 50


class NetworkWorker:
    def __init__(self, engine: AsyncEngine, producer: RecordSender, ports: PaymentPorts, clock: Clock) -> None:
        self._engine, self._producer, self._ports, self._clock = engine, producer, ports, clock
        self._sent: dict[str, int] = {}  # request id -> the row version its answer is awaited for
        self._errors = RateLimitedLog(log, interval=10.0)

    async def run(self) -> None:
        while True:
            rows: list[sa.Row[tuple[object, ...]]] = []
            try:
                rows, next_due = await self._due()
                await asyncio.gather(*(self._send(row) for row in rows))
            except Exception as error:  # the database or the broker away: try again shortly
                self._errors.warning("network worker pass failed; will retry", error=repr(error))
                next_due = 1.0
            await self._sleep(next_due if not rows else 0.0)

    async def _sleep(self, seconds: float | None) -> None:
        """Until a batch stores a request (after_commit wakes it) or the next one falls due;
        with none due later, only the former: no polling while idle."""
        due = self._ports.requests_due
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(due.wait(), timeout=seconds)
        due.clear()

    async def _due(self) -> tuple[list[sa.Row[tuple[object, ...]]], float | None]:
        """Requests due now that are not awaiting an answer; seconds until the next one is due."""
        now = self._clock.now()
        table = network_requests
        async with reading(self._engine) as conn:
            rows = (
                await conn.execute(
                    sa.select(table).where(table.c.state == RequestState.DUE.value).order_by(table.c.not_before)
                )
            ).all()
        due: list[sa.Row[tuple[object, ...]]] = []
        later = IDLE_WAIT_SECONDS
        still_due = {row.request_id for row in rows}
        self._sent = {rid: version for rid, version in self._sent.items() if rid in still_due}  # done: forget
        for row in rows:
            if self._sent.get(row.request_id) == row.version:
                continue
            when = _aware(row.not_before)
            if when is None or when <= now:
                due.append(row)
            else:
                wait = (when - now).total_seconds()
                later = wait if later is None else min(later, wait)
        return due[:BATCH], None if later is None else max(0.0, later)

    async def _send(self, row: sa.Row[tuple[object, ...]]) -> None:
        request_id, kind = str(row.request_id), NetworkRequestKind(str(row.kind))
        amount = Money(amount_minor=int(str(row.amount_minor)), currency=str(row.currency))
        try:
            answer = await self._ask(self._ports.network, row, request_id, kind, amount)
        except NetworkRequestRefused as refused:  # our request is wrong: retrying would not help
            log.exception("the network refused a request as malformed", request_id=request_id, error=str(refused))
            answer = Declined("network_request_refused")
        await self._hand_back(str(row.order_id), request_id, kind, amount, answer)
        self._sent[request_id] = int(str(row.version))  # handed back: not again until the row moves

    @staticmethod
    async def _ask(
        network: FundingNetwork,
        row: sa.Row[tuple[object, ...]],
        request_id: str,
        kind: NetworkRequestKind,
        amount: Money,
    ) -> NetworkAnswer:
        """The one call to the network the request's kind stands for."""
        if kind is NetworkRequestKind.CHARGE:
            return await network.charge(request_id, str(row.token), amount)
        if kind is NetworkRequestKind.STATUS:
            return await network.status(request_id)
        if kind is NetworkRequestKind.REFUND:
            # A refund names the charge it gives back; the rules never store one without it.
            return await network.refund(request_id, str(row.charge_id or ""), amount)
        return await network.refund_status(request_id)

    async def _hand_back(
        self, order_id: str, request_id: str, kind: NetworkRequestKind, amount: Money, answer: NetworkAnswer
    ) -> None:
        outcome, charge_id, reason = _outcome(answer)
        message = RecordNetworkAnswer(
            order_id=order_id,
            request_id=request_id,
            kind=kind,
            outcome=outcome,
            amount=amount,
            charge_id=charge_id,
            reason=reason,
        )
        record = outgoing(
            message,
            source="payment",
            correlation_id=order_id,
            idempotency_key=f"{request_id}:{kind.value}:{self._clock.now().timestamp()}",
            occurred_at=self._clock.now(),
        )
        await self._producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))
        log.info("network answer handed back", order_id=order_id, kind=kind.value, outcome=outcome.value)


# Answers that carry only a reason, and the outcome each stands for.
_REASONED = {
    Declined: NetworkOutcome.DECLINED,
    Unavailable: NetworkOutcome.UNAVAILABLE,
    Unknown: NetworkOutcome.UNKNOWN,
}


def _outcome(answer: NetworkAnswer) -> tuple[NetworkOutcome, str | None, str | None]:
    if isinstance(answer, Charged):
        return NetworkOutcome.CHARGED, answer.charge_id, None
    if isinstance(answer, Refunded):
        return NetworkOutcome.REFUNDED, None, None
    if isinstance(answer, NotFound):
        return NetworkOutcome.NOT_FOUND, None, None
    if isinstance(answer, Declined | Unavailable | Unknown):
        return _REASONED[type(answer)], None, answer.reason
    return NetworkOutcome.UNKNOWN, None, f"unexpected answer {type(answer).__name__}"


def _aware(value: object) -> datetime | None:
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
