"""G1: the audit's report, for a person (rich tables) or a program (JSON)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scripts.audit.checks import AuditReport, show


def as_json(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "taken_at": report.taken_at.isoformat(),
        "figures": dict(report.figures),
        "escrow": [
            {"currency": t.currency, "ledger_minor": t.ledger_minor, "orders_minor": t.orders_minor}
            for t in report.escrow
        ],
        "breaks": [
            {"check": str(b.check), "code": b.code, "subject": b.subject, "detail": b.detail} for b in report.breaks
        ],
    }


def print_report(console: Console, report: AuditReport) -> None:
    """What was read, escrow per currency, and every break (or that the books balance)."""
    seen = ", ".join(f"{n} {what}" for what, n in report.figures.items())
    console.print(f"[bold]books audit[/] at {report.taken_at.isoformat()} (the stack's clock): {escape(seen)}")
    if report.escrow:
        escrow = Table(title="escrow holding per currency", title_justify="left")
        for column in ("currency", "in the ledger", "orders in escrow"):
            escrow.add_column(column)
        for total in report.escrow:
            escrow.add_row(
                total.currency, show(total.ledger_minor, total.currency), show(total.orders_minor, total.currency)
            )
        console.print(escrow)
    if report.ok:
        console.print("[bold green]the books balance[/]: no break found")
        return
    breaks = Table(title=f"{len(report.breaks)} break(s)", title_justify="left")
    for column in ("check", "break", "about", "detail"):
        breaks.add_column(column, overflow="fold")
    for found in report.breaks:
        breaks.add_row(str(found.check), f"[red]{found.code}[/]", escape(found.subject), escape(found.detail))
    console.print(breaks)
    console.print(f"[bold red]the books do not balance[/]: {len(report.breaks)} break(s)")
