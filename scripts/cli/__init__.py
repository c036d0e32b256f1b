"""The ``tradeguard`` command (``[project.scripts]`` in pyproject.toml points here).

tradeguard run                       # as `make run`: Kafka, the five services, a demo order; Ctrl-C stops it
tradeguard demo                      # as `make demo`: exits 0 iff the demo order completed
tradeguard dead-letters list         # what no service could process (secrets masked)
tradeguard dead-letters redrive ID   # send the original record back to its source topic
"""

from __future__ import annotations

import asyncio

import typer

from scripts.cli import dead_letters

app = typer.Typer(
    help="TradeGuard: run the local stack, inspect and re-drive dead letters.",
    no_args_is_help=True,
    # Tracebacks with locals would print dead-letter values, which may hold secrets.
    pretty_exceptions_show_locals=False,
)
app.add_typer(dead_letters.app, name="dead-letters")


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


def main() -> None:
    """Console-script entry point."""
    app()
