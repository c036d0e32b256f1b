"""Where a client finds a running stack, the stack's test clock (X8) and its mail server (N2).

A stack is a Kafka broker plus one state folder the services share: the account service's
public sealing key, the SMS simulator's file (the users' phones), the clock file, the services'
HTTP endpoints (``endpoints.json``), the local mail server's Maildir (the users' mailboxes) and,
in its ``logs`` folder, the ready files (the funding network's holds the vault's URL, the mail
server's its SMTP address). `make run` leaves that folder at ``.data``; the test fixtures in a
temporary folder. Every path is built here (from :class:`~scripts.stack.StackLayout`).
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from contracts import SealingKey
from scripts.stack import ROOT, ServiceProcesses, StackLayout
from shared.clock import FileClock, advance_clock_file

DEFAULT_STATE_DIR = ROOT / ".data"
"""Where `make run` keeps the stack's state."""


class StackNotFoundError(RuntimeError):
    """The state folder does not hold what a running stack leaves there."""


@dataclass(frozen=True, slots=True)
class StackHandle:
    """A running stack as a client sees it: the broker and the services' state folder."""

    bootstrap: str
    state_dir: Path
    log_dir: Path | None = None
    """The services' logs and ready files; ``state_dir/logs`` unless said otherwise."""

    @classmethod
    def from_services(cls, services: ServiceProcesses) -> StackHandle:
        """The handle of a stack this process started."""
        return cls(services.bootstrap_servers, services.state_dir, services.log_dir)

    @property
    def layout(self) -> StackLayout:
        return StackLayout(self.state_dir, self.log_dir or self.state_dir / "logs")

    @property
    def logs(self) -> Path:
        return self.layout.log_dir

    @property
    def sealing_key_file(self) -> Path:
        """The public half of the account service's sealing key (``<key file>.pub.json``)."""
        return self.layout.public_key_file

    @property
    def sms_outbox(self) -> Path:
        return self.layout.sms_outbox

    @property
    def clock_file(self) -> Path:
        return self.layout.clock_file

    @property
    def vault_ready_file(self) -> Path:
        return self.layout.ready_file("funding")

    @property
    def maildir(self) -> Path:
        return self.layout.maildir

    @property
    def endpoints_file(self) -> Path:
        return self.layout.endpoints_file

    def endpoint(self, service: str) -> str:
        """Base URL of ``service``'s HTTP read API (``payment``, ``notification``)."""
        return read_endpoint(self.layout, service)

    @property
    def mailbox(self) -> StackMailbox:
        """The stack's local mail server, as its users and its operator see it."""
        return StackMailbox.of(self.layout)

    def sealing_key(self) -> SealingKey:
        """The key clients seal secrets with."""
        self._require(self.sealing_key_file, "The account service's public sealing key")
        return SealingKey.from_file(self.sealing_key_file)

    @property
    def vault_url(self) -> str:
        """Base URL of the funding network's vault, as the simulator wrote it when ready."""
        self._require(self.vault_ready_file, "The funding simulator's ready file (the vault's URL)")
        return self.vault_ready_file.read_text().strip()

    def check(self) -> None:
        """Raise :class:`StackNotFoundError`, saying what is missing, unless the state looks like a running stack's."""
        self.sealing_key()
        _ = self.vault_url

    def _require(self, path: Path, what: str) -> None:
        _require(path, what)


def _require(path: Path, what: str) -> None:
    if not path.exists():
        msg = (
            f"{what} not found at {path}: is the stack running? Start it with `make run`, "
            "pass --state-dir, or use --start-stack"
        )
        raise StackNotFoundError(msg)


def read_endpoint(layout: StackLayout, service: str) -> str:
    """Base URL of ``service``'s HTTP read API, as the stack wrote it in its endpoints file."""
    _require(layout.endpoints_file, "The services' endpoints file")
    endpoints = json.loads(layout.endpoints_file.read_text())
    if service not in endpoints:
        raise StackNotFoundError(
            f"{layout.endpoints_file} names no endpoint for {service!r}: it has {sorted(endpoints)}"
        )
    return str(endpoints[service])


class StackClock:
    """Every service's clock, moved forward through the clock file (scenarios never sleep)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = FileClock(path)

    def now(self) -> datetime:
        """The time the services see."""
        return self.reader.now()

    def advance(self, by: timedelta) -> datetime:
        """Move every process reading the clock file forward by ``by``; returns the new time."""
        advance_clock_file(self.path, by)
        return self.now()


_SMTP_ADDRESS = re.compile(r"^smtp://(?P<host>[^:/\s]+):(?P<port>\d+)")
SWITCH_TIMEOUT = 10.0
"""How long the mail server may take to stop or start after its ``DOWN`` file moves (it looks 5 times a second)."""


class StackMailbox:
    """The stack's local mail server (scripts/mailbox.py): the Maildir every accepted email lands
    in, read the way a mail client reads it, and its ``DOWN`` switch (a file in the Maildir that
    stops the server while it exists), which is how a scenario takes the mail server away (N2)."""

    def __init__(self, maildir: Path, ready_file: Path) -> None:
        self.maildir = maildir
        self.ready_file = ready_file

    @classmethod
    def of(cls, layout: StackLayout) -> StackMailbox:
        return cls(layout.maildir, layout.ready_file("mailbox"))

    @property
    def down_file(self) -> Path:
        return self.maildir / "DOWN"

    # ------------------------------------------------------------------ reading mail

    def messages(self) -> list[EmailMessage]:
        """Every email the server accepted (read or not), oldest file first."""
        if not (self.maildir / "new").is_dir():
            return []
        box = mailbox.Maildir(self.maildir, create=False)
        parsed = [message_from_bytes(box.get_bytes(key), policy=policy.default) for key in sorted(box.keys())]
        return [m for m in parsed if isinstance(m, EmailMessage)]

    def to(self, address: str) -> list[EmailMessage]:
        """The emails addressed to ``address``."""
        return [m for m in self.messages() if str(m["To"]).strip().lower() == address.lower()]

    def copies(self, address: str) -> Counter[str]:
        """How many emails to ``address`` carry each Message-ID."""
        return Counter(str(m["Message-ID"]) for m in self.to(address))

    def find(self, message_id: str) -> EmailMessage | None:
        """The email with ``message_id`` (``<...@notifications.tradeguard>``), if it arrived."""
        return next((m for m in self.messages() if str(m["Message-ID"]) == message_id), None)

    # ------------------------------------------------------------------ the outage switch

    async def take_down(self, timeout: float = SWITCH_TIMEOUT) -> None:
        """Stop the mail server; returns once it refuses connections."""
        self.down_file.touch()
        await self._until(accepting=False, timeout=timeout)

    async def bring_up(self, timeout: float = SWITCH_TIMEOUT) -> None:
        """Start the mail server again; returns once it accepts connections."""
        self.down_file.unlink(missing_ok=True)
        await self._until(accepting=True, timeout=timeout)

    async def accepting(self) -> bool:
        """Whether the server accepts a TCP connection now."""
        host, port = self._address()
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    def _address(self) -> tuple[str, int]:
        _require(self.ready_file, "The mail server's ready file (its SMTP address)")
        match = _SMTP_ADDRESS.match(self.ready_file.read_text().strip())
        if match is None:
            raise StackNotFoundError(f"{self.ready_file} does not start with smtp://host:port")
        return match["host"], int(match["port"])

    async def _until(self, *, accepting: bool, timeout: float) -> None:
        # The server reacts to its DOWN file by polling it; nothing announces the change, so it
        # is observed the way a client would notice: by connecting.
        deadline = time.monotonic() + timeout
        while await self.accepting() is not accepting:
            if time.monotonic() > deadline:
                state = "accept" if accepting else "refuse"
                raise TimeoutError(f"the mail server did not {state} connections within {timeout:.0f} s")
            await asyncio.sleep(0.05)
