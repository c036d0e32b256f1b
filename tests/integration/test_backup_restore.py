"""Backup and restore of a service's database (issue 19), on SQLite and PostgreSQL.

A backup is a consistent copy taken while the service writes; a restore puts it back only when
nothing uses the database, only the file the manifest describes, and only a schema this code
knows. The restore drill over the whole stack is tests/faults/test_restore_drill.py.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from scripts.backup import (
    BackupError,
    BackupRejected,
    ServiceRunning,
    Target,
    backup,
    code_scripts,
    manifest_path,
    read_manifest,
    restore,
)
from scripts.cli import app
from scripts.stack import SERVICES, StackLayout, sqlite_urls
from services.account.app import DEFINITION as ACCOUNT
from shared.clock import ManualClock
from shared.db import create_engine, migrate, open_sqlite

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def account_url(database_url: str) -> str:
    """An account service database (its schema, no rows), on each backend; no connection left open."""
    engine = create_engine(database_url)
    try:
        await migrate(engine, ACCOUNT.migrations)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
async def connected(account_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(account_url)
    yield engine
    await engine.dispose()


async def put_wallet(engine: AsyncEngine, account_id: str, balance_minor: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO wallets (account_id, currency, balance_minor, updated_at, version) "
                "VALUES (:a, 'USD', :b, :t, 1)"
            ),
            {"a": account_id, "b": balance_minor, "t": WHEN},
        )


async def wallet_rows(url: str) -> list[tuple[str, int]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT account_id, balance_minor FROM wallets ORDER BY account_id"))
            return [(str(a), int(b)) for a, b in rows]
    finally:
        await engine.dispose()


async def test_backup_and_restore_put_back_the_database_as_it_was_at_the_backup(
    account_url: str, connected: AsyncEngine, tmp_path: Path
) -> None:
    target, state = Target("account", account_url), tmp_path / "state"
    # The service has written two wallets when the backup is taken (its connection stays open).
    await put_wallet(connected, "buyer-1", 5_000)
    await put_wallet(connected, "buyer-2", 7_000)
    manifest = backup(target, tmp_path / "b", ManualClock(WHEN))

    # Later work, and a table a later migration made: neither is in the backup.
    await put_wallet(connected, "buyer-3", 1)
    async with connected.begin() as conn:
        await conn.execute(sa.text("UPDATE wallets SET balance_minor = 0 WHERE account_id = 'buyer-1'"))
        await conn.execute(sa.text("CREATE TABLE later_table (id INTEGER PRIMARY KEY)"))
    await connected.dispose()  # the service stops
    restored = restore(target, tmp_path / "b", state)

    assert await wallet_rows(account_url) == [("buyer-1", 5_000), ("buyer-2", 7_000)]
    engine = create_engine(account_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
            revisions = {r for (r,) in await conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
        # The service starts on it: its migrations find the schema they expect.
        await migrate(engine, ACCOUNT.migrations)
    finally:
        await engine.dispose()
    assert "later_table" not in tables
    assert revisions == set(manifest.alembic_revisions) == set(code_scripts("account").get_heads())
    written = json.loads(manifest_path(tmp_path / "b", "account").read_text())
    assert written["service"] == "account"
    assert written["kind"] == target.kind
    assert written["taken_at"] in {"2026-03-01T12:00:00Z", "2026-03-01T12:00:00+00:00"}
    assert written["size"] == (tmp_path / "b" / written["file"]).stat().st_size
    assert "sha256 verified" in restored.summary()
    assert not restored.migrates_at_start


async def test_restore_refuses_while_the_database_is_in_use(
    account_url: str, connected: AsyncEngine, tmp_path: Path
) -> None:
    target, state = Target("account", account_url), tmp_path / "state"
    await put_wallet(connected, "buyer-1", 5_000)
    backup(target, tmp_path / "b")
    await put_wallet(connected, "buyer-2", 1)

    # An idle pooled connection, as a running service keeps one.
    with pytest.raises(ServiceRunning, match="stop the service"):
        restore(target, tmp_path / "b", state)
    await connected.dispose()
    # The stack's ready file says the service runs (it holds partitions).
    ready = StackLayout.of(state).ready_file("account")
    ready.parent.mkdir(parents=True)
    ready.touch()
    with pytest.raises(ServiceRunning, match="account is running"):
        restore(target, tmp_path / "b", state)

    assert await wallet_rows(account_url) == [("buyer-1", 5_000), ("buyer-2", 1)]


async def test_restore_refuses_a_copy_that_is_not_the_one_its_manifest_describes(
    account_url: str, tmp_path: Path
) -> None:
    target = Target("account", account_url)
    manifest = backup(target, tmp_path / "b")
    copy = tmp_path / "b" / manifest.file
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))

    with pytest.raises(BackupRejected, match="not the file the manifest describes"):
        restore(target, tmp_path / "b", tmp_path / "state")


async def test_restore_refuses_a_backup_taken_by_newer_code(account_url: str, tmp_path: Path) -> None:
    target = Target("account", account_url)
    engine = create_engine(account_url)
    try:
        async with engine.begin() as conn:  # as a migration this code does not have would leave it
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = 'account_0099' WHERE version_num = 'account_0003'")
            )
    finally:
        await engine.dispose()
    manifest = backup(target, tmp_path / "b")
    assert "account_0099" in manifest.alembic_revisions

    with pytest.raises(BackupRejected, match=r"account_0099\) is newer than this code's"):
        restore(target, tmp_path / "b", tmp_path / "state")


async def test_restore_refuses_a_manifest_that_lies_about_the_schema(account_url: str, tmp_path: Path) -> None:
    """The revision check reads the copy itself, not only what the manifest claims."""
    target = Target("account", account_url)
    backup(target, tmp_path / "b")
    path = manifest_path(tmp_path / "b", "account")
    edited = read_manifest(tmp_path / "b", "account").model_copy(update={"alembic_revisions": ("account_0001",)})
    path.write_text(edited.model_dump_json())

    with pytest.raises(BackupRejected, match="the copy's schema is"):
        restore(target, tmp_path / "b", tmp_path / "state")


async def test_backup_refuses_a_folder_that_holds_a_backup_already(account_url: str, tmp_path: Path) -> None:
    target = Target("account", account_url)
    first = backup(target, tmp_path / "b")

    with pytest.raises(BackupError, match="already holds a backup"):
        backup(target, tmp_path / "b")
    assert read_manifest(tmp_path / "b", "account") == first


async def test_backup_of_sqlite_is_consistent_while_a_writer_commits(tmp_path: Path) -> None:
    """The online backup copies one moment while the service's writer goes on committing, with
    the services' own lock wait (50 ms): no commit fails and every copy is whole (each writer
    transaction inserts a pair that sums to zero; a copy of half a transaction would not)."""
    url = sqlite_urls(tmp_path)["account"]
    engine = create_engine(url)
    await migrate(engine, ACCOUNT.migrations)
    await engine.dispose()
    path = tmp_path / "account.db"
    writer = open_sqlite(str(path))
    writer.execute("CREATE TABLE pairs (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    writer.execute("BEGIN IMMEDIATE")
    writer.executemany("INSERT INTO pairs (amount) VALUES (?)", [(n,) for n in range(1, 30_001)])
    writer.execute("INSERT INTO pairs (amount) VALUES (?)", (-sum(range(1, 30_001)),))
    writer.execute("COMMIT")
    stop, commits, failures = threading.Event(), [0], list[Exception]()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO pairs (amount) VALUES (?)", (n,))
                writer.execute("INSERT INTO pairs (amount) VALUES (?)", (-n,))
                writer.execute("COMMIT")
                commits[0] += 1
            except sqlite3.Error as error:
                failures.append(error)
                writer.execute("ROLLBACK")

    thread = threading.Thread(target=write)
    thread.start()
    try:
        first = commits[0]
        for i in range(4):
            backup(Target("account", url), tmp_path / f"b{i}")
        during = commits[0] - first
    finally:
        stop.set()
        thread.join()
        writer.close()

    counts = []
    for i in range(4):
        copy = sqlite3.connect(tmp_path / f"b{i}" / "account.sqlite3")
        count, total = copy.execute("SELECT count(*), sum(amount) FROM pairs").fetchone()
        copy.close()
        assert total == 0, f"copy {i} holds part of a transaction"
        counts.append(count)
    assert failures == []
    assert counts == sorted(counts)
    assert counts[-1] > counts[0], "the writer committed between the backups"
    assert during > 0


async def test_backup_cli_copies_every_service_and_restore_puts_one_back(tmp_path: Path) -> None:
    """``tradeguard backup DIR`` finds each service's database as the stack names it; ``restore``
    says what it did, and refuses (exit 1) a backup whose file was changed."""
    state = tmp_path / "state"
    for name, url in sqlite_urls(state).items():
        engine = create_engine(url)
        await migrate(engine, importlib.import_module(f"services.{name}.app").DEFINITION.migrations)
        await engine.dispose()
    runner = CliRunner()

    made = runner.invoke(app, ["backup", "--state-dir", str(state), str(tmp_path / "b")])
    put_back = runner.invoke(app, ["restore", "--service", "saga", "--state-dir", str(state), str(tmp_path / "b")])
    (tmp_path / "b" / "escrow.sqlite3").write_bytes(b"not a database")
    refused = runner.invoke(app, ["restore", "--state-dir", str(state), str(tmp_path / "b")])

    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in (tmp_path / "b").glob("*.manifest.json")) == sorted(
        f"{name}.manifest.json" for name in SERVICES
    )
    assert put_back.exit_code == 0, put_back.output
    assert "saga: restored saga.sqlite3" in put_back.output
    assert f"into {state / 'saga.db'}" in put_back.output
    assert refused.exit_code == 1
    assert "restore refused: escrow:" in refused.output
    assert "not the file the manifest describes" in refused.output


async def test_restore_of_sqlite_onto_a_machine_without_the_database_creates_it(tmp_path: Path) -> None:
    url = sqlite_urls(tmp_path / "state")["account"]
    engine = create_engine(url)
    await migrate(engine, ACCOUNT.migrations)
    await put_wallet(engine, "buyer-1", 5_000)
    await engine.dispose()
    backup(Target("account", url), tmp_path / "b")
    for leftover in (tmp_path / "state").glob("account.db*"):
        leftover.unlink()

    restore(Target("account", url), tmp_path / "b", tmp_path / "state")

    assert await wallet_rows(url) == [("buyer-1", 5_000)]
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "account.db")) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
