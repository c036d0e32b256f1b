"""``tradeguard payments``: what the payment service tells about an account (P7).

tradeguard payments history buyer-1                 # newest first, 20 a page
tradeguard payments history buyer-1 --page 2 --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from contracts import Money
from scripts.stack import StackLayout

app = typer.Typer(help="The payment service's read API: an account's payment history (P7).", no_args_is_help=True)
StateDir = Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")]


def payment_url(state_dir: Path) -> str:
    endpoints = StackLayout.of(state_dir).endpoints_file
    if not endpoints.exists():
        raise typer.BadParameter(f"{endpoints} not found: is the stack running (make run), or pass --state-dir")
    return str(json.loads(endpoints.read_text())["payment"])


def fetch_history(base_url: str, account_id: str, page: int, per_page: int) -> dict[str, Any]:
    params: dict[str, str | int] = {"account_id": account_id, "page": page, "per_page": per_page}
    response = httpx.get(f"{base_url}/payments", params=params, timeout=10)
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise typer.BadParameter(str(body.get("error", response.text)))
    return body


@app.command()
def history(
    account_id: str,
    page: Annotated[int, typer.Option(min=1)] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=100)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as it is.")] = False,
    state_dir: StateDir = Path(".data"),
) -> None:
    """Every payment of ACCOUNT_ID, newest first, with its status and, when it failed, why."""
    body = fetch_history(payment_url(state_dir), account_id, page, per_page)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"payments of {account_id}: page {body['page']}, {body['total']} in all")
    for column in ("created", "order", "price", "paid", "fee", "source", "status", "refunded", "why"):
        table.add_column(column)
    for entry in body["payments"]:
        breakdown = entry.get("breakdown") or {}
        table.add_row(
            entry["created_at"] or "",
            entry["order_id"],
            _shown(entry["amount"]),
            _shown(breakdown.get("total")),
            _shown(breakdown.get("fee")),
            entry["funding_type"] or "",
            entry["status"],
            _shown(entry.get("refunded")),
            entry["failure_reason"] or "",
        )
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


def _shown(money: dict[str, Any] | None) -> str:
    return "" if money is None else str(Money(amount_minor=money["amount_minor"], currency=money["currency"]))
