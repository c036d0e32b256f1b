"""Reading the simulator's JSON request bodies, and its refusals (shared by the vault and the issuer).

A body is one JSON object with exactly the fields an endpoint takes, each of exactly its JSON
type. A refusal names the field and the rule, never the value (a vault body holds a card number).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

MAX_BODY_BYTES = 4096  # a card, IBAN, charge or refund request is a few dozen bytes; more is not a client of ours

_SPOKEN_TYPES: Mapping[type, str] = {int: "an integer", str: "a string", dict: "an object"}


class BadRequest(Exception):
    """The body is not what the endpoint takes; carries the status and a safe message."""

    def __init__(self, field: str, rule: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.rule, self.message, self.status = field, rule, message, status


def refusal(field: str, rule: str, message: str, status: int = 422, **extra: object) -> JSONResponse:
    """``{"error": {"field", "rule", "message", ...extra}}`` with ``status``."""
    return JSONResponse({"error": {"field": field, "rule": rule, "message": message, **extra}}, status_code=status)


async def read_object(request: Request, fields: Mapping[str, type]) -> dict[str, Any]:
    """The JSON object of the body, with exactly ``fields`` of exactly their JSON types."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest("body", "size", f"body: larger than {MAX_BODY_BYTES} bytes", status=413)
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):  # the decoder's message quotes the body: never pass it on
        raise BadRequest("body", "json", "body: not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("body", "object", "body: must be a JSON object")
    unknown = set(parsed) - set(fields)
    if unknown:
        # Only names we would have accepted could be quoted safely, and these are not ones.
        raise BadRequest(
            "body", "unknown_field", f"body: {len(unknown)} unexpected field(s); takes {', '.join(fields)}"
        )
    for name, kind in fields.items():
        check_type(parsed, name, kind)
    return parsed


def check_type(body: Mapping[str, object], name: str, kind: type) -> None:
    if name not in body:
        raise BadRequest(name, "required", f"{name}: is required")
    value = body[name]
    # bool is an int to Python, not to JSON: true is no month.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadRequest(name, "type", f"{name}: must be {_SPOKEN_TYPES.get(kind, kind.__name__)}")
