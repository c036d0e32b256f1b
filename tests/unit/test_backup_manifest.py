"""Backup and restore (issue 19): where each service's database is found, what a manifest may say,
and that a PostgreSQL password never reaches a command line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from scripts.backup import BackupError, Manifest, Target, libpq_environment, targets
from scripts.stack import SERVICES

GOOD = {
    "service": "account",
    "kind": "sqlite",
    "file": "account.sqlite3",
    "taken_at": datetime(2026, 3, 1, tzinfo=UTC),
    "alembic_revisions": ("account_0003", "messaging_0004"),
    "size": 4096,
    "sha256": "0" * 64,
}


def test_backup_targets_are_the_stacks_sqlite_files_unless_the_environment_names_a_url(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://account:s3cret@db:5432/account"

    found = targets(tmp_path, environ={"ACCOUNT_DATABASE_URL": url})

    assert [t.service for t in found] == list(SERVICES)
    assert found[0] == Target("account", url)
    assert found[0].kind == "postgresql"
    assert found[1].sqlite_path == tmp_path / "payment.db"
    assert found[1].kind == "sqlite"
    assert "s3cret" not in found[0].shown


def test_backup_targets_refuse_an_unknown_service(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no such service: wallet"):
        targets(tmp_path, ["wallet"], environ={})


def test_backup_postgres_password_goes_by_environment_only() -> None:
    env = libpq_environment("postgresql+asyncpg://account:s3cret@db.internal:6543/accounts")

    assert env == {
        "PGHOST": "db.internal",
        "PGPORT": "6543",
        "PGUSER": "account",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "accounts",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"file": "../account.db"},  # a manifest names a file in its own folder only
        {"sha256": "xyz"},
        {"taken_at": datetime(2026, 3, 1)},  # noqa: DTZ001 - a time without its zone is refused
        {"alembic_revisions": ()},
        {"kind": "mysql"},
        {"size": -1},
    ],
)
def test_backup_manifest_refuses_what_a_backup_never_says(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Manifest.model_validate({**GOOD, **change})


def test_backup_manifest_reads_back_what_it_wrote() -> None:
    manifest = Manifest.model_validate(GOOD)

    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
