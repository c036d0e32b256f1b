"""The funding network simulator (``python -m services.funding``) as a process of a test's own.

It listens on a free port, with its database, ready file and log in one folder; extra
``FUNDING_*`` settings are passed by their lower-case names (``seed="7"`` is ``FUNDING_SEED=7``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.funding.client import VaultClient

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

NEXT_YEAR = datetime.now(UTC).year + 1  # the process reads the system clock (UTC)


class FundingSimulator:
    """``python -m services.funding`` with a database, ready file and log in ``folder``."""

    def __init__(self, folder: Path, **settings: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.database = folder / "funding.db"
        self.ready_file = folder / "funding.ready"
        self.log_file = folder / "funding.log"
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        env = {
            **os.environ,
            "FUNDING_HTTP_PORT": "0",  # any free port: the ready file says which
            "FUNDING_DATABASE_PATH": str(self.database),
            "FUNDING_READY_FILE": str(self.ready_file),
            "FUNDING_LOG_FORMAT": "json",
            **{f"FUNDING_{name.upper()}": value for name, value in self.settings.items()},
        }
        with self.log_file.open("ab") as log:  # appended across restarts; the child keeps its own handle
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.funding", cwd=ROOT, env=env, stdout=log, stderr=log
            )
        self.url = await self._wait_until_ready()
        return self.url

    async def _wait_until_ready(self) -> str:
        # Nothing to await across a process boundary: poll the file the process writes when it listens.
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready_file.exists():
            if self.process.returncode is not None:
                pytest.fail(f"the simulator exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the simulator did not listen within {START_TIMEOUT} s:\n{self.log_text()}")
            await asyncio.sleep(0.05)
        return self.ready_file.read_text(encoding="utf-8").strip()

    async def stop(self) -> int | None:
        """SIGTERM, then the exit status (``None`` if it was never started)."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            pytest.fail(f"the simulator did not stop on SIGTERM:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace") if self.log_file.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

    def stored_bytes(self) -> bytes:
        """The raw bytes of the database and its WAL and shared-memory files, as they are now."""
        files = [self.database, *(self.database.with_name(self.database.name + s) for s in ("-wal", "-shm"))]
        return b"".join(f.read_bytes() for f in files if f.exists())

    async def token(self, number: str, month: int = 12, year: int = NEXT_YEAR) -> str:
        """The vault's token for a card number (with a CVC of the length its brand takes)."""
        async with VaultClient(self.url) as vault:
            card = await vault.tokenize_card(number, month, year, "1234" if number.startswith("3") else "123")
        return card.token

    async def ledger(self, token: str | None = None) -> dict[str, Any]:
        """The network's book by currency, for one token or for all of them."""
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get("/v1/ledger", params={"token": token} if token else None)
        assert response.status_code == 200
        currencies: dict[str, Any] = response.json()["currencies"]
        return currencies
