"""What every service's read API (GET routes on its HTTP port, shared/observability.py) parses
the same way: whole-number query parameters, pages, and times as ISO 8601."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_PER_PAGE = 100
MAX_PAGE = 10**6


def whole(query: Mapping[str, str], name: str, default: int, *, least: int, most: int) -> int:
    """``query[name]`` as a whole number from ``least`` to ``most`` (``default`` when absent);
    ValueError naming the parameter and the rule otherwise (answered as 400)."""
    text = query.get(name, str(default))
    if not text.isdigit() or not least <= int(text) <= most:
        raise ValueError(f"{name}: a whole number from {least} to {most}, not {text[:20]!r}")
    return int(text)


def positive(query: Mapping[str, str], name: str, default: int, most: int) -> int:
    """``query[name]`` as a whole number from 1 to ``most``."""
    return whole(query, name, default, least=1, most=most)


@dataclass(frozen=True, slots=True)
class Page:
    """``page`` and ``per_page`` of a paged route."""

    page: int
    per_page: int

    @classmethod
    def of(cls, query: Mapping[str, str], *, per_page: int = 20, most: int = MAX_PER_PAGE) -> Page:
        return cls(positive(query, "page", 1, MAX_PAGE), positive(query, "per_page", per_page, most))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def iso(value: Any) -> str | None:
    """A stored time as ISO 8601 with its offset (SQLite gives the stored UTC time back without
    one); None when there is none."""
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()
