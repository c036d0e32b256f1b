"""What the stack keeps on disk: each service database's bytes and rows per table, and Kafka's.

A :class:`StorageMeter` reads, without disturbing the services:

* each SQLite database's file bytes (the database, its ``-wal`` and ``-shm``), its *live* bytes
  (pages in use: SQLite keeps the pages rows were deleted from as free pages inside the file,
  so a pruned database shows its saving in live bytes, not in file bytes, until a VACUUM) and
  the rows of every table, through a read-only connection opened for the reading alone;
* each service's archive folder (what the pruner moved out of its database, shared.retention);
* the broker's data (``log.dirs``: ``<KAFKA_DATA_DIR>/logs``) as disk blocks used (Kafka
  preallocates index files sparsely, so their length says nothing), for every topic and for the
  ``tradeguard.*`` topics alone.

A database that is not SQLite (PostgreSQL by URL) is reported without figures. :func:`per_order`
turns two samples into bytes per order: the growth between them over the orders the saga stored
between them (its ``orders`` table), so the set-up (accounts, schemas) is not counted.

:data:`MONEY_TABLES` are the records kept for as long as the system runs (with
:data:`KEPT_PER_ORDER`, :func:`kept_tables`); every other table must stop growing once its
retention window has passed, which the soak checks after
:func:`move_clock_and_wait` moved the services' clock (X8) past every window.
:func:`pruned_tables` says which tables the services' pruner takes care of.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from scripts.stack import SERVICES
from shared.broker_security import BrokerSecurityError, credentials_dir
from shared.clock import advance_clock_file
from shared.retention import archive_root, service_steps
from shared.retention import pruned_tables as retention_tables
from shared.service import ServiceDefinition
from shared.settings import RetentionSettings

SQLITE_PREFIX = "sqlite+aiosqlite:///"
TRADEGUARD_TOPIC_PREFIX = "tradeguard."
MONEY_TABLES: Mapping[str, frozenset[str]] = {
    "account": frozenset({"wallets", "wallet_movements"}),
    "payment": frozenset(
        {"payments", "refunds", "network_requests", "quotes", "campaign_budgets", "spending_windows", "account_limits"}
    ),
    "escrow": frozenset({"escrow_holds", "escrow_returns", "ledger_accounts", "ledger_entries", "ledger_transfers"}),
    "saga": frozenset({"orders", "order_refunds", "order_disputes"}),
    "notification": frozenset(),
}
"""Per service, the money records, kept for as long as the system runs (docs/operations.md's
retention table, "kept: money"): wallets and their movements, payments, refunds, the network
requests, quotes, campaign budgets, limits and spending windows, holds, returns and the ledger,
orders with their refunds and disputes."""
KEPT_PER_ORDER: Mapping[str, frozenset[str]] = {"notification": frozenset({"notification_orders"})}
"""Not money, but kept by the retention policy at one row per order (docs/operations.md): the
notification service's read copy of each order, which its new notices are decided with. It grows
with the orders as the money records do; the soak reports its bytes, and does not count it as a
table that keeps growing (drop it from here to make the soak hold it to a window)."""


def kept_tables() -> dict[str, frozenset[str]]:
    """Per service, what the soak lets grow with the orders: the money records and :data:`KEPT_PER_ORDER`."""
    return {s: MONEY_TABLES.get(s, frozenset()) | KEPT_PER_ORDER.get(s, frozenset()) for s in SERVICES}


ORDERS_TABLE = ("saga", "orders")
"""Where the number of orders comes from: the saga stores one row per order, kept for good."""


@cache
def pruned_tables() -> dict[str, frozenset[str]] | None:
    """Per service, the tables its pruner deletes from or archives (shared.retention, with the
    settings this process's environment gives the services); None when the pruner is turned off
    (``RETENTION_ENABLED=false``): then storage is measured "before pruning"."""
    settings = RetentionSettings()
    if not settings.enabled:
        return None
    tables: dict[str, frozenset[str]] = {}
    for service in SERVICES:
        definition: ServiceDefinition = importlib.import_module(f"services.{service}.app").DEFINITION
        steps = service_steps(definition.archives, settings, Path("unused"))  # no file is touched
        tables[service] = frozenset(t.name for t in retention_tables(steps))
    return tables


def archive_dir(database_url: str, service: str) -> Path:
    """Where ``service``'s pruner moves archived rows (shared.retention.archive_root)."""
    return archive_root(RetentionSettings(), database_url, service)


@dataclass(frozen=True, slots=True)
class DatabaseFigures:
    """One service database at one moment."""

    file_bytes: int | None
    """The database file, its -wal and its -shm together (None: not a SQLite file)."""
    wal_bytes: int | None
    live_bytes: int | None
    """Bytes of the pages in use (page count less free pages, times the page size)."""
    rows: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    archive_bytes: int | None = None
    """The service's archive files (compressed rows the pruner moved out of the database)."""


@dataclass(frozen=True, slots=True)
class StorageSample:
    """Every database and the broker's data at one moment."""

    databases: dict[str, DatabaseFigures]
    kafka_bytes: int | None
    """Disk used by every topic's partitions (None: the broker's data folder is not known)."""
    kafka_tradeguard_bytes: int | None
    """Disk used by the ``tradeguard.*`` topics alone."""

    @property
    def orders(self) -> int:
        service, table = ORDERS_TABLE
        figures = self.databases.get(service)
        return figures.rows.get(table, 0) if figures else 0

    def rows(self) -> dict[str, dict[str, int]]:
        return {name: dict(figures.rows) for name, figures in self.databases.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "databases": {name: asdict(figures) for name, figures in self.databases.items()},
            "kafka_bytes": self.kafka_bytes,
            "kafka_tradeguard_bytes": self.kafka_tradeguard_bytes,
            "orders": self.orders,
        }


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite+aiosqlite:///`` URL, None for another database."""
    return Path(url.removeprefix(SQLITE_PREFIX)) if url.startswith(SQLITE_PREFIX) else None


def kafka_data_dir_of_running_broker() -> Path | None:
    """The data folder of the broker this process's credentials belong to, when scripts/kafka.sh
    runs it here (its credentials folder is ``<KAFKA_DATA_DIR>/credentials``); else None."""
    try:
        folder = credentials_dir().parent
    except BrokerSecurityError:
        return None
    return folder if (folder / "logs").is_dir() else None


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _disk_bytes(path: Path) -> int:
    """Blocks in use, not the length: a sparse preallocated index takes little of what it says."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def read_database(path: Path, *, with_rows: bool = True) -> DatabaseFigures:
    """Sizes (and rows per table) of one SQLite database, read through a read-only connection."""
    wal = _file_bytes(path.with_name(path.name + "-wal"))
    files = _file_bytes(path) + wal + _file_bytes(path.with_name(path.name + "-shm"))
    if not path.exists():
        return DatabaseFigures(files, wal, None, error=f"{path} does not exist")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as error:
        return DatabaseFigures(files, wal, None, error=repr(error))
    try:
        # One read transaction: the sizes and the counts describe the same moment.
        connection.execute("BEGIN")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        rows: dict[str, int] = {}
        if with_rows:
            names = [
                n
                for (n,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            for name in names:
                quoted = name.replace('"', '""')
                rows[name] = connection.execute(f'SELECT count(*) FROM "{quoted}"').fetchone()[0]  # noqa: S608 - a table name read from the database itself
        return DatabaseFigures(files, wal, (pages - free) * page_size, rows)
    except sqlite3.Error as error:
        return DatabaseFigures(files, wal, None, error=repr(error))
    finally:
        connection.close()


def table_bytes(path: Path) -> dict[str, int] | None:
    """Bytes per table and index (SQLite's dbstat; None where it is not compiled in). It reads
    every page, so it is for the end of a run, not for every sample."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        found = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return {str(name): int(size) for name, size in found}


def folder_bytes(folder: Path) -> int:
    """Disk used by every file under ``folder`` (0 when it does not exist)."""
    return sum(_disk_bytes(Path(root) / name) for root, _, names in os.walk(folder) for name in names)


def kafka_bytes(data_dir: Path) -> tuple[int, int]:
    """Disk used by the broker's partitions: (every topic, the ``tradeguard.*`` topics)."""
    total = ours = 0
    logs = data_dir / "logs"
    with contextlib.suppress(FileNotFoundError):
        for partition in os.scandir(logs):
            if not partition.is_dir():
                continue
            used = sum(_disk_bytes(Path(entry.path)) for entry in os.scandir(partition.path) if entry.is_file())
            total += used
            if partition.name.startswith(TRADEGUARD_TOPIC_PREFIX):
                ours += used
    return total, ours


class StorageMeter:
    """Reads the databases named by ``database_urls`` and the broker's data under ``kafka_data_dir``."""

    def __init__(self, database_urls: Mapping[str, str], kafka_data_dir: Path | None) -> None:
        self._paths = {name: sqlite_path(url) for name, url in database_urls.items()}
        self._archives = {name: archive_dir(url, name) for name, url in database_urls.items()}
        self._kafka = kafka_data_dir

    def sample(self, *, with_rows: bool = True) -> StorageSample:
        databases = {
            name: replace(
                read_database(path, with_rows=with_rows)
                if path is not None
                else DatabaseFigures(None, None, None, error="not a SQLite database"),
                archive_bytes=folder_bytes(self._archives[name]),
            )
            for name, path in self._paths.items()
        }
        total, ours = kafka_bytes(self._kafka) if self._kafka is not None else (None, None)
        return StorageSample(databases, total, ours)

    def table_bytes(self) -> dict[str, dict[str, int] | None]:
        return {name: table_bytes(path) if path else None for name, path in self._paths.items()}


def _per(growth: int | None, orders: int) -> float | None:
    return round(growth / orders, 1) if growth is not None and orders > 0 else None


def _growth(after: int | None, before: int | None) -> int | None:
    return after - before if after is not None and before is not None else None


def per_order(before: StorageSample, after: StorageSample) -> dict[str, Any]:
    """Bytes per order between two samples: growth over the orders the saga stored meanwhile.

    ``file``: what the files grew by (a pruned SQLite database keeps its free pages: its file
    does not shrink); ``live``: what the pages in use grew by (negative when pruning freed more
    than the orders added)."""
    orders = after.orders - before.orders
    services: dict[str, dict[str, float | None]] = {}
    for name, figures in after.databases.items():
        was = before.databases.get(name)
        services[name] = {
            "file": _per(_growth(figures.file_bytes, was.file_bytes if was else None), orders),
            "live": _per(_growth(figures.live_bytes, was.live_bytes if was else None), orders),
            "archive": _per(_growth(figures.archive_bytes, was.archive_bytes if was else None), orders),
        }
    file_values = [s["file"] for s in services.values()]
    live_values = [s["live"] for s in services.values()]
    return {
        "orders": orders,
        "databases": services,
        "databases_file": round(sum(v for v in file_values if v is not None), 1)
        if all(v is not None for v in file_values) and file_values
        else None,
        "databases_live": round(sum(v for v in live_values if v is not None), 1)
        if all(v is not None for v in live_values) and live_values
        else None,
        "archives": round(sum(v["archive"] or 0.0 for v in services.values()), 1) if orders > 0 else None,
        "kafka": _per(_growth(after.kafka_bytes, before.kafka_bytes), orders),
        "kafka_tradeguard": _per(_growth(after.kafka_tradeguard_bytes, before.kafka_tradeguard_bytes), orders),
    }


Rows = dict[str, dict[str, int]]


def pruner_env(every: float | None) -> dict[str, str]:
    """The services' environment for a pruner pass every ``every`` seconds (None: their default)."""
    return {} if every is None else {"RETENTION_EVERY_SECONDS": f"{every:g}"}


def pruner_every(extra_env: Mapping[str, str]) -> float:
    """The pause between the services' pruner passes, as the services will read it."""
    named = extra_env.get("RETENTION_EVERY_SECONDS")
    return float(named) if named else RetentionSettings().every_seconds


async def sample_in_thread(meter: StorageMeter) -> StorageSample:
    """A sample taken off the event loop: counting a million rows must not stall the loop that
    stamps every order's times."""
    return await asyncio.to_thread(meter.sample)


@dataclass(frozen=True, slots=True)
class PruneWait:
    """How long to wait for the pruner once the clock has moved."""

    poll: float = 5.0
    stall: float = 120.0
    """Give up once no table changed for this long (no pruner, or one that is done), and never
    before two of the pruner's passes (``pruner_every`` apart) changed nothing."""
    limit: float = 3600.0
    """A paced pruner takes its time: at 100 orders/s, 30 minutes leave millions of inbox ids."""
    report: float = 30.0
    pruner_every: float = 60.0
    """The services' ``RETENTION_EVERY_SECONDS``."""

    @property
    def quiet_for(self) -> float:
        return max(self.stall, 2 * self.pruner_every + self.poll)


async def move_clock_and_wait(
    meter: StorageMeter,
    clock_file: Path,
    days: float,
    done: Callable[[Rows], bool],
    wait: PruneWait,
    *,
    progress: Callable[[StorageSample, float], None] | None = None,
) -> tuple[StorageSample, float]:
    """Move every service's clock ``days`` on (X8), then sample until ``done(rows)`` and the
    pruner's pass is over (nothing changed for one of its periods), nothing changed for
    ``wait.quiet_for`` seconds, or ``wait.limit`` passed; the last sample and the seconds waited.
    ``progress`` is told of a sample every ``wait.report`` seconds."""
    advance_clock_file(clock_file, timedelta(days=days))
    started = last_change = last_report = time.monotonic()
    previous: Rows | None = None
    while True:
        await asyncio.sleep(wait.poll)
        sample = await sample_in_thread(meter)
        rows, now = sample.rows(), time.monotonic()
        if rows != previous:
            last_change, previous = now, rows
        quiet = now - last_change
        finished = done(rows) and quiet > wait.pruner_every + wait.poll
        if finished or quiet > wait.quiet_for or now - started > wait.limit:
            return sample, round(now - started, 1)
        if progress is not None and now - last_report >= wait.report:
            progress(sample, now - started)
            last_report = now
