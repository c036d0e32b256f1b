"""Start a sandbox, announce it, keep it up until told to stop, stop everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from contracts import ALL_TOPICS
from scripts.http_server import serve_app
from scripts.onboarding import MARKETPLACE_ID
from scripts.sandbox.control import SandboxControl
from scripts.scenarios.handle import StackHandle
from scripts.scenarios.runner import ScenarioRunner
from scripts.stack import FAST_PASSWORD_HASHING, LocalKafka, ServiceProcesses, free_port, sqlite_urls
from shared.broker import ensure_topics
from shared.broker_security import CREDENTIALS_DIR_VARIABLE, read_credentials

PRINCIPAL = "marketplace"


def profile_of(services: ServiceProcesses, kafka: LocalKafka, control_url: str) -> dict[str, Any]:
    """The connection profile of this sandbox, as ``tradeguard_client.ConnectionProfile`` reads it."""
    credentials = read_credentials(PRINCIPAL, kafka.credentials_dir)
    return {
        "bootstrap_servers": kafka.bootstrap,
        "username": credentials.username,
        "password": credentials.password,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "signing_key_file": str(services.signing_dir / f"{PRINCIPAL}.json"),
        "sealing_key_file": str(services.layout.public_key_file),
        "marketplace_id": MARKETPLACE_ID,
        "control_url": control_url,
        "state_dir": str(services.state_dir),
    }


def write_private(path: Path, content: dict[str, Any]) -> None:
    """``content`` as JSON, mode 0600 (it holds the marketplace's password), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=1)
    temporary.replace(path)


class StopRequest:
    """Set by SIGINT, SIGTERM or (when watched) the end of standard input."""

    def __init__(self, *, watch_stdin: bool) -> None:
        self.event = asyncio.Event()
        self.why = ""
        self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(signum, self._set, signum.name)
        if watch_stdin:
            # On the loop, not in a thread: a thread blocked reading stdin aborts the interpreter's exit.
            fd = sys.stdin.fileno()
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._stdin_readable, fd)

    def _set(self, why: str) -> None:
        if not self.event.is_set():
            self.why = why
            self.event.set()

    def _stdin_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)  # what the parent writes means nothing; only the end of it does
        except BlockingIOError:
            return
        if not data:
            self._loop.remove_reader(fd)
            self._set("standard input closed")


def fresh_folder(state_dir: Path) -> Path:
    """``state_dir``, emptied: a sandbox starts from nothing."""
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    return state_dir


async def run_sandbox(state_dir: Path, profile: Path, *, watch_stdin: bool, console: Console) -> int:
    """Run a sandbox in ``state_dir`` (an empty folder) until asked to stop; 0 once it stopped cleanly."""
    stop = StopRequest(watch_stdin=watch_stdin)
    started = time.monotonic()
    kafka = LocalKafka(state_dir / "kafka", free_port(), free_port())
    os.environ[CREDENTIALS_DIR_VARIABLE] = str(kafka.credentials_dir)
    services = ServiceProcesses(kafka.bootstrap, sqlite_urls(state_dir), state_dir / "logs", FAST_PASSWORD_HASHING)
    server: asyncio.Task[None] | None = None
    try:
        await kafka.run("start")
        await ensure_topics(kafka.bootstrap, ALL_TOPICS)
        with contextlib.redirect_stdout(sys.stderr):  # stdout is for the ready line alone
            services.start()
        await services.wait_ready(120)
        handle = StackHandle.from_services(services)
        async with ScenarioRunner(handle, Console(quiet=True), audit=False) as runner:
            control = SandboxControl(runner, state_dir, services.clock_file)
            listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            server = asyncio.create_task(_serve(control, listening.set_result))
            url = await _first_of(listening, server)
            write_private(profile, profile_of(services, kafka, url))
            seconds = round(time.monotonic() - started, 1)
            print(json.dumps({"ready": str(profile), "control_url": url, "seconds": seconds}), flush=True)
            console.print(f"sandbox ready in {seconds} s: profile {profile}, test helpers {url}")
            await stop.event.wait()
            console.print(f"{stop.why}: stopping the sandbox")
    finally:
        try:
            if server is not None:
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
            services.stop()
        finally:
            kafka.stop_now()  # whatever happened before: a broker left running outlives every test run
    return 0


async def _serve(control: SandboxControl, started: Callable[[str], None]) -> None:
    await serve_app(control.app(), "127.0.0.1", 0, started, what="the sandbox's test helpers")


async def _first_of(listening: asyncio.Future[str], server: asyncio.Task[None]) -> str:
    """The helpers' address once they listen; the server's error if it stopped first."""
    waiting: set[asyncio.Future[Any]] = {listening, server}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()
        raise RuntimeError("the sandbox's test helpers stopped before listening")
    return listening.result()
