"""X1 / issue 12: contracts/asyncapi.json is an AsyncAPI 3.0 document AsyncAPI's own tools accept.

The official parser (@asyncapi/parser, pinned in tools/asyncapi/package.json) runs on the committed
document and must report no error; it runs on a broken copy too, so the check is known to bite.
The rest checks, without Node, that the document says what the catalogue says.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contracts import ALL_TOPICS, MESSAGE_TYPES
from contracts.asyncapi import APPLICATIONS, DEFAULT_BOOTSTRAP, KAFKA_BINDING_VERSION, asyncapi, channel_id
from contracts.catalogue import (
    DEAD_LETTER_HEADERS,
    PRODUCERS,
    broker_principals,
    consumers_of,
    producers_of,
    schema_name,
)
from contracts.topics import DEAD_LETTER
from shared.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "asyncapi"
DOCUMENT = ROOT / "contracts" / "asyncapi.json"
NPM_CI_TIMEOUT = 300
PARSE_TIMEOUT = 120
_document = functools.cache(asyncapi)  # rendering it takes a while; these tests only read it


# --- the official parser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the pinned parser installed under tools/asyncapi (npm ci once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the official AsyncAPI parser (tools/asyncapi)")
    if not (TOOLS / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        installed = subprocess.run(
            [npm, "ci", "--prefix", str(TOOLS), "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci --prefix tools/asyncapi failed:\n{installed.stderr}"
    return node


def _validate(node: str, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(TOOLS / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_x1_the_official_parser_accepts_the_asyncapi_document(node: str) -> None:
    result = _validate(node, DOCUMENT)
    assert result.returncode == 0, f"@asyncapi/parser refuses contracts/asyncapi.json:\n{result.stdout}{result.stderr}"
    assert "valid AsyncAPI 3.0.0, 0 errors" in result.stdout


@pytest.mark.slow
@pytest.mark.long
def test_x1_the_parser_check_fails_on_a_broken_document(node: str, tmp_path: Path) -> None:
    broken = copy.deepcopy(_document())
    operation = broken["operations"]["saga.send.payment-commands"]
    # An operation may only name its own channel's messages; and 0.9.0 is no Kafka binding version.
    operation["messages"] = [{"$ref": "#/components/messages/Checkout.v1"}]
    broken["channels"]["order-commands"]["bindings"]["kafka"]["bindingVersion"] = "0.9.0"
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    result = _validate(node, path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "asyncapi3-operation-messages-from-referred-channel" in result.stdout
    assert "bindingVersion" in result.stdout
    assert "2 error(s)" in result.stdout


# --- what the document says --------------------------------------------------------------------


def _operations(action: str) -> dict[str, Any]:
    return {name: op for name, op in _document()["operations"].items() if op["action"] == action}


def _messages_of(operation: dict[str, Any]) -> set[str]:
    return {ref["$ref"].rsplit("/", 1)[-1] for ref in operation["messages"]}


def test_x1_asyncapi_is_3_0_with_a_secured_kafka_server() -> None:
    document = _document()
    assert document["asyncapi"] == "3.0.0"
    server = document["servers"]["kafka"]
    assert server["protocol"] in ("kafka", "kafka-secure")
    assert server["host"] == DEFAULT_BOOTSTRAP == KafkaSettings.model_fields["bootstrap_servers"].default
    (scheme,) = server["security"]
    assert scheme == {"$ref": "#/components/securitySchemes/scramSha512"}
    assert document["components"]["securitySchemes"]["scramSha512"]["type"] == "scramSha512"


def test_x1_every_topic_is_a_channel_with_its_partitions_and_messages() -> None:
    channels = _document()["channels"]
    assert len(channels) == len(ALL_TOPICS)
    for topic in ALL_TOPICS:
        channel = channels[channel_id(topic)]
        assert channel["address"] == topic.name
        assert channel["bindings"]["kafka"] == {"partitions": topic.partitions, "bindingVersion": KAFKA_BINDING_VERSION}
    on_channels = {name for channel in channels.values() for name in channel["messages"]}
    assert on_channels == {schema_name(m) for m in MESSAGE_TYPES} | {"DeadLetter"}


def test_x1_every_message_has_its_key_schema_and_type_header() -> None:
    messages = _document()["components"]["messages"]
    for message in MESSAGE_TYPES:
        component = messages[schema_name(message)]
        assert component["payload"] == {"$ref": f"#/components/schemas/{schema_name(message)}"}
        assert component["bindings"]["kafka"]["key"]["type"] == "string"
        assert component["headers"]["properties"]["tg-type"]["const"] == message.message_type
    dead_letter = messages["DeadLetter"]["headers"]
    assert set(dead_letter["required"]) == set(DEAD_LETTER_HEADERS) == set(dead_letter["properties"])


def test_x1_send_operations_are_the_catalogues_producers() -> None:
    sent: dict[str, set[str]] = {}
    for operation in _operations("send").values():
        (service,) = (tag["name"] for tag in operation["tags"])
        channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        assert service in producers_of(next(t for t in ALL_TOPICS if channel_id(t) == channel))
        for name in _messages_of(operation):
            sent.setdefault(name, set()).add(service)
    for message in MESSAGE_TYPES:
        assert sent[schema_name(message)] == set(PRODUCERS[message.message_type]), message.message_type
    assert len(_operations("send")) == sum(len(producers_of(t)) for t in ALL_TOPICS)


def test_x1_receive_operations_are_the_catalogues_consumers() -> None:
    received = {(op["tags"][0]["name"], op["channel"]["$ref"]) for op in _operations("receive").values()}
    expected = {(c, f"#/channels/{channel_id(t)}") for t in ALL_TOPICS for c in consumers_of(t)}
    # Nobody consumes the dead letters automatically; the operators' tools read them.
    assert received == expected | {("operator", f"#/channels/{channel_id(DEAD_LETTER)}")}
    for operation in _operations("receive").values():
        channel = _document()["channels"][operation["channel"]["$ref"].rsplit("/", 1)[-1]]
        assert _messages_of(operation) == set(channel["messages"]), "a reader gets every message on its topic"


def test_x1_every_application_is_a_broker_principal_with_its_tag() -> None:
    assert set(APPLICATIONS) == set(broker_principals())
    tagged = {tag["name"] for op in _document()["operations"].values() for tag in op["tags"]}
    assert tagged == set(APPLICATIONS) == {tag["name"] for tag in _document()["info"]["tags"]}
