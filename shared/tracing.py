"""Traces that follow one order across the services (SPEC X5), with OpenTelemetry.

Every message a service handles is a span (kind CONSUMER, named ``handle <Type>``), the child of
the span that produced it: the W3C ``traceparent`` of the handling span rides in a header of every
record the handler emits. The header is stored with the record in the outbox and published with
it, so a trace crosses the outbox and a crash in between: the saga's checkout starts an order's
trace, and the payment, account, escrow and notification services' spans join it.

A process records spans only when told where to put them (:func:`configure`, from
``TRADEGUARD_TRACES_DIR``: one JSON-lines file per service, ``traces-<service>.jsonl``, written in
the background by the SDK's batch processor). Otherwise the API's no-op tracer costs next to
nothing, and no header is added. Each span's trace id is bound to the log lines written while it
is open (``trace_id``), so a log line leads to its trace and back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.topics import TRACEPARENT_HEADER
from shared.log_files import LogRotation, log_file, write_line

TRACES_DIR_VARIABLE = "TRADEGUARD_TRACES_DIR"
TRACEPARENT = TRACEPARENT_HEADER

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("tradeguard")
_recording = False


class JsonLinesExporter(SpanExporter):
    """Appends each finished span as one JSON line: enough to read a trace without a collector.
    The file rolls over by size as the stack's logs do (``shared.log_files``: 10 MiB, five old
    files, unless ``TRADEGUARD_LOG_MAX_BYTES=0`` turns rotation off)."""

    def __init__(self, path: Path, rotation: LogRotation | None = None) -> None:
        self._file = log_file(path, rotation if rotation is not None else LogRotation.from_environment())

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "attributes": dict(span.attributes or {}),
                    }
                )
            )
        write_line(self._file, "".join(f"{line}\n" for line in lines))  # the handler locks and flushes
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def configure(service: str, directory: str | None = None) -> TracerProvider | None:
    """Record this process's spans under ``directory`` (default: ``TRADEGUARD_TRACES_DIR``);
    None, and spans stay no-ops, when neither names one. Call :meth:`TracerProvider.shutdown`
    on the way out to flush the last spans."""
    global _tracer, _recording  # noqa: PLW0603 - one tracer provider per process, as OpenTelemetry has it
    chosen = directory or os.environ.get(TRACES_DIR_VARIABLE)
    if not chosen or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":  # OpenTelemetry's own switch
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(Path(chosen) / f"traces-{service}.jsonl")))
    _tracer = provider.get_tracer("tradeguard")
    _recording = True
    return provider


@contextmanager
def handling(
    headers: Sequence[tuple[str, bytes | None]], message_type: str, *, topic: str, message_id: str, correlation_id: str
) -> Iterator[str | None]:
    """A span for handling one message, the child of the span that sent it; yields its trace id
    (None when spans are not recorded)."""
    if not _recording:
        yield None
        return
    sent = next((value for key, value in headers if key == TRACEPARENT and value), None)
    carrier = {TRACEPARENT: sent.decode("ascii", "replace")} if sent else {}
    parent = _PROPAGATOR.extract(carrier)
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.message.id": message_id,
        "tradeguard.correlation_id": correlation_id,
    }
    with _tracer.start_as_current_span(
        f"handle {message_type}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield f"{span.get_span_context().trace_id:032x}"


def traceparent() -> tuple[tuple[str, bytes], ...]:
    """The header that makes a record's handling a child of the current span (none without one)."""
    if not _recording:
        return ()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context.get_current())
    value = carrier.get(TRACEPARENT)
    return ((TRACEPARENT, value.encode()),) if value else ()
