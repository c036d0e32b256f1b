"""Where a client finds a running stack, and the stack's test clock (X8).

A stack is a Kafka broker plus one state folder the services share: the account service's
public sealing key, the SMS simulator's file (the users' phones), the clock file and, in its
``logs`` folder, the funding network's ready file holding the vault's URL. `make run` leaves
that folder at ``.data``; the test fixtures in a temporary folder. Every path is built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
        if not path.exists():
            msg = (
                f"{what} not found at {path}: is the stack running? Start it with `make run`, "
                "pass --state-dir, or use --start-stack"
            )
            raise StackNotFoundError(msg)


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
