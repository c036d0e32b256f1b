"""Shared fixtures: one real Kafka broker and one PostgreSQL server per test run, and one signing
keyring (X9) that every stack, in-process service and client of the run shares."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ALL_TOPICS
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import Onboarding, Person, Phone
from scripts.stack import FAST_PASSWORD_HASHING, ServiceProcesses, sqlite_urls
from shared.broker import ensure_topics
from shared.clock import FileClock, ManualClock
from shared.db import create_engine
from shared.retention import PRUNER_OFF
from shared.signing import SIGNING_DIR_VARIABLE, Keyring, ensure_keyring, install, process_keyring
from tests.support.kafka import kafka_bootstrap_servers

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
_OWN_KEYRING: list[Path] = []


def pytest_configure() -> None:
    """Signatures are on in every test (signing is not optional): before any test module is
    imported (some build signed records at import), the run gets its keyring, unless
    ``TRADEGUARD_SIGNING_DIR`` already names one. Services started as processes inherit it."""
    if not os.environ.get(SIGNING_DIR_VARIABLE):
        directory = Path(tempfile.mkdtemp(prefix="tradeguard-signing-")) / "signing"
        _OWN_KEYRING.append(directory.parent)
        os.environ[SIGNING_DIR_VARIABLE] = str(directory)
    ensure_keyring(Path(os.environ[SIGNING_DIR_VARIABLE]))
    install(None)  # read from the environment at first use


def pytest_unconfigure() -> None:
    for directory in _OWN_KEYRING:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real broker with every TradeGuard topic created."""
    with kafka_bootstrap_servers() as servers:
        asyncio.run(ensure_topics(servers, ALL_TOPICS))
        yield servers


def _postgres(*args: str) -> str:
    result = subprocess.run(["bash", str(POSTGRES_SH), *args], check=True, capture_output=True, text=True)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[None]:
    """PostgreSQL from Debian's packages, started by scripts/postgres.sh for this run."""
    _postgres("start")
    yield
    subprocess.run(["bash", str(POSTGRES_SH), "stop"], check=False, capture_output=True)


def fresh_database_like(url: str) -> str:
    """Another empty database of the same kind as ``url`` (for comparing two runs)."""
    if url.startswith("sqlite"):
        return url.replace(".db", f"-{uuid.uuid4().hex[:8]}.db")
    return _postgres("createdb", f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: every test using it runs once per backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    request.getfixturevalue("postgres_server")
    return _postgres("createdb", f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def keyring() -> Keyring:
    """The run's signing keys, every principal's (a test signs as whoever it plays)."""
    return process_keyring()


@pytest.fixture
def clock() -> ManualClock:
    """Time that moves only when a test says so (X8)."""
    return ManualClock()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


# The five services as separate processes against the test broker, one stack per test module
# (fault tests stop, kill and restart services, so they never share a stack with other tests).


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, stack_dir: Path) -> AsyncIterator[ServiceProcesses]:
    services = ServiceProcesses(
        kafka_bootstrap, sqlite_urls(stack_dir), stack_dir / "logs", extra_env={**FAST_PASSWORD_HASHING, **PRUNER_OFF}
    )
    services.start()
    try:
        await services.wait_ready(timeout=90)
        yield services
    finally:
        services.stop()


@pytest.fixture
async def market(kafka_bootstrap: str) -> AsyncIterator[Marketplace]:
    async with Marketplace(kafka_bootstrap) as market:
        yield market


@pytest.fixture
async def watcher(kafka_bootstrap: str, stack: ServiceProcesses) -> AsyncIterator[EventWatcher]:
    async with EventWatcher(kafka_bootstrap) as watcher:
        yield watcher


@pytest.fixture
def service_db(stack_dir: Path) -> dict[str, str]:
    return sqlite_urls(stack_dir)


@pytest.fixture
def onboarding(market: Marketplace, watcher: EventWatcher, stack: ServiceProcesses) -> Onboarding:
    """Takes people through registration and binding against the running stack."""
    return Onboarding(
        market,
        watcher,
        Phone(stack.sms_outbox),
        stack.sealing_key(),
        clock=FileClock(stack.clock_file),
        payment_url=stack.payment_url,
    )


@pytest.fixture
def new_person() -> Callable[[str], Person]:
    """A person with an account id and phone number of their own (``new_person("buyer")``)."""

    def make(role: str) -> Person:
        n = uuid.uuid4().int % 10**8
        return Person.numbered(f"{role}-{n:08d}", n)

    return make
