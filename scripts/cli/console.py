"""``tradeguard console``: serve the operator console against a running stack (``make run`` serves
it too). Sign in as the configured operator (``CONSOLE_OPERATOR_ID``, default ``ops``) with the
password whose argon2 hash is ``CONSOLE_PASSWORD_HASH``, or, when none is set, the local stack's
password in ``<state>/console/password`` (made on first use, readable by its owner only)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from scripts.cli.dead_letters import BootstrapOption, _bootstrap


def console(
    state_dir: Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")] = Path(".data"),
    port: Annotated[int | None, typer.Option(help="Default: $CONSOLE_PORT, else 19080.", show_default=False)] = None,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Serve the operator console (G3, S6) for the stack in --state-dir until Ctrl-C."""
    # Imported here: the web server is not needed by the other commands.
    from scripts.console.app import serve
    from scripts.console.settings import ConsoleSettings, settings_for

    settings = settings_for(state_dir, port)

    def started(url: str) -> None:
        where = "CONSOLE_PASSWORD_HASH" if ConsoleSettings().password_hash else str(settings.password_file)
        typer.echo(f"operator console: {url} (sign in as {settings.operator_id}; the password: {where})")

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to end
        asyncio.run(serve(settings, _bootstrap(bootstrap_servers), started))
