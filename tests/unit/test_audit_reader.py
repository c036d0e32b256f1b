"""G1, the audit's reader: the books fetched page by page from the services' read APIs (HTTP GET,
JSON) and audited, the CLI's exit code and report, and an unreadable source named as the break.

The read APIs are served here by a small HTTP server in a thread, answering the shapes the
saga, payment and escrow services answer, from books made with the real ledger.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts import Money
from scripts.audit import AuditCode, Books, Endpoints, audit_endpoints, audit_stack, read_books
from scripts.cli import app
from services.escrow.domain.ledger import AccountBalance, TransferRecord
from shared.clock import ManualClock, advance_clock_file
from tests.unit.test_audit_checks import T0, clean_books

Route = Callable[[Mapping[str, str]], tuple[int, Any]]


def _money(money: Money | None) -> dict[str, Any] | None:
    return None if money is None else {"amount_minor": money.amount_minor, "currency": money.currency}


def _record(row_id: int, record: TransferRecord) -> dict[str, Any]:
    row = record.to_row()
    row["applied_at"] = record.applied_at.isoformat()
    row["expires_at"] = None if record.expires_at is None else record.expires_at.isoformat()
    return {"id": row_id, **row}


def _balance(balance: AccountBalance) -> dict[str, Any]:
    return {
        "code": balance.account.code,
        "currency": balance.account.currency,
        "debits_pending": balance.debits_pending,
        "debits_posted": balance.debits_posted,
        "credits_pending": balance.credits_pending,
        "credits_posted": balance.credits_posted,
    }


def paged(key: str, rows: list[dict[str, Any]]) -> Route:
    """A ``page``/``per_page`` route as the services answer it (filtered by ``status`` when asked)."""

    def answer(query: Mapping[str, str]) -> tuple[int, Any]:
        chosen = [r for r in rows if query.get("status") in (None, "", r["status"])]
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "20"))
        if per_page > 100:
            return 400, {"error": "per_page: a whole number from 1 to 100"}
        start = (page - 1) * per_page
        return 200, {key: chosen[start : start + per_page], "total": len(chosen), "page": page, "per_page": per_page}

    return answer


def records_route(records: tuple[TransferRecord, ...]) -> Route:
    """``GET /ledger/records?after=<id>&limit=<n>``: rows after an id, and the next id (null at the end)."""
    rows = [_record(100 + seq, record) for seq, record in enumerate(records)]  # row ids need not be seqs

    def answer(query: Mapping[str, str]) -> tuple[int, Any]:
        after, limit = int(query.get("after", "0")), int(query.get("limit", "100"))
        found = [r for r in rows if r["id"] > after][:limit]
        more = found and found[-1]["id"] < rows[-1]["id"]
        return 200, {"records": found, "next": found[-1]["id"] if more else None}

    return answer


def escrow_routes(books: Books) -> dict[str, Route]:
    holds = [
        {
            "order_id": h.order_id,
            "buyer_id": h.buyer_id,
            "seller_id": h.seller_id,
            "amount": _money(h.amount),
            "still_held": _money(h.still_held),
            "status": h.status,
        }
        for h in books.holds
    ]
    balances = [_balance(b) for b in books.ledger.balances.values()]
    return {
        "/holds": paged("holds", holds),
        "/ledger/records": records_route(books.ledger.records),
        "/ledger/balances": lambda _: (200, {"accounts": balances}),
    }


def saga_routes(books: Books) -> dict[str, Route]:
    orders = [
        {
            "order_id": o.order_id,
            "buyer_id": o.buyer_id,
            "seller_id": o.seller_id,
            "amount": _money(o.amount),
            "status": o.status.value,
            "reason": o.reason,
            "returned": _money(Money(amount_minor=o.returned_minor, currency=o.amount.currency)),
            "refunded": _money(Money(amount_minor=o.refunded_minor, currency=o.amount.currency)),
            "still_held": _money(o.still_held),
            "refunding": o.refunding,
            "updated_at": o.updated_at.isoformat(),
        }
        for o in books.orders
    ]
    return {"/orders": paged("orders", orders)}


def payment_routes(books: Books) -> dict[str, Route]:
    payments = [
        {"order_id": p.order_id, "amount": _money(p.amount), "status": p.status, "refunded": _money(p.refunded)}
        for p in books.payments
    ]
    failed = {"order_id": "declined", "amount": _money(Money(amount_minor=9000, currency="USD")), "status": "failed"}
    return {"/payments": paged("payments", [*payments, {**failed, "refunded": None}])}


@dataclass
class ReadApis:
    """One HTTP server per service, each answering its routes; ``seen`` logs every request."""

    routes: dict[str, dict[str, Route]]
    seen: list[str] = field(default_factory=list)
    servers: dict[str, ThreadingHTTPServer] = field(default_factory=dict)

    def url(self, service: str) -> str:
        host, port = self.servers[service].server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(saga=self.url("saga"), payment=self.url("payment"), escrow=self.url("escrow"))

    def start(self) -> None:
        for service, routes in self.routes.items():
            self.servers[service] = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(routes))
            server = self.servers[service]
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()

    def _handler(self, routes: dict[str, Route]) -> type[BaseHTTPRequestHandler]:
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                path, _, query = self.path.partition("?")
                route = routes.get(path)
                params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
                code, body = route(params) if route else (404, "not found")
                data = json.dumps(body).encode() if route else b"not found\n"
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if route else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        return Handler


def serve(books: Books, *, escrow: dict[str, Route] | None = None) -> ReadApis:
    apis = ReadApis(
        {
            "saga": saga_routes(books),
            "payment": payment_routes(books),
            "escrow": escrow_routes(books) if escrow is None else escrow,
        }
    )
    apis.start()
    return apis


@pytest.fixture
def apis() -> Iterator[ReadApis]:
    """Clean books whose hold's timeout is 30 days from today (the stack tests read the system clock)."""
    served = serve(clean_books(t0=datetime.now(UTC)))
    yield served
    served.stop()


def clock_at(books: Books) -> ManualClock:
    return ManualClock(books.taken_at)


async def test_g1_the_reader_fetches_every_page_of_every_source() -> None:
    books = clean_books()
    apis = serve(books)

    try:
        read = await read_books(apis.endpoints, clock_at(books), per_page=2)
    finally:
        apis.stop()

    assert read.orders == books.orders
    assert read.holds == books.holds
    assert read.payments == books.payments  # only the captured ones: the failed one was filtered out
    assert read.ledger.records == books.ledger.records
    assert dict(read.ledger.balances) == dict(books.ledger.balances)
    record_pages = [p for p in apis.seen if p.startswith("/ledger/records")]
    assert record_pages[0] == "/ledger/records?limit=2"
    assert record_pages[1] == "/ledger/records?limit=2&after=101"  # follows `next`
    assert any("status=captured" in p and "page=2" in p for p in apis.seen if p.startswith("/payments"))


async def test_g1_clean_books_read_over_http_balance(apis: ReadApis) -> None:
    report = await audit_endpoints(apis.endpoints, ManualClock(datetime.now(UTC)), per_page=3)

    assert report.ok, report.summary()


async def test_g1_broken_books_read_over_http_are_named() -> None:
    books = clean_books()
    apis = serve(books)
    try:
        report = await audit_endpoints(apis.endpoints, ManualClock(T0 + timedelta(days=31)))
    finally:
        apis.stop()

    assert [(b.code, b.subject) for b in report.breaks] == [("pending_past_timeout", "record 0 (hold:held)")]


async def test_g1_a_source_that_does_not_serve_its_routes_is_the_break() -> None:
    books = clean_books()
    apis = serve(books, escrow={})  # an escrow service without its read API: 404 everywhere
    try:
        report = await audit_endpoints(apis.endpoints, clock_at(books))
    finally:
        apis.stop()

    (found,) = report.breaks
    assert found.code == AuditCode.SOURCE_UNREADABLE
    assert found.subject == f"{apis.url('escrow')}/holds"
    assert "answered 404" in found.detail


async def test_g1_a_source_that_does_not_answer_is_the_break(apis: ReadApis) -> None:
    endpoints = Endpoints(saga="http://127.0.0.1:9", payment=apis.url("payment"), escrow=apis.url("escrow"))

    report = await audit_endpoints(endpoints, ManualClock(datetime.now(UTC)))

    (found,) = report.breaks
    assert (found.code, found.subject) == (AuditCode.SOURCE_UNREADABLE, "http://127.0.0.1:9/orders")
    assert "no answer" in found.detail


async def test_g1_malformed_answers_are_a_source_break() -> None:
    books = clean_books()
    routes = escrow_routes(books)
    routes["/ledger/balances"] = lambda _: (200, {"accounts": [{"code": "not an account"}]})
    apis = serve(books, escrow=routes)
    try:
        report = await audit_endpoints(apis.endpoints, clock_at(books))
    finally:
        apis.stop()

    (found,) = report.breaks
    assert (found.code, found.subject) == (AuditCode.SOURCE_UNREADABLE, f"{apis.url('escrow')}/ledger/balances")
    assert "not an account" in found.detail


def write_endpoints(state_dir: Path, apis: ReadApis) -> None:
    endpoints = apis.endpoints
    state_dir.joinpath("endpoints.json").write_text(
        json.dumps({"saga": endpoints.saga, "payment": endpoints.payment, "escrow": endpoints.escrow})
    )


async def test_g1_the_stack_is_found_by_its_endpoints_file_and_audited_at_its_clock(
    apis: ReadApis, tmp_path: Path
) -> None:
    assert (await audit_stack(tmp_path)).codes() == {AuditCode.SOURCE_UNREADABLE}  # no endpoints file yet
    write_endpoints(tmp_path, apis)

    assert (await audit_stack(tmp_path)).ok  # today, on the system clock: the hold's timeout is ahead
    advance_clock_file(tmp_path / "clock.json", timedelta(days=400))  # X8: the stack's clock, not ours
    assert (await audit_stack(tmp_path)).codes() == {"pending_past_timeout"}


def test_g1_tradeguard_audit_exits_0_on_clean_books_and_1_naming_each_break(apis: ReadApis, tmp_path: Path) -> None:
    write_endpoints(tmp_path, apis)
    cli = CliRunner()

    clean = cli.invoke(app, ["audit", "--state-dir", str(tmp_path)])
    as_json = cli.invoke(app, ["audit", "--state-dir", str(tmp_path), "--json"])
    advance_clock_file(tmp_path / "clock.json", timedelta(days=400))
    broken = cli.invoke(app, ["audit", "--state-dir", str(tmp_path)])
    wrong = cli.invoke(app, ["audit", "--state-dir", str(tmp_path), "--stuck-after", "soon"])

    assert clean.exit_code == 0, clean.stdout
    assert "the books balance" in clean.stdout
    assert "escrow holding per currency" in clean.stdout
    body = json.loads(as_json.stdout)
    assert (body["ok"], body["breaks"], body["escrow"]) == (
        True,
        [],
        [{"currency": "USD", "ledger_minor": 3500, "orders_minor": 3500}],
    )
    assert broken.exit_code == 1
    assert "pending_past_timeout" in broken.stdout
    assert "hold:held" in broken.stdout
    assert wrong.exit_code == 2
    assert "90s, 15m, 2h or 1d12h" in wrong.output
