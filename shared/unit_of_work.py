"""The batch unit of work: read once, decide in memory, write once.

For one consumed batch the consumer

1. collects, from every decoded message, the aggregates its handler declared it reads
   (``handlers.on(Model, loads=[WALLETS.by("account_id")])``);
2. :meth:`BatchUnitOfWork.load` reads them with one query per table;
3. runs each handler in a :class:`MessageScope`: reads and changes happen on the objects
   in memory, and a scope that fails is rolled back in memory (the objects it touched are
   rebuilt from their state before it), so a refused or failing message leaves nothing;
4. :meth:`BatchUnitOfWork.write` writes every changed aggregate back with one upsert per
   table that checks the version it read (optimistic concurrency) and appends journal rows
   with one executemany per table, in the consumer's transaction.

A version that no longer matches (another instance, or a rebalance, changed the row since
it was read) raises :class:`VersionConflict`: the consumer rolls the batch back and runs it
again on fresh state. Nothing here imports Kafka.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from shared.aggregates import Aggregate, Journal, Key, Row
from shared.clock import Clock
from shared.errors import TradeGuardError
from shared.sql import Transaction

A = TypeVar("A")
_ABSENT: Any = object()


class VersionConflict(TradeGuardError):
    """Rows changed since the batch read them; the batch is re-run on fresh state."""

    def __init__(self, aggregate: str, keys: Iterable[Key]) -> None:
        shown = sorted(map(str, keys))[:5]
        super().__init__(f"{aggregate} rows among {', '.join(shown)} changed since they were read")
        self.aggregate = aggregate


class UndeclaredRead(TradeGuardError, LookupError):
    """A handler read an aggregate its registration does not declare in ``loads=`` (a bug)."""


def normalize_key(key: Key) -> Key:
    """Enum members as their values: a StrEnum equals its value but does not hash like it."""
    if isinstance(key, tuple):
        return tuple(k.value if isinstance(k, enum.Enum) else k for k in key)
    return key.value if isinstance(key, enum.Enum) else key


@dataclass(slots=True)
class _Entry:
    """One aggregate instance in the batch: its stored state and its state now."""

    aggregate: Aggregate[Any]
    stored: Row | None  # as read (None: no row yet)
    version: int  # as read (0: no row yet)
    item: Any  # the live object, or None while it does not exist
    touched: int = 0  # 0: untouched; else the order of first touch (new rows are inserted in it)


@dataclass(slots=True)
class BatchUnitOfWork:
    """Aggregates of one batch, by (aggregate name, key)."""

    clock: Clock
    _entries: dict[tuple[str, Key], _Entry] = field(default_factory=dict)
    _journal: list[tuple[Journal, Row]] = field(default_factory=list)
    _touches: int = 0

    async def load(self, tx: Transaction, wanted: Mapping[Aggregate[Any], set[Key]]) -> None:
        """Read every wanted aggregate, one query per table."""
        for aggregate, keys in wanted.items():
            fresh = [k for k in keys if (aggregate.name, k) not in self._entries]
            if not fresh:
                continue
            for row in await tx.select_in(aggregate.table, aggregate.key_columns, fresh):
                item = aggregate.from_row(row)
                key = aggregate.key_of_row(row)
                self._entries[aggregate.name, key] = _Entry(aggregate, aggregate.to_row(item), row["version"], item)
            for key in fresh:
                self._entries.setdefault((aggregate.name, key), _Entry(aggregate, None, 0, None))

    def scope(self) -> MessageScope:
        return MessageScope(self)

    def _entry(self, aggregate: Aggregate[Any], key: Key) -> _Entry:
        entry = self._entries.get((aggregate.name, normalize_key(key)), _ABSENT)
        if entry is _ABSENT:
            raise UndeclaredRead(f"{aggregate.name} {key!r} was not loaded: declare it in the handler's loads=[...]")
        return entry  # type: ignore[no-any-return]

    async def write(self, tx: Transaction) -> None:
        """Write back what changed, one statement per table. Raises VersionConflict."""
        now = self.clock.now()
        for aggregate, rows in self._changed_rows(now).items():
            if await tx.upsert(aggregate, rows) != len(rows):
                raise VersionConflict(aggregate.name, (aggregate.key_of_row(r) for r in rows))
        by_table: dict[Journal, list[Row]] = defaultdict(list)
        for journal, row in self._journal:
            if "created_at" in journal.table.c:
                row.setdefault("created_at", now)
            by_table[journal].append(row)
        for journal, rows in by_table.items():
            await tx.insert(journal.table, rows)

    def _changed_rows(self, now: datetime) -> dict[Aggregate[Any], list[Row]]:
        """The rows to upsert, per aggregate, in the order the batch first touched them."""
        changed: dict[Aggregate[Any], list[Row]] = defaultdict(list)
        for entry in sorted(self._entries.values(), key=lambda e: e.touched):
            if not entry.touched or entry.item is None:
                continue
            row = entry.aggregate.to_row(entry.item)
            if row == entry.stored:
                continue
            row["version"] = entry.version + 1
            for column in entry.aggregate.timestamps:
                row[column] = now
            changed[entry.aggregate].append(row)
        return changed


class MessageScope:
    """What one message's handler sees of the batch; rolled back in memory if it fails."""

    __slots__ = ("_before", "_journal", "_uow")

    def __init__(self, uow: BatchUnitOfWork) -> None:
        self._uow = uow
        self._before: dict[tuple[str, Key], tuple[_Entry, Row | None, int]] = {}
        self._journal: list[tuple[Journal, Row]] = []

    def get(self, aggregate: Aggregate[A], key: Key) -> A | None:
        """The aggregate with this key, or None when it does not exist (yet)."""
        entry = self._uow._entry(aggregate, key)
        self._remember(aggregate, key, entry)
        return entry.item  # type: ignore[no-any-return]

    def add(self, aggregate: Aggregate[A], item: A) -> A:
        """A new aggregate; its key must have been declared and must not exist yet."""
        key = aggregate.key_of(item)
        entry = self._uow._entry(aggregate, key)
        if entry.item is not None:
            raise ValueError(f"{aggregate.name} {key!r} already exists")
        self._remember(aggregate, key, entry)
        entry.item = item
        return item

    def append(self, journal: Journal, row: Row) -> None:
        """A row for an append-only table, written with the batch."""
        self._journal.append((journal, row))

    def _remember(self, aggregate: Aggregate[Any], key: Key, entry: _Entry) -> None:
        index = (aggregate.name, normalize_key(key))
        if index not in self._before:
            state = None if entry.item is None else aggregate.to_row(entry.item)
            self._before[index] = (entry, state, entry.touched)
        if not entry.touched:
            self._uow._touches += 1
            entry.touched = self._uow._touches

    def keep(self) -> None:
        """The handler succeeded: its changes join the batch."""
        self._uow._journal.extend(self._journal)

    def discard(self) -> None:
        """The handler failed or refused: every object it touched is as it was before."""
        for entry, state, touched in self._before.values():
            entry.item = None if state is None else entry.aggregate.from_row(state)
            entry.touched = touched
        self._before.clear()
        self._journal.clear()
