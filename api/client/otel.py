"""An OpenTelemetry SpanExporter that turns GenAI spans into signed auditlog.event/v1 events (`pip install
auditlog[otel]`).

    recorder = Recorder(url, producer="kyc-agent", signing_key=seed, log_key=vkey, tenant="acme",
                        actor={"type": "agent", "id": "kyc-agent"})
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(AuditlogSpanExporter(recorder)))

Producers that already trace their LLM calls with OpenTelemetry's GenAI semantic conventions feed the log with the
instrumentation they have. One span with `gen_ai.operation.name` becomes one event, signed by the Recorder:

| span                                                      | event                                          |
| --- | --- |
| `gen_ai.operation.name` chat, text_completion, generate_content, embeddings | `event_type` model_call     |
| execute_tool                                              | tool_call                                      |
| retrieval                                                 | retrieval                                      |
| invoke_agent, invoke_workflow                             | outcome (recorded after the fact, see below)   |
| create_agent, any other operation                         | external_action                                |
| trace id (32 hex), span id (16 hex)                       | `trace_id`; `event_id` = `otel-<trace>-<span>` |
| parent span                                               | `parent_event_id` = the parent span's event id |
| `auditlog.run_id` (span, else resource attribute)         | `run_id`, else the trace id                    |
| start time; end - start                                   | `timestamp`; `metadata.latency_ms`             |
| `gen_ai.response.model`, else `gen_ai.request.model`      | `snapshot.model_id`                            |
| `gen_ai.usage.input_tokens` / `output_tokens`             | `metadata.input_tokens` / `output_tokens`      |
| status ERROR or `error.type`                              | `outcome.status` failure, `error.code/message` |
| status OK or UNSET                                        | `outcome.status` success                       |
| `gen_ai.conversation.id`, `auditlog.context.<name>`       | `context.conversation_id`, `context.<name>`    |
| input messages, system instructions, tool arguments       | `input`: a blob reference (sha256, size)       |
| output messages, tool result                              | `output`: a blob reference                     |

Content (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
`gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`, and the older `gen_ai.prompt`/`gen_ai.completion`; read
from the span's attributes, else from its `gen_ai.client.inference.operation.details` event) is stored in the
log's blob store by hash, as the RFC 8785 JSON object {attribute name: value as the span had it}; the event
carries the reference, never the text. `extensions.otel` keeps the span's descriptive attributes: span and parent
span id, span name and kind, instrumentation scope, operation, provider (`gen_ai.provider.name`, else the older
`gen_ai.system`), request and response model, response id, finish reasons, tool name, call id and type, agent
name and id, conversation and data source id. `capture_content=False` leaves content out altogether.

An agent invocation is an `outcome`, not an `intent`: in this log an intent is acknowledged before the action may
run (`Recorder.action`), and a span is exported only after it ended, so what the exporter can truthfully record is
what happened. Token counts fall back to the older `gen_ai.usage.prompt_tokens`/`completion_tokens`.

Idempotent: everything in an event comes from the span (its ids, its times, its attributes) and Ed25519
signatures are deterministic, so exporting the same span again sends the same bytes under the same event id, and
the log answers with the original index (a duplicate), not a second event.

Parent links: the parent's event id is computed from the parent span's ids, so a child (which ends, and is
exported, before its parent) links to its parent's event before that is logged, and a parent in another process
that exports with this exporter links too. A parent span that is not a GenAI span is not logged (unless
`genai_only=False`): the timeline then shows the child as a root and reports its parent as not in the run.

Fail closed, as far as an exporter can be: `export()` returns SUCCESS only if every event of the batch was
acknowledged by the log with a verified receipt (signed checkpoint, leaf hash of the exact entry, inclusion proof:
`Recorder.submit`); otherwise FAILURE, each failure logged (logger `api.client.otel`; `last_error` keeps the
latest). A span the log refuses with a problem body (or that makes no valid event) does not stop the others; any other
failure (the log unreachable after the Recorder's retries, a receipt that does not verify) ends the batch there. The Recorder has already retried with back-off by then. The
OpenTelemetry SDK's processors do not retry a failed export: `BatchSpanProcessor` and `SimpleSpanProcessor`
ignore the result, so the spans of a failed batch are dropped from the processor's queue (only what the log
acknowledged is in it). An export can only follow the act it records; an action that must not run unless it is on
record belongs in `Recorder.action()`, which the exporter does not replace.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from api.client.recorder import Acknowledgement, Recorder, RecorderError
from log.audit.canonical import canonicalize
from log.audit.schema import MAX_SAFE_INTEGER, TOKEN_PATTERN, python_regex

logger = logging.getLogger(__name__)

OPERATION = "gen_ai.operation.name"
EVENT_TYPES_BY_OPERATION: dict[str, str] = {
    "chat": "model_call",
    "text_completion": "model_call",
    "generate_content": "model_call",
    "embeddings": "model_call",
    "execute_tool": "tool_call",
    "retrieval": "retrieval",
    "invoke_agent": "outcome",
    "invoke_workflow": "outcome",
    "create_agent": "external_action",
}
DEFAULT_EVENT_TYPE = "external_action"
INPUT_ATTRIBUTES = ("gen_ai.system_instructions", "gen_ai.input.messages", "gen_ai.tool.call.arguments",
                    "gen_ai.prompt")
OUTPUT_ATTRIBUTES = ("gen_ai.output.messages", "gen_ai.tool.call.result", "gen_ai.completion")
CONTENT_EVENT = "gen_ai.client.inference.operation.details"
RUN_ID_ATTRIBUTE = "auditlog.run_id"
CONTEXT_PREFIX = "auditlog.context."
# Span attribute -> key in extensions.otel (descriptive attributes only: no content ever goes in the event).
_DESCRIPTIVE = {
    OPERATION: "operation",
    "gen_ai.request.model": "request_model",
    "gen_ai.response.model": "response_model",
    "gen_ai.response.id": "response_id",
    "gen_ai.response.finish_reasons": "finish_reasons",
    "gen_ai.tool.name": "tool_name",
    "gen_ai.tool.call.id": "tool_call_id",
    "gen_ai.tool.type": "tool_type",
    "gen_ai.agent.name": "agent_name",
    "gen_ai.agent.id": "agent_id",
    "gen_ai.conversation.id": "conversation_id",
    "gen_ai.data_source.id": "data_source_id",
    "gen_ai.output.type": "output_type",
}
_TOKEN = python_regex(TOKEN_PATTERN)
_CONTEXT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_TEXT = 1024  # the schema's limit for short text fields


def content_reference(data: bytes, media_type: str) -> dict:
    """The content reference `Recorder.put_blob` answers for `data`, computed locally."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "media_type": media_type}


def event_id_for(trace_id: int, span_id: int) -> str:
    """The event id of the span `span_id` in trace `trace_id`: the same on every export, in every process."""
    return f"otel-{trace_id:032x}-{span_id:016x}"


@dataclass
class SpanEvent:
    """What one span says, before any I/O: `fields` go to `Recorder.event`, `payloads` to the blob store first
    (`input`/`output` -> (bytes, media type)) and then into the event as content references."""

    event_type: str
    fields: dict[str, Any]
    payloads: dict[str, tuple[bytes, str]] = field(default_factory=dict)


def _is_token(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN.match(value) is not None


def _count(value: Any) -> int | None:
    """A token count as the schema takes it (a non-negative safe integer), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    value = int(value)
    return value if 0 <= value <= MAX_SAFE_INTEGER else None


def _plain(value: Any) -> Any:
    """An attribute value as JSON the event can carry (no floats: the schema keeps numbers exact)."""
    if isinstance(value, str):
        return value[:_TEXT]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)[:_TEXT]


def _json_value(value: Any) -> Any:
    """An attribute value for a content blob: as the span had it, sequences as lists."""
    return list(value) if isinstance(value, tuple) else value


def describe_span(span: ReadableSpan, *, run_id_attribute: str = RUN_ID_ATTRIBUTE, genai_only: bool = True,
                  capture_content: bool = True, event_types: Mapping[str, str] | None = None,
                  default_event_type: str = DEFAULT_EVENT_TYPE) -> SpanEvent | None:
    """The event a finished span becomes, or None for a span that is not exported (no `gen_ai.operation.name`
    while `genai_only`). Pure: the same span always gives the same result."""
    attributes: Mapping[str, Any] = span.attributes or {}
    operation = attributes.get(OPERATION)
    if not isinstance(operation, str) or not operation:
        if genai_only:
            return None
        operation = None
    types = EVENT_TYPES_BY_OPERATION if event_types is None else {**EVENT_TYPES_BY_OPERATION, **event_types}
    event_type = types.get(operation, default_event_type) if operation else default_event_type

    context = span.get_span_context()
    resource = span.resource.attributes if span.resource is not None else {}
    run_id = attributes.get(run_id_attribute) or resource.get(run_id_attribute) or f"{context.trace_id:032x}"
    fields: dict[str, Any] = {
        "event_id": event_id_for(context.trace_id, context.span_id),
        "trace_id": f"{context.trace_id:032x}",
        "run_id": run_id,
        "timestamp": span.start_time // 1_000_000,
    }
    if span.parent is not None and span.parent.span_id:
        fields["parent_event_id"] = event_id_for(span.parent.trace_id, span.parent.span_id)

    model = attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model")
    if isinstance(model, str) and model:
        fields["snapshot"] = {"model_id": model[:_TEXT]}

    metadata: dict[str, int] = {}
    for key, names in (("input_tokens", ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")),
                       ("output_tokens", ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))):
        for name in names:
            count = _count(attributes.get(name))
            if count is not None:
                metadata[key] = count
                break
    if span.end_time is not None and span.end_time >= span.start_time:
        metadata["latency_ms"] = (span.end_time - span.start_time) // 1_000_000
    if metadata:
        fields["metadata"] = metadata

    exception = next((e.attributes or {} for e in span.events if e.name == "exception"), {})
    error_type = attributes.get("error.type") or exception.get("exception.type")
    if span.status.status_code is StatusCode.ERROR or error_type:
        fields["outcome"] = {"status": "failure"}
        error = {"code": str(error_type or "error")[:128]}
        message = span.status.description or exception.get("exception.message")
        if message:
            error["message"] = str(message)[:_TEXT]
        fields["error"] = error
    else:
        fields["outcome"] = {"status": "success"}

    ids = {}
    conversation = attributes.get("gen_ai.conversation.id")
    if _is_token(conversation):
        ids["conversation_id"] = conversation
    for name, value in attributes.items():
        if name.startswith(CONTEXT_PREFIX) and _CONTEXT_NAME.match(name[len(CONTEXT_PREFIX):]) and _is_token(value):
            ids[name[len(CONTEXT_PREFIX):]] = value
    if ids:
        fields["context"] = ids

    otel: dict[str, Any] = {"span_id": f"{context.span_id:016x}", "span_name": span.name[:_TEXT],
                            "span_kind": span.kind.name.lower()}
    if span.parent is not None and span.parent.span_id:
        otel["parent_span_id"] = f"{span.parent.span_id:016x}"
    provider = attributes.get("gen_ai.provider.name") or attributes.get("gen_ai.system")
    if provider:
        otel["provider"] = _plain(provider)
    for name, key in _DESCRIPTIVE.items():
        if name in attributes:
            otel[key] = _plain(attributes[name])
    if span.instrumentation_scope is not None:
        otel["scope"] = span.instrumentation_scope.name[:_TEXT]
    fields["extensions"] = {"otel": otel}

    payloads: dict[str, tuple[bytes, str]] = {}
    if capture_content:
        details = next((e.attributes or {} for e in span.events if e.name == CONTENT_EVENT), {})
        for slot, names in (("input", INPUT_ATTRIBUTES), ("output", OUTPUT_ATTRIBUTES)):
            content = {}
            for name in names:
                value = attributes.get(name, details.get(name))
                if value is not None:
                    content[name] = _json_value(value)
            if content:
                payloads[slot] = (canonicalize(content), "application/json")
    return SpanEvent(event_type, fields, payloads)


class AuditlogSpanExporter(SpanExporter):
    """Exports GenAI spans as signed audit events through `recorder` (see the module docstring).

    run_id_attribute: the span (else resource) attribute naming the run; absent, the trace id is the run.
    genai_only: export only spans with `gen_ai.operation.name` (others as `default_event_type` when False).
    capture_content: store prompts, completions and tool arguments/results in the blob store and reference them.
    event_types: operation name -> event type, over EVENT_TYPES_BY_OPERATION.
    on_receipt: called with (span, Acknowledgement) for every event the log acknowledged.
    """

    def __init__(self, recorder: Recorder, *, run_id_attribute: str = RUN_ID_ATTRIBUTE, genai_only: bool = True,
                 capture_content: bool = True, event_types: Mapping[str, str] | None = None,
                 default_event_type: str = DEFAULT_EVENT_TYPE,
                 on_receipt: Callable[[ReadableSpan, Acknowledgement], None] | None = None):
        self.recorder = recorder
        self._options = {"run_id_attribute": run_id_attribute, "genai_only": genai_only,
                         "capture_content": capture_content, "event_types": event_types,
                         "default_event_type": default_event_type}
        self.on_receipt = on_receipt
        self.last_error: Exception | None = None
        self._shutdown = threading.Event()

    def describe(self, span: ReadableSpan) -> SpanEvent | None:
        return describe_span(span, **self._options)

    def export_span(self, span: ReadableSpan) -> Acknowledgement | None:
        """Log one span's event (its content first) and return the verified receipt; None for a span that is
        not exported. Raises `RecorderError` (or `InvalidEvent` for a span that makes no valid event)."""
        described = self.describe(span)
        if described is None:
            return None
        # The event is built (and validated) with the references first, so that nothing is uploaded for a span
        # that makes no valid event; then the content goes to the blob store, then the event to the log.
        refs = {slot: content_reference(data, media_type) for slot, (data, media_type)
                in described.payloads.items()}
        event = self.recorder.event(described.event_type, **described.fields, **refs)
        for slot, (data, media_type) in described.payloads.items():
            stored = self.recorder.put_blob(data, media_type)
            if stored.get("sha256") != refs[slot]["sha256"]:
                raise RecorderError(f"the blob store answered {stored} for the {slot} of event {event['event_id']}")
        return self.recorder.submit(self.recorder.sign(event))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """SUCCESS only if every GenAI span of `spans` is in the log with a verified receipt; FAILURE otherwise.
        After `shutdown()`, FAILURE without trying."""
        if self._shutdown.is_set():
            logger.warning("auditlog exporter: export called after shutdown; %d span(s) not logged", len(spans))
            return SpanExportResult.FAILURE
        result = SpanExportResult.SUCCESS
        for position, span in enumerate(spans):
            try:
                receipt = self.export_span(span)
            except Exception as exc:  # an exporter must not raise into the SDK; the failure is the result
                self.last_error = exc
                result = SpanExportResult.FAILURE
                context = span.get_span_context()
                logger.warning("auditlog exporter: span %r (trace %032x, span %016x) was not logged at %s: %s",
                               span.name, context.trace_id, context.span_id, self.recorder.url, exc)
                if isinstance(exc, RecorderError) and exc.problem is None and position + 1 < len(spans):
                    # Not a refusal of this one event (that comes with a problem body) but the log unreachable
                    # after the Recorder's retries, or a receipt that does not verify: the rest of the batch would
                    # fare no better, and each would wait out the retries again.
                    logger.warning("auditlog exporter: %d more span(s) of this batch not logged",
                                   len(spans) - position - 1)
                    break
                continue
            if receipt is not None and self.on_receipt is not None:
                try:
                    self.on_receipt(span, receipt)
                except Exception:  # the event is logged; a failing callback is the caller's to fix
                    logger.exception("auditlog exporter: on_receipt failed")
        return result

    def shutdown(self) -> None:
        """Stops exporting: later `export()` calls return FAILURE. An export under way finishes."""
        self._shutdown.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """True: `export()` returns only once its events are acknowledged, so nothing is ever held back here."""
        return True
