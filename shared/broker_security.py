"""Who may talk to the broker, and what each may do there (SPEC X9, issue 18).

The broker (``scripts/kafka.sh``) takes SASL/SCRAM-SHA-512 only and runs the KRaft
``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a client without
credentials cannot connect, and a connected principal may do only what an ACL allows.

**Principals** (:data:`BROKER_PRINCIPALS`): one per service, the marketplace integration, and
``operator`` for the operators' tools (the CLI, the scenario runner's and the tests' watchers,
the benchmark's monitor). ``admin``, the broker's super user, is used only by the set-up
(:func:`provision`) and by tests that build their own topics.

**Credentials** live in one folder per broker (``<broker data>/credentials``, named to clients
by ``KAFKA_CREDENTIALS_DIR``; mode 0700, files 0600): ``<principal>.json`` holding
``{"username", "password"}``. :func:`provision` makes the missing ones and (re)registers every
one with the broker, so it is idempotent and safe to run on every start.

**ACLs** come from the topic catalogue (:func:`acl_bindings`, shown in ``contracts/TOPICS.md``):

* a principal may WRITE a topic when the catalogue names it a producer of a message type on it
  (its own events topic for a service's ``CommandRejected``; the dead-letter topic for every
  service that consumes);
* it may READ a topic the catalogue says it consumes, and its consumer group (prefixed by its
  name, so several instances and test groups share the rule);
* ``operator`` may READ every topic (timelines, dead letters) and WRITE every topic (re-driving
  a dead letter puts the original record back where it came from). Writing a topic is not
  enough to be believed: the record's signature (``shared.signing``) must be its producer's.

Nothing here logs or prints a password.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, ClassVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import CreateAclsRequest_v1, CreateAclsResponse_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from contracts.catalogue import OPERATOR, REJECTIONS, broker_principals, readers_of, writers_of
from contracts.topics import ALL_TOPICS, Topic

CREDENTIALS_DIR_VARIABLE = "KAFKA_CREDENTIALS_DIR"
"""Names the folder of the broker's credentials; every client process needs it."""

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
SCRAM_ITERATIONS = 4096  # Kafka's least for SCRAM-SHA-512
TOPIC_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Topics accept records well past the size a service reads (``shared.consumer.MAX_RECORD_BYTES``),
so an oversized record reaches a consumer, gets its verdict and is dead-lettered whole."""

BROKER_PRINCIPALS: tuple[str, ...] = broker_principals()
"""Every principal that connects, besides the set-up's ``admin``."""


SERVICES: tuple[str, ...] = tuple(sorted(REJECTIONS))


class BrokerSecurityError(Exception):
    """This process cannot authenticate, or the broker refused the set-up."""


# ---------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    """One principal's SCRAM username and password."""

    username: str
    password: str = field(repr=False)

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client of this principal takes."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }


DEV_CREDENTIALS_DIR = Path(__file__).resolve().parents[1] / ".cache" / "kafka" / "data" / "credentials"
"""Those of `make run`'s broker (scripts/kafka.sh's default data folder), as the default
bootstrap servers are its address: the CLI finds the running stack with no set-up."""


def credentials_dir(directory: Path | str | None = None) -> Path:
    """``directory``, else the folder ``KAFKA_CREDENTIALS_DIR`` names, else `make run`'s."""
    chosen = directory or os.environ.get(CREDENTIALS_DIR_VARIABLE)
    if not chosen and DEV_CREDENTIALS_DIR.is_dir():
        return DEV_CREDENTIALS_DIR
    if not chosen:
        msg = (
            f"{CREDENTIALS_DIR_VARIABLE} is not set: the broker takes authenticated clients only, so this process "
            "needs the broker's credentials folder (scripts/kafka.sh makes it: <KAFKA_DATA_DIR>/credentials)"
        )
        raise BrokerSecurityError(msg)
    return Path(chosen)


def use_broker_credentials(kafka_data_dir: Path) -> Path:
    """Point this process (and the processes it starts) at the credentials of the broker that
    ``scripts/kafka.sh`` runs in ``kafka_data_dir``, unless ``KAFKA_CREDENTIALS_DIR`` names others."""
    chosen = os.environ.setdefault(CREDENTIALS_DIR_VARIABLE, str(kafka_data_dir / "credentials"))
    return Path(chosen)


def read_credentials(principal: str, directory: Path | str | None = None) -> Credentials:
    """``principal``'s credentials from the broker's credentials folder."""
    path = credentials_dir(directory) / f"{principal}.json"
    try:
        data = json.loads(path.read_text())
        return Credentials(str(data["username"]), str(data["password"]))
    except FileNotFoundError:
        msg = f"no credentials of {principal!r} at {path}: scripts/kafka.sh start makes them for every principal"
        raise BrokerSecurityError(msg) from None
    except (ValueError, KeyError, TypeError):
        raise BrokerSecurityError(f"{path} is not a credentials file ({{'username', 'password'}})") from None


def client_options(principal: str, directory: Path | str | None = None) -> dict[str, Any]:
    """What an aiokafka producer, consumer or admin client of ``principal`` is given to connect."""
    return read_credentials(principal, directory).client_options()


def _ensure_all_credentials(directory: Path) -> list[Credentials]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return [_ensure_credentials(directory, principal) for principal in BROKER_PRINCIPALS]


def usernames_of(principal: str) -> tuple[str, str]:
    """The two SCRAM users a principal alternates between, so that during a rotation both the
    old password and the new one are valid (SCRAM keeps one password per user)."""
    return principal, f"{principal}-2"


def _write_credentials(path: Path, credentials: Credentials, *, exclusive: bool) -> None:
    """Mode 0600, whole or not at all; ``exclusive``: only if no file is there yet (two set-ups
    at once: the first file wins)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"username": credentials.username, "password": credentials.password}, out)
    try:
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        else:
            temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _ensure_credentials(directory: Path, principal: str) -> Credentials:
    path = directory / f"{principal}.json"
    if not path.exists():
        _write_credentials(path, Credentials(principal, secrets.token_urlsafe(32)), exclusive=True)
    return read_credentials(principal, directory)


# ---------------------------------------------------------------------- ACLs from the catalogue


class ResourceType(IntEnum):  # Kafka's codes
    TOPIC = 2
    GROUP = 3


class Operation(IntEnum):
    READ = 3
    WRITE = 4
    DESCRIBE = 8


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


ALLOW = 3


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One permission: ``principal`` may do ``operation`` on the resource."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern: PatternType
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern is PatternType.PREFIXED else ""
        return f"{self.principal}: {self.operation.name} {self.resource_type.name.lower()} {self.resource_name}{star}"


TOPIC_PREFIX = "tradeguard."


def acl_bindings(topics: Iterable[Topic] = ALL_TOPICS) -> list[AclBinding]:
    """Every ACL the broker holds, from the catalogue. The operators' rights are one prefixed
    rule over every ``tradeguard.`` topic, so a topic made later (a test's, a new one) is theirs
    to inspect and re-drive to as well."""
    bindings: set[AclBinding] = set()
    for topic in topics:
        for principals, operation in ((writers_of(topic), Operation.WRITE), (readers_of(topic), Operation.READ)):
            for principal in (p for p in principals if p != OPERATOR):  # theirs is the prefixed rule below
                for op in (operation, Operation.DESCRIBE):
                    bindings.add(AclBinding(principal, ResourceType.TOPIC, topic.name, PatternType.LITERAL, op))
    for operation in (Operation.READ, Operation.WRITE, Operation.DESCRIBE):
        bindings.add(AclBinding(OPERATOR, ResourceType.TOPIC, TOPIC_PREFIX, PatternType.PREFIXED, operation))
    for principal in BROKER_PRINCIPALS:  # its consumer group(s): a service's group is its name
        bindings.add(AclBinding(principal, ResourceType.GROUP, principal, PatternType.PREFIXED, Operation.READ))
    return sorted(bindings)


def broker_acls() -> list[AclBinding]:
    """:func:`acl_bindings` for each of the SCRAM users of each principal (:func:`usernames_of`)."""
    return sorted(
        dataclasses.replace(binding, principal=username)
        for binding in acl_bindings()
        for username in usernames_of(binding.principal)
    )


# ---------------------------------------------------------------------- the set-up


class _AlterUserScramCredentialsResponse(Response):  # type: ignore[misc]  # aiokafka ships no types
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsStruct(RequestStruct):  # type: ignore[misc]  # aiokafka ships no types
    # KIP-554; aiokafka has no client for it, so its wire format is written here (v0, flexible).
    FLEXIBLE_VERSION: ClassVar[bool] = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentials(Request[_AlterUserScramCredentialsStruct]):  # type: ignore[misc]  # aiokafka ships no types
    API_KEY = 51

    def __init__(self, credentials: Sequence[Credentials], deletions: Sequence[str] = ()) -> None:
        self._credentials = credentials
        self._deletions = deletions

    def build(self, request_struct_class: type[_AlterUserScramCredentialsStruct]) -> _AlterUserScramCredentialsStruct:
        upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for each in self._credentials:
            salt = secrets.token_bytes(32)
            # The broker keeps only what SCRAM derives from this (RFC 5802's Hi(): PBKDF2).
            salted = hashlib.pbkdf2_hmac("sha512", each.password.encode(), salt, SCRAM_ITERATIONS)
            upsertions.append((each.username, 2, SCRAM_ITERATIONS, salt, salted, {}))  # 2: SCRAM-SHA-512
        deletions: list[tuple[str, int, dict[int, bytes]]] = [(username, 2, {}) for username in self._deletions]
        return request_struct_class(deletions, upsertions, {})


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka ships no types
    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._bindings = bindings

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [
                (b.resource_type, b.resource_name, b.pattern, f"User:{b.principal}", "*", b.operation, ALLOW)
                for b in self._bindings
            ]
        )


def _errors(pairs: Iterable[tuple[str, int, str | None]]) -> list[str]:
    return [f"{name}: error {code} {message or ''}".strip() for name, code, message in pairs if code != 0]


async def _alter_scram(
    admin: AIOKafkaAdminClient, upserts: Sequence[Credentials], deletions: Sequence[str] = ()
) -> list[str]:
    """Register (or replace) these users' SCRAM credentials and delete those; the failures."""
    response = await admin._send_request(_AlterUserScramCredentials(upserts, deletions))
    assert isinstance(response, _AlterUserScramCredentialsResponse)
    return _errors((user, code, message) for user, code, message, _ in response.results)


async def _as_admin(bootstrap_servers: str, directory: Path) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(ADMIN, directory))
    await admin.start()
    return admin


async def rotate_password(bootstrap_servers: str, directory: Path, principal: str) -> str:
    """Give ``principal`` a new password under its other SCRAM user and point its credentials file
    at it; returns that user. The old user's password stays valid (connections made with it,
    and processes that have not re-read the file, keep working) until :func:`retire_password`."""
    current = read_credentials(principal, directory)
    first, second = usernames_of(principal)
    fresh = Credentials(second if current.username == first else first, secrets.token_urlsafe(32))
    admin = await _as_admin(bootstrap_servers, directory)
    try:
        failures = await _alter_scram(admin, [fresh])
    finally:
        await admin.close()
    if failures:
        raise BrokerSecurityError(f"the broker refused {principal}'s new password: " + "; ".join(failures))
    _write_credentials(directory / f"{principal}.json", fresh, exclusive=False)
    return fresh.username


async def retire_password(bootstrap_servers: str, directory: Path, principal: str) -> str:
    """Delete the SCRAM user ``principal``'s credentials file no longer names (after its processes
    restarted on the new one); returns it. New connections with the old password are refused."""
    current = read_credentials(principal, directory).username
    old = next(name for name in usernames_of(principal) if name != current)
    admin = await _as_admin(bootstrap_servers, directory)
    try:
        failures = await _alter_scram(admin, [], [old])
    finally:
        await admin.close()
    if failures:
        raise BrokerSecurityError(f"the broker could not retire {old}: " + "; ".join(failures))
    return old


async def provision(bootstrap_servers: str, directory: Path) -> list[str]:
    """Credentials for every principal, the catalogue's topics and its ACLs; idempotent.
    Returns the topics it created."""
    everyone = _ensure_all_credentials(directory)
    admin = await _as_admin(bootstrap_servers, directory)
    try:
        failures = await _alter_scram(admin, everyone)
        # aiokafka's admin client has no call for this request; its request path does.
        acls = await admin._send_request(_CreateAcls(broker_acls()))
        assert isinstance(acls, CreateAclsResponse_v1)
        failures += _errors(("ACL", code, message) for code, message in acls.creation_responses)
        if failures:
            raise BrokerSecurityError("the broker refused the set-up: " + "; ".join(failures))
        created = await create_topics(admin, ALL_TOPICS)
        await configure_topics(admin, ALL_TOPICS)
        return created
    finally:
        await admin.close()


def topic_config(topic: Topic) -> dict[str, str]:
    """A topic's settings. Command topics are stamped by the broker on arrival (LogAppendTime),
    so a consumer can tell how long after it was signed a command reached the broker: the
    replay window (``shared.consumer.REPLAY_WINDOW``). Retention and segments are the topic's
    own (``contracts.topics.Retention``, issue 19)."""
    config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES), **topic.retention.configs()}
    if topic.name.endswith(".commands"):
        config["message.timestamp.type"] = "LogAppendTime"
    return config


async def configure_topics(admin: AIOKafkaAdminClient, topics: Iterable[Topic]) -> None:
    """Give existing topics their settings (a broker made before a setting was added). The
    classic AlterConfigs replaces a topic's whole set of overrides with :func:`topic_config`, so
    running it again changes nothing and a setting dropped from the catalogue goes too."""
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=topic_config(t)) for t in topics]
    )
    failures = [
        f"{name}: error {code} {message or ''}".strip()
        for response in responses
        for code, message, _type, name in response.resources
        if code != 0
    ]
    if failures:
        raise BrokerSecurityError("the broker refused the topic settings: " + "; ".join(failures))


async def create_topics(admin: AIOKafkaAdminClient, topics: Iterable[Topic]) -> list[str]:
    """Create any missing topics with their declared partition counts; returns those created."""
    existing = set(await admin.list_topics())
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    response = await admin.create_topics(
        [
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=1, topic_configs=topic_config(t))
            for t in missing
        ]
    )
    for name, code, *_ in response.topic_errors:
        # Another process may have created it between our list and create: that is fine.
        if code not in (0, TopicAlreadyExistsError.errno):
            raise BrokerSecurityError(f"could not create topic {name}: Kafka error code {code}")
    return [t.name for t in missing]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shared.broker_security provision|acls``."""
    parser = argparse.ArgumentParser(prog="python -m shared.broker_security", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    provisioning = commands.add_parser("provision", help="credentials, topics and ACLs (what kafka.sh start runs)")
    provisioning.add_argument("--bootstrap-servers", required=True)
    provisioning.add_argument("--credentials", type=Path, required=True, help="the broker's credentials folder")
    commands.add_parser("acls", help="print the ACLs the catalogue gives each principal")
    for name, what in (("rotate", "a new password, the old one valid until retired"), ("retire", "the old password")):
        rotation = commands.add_parser(name, help=what)
        rotation.add_argument("principal", choices=BROKER_PRINCIPALS)
        rotation.add_argument("--bootstrap-servers", required=True)
        rotation.add_argument("--credentials", type=Path, required=True, help="the broker's credentials folder")
    args = parser.parse_args(argv)
    if args.command == "acls":
        sys.stdout.write("".join(f"{binding}\n" for binding in acl_bindings()))
        return 0
    try:
        if args.command == "rotate":
            user = asyncio.run(rotate_password(args.bootstrap_servers, args.credentials, args.principal))
            sys.stdout.write(f"{args.principal}: new password for user {user}; restart its processes, then retire\n")
            return 0
        if args.command == "retire":
            user = asyncio.run(retire_password(args.bootstrap_servers, args.credentials, args.principal))
            sys.stdout.write(f"{args.principal}: user {user} retired\n")
            return 0
        created = asyncio.run(provision(args.bootstrap_servers, args.credentials))
    except (BrokerSecurityError, OSError) as error:
        sys.stderr.write(f"broker {args.command} failed: {error}\n")
        return 1
    sys.stdout.write(
        f"broker secured: {len(BROKER_PRINCIPALS)} principals, {len(broker_acls())} ACLs"
        + (f", {len(created)} topics created" if created else "")
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
