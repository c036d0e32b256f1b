"""A TradeGuard sandbox for a marketplace's tests: start one, and use its test helpers.

The sandbox is TradeGuard's own ``tradeguard sandbox`` command (an installation of TradeGuard, or
its repository's environment: ``TRADEGUARD_COMMAND``, e.g. ``/opt/tradeguard/.venv/bin/tradeguard``).
:class:`SandboxProcess` starts it with its standard input on a pipe that only this process holds:
when this process ends, however it ends, the pipe closes and the sandbox stops everything it
started. :class:`Sandbox` is the running one: its profile, a client, and the test helpers
(test buyers, the test cards of the simulated funding network, the test clock, the books audit).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx

from contracts import Money
from tradeguard_client.client import TradeGuardClient
from tradeguard_client.profile import ConnectionProfile

COMMAND_VARIABLE = "TRADEGUARD_COMMAND"
"""How to run TradeGuard's CLI (split like a shell would); default ``tradeguard``."""
START_TIMEOUT = 120.0


class SandboxError(RuntimeError):
    """The sandbox did not start, or a test helper refused what it was asked."""


def sandbox_command(given: str | None = None) -> list[str]:
    """``given``, else ``$TRADEGUARD_COMMAND``, else ``tradeguard``, as an argument list."""
    return shlex.split(given or os.environ.get(COMMAND_VARIABLE) or "tradeguard")


class SandboxProcess:
    """One ``tradeguard sandbox`` this process started, in ``state_dir`` (its log: ``sandbox.log`` beside it)."""

    def __init__(self, command: list[str], state_dir: Path) -> None:
        self.command = command
        self.state_dir = state_dir
        self.log_file = state_dir.parent / f"{state_dir.name}.log"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT) -> Sandbox:
        """Start it and wait until it says it is ready; :class:`SandboxError` naming its log if it does not."""
        profile = self.state_dir / "profile.json"
        arguments = [
            *self.command,
            "sandbox",
            "--state-dir",
            str(self.state_dir),
            "--profile",
            str(profile),
            "--stop-on-stdin-eof",
        ]
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            try:
                # A session of its own: a terminal's Ctrl-C reaches this process, whose clean-up stops it.
                self._process = subprocess.Popen(  # noqa: S603 - the command the test run was given
                    arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
                )
            except FileNotFoundError:
                raise SandboxError(
                    f"cannot run {arguments[0]!r}: install TradeGuard, or set {COMMAND_VARIABLE} "
                    "to the command that runs its CLI"
                ) from None
        ready = self._ready_line(timeout)
        self.startup_seconds = time.monotonic() - started
        return Sandbox.from_profile(Path(ready["ready"]), self.startup_seconds)

    def _ready_line(self, timeout: float) -> dict[str, Any]:
        """The first line of its output that is its ready line (JSON with ``ready``)."""
        deadline = time.monotonic() + timeout
        buffer = b""
        while True:
            line, newline, rest = buffer.partition(b"\n")
            if not newline:
                buffer += self._read(deadline, timeout)
                continue
            buffer = rest
            with contextlib.suppress(ValueError):
                said = json.loads(line)
                if isinstance(said, dict) and "ready" in said:
                    return said

    def _read(self, deadline: float, timeout: float) -> bytes:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                self.stop()
                raise SandboxError(f"the sandbox was not ready after {timeout:.0f} s; see {self.log_file}")
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            code = process.wait()
            raise SandboxError(f"the sandbox exited with {code} before it was ready; see {self.log_file}")
        return chunk

    def stop_quietly(self) -> None:
        """:meth:`stop`, for a clean-up hook."""
        self.stop()

    def stop(self, timeout: float = 60.0) -> int | None:
        """Close its input (it stops everything it started), wait, then SIGTERM and SIGKILL its group."""
        process, self._process = self._process, None
        if process is None:
            return None
        _close(process.stdin)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            for signum, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(process.pid, signum)
                    return process.wait(wait)
                except ProcessLookupError:
                    return process.wait()
                except subprocess.TimeoutExpired:
                    continue
            return None
        finally:
            _close(process.stdout)


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):  # the other end is gone already: closed is what it is meant to be
            stream.close()


@dataclass(frozen=True, slots=True)
class TestBuyer:
    """A buyer the sandbox made: verified, wallet bound to the marketplace, a payment PIN."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    account_id: str
    pin: str
    source_id: str | None = None
    """The test card added, when one was asked for: pay with ``checkout(source_id=...)``."""
    wallet: Money | None = None
    """The wallet's balance after the top-up, when one was asked for."""


@dataclass(frozen=True, slots=True)
class TestCard:
    """A test card number of the simulated funding network and how its issuer answers."""

    __test__ = False

    number: str
    brand: str
    behaviour: str
    description: str


@dataclass(frozen=True, slots=True)
class BooksAudit:
    """The books audit's verdict (G1): ``ok``, and the report (every break, the figures)."""

    ok: bool
    report: dict[str, Any]

    def breaks(self) -> list[str]:
        return [f"{b['code']} {b['subject']}: {b['detail']}" for b in self.report.get("breaks", [])]


class Sandbox:
    """A running sandbox: its profile and its test helpers (``control_url``)."""

    def __init__(
        self, profile: ConnectionProfile, startup_seconds: float | None = None, profile_path: Path | None = None
    ) -> None:
        if profile.control_url is None:
            raise SandboxError("this profile names no test helpers (control_url): it is not a sandbox's")
        self.profile = profile
        self.profile_path = profile_path
        """The profile's file, for a client in another language or process (None when given in memory)."""
        self.control_url = profile.control_url
        self.startup_seconds = startup_seconds

    @classmethod
    def from_profile(cls, path: Path, startup_seconds: float | None = None) -> Sandbox:
        """The sandbox whose profile is the file ``path``."""
        return cls(ConnectionProfile.load(path), startup_seconds, path)

    def client(self) -> TradeGuardClient:
        """A new client of this sandbox (open it with ``async with``)."""
        return TradeGuardClient(self.profile)

    @staticmethod
    def new_seller_id() -> str:
        """An id for a seller of its own (a seller needs no account to be paid into escrow's release)."""
        return f"seller-{uuid.uuid4().hex[:12]}"

    async def new_buyer(
        self, *, wallet: Money | None = None, card: str | None = None, country: str = "US", level: str = "L1"
    ) -> TestBuyer:
        """A buyer ready to pay: ``wallet`` tops their wallet up, ``card`` adds that test card."""
        body: dict[str, Any] = {"country": country, "level": level, "card": card}
        if wallet is not None:
            body["wallet"] = wallet.model_dump(mode="json")
        made = await self._call("POST", "/buyers", body)
        balance = made.get("wallet")
        return TestBuyer(
            account_id=made["account_id"],
            pin=made["pin"],
            source_id=made.get("source_id"),
            wallet=Money.model_validate(balance) if balance else None,
        )

    async def test_cards(self) -> list[TestCard]:
        return [TestCard(**row) for row in (await self._call("GET", "/test-cards"))["cards"]]

    async def now(self) -> datetime:
        """The time every service of the sandbox sees."""
        return datetime.fromisoformat((await self._call("GET", "/clock"))["now"])

    async def advance_clock(self, by: timedelta) -> datetime:
        """Move every service's clock forward by ``by`` (whole seconds); the new time."""
        seconds = int(by.total_seconds())
        moved = await self._call("POST", "/clock/advance", {"seconds": seconds})
        return datetime.fromisoformat(moved["now"])

    async def audit(self, attempts: int = 1) -> BooksAudit:
        """The books audit of the whole sandbox; with ``attempts``, taken again a second apart
        while it shows a break (the last messages of a test may still be on their way)."""
        answer = await self._call("GET", "/audit", params={"attempts": str(attempts)}, timeout=30.0 + attempts)
        return BooksAudit(bool(answer["ok"]), answer["report"])

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        # A client per call: a session's sandbox outlives any one test's event loop.
        async with httpx.AsyncClient(base_url=self.control_url, timeout=timeout) as http:
            response = await http.request(method, path, json=body, params=params)
        answer: dict[str, Any] = response.json()
        if response.is_error:
            raise SandboxError(
                f"{method} {path}: {response.status_code}: {answer.get('error')} {answer.get('fields', '')}"
            )
        return answer
