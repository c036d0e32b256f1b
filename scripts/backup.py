"""Backups of the services' databases, and putting one back (issue 19: day-2 operations).

``tradeguard backup DIR`` writes, per service, its database's copy and a manifest beside it::

    DIR/account.sqlite3         the copy (SQLite), or DIR/account.pgdump (PostgreSQL, pg_dump -Fc)
    DIR/account.manifest.json   service, kind, file, taken_at (UTC), alembic revisions, size, sha256

**SQLite**: the online backup API (``sqlite3.Connection.backup``) in one step, which is one read
transaction: a consistent copy of the moment it began, while the service goes on writing (in WAL
mode a reader never blocks the writer). **PostgreSQL**: ``pg_dump -Fc``, one snapshot; put back
with ``pg_restore --clean --if-exists`` in one transaction. The PostgreSQL client programs are
Debian's ``postgresql`` package's, the newest under ``/usr/lib/postgresql/*/bin`` as
scripts/postgres.sh finds them (else the ones on ``PATH``); the password goes by ``PGPASSWORD``,
never on a command line.

A restore refuses to run while the service uses the database (its ready file exists, or another
connection is open), refuses a file whose sha256 is not the manifest's, and a backup taken by newer
code (an alembic revision this code does not know). A backup older than the code is fine: the
service migrates it when it starts.

Why a restored database comes back consistent by itself: each service stores its consumed
offsets in the same transaction as its effects (shared.offsets), so the restored database
carries the offsets of the moment of the backup and the service, on start, replays from Kafka
exactly the records it lacks. That holds only while Kafka still has them: a backup older than
the topics' retention cannot be replayed (docs/operations.md, "Backup and restore").
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic.config import Config
from alembic.script import ScriptDirectory
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.engine import URL, make_url

from scripts.stack import SERVICES, StackLayout, sqlite_urls
from shared.clock import Clock, SystemClock
from shared.db import MIGRATIONS
from shared.errors import TradeGuardError

Kind = Literal["sqlite", "postgresql"]
MANIFEST_FORMAT: Literal[1] = 1
SQLITE_PROBE_TIMEOUT_S = 0.2
"""How long a restore waits for SQLite's lock before it calls the database in use."""
POSTGRES_TOOL_TIMEOUT_S = 600.0
"""The longest one pg_dump, pg_restore or psql may run."""
_SUFFIX: Mapping[Kind, str] = {"sqlite": ".sqlite3", "postgresql": ".pgdump"}


class BackupError(TradeGuardError):
    """A backup or restore was not made (or not finished); the message says why and what to do.

    BackupError
    ├── ServiceRunning    the service (or anything else) is using the database a restore would replace
    └── BackupRejected    the backup cannot be restored here: its file is not the one the manifest
                          describes, newer code took it, or it is of another kind of database
    """


class ServiceRunning(BackupError):
    """Raised by a restore when the database is in use: stop the service first."""


class BackupRejected(BackupError):
    """Raised by a restore when the backup in the folder must not be put back."""


class Manifest(BaseModel):
    """What a backup is, written beside it (``<service>.manifest.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = MANIFEST_FORMAT
    service: str
    kind: Kind
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The copy's name, in the manifest's folder.")
    taken_at: AwareDatetime
    alembic_revisions: tuple[str, ...] = Field(
        min_length=1, description="The database's alembic_version rows: the shared messaging branch and the service's."
    )
    size: int = Field(ge=0, description="The copy's size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Target:
    """One service's database, as the service itself finds it."""

    service: str
    url: str

    @property
    def kind(self) -> Kind:
        return "sqlite" if make_url(self.url).get_backend_name() == "sqlite" else "postgresql"

    @property
    def sqlite_path(self) -> Path:
        database = make_url(self.url).database
        if not database or database == ":memory:":
            raise BackupError(f"{self.service}: {self.url} names no database file")
        return Path(database)

    @property
    def shown(self) -> str:
        """The URL without its password (for messages)."""
        if self.kind == "sqlite":
            return str(self.sqlite_path)
        return make_url(self.url).render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore did: which backup went where, and what happens when the service starts."""

    manifest: Manifest
    target: Target
    code_heads: tuple[str, ...]

    @property
    def migrates_at_start(self) -> bool:
        return set(self.manifest.alembic_revisions) != set(self.code_heads)

    def summary(self) -> str:
        m = self.manifest
        schema = ", ".join(m.alembic_revisions)
        if self.migrates_at_start:
            schema += f"; the service migrates it to {', '.join(self.code_heads)} when it starts"
        restored = f"restored {m.file} (taken {m.taken_at.isoformat()}, {m.size} bytes, sha256 verified)"
        replay = "seeks to the offsets stored in the restored database and replays from Kafka what it lacks"
        return f"{m.service}: {restored} into {self.target.shown}\n  schema: {schema}\n  on start the service {replay}"


def targets(
    state_dir: Path, services: Sequence[str] = SERVICES, environ: Mapping[str, str] | None = None
) -> list[Target]:
    """Each service's database as its settings name it: ``<SERVICE>_DATABASE_URL`` when set (as
    scripts/stack.py and the containers set it), else the SQLite file a stack keeps in
    ``state_dir`` (``make run``: ``.data/<service>.db``, the settings' default)."""
    environ = os.environ if environ is None else environ
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise BackupError(f"no such service: {', '.join(unknown)} (the services: {', '.join(SERVICES)})")
    defaults = sqlite_urls(state_dir)
    return [Target(s, environ.get(f"{s.upper()}_DATABASE_URL") or defaults[s]) for s in services]


def manifest_path(directory: Path, service: str) -> Path:
    return directory / f"{service}.manifest.json"


def read_manifest(directory: Path, service: str) -> Manifest:
    path = manifest_path(directory, service)
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise BackupRejected(f"{service}: no backup in {directory} ({path.name} not found)") from None
    except ValueError as error:
        raise BackupRejected(f"{service}: {path} is not a backup manifest: {error}") from None


def backed_up_services(directory: Path) -> list[str]:
    """The services ``directory`` holds a backup of, in the stack's order."""
    return [s for s in SERVICES if manifest_path(directory, s).exists()]


# -- backup -------------------------------------------------------------------------------------


def backup(target: Target, directory: Path, clock: Clock | None = None) -> Manifest:
    """Copy ``target``'s database into ``directory`` while the service runs; the manifest is
    written last, so a folder without one holds no finished backup of that service."""
    taken_at = (clock or SystemClock()).now()
    check_backupable(target, directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_file = manifest_path(directory, target.service)
    final = directory / f"{target.service}{_SUFFIX[target.kind]}"
    partial = final.with_name(f".{final.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        if target.kind == "sqlite":
            _sqlite_backup(target, partial)
            revisions = _sqlite_revisions(partial)
        else:
            tools = PostgresTools.find()
            tools.dump(target.url, partial)
            revisions = tools.dump_revisions(partial)
        if not revisions:
            raise BackupError(f"{target.service}: {target.shown} has no alembic_version: not a service's database")
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    manifest = Manifest(
        service=target.service,
        kind=target.kind,
        file=final.name,
        taken_at=taken_at,
        alembic_revisions=revisions,
        size=final.stat().st_size,
        sha256=sha256_of(final),
    )
    _write_atomically(manifest_file, manifest.model_dump_json(indent=2) + "\n")
    return manifest


def check_backupable(target: Target, directory: Path) -> None:
    """Why ``target`` cannot be backed up into ``directory``, found before anything is written: the
    folder holds a backup of it already, or there is no SQLite file where its settings point."""
    if manifest_path(directory, target.service).exists():
        raise BackupError(f"{target.service}: {directory} already holds a backup of it; back up into a new folder")
    if target.kind == "sqlite" and not target.sqlite_path.is_file():
        raise BackupError(
            f"{target.service}: no database at {target.sqlite_path} (has the service run here? --state-dir?)"
        )


def _sqlite_backup(target: Target, out: Path) -> None:
    path = target.sqlite_path
    # mode=rw: never create an empty database where the service's should be.
    with (
        contextlib.closing(sqlite3.connect(_sqlite_uri(path, "rw"), uri=True, timeout=5)) as source,
        contextlib.closing(sqlite3.connect(out, isolation_level=None)) as copy,
    ):
        source.backup(copy)  # pages=-1: one step, one read transaction, one moment
        # One self-contained file (no -wal beside it), so its checksum is the whole backup.
        copy.execute("PRAGMA journal_mode=DELETE")
        _check_sqlite(copy, target.service, "the copy")


def _sqlite_revisions(path: Path) -> tuple[str, ...]:
    with contextlib.closing(sqlite3.connect(_sqlite_uri(path, "ro"), uri=True)) as connection:
        try:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError:
            return ()
    return tuple(sorted(str(row[0]) for row in rows))


def _check_sqlite(connection: sqlite3.Connection, service: str, what: str) -> None:
    (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
    if verdict != "ok":
        raise BackupError(f"{service}: {what} fails SQLite's quick_check: {verdict}")


def _sqlite_uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


# -- restore ------------------------------------------------------------------------------------


def check_restorable(target: Target, directory: Path, state_dir: Path) -> Manifest:
    """Every reason not to restore ``directory``'s backup into ``target``, checked before anything
    changes: the manifest, the file's sha256, its schema against this code's, and whether the
    service is running. Returns the manifest."""
    manifest = read_manifest(directory, target.service)
    if manifest.service != target.service:
        raise BackupRejected(f"{target.service}: {manifest_path(directory, target.service)} is {manifest.service}'s")
    if manifest.kind != target.kind:
        raise BackupRejected(
            f"{target.service}: the backup is of a {manifest.kind} database, the service's is {target.kind} "
            f"({target.shown})"
        )
    copy = directory / manifest.file
    _verify_file(manifest, copy)
    _verify_revisions(manifest, _file_revisions(manifest, copy))
    _refuse_if_running(target, state_dir)
    return manifest


def restore(target: Target, directory: Path, state_dir: Path) -> Restored:
    """Put ``directory``'s backup of ``target.service`` back into its database (the service stopped)."""
    manifest = check_restorable(target, directory, state_dir)
    copy = directory / manifest.file
    if target.kind == "sqlite":
        _sqlite_restore(target, copy)
    else:
        PostgresTools.find().restore(target, copy)
    return Restored(manifest, target, tuple(sorted(code_scripts(target.service).get_heads())))


def _verify_file(manifest: Manifest, copy: Path) -> None:
    if not copy.is_file():
        raise BackupRejected(f"{manifest.service}: {copy} not found (the manifest names it)")
    size, digest = copy.stat().st_size, sha256_of(copy)
    if (size, digest) != (manifest.size, manifest.sha256):
        raise BackupRejected(
            f"{manifest.service}: {copy} is not the file the manifest describes "
            f"(sha256 {digest}, {size} bytes; the manifest says {manifest.sha256}, {manifest.size} bytes): "
            "it was changed or damaged; restore another backup"
        )


def _file_revisions(manifest: Manifest, copy: Path) -> tuple[str, ...]:
    if manifest.kind == "sqlite":
        return _sqlite_revisions(copy)
    return PostgresTools.find().dump_revisions(copy)


def _verify_revisions(manifest: Manifest, in_file: tuple[str, ...]) -> None:
    if set(in_file) != set(manifest.alembic_revisions):
        raise BackupRejected(
            f"{manifest.service}: the copy's schema is {', '.join(in_file) or 'none'}, the manifest says "
            f"{', '.join(manifest.alembic_revisions)}"
        )
    scripts = code_scripts(manifest.service)
    known = {script.revision for script in scripts.walk_revisions()}
    newer = sorted(set(manifest.alembic_revisions) - known)
    if newer:
        raise BackupRejected(
            f"{manifest.service}: the backup's schema ({', '.join(newer)}) is newer than this code's "
            f"({', '.join(sorted(scripts.get_heads()))}): restore it with the code that took it"
        )


def code_scripts(service: str) -> ScriptDirectory:
    """The migrations this code runs for ``service``: the shared messaging branch and its own."""
    definition = importlib.import_module(f"services.{service}.app").DEFINITION
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", f"{MIGRATIONS / 'versions'} {definition.migrations}")
    config.set_main_option("path_separator", "space")
    return ScriptDirectory.from_config(config)


def _refuse_if_running(target: Target, state_dir: Path) -> None:
    ready = StackLayout.of(state_dir).ready_file(target.service)
    if ready.exists():
        raise ServiceRunning(
            f"{target.service} is running ({ready} exists): stop it first "
            "(if it is not running, that file was left by a killed process: delete it)"
        )
    if target.kind == "sqlite":
        if target.sqlite_path.exists():  # none yet: nothing can be using it (the restore creates it)
            with _sqlite_exclusive(target):
                pass
    else:
        PostgresTools.find().refuse_if_connected(target)


@contextlib.contextmanager
def _sqlite_exclusive(target: Target) -> Iterator[sqlite3.Connection]:
    """A connection to the service's file that no other connection shares, or ServiceRunning.

    Leaving WAL mode needs the database to itself: SQLite refuses it while any other connection
    is open, even an idle one (a stopped service holds none; a running one keeps its pool's)."""
    path = target.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=SQLITE_PROBE_TIMEOUT_S, isolation_level=None)
    try:
        try:
            connection.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.OperationalError as error:
            raise ServiceRunning(
                f"{target.service}: {path} is in use ({error}): stop the service (and anything else that has it open)"
            ) from None
        yield connection
    finally:
        connection.close()


def _sqlite_restore(target: Target, copy: Path) -> None:
    # Through SQLite (the backup API into the service's file), not a file copy: no stale -wal or
    # -shm of the old database can be read with the new one.
    with (
        _sqlite_exclusive(target) as connection,
        contextlib.closing(sqlite3.connect(_sqlite_uri(copy, "ro"), uri=True)) as source,
    ):
        source.backup(connection)
        connection.execute("PRAGMA journal_mode=WAL")  # as every service connection sets it (shared.db)
        _check_sqlite(connection, target.service, "the restored database")


# -- PostgreSQL ---------------------------------------------------------------------------------

_COPY_ALEMBIC = re.compile(r"^COPY \S*alembic_version \(version_num\) FROM stdin;$")
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class PostgresTools:
    """pg_dump, pg_restore and psql of one installed PostgreSQL version."""

    bin_dir: Path

    @classmethod
    def find(cls) -> PostgresTools:
        """The newest version under /usr/lib/postgresql (as scripts/postgres.sh picks its server),
        else the programs on PATH."""
        candidates = sorted(
            (d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "pg_dump").exists()),
            key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1,
        )
        if candidates:
            return cls(candidates[-1])
        on_path = shutil.which("pg_dump")
        if on_path is None:
            raise BackupError(
                "pg_dump not found: install Debian's postgresql package (bash scripts/postgres.sh install)"
            )
        return cls(Path(on_path).parent)

    def dump(self, url: str, out: Path) -> None:
        self._run("pg_dump", "--format=custom", "--no-password", f"--file={out}", url=url)

    def dump_revisions(self, dump: Path) -> tuple[str, ...]:
        """The alembic_version rows inside a custom-format dump (what the copy itself says)."""
        text = self._run("pg_restore", "--data-only", "--table=alembic_version", "--file=-", str(dump))
        revisions: list[str] = []
        inside = False
        for line in text.splitlines():
            if _COPY_ALEMBIC.match(line):
                inside = True
            elif inside and line == "\\.":
                break
            elif inside:
                revisions.append(line.strip())
        return tuple(sorted(revisions))

    def refuse_if_connected(self, target: Target) -> None:
        sessions = self._psql(
            target.url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        if int(sessions or "0") > 0:
            raise ServiceRunning(
                f"{target.service}: {sessions.strip()} other session(s) are connected to {target.shown}: "
                "stop the service (and anything else connected) first"
            )

    def restore(self, target: Target, dump: Path) -> None:
        """The dump's objects dropped and created anew (``--clean --if-exists``) in one transaction;
        before that, tables the dump does not have (made by a later migration) are dropped, so the
        service's migrations find the schema the backup had."""
        self._drop_tables_not_in(target, dump)
        self._run(
            "pg_restore",
            f"--dbname={make_url(target.url).database}",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            str(dump),
            url=target.url,
        )

    def _drop_tables_not_in(self, target: Target, dump: Path) -> None:
        toc = self._run("pg_restore", "--list", str(dump))
        in_dump = {m.group(2) for line in toc.splitlines() if (m := _TOC_TABLE.match(line))}
        present = set(
            self._psql(target.url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").split()
        )
        extra = sorted(t for t in present - in_dump if _IDENTIFIER.match(t))
        if extra:
            drops = "; ".join(f'DROP TABLE IF EXISTS "{t}" CASCADE' for t in extra)
            self._psql(target.url, f"BEGIN; {drops}; COMMIT")

    def _psql(self, url: str, sql: str) -> str:
        return self._run("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, url=url).strip()

    def _run(self, program: str, *args: str, url: str | None = None) -> str:
        """Run one of the programs (against ``url``'s database when given); its stdout, or BackupError."""
        env = {**os.environ, **(libpq_environment(url) if url else {})}
        try:
            done = subprocess.run(
                [str(self.bin_dir / program), *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=POSTGRES_TOOL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(f"{program} did not finish in {POSTGRES_TOOL_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            raise BackupError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout


def libpq_environment(url: str) -> dict[str, str]:
    """The libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) for a SQLAlchemy URL:
    the password stays out of every command line (``ps`` shows those to every user)."""
    parsed: URL = make_url(url)
    values = {
        "PGHOST": parsed.host,
        "PGPORT": None if parsed.port is None else str(parsed.port),
        "PGUSER": parsed.username,
        "PGPASSWORD": None if parsed.password is None else str(parsed.password),
        "PGDATABASE": parsed.database,
    }
    return {name: value for name, value in values.items() if value}


# -- files --------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
