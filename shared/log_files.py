"""Log files that roll over by size (``TRADEGUARD_LOG_MAX_BYTES``, ``TRADEGUARD_LOG_BACKUPS``),
written once for the two kinds this project writes: a stack's service logs (through the writer
processes of ``scripts/log_rotation.py``) and each service's span file (``shared.tracing``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TypeVar

MAX_BYTES_VARIABLE = "TRADEGUARD_LOG_MAX_BYTES"
BACKUPS_VARIABLE = "TRADEGUARD_LOG_BACKUPS"
DEFAULT_MAX_BYTES = 10 * 2**20
DEFAULT_BACKUPS = 5

_Handler = TypeVar("_Handler", bound=logging.FileHandler)


@dataclass(frozen=True, slots=True)
class LogRotation:
    """Roll a log over once it would pass ``max_bytes``, keeping ``backups`` old files."""

    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.backups < 1:
            raise ValueError(f"a rotation needs a positive size and at least one old file, not {self}")

    @classmethod
    def from_environment(cls) -> LogRotation | None:
        """From ``TRADEGUARD_LOG_MAX_BYTES`` and ``TRADEGUARD_LOG_BACKUPS``; None when the size is 0 (no rotation)."""
        max_bytes = int(os.environ.get(MAX_BYTES_VARIABLE) or DEFAULT_MAX_BYTES)
        if max_bytes == 0:
            return None
        return cls(max_bytes, int(os.environ.get(BACKUPS_VARIABLE) or DEFAULT_BACKUPS))


def rotating_handler(path: Path, rotation: LogRotation) -> RotatingFileHandler:
    """The standard library's rotating file, writing each line as it came (no format added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _as_written(
        RotatingFileHandler(
            path, maxBytes=rotation.max_bytes, backupCount=rotation.backups, encoding="utf-8", errors="backslashreplace"
        )
    )


def log_file(path: Path, rotation: LogRotation | None) -> logging.FileHandler:
    """A file written line by line as each came: rolled over by ``rotation``, or without one appended to for good."""
    if rotation is not None:
        return rotating_handler(path, rotation)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _as_written(logging.FileHandler(path, encoding="utf-8", errors="backslashreplace"))


def _as_written(handler: _Handler) -> _Handler:
    handler.terminator = ""  # each line keeps its own newline
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def write_line(handler: logging.Handler, text: str) -> None:
    """Append ``text`` (its own newline included) through ``handler``, rolling the file over when due."""
    handler.handle(logging.makeLogRecord({"msg": text}))
