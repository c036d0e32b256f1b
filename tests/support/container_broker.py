"""The tests' Kafka broker in a container (``TRADEGUARD_TEST_BROKER=container``; issue 12).

The broker is the project's own image, ``localhost/tradeguard/kafka:<version>`` (docker/kafka/,
built by ``make images``), started through testcontainers, so it is secured exactly as the
compose stack's broker is: SASL/SCRAM-SHA-512 only, the ``StandardAuthorizer`` refusing what no
ACL allows. Nothing in docker/ is changed for the tests; the entry point's ``KAFKA_CFG_*``
settings (appended after its own, so they win) give the client listener a port the host reaches:

* one free port ``P`` on the host's loopback is published to the same port ``P`` in the container,
  the client listener listens there and advertises ``127.0.0.1:P``. The advertised address is then
  right on both sides: the host's clients reach it through the port mapping, and the broker itself
  (its inter-broker listener is the same one) reaches it on its own loopback. testcontainers'
  random port mapping cannot be used: the port must be known before the broker starts, since it
  goes into the address the broker advertises;
* readiness is what ``kafka-health`` (the compose health check) checks, on port ``P``;
* the super user's password, which the entry point makes on first start, is read out of the
  container (``exec cat``; never through the environment, which ``inspect`` shows) into
  ``<temporary folder>/credentials/admin.json`` (0600), the layout ``shared.broker_security``
  expects; then :func:`shared.broker_security.provision` makes every principal its credentials,
  the ACLs and the topics, as ``scripts/kafka.sh start`` does, and ``KAFKA_CREDENTIALS_DIR`` names
  that folder for the tests and the services they start.

The engine is whatever Docker-compatible API answers: ``DOCKER_HOST``, else Docker's default
socket, else a ``podman system service`` started here on a socket of its own (with the project's
podman settings, docker/podman/containers.conf) and stopped after. Ryuk, testcontainers' reaper,
is off unless ``TESTCONTAINERS_RYUK_DISABLED`` says otherwise (its image cannot be pulled where no
registry is reachable), so the container is removed here, with its anonymous volumes, when the
tests pass, fail or are interrupted (through ``podman rm`` if the API is gone); the CI tier's runner (``python -m tests.support.container_broker``, ``make
test-containers``) also removes any container its run left behind (a killed pytest), found by its
run's label, and only those.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testcontainers.core.docker_client import DockerClient

from shared.broker_security import ADMIN, CREDENTIALS_DIR_VARIABLE, provision

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from testcontainers.core.container import DockerContainer

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_FILE = "/run/tradeguard/kafka-admin/admin.json"
"""Where docker/kafka/entrypoint.sh keeps the super user's credentials."""
CONTROLLER_LISTENER = "CONTROLLER://127.0.0.1:9093"
"""The entry point's controller listener, repeated because ``listeners`` is set as a whole."""

PORT_VARIABLE = "TRADEGUARD_TEST_BROKER_PORT"
"""Pins the host port (default: one the kernel says is free)."""
RUN_VARIABLE = "TRADEGUARD_TEST_RUN"
"""Set by the tier's runner: its containers carry it as :data:`RUN_LABEL`."""
RUN_LABEL = "tradeguard.test-run"
NAME_PREFIX = "tradeguard-test-kafka-"
PODMAN_CONF = REPO_ROOT / "docker" / "podman" / "containers.conf"

START_TIMEOUT = 180.0  # a first start on two busy cores takes 10-30 s
ENGINE_TIMEOUT = 30.0
POLL = 0.5

DEFAULT_TIER: tuple[str, ...] = (
    "tests/integration",
    "tests/e2e/test_order_flow.py",
    "-m",
    "kafka and not postgres",
    # It starts a scripts/kafka.sh broker of its own, so it would not touch the container's.
    "--ignore=tests/integration/test_broker_security.py",
    "-q",
)
"""What ``make test-containers`` runs: every integration test that talks to Kafka (their SQLite
variants; the tier is about the broker) and the end-to-end order flow, the five services as
processes against the container's broker."""


class ContainerBrokerError(RuntimeError):
    """The container broker cannot be had here: its image is missing, or it did not start."""


class NoContainerEngineError(ContainerBrokerError):
    """No Docker-compatible API answers, and no podman can be started to give one."""


def _kafka_version() -> str:
    # The pom is the single place the version is pinned; scripts/images.sh tags the image with it.
    pom = (REPO_ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    pinned = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if pinned is None:
        raise ContainerBrokerError("scripts/kafka/pom.xml pins no kafka.version")
    return pinned[1]


IMAGE = os.environ.get("TRADEGUARD_TEST_BROKER_IMAGE") or f"localhost/tradeguard/kafka:{_kafka_version()}"
"""The broker image; ``TRADEGUARD_TEST_BROKER_IMAGE`` names another build of docker/kafka/."""


# ---------------------------------------------------------------------- the engine


def _client(docker_host: str, timeout: int = 60) -> Any:
    # testcontainers' own client (docker-py underneath), which reads DOCKER_HOST. docker-py is not
    # imported here: for mypy the repository's docker/ folder shadows it.
    with _environment("DOCKER_HOST", docker_host):
        return DockerClient(timeout=timeout).client


def _answers(docker_host: str) -> bool:
    try:
        client = _client(docker_host, timeout=10)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _podman_env() -> dict[str, str]:
    # As scripts/images.sh podman_env: the project's settings (runc, ulimits this machine allows)
    # unless CONTAINERS_CONF is set or TRADEGUARD_PODMAN_CONF= turns them off.
    env = dict(os.environ)
    conf = os.environ.get("TRADEGUARD_PODMAN_CONF", str(PODMAN_CONF))
    if conf and not env.get("CONTAINERS_CONF"):
        env["CONTAINERS_CONF"] = conf
    return env


try:
    # Looked up here, not in the child: between fork and exec only the call itself is safe.
    _PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the service's process before exec: a test run killed outright must not leave an
    # API server behind (it is in a session of its own, so Ctrl-C does not reach it).
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def _podman_service() -> Iterator[str]:
    podman = shutil.which("podman")
    if podman is None:
        msg = (
            "no Docker-compatible API answers (DOCKER_HOST unset or not answering, no Docker socket) and podman "
            "is not installed: apt-get install -y podman runc, or start a Docker engine"
        )
        raise NoContainerEngineError(msg)
    folder = Path(tempfile.mkdtemp(prefix="tradeguard-podman-"))
    docker_host = f"unix://{folder / 'podman.sock'}"
    log = folder / "service.log"
    with log.open("wb") as output:
        # Its own session: Ctrl-C reaches the tests, which still need the API to remove the container.
        service = subprocess.Popen(
            [podman, "system", "service", "--time=0", docker_host],
            env=_podman_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  # one system call, looked up beforehand
        )
    try:
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while not _answers(docker_host):
            if service.poll() is not None or time.monotonic() >= deadline:
                tail = log.read_text(errors="replace").strip().splitlines()[-10:]
                msg = "podman system service did not answer: " + (" | ".join(tail) or "no output")
                raise NoContainerEngineError(msg)
            time.sleep(POLL)
        yield docker_host
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def docker_api() -> Iterator[str]:
    """Yield a Docker-compatible API's address, ``DOCKER_HOST`` naming it meanwhile: the one
    ``DOCKER_HOST`` names, else Docker's default socket, else a podman service started here."""
    named = os.environ.get("DOCKER_HOST")
    if named and _answers(named):
        yield named
        return
    if named:
        sys.stderr.write(f"DOCKER_HOST={named} does not answer; starting a podman service instead\n")
    default = "unix:///var/run/docker.sock"
    if not named and _answers(default):
        with _environment("DOCKER_HOST", default):
            yield default
        return
    with _podman_service() as started, _environment("DOCKER_HOST", started):
        yield started


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def require_image(docker_host: str) -> None:
    """Refuse, saying how to build it, when the broker image is not there (testcontainers would
    try to pull it, from a registry that does not have it)."""
    client = _client(docker_host)
    try:
        built = client.images.list(name=IMAGE)
    finally:
        client.close()
    if not built:
        msg = f"the broker image {IMAGE} is not built here: run `make images` (scripts/images.sh build) first"
        raise ContainerBrokerError(msg)


# ---------------------------------------------------------------------- the broker


def _host_port() -> int:
    pinned = os.environ.get(PORT_VARIABLE)
    if pinned:
        return int(pinned)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _broker_container(name: str, port: int) -> DockerContainer:
    from testcontainers.core.container import DockerContainer

    labels = {"tradeguard.role": "test-broker"}
    if run := os.environ.get(RUN_VARIABLE):
        labels[RUN_LABEL] = run
    container = DockerContainer(
        IMAGE,
        name=name,
        env={
            "KAFKA_CFG_LISTENERS": f"SASL_PLAINTEXT://:{port},{CONTROLLER_LISTENER}",
            "KAFKA_CFG_ADVERTISED_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{port}",
            # As scripts/kafka.sh: tests use short session timeouts so a crashed consumer does
            # not stall the next join.
            "KAFKA_CFG_GROUP_MIN_SESSION_TIMEOUT_MS": "1000",
        },
        # Hardened as docker-compose.yml runs it, so the tests also show the image works that way.
        labels=labels,
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    ).with_tmpfs_mount("/tmp")
    # The host's loopback only; testcontainers' helper takes a bare port, which binds every interface.
    container.ports[f"{port}/tcp"] = ("127.0.0.1", port)  # type: ignore[assignment]
    return container


def _wait_until_serving(container: DockerContainer, port: int) -> None:
    # What kafka-health checks, on the port the client listener was moved to.
    health = f"grep -qs 'Kafka Server started' /var/lib/kafka/server.log && exec 3<>/dev/tcp/127.0.0.1/{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        container.reload()
        if container.status != "running":
            msg = f"the broker container stopped ({container.status}) while starting:\n{_last_logs(container)}"
            raise ContainerBrokerError(msg)
        if container.exec(["bash", "-c", health]).exit_code == 0:
            return
        if time.monotonic() >= deadline:
            msg = f"the broker did not serve within {START_TIMEOUT:.0f} s:\n{_last_logs(container)}"
            raise ContainerBrokerError(msg)
        time.sleep(POLL)


def _last_logs(container: DockerContainer, lines: int = 40) -> str:
    try:
        logs = container.get_wrapped_container().logs(tail=lines)
    except Exception as error:
        return f"(no logs: {error})"
    return bytes(logs).decode(errors="replace")


def _copy_admin_credentials(container: DockerContainer, credentials: Path) -> None:
    result = container.exec(["cat", ADMIN_FILE])
    try:
        admin: Any = json.loads(result.output)
    except ValueError:
        admin = None
    # The output is never shown: it is the super user's password.
    if result.exit_code != 0 or not isinstance(admin, dict) or admin.get("username") != ADMIN:
        msg = f"could not read the super user's credentials from the container ({ADMIN_FILE}, exit {result.exit_code})"
        raise ContainerBrokerError(msg)
    descriptor = os.open(credentials / f"{ADMIN}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(result.output)


@contextlib.contextmanager
def container_broker() -> Iterator[str]:
    """Yield the bootstrap servers of a provisioned broker in a container; see the module docstring.

    ``KAFKA_CREDENTIALS_DIR`` names its credentials while it runs (whatever it named before is
    restored after: those would be another broker's)."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    with docker_api() as docker_host:
        require_image(docker_host)
        port = _host_port()
        servers = f"127.0.0.1:{port}"
        name = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        container = _broker_container(name, port)
        folder = Path(tempfile.mkdtemp(prefix="tradeguard-kafka-"))  # 0700: it will hold every password
        try:
            credentials = folder / "credentials"
            credentials.mkdir(mode=0o700)
            container.start()
            _wait_until_serving(container, port)
            _copy_admin_credentials(container, credentials)
            asyncio.run(provision(servers, credentials))
            with _environment(CREDENTIALS_DIR_VARIABLE, str(credentials)):
                yield servers
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            _remove(container, name)


def _remove(container: DockerContainer, name: str) -> None:
    # Never masks the exception that ended the tests; says what is left, if anything.
    try:
        container.stop()  # removes it, forced, with its anonymous volumes
    except Exception as error:
        # The API may be gone (the tier's runner killed): podman's command line still reaches it.
        podman = shutil.which("podman")
        if podman is not None:
            removed = subprocess.run(
                [podman, "rm", "--force", "--volumes", name],
                env=_podman_env(),
                capture_output=True,
                check=False,
            )
            if removed.returncode == 0:
                return
        sys.stderr.write(f"could not remove the broker container {name} ({error}): podman rm -f -v {name}\n")


# ---------------------------------------------------------------------- the CI tier


def remove_leftovers(docker_host: str, run: str) -> list[str]:
    """Remove the containers labelled with this run (a pytest killed before its teardown)."""
    client = _client(docker_host)
    try:
        left = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run}"})
        for container in left:
            container.remove(force=True, v=True)
        return [str(container.name) for container in left]
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.support.container_broker [PYTEST_ARGS...]`` (``make test-containers``).

    Runs pytest (:data:`DEFAULT_TIER` unless arguments are given) against the container broker.
    Exit: pytest's code; 0 with a "skipped" line when no container engine can be had here; 1
    when the broker image is missing (the message says to run ``make images``)."""
    started = time.monotonic()
    args = list(argv if argv is not None else sys.argv[1:]) or list(DEFAULT_TIER)
    try:
        with docker_api() as docker_host:
            require_image(docker_host)
            run = secrets.token_hex(6)
            env = {
                **os.environ,
                "TRADEGUARD_TEST_BROKER": "container",
                RUN_VARIABLE: run,
                "TESTCONTAINERS_RYUK_DISABLED": os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "true"),
            }
            print(f"test-containers: {IMAGE} through {docker_host}; pytest {' '.join(args)}", flush=True)
            code = _pytest(args, env)
            left = remove_leftovers(docker_host, run)
            if left:
                print(f"test-containers: removed containers the tests left behind: {', '.join(left)}")
    except NoContainerEngineError as error:
        print(f"test-containers: skipped: {error}")
        return 0
    except ContainerBrokerError as error:
        print(f"test-containers: {error}", file=sys.stderr)
        return 1
    verdict = "passed" if code == 0 else f"failed (pytest exit {code})"
    print(f"test-containers: {verdict} in {time.monotonic() - started:.0f} s")
    return code


def _pytest(args: Sequence[str], env: dict[str, str]) -> int:
    running: list[subprocess.Popen[bytes]] = []

    def interrupt_tests(*_: object) -> None:
        for tests in running:
            tests.send_signal(signal.SIGINT)

    # Ctrl-C reaches pytest from the terminal, and pytest tears down (removing its container);
    # this process waits for that. A SIGTERM (a CI job cancelled) is passed on as the same Ctrl-C.
    # Set before pytest starts: a caught signal is the default again in a new program, so pytest
    # takes Ctrl-C even where this process was started with it ignored (a background job).
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, lambda *_: None),
        signal.SIGTERM: signal.signal(signal.SIGTERM, interrupt_tests),
    }
    try:
        running.append(subprocess.Popen([sys.executable, "-m", "pytest", *args], env=env, cwd=REPO_ROOT))
        code = running[0].wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


if __name__ == "__main__":
    sys.exit(main())
