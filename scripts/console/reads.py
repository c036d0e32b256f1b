"""What the console's pages show, read from the services' read APIs and the topics.

Each read answers what it found or raises :class:`Unavailable` saying which service did not
answer and how; a page shows that line instead of its data, and the rest of the page still
renders (an order page with the escrow service down still shows the saga's view and the timeline).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from aiokafka.errors import KafkaError

from scripts.cli.kafka_io import KafkaUnavailableError, read_dead_letters
from scripts.cli.model import DeadLetter
from scripts.cli.timeline import Entry, read_order, what_changed
from scripts.stack import StackLayout
from shared.broker_security import BrokerSecurityError
from shared.clock import FileClock

READ_TIMEOUT = 10.0
FINAL_STATUSES = frozenset({"completed", "cancelled", "refunded"})
BROKER_TROUBLE = (KafkaUnavailableError, KafkaError, BrokerSecurityError, OSError)
"""What reading the topics may fail with when the broker is away or its credentials are not here."""


class Unavailable(RuntimeError):
    """A service's read API, or the broker, could not say."""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One message of an order's timeline, as the page lists it."""

    published: datetime
    occurred_at: datetime
    source: str
    topic: str
    message_type: str
    what: str
    by_operator: bool
    dead_lettered: bool


def timeline_rows(entries: Sequence[Entry]) -> list[TimelineRow]:
    return [
        TimelineRow(
            published=datetime.fromtimestamp(e.published_ms / 1000).astimezone(),
            occurred_at=e.envelope.occurred_at,
            source=e.envelope.source,
            topic=e.topic,
            message_type=e.envelope.type,
            what=what_changed(e),
            by_operator=e.envelope.source == "operator",
            dead_lettered=e.dead_letter is not None,
        )
        for e in entries
    ]


@dataclass(frozen=True, slots=True)
class OrderView:
    """Everything the order page shows; a part that could not be read is None, with why in ``problems``."""

    order_id: str
    saga: dict[str, Any] | None
    payment: dict[str, Any] | None
    escrow: dict[str, Any] | None
    timeline: list[TimelineRow]
    problems: list[str]

    @property
    def final(self) -> bool:
        """Completed, cancelled or refunded: nothing is left for an operator to do with it."""
        return self.saga is not None and self.saga["status"] in FINAL_STATUSES

    @property
    def in_escrow_now(self) -> dict[str, Any] | None:
        """What escrow holds for the order at this moment (nothing once released or returned)."""
        hold = (self.escrow or {}).get("hold")
        if not hold:
            return None
        held = hold["still_held"] if hold["status"] == "held" else {**hold["still_held"], "amount_minor": 0}
        return dict(held)

    @property
    def last_error(self) -> str | None:
        """The latest failure any part names: the payment's, a refund's, a rejection on the timeline."""
        failures = [row.what for row in self.timeline if row.dead_lettered or "Rejected" in row.message_type]
        if self.payment and self.payment.get("failure_reason"):
            failures.append(f"payment: {self.payment['failure_reason']}: {self.payment.get('failure_detail') or ''}")
        refunds = (self.saga or {}).get("refunds", [])
        failures += [f"refund {r['refund_id']}: {r['failure']}" for r in refunds if r.get("failure")]
        return failures[-1] if failures else None


class StackReads:
    """The stack's read APIs (found in its endpoints file at each read: a restarted stack moves them)
    and its broker."""

    def __init__(self, state_dir: Any, bootstrap_servers: str) -> None:
        self.layout = StackLayout.of(state_dir)
        self.bootstrap_servers = bootstrap_servers
        self._client = httpx.AsyncClient(timeout=READ_TIMEOUT)

    async def close(self) -> None:
        await self._client.aclose()

    def now(self) -> datetime:
        """The stack's clock (X8): deadlines are compared with it, not with this machine's."""
        return FileClock(self.layout.clock_file).now()

    def _endpoint(self, service: str) -> str:
        try:
            found = json.loads(self.layout.endpoints_file.read_text()).get(service)
        except (OSError, ValueError, AttributeError) as error:
            raise Unavailable(f"the stack's endpoints file {self.layout.endpoints_file}: {error}") from None
        if not isinstance(found, str):
            raise Unavailable(f"the {service} service's read API is not in {self.layout.endpoints_file}")
        return found

    async def get(self, service: str, path: str, **params: str | int) -> dict[str, Any] | None:
        """``GET path`` of ``service``'s read API: its JSON, None for a 404, Unavailable otherwise."""
        base = self._endpoint(service)
        try:
            response = await self._client.get(f"{base}{path}", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise Unavailable(f"the {service} service at {base} did not answer: {error}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200 or not isinstance(body, dict):
            said = body.get("error") if isinstance(body, dict) else str(body)[:200]
            raise Unavailable(f"the {service} service answered {response.status_code}: {said}")
        return body

    async def order(self, order_id: str) -> OrderView:
        problems: list[str] = []
        parts: dict[str, dict[str, Any] | None] = {}
        for service, path in (("saga", "/order"), ("payment", "/payment"), ("escrow", "/order")):
            try:
                parts[service] = await self.get(service, path, order_id=order_id)
            except Unavailable as error:
                parts[service] = None
                problems.append(str(error))
        try:
            timeline = timeline_rows(await read_order(self.bootstrap_servers, order_id, stall_timeout=READ_TIMEOUT))
        except BROKER_TROUBLE as error:
            timeline = []
            problems.append(f"the timeline: the broker at {self.bootstrap_servers}: {error}")
        return OrderView(order_id, parts["saga"], parts["payment"], parts["escrow"], timeline, problems)

    async def stuck(self, minutes: int, reason: str | None, page: int) -> dict[str, Any]:
        params: dict[str, str | int] = {"minutes": minutes, "page": page, "per_page": 50}
        if reason:
            params["reason"] = reason
        return await self.get("saga", "/orders/stuck", **params) or {}

    async def identities(self, status: str) -> dict[str, Any]:
        return await self.get("account", "/identities", status=status, per_page=100) or {}

    async def accounts(self, status: str) -> dict[str, Any]:
        return await self.get("account", "/accounts", status=status, per_page=100) or {}

    async def account(self, account_id: str) -> dict[str, Any] | None:
        return await self.get("account", "/account", account_id=account_id)

    async def undelivered(self) -> list[dict[str, Any]]:
        body = await self.get("notification", "/notifications/undelivered") or {}
        rows: list[dict[str, Any]] = body.get("undelivered", [])
        return rows

    async def dead_letters(self) -> list[DeadLetter]:
        try:
            return await read_dead_letters(self.bootstrap_servers, stall_timeout=READ_TIMEOUT)
        except BROKER_TROUBLE as error:
            raise Unavailable(f"the dead letters: the broker at {self.bootstrap_servers}: {error}") from None
