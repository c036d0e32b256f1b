"""A valid instance of any contract model, every field set (optional ones too), built from the
fields' types, bounds and examples: for tests that must cover every message type."""

from __future__ import annotations

import datetime as dt
import types
import uuid
from enum import Enum
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from contracts import Balance, Money

M = TypeVar("M", bound=BaseModel)

_FIXED: dict[Any, Any] = {
    Money: Money(amount_minor=12999, currency="USD"),
    Balance: Balance(amount_minor=10**15, currency="USD"),  # more than any amount may be
    uuid.UUID: uuid.UUID(int=7),
    bool: False,
    dt.datetime: dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),
    AwareDatetime: dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),
    dt.date: dt.date(1990, 5, 17),
}


def _int(field: FieldInfo | None) -> int:
    low = next((m.ge for m in field.metadata if isinstance(m, Ge)), None) if field else None
    high = next((m.le for m in field.metadata if isinstance(m, Le)), None) if field else None
    value = max(1, int(low)) if low is not None else 1  # type: ignore[call-overload]
    return min(value, int(high)) if high is not None else value  # type: ignore[call-overload]


def example_value(name: str, annotation: Any, field: FieldInfo | None = None) -> Any:  # noqa: PLR0911 - one per kind
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return example_value(name, inner, field)
    if origin is list:
        return [example_value(name, get_args(annotation)[0])]
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:  # Annotated[X, ...]: its own Field(examples=...) wins
        inner = next((m for m in metadata if isinstance(m, FieldInfo) and m.examples), field)
        return example_value(name, get_args(annotation)[0], inner)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(iter(annotation))
    if origin is Literal:
        return get_args(annotation)[0]
    if annotation is str:
        examples = field.examples if field else None
        return examples[0] if examples else f"{name}-example"
    if annotation is int:
        return _int(field)
    if annotation in _FIXED:
        return _FIXED[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return example(annotation)
    raise TypeError(f"no example for {name}: {annotation!r}; teach tests/support/examples.py about it")


def example(model: type[M]) -> M:
    """An instance of ``model`` with every field set."""
    values = {name: example_value(name, field.annotation, field) for name, field in model.model_fields.items()}
    return model(**values)
