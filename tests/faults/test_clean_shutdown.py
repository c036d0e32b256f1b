"""Clean shutdown (issue 12). X2: a service signalled with SIGTERM or SIGINT while orders flow
exits 0 within seconds, leaves its consumer group at once (the restarted one gets the partitions
without waiting for a session timeout) and loses no order; a second signal during the stop ends
it at once, and still nothing is lost. X4: `tradeguard run` / `demo` / `scenario --start-stack`
signalled (SIGTERM or SIGINT, to the parent alone or to its whole group, also mid-start) leave
nothing running: no service, no simulator, no broker it started, no pid or ready file; a broker
that was running before is left running.

The services run against the tests' broker (``KAFKA_BOOTSTRAP_SERVERS``/``KAFKA_CREDENTIALS_DIR``
or tests/support/kafka.py's); each `tradeguard` parent starts its own broker on free ports with
its own data and state folders (``KAFKA_DATA_DIR``, ``KAFKA_PORT``, ``TRADEGUARD_STATE_DIR``)
under the test's temporary folder, whose path is how its processes are found afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from contracts import Checkout, ConfirmReceipt, FundWallet, HoldFunds, OrderStatus
from scripts.audit import audit_stack
from scripts.marketplace import EventWatcher, Marketplace
from scripts.onboarding import MARKETPLACE_ID, Onboarding, Person
from scripts.stack import FAST_PASSWORD_HASHING, SERVICES, ServiceProcesses, free_port, sqlite_urls
from shared.broker_security import ADMIN, CREDENTIALS_DIR_VARIABLE, client_options
from shared.crash import CRASH_AT, CRASH_MARK, CRASH_SIGNAL
from shared.signing import SIGNING_DIR_VARIABLE
from tests.support.eventually import eventually
from tests.support.orders import reached, usd

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_MS = 30_000
"""The services' session timeout here: a member gone without LeaveGroup would hold its
partitions this long, so a prompt hand-over can only be the LeaveGroup's doing."""
STOP_WITHIN = 10.0
"""A signalled service exits within this (its stop waits 5 s at most for the batch in hand)."""
ORDERS = 3


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, stack_dir: Path) -> AsyncIterator[ServiceProcesses]:
    """This module's stack (conftest's, with a long session timeout: see SESSION_TIMEOUT_MS)."""
    extra = {**FAST_PASSWORD_HASHING, "KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS)}
    services = ServiceProcesses(kafka_bootstrap, sqlite_urls(stack_dir), stack_dir / "logs", extra_env=extra)
    services.start()
    try:
        await services.wait_ready(timeout=90)
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="module")
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **client_options(ADMIN))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    [response] = await admin.describe_consumer_groups([group])
    _error, _group, _state, _protocol_type, _protocol, members, *_ = response.groups[0]
    return len(members)


async def exit_code(process: subprocess.Popen[bytes], within: float) -> int | None:
    async def poll() -> int | None:
        return process.poll()

    return await eventually(poll, lambda code: code is not None, timeout=within)


async def orders_in_flight(market: Marketplace, onboarding: Onboarding, count: int = ORDERS) -> list[tuple[str, str]]:
    """``count`` orders of new buyers, just checked out: (order, buyer) pairs."""
    run = uuid.uuid4().hex[:8]
    buyers = [Person.numbered(f"buyer-stop-{run}-{i}", int(run, 16) % 10**6 * 10 + i) for i in range(count)]
    await onboarding.many(buyers)
    orders = [(f"order-stop-{run}-{i}", buyer.account_id) for i, buyer in enumerate(buyers)]
    for order_id, buyer_id in orders:
        fund = FundWallet(account_id=buyer_id, amount=usd(5000))
        await market.publish(fund, correlation_id=order_id, idempotency_key=f"fund-{order_id}")
        checkout = Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=order_id,
            buyer_id=buyer_id,
            seller_id=f"seller-{run}",
            amount=usd(1500),
        )
        await market.publish(checkout, correlation_id=order_id, idempotency_key=f"checkout-{order_id}")
    return orders


async def all_complete(market: Marketplace, watcher: EventWatcher, orders: list[tuple[str, str]]) -> None:
    for order_id, buyer_id in orders:
        await watcher.wait_for(reached(order_id, OrderStatus.IN_ESCROW), timeout=90)
        await market.publish(
            ConfirmReceipt(order_id=order_id, buyer_id=buyer_id),
            correlation_id=order_id,
            idempotency_key=f"confirm-{order_id}",
        )
    for order_id, _ in orders:
        await watcher.wait_for(reached(order_id, OrderStatus.COMPLETED), timeout=90)


async def restart(stack: ServiceProcesses, service: str, within: float = SESSION_TIMEOUT_MS / 1000 / 2) -> float:
    """Start ``service`` again; the seconds until it holds its partitions (by default well
    inside a session timeout: its predecessor must have left the group)."""
    stack.processes.pop(service, None)
    began = time.monotonic()
    stack.start_one(service)
    await stack.wait_ready(timeout=within)
    return time.monotonic() - began


# SIGTERM to every service; SIGINT takes the same path (one handler for both), so once is enough
# to prove it: the full matrix would add a minute to `make test` and no new way to fail. `make
# test` signals the saga (both signals); the other four services are in `make test-long`.
SIGNALLED = [
    pytest.param(service, signal.SIGTERM, id=f"{service}-sigterm", marks=() if service == "saga" else pytest.mark.long)
    for service in SERVICES
] + [pytest.param("saga", signal.SIGINT, id="saga-sigint")]


@pytest.mark.parametrize(("service", "signum"), SIGNALLED)
async def test_x2_a_service_signalled_while_orders_flow_stops_cleanly_and_loses_no_order(  # noqa: PLR0917 - pytest passes fixtures by position
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    admin: AIOKafkaAdminClient,
    service: str,
    signum: signal.Signals,
) -> None:
    assert await group_members(admin, service) == 1
    orders = await orders_in_flight(market, onboarding)
    process = stack.processes[service]
    began = time.monotonic()
    process.send_signal(signum)

    assert await exit_code(process, STOP_WITHIN) == 0, f"{service} did not stop cleanly on {signum.name}"
    stopped_in = time.monotonic() - began
    # It left the group on its way out: nobody holds the partitions, none waits a session timeout.
    assert await eventually(lambda: group_members(admin, service), lambda n: n == 0, timeout=2) == 0
    assert not stack.layout.ready_file(service).exists()

    ready_in = await restart(stack, service)
    await all_complete(market, watcher, orders)
    report = await audit_stack(stack.state_dir, attempts=5)
    assert report.ok, report.summary()
    print(f"{service} {signum.name}: stopped in {stopped_in:.2f}s, ready again {ready_in:.2f}s after its restart")


@pytest.mark.parametrize("point", ["before_store", "after_store"])
async def test_x2_a_saga_signalled_with_a_batch_in_hand_finishes_it_and_publishes_before_exiting(  # noqa: PLR0917 - pytest passes fixtures by position
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    admin: AIOKafkaAdminClient,
    tmp_path: Path,
    point: str,
) -> None:
    # SIGTERM to itself while it handles the PaymentCaptured (shared/crash.py): before its
    # transaction commits, or after it commits and before the relay publishes the HoldFunds.
    mark = tmp_path / "signalled"
    plain = stack.extra_env
    stack.extra_env = {
        **plain,
        CRASH_AT: f"saga:{point}:PaymentCaptured",
        CRASH_SIGNAL: "SIGTERM",
        CRASH_MARK: str(mark),
    }
    try:
        stack.stop_one("saga")
        await restart(stack, "saga")
    finally:
        stack.extra_env = plain
    [(order_id, buyer_id)] = await orders_in_flight(market, onboarding, count=1)
    saga = stack.processes["saga"]

    async def signalled_and_gone() -> bool:
        return mark.exists() and saga.poll() is not None

    assert await eventually(signalled_and_gone, bool, timeout=60)
    assert saga.returncode == 0
    # The batch was finished and its command published by the saga on its way out: no saga runs now.
    await watcher.wait_for(lambda s: isinstance(s.message, HoldFunds) and s.envelope.correlation_id == order_id)
    assert await group_members(admin, "saga") == 0

    await restart(stack, "saga")
    await all_complete(market, watcher, [(order_id, buyer_id)])
    holds = {s.envelope.message_id for s in watcher.about(order_id) if isinstance(s.message, HoldFunds)}
    assert len(holds) == 1, "the PaymentCaptured was handled once: finished, not redelivered and redone"
    report = await audit_stack(stack.state_dir, attempts=5)
    assert report.ok, report.summary()


@pytest.mark.usefixtures("kafka_bootstrap")  # the broker's credentials, though this service never reaches it
@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGINT, id="sigint", marks=pytest.mark.long)],
)
async def test_x2_a_service_signalled_while_it_waits_for_the_broker_stops_at_once(
    tmp_path: Path, signum: signal.Signals
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # no broker: its start retries forever
    services = ServiceProcesses(nowhere, sqlite_urls(tmp_path), tmp_path / "logs", extra_env=FAST_PASSWORD_HASHING)
    services.start(("escrow",))
    try:
        log = tmp_path / "logs" / "escrow.log"

        async def retrying() -> bool:
            return log.exists() and "will retry" in log.read_text()

        assert await eventually(retrying, bool, timeout=30)
        escrow = services.processes["escrow"]
        escrow.send_signal(signum)
        assert await exit_code(escrow, STOP_WITHIN) == 0
    finally:
        services.stop()


class RunByUv(ServiceProcesses):
    """Each process as ``uv run python -m ...``, which forwards the signals it gets to its child."""

    def _command(self, name: str) -> list[str]:
        uv = shutil.which("uv")
        if uv is None:
            pytest.skip("uv is not on PATH")
        return [uv, "run", "--frozen", "python", "-m", f"services.{name}"]


async def test_x2_ctrl_c_to_a_service_run_by_uv_is_one_clean_stop(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    admin: AIOKafkaAdminClient,
) -> None:
    # The stack's escrow, run by uv instead: same databases, ports, logs and environment.
    shared = {f.name: getattr(stack, f.name) for f in dataclasses.fields(stack) if f.name not in {"processes", "_logs"}}
    by_uv = RunByUv(**shared)
    stack.stop_one("escrow")
    by_uv.start_one("escrow")
    try:
        await by_uv.wait_ready(timeout=60)
        orders = await orders_in_flight(market, onboarding)
        escrow = by_uv.processes["escrow"]
        # SIGINT to its whole group, as a terminal's Ctrl-C: it gets it, and uv forwards a copy.
        os.killpg(escrow.pid, signal.SIGINT)

        assert await exit_code(escrow, STOP_WITHIN) == 0
        assert "second signal" not in (stack.log_dir / "escrow.log").read_text()
        assert await eventually(lambda: group_members(admin, "escrow"), lambda n: n == 0, timeout=2) == 0
    finally:
        by_uv.stop()
    await restart(stack, "escrow")
    await all_complete(market, watcher, orders)


@pytest.mark.long
async def test_x2_a_second_signal_during_the_stop_exits_at_once_and_loses_nothing(
    stack: ServiceProcesses,
    market: Marketplace,
    watcher: EventWatcher,
    onboarding: Onboarding,
    admin: AIOKafkaAdminClient,
) -> None:
    orders = await orders_in_flight(market, onboarding)
    saga = stack.processes["saga"]
    # Two different signals: two of the same may merge into one while pending (and two pending
    # ones are delivered lowest number first, so either may be the second).
    saga.send_signal(signal.SIGTERM)
    saga.send_signal(signal.SIGINT)

    assert await exit_code(saga, 2.0) in {128 + signal.SIGINT, 128 + signal.SIGTERM}
    assert not stack.layout.ready_file("saga").exists()
    # Gone without a LeaveGroup: the broker still counts it a member until its session times out
    # (what the clean stop above is checked not to do).
    assert await group_members(admin, "saga") == 1
    await restart(stack, "saga", within=SESSION_TIMEOUT_MS / 1000 + 60)
    await all_complete(market, watcher, orders)
    report = await audit_stack(stack.state_dir, attempts=5)
    assert report.ok, report.summary()


# ---------------------------------------------------------------------- the `tradeguard` parent


@dataclass
class Parent:
    """A `tradeguard` command with a stack of its own under ``folder``, and what it printed."""

    process: asyncio.subprocess.Process
    folder: Path
    env: dict[str, str]
    output: list[str] = field(default_factory=list)

    @property
    def kafka_dir(self) -> Path:
        return self.folder / "kafka"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def text(self) -> str:
        return "".join(self.output)

    def children(self) -> set[int]:
        """The services' and simulators' pids, as it printed them."""
        return {int(pid) for pid in re.findall(r"\(pid (\d+)\)", self.text)}

    def broker_pid(self) -> int | None:
        pidfile = self.kafka_dir / "kafka.pid"
        return int(pidfile.read_text()) if pidfile.exists() else None

    async def printed(self, text: str, within: float) -> None:
        async def output() -> str:
            if self.process.returncode is not None:
                return f"{self.text}\n(exited {self.process.returncode})"
            return self.text

        seen = await eventually(output, lambda out: text in out or "(exited" in out, timeout=within)
        assert text in seen, f"{text!r} not printed within {within:.0f}s:\n{seen[-3000:]}"

    async def exited(self, within: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=within)
        except TimeoutError:
            pytest.fail(f"the parent did not exit within {within:.0f}s:\n{self.text[-3000:]}")

    def signal(self, signum: signal.Signals, *, group: bool) -> None:
        if group:  # as Ctrl-C in a terminal: the whole foreground group
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)


def stack_env(folder: Path) -> dict[str, str]:
    """The environment of a stack of its own: broker, ports, state and keys under ``folder``."""
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", CREDENTIALS_DIR_VARIABLE}}
    env.pop(SIGNING_DIR_VARIABLE, None)  # its keys in its state folder, as `make run`'s are
    return {
        **env,
        "KAFKA_DATA_DIR": str(folder / "kafka"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        "TRADEGUARD_STATE_DIR": str(folder / "state"),
        **FAST_PASSWORD_HASHING,
    }


@contextlib.asynccontextmanager
async def parent(folder: Path, *command: str, env: dict[str, str] | None = None) -> AsyncIterator[Parent]:
    """``tradeguard <command>`` in a process group of its own (so the test can signal the group)."""
    env = env or stack_env(folder)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.cli",
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    run = Parent(process, folder, env)

    async def pump() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            run.output.append(line.decode(errors="replace"))

    reader = asyncio.create_task(pump())
    try:
        yield run
    finally:
        if process.returncode is None:  # the test failed with it running: take everything down
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=60)
        await asyncio.wait({reader}, timeout=5)
        # Whatever a failed test left: the broker by its script, anything else by force.
        await kafka_sh("stop", env)
        kill_everything_mentioning(str(folder))


async def kafka_sh(command: str, env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "scripts" / "kafka.sh"), command, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    return await process.wait()


def _alive(pid: int) -> bool:
    """Running, and not a zombie (a dead child its parent has not reaped runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[1].startswith("Z")


def processes_mentioning(marker: str) -> dict[int, str]:
    """Live processes with ``marker`` in their command line or environment: pid and command line."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if (marker in cmdline or marker.encode() in environ) and _alive(int(entry.name)):
            found[int(entry.name)] = cmdline.strip()
    return found


def kill_everything_mentioning(marker: str) -> None:
    for pid in processes_mentioning(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(run: Parent, running_before: set[int]) -> None:
    """No process of the run, none of the pids it had, no pid file, no ready file, no listener."""
    leftovers = processes_mentioning(str(run.folder))
    assert not leftovers, f"left running: {leftovers}\n{run.text[-3000:]}"
    assert not [pid for pid in running_before if _alive(pid)]
    assert not (run.kafka_dir / "kafka.pid").exists()
    assert not list((run.state_dir / "logs").glob("*.ready"))
    assert not port_open(int(run.env["KAFKA_PORT"]))


def everything_running(run: Parent) -> set[int]:
    """The pids of the run's processes, checked to be found by the scan that later finds none."""
    children = run.children()
    broker = run.broker_pid()
    assert len(children) == 7, run.text  # five services, the funding network, the mailbox
    assert broker is not None
    pids = {run.process.pid, broker, *children}
    assert pids <= set(processes_mentioning(str(run.folder))), "the scan must see what it is to miss later"
    return pids


@pytest.mark.parametrize(
    ("signum", "group"),
    # `kill <pid>` and Ctrl-C in a terminal: the two ways a person stops it (the parent handles
    # both signals alike, and forwards to its children whichever way it was reached).
    [
        pytest.param(signal.SIGTERM, False, id="sigterm-to-parent", marks=pytest.mark.long),
        pytest.param(signal.SIGINT, True, id="sigint-to-group", marks=pytest.mark.long),
    ],
)
async def test_x4_tradeguard_run_signalled_leaves_nothing_running(
    tmp_path: Path, signum: signal.Signals, group: bool
) -> None:
    async with parent(tmp_path, "run") as run:
        await run.printed("Press Ctrl-C to stop.", within=240)
        pids = everything_running(run)
        began = time.monotonic()
        run.signal(signum, group=group)

        assert await run.exited(within=60) == 0, run.text[-3000:]
        stopped_in = time.monotonic() - began
        assert_nothing_left(run, pids)
        assert "Kafka stopped" in run.text
        print(f"run {signum.name} to {'group' if group else 'parent'}: everything stopped in {stopped_in:.1f}s")


@pytest.mark.long
async def test_x4_a_second_ctrl_c_during_the_clean_up_does_not_cut_it_short(tmp_path: Path) -> None:
    async with parent(tmp_path, "run") as run:
        await run.printed("Press Ctrl-C to stop.", within=240)
        pids = everything_running(run)
        run.signal(signal.SIGINT, group=True)
        await run.printed("stopping services...", within=10)
        run.signal(signal.SIGINT, group=True)  # impatient: while the services stop
        await run.printed("stopping the Kafka broker...", within=30)
        run.signal(signal.SIGINT, group=True)  # and while the broker stops

        assert await run.exited(within=60) == 0, run.text[-3000:]
        assert_nothing_left(run, pids)


async def test_x4_tradeguard_demo_signalled_while_the_broker_starts_leaves_nothing_running(tmp_path: Path) -> None:
    async with parent(tmp_path, "demo") as run:
        pidfile = run.kafka_dir / "kafka.pid"

        async def broker_launched() -> bool:
            return pidfile.exists()

        assert await eventually(broker_launched, bool, timeout=120)
        broker = run.broker_pid()
        assert broker is not None
        run.signal(signal.SIGTERM, group=False)

        assert await run.exited(within=60) == 128 + signal.SIGTERM, run.text[-3000:]
        assert_nothing_left(run, {broker})
        assert not run.children()  # stopped before any service started


@pytest.mark.long
async def test_x4_make_scenarios_signalled_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with parent(tmp_path, "scenario", "--all", "--start-stack", "--state-dir", str(state)) as run:
        await run.printed("every service has joined its consumer group", within=240)
        pids = everything_running(run)
        run.signal(signal.SIGTERM, group=False)

        assert await run.exited(within=60) == 130, run.text[-3000:]
        assert_nothing_left(run, pids)


@pytest.mark.long
async def test_x4_a_broker_running_before_the_stack_is_left_running(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    assert await kafka_sh("start", env) == 0
    try:
        broker = int((tmp_path / "kafka" / "kafka.pid").read_text())
        async with parent(tmp_path, "run", env=env) as run:
            await run.printed("Press Ctrl-C to stop.", within=240)
            pids = everything_running(run) - {broker}
            run.signal(signal.SIGTERM, group=False)

            assert await run.exited(within=60) == 0, run.text[-3000:]
            assert "leaving the Kafka broker running" in run.text
            assert _alive(broker)
            assert port_open(int(env["KAFKA_PORT"]))
            assert set(processes_mentioning(str(tmp_path))) == {broker}, "only the broker, someone else's"
            assert not [pid for pid in pids if _alive(pid)]
            assert not list((run.state_dir / "logs").glob("*.ready"))
    finally:
        await kafka_sh("stop", env)
