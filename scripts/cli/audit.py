"""``tradeguard audit``: the books audit of the running stack (G1); exit 1 on any break.

tradeguard audit                          # the stack of `make run` (.data)
tradeguard audit --state-dir /tmp/stack --json
tradeguard audit --stuck-after 5m         # an order waiting on the system longer than that is stuck
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_SPAN = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_span(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d12h``: a positive length of time; BadParameter otherwise."""
    parts = _SPAN.findall(text)
    if not parts or "".join(n + unit for n, unit in parts) != text.strip():
        raise typer.BadParameter(f"a length of time such as 90s, 15m, 2h or 1d12h, not {text!r}")
    span = sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta(0))
    if span <= timedelta(0):
        raise typer.BadParameter(f"a length of time above zero, not {text!r}")
    return span


def audit(
    state_dir: Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")] = Path(".data"),
    as_json_output: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    stuck_after: Annotated[
        str, typer.Option(help="How long an order may wait on the system without progress (and no reason).")
    ] = "15m",
    awaiting_buyer_after: Annotated[
        str | None,
        typer.Option(help="Also count an order in escrow waiting this long for the buyer's receipt as stuck."),
    ] = None,
) -> None:
    """Check the whole system's books (G1): the ledger sums to zero per currency, escrow holds what the
    orders in escrow hold, every captured payment is held, released or refunded (once), no pending
    transfer is past its timeout and no order is stuck without a reason. Exit 1 naming each break."""
    # Imported here: the dead-letter commands must not need the services' code to work.
    from scripts.audit.checks import AuditLimits
    from scripts.audit.reader import audit_stack
    from scripts.audit.report import as_json, print_report

    limits = AuditLimits(
        stuck_after=parse_span(stuck_after),
        awaiting_buyer_after=None if awaiting_buyer_after is None else parse_span(awaiting_buyer_after),
    )
    report = asyncio.run(audit_stack(state_dir, limits))
    if as_json_output:
        typer.echo(json.dumps(as_json(report), indent=2))
    else:
        print_report(Console() if sys.stdout.isatty() else Console(width=200), report)
    raise typer.Exit(0 if report.ok else 1)
