"""What `tradeguard scenario` does: list the catalogue, or run one scenario or all of them
against a running stack (or one it starts), and turn the outcome into the exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scripts.scenarios.catalogue import CATALOGUE
from scripts.scenarios.handle import DEFAULT_STATE_DIR, StackHandle, StackNotFoundError
from scripts.scenarios.local import local_stack
from scripts.scenarios.registry import Catalogue, Scenario
from scripts.scenarios.runner import ScenarioRunner, exit_code, print_results

USAGE_ERROR = 2
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"


class UsageError(ValueError):
    """The command line asks for no scenario, for two things at once, or for an unknown name."""


def make_console() -> Console:
    """A pipe gets a table 160 columns wide rather than rich's 80."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def print_catalogue(console: Console, catalogue: Catalogue) -> None:
    table = Table(title="Scenarios (tradeguard scenario NAME, or --all)", title_justify="left")
    for column in ("name", "features", "summary"):
        table.add_column(column, overflow="fold")
    for s in catalogue:
        table.add_row(s.name, " ".join(s.features), escape(s.summary))
    console.print(table)


def select(catalogue: Catalogue, name: str | None, *, run_all: bool) -> list[Scenario]:
    """The scenarios the command line asks for; :class:`UsageError` when it is unclear."""
    if run_all and name is not None:
        raise UsageError("give a scenario name or --all, not both")
    if run_all:
        return list(catalogue)
    if name is None:
        raise UsageError("give a scenario name, --all or --list")
    if name not in catalogue:
        raise UsageError(f"no scenario {name!r}; the catalogue has: {', '.join(catalogue.names())}")
    return [catalogue.get(name)]


async def run_scenarios(stack: StackHandle, scenarios: list[Scenario], console: Console) -> int:
    """Run ``scenarios`` against ``stack``; print the table when more than one ran; the exit code."""
    try:
        async with ScenarioRunner(stack, console) as runner:
            results = await runner.run_all(scenarios)
    except StackNotFoundError as missing:
        console.print(f"[red]error:[/] {escape(str(missing))}")
        return 1
    except KafkaError as error:
        console.print(f"[red]error:[/] cannot reach Kafka at {stack.bootstrap}: {escape(repr(error))}")
        return 1
    if len(results) > 1:
        print_results(console, results)
    return exit_code(results)


async def run_with_local_stack(state_dir: Path, scenarios: list[Scenario], console: Console) -> int:
    """Start Kafka and the stack, run ``scenarios``, stop everything; the exit code."""
    async with local_stack(state_dir, console) as stack:
        return await run_scenarios(stack, scenarios, console)


def main(
    name: str | None,
    *,
    run_all: bool = False,
    list_only: bool = False,
    bootstrap: str | None = None,
    state_dir: Path | None = None,
    start: bool = False,
    catalogue: Catalogue = CATALOGUE,
) -> int:
    """`tradeguard scenario`: the exit code (0 all passed, 1 a failure, 2 a usage error)."""
    console = make_console()
    if list_only:
        print_catalogue(console, catalogue)
        return 0
    try:
        scenarios = select(catalogue, name, run_all=run_all)
        if start and bootstrap is not None:
            raise UsageError("--start-stack starts its own broker (scripts/kafka.sh); leave out --bootstrap")
    except UsageError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        return USAGE_ERROR
    folder = (state_dir or DEFAULT_STATE_DIR).resolve()  # the services run from the repo's root
    try:
        if start:
            return asyncio.run(run_with_local_stack(folder, scenarios, console))
        stack = StackHandle(bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP), folder)
        return asyncio.run(run_scenarios(stack, scenarios, console))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
