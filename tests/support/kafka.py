"""A Kafka broker for integration tests.

There are three ways to get one, tried in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: a broker someone else manages (a CI service
   container, a shared dev stack). It is used as-is; nothing is started or stopped.
2. A Docker engine answers and ``testcontainers`` is installed: a throwaway
   ``KafkaContainer`` in KRaft mode, fully isolated and removed afterwards.
3. Otherwise ``scripts/kafka.sh``: the same single-node KRaft broker run as a plain JVM
   from Maven Central jars, for machines without Docker. It gets its own data dir and
   ports so it never collides with a ``make run`` stack, and that data dir is wiped
   first so every test run starts from an empty broker.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from shared.broker_security import use_broker_credentials

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
TEST_DATA_DIR = REPO_ROOT / ".cache" / "kafka" / "test-data"
TEST_PORT = 19192
TEST_CONTROLLER_PORT = 19193
# Confluent Platform 7.9 is Apache Kafka 3.9, the line scripts/kafka/pom.xml pins.
CONTAINER_IMAGE = "confluentinc/cp-kafka:7.9.1"
# Newer testcontainers releases moved the module under `community` and deprecated the
# old path (importing it warns); older releases only have the old path.
_TESTCONTAINERS_KAFKA = ("testcontainers.community.kafka", "testcontainers.kafka")


@contextlib.contextmanager
def kafka_bootstrap_servers() -> Iterator[str]:
    """Yield bootstrap servers of a running broker; see the module docstring."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
    elif _docker_available() and (module := _testcontainers_kafka()) is not None:
        with _container(module) as servers:
            yield servers
    else:
        with _local_broker() as servers:
            yield servers


def _docker_available() -> bool:
    # The docker CLI may exist with no engine behind it; only `docker info` tells.
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "info"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _testcontainers_kafka() -> ModuleType | None:
    # Imported lazily: testcontainers is optional and only worth loading with Docker.
    for name in _TESTCONTAINERS_KAFKA:
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ModuleNotFoundError:  # a parent package is missing
            continue
    return None


@contextlib.contextmanager
def _container(module: ModuleType) -> Iterator[str]:
    container = (
        module.KafkaContainer(CONTAINER_IMAGE)
        .with_kraft()
        # Match scripts/kafka.sh: topics must be created explicitly.
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        yield str(container.get_bootstrap_server())


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
