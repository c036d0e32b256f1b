"""The one envelope every message travels in, and the base classes of every payload.

Wire format: a JSON object with the envelope fields and the payload nested under
``payload``. The envelope says what the message is (``type``, ``version``), where
it comes from (``source``, ``causation_id``), which business flow it belongs to
(``correlation_id``) and how a repeat is recognised (``idempotency_key``).

Every model is strict (issue 22): on the wire a number sent as a string, a float or a bool
for an integer, a number for a string, an unknown enum value, a naive datetime or an unknown
field is invalid. In Python, fields take their own types (ints, enum members, UUIDs, aware
datetimes); UUID and enum fields also take the string strict JSON would accept for them
(:class:`AcceptJsonForm`), so validating a payload dict read from JSON gives the same
verdict as validating the JSON itself. Decode records with :func:`contracts.decode_message`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from contracts.topics import Topic

P = TypeVar("P")


class AcceptJsonForm:
    """Annotation: in Python, also accept the string strict JSON accepts for the type; JSON stays strict.

    For a UUID field: a :class:`uuid.UUID` or its string form; for an enum field: a member or its
    value; for a datetime or date field: the object or its ISO 8601 form.
    Nothing else (no bytes, no numbers). The error names what was expected, never the input.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema = handler(source)
        target: Any = handler.resolve_ref_schema(schema)
        lax: Any = {k: v for k, v in target.items() if k not in ("ref", "metadata", "serialization")}
        lax["strict"] = False
        if target["type"] == "enum":
            expected = ", ".join(repr(member.value) for member in target["members"])
            error_type, message = "enum_member", f"Input should be one of {expected}"
        elif target["type"] == "uuid":
            error_type, message = "uuid_value", "Input should be a UUID or its string form"
        elif target["type"] == "datetime":
            error_type, message = "datetime_value", "Input should be an aware datetime or its ISO 8601 form"
        elif target["type"] == "date":
            error_type, message = "date_value", "Input should be a date or its ISO 8601 form (YYYY-MM-DD)"
        else:
            msg = f"AcceptJsonForm supports UUID, enum, datetime and date fields, not {target['type']}"
            raise TypeError(msg)
        python = core_schema.union_schema(
            [schema, core_schema.chain_schema([core_schema.str_schema(strict=True), lax])],
            mode="left_to_right",
            custom_error_type=error_type,
            custom_error_message=message,
        )
        return core_schema.json_or_python_schema(json_schema=schema, python_schema=python)


WireUUID = Annotated[uuid.UUID, AcceptJsonForm()]
"""A UUID: a string on the wire; a UUID or its string form in Python."""
WireDatetime = Annotated[AwareDatetime, AcceptJsonForm()]
"""A time with its UTC offset: ISO 8601 on the wire; a datetime or its ISO form in Python."""
WireDate = Annotated[dt.date, AcceptJsonForm()]
"""A calendar date: YYYY-MM-DD on the wire; a date or that form in Python."""

STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)
"""Every contract model: immutable, no unknown fields, no coercion."""


class Message(BaseModel):
    """A command or event payload: immutable, strict about unknown fields and types."""

    model_config = STRICT

    message_type: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[Topic]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.message_type = cls.__name__

    @property
    def partition_key(self) -> str:
        """The record key: keeps every message about one subject on one partition."""
        return str(getattr(self, self.topic.key.value))


class Command(Message):
    """Asks one service to do something; named in the imperative (``CapturePayment``)."""


class Event(Message):
    """Says that something happened; named in the past tense (``PaymentCaptured``)."""


def new_message_id() -> uuid.UUID:
    return uuid.uuid4()


def utc_now() -> datetime:
    return datetime.now(UTC)


class ActorRole(StrEnum):
    """The side of the order the marketplace acts for."""

    BUYER = "buyer"
    SELLER = "seller"


class Actor(BaseModel):
    """The person the marketplace authenticated and sends a command for (X9, the buyer's consent).

    The marketplace's principal vouches for it with its signature; a command that moves a buyer's
    money or gives up their protection is refused unless its actor is that buyer
    (``contracts.catalogue.CONSENT``)."""

    model_config = STRICT

    account_id: str = Field(min_length=1, max_length=100, description="Whom the marketplace authenticated.")
    role: Annotated[ActorRole, AcceptJsonForm()] = Field(description="Which side of the order they are.")
    session_id: str | None = Field(
        default=None, max_length=200, description="The marketplace's session or request id, for the audit trail."
    )


class Envelope(BaseModel, Generic[P]):
    """Metadata shared by every message, around a typed payload."""

    model_config = STRICT

    message_id: WireUUID = Field(description="Unique per message; consumers deduplicate on it.")
    type: str = Field(description="Payload type name.", examples=["CapturePayment"])
    version: int = Field(ge=1, description="Payload schema version.", examples=[1])
    occurred_at: AwareDatetime = Field(description="When the message was created, with its UTC offset.")
    correlation_id: str = Field(
        min_length=1,
        max_length=200,
        description="The business flow this belongs to; an order's messages share it.",
        examples=["order-7f3a"],
    )
    causation_id: WireUUID | None = Field(default=None, description="message_id of the message that caused this one.")
    idempotency_key: str = Field(
        min_length=1,
        max_length=200,
        description="Same key, same intent: a repeat gets the first result.",
        examples=["checkout:order-7f3a"],
    )
    source: str = Field(min_length=1, description="The service or client that produced it.", examples=["saga"])
    actor: Actor | None = Field(
        default=None, description="Whom the marketplace acts for: required where the buyer's (or seller's) consent is."
    )
    payload: P

    @model_validator(mode="after")
    def _names_its_payload(self) -> Self:
        payload: object = self.payload
        if isinstance(payload, Message) and (self.type, self.version) != (payload.message_type, payload.version):
            raise PydanticCustomError(
                "envelope_mismatch",
                "type and version must name the payload's class: {message_type} version {version}",
                {"message_type": payload.message_type, "version": payload.version},
            )
        return self


RawEnvelope = Envelope[dict[str, Any]]
"""An envelope whose payload is not yet validated against its type."""


M = TypeVar("M", bound=Message)


def envelope_for(
    message: M,
    *,
    correlation_id: str,
    idempotency_key: str,
    source: str,
    causation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    message_id: uuid.UUID | None = None,
    actor: Actor | None = None,
) -> Envelope[M]:
    """Wrap a payload in a fresh envelope; type and version come from its class.

    ``occurred_at`` defaults to now; a service passes the time of its own clock (X8).
    ``message_id`` defaults to a new one; a sender that must know it beforehand passes its own."""
    return Envelope[M](
        message_id=message_id or new_message_id(),
        occurred_at=occurred_at or utc_now(),
        type=message.message_type,
        version=message.version,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
        source=source,
        actor=actor,
        payload=message,
    )
