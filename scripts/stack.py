"""Start and stop the five services as separate processes (used by `make run`, tests, bench)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts import SealingKey
from scripts.log_rotation import LogWriter
from shared.broker_security import CREDENTIALS_DIR_VARIABLE
from shared.clock import CLOCK_FILE_VARIABLE
from shared.log_files import LogRotation
from shared.sealing import ensure_key_file, public_path
from shared.signing import (
    SIGNING_DIR_VARIABLE,
    Keyring,
    SigningNotConfiguredError,
    ensure_keyring,
    install,
    load_keyring,
    process_keyring,
)
from shared.tracing import TRACES_DIR_VARIABLE

SERVICES = ("account", "payment", "escrow", "notification", "saga")
SIMULATORS = ("funding", "mailbox")
"""Processes that stand for the outside world: the funding network (card issuer, bank, vault) and
the users' mail server (scripts/mailbox.py: SMTP into a Maildir)."""
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".data"
"""Where `make run` keeps its stack's state."""


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sqlite_urls(data_dir: Path) -> dict[str, str]:
    """One SQLite file per service under ``data_dir``."""
    return {name: f"sqlite+aiosqlite:///{data_dir / f'{name}.db'}" for name in SERVICES}


FAST_PASSWORD_HASHING = {"ACCOUNT_PASSWORD_HASH_TIME_COST": "1", "ACCOUNT_PASSWORD_HASH_MEMORY_KIB": "1024"}
"""argon2id cheap enough for tests and the benchmark to register hundreds of accounts; never production."""


@dataclass(frozen=True, slots=True)
class StackLayout:
    """Where a stack keeps what it shares with its clients; every such path is built here.

    One state folder (`make run`: ``.data``; tests: a temporary one) holds the account service's
    keys (the public half for clients), the SMS simulator's file (the users' phones) and the
    clock file that moves every process's time forward (X8) and the signing keyring (X9); its
    ``logs`` folder the services' logs and ready files, the funding simulator's holding the vault's URL."""

    state_dir: Path
    log_dir: Path

    @classmethod
    def of(cls, state_dir: Path) -> StackLayout:
        return cls(state_dir, state_dir / "logs")

    @property
    def sealing_key_file(self) -> Path:
        """The account service's private keys (only it reads them)."""
        return self.state_dir / "keys" / "account-sealing.json"

    @property
    def public_key_file(self) -> Path:
        return public_path(self.sealing_key_file)

    @property
    def signing_dir(self) -> Path:
        """The stack's signing keyring (shared.signing): the folder ``TRADEGUARD_SIGNING_DIR``
        names when set (the tests share one keyring between their stacks), else ``keys/signing``."""
        named = os.environ.get(SIGNING_DIR_VARIABLE)
        return Path(named) if named else self.state_dir / "keys" / "signing"

    @property
    def storage_key_file(self) -> Path:
        return self.state_dir / "keys" / "account-storage.key"

    @property
    def sms_outbox(self) -> Path:
        return self.state_dir / "sms.jsonl"

    @property
    def clock_file(self) -> Path:
        return self.state_dir / "clock.json"

    @property
    def maildir(self) -> Path:
        """Where the local SMTP server keeps the users' mail (N2); ``DOWN`` in it stops the server."""
        return self.state_dir / "mail"

    @property
    def endpoints_file(self) -> Path:
        """The services' HTTP read APIs as a client finds them (``{"payment": url, "saga": url, ...}``)."""
        return self.state_dir / "endpoints.json"

    def ready_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.ready"


@dataclass
class ServiceProcesses:
    """The five services and the funding simulator, each its own OS process (the services each
    with its own database), sharing the state folder :class:`StackLayout` describes: the parent
    of ``log_dir``."""

    bootstrap_servers: str
    database_urls: Mapping[str, str]
    log_dir: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    funding_port: int = field(default_factory=free_port)
    """The funding simulator's port, fixed for the stack's life so the payment service knows it."""
    payment_http_port: int = field(default_factory=free_port)
    """Where the payment service's read API (history) and health answer."""
    notification_http_port: int = field(default_factory=free_port)
    """Where the notification service's read API (inbox, undelivered email) answers."""
    saga_http_port: int = field(default_factory=free_port)
    """Where the saga's read API (orders) answers."""
    escrow_http_port: int = field(default_factory=free_port)
    """Where the escrow service's read API (the ledger, holds) answers."""
    account_http_port: int = field(default_factory=free_port)
    """Where the account service's read API (identities to review, locked accounts) answers."""
    smtp_port: int = field(default_factory=free_port)
    """The local SMTP server (scripts/mailbox.py) the notification service sends to."""
    log_rotation: LogRotation | None = field(default_factory=LogRotation.from_environment)
    """How ``<name>.log`` rolls over (scripts/log_rotation.py: by size, through a writer process per
    log); None: each process writes straight into its file, which then only grows."""
    _logs: dict[str, LogWriter] = field(default_factory=dict)
    """Each process's log writer (it may still be writing out what a process that ended left in its pipe)."""

    @property
    def layout(self) -> StackLayout:
        return StackLayout(self.log_dir.parent, self.log_dir)

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def sms_outbox(self) -> Path:
        return self.layout.sms_outbox

    @property
    def clock_file(self) -> Path:
        return self.layout.clock_file

    def sealing_key(self) -> SealingKey:
        """The public key clients seal secrets with (the key pair is made here, before any service starts)."""
        return ensure_key_file(self.layout.sealing_key_file)

    @property
    def signing_dir(self) -> Path:
        return Path(self.extra_env.get(SIGNING_DIR_VARIABLE) or self.layout.signing_dir)

    def signing_keyring(self) -> Path:
        """Make the stack's signing keyring (before any service starts; idempotent). Unless this
        process names its own (``TRADEGUARD_SIGNING_DIR``), its clients (a demo, the scenario
        runner, the benchmark's driver) sign with the keys of the stack it started last."""
        directory = ensure_keyring(self.signing_dir)
        if not os.environ.get(SIGNING_DIR_VARIABLE):
            install(load_keyring(directory))
        return directory

    def _shared_env(self) -> dict[str, str]:
        layout = self.layout
        return {
            SIGNING_DIR_VARIABLE: str(self.signing_dir),
            TRACES_DIR_VARIABLE: str(self.log_dir),  # traces-<service>.jsonl beside the logs (X5)
            "ACCOUNT_SEALING_KEY_FILE": str(layout.sealing_key_file),
            "ACCOUNT_STORAGE_KEY_FILE": str(layout.storage_key_file),
            "ACCOUNT_SMS_OUTBOX": str(layout.sms_outbox),
            CLOCK_FILE_VARIABLE: str(layout.clock_file),
            "PAYMENT_FUNDING_NETWORK_URL": f"http://127.0.0.1:{self.funding_port}",
            "PAYMENT_HTTP_PORT": str(self.payment_http_port),
            "NOTIFICATION_HTTP_PORT": str(self.notification_http_port),
            "SAGA_HTTP_PORT": str(self.saga_http_port),
            "ESCROW_HTTP_PORT": str(self.escrow_http_port),
            "ACCOUNT_HTTP_PORT": str(self.account_http_port),
            "NOTIFICATION_SMTP_HOST": "127.0.0.1",
            "NOTIFICATION_SMTP_PORT": str(self.smtp_port),
        }

    def start(self, names: tuple[str, ...] = SERVICES + SIMULATORS) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sealing_key()
        self.signing_keyring()
        if "payment" in names:  # a second instance of another service must not point clients elsewhere
            endpoints = {
                "payment": self.payment_url,
                "notification": self.notification_url,
                "saga": self.saga_url,
                "escrow": self.escrow_url,
                "account": self.account_url,
            }
            self.layout.endpoints_file.write_text(json.dumps(endpoints))
        for name in names:
            self.start_one(name)
        if "mailbox" in names:  # `make run` shows this: where a person trying the demo reads the mail
            port = self._env_port("NOTIFICATION_SMTP_PORT", self.smtp_port)
            print(f"mail: SMTP on 127.0.0.1:{port}; every email lands in the Maildir {self.layout.maildir}/new")

    @property
    def payment_url(self) -> str:
        """The payment service's read API (``GET /payments?account_id=...``)."""
        return f"http://127.0.0.1:{self._env_port('PAYMENT_HTTP_PORT', self.payment_http_port)}"

    @property
    def notification_url(self) -> str:
        """The notification service's read API (``GET /notifications?account_id=...``)."""
        return f"http://127.0.0.1:{self._env_port('NOTIFICATION_HTTP_PORT', self.notification_http_port)}"

    @property
    def saga_url(self) -> str:
        """The saga's read API (``GET /orders?status=...``)."""
        return f"http://127.0.0.1:{self._env_port('SAGA_HTTP_PORT', self.saga_http_port)}"

    @property
    def escrow_url(self) -> str:
        """The escrow service's read API (``GET /ledger/records``, ``/ledger/balances``, ``/holds``)."""
        return f"http://127.0.0.1:{self._env_port('ESCROW_HTTP_PORT', self.escrow_http_port)}"

    @property
    def account_url(self) -> str:
        """The account service's read API (``GET /identities``, ``/accounts``, ``/account``)."""
        return f"http://127.0.0.1:{self._env_port('ACCOUNT_HTTP_PORT', self.account_http_port)}"

    def _env_port(self, variable: str, default: int) -> int:
        return int(self.extra_env.get(variable, default))  # the benchmark picks its own ports

    @property
    def vault_url(self) -> str:
        """Base URL of the funding network's vault (``POST /v1/tokens/cards``), once it is ready."""
        return self._ready_file("funding").read_text().strip()

    def _command(self, name: str) -> list[str]:
        if name == "mailbox":
            port = str(self._env_port("NOTIFICATION_SMTP_PORT", self.smtp_port))
            ready = str(self._ready_file(name))
            return [
                sys.executable,
                "-m",
                "scripts.mailbox",
                "--port",
                port,
                "--maildir",
                str(self.layout.maildir),
                "--ready-file",
                ready,
            ]
        return [sys.executable, "-m", f"services.{name}"]

    def start_one(self, name: str) -> None:
        own = (
            {"FUNDING_HTTP_PORT": str(self.funding_port), "FUNDING_DATABASE_PATH": str(self.state_dir / "funding.db")}
            if name in SIMULATORS
            else {f"{name.upper()}_DATABASE_URL": self.database_urls[name]}
        )
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            **own,
            f"{name.upper()}_LOG_FORMAT": "json",
            f"{name.upper()}_READY_FILE": str(self._ready_file(name)),
            "PYTHONUNBUFFERED": "1",
            **self._shared_env(),
            **self.extra_env,
        }
        # One a killed process left would say "ready" before this one is.
        self._ready_file(name).unlink(missing_ok=True)
        with self._log_for(name) as log:
            # Each in a session of its own: Ctrl-C in a terminal (SIGINT to the whole foreground
            # group) reaches only the process that started them, which stops each once, in order
            # (a second signal would make a service exit at once, mid-stop).
            self.processes[name] = subprocess.Popen(
                self._command(name), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @contextlib.contextmanager
    def _log_for(self, name: str) -> Iterator[int]:
        """The file descriptor ``name``'s output goes to: a rotating writer's pipe, or the file
        itself without rotation; closed here once the process holds its own copy."""
        path = self.log_dir / f"{name}.log"
        if self.log_rotation is None:
            with path.open("ab") as log:
                yield log.fileno()
            return
        # A restart's writer appends to the same file: the last one must have written out first
        # (its process has ended, so it is at most a few lines from done).
        earlier = self._logs.pop(name, None)
        if earlier is not None:
            earlier.wait(timeout=2.0)
        writer = self._logs[name] = LogWriter(path, self.log_rotation)
        try:
            yield writer.write_end
        finally:
            writer.handed_over()

    def _close_logs(self, name: str | None = None) -> None:
        """Wait for the writers of ``name`` (every process's: None) to write out what their
        processes left, now that those have ended."""
        for each in list(self._logs) if name is None else [name]:
            writer = self._logs.pop(each, None)
            if writer is not None:
                writer.wait()

    def _ready_file(self, name: str) -> Path:
        return self.layout.ready_file(name)

    def stop_one(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM (unless it already ended), up to ``timeout`` seconds for it to stop, then SIGKILL;
        its exit code. Its ready file is gone after this, however it ended."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = self._reap(name, process, timeout)
        self._close_logs(name)
        return code

    def _reap(self, name: str, process: subprocess.Popen[bytes], timeout: float) -> int:
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
        finally:
            self._ready_file(name).unlink(missing_ok=True)

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """Stop every process: SIGTERM to all at once (once: a second signal makes a service exit
        at once, mid-stop), up to ``timeout`` seconds for them, then SIGKILL; their exit codes."""
        processes, self.processes = self.processes, {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {name: self._reap(name, p, max(0.1, deadline - time.monotonic())) for name, p in processes.items()}
        self._close_logs()
        return codes

    def check_alive(self) -> None:
        """Raise if a service died, naming it and pointing at its log."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                msg = f"service {name} exited with {process.returncode}; see {self.log_dir / f'{name}.log'}"
                raise RuntimeError(msg)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until every service's consumer has joined its group and holds partitions."""
        deadline = time.monotonic() + timeout
        while not all(self._ready_file(name).exists() for name in self.processes):
            self.check_alive()
            if time.monotonic() > deadline:
                msg = f"services not ready after {timeout:.0f}s; logs in {self.log_dir}"
                raise TimeoutError(msg)
            await asyncio.sleep(0.1)


KAFKA_SH = ROOT / "scripts" / "kafka.sh"


@dataclass(frozen=True, slots=True)
class LocalKafka:
    """A broker scripts/kafka.sh runs with a data folder and ports of its own (the chaos run's,
    a sandbox's), so it never meets a `make run` or test broker."""

    data_dir: Path
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def credentials_dir(self) -> Path:
        """Where scripts/kafka.sh keeps every principal's SCRAM credentials (``KAFKA_CREDENTIALS_DIR``)."""
        return self.data_dir / "credentials"

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_DATA_DIR": str(self.data_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            CREDENTIALS_DIR_VARIABLE: str(self.credentials_dir),
        }

    async def run(self, command: str) -> None:
        """``scripts/kafka.sh command`` (start, stop, reset), in a session of its own; RuntimeError
        with the end of its output when it fails."""
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(KAFKA_SH),
            command,
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"scripts/kafka.sh {command} failed: {errors.decode(errors='replace')[-2000:]}")

    def stop_now(self) -> None:
        """Stop it, blocking (for a clean-up that a signal must not cut short)."""
        subprocess.run(
            ["bash", str(KAFKA_SH), "stop"], env={**os.environ, **self.env}, check=False, capture_output=True
        )


def client_keyring(state_dir: Path = DEFAULT_STATE_DIR) -> Keyring:
    """The keys a client of a stack signs with: this process's keyring (``TRADEGUARD_SIGNING_DIR``,
    or the stack this process started), else that of the stack in ``state_dir`` (the operators'
    tools beside `make run`: ``.data``)."""
    try:
        return process_keyring()
    except SigningNotConfiguredError:
        return load_keyring(StackLayout.of(state_dir).signing_dir)
