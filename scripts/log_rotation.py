"""Size-based rotation of the log files of a stack run on this machine (`make run`, tests, bench).

Each process the stack starts writes its standard output and error into a pipe; at the other
end a small writer process (this module, ``python -m scripts.log_rotation FILE``) appends what
arrives to ``<name>.log`` and rolls it over, at a line's end, once it would pass
``TRADEGUARD_LOG_MAX_BYTES`` (default 10 MiB): ``<name>.log.1`` is the newest old file,
``<name>.log.<TRADEGUARD_LOG_BACKUPS>`` (default 5) the oldest kept; older ones are deleted.
So a service's logs never take more than (backups + 1) x the maximum. ``TRADEGUARD_LOG_MAX_BYTES=0``
turns rotation off: the process writes straight into its file, as before.

Why a writer process per service, and not the service rotating its own file: a process writes
more than its log lines (the interpreter's last traceback, a library's print), and all of it must
be kept; nor a thread of the process that started the stack: that process may end while the
services go on (or be killed by a test), and a service writing into a pipe nobody reads fails.
The writer ignores SIGINT and SIGTERM (a Ctrl-C or a stop meant for the service must not cut
off the service's last lines) and ends when the pipe's last writer has closed it, i.e. when its
service has ended, however it ended. It is in a session of its own, so signals to the service's
group never reach it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from shared.log_files import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, LogRotation, rotating_handler, write_line

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
ROOT = Path(__file__).resolve().parent.parent


def pump(source: BinaryIO, handler: logging.Handler) -> int:
    """Copy ``source`` line by line into ``handler`` until its end; the lines copied."""
    lines = 0
    for line in source:
        write_line(handler, line.decode("utf-8", "backslashreplace"))
        lines += 1
    return lines


class LogWriter:
    """The writer process of one log file and the pipe's end a process is started with."""

    def __init__(self, path: Path, rotation: LogRotation) -> None:
        self.path = path
        read_end, self.write_end = os.pipe()
        command = [
            sys.executable,
            "-m",
            "scripts.log_rotation",
            str(path),
            "--max-bytes",
            str(rotation.max_bytes),
            "--backups",
            str(rotation.backups),
        ]
        # Started with SIGINT and SIGTERM blocked (a signal mask is inherited through fork and
        # exec): one sent before main() ignores them waits, and is then discarded, instead of
        # ending the writer in its first milliseconds. This thread's mask is put back at once.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True
            )
        except BaseException:
            os.close(self.write_end)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            os.close(read_end)

    def handed_over(self) -> None:
        """The process writing into the pipe has been started (it holds its own copy of the end):
        this one is closed, so the writer sees the end once that process has ended."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def wait(self, timeout: float = 5.0) -> None:
        """Until the writer has written everything and ended (killed after ``timeout`` seconds:
        a process its service left behind still holds the pipe)."""
        self.handed_over()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Append standard input to FILE, rotating it by size.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--backups", type=int, default=DEFAULT_BACKUPS)
    args = parser.parse_args(argv)
    # The service's signals are the service's: this process stops when its output ends. Ignored
    # first, then unblocked (LogWriter starts it with them blocked): any that came meanwhile is dropped.
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    handler = rotating_handler(args.file, LogRotation(args.max_bytes, args.backups))
    try:
        pump(sys.stdin.buffer, handler)
    finally:
        handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
