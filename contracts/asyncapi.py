"""The AsyncAPI 3.0 document of the whole system, rendered from the catalogue (issue 12).

One document, not one per application: every topic of ``ALL_TOPICS`` is a channel with the
messages it carries; every application (the five services, the marketplace integration, the
operators' tools) has a ``send`` operation per topic it writes, with the messages it writes
there, and a ``receive`` operation per topic it reads. Who writes and reads what is the
catalogue's (``contracts.catalogue``); this module only says it in AsyncAPI's terms.

The message schemas are the envelope schemas of :func:`contracts.catalogue.message_schemas`,
generated together so the models they share (``Money``...) are one component each. The
official parser must accept the result with no error (``tests/unit/test_asyncapi_valid.py``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from contracts import MESSAGE_TYPES
from contracts.catalogue import (
    CONTRACTS_VERSION,
    DEAD_LETTER_HEADERS,
    OPERATOR,
    PRODUCERS,
    REJECTIONS,
    consumers_of,
    key_field,
    messages_on,
    pin_envelope,
    producers_of,
    schema_name,
)
from contracts.envelope import Command, Envelope, Message
from contracts.rejections import CommandRejected
from contracts.topics import (
    ALL_TOPICS,
    DEAD_LETTER,
    MAC_HEADER_PREFIX,
    MESSAGE_TYPE_HEADER,
    REDRIVE_COUNT,
    SIGNER_HEADER,
    TRACEPARENT_HEADER,
    Topic,
)

JsonDict = dict[str, Any]

ASYNCAPI_VERSION = "3.0.0"
# The only version of the Kafka bindings whose message and operation bindings AsyncAPI 3.0 accepts.
KAFKA_BINDING_VERSION = "0.5.0"
SERVER = "kafka"
SECURITY_SCHEME = "scramSha512"
# The local stack's broker (KafkaSettings' default); a deployment names its own.
DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
DEAD_LETTER_MESSAGE = "DeadLetter"

# Who each application is, for the tags that group the operations.
APPLICATIONS: dict[str, str] = {
    "account": "The account service: registration, verification, security, funding sources, the wallet.",
    "escrow": "The escrow service: holds, freezes, releases and returns of the buyer's funds.",
    "marketplace": "A marketplace's integration: its checkout and the app gateway that sends the holder's commands.",
    "notification": "The notification service: the inbox, email delivery and its outcomes.",
    OPERATOR: "The platform's staff and their tools: reviews, restrictions, dispute decisions, re-drives.",
    "payment": "The payment service: quotes, captures and refunds over the funding network.",
    "saga": "The order saga: drives each order from checkout to release, refund or dispute.",
}

_SCHEMA_REF = "#/components/schemas/{model}"


# --- names -----------------------------------------------------------------------------------


def channel_id(topic: Topic) -> str:
    """``order-commands`` for ``tradeguard.order.commands``: the channel's key in the document."""
    return topic.name.removeprefix("tradeguard.").replace(".", "-")


def _message_ids(topic: Topic) -> list[str]:
    if topic == DEAD_LETTER:
        return [DEAD_LETTER_MESSAGE]
    return [schema_name(m) for m in messages_on(topic)]


def _sent_by(service: str, topic: Topic) -> list[str]:
    """The messages ``service`` writes on ``topic`` (its own rejections only on its own events topic)."""
    if topic == DEAD_LETTER:
        return [DEAD_LETTER_MESSAGE]
    return [
        schema_name(m)
        for m in messages_on(topic)
        if (REJECTIONS.get(service) == topic if m is CommandRejected else service in PRODUCERS[m.message_type])
    ]


def _readers(topic: Topic) -> tuple[str, ...]:
    # Nobody consumes the dead letters automatically: the operators inspect, fix and re-drive them.
    return consumers_of(topic) or (OPERATOR,)


# --- schemas ---------------------------------------------------------------------------------


def component_schemas() -> JsonDict:
    """Every envelope schema plus the models they share, referencing each other in components."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (Envelope[m], "validation")  # type: ignore[valid-type]
        for m in MESSAGE_TYPES
    ]
    refs, defs = models_json_schema(models, ref_template=_SCHEMA_REF)
    schemas: JsonDict = dict(defs["$defs"])
    for message, model in zip(MESSAGE_TYPES, models, strict=True):
        envelope_def = refs[model]["$ref"].rsplit("/", 1)[-1]
        schemas[schema_name(message)] = pin_envelope(schemas.pop(envelope_def), message)
    return schemas


def _header(description: str, **rules: Any) -> JsonDict:
    return {"type": "string", "description": description, **rules}


def _message_headers(message: type[Message]) -> JsonDict:
    properties = {
        MESSAGE_TYPE_HEADER: _header(
            "The payload type, so consumers can skip what they do not handle unparsed.", const=message.message_type
        ),
        REDRIVE_COUNT: _header(
            "Set on a record an operator re-drove from the dead letters: how many times.", pattern="^[0-9]+$"
        ),
    }
    properties[SIGNER_HEADER] = _header("The principal that made the record (X9).", pattern="^[a-z]+$")
    properties[TRACEPARENT_HEADER] = _header("W3C trace context of the span that sent it (X5), when traced.")
    return {
        "type": "object",
        "description": (
            "Kafka record headers. Every record is signed by its producer: `tg-signer` names it and one "
            "`tg-mac-<consumer>` per consumer of the topic carries `<key id>:<HMAC-SHA256, base64url>` "
            "made with the key only that producer and that consumer hold (docs/security.md)."
        ),
        "properties": properties,
        "patternProperties": {f"^{MAC_HEADER_PREFIX}[a-z]+$": _header("`<key id>:<MAC>` for that consumer.")},
        "required": [MESSAGE_TYPE_HEADER, SIGNER_HEADER],
    }


def _summary(message: type[Message]) -> JsonDict:
    doc = message.__doc__  # not inherited: a payload without a docstring has no summary
    return {"summary": doc.strip().splitlines()[0]} if doc else {}


def _key_binding(description: str) -> JsonDict:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": KAFKA_BINDING_VERSION}}


def _message_component(message: type[Message]) -> JsonDict:
    kind = "command" if issubclass(message, Command) else "event"
    return {
        "name": message.message_type,
        "title": f"{message.message_type} v{message.version}",
        **_summary(message),
        "contentType": "application/json",
        "tags": [{"name": kind}],
        "headers": _message_headers(message),
        "payload": {"$ref": _SCHEMA_REF.format(model=schema_name(message))},
        "bindings": _key_binding(f"The payload's {key_field(message)}."),
    }


def _dead_letter_message() -> JsonDict:
    headers = {name: _header(text) for name, text in DEAD_LETTER_HEADERS.items()}
    return {
        "name": DEAD_LETTER_MESSAGE,
        "title": "Dead-lettered record",
        "summary": "A record no consumer could process: its original key, bytes and headers, unchanged.",
        "description": "The original headers (`tg-type`, the signature) stay, so a re-drive is believed "
        "as the original was; the `tg-dead-letter-*` headers say why and where it was given up on.",
        "contentType": "application/octet-stream",
        "headers": {"type": "object", "properties": headers, "required": list(DEAD_LETTER_HEADERS)},
        "payload": {"description": "The original record value, byte for byte (often not valid JSON)."},
        "bindings": _key_binding("The key of the original record."),
    }


# --- channels and operations -----------------------------------------------------------------


def _channel(topic: Topic) -> JsonDict:
    return {
        "address": topic.name,
        "title": topic.name,
        "description": f"{topic.description} Record key: {topic.key.value}.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in _message_ids(topic)},
        "servers": [{"$ref": f"#/servers/{SERVER}"}],
        "bindings": {"kafka": {"partitions": topic.partitions, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _channel_refs(topic: Topic, names: list[str]) -> list[JsonDict]:
    # AsyncAPI 3.0: an operation's messages are its channel's, referenced there.
    return [{"$ref": f"#/channels/{channel_id(topic)}/messages/{name}"} for name in names]


def _send(service: str, topic: Topic) -> JsonDict:
    names = _sent_by(service, topic)
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel_id(topic)}"},
        "summary": f"{service} writes {', '.join(names)} on {topic.name}.",
        "tags": [{"name": service}],
        "messages": _channel_refs(topic, names),
    }


def _group(reader: str) -> JsonDict:
    """The consumer group ``reader`` reads in: a service's is its name; the broker's ACLs let any
    principal join only groups whose names start with its own."""
    rule = {"const": reader} if reader in REJECTIONS else {"pattern": f"^{reader}"}
    return {"type": "string", "description": "The broker lets a principal join only groups named after it.", **rule}


def _receive(reader: str, topic: Topic) -> JsonDict:
    if topic == DEAD_LETTER:
        summary = f"{reader} inspects, fixes and re-drives the records on {topic.name} (`tradeguard dead-letters`)."
    else:
        summary = (
            f"{reader} reads {topic.name}, skipping by the `{MESSAGE_TYPE_HEADER}` header what it does not handle."
        )
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel_id(topic)}"},
        "summary": summary,
        "tags": [{"name": reader}],
        "messages": _channel_refs(topic, _message_ids(topic)),
        "bindings": {"kafka": {"groupId": _group(reader), "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operations() -> JsonDict:
    operations: JsonDict = {}
    for topic in ALL_TOPICS:
        for service in producers_of(topic):
            operations[f"{service}.send.{channel_id(topic)}"] = _send(service, topic)
        for service in _readers(topic):
            operations[f"{service}.receive.{channel_id(topic)}"] = _receive(service, topic)
    return operations


# --- the document ----------------------------------------------------------------------------


def _server() -> JsonDict:
    return {
        "host": DEFAULT_BOOTSTRAP,
        "protocol": "kafka",
        "description": "The Kafka cluster, as the local stack runs it (`make run`; a deployment names its own "
        "bootstrap servers): SASL/SCRAM-SHA-512 over SASL_PLAINTEXT, no TLS. Each principal has its own "
        "credentials and may write and read only what contracts/TOPICS.md lists.",
        "security": [{"$ref": f"#/components/securitySchemes/{SECURITY_SCHEME}"}],
    }


def asyncapi() -> JsonDict:
    """The AsyncAPI 3.0 document of the whole system: every topic, its messages, who writes and reads it."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:tradeguard:contracts",
        "info": {
            "title": "TradeGuard",
            "version": CONTRACTS_VERSION,
            "description": "Payment and escrow for marketplaces: the Kafka topics and the messages on them. "
            "Every JSON message is an envelope with the payload under `payload`; every record is signed "
            "by the principal that made it. Operations are grouped by application (their tags).",
            "tags": [{"name": name, "description": text} for name, text in sorted(APPLICATIONS.items())],
        },
        "defaultContentType": "application/json",
        "servers": {SERVER: _server()},
        "channels": {channel_id(topic): _channel(topic) for topic in ALL_TOPICS},
        "operations": _operations(),
        "components": {
            "messages": {schema_name(m): _message_component(m) for m in MESSAGE_TYPES}
            | {DEAD_LETTER_MESSAGE: _dead_letter_message()},
            "schemas": component_schemas(),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": SECURITY_SCHEME,
                    "description": "SASL/SCRAM-SHA-512: one user per principal (the five services, marketplace, "
                    "operator), credentials from the set-up (docs/security.md).",
                },
            },
        },
    }
