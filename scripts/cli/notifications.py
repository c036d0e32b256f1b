"""``tradeguard notifications``: the operator's view of email that did not go out (N2), and re-drives.

tradeguard notifications undelivered              # pending (retrying) and dead-lettered emails, oldest first
tradeguard notifications undelivered --state dead --json
tradeguard notifications redrive NOTIFICATION_ID  # send a dead-lettered email again
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from contracts import RedriveNotification
from scripts.marketplace import Marketplace
from scripts.stack import StackLayout
from shared.settings import KafkaSettings

app = typer.Typer(
    help="Email the notification service has not delivered: list it, re-drive it (N2).", no_args_is_help=True
)
StateDir = Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")]


def notification_url(state_dir: Path) -> str:
    endpoints = StackLayout.of(state_dir).endpoints_file
    if not endpoints.exists():
        raise typer.BadParameter(f"{endpoints} not found: is the stack running (make run), or pass --state-dir")
    found = json.loads(endpoints.read_text()).get("notification")
    if not found:
        raise typer.BadParameter(f"{endpoints} names no notification service: restart the stack")
    return str(found)


def fetch_undelivered(base_url: str, state: str | None) -> list[dict[str, Any]]:
    params = {"state": state} if state else {}
    response = httpx.get(f"{base_url}/notifications/undelivered", params=params, timeout=10)
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise typer.BadParameter(str(body.get("error", response.text)))
    rows: list[dict[str, Any]] = body["undelivered"]
    return rows


@app.command()
def undelivered(
    state: Annotated[str | None, typer.Option(help="pending (still retrying) or dead; default both.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's answer as it is.")] = False,
    state_dir: StateDir = Path(".data"),
) -> None:
    """Emails not delivered yet (retrying with backoff) or given up on (dead), with the last error."""
    rows = fetch_undelivered(notification_url(state_dir), state)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"undelivered email: {len(rows)}")
    for column in ("notification", "account", "to", "kind", "state", "attempts", "next attempt", "last error"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["notification_id"],
            row["account_id"],
            row["address"],
            row["kind"],
            row["state"],
            str(row["attempts"]),
            row["next_attempt_at"] or "",
            row["last_error"] or "",
        )
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


@app.command()
def redrive(
    notification_id: Annotated[str, typer.Argument(help="As `undelivered` lists it.")],
    operator: Annotated[str, typer.Option(help="Who re-drives it, for the log.")] = "operator",
    bootstrap_servers: Annotated[str | None, typer.Option("--bootstrap-servers", "-b")] = None,
    state_dir: StateDir = Path(".data"),
) -> None:
    """Send a dead-lettered email again (attempts start over); refused unless it is dead."""
    try:
        wanted = uuid.UUID(notification_id)
    except ValueError:
        raise typer.BadParameter(f"not a notification id: {notification_id[:60]!r}") from None
    rows = fetch_undelivered(notification_url(state_dir), "dead")
    row = next((r for r in rows if r["notification_id"] == str(wanted)), None)
    if row is None:
        raise typer.BadParameter(f"{wanted} is not among the dead-lettered emails (see `undelivered --state dead`)")
    command = RedriveNotification(account_id=row["account_id"], notification_id=wanted, operator_id=operator)
    servers = bootstrap_servers or KafkaSettings().bootstrap_servers

    async def publish() -> None:
        async with Marketplace(servers, source="operator") as operator_client:
            await operator_client.publish(
                command, correlation_id=str(wanted), idempotency_key=f"redrive:{wanted}:{uuid.uuid4().hex}"
            )

    asyncio.run(publish())
    typer.echo(f"re-driven: {wanted} ({row['kind']} to {row['address']}); the email worker sends it now")
