"""Aggregates declared once: which table holds them and how a row maps to the object.

A service declares each of its aggregates in one line next to its table::

    WALLETS = Aggregate(Wallet, wallets, key="account_id", money={"balance": ("balance_minor", "currency")})

and the batch unit of work (:mod:`shared.unit_of_work`) loads and saves every aggregate
the same way: one query per table for a whole batch, one upsert per table to write it
back, with the ``version`` column checked (optimistic concurrency). No store hand-writes
row mapping.

The mapping is read from the dataclass's fields: a field maps to the column of the same
name; a :class:`~contracts.Money` (or ``Balance``) field to two columns (``<field>_minor`` and
``<field>_currency`` unless ``money=`` names them); an enum to its value; a bool to 0 or 1 and back; an aware
datetime to a UTC column. Columns the object does not have are the mechanism's:
``version`` (required on every aggregate table), ``created_at`` and ``updated_at`` (set
from the clock when present).

A :class:`Journal` is an append-only table (ledger entries, transitions): rows are only
ever inserted, in one executemany per batch.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, Union

import sqlalchemy as sa

from contracts.money import Balance

A = TypeVar("A")
Key = Any  # a column value, or a tuple of them for a composite key
Row = dict[str, Any]

MECHANISM_COLUMNS = frozenset({"version", "created_at", "updated_at"})


class _FieldPlan:
    """How one dataclass field becomes columns and back."""

    __slots__ = ("columns", "kind", "name", "target")

    def __init__(self, name: str, kind: str, columns: tuple[str, ...], target: Any = None) -> None:
        self.name, self.kind, self.columns, self.target = name, kind, columns, target


def _plain_type(hint: Any) -> Any:
    """``X | None`` -> X; anything else unchanged."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


class Aggregate(Generic[A]):
    """A dataclass persisted one row per instance, keyed by ``key`` and versioned."""

    def __init__(
        self,
        cls: type[A],
        table: sa.Table,
        *,
        key: str | Sequence[str],
        money: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be declared an aggregate")
        if "version" not in table.c:
            raise ValueError(f"table {table.name} needs a version column (optimistic concurrency)")
        self.cls = cls
        self.table = table
        self.name = cls.__name__
        self.key_columns: tuple[str, ...] = (key,) if isinstance(key, str) else tuple(key)
        self._plans = self._plan(cls, table, money or {})
        mapped = {c for p in self._plans for c in p.columns}
        self.timestamps = tuple(c for c in ("created_at", "updated_at") if c in table.c and c not in mapped)
        self._key_attrs = self._key_attributes()
        self._check_columns()

    # ------------------------------------------------------------------ mapping

    @staticmethod
    def _plan(item_type: type[Any], table: sa.Table, money: Mapping[str, tuple[str, str]]) -> list[_FieldPlan]:
        hints = typing.get_type_hints(item_type)
        plans = []
        for field in dataclasses.fields(item_type):
            hint = _plain_type(hints[field.name])
            if isinstance(hint, type) and issubclass(hint, Balance):  # Money is a Balance with a lower bound
                columns = money.get(field.name, (f"{field.name}_minor", f"{field.name}_currency"))
                plans.append(_FieldPlan(field.name, "money", columns, hint))
            elif isinstance(hint, type) and issubclass(hint, enum.Enum):
                plans.append(_FieldPlan(field.name, "enum", (field.name,), hint))
            elif hint is datetime:
                plans.append(_FieldPlan(field.name, "datetime", (field.name,)))
            elif hint is bool:  # SQLite's raw rows give 0 and 1
                plans.append(_FieldPlan(field.name, "bool", (field.name,)))
            else:
                plans.append(_FieldPlan(field.name, "plain", (field.name,)))
        missing = [c for p in plans for c in p.columns if c not in table.c]
        if missing:
            raise ValueError(f"table {table.name} lacks columns {missing} for {item_type.__name__}")
        return plans

    def _key_attributes(self) -> tuple[str, ...]:
        by_column = {p.columns[0]: p.name for p in self._plans if p.kind != "money"}
        try:
            return tuple(by_column[c] for c in self.key_columns)
        except KeyError as missing:
            raise ValueError(f"key column {missing} of {self.name} is not a plain field") from None

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the unit of work writes: the mapped ones, the version and the timestamps."""
        mapped = dict.fromkeys(c for p in self._plans for c in p.columns)
        return (*mapped, "version", *self.timestamps)

    def _check_columns(self) -> None:
        mapped = {c for p in self._plans for c in p.columns} | MECHANISM_COLUMNS
        unmapped = [
            c.name
            for c in self.table.c
            if c.name not in mapped and not c.nullable and c.default is None and not c.primary_key
        ]
        if unmapped:
            raise ValueError(f"required columns {unmapped} of {self.table.name} are not fields of {self.name}")

    def to_row(self, item: A) -> Row:
        """The columns of ``item`` (without version and timestamps)."""
        row: Row = {}
        for plan in self._plans:
            value = getattr(item, plan.name)
            if plan.kind == "money":
                minor, currency = plan.columns
                row[minor] = value.amount_minor if value is not None else None
                row[currency] = value.currency if value is not None else None
            elif plan.kind == "enum":
                row[plan.name] = value.value if value is not None else None
            else:
                row[plan.columns[0]] = value
        return row

    def from_row(self, row: Mapping[Any, Any]) -> A:
        """The object a stored row describes (the row comes from our own database: trusted)."""
        values: dict[str, Any] = {}
        for plan in self._plans:
            if plan.kind == "money":
                minor, currency = plan.columns
                amount = row[minor]
                values[plan.name] = (
                    None if amount is None else plan.target.model_construct(amount_minor=amount, currency=row[currency])
                )
            elif plan.kind == "enum":
                value = row[plan.name]
                values[plan.name] = None if value is None else plan.target(value)
            elif plan.kind == "datetime":
                value = row[plan.name]
                values[plan.name] = value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
            elif plan.kind == "bool":
                value = row[plan.name]
                values[plan.name] = None if value is None else bool(value)
            else:
                values[plan.name] = row[plan.columns[0]]
        return self.cls(**values)

    def key_of(self, item: A) -> Key:
        """The key of an object, as the unit of work indexes it."""
        if len(self._key_attrs) == 1:
            return getattr(item, self._key_attrs[0])
        return tuple(getattr(item, a) for a in self._key_attrs)

    def key_of_row(self, row: Mapping[Any, Any]) -> Key:
        if len(self.key_columns) == 1:
            return row[self.key_columns[0]]
        return tuple(row[c] for c in self.key_columns)

    def by(self, key: str | Callable[[Any, Any], Key]) -> Load[A]:
        """What a handler will read: the aggregate whose key is a message field, or computed
        from (message, envelope)."""
        if isinstance(key, str):
            attribute = key
            return Load(self, lambda message, _envelope: getattr(message, attribute))
        return Load(self, key)

    def each(self, keys: Callable[[Any, Any], Sequence[Key]]) -> Load[A]:
        """What a handler will read: every aggregate whose key ``keys`` lists (a handful, such as
        each promotion's budget); the handler finds them with ``ctx.get``."""
        return Load(self, keys, many=True)

    def __repr__(self) -> str:
        return f"Aggregate({self.name}, {self.table.name})"


@dataclasses.dataclass(frozen=True, slots=True)
class Load(Generic[A]):
    """One aggregate a handler reads, and how to find its key in (message, envelope)."""

    aggregate: Aggregate[A]
    key: Callable[[Any, Any], Key]
    many: bool = False  # key gives a sequence of keys (Aggregate.each)


class Journal:
    """An append-only table: rows inserted, never updated (ledger entries, transitions)."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table
        self.name = table.name

    def __repr__(self) -> str:
        return f"Journal({self.name})"
