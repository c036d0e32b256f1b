"""Issue 20, the integrator kit: the wheels, installed where the repository is not, run a
marketplace's own test suite (examples/integrator) against a sandbox the plugin starts.

The wheels are built here (``uv build``), installed into a fresh virtual environment of their own
with nothing of this repository in it, and the example suite is copied out of the repository
and run there with that environment's pytest: a file missing from a wheel, an import of service
code, a fixture the plugin lacks, a Node example that no longer publishes, all fail here. The
sandbox itself is TradeGuard's CLI from this repository's environment (``TRADEGUARD_COMMAND``),
as an integrator's CI would run an installed TradeGuard.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "integrator"
PACKAGES = ("contracts", "client")
# What the sandbox must not inherit from this test run: it makes its own broker, keys and clock.
STACK_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CREDENTIALS_DIR",
    "TRADEGUARD_SIGNING_DIR",
    "TRADEGUARD_CLOCK_FILE",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@dataclass(frozen=True)
class Outside:
    """A virtual environment holding only the wheels (and what they depend on), and a copy of the example suite."""

    python: Path
    suite: Path
    wheels: dict[str, Path]

    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
        return {**clean, "TRADEGUARD_COMMAND": str(Path(sys.executable).with_name("tradeguard"))}

    def pytest(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *arguments]
        return subprocess.run(
            command, cwd=self.suite, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Outside:
    where = tmp_path_factory.mktemp("integrator")
    wheels_dir = where / "wheels"
    for package in PACKAGES:
        subprocess.run(
            [*uv(), "build", "--wheel", "--quiet", str(ROOT / "packages" / package), "-o", str(wheels_dir)],
            check=True,
            capture_output=True,
        )
    wheels = {path.name.split("-")[0]: path for path in wheels_dir.glob("*.whl")}
    venv = where / "venv"
    subprocess.run([*uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            *uv(),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--find-links",
            str(wheels_dir),
            "tradeguard-contracts",
            "tradeguard-client[pytest]",
        ],
        check=True,
        capture_output=True,
    )
    suite = where / "marketplace-tests"
    shutil.copytree(EXAMPLE, suite, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return Outside(python, suite, wheels)


def test_the_wheels_hold_the_contracts_and_the_client_and_no_service_code(outside: Outside) -> None:
    contracts = zipfile.ZipFile(outside.wheels["tradeguard_contracts"]).namelist()
    client = zipfile.ZipFile(outside.wheels["tradeguard_client"]).namelist()
    assert "contracts/schemas/Checkout.v1.json" in contracts
    assert "contracts/asyncapi.json" in contracts
    assert "contracts/signatures.py" in contracts
    assert not [name for name in contracts if name.startswith("contracts/released/")]
    assert "tradeguard_client/pytest_plugin.py" in client
    entry_points = next(name for name in client if name.endswith("entry_points.txt"))
    assert (
        "tradeguard = tradeguard_client.pytest_plugin"
        in zipfile.ZipFile(outside.wheels["tradeguard_client"]).read(entry_points).decode()
    )
    for name in contracts + client:
        assert not name.startswith(("services/", "shared/", "scripts/")), name
    for path in outside.wheels.values():
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")
    # The environment cannot import what the wheels do not hold.
    probe = subprocess.run(
        [str(outside.python), "-c", "import contracts, tradeguard_client; import services"],
        cwd=outside.suite,
        env=outside.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'services'" in probe.stderr, probe.stderr


def test_the_example_marketplace_suite_passes_against_the_plugins_sandbox(outside: Outside) -> None:
    ran = outside.pytest("-v")
    print(ran.stdout[-4000:])
    assert ran.returncode == 0, ran.stdout[-8000:] + ran.stderr[-4000:]
    assert " passed" in ran.stdout
    assert "skipped" not in ran.stdout.rsplit("\n", 3)[-2], "every example test ran (node included)"
    assert "tradeguard sandbox: started in" in ran.stdout


@pytest.mark.long
def test_the_sandbox_goes_when_the_test_run_is_killed(outside: Outside, tmp_path: Path) -> None:
    """Issue 20: the stack is torn down even when tests fail or are interrupted: here pytest is
    SIGKILLed (no clean-up of its own runs), and the sandbox still stops everything it started."""
    (outside.suite / "test_hangs.py").write_text(
        "import asyncio\n\n"
        "async def test_waits_forever(tradeguard_stack):\n"
        "    print('PROFILE', tradeguard_stack.profile_path, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
    )
    log = tmp_path / "pytest.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(outside.python), "-m", "pytest", "-p", "no:cacheprovider", "-s", "test_hangs.py"],
            cwd=outside.suite,
            env=outside.env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        profile = _waited(lambda: _profile_in(log), 180, "the sandbox's profile")
        state_dir = profile.parent
        broker_pid = int((state_dir / "kafka" / "kafka.pid").read_text())
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        _waited(lambda: not _alive(broker_pid), 120, "the sandbox's broker to stop")
        assert not list((state_dir / "logs").glob("*.ready")), "every service's ready file is gone: they stopped"
    finally:
        if process.poll() is None:
            process.kill()
        (outside.suite / "test_hangs.py").unlink()


def _profile_in(log: Path) -> Path | None:
    found = re.search(r"PROFILE (\S+)", log.read_text())
    return Path(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _waited(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll another process's files (they announce nothing) until ``probe`` gives a value."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.2)
    return found
