"""Issue 19 (day-2 operations): the retention pruner's rules, without a database: its windows
and settings, the batch loop and its pauses, the archive files, what may leave each service's
database, and the one rule above all others, that no money record is ever on its lists."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import ALL_TOPICS, DEAD_LETTER, ORDER_COMMANDS, ORDER_EVENTS
from services.account import store as account_store
from services.account.app import DEFINITION as ACCOUNT
from services.escrow import store as escrow_store
from services.escrow.app import DEFINITION as ESCROW
from services.notification import store as notification_store
from services.notification.app import DEFINITION as NOTIFICATION
from services.notification.retention import email_finished
from services.payment import store as payment_store
from services.payment.app import DEFINITION as PAYMENT
from services.saga import store as saga_store
from services.saga.app import DEFINITION as SAGA
from services.saga.retention import order_settled
from shared import idempotency
from shared.broker_security import topic_config
from shared.clock import ManualClock
from shared.observability import METRICS
from shared.retention import (
    Archive,
    ArchiveStep,
    Batch,
    Candidate,
    Pruner,
    archive_root,
    cutoff,
    expired_prefix,
    pruned_tables,
    read_archive,
    service_steps,
    write_archive,
)
from shared.settings import RetentionSettings
from shared.tables import idempotency_keys, inbox

DEFINITIONS = (ACCOUNT, PAYMENT, ESCROW, NOTIFICATION, SAGA)
STORES = (account_store, payment_store, escrow_store, notification_store, saga_store)

MONEY_RECORDS = frozenset(
    {
        "wallets",
        "wallet_movements",
        "escrow_holds",
        "escrow_returns",
        "ledger_entries",
        "ledger_accounts",
        "ledger_transfers",
        "payments",
        "network_requests",
        "refunds",
        "quotes",
        "campaign_budgets",
        "spending_windows",
        "account_limits",
        "orders",
        "order_refunds",
        "order_disputes",
    }
)
"""Wallets and their movements, holds and returns, the ledger, payments and the network requests
that move them, refunds, the limits and what was spent against them, orders and disputes: kept as
long as the system runs."""

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def all_service_tables() -> dict[str, sa.Table]:
    return {name: table for store in STORES for name, table in store.metadata.tables.items()}


def money_tables_in(tables: Sequence[sa.Table]) -> set[str]:
    """The money records among ``tables``: listed by name, or holding an amount (a ``*_minor`` column)."""
    return {t.name for t in tables if t.name in MONEY_RECORDS or any(c.name.endswith("_minor") for c in t.c)}


# ---------------------------------------------------------------------- the money guard


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_day2_retention_never_prunes_a_money_record(definition: object, tmp_path: Path) -> None:
    archives = definition.archives  # type: ignore[attr-defined]
    steps = service_steps(archives, RetentionSettings(), tmp_path)
    assert money_tables_in(pruned_tables(steps)) == set()


def test_day2_retention_money_guard_knows_every_money_table_and_catches_one(tmp_path: Path) -> None:
    tables = all_service_tables()
    assert set(tables) >= MONEY_RECORDS  # a renamed money table must be renamed here too
    # Every table holding an amount is listed by name as well, so the guard is not only a heuristic.
    assert {name for name, t in tables.items() if any(c.name.endswith("_minor") for c in t.c)} <= MONEY_RECORDS
    wallets = ArchiveStep(
        Archive(tables["wallet_movements"], age="created_at", key="account_id"), timedelta(1), tmp_path
    )
    assert money_tables_in(pruned_tables([wallets])) == {"wallet_movements"}


def test_day2_retention_prunes_exactly_the_tables_it_says(tmp_path: Path) -> None:
    settings = RetentionSettings()
    names = {
        d.name: {t.name for t in pruned_tables(service_steps(d.archives, settings, tmp_path))} for d in DEFINITIONS
    }
    messaging = {"inbox", "idempotency_keys"}
    assert names == {
        "account": messaging,
        "payment": messaging,
        "escrow": messaging,
        "notification": messaging | {"notifications", "email_deliveries", "email_send_log", "notification_releases"},
        "saga": messaging | {"order_audit"},
    }


# ---------------------------------------------------------------------- settings and windows


def test_day2_retention_defaults_are_the_policy() -> None:
    settings = RetentionSettings()
    assert settings.inbox_window == timedelta(days=7)
    assert settings.idempotency_window == timedelta(hours=24) == idempotency.KEEP_FOR
    assert settings.archive_after == timedelta(days=30)
    assert settings.batch_rows == 200


def test_day2_retention_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_INBOX_DAYS", "2")
    monkeypatch.setenv("RETENTION_IDEMPOTENCY_KEY_HOURS", "48")
    monkeypatch.setenv("RETENTION_BATCH_ROWS", "100")
    settings = RetentionSettings()
    assert (settings.inbox_window, settings.idempotency_window, settings.batch_rows) == (
        timedelta(days=2),
        timedelta(hours=48),
        100,
    )
    steps = {s.table.name: s for s in service_steps((), settings, Path())}
    assert steps["inbox"].keep_for == timedelta(days=2)  # type: ignore[attr-defined]


def test_day2_retention_cutoff_follows_the_clock() -> None:
    clock = ManualClock(DAY0)
    assert cutoff(clock.now(), timedelta(days=7)) == DAY0 - timedelta(days=7)
    clock.advance(timedelta(days=3))
    assert cutoff(clock.now(), timedelta(days=7)) == DAY0 - timedelta(days=4)


def test_day2_retention_walk_stops_at_the_first_row_young_enough() -> None:
    rows = [{"id": i, "at": DAY0 + timedelta(hours=i)} for i in range(1, 6)]
    assert expired_prefix(rows, "at", DAY0 + timedelta(hours=3)) == (rows[:2], True)
    assert expired_prefix(rows, "at", DAY0 + timedelta(days=1)) == (rows, False)
    assert expired_prefix(rows, "at", DAY0) == ([], True)


def test_day2_retention_archive_root_is_the_services_data_folder(tmp_path: Path) -> None:
    settings = RetentionSettings()
    assert archive_root(settings, f"sqlite+aiosqlite:///{tmp_path}/saga.db", "saga") == tmp_path / "archive" / "saga"
    assert archive_root(settings, "postgresql+asyncpg://u:p@h/db", "saga") == Path(".data/archive/saga")
    chosen = RetentionSettings(archive_dir=tmp_path / "elsewhere")
    assert archive_root(chosen, "postgresql+asyncpg://u:p@h/db", "saga") == tmp_path / "elsewhere" / "saga"


# ---------------------------------------------------------------------- the batch loop


@dataclass
class ScriptedStep:
    """A step whose batches are scripted: (rows, more) each, and the time each takes."""

    table: sa.Table
    script: list[Batch]
    took: float = 0.001
    action: str = "deleted"
    seen: list[tuple[datetime, int]] = field(default_factory=list)
    passes: int = 0

    def tables(self) -> tuple[sa.Table, ...]:
        return (self.table,)

    def begin_pass(self) -> None:
        self.passes += 1

    async def batch(self, _engine: AsyncEngine, now: datetime, limit: int) -> Batch:
        self.seen.append((now, limit))
        TIMER.now += self.took
        return self.script.pop(0) if self.script else Batch(0, more=False)


@dataclass
class FakeTimer:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


TIMER = FakeTimer()


def pruner(
    steps: Sequence[ScriptedStep],
    clock: ManualClock,
    pauses: list[float],
    last_busy: Callable[[], float] | None = None,
    **settings: float,
) -> Pruner:
    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    return Pruner(
        None,  # type: ignore[arg-type]  # scripted steps never touch a database
        steps,
        clock,
        RetentionSettings(**settings),  # type: ignore[arg-type]
        sleep=sleep,
        timer=TIMER,
        last_busy=last_busy,
    )


async def test_day2_retention_batches_until_a_step_has_no_more_and_pauses_after_each() -> None:
    clock = ManualClock(DAY0)
    inbox_step = ScriptedStep(inbox, [Batch(500, more=True), Batch(500, more=True), Batch(20, more=False)])
    keys_step = ScriptedStep(idempotency_keys, [Batch(3, more=False)])
    pauses: list[float] = []
    before = METRICS.retention_rows.labels("inbox", "deleted")._value.get()

    gone = await pruner([inbox_step, keys_step], clock, pauses, batch_rows=500, pause_ms=20).prune()

    assert gone == {"inbox": 1020, "idempotency_keys": 3}
    assert len(inbox_step.seen) == 3
    assert len(keys_step.seen) == 1
    assert {limit for _, limit in inbox_step.seen} == {500}  # never more than a batch per transaction
    assert pauses == [0.02] * 4  # one pause after every batch
    assert METRICS.retention_rows.labels("inbox", "deleted")._value.get() - before == 1020


async def test_day2_retention_pauses_grow_when_the_database_is_slow() -> None:
    clock = ManualClock(DAY0)
    slow = ScriptedStep(inbox, [Batch(500, more=True), Batch(1, more=False)], took=0.2)
    pauses: list[float] = []
    await pruner([slow], clock, pauses, pause_ms=20, busy_ratio=9).prune()
    assert pauses == pytest.approx([1.8, 1.8])  # a batch of 0.2 s: 1.8 s away, a tenth of the time inside


async def test_day2_retention_a_consumer_at_work_keeps_the_busy_ratio_an_idle_one_drops_it() -> None:
    slow = [Batch(500, more=True), Batch(1, more=False)]
    TIMER.now = 100.0
    busy: list[float] = []
    await pruner(
        [ScriptedStep(inbox, list(slow), took=0.2)], ManualClock(DAY0), busy, lambda: 99.5, pause_ms=20
    ).prune()
    idle: list[float] = []
    await pruner(
        [ScriptedStep(inbox, list(slow), took=0.2)], ManualClock(DAY0), idle, lambda: 90.0, pause_ms=20
    ).prune()
    assert busy == pytest.approx([1.8, 1.8])  # a batch half a second ago: the hot path comes first
    assert idle == pytest.approx([0.02, 0.02])  # none for 10 s (idle_seconds 2): only the least pause


async def test_day2_retention_archive_batches_take_their_own_size(tmp_path: Path) -> None:
    archive = ArchiveStep(SAGA.archives[0], timedelta(days=30), tmp_path)
    prune = pruner([], ManualClock(DAY0), [], batch_rows=200, archive_batch_rows=1000)
    expiry = service_steps((), RetentionSettings(), tmp_path)[0]
    assert (prune.batch_rows(archive), prune.batch_rows(expiry)) == (1000, 200)


async def test_day2_retention_each_pass_reads_the_clock_once_and_starts_afresh() -> None:
    clock = ManualClock(DAY0)
    step = ScriptedStep(inbox, [Batch(1, more=False)])
    prune = pruner([step], clock, [])
    await prune.prune()
    clock.advance(timedelta(days=2))
    await prune.prune()
    assert [now for now, _ in step.seen] == [DAY0, DAY0 + timedelta(days=2)]
    assert step.passes == 2


async def test_day2_retention_a_failed_pass_is_retried_after_the_pause() -> None:
    clock = ManualClock(DAY0)
    pauses: list[float] = []

    class Failing(ScriptedStep):
        async def batch(self, _engine: AsyncEngine, _now: datetime, _limit: int) -> Batch:
            raise OSError("database is locked")

    class Stop(Exception):
        pass

    prune = pruner([Failing(inbox, [])], clock, pauses, every_seconds=30)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise Stop

    prune._sleep = sleep
    with pytest.raises(Stop):
        await prune.run()
    assert pauses == [30, 30]  # the error did not end the task: the next pass came, and failed again


# ---------------------------------------------------------------------- archive files


def test_day2_retention_archive_files_are_daily_compressed_json_lines(tmp_path: Path) -> None:
    late = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)
    records = [
        {"table": "order_audit", "row": {"id": 1, "at": late, "note": "a"}, "related": {}},
        {"table": "order_audit", "row": {"id": 2, "at": late + timedelta(minutes=2), "note": "b"}, "related": {}},
        {"table": "order_audit", "row": {"id": 3, "at": late + timedelta(minutes=3), "note": "c"}, "related": {}},
    ]
    files = write_archive(tmp_path, "order_audit", records, "at")

    assert [f.parent.name for f in files] == ["2026-01-01", "2026-01-02"]
    assert files[1].name.startswith("000000000002-000000000003-")
    assert not list(tmp_path.rglob("*.partial"))  # written aside, then renamed into place
    with gzip.open(files[0], "rt") as lines:
        assert json.loads(lines.readline())["row"] == {"id": 1, "at": "2026-01-01T23:59:00+00:00", "note": "a"}
    assert [r["row"]["note"] for r in read_archive(tmp_path, "order_audit")] == ["a", "b", "c"]


def test_day2_retention_archiving_the_same_rows_again_never_overwrites(tmp_path: Path) -> None:
    record = {"table": "order_audit", "row": {"id": 7, "at": DAY0, "note": "x"}, "related": {}}
    write_archive(tmp_path, "order_audit", [record], "at")
    write_archive(tmp_path, "order_audit", [record], "at")  # a crash between the file and the delete
    assert [r["row"]["id"] for r in read_archive(tmp_path, "order_audit")] == [7, 7]


# ---------------------------------------------------------------------- what may leave


def notice(*states: str, released_to: str | None = None) -> Candidate:
    releases = [{"address": released_to}] if released_to is not None else []
    return Candidate(
        {"notification_id": "n"},
        {"email_deliveries": [{"state": s} for s in states], "notification_releases": releases},
    )


@pytest.mark.parametrize(
    ("states", "movable"),
    [
        ((), True),
        (("sent",), True),
        (("suppressed",), True),
        (("pending",), False),
        (("held",), True),  # its recipient never came in the whole window
        (("dead",), False),
    ],
)
def test_day2_retention_a_notice_leaves_once_its_email_is_settled(states: tuple[str, ...], movable: bool) -> None:
    assert email_finished(notice(*states), DAY0) is movable


def test_day2_retention_a_held_notice_released_to_an_address_stays_until_sent() -> None:
    assert email_finished(notice("held", released_to="buyer@example.com"), DAY0) is False


def order(status: str, updated_at: datetime, refunding: str | None = None) -> Candidate:
    return Candidate(
        {"order_id": "o"}, {"orders": [{"status": status, "updated_at": updated_at, "refunding": refunding}]}
    )


def test_day2_retention_transitions_leave_once_their_order_is_settled() -> None:
    window = DAY0
    assert order_settled(order("completed", window - timedelta(days=1)), window)
    assert order_settled(order("cancelled", window - timedelta(days=1)), window)
    assert order_settled(Candidate({"order_id": "o"}, {"orders": []}), window)  # never stored
    assert not order_settled(order("completed", window + timedelta(days=1)), window)  # moved lately
    assert not order_settled(order("in_escrow", window - timedelta(days=90)), window)  # still open
    assert not order_settled(order("refunded", window - timedelta(days=1), refunding="r-2"), window)


# ---------------------------------------------------------------------- Kafka topics


def test_day2_retention_topics_keep_messages_a_week_and_dead_letters_a_month() -> None:
    day = 24 * 60 * 60 * 1000
    for topic in ALL_TOPICS:
        config = topic_config(topic)
        assert config["cleanup.policy"] == "delete"  # no topic is a state log
        assert int(config["segment.ms"]) <= int(config["retention.ms"]) // 7
    assert topic_config(ORDER_COMMANDS)["retention.ms"] == str(7 * day)
    assert topic_config(ORDER_EVENTS)["retention.ms"] == str(7 * day)
    assert topic_config(DEAD_LETTER)["retention.ms"] == str(30 * day)
    assert topic_config(ORDER_COMMANDS)["message.timestamp.type"] == "LogAppendTime"  # kept beside them
