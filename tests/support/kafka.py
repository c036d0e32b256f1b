"""A Kafka broker for integration tests.

There are three ways to get one:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: a broker someone else manages (a shared dev stack),
   with ``KAFKA_CREDENTIALS_DIR`` naming its credentials folder. It is used as-is; nothing is
   started or stopped.
2. Otherwise (the default) ``scripts/kafka.sh``: the single-node KRaft broker run as a plain JVM
   from Maven Central jars, secured (SASL/SCRAM and the catalogue's ACLs,
   ``shared.broker_security``). It gets its own data dir and ports so it never collides with a
   ``make run`` stack, and that data dir is wiped first so every test run starts from an empty
   broker.
3. ``TRADEGUARD_TEST_BROKER=container``, chosen explicitly (``make test-containers``): the
   project's own broker image (docker/kafka/, ``make images``) started through testcontainers on
   whatever Docker-compatible API answers (``DOCKER_HOST``, Docker's socket, or a ``podman system
   service`` started for the run), then provisioned as the local one is; see
   ``tests.support.container_broker``. It cannot be combined with ``KAFKA_BOOTSTRAP_SERVERS``.
   The fault tests that stop and restart the broker need it to be 2.'s.

Every test runs against an authenticating broker. testcontainers' stock Kafka container is
not used: it has no authentication, so the tests' clients could not connect to it; the
project's image is secured as the compose stack runs it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from shared.broker_security import use_broker_credentials

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
TEST_DATA_DIR = REPO_ROOT / ".cache" / "kafka" / "test-data"
TEST_PORT = 19192
TEST_CONTROLLER_PORT = 19193
BROKER_CHOICE_VARIABLE = "TRADEGUARD_TEST_BROKER"
CONTAINER = "container"


@contextlib.contextmanager
def kafka_bootstrap_servers() -> Iterator[str]:
    """Yield bootstrap servers of a running broker; see the module docstring."""
    choice = os.environ.get(BROKER_CHOICE_VARIABLE, "")
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if choice not in ("", CONTAINER):
        msg = f"{BROKER_CHOICE_VARIABLE}={choice}: the only choice is {CONTAINER!r} (unset: the default broker)"
        raise RuntimeError(msg)
    if choice == CONTAINER:
        if external:
            msg = f"{BROKER_CHOICE_VARIABLE}={CONTAINER} and KAFKA_BOOTSTRAP_SERVERS={external}: choose one broker"
            raise RuntimeError(msg)
        # Imported only when chosen: the other paths need neither testcontainers nor an engine.
        from tests.support.container_broker import container_broker

        with container_broker() as servers:
            yield servers
    elif external:
        yield external
    else:
        with _local_broker() as servers:
            yield servers


@contextlib.contextmanager
def _local_broker() -> Iterator[str]:
    env = {
        **os.environ,
        "KAFKA_DATA_DIR": str(TEST_DATA_DIR),
        "KAFKA_PORT": str(TEST_PORT),
        "KAFKA_CONTROLLER_PORT": str(TEST_CONTROLLER_PORT),
    }
    # reset also stops a broker left behind by an aborted earlier run.
    _kafka_sh("reset", env)
    _kafka_sh("start", env)
    use_broker_credentials(TEST_DATA_DIR)  # the services the tests start inherit it
    try:
        yield f"127.0.0.1:{TEST_PORT}"
    finally:
        # Never let a failed stop mask the exception that ended the tests.
        _kafka_sh("stop", env, check=False)


def _kafka_sh(command: str, env: Mapping[str, str], *, check: bool = True) -> None:
    # Output is not captured: the first run shows download progress, and on failure the
    # script prints the broker log, which pytest then reports with the failing setup.
    result = subprocess.run(["bash", str(KAFKA_SH), command], env=env, check=False)
    if check and result.returncode != 0:
        msg = f"scripts/kafka.sh {command} failed with exit code {result.returncode}"
        raise RuntimeError(msg)
