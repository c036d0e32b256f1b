"""``tradeguard settlements``: what the escrow service released to a seller on one day (E4).

tradeguard settlements seller-9 --day 2026-03-01          # each release, and the total per currency
tradeguard settlements seller-9 --day 2026-03-01 --json   # the read API's answer as it is
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from contracts import Money
from scripts.stack import StackLayout

StateDir = Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")]


def escrow_url(state_dir: Path) -> str:
    endpoints = StackLayout.of(state_dir).endpoints_file
    if not endpoints.exists():
        raise typer.BadParameter(f"{endpoints} not found: is the stack running (make run), or pass --state-dir")
    found = json.loads(endpoints.read_text())
    if "escrow" not in found:
        raise typer.BadParameter(f"{endpoints} names no escrow read API: restart the stack")
    return str(found["escrow"])


def fetch_settlements(base_url: str, seller_id: str, day: date) -> dict[str, Any]:
    params = {"seller_id": seller_id, "day": day.isoformat()}
    try:
        response = httpx.get(f"{base_url}/settlements", params=params, timeout=10)
    except httpx.HTTPError as error:
        raise typer.BadParameter(f"the escrow service at {base_url} did not answer: {error}") from None
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise typer.BadParameter(str(body.get("error", response.text)))
    return body


def settlements(
    seller_id: str,
    day: Annotated[str, typer.Option(help="The day (UTC) as YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as it is.")] = False,
    state_dir: StateDir = Path(".data"),
) -> None:
    """The releases that became SELLER_ID's payable on DAY, and the total per currency (E4)."""
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(f"--day: a date as YYYY-MM-DD, not {day!r}") from None
    body = fetch_settlements(escrow_url(state_dir), seller_id, when)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    totals = ", ".join(_shown(total) for total in body["totals"]) or "nothing"
    table = Table(title=f"settlements of {seller_id} on {body['day']}: {body['count']} released, {totals}")
    for column in ("released at", "order", "amount"):
        table.add_column(column)
    for release in body["releases"]:
        table.add_row(release["released_at"], release["order_id"], _shown(release["amount"]))
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


def _shown(money: dict[str, Any]) -> str:
    return str(Money(amount_minor=money["amount_minor"], currency=money["currency"]))
