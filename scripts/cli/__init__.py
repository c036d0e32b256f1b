"""The ``tradeguard`` command (``[project.scripts]`` in pyproject.toml points here).

tradeguard run                       # as `make run`: Kafka, the five services, a demo order; Ctrl-C stops it
tradeguard demo                      # as `make demo`: exits 0 iff the demo order completed
tradeguard dead-letters list         # what no service could process (secrets masked)
tradeguard dead-letters redrive ID   # send the original record back to its source topic
tradeguard scenario --list           # the scenario catalogue (X7): names, features, summaries
tradeguard scenario happy-path       # run one against the running stack (`make run`); exit 0 iff it passed
tradeguard scenario --all            # run every one and print a pass/fail table (--start-stack: as `make scenarios`)
tradeguard clock advance 16d         # move every service of the running stack 16 days on (X8)
tradeguard payments history ACCOUNT  # an account's payments, newest first, paged (P7)
tradeguard notifications undelivered # email retrying or dead-lettered (N2); `redrive ID` sends one again
tradeguard audit                     # the books audit of the running stack (G1); exit 1 naming each break
tradeguard settlements SELLER --day 2026-03-01  # what escrow released to a seller that day (E4)
tradeguard timeline ORDER_ID         # one order's messages across every service, then its status (G3)
tradeguard console                   # the operator console for the running stack (make run serves it too)
tradeguard chaos --seed 7 --orders 10000 --minutes 10  # orders under seeded faults, then every invariant (G2)
tradeguard backup backups/2026-03-01 # each service's database, copied while it runs, with a manifest
tradeguard restore --service account backups/2026-03-01  # put one back (the service stopped first)
tradeguard sandbox --state-dir /tmp/sb  # a whole stack in test mode, with test helpers, for a marketplace's tests
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from scripts.cli import (
    audit,
    backup,
    clock,
    console,
    dead_letters,
    notifications,
    orders,
    payments,
    settlements,
    timeline,
)

app = typer.Typer(
    help="TradeGuard: run the local stack and its scenarios, inspect and re-drive dead letters.",
    no_args_is_help=True,
    # Tracebacks with locals would print dead-letter values, which may hold secrets.
    pretty_exceptions_show_locals=False,
)
app.add_typer(dead_letters.app, name="dead-letters")
app.add_typer(clock.app, name="clock")
app.add_typer(payments.app, name="payments")
app.add_typer(notifications.app, name="notifications")
app.add_typer(orders.app, name="orders")
app.command(name="audit")(audit.audit)
app.command(name="settlements")(settlements.settlements)
app.command(name="timeline")(timeline.timeline)
app.command(name="backup")(backup.backup)
app.command(name="restore")(backup.restore)
app.command(name="console")(console.console)


def _devstack(mode: str) -> int:
    # Imported here: the dead-letter commands must not need the services' code to work.
    from scripts import devstack

    try:
        return asyncio.run(devstack.main(mode))
    except KeyboardInterrupt:  # Ctrl-C is how `run` is meant to end; devstack has cleaned up
        return 0


@app.command()
def run() -> None:
    """Start Kafka and the five services, run a demo order, keep running until Ctrl-C (make run)."""
    raise typer.Exit(_devstack("run"))


@app.command()
def demo() -> None:
    """Like run, but stop everything when the demo order ends; exit 0 iff it completed (make demo)."""
    raise typer.Exit(_devstack("demo"))


@app.command()
def scenario(
    name: Annotated[str | None, typer.Argument(help="The scenario to run (see --list).", show_default=False)] = None,
    *,
    run_all: Annotated[bool, typer.Option("--all", help="Run every scenario; print a pass/fail table.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the scenarios and the features they show.")] = False,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Kafka host:port. Default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:19092.", show_default=False
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="The stack's state folder (keys, SMS file, clock, logs). Default: .data.", show_default=False
        ),
    ] = None,
    start_stack: Annotated[
        bool,
        typer.Option("--start-stack", help="Start Kafka and the services first, stop them after (make scenarios)."),
    ] = False,
) -> None:
    """Run a scenario (or --all) against the stack; exit 0 only if every one run passed (X7)."""
    # Imported here: the dead-letter commands must not need the services' code to work.
    from scripts.scenarios import commands

    raise typer.Exit(
        commands.main(
            name, run_all=run_all, list_only=list_only, bootstrap=bootstrap, state_dir=state_dir, start=start_stack
        )
    )


@app.command()
def chaos(
    *,
    seed: Annotated[int, typer.Option(help="Fixes the order mix, the fault schedule and the simulator's choices.")] = 1,
    orders: Annotated[int, typer.Option(min=1, help="Orders to drive.")] = 300,
    minutes: Annotated[float, typer.Option(min=0.1, help="Length of the fault window.")] = 1.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Orders under way at once, at most.")] = 200,
    broker_restart: Annotated[bool, typer.Option(help="Restart the broker once in the fault window.")] = True,
) -> None:
    """Drive a seeded mix of orders under seeded faults on a stack of its own, then check the
    books and every invariant; exit 0 iff none broke (G2, X6; make chaos)."""
    from rich.console import Console

    from scripts.chaos.report import print_report
    from scripts.chaos.run import ChaosOptions, run_chaos

    options = ChaosOptions(
        seed=seed, orders=orders, minutes=minutes, concurrency=concurrency, broker_restart=broker_restart
    )
    console = Console()
    report = run_chaos(options, console)
    print_report(console, report)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def sandbox(
    *,
    state_dir: Annotated[
        Path | None, typer.Option(help="Its folder, emptied first (default: a new temporary one).", show_default=False)
    ] = None,
    profile: Annotated[
        Path | None, typer.Option(help="Where to write the connection profile (default: <state>/profile.json).")
    ] = None,
    stop_on_stdin_eof: Annotated[
        bool, typer.Option(help="Also stop when standard input closes (the pytest plugin holds it).")
    ] = False,
) -> None:
    """A whole TradeGuard in test mode for a marketplace's tests: its own broker, every service, the
    funding simulator and test helpers; prints {"ready": profile} once up; runs until SIGINT or SIGTERM."""
    import tempfile

    from rich.console import Console

    from scripts.sandbox.run import fresh_folder, run_sandbox

    folder = fresh_folder((state_dir or Path(tempfile.mkdtemp(prefix="tradeguard-sandbox-"))).resolve())
    written = (profile or folder / "profile.json").resolve()
    # Its own messages on stderr: stdout carries the one "ready" line a program waits for.
    console = Console(stderr=True)
    raise typer.Exit(asyncio.run(run_sandbox(folder, written, watch_stdin=stop_on_stdin_eof, console=console)))


def main() -> None:
    """Console-script entry point."""
    app()
