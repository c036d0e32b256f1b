"""A chaos run's report in the terminal: the figures, each violation, the first broken order's
timeline and the command that replays the run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scripts.chaos.run import ChaosReport
from scripts.scenarios.timeline import print_timeline

SHOWN_VIOLATIONS = 40


def print_report(console: Console, report: ChaosReport) -> None:
    options = report.options
    figures = Table(title=f"Chaos run, seed {options.seed}", title_justify="left", show_header=False)
    figures.add_column("figure")
    figures.add_column("value", overflow="fold")
    figures.add_row("orders driven", f"{len(report.driven)} of {options.orders} ({_counts(report.branches())})")
    figures.add_row("outcomes", _counts(report.outcomes()))
    figures.add_row("faults injected", _counts(report.figures.injected) or "none")
    figures.add_row("services that died unasked", _counts(report.figures.unexpected_exits) or "none")
    figures.add_row("copies the broker refused", str(report.figures.copies_failed))
    figures.add_row("poison records sent", str(len(report.poison)))
    figures.add_row("dead letters on the topic", str(report.dead_letters))
    figures.add_row(
        "longest time to final after the faults stopped",
        f"{report.longest_to_final:.1f} s ({len(report.after_faults)} orders under way then; "
        f"{report.begun_after_faults} begun later)",
    )
    figures.add_row("books audit", report.audit.summary() if report.audit else "not run")
    figures.add_row("seconds", ", ".join(f"{k} {v:.0f}" for k, v in report.seconds.items()))
    figures.add_row("invariant violations", str(len(report.violations)))
    console.print(figures)
    for violation in report.violations[:SHOWN_VIOLATIONS]:
        console.print(f"  [red]{escape(str(violation))}[/]")
    if len(report.violations) > SHOWN_VIOLATIONS:
        console.print(f"  ... and {len(report.violations) - SHOWN_VIOLATIONS} more (report.json)")
    first = report.first_broken_order()
    if first is not None:
        print_timeline(console, report.first_timeline, f"the first order an invariant broke on: {first}")
    if report.ok:
        console.print(
            f"[bold green]chaos run passed[/]: seed {options.seed}, {len(report.driven)} orders, 0 violations"
        )
    else:
        console.print(f"[bold red]chaos run failed[/]; replay it with: [bold]{escape(options.replay_command())}[/]")
    console.print(f"report: {options.state_dir / 'report.json'}; logs: {options.state_dir / 'logs'}")


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()))
