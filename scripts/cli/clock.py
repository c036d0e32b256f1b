"""``tradeguard clock``: the stack's test clock (X8), shared by every process through a file.

tradeguard clock show                   # the offset and the time the services see
tradeguard clock advance 16d            # move every service of the `make run` stack 16 days on
tradeguard clock advance 90m --state-dir /tmp/stack   # another stack's clock

Durations: a number and a unit, s m h d (``1d12h`` works too). The clock never moves back.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from scripts.stack import StackLayout
from shared.clock import FileClock, advance_clock_file, read_clock_offset

app = typer.Typer(help="The stack's test clock (X8): show it, move it forward.", no_args_is_help=True)
StateDir = Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")]
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``"1d12h"`` -> 1.5 days; ValueError naming the text otherwise."""
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 2h, 16d or 1d12h")
    return sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())


def clock_file(state_dir: Path) -> Path:
    return StackLayout.of(state_dir).clock_file


@app.command()
def show(state_dir: StateDir = Path(".data")) -> None:
    """Print the offset and the time every service of the stack sees."""
    path = clock_file(state_dir)
    typer.echo(f"offset {read_clock_offset(path)}; services see {FileClock(path).now().isoformat()}")


@app.command()
def advance(duration: str, state_dir: StateDir = Path(".data")) -> None:
    """Move the stack's clock forward by DURATION (90s, 15m, 2h, 16d, 1d12h)."""
    try:
        by = parse_duration(duration)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    offset = advance_clock_file(clock_file(state_dir), by)
    typer.echo(
        f"moved {by} forward; offset now {offset}; services see {FileClock(clock_file(state_dir)).now().isoformat()}"
    )
