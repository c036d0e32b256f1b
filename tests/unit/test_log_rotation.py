"""Issue 19, `make run`'s logs: each process's output goes through a writer that rotates its file by
size, keeps a fixed number of old files, never splits a line, and outlives the signals meant for
the process it writes for."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from scripts.log_rotation import LogWriter, pump
from scripts.stack import ServiceProcesses
from shared.log_files import LogRotation, rotating_handler
from shared.tracing import JsonLinesExporter

LINE = "x" * 99 + "\n"  # 100 bytes


def lines_in(folder: Path, name: str) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines(keepends=True) for p in sorted(folder.glob(f"{name}*"))}


def oldest_first(folder: Path, name: str) -> list[str]:
    """Every line of ``name`` and its old files (``name.1`` the newest of them), as written."""
    old = sorted(folder.glob(f"{name}.*"), key=lambda p: -int(p.suffix.removeprefix(".")))
    return [line for path in [*old, folder / name] for line in path.read_text().splitlines(keepends=True)]


def test_logs_rotate_by_size_keep_so_many_old_files_and_never_split_a_line(tmp_path: Path) -> None:
    log = tmp_path / "saga.log"
    handler = rotating_handler(log, LogRotation(max_bytes=1000, backups=2))
    numbered = "".join(f"{n:04d}{LINE[4:]}" for n in range(45)).encode()

    try:
        copied = pump(io.BytesIO(numbered), handler)
    finally:
        handler.close()

    assert copied == 45
    files = lines_in(tmp_path, "saga.log")
    assert set(files) == {"saga.log", "saga.log.1", "saga.log.2"}  # older ones deleted
    assert all(len(lines) <= 10 and all(len(line) == 100 for line in lines) for lines in files.values())
    # what is kept is the end of the output, in order
    kept = oldest_first(tmp_path, "saga.log")
    assert [int(line[:4]) for line in kept] == list(range(45 - len(kept), 45))


def test_logs_rotation_comes_from_the_environment_and_zero_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADEGUARD_LOG_MAX_BYTES", raising=False)
    monkeypatch.delenv("TRADEGUARD_LOG_BACKUPS", raising=False)
    assert LogRotation.from_environment() == LogRotation(10 * 2**20, 5)
    monkeypatch.setenv("TRADEGUARD_LOG_MAX_BYTES", "4096")
    monkeypatch.setenv("TRADEGUARD_LOG_BACKUPS", "2")
    assert LogRotation.from_environment() == LogRotation(4096, 2)
    monkeypatch.setenv("TRADEGUARD_LOG_MAX_BYTES", "0")
    assert LogRotation.from_environment() is None
    with pytest.raises(ValueError, match="at least one old file"):
        LogRotation(1000, 0)


CHATTY = """
import os, signal, sys, time
print("started", flush=True)
sys.stdin.readline()  # until the test has signalled the writer
for n in range(200):
    print(f"{n:04d}" + "y" * 95, flush=True)
print("a traceback goes the same way", file=sys.stderr, flush=True)
"""


def test_logs_writer_keeps_every_line_of_its_process_through_a_sigterm_meant_for_it(tmp_path: Path) -> None:
    log = tmp_path / "escrow.log"
    writer = LogWriter(log, LogRotation(max_bytes=5000, backups=10))
    chatty = subprocess.Popen(
        [sys.executable, "-c", CHATTY],
        stdin=subprocess.PIPE,
        stdout=writer.write_end,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    writer.handed_over()
    assert chatty.stdin is not None
    try:
        # a stop meant for the service (SIGTERM, or a terminal's SIGINT) does not end its writer
        os.kill(writer.process.pid, signal.SIGTERM)
        os.kill(writer.process.pid, signal.SIGINT)
        chatty.stdin.write(b"go\n")
        chatty.stdin.close()
        assert chatty.wait(30) == 0
        writer.wait(timeout=30)
    finally:
        chatty.kill()
        writer.process.kill()

    assert writer.process.returncode == 0
    files = lines_in(tmp_path, "escrow.log")
    assert len(files) >= 4  # 20,000 bytes of output in files of at most 5,000
    assert all(sum(len(line) for line in lines) <= 5000 for lines in files.values())
    written = oldest_first(tmp_path, "escrow.log")
    assert written[0] == "started\n"
    assert [int(line[:4]) for line in written[1:-1]] == list(range(200))
    assert written[-1] == "a traceback goes the same way\n"


class Chatter(ServiceProcesses):
    """The stack's process management, each process a short script that writes its log and ends."""

    def _command(self, name: str) -> list[str]:
        return [sys.executable, "-c", f"for n in range(300): print('{name}', n, 'z' * 80)"]


def test_logs_of_a_stack_rotate_and_a_restart_appends_to_the_same_files(tmp_path: Path) -> None:
    stack = Chatter("127.0.0.1:1", {}, tmp_path / "logs", log_rotation=LogRotation(max_bytes=8000, backups=3))
    stack.start_one("funding")
    assert stack.processes["funding"].wait(30) == 0
    stack.processes.pop("funding")
    stack.start_one("funding")  # a restart, as the chaos run's supervisor does
    assert stack.processes["funding"].wait(30) == 0
    stack.stop()

    files = lines_in(tmp_path / "logs", "funding.log")
    assert set(files) == {"funding.log", "funding.log.1", "funding.log.2", "funding.log.3"}
    assert all(sum(len(line) for line in lines) <= 8000 for lines in files.values())
    assert files["funding.log"][-1].startswith("funding 299 ")


def test_x5_span_files_roll_over_like_the_logs(tmp_path: Path) -> None:
    """A service's span file (shared.tracing) keeps at most its size and old files, as its log does."""
    exporter = JsonLinesExporter(tmp_path / "traces-saga.jsonl", LogRotation(max_bytes=4000, backups=2))
    provider = TracerProvider(resource=Resource.create({"service.name": "saga"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for n in range(200):
        with tracer.start_as_current_span(f"handle order-{n}"):
            pass
    provider.shutdown()

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["traces-saga.jsonl", "traces-saga.jsonl.1", "traces-saga.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 4000 for name in files)
    newest = [json.loads(line)["name"] for line in (tmp_path / "traces-saga.jsonl").read_text().splitlines()]
    assert newest[-1] == "handle order-199"  # the latest spans are in the live file, whole lines
