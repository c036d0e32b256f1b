"""``tradeguard backup`` and ``tradeguard restore``: the services' databases, copied while they run,
put back while the service is stopped (issue 19; the procedure: docs/operations.md, "Backup and restore").

tradeguard backup backups/2026-03-01                      # every service's database
tradeguard backup --service account backups/2026-03-01    # one
tradeguard restore --service account backups/2026-03-01   # the service stopped first; it replays what it lacks

Each service's database is the one its settings name: ``<SERVICE>_DATABASE_URL`` when set, else
``<state dir>/<service>.db`` (``make run``: ``.data``). Exit 1, saying why, when anything was refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scripts.stack import SERVICES

Directory = Annotated[Path, typer.Argument(help="The backup's folder (one per backup).", show_default=False)]
Service = Annotated[
    str | None, typer.Option(help=f"Only this service ({', '.join(SERVICES)}); default: every one.", show_default=False)
]
StateDir = Annotated[
    Path, typer.Option(help="The stack's state folder (`make run`: .data): its SQLite files and ready files.")
]


def backup(directory: Directory, service: Service = None, state_dir: StateDir = Path(".data")) -> None:
    """Copy each service's database into DIRECTORY while it runs (SQLite's online backup, pg_dump -Fc),
    each with a manifest (service, kind, file, taken_at, alembic revisions, size, sha256)."""
    # Imported here: the dead-letter commands must not need the services' code to work.
    from scripts import backup as mechanism

    try:
        chosen = mechanism.targets(state_dir, _chosen(service))
        for target in chosen:
            mechanism.check_backupable(target, directory)
        for target in chosen:
            manifest = mechanism.backup(target, directory)
            typer.echo(
                f"{manifest.service}: {target.shown} -> {directory / manifest.file} "
                f"({manifest.size} bytes, sha256 {manifest.sha256[:12]}, schema {', '.join(manifest.alembic_revisions)})"
            )
    except mechanism.BackupError as error:
        typer.echo(f"backup refused: {error}", err=True)
        raise typer.Exit(1) from None


def restore(directory: Directory, service: Service = None, state_dir: StateDir = Path(".data")) -> None:
    """Put DIRECTORY's backups back (every service it holds one of, or --service's). Refused while the
    service runs, when a file's sha256 is not its manifest's, or when newer code took the backup;
    every backup is checked before any is restored."""
    from scripts import backup as mechanism

    try:
        names = _chosen(service) if service else tuple(mechanism.backed_up_services(directory))
        if not names:
            raise mechanism.BackupRejected(f"{directory} holds no backup (no <service>.manifest.json)")
        chosen = mechanism.targets(state_dir, names)
        for target in chosen:
            mechanism.check_restorable(target, directory, state_dir)
        for target in chosen:
            typer.echo(mechanism.restore(target, directory, state_dir).summary())
    except mechanism.BackupError as error:
        typer.echo(f"restore refused: {error}", err=True)
        raise typer.Exit(1) from None


def _chosen(service: str | None) -> tuple[str, ...]:
    return SERVICES if service is None else (service,)
