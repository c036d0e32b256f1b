"""Issue 19 (day-2 operations): the retention pruner against real databases, SQLite and
PostgreSQL. Old and new rows go in, the clock moves, a pass runs: only the expired rows left the
database, the archived ones landed in the archive, and nothing else moved."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.account.app import DEFINITION as ACCOUNT
from services.notification.app import DEFINITION as NOTIFICATION
from services.notification.store import email_deliveries, email_send_log, notification_releases, notifications
from services.saga.app import DEFINITION as SAGA
from services.saga.app import create_service as create_saga
from services.saga.settings import SagaSettings
from services.saga.store import audit, orders
from shared.clock import ManualClock
from shared.db import migrate
from shared.retention import ArchiveStep, Pruner, read_archive, service_steps
from shared.settings import KafkaSettings, RetentionSettings
from shared.tables import idempotency_keys, inbox
from tests.support.eventually import eventually

DAY = timedelta(days=1)


async def no_pause(_seconds: float) -> None:
    """The pauses are wall-clock pacing, not time the test waits for."""


def pruner(engine: AsyncEngine, archives: Sequence[Any], clock: ManualClock, root: Path, **settings: Any) -> Pruner:
    chosen = RetentionSettings(**settings)
    return Pruner(engine, service_steps(archives, chosen, root), clock, chosen, sleep=no_pause)


async def insert(engine: AsyncEngine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as connection:
        await connection.execute(table.insert(), rows)


async def column(engine: AsyncEngine, selected: sa.ColumnElement[Any]) -> list[Any]:
    async with engine.connect() as connection:
        return sorted((await connection.execute(sa.select(selected))).scalars())


async def test_day2_retention_expires_inbox_ids_and_idempotency_keys_in_batches(
    engine: AsyncEngine, clock: ManualClock, tmp_path: Path
) -> None:
    await migrate(engine, ACCOUNT.migrations)
    now = clock.now()
    # 1,050 ids from eight days ago (three batches of 500), three from an hour ago.
    old_ids = [
        {"message_id": str(uuid.uuid4()), "message_type": "Old", "received_at": now - 8 * DAY} for _ in range(1050)
    ]
    new_ids = [
        {"message_id": f"new-{i}", "message_type": "New", "received_at": now - timedelta(hours=1)} for i in range(3)
    ]
    await insert(engine, inbox, old_ids + new_ids)
    key = {"fingerprint": "f" * 64, "outcome": "[]"}
    await insert(
        engine,
        idempotency_keys,
        [
            {"scoped_key": "X:stale", "created_at": now - timedelta(hours=25), **key},
            {"scoped_key": "X:fresh", "created_at": now - timedelta(hours=23), **key},
        ],
    )
    prune = pruner(engine, (), clock, tmp_path, batch_rows=500)

    assert await prune.prune() == {"inbox": 1050, "idempotency_keys": 1}
    assert await column(engine, inbox.c.message_id) == ["new-0", "new-1", "new-2"]
    assert await column(engine, idempotency_keys.c.scoped_key) == ["X:fresh"]

    clock.advance(7 * DAY)  # the rest pass their windows
    assert await prune.prune() == {"inbox": 3, "idempotency_keys": 1}
    assert await column(engine, inbox.c.message_id) == []
    assert await column(engine, idempotency_keys.c.scoped_key) == []


def order_row(order_id: str, status: str, updated_at: datetime) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "buyer_id": "buyer-1",
        "seller_id": "seller-1",
        "amount_minor": 12_500,
        "currency": "EUR",
        "marketplace_id": "market-1",
        "use_balance_first": False,
        "status": status,
        "timers": {},
        "actions": [],
        "sent": {},
        "version": 3,
        "created_at": updated_at - DAY,
        "updated_at": updated_at,
    }


def audit_row(order_id: str, at: datetime, note: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "at": at,
        "cause_type": "FundsReleased",
        "cause_message_id": str(uuid.uuid4()),
        "from_status": "releasing",
        "to_status": "completed",
        "sent": "",
        "note": note,
    }


async def test_day2_retention_archives_the_transitions_of_settled_orders_only(
    engine: AsyncEngine, clock: ManualClock, tmp_path: Path
) -> None:
    await migrate(engine, SAGA.migrations)
    now = clock.now()
    await insert(
        engine,
        orders,
        [
            order_row("o-done", "completed", now - 40 * DAY),  # settled long ago: its trail goes
            order_row("o-late", "completed", now - 5 * DAY),  # finished lately (a late refund): kept
            order_row("o-open", "in_escrow", now - 45 * DAY),  # still open: its whole trail stays
        ],
    )
    await insert(
        engine,
        audit,
        [
            audit_row("o-done", now - 41 * DAY, "done-1"),
            audit_row("o-late", now - 41 * DAY, "late-1"),
            audit_row("o-done", now - 40 * DAY, "done-2"),
            audit_row("o-open", now - 45 * DAY, "open-1"),
            audit_row("o-gone", now - 39 * DAY, "refused-checkout"),  # an order never stored
            audit_row("o-late", now - 5 * DAY, "late-2"),
        ],
    )
    root = tmp_path / "archive" / "saga"
    prune = pruner(engine, SAGA.archives, clock, root, batch_rows=2)  # small batches: the walk crosses them

    gone = await prune.prune()

    assert gone["order_audit"] == 3
    assert await column(engine, audit.c.note) == ["late-1", "late-2", "open-1"]
    archived = [r["row"]["note"] for r in read_archive(root, "order_audit")]
    assert sorted(archived) == ["done-1", "done-2", "refused-checkout"]
    assert await column(engine, orders.c.order_id) == ["o-done", "o-late", "o-open"]  # orders are money records

    clock.advance(30 * DAY)  # o-late is now quiet for 35 days
    assert (await prune.prune())["order_audit"] == 2
    assert await column(engine, audit.c.note) == ["open-1"]


def notification_row(nid: str, created_at: datetime) -> dict[str, Any]:
    return {
        "notification_id": nid,
        "recipient_id": "buyer-1",
        "kind": "payment_succeeded",
        "category": "transactional",
        "reference": nid,
        "order_id": "o-1",
        "language": "en",
        "subject": "Paid",
        "body": "You paid.",
        "html": "<p>You paid.</p>",
        "correlation_id": "o-1",
        "read_at": None,
        "version": 1,
        "created_at": created_at,
        "updated_at": created_at,
    }


def delivery_row(nid: str, state: str, created_at: datetime) -> dict[str, Any]:
    return {
        "notification_id": nid,
        "recipient_id": "buyer-1",
        "address": "buyer@example.com",
        "message_id": f"<{nid}@notifications.tradeguard>",
        "kind": "payment_succeeded",
        "order_id": "o-1",
        "state": state,
        "attempts": 1,
        "version": 2,
        "created_at": created_at,
        "updated_at": created_at,
    }


async def test_day2_retention_archives_settled_notices_with_their_email_rows(
    engine: AsyncEngine, clock: ManualClock, tmp_path: Path
) -> None:
    await migrate(engine, NOTIFICATION.migrations)
    now = clock.now()
    old, new = now - 31 * DAY, now - 2 * DAY
    await insert(
        engine,
        notifications,
        [
            notification_row("n-sent", old),
            notification_row("n-pending", old),
            notification_row("n-inbox-only", old),
            notification_row("n-dead", old),
            notification_row("n-new", new),
        ],
    )
    await insert(
        engine,
        email_deliveries,
        [
            delivery_row("n-sent", "sent", old),
            delivery_row("n-pending", "pending", old),
            delivery_row("n-dead", "dead", old),
            delivery_row("n-new", "sent", new),
        ],
    )
    await insert(engine, email_send_log, [{"notification_id": "n-sent", "message_id": "<m>", "accepted_at": old}])
    release = {"recipient_id": "buyer-1", "language": "zh-CN", "subject": "s", "body": "b", "html": "h"}
    await insert(
        engine, notification_releases, [{"notification_id": "n-sent", "address": None, "created_at": old, **release}]
    )
    root = tmp_path / "archive" / "notification"

    gone = await pruner(engine, NOTIFICATION.archives, clock, root).prune()

    assert gone["notifications"] == 2
    assert await column(engine, notifications.c.notification_id) == ["n-dead", "n-new", "n-pending"]
    assert await column(engine, email_deliveries.c.notification_id) == ["n-dead", "n-new", "n-pending"]
    assert await column(engine, email_send_log.c.notification_id) == []
    assert await column(engine, notification_releases.c.notification_id) == []
    records = {r["row"]["notification_id"]: r for r in read_archive(root, "notifications")}
    assert set(records) == {"n-sent", "n-inbox-only"}
    sent = records["n-sent"]
    assert sent["row"]["body"] == "You paid."
    assert sent["row"]["created_at"] == old.isoformat()
    assert [d["state"] for d in sent["related"]["email_deliveries"]] == ["sent"]
    assert [s["message_id"] for s in sent["related"]["email_send_log"]] == ["<m>"]
    assert [r["language"] for r in sent["related"]["notification_releases"]] == ["zh-CN"]
    assert records["n-inbox-only"]["related"] == {
        "email_deliveries": [],
        "email_send_log": [],
        "notification_releases": [],
    }
    assert [p.parent.name for p in root.glob("notifications/*/*.jsonl.gz")] == [old.date().isoformat()]


async def test_day2_retention_a_row_changed_after_it_was_archived_stays_for_the_next_pass(
    engine: AsyncEngine, clock: ManualClock, tmp_path: Path
) -> None:
    await migrate(engine, NOTIFICATION.migrations)
    old = clock.now() - 31 * DAY
    await insert(engine, notifications, [notification_row("n-read", old)])
    await insert(engine, email_deliveries, [delivery_row("n-read", "sent", old)])
    step = ArchiveStep(NOTIFICATION.archives[0], timedelta(days=30), tmp_path)
    async with engine.connect() as connection:
        archived = dict((await connection.execute(sa.select(notifications))).mappings().one())
    async with engine.begin() as connection:  # the holder marks it read between the copy and the delete
        await connection.execute(notifications.update().values(read_at=clock.now(), version=2))

    assert await step._delete(engine, [archived]) == 0
    assert await column(engine, notifications.c.notification_id) == ["n-read"]
    assert await column(engine, email_deliveries.c.notification_id) == ["n-read"]  # with its email


@pytest.mark.kafka
async def test_day2_retention_runs_beside_every_service_and_stops_with_it(
    database_url: str, kafka_bootstrap: str, clock: ManualClock, tmp_path: Path
) -> None:
    settings = SagaSettings(
        database_url=database_url,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        retention=RetentionSettings(every_seconds=0.2, archive_dir=tmp_path),
    )
    service = create_saga(settings, clock)
    await service.start()  # migrates, then starts the pruner with the relay and the consumer
    try:
        old = clock.now() - 40 * DAY
        await insert(service.engine, inbox, [{"message_id": "m-old", "message_type": "Old", "received_at": old}])
        await insert(service.engine, audit, [audit_row("o-never-stored", old, "refused-checkout")])

        async def left() -> tuple[list[Any], list[Any]]:
            return await column(service.engine, audit.c.note), await column(service.engine, inbox.c.message_id)

        def pruned(rows: tuple[list[Any], list[Any]]) -> bool:
            # Only this test's rows: the consumer may meanwhile handle what other tests left on the
            # session's broker, and its own fresh rows are young.
            notes, ids = rows
            return "refused-checkout" not in notes and "m-old" not in ids

        assert pruned(await eventually(left, pruned, timeout=30))
        assert [r["row"]["note"] for r in read_archive(tmp_path / "saga", "order_audit")] == ["refused-checkout"]
    finally:
        await service.stop()
    assert all(task.done() for task in service._tasks)
