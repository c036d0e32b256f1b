"""X8: one clock for every process of a stack, moved forward through a file, never backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scripts.cli.clock import parse_duration
from shared.clock import FileClock, advance_clock_file, read_clock_offset


def test_x8_a_file_clock_follows_the_offset_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    clock = FileClock(path)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)  # no file: the system's time
    advance_clock_file(path, timedelta(days=16))
    assert clock.now() - datetime.now(UTC) > timedelta(days=15, hours=23)
    assert advance_clock_file(path, timedelta(hours=12)) == timedelta(days=16, hours=12)
    assert read_clock_offset(path) == timedelta(days=16, hours=12)
    assert FileClock(path).now() - datetime.now(UTC) > timedelta(days=16, hours=11)


def test_x8_the_clock_never_moves_back(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="never moves backwards"):
        advance_clock_file(tmp_path / "clock.json", timedelta(seconds=-1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1d12h", timedelta(days=1, hours=12))],
)
def test_x8_durations_read_as_people_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "16", "d", "1w", "-1d", "1d 2h"])
def test_x8_a_duration_that_is_not_one_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
