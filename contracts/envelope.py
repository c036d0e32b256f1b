"""The one envelope every message travels in, and the base classes of every payload.

Wire format: a JSON object with the envelope fields and the payload nested under
``payload``. The envelope says what the message is (``type``, ``version``), where
it comes from (``source``, ``causation_id``), which business flow it belongs to
(``correlation_id``) and how a repeat is recognised (``idempotency_key``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.topics import Topic

P = TypeVar("P")


class Message(BaseModel):
    """A command or event payload: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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


class Envelope(BaseModel, Generic[P]):
    """Metadata shared by every message, around a typed payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: uuid.UUID = Field(
        default_factory=new_message_id,
        description="Unique per message; consumers deduplicate on it.",
    )
    type: str = Field(description="Payload type name.", examples=["CapturePayment"])
    version: int = Field(ge=1, description="Payload schema version.", examples=[1])
    occurred_at: AwareDatetime = Field(default_factory=utc_now, description="When the message was created (UTC).")
    correlation_id: str = Field(
        min_length=1,
        max_length=200,
        description="The business flow this belongs to; an order's messages share it.",
        examples=["order-7f3a"],
    )
    causation_id: uuid.UUID | None = Field(default=None, description="message_id of the message that caused this one.")
    idempotency_key: str = Field(
        min_length=1,
        max_length=200,
        description="Same key, same intent: a repeat gets the first result.",
        examples=["checkout:order-7f3a"],
    )
    source: str = Field(min_length=1, description="The service or client that produced it.", examples=["saga"])
    payload: P


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
) -> Envelope[M]:
    """Wrap a payload in a fresh envelope; type and version come from its class."""
    return Envelope[M](
        type=message.message_type,
        version=message.version,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
        source=source,
        payload=message,
    )
