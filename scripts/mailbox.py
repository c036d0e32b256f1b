"""The local SMTP server of `make run` (N2): aiosmtpd storing every email it accepts in a Maildir,
so a person trying the demo reads real mail (any mail client that opens a Maildir, or
``python -m mailbox``-style scripts; each message is one file under ``<maildir>/new``).

    python -m scripts.mailbox --port 19025 --maildir .data/mail --ready-file .data/logs/mailbox.ready
    python -m scripts.mailbox --host 0.0.0.0 --port 2525 --maildir /run/tradeguard/mail   # in a container

Like a real receiving server it drops a second copy of a Message-ID it already stored (the
notification service sends the same Message-ID on every attempt). While the file ``DOWN``
exists in the Maildir the server is stopped, which is how a scenario takes it down and back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import mailbox
import signal
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

POLL_SECONDS = 0.2


class MaildirHandler:
    def __init__(self, path: Path) -> None:
        self.box = mailbox.Maildir(path, create=True)
        self._seen = {str(message["Message-ID"]) for message in self.box}

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook
        content = envelope.original_content or b""
        message_id = str(message_from_bytes(content, policy=policy.default)["Message-ID"])
        if message_id in self._seen:
            return "250 Already delivered (duplicate Message-ID dropped)"
        self.box.add(content)
        self._seen.add(message_id)
        return "250 Message accepted for delivery"


class LocalServer:
    """Runs the SMTP server while no ``DOWN`` file exists in the Maildir, stops it while one does."""

    def __init__(self, port: int, maildir: Path, ready_file: Path | None, host: str = "127.0.0.1") -> None:
        for folder in ("tmp", "new", "cur"):  # a Maildir's three folders, also when the directory exists
            (maildir / folder).mkdir(parents=True, exist_ok=True)
        self.host, self.port, self.maildir, self.ready_file = host, port, maildir, ready_file
        self.handler = MaildirHandler(maildir)
        self.controller: Controller | None = None

    def reconcile(self) -> None:
        down = (self.maildir / "DOWN").exists()
        if down and self.controller is not None:
            self.controller.stop()
            self.controller = None
        elif not down and self.controller is None:
            self.controller = Controller(self.handler, hostname=self.host, port=self.port)
            self.controller.start()
            if self.ready_file is not None:
                # Rewritten on every restart while scenarios read it: written aside and renamed,
                # so a reader sees the old address or the new one, never a truncated file.
                staged = self.ready_file.with_name(self.ready_file.name + ".tmp")
                staged.write_text(f"smtp://{self._reachable_host}:{self.port} -> {self.maildir}\n")
                staged.replace(self.ready_file)

    @property
    def _reachable_host(self) -> str:
        # A server on every interface is reached on this host through the loopback.
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104 - compared, not bound

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        if self.ready_file is not None:  # a stale one would tell the next stack's start it is up
            self.ready_file.unlink(missing_ok=True)


async def serve(server: LocalServer) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        while not stopping.is_set():
            server.reconcile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=POLL_SECONDS)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=19025)
    parser.add_argument("--maildir", type=Path, default=Path(".data/mail"))
    parser.add_argument("--ready-file", type=Path, default=None)
    arguments = parser.parse_args()
    asyncio.run(serve(LocalServer(arguments.port, arguments.maildir, arguments.ready_file, arguments.host)))


if __name__ == "__main__":
    main()
