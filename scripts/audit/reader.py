"""G1: reading the books from a running stack, each service through its own read API (HTTP GET, JSON).

Sources, as the stack's endpoints file (``<state dir>/endpoints.json``) names them:

- saga ``GET /orders?page=&per_page=``: every order;
- payment ``GET /payments?status=captured&page=&per_page=``: every captured payment;
- escrow ``GET /holds?page=&per_page=``, ``GET /ledger/records?after=<id>&limit=<n>`` (until
  ``next`` is null) and ``GET /ledger/balances``.

Never a service's tables. A source that does not answer, answers an error or answers what its
API does not promise is :class:`SourceUnreadable`; the audit then reports that one break and
checks nothing else (books it could not read are not books that balance).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from scripts.audit.books import (
    Books,
    HoldSnapshot,
    LedgerSnapshot,
    OrderSnapshot,
    PaymentSnapshot,
    SnapshotError,
    balance_from_json,
    record_from_json,
)
from scripts.audit.checks import AuditLimits, AuditReport, audit, unreadable
from scripts.stack import StackLayout
from shared.clock import Clock, FileClock
from shared.errors import TradeGuardError

PER_PAGE = 100
"""Rows per page asked of every source (the services' read APIs allow up to 100)."""
SOURCES = ("saga", "payment", "escrow")
T = TypeVar("T")


class SourceUnreadable(TradeGuardError):
    """A service's read API could not be read: ``source`` names the URL, ``detail`` what went wrong."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs of the read APIs the audit reads."""

    saga: str
    payment: str
    escrow: str

    @classmethod
    def of_stack(cls, state_dir: Path) -> Endpoints:
        """The URLs a running stack wrote to its endpoints file."""
        path = StackLayout.of(state_dir).endpoints_file
        try:
            found = json.loads(path.read_text())
        except FileNotFoundError:
            raise SourceUnreadable(
                str(path), "not found: is the stack running (make run), or pass --state-dir"
            ) from None
        except ValueError as error:
            raise SourceUnreadable(str(path), f"not JSON: {error}") from None
        missing = [name for name in SOURCES if not isinstance(found.get(name), str)]
        if missing:
            raise SourceUnreadable(str(path), f"names no {', '.join(missing)} endpoint: restart the stack")
        return cls(found["saga"], found["payment"], found["escrow"])


class BooksReader:
    """Fetches every snapshot, page by page, with one HTTP client."""

    def __init__(self, endpoints: Endpoints, client: httpx.AsyncClient, *, per_page: int = PER_PAGE) -> None:
        self.endpoints = endpoints
        self.client = client
        self.per_page = per_page

    async def read(self, clock: Clock) -> Books:
        """The books as the services tell them now.

        The saga is read first: an order it shows in escrow has its payment and hold already,
        so a step landing while the audit reads shows as in flight, not as a break.
        """
        taken_at = clock.now()
        saga, payment, escrow = self.endpoints.saga, self.endpoints.payment, self.endpoints.escrow
        orders = await self._pages(saga, "/orders", "orders")
        payments = await self._pages(payment, "/payments", "payments", status="captured")
        holds = await self._pages(escrow, "/holds", "holds")
        records = await self._records()
        balances = _rows(f"{escrow}/ledger/balances", await self._get(escrow, "/ledger/balances", {}), "accounts")
        served = _parsed(f"{escrow}/ledger/balances", balance_from_json, balances)
        return Books(
            taken_at=taken_at,
            ledger=LedgerSnapshot(
                tuple(_parsed(f"{escrow}/ledger/records", record_from_json, records)),
                {balance.account: balance for balance in served},
            ),
            holds=tuple(_parsed(f"{escrow}/holds", HoldSnapshot.from_json, holds)),
            orders=tuple(_parsed(f"{saga}/orders", OrderSnapshot.from_json, orders)),
            payments=tuple(_parsed(f"{payment}/payments", PaymentSnapshot.from_json, payments)),
        )

    async def _get(self, base: str, path: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        url = f"{base}{path}"
        try:
            response = await self.client.get(url, params=params)
        except httpx.HTTPError as error:
            raise SourceUnreadable(url, f"no answer: {error!r}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            said = body.get("error") if isinstance(body, dict) else response.text[:200].strip()
            raise SourceUnreadable(url, f"answered {response.status_code}: {said}")
        if not isinstance(body, dict):
            raise SourceUnreadable(url, "answered something other than a JSON object")
        return body

    async def _pages(self, base: str, path: str, key: str, **filters: str) -> list[dict[str, Any]]:
        """Every row of a paged route (``page``/``per_page``/``total``), once each."""
        rows: dict[str, dict[str, Any]] = {}
        page = 1
        while True:
            body = await self._get(base, path, {**filters, "page": page, "per_page": self.per_page})
            found = _rows(f"{base}{path}", body, key)
            for row in found:
                rows.setdefault(str(row.get("order_id")), row)  # rows shifted by an insert come twice
            total = body.get("total")
            if not isinstance(total, int):
                raise SourceUnreadable(f"{base}{path}", f"answered no total: {total!r}")
            if not found or page * self.per_page >= total:
                return list(rows.values())
            page += 1

    async def _records(self) -> list[dict[str, Any]]:
        """The whole ledger log, oldest first, following ``next`` until it is null."""
        records: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            params: dict[str, str | int] = {"limit": self.per_page}
            if after is not None:
                params["after"] = after
            body = await self._get(self.endpoints.escrow, "/ledger/records", params)
            records += _rows(f"{self.endpoints.escrow}/ledger/records", body, "records")
            following = body.get("next")
            if following is None:
                return records
            if not isinstance(following, int) or (after is not None and following <= after):
                raise SourceUnreadable(
                    f"{self.endpoints.escrow}/ledger/records", f"next {following!r} does not move on"
                )
            after = following


def _rows(source: str, body: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    rows = body.get(key)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise SourceUnreadable(source, f"{key}: a list of objects, not {str(rows)[:60]!r}")
    return rows


def _parsed(source: str, parse: Callable[[dict[str, Any]], T], rows: list[dict[str, Any]]) -> list[T]:
    """Each row as its snapshot; a row that is not what the API promises names the source."""
    try:
        return [parse(row) for row in rows]
    except SnapshotError as error:
        raise SourceUnreadable(source, str(error)) from None


async def read_books(endpoints: Endpoints, clock: Clock, *, per_page: int = PER_PAGE) -> Books:
    async with httpx.AsyncClient(timeout=10) as client:
        return await BooksReader(endpoints, client, per_page=per_page).read(clock)


async def audit_endpoints(
    endpoints: Endpoints, clock: Clock, limits: AuditLimits | None = None, *, per_page: int = PER_PAGE
) -> AuditReport:
    """Read the books from ``endpoints`` and audit them; an unreadable source is the one break."""
    try:
        books = await read_books(endpoints, clock, per_page=per_page)
    except SourceUnreadable as error:
        return unreadable(clock.now(), error.source, error.detail)
    return audit(books, limits)


async def audit_stack(
    state_dir: Path, limits: AuditLimits | None = None, *, attempts: int = 1, pause: float = 1.0
) -> AuditReport:
    """Audit the stack whose state folder is ``state_dir``, at the time its services see (X8).

    With ``attempts`` above 1 a report with breaks is taken again after ``pause`` seconds, up to
    that many times, and the last is returned: right after a scenario the last messages may
    still be on their way, and no event says when every service is at rest. A real break
    persists; one caught between two services' steps does not.
    """
    layout = StackLayout.of(state_dir)
    clock = FileClock(layout.clock_file)
    try:
        endpoints = Endpoints.of_stack(state_dir)
    except SourceUnreadable as error:
        return unreadable(clock.now(), error.source, error.detail)
    report = await audit_endpoints(endpoints, clock, limits)
    for _ in range(attempts - 1):
        if report.ok:
            break
        await asyncio.sleep(pause)
        report = await audit_endpoints(endpoints, clock, limits)
    return report
