"""The OpenTelemetry exporter's mapping from spans to events (api/client/otel.py), without a server: spans come
from a real TracerProvider into the SDK's in-memory exporter, and every event built is validated by the
Recorder against auditlog.event/v1. The export path against a real server is tests/e2e/test_otel_process.py."""

from __future__ import annotations

import json
import time

import pytest
from nacl.signing import SigningKey
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from api.client.otel import AuditlogSpanExporter, content_reference, describe_span, event_id_for
from api.client.recorder import Recorder, RecorderError
from log.audit.errors import InvalidEvent
from log.audit.schema import parse_timestamp_ms
from log.note_keys import generate_signer_key


def _recorder(url: str = "http://127.0.0.1:9", **options) -> Recorder:
    _, log_key = generate_signer_key("test.example/log")
    return Recorder(url, producer="otel-agent", signing_key=bytes(SigningKey.generate()), log_key=log_key,
                    tenant="acme", actor={"type": "agent", "id": "otel-agent"}, **options)


def _spans(build, resource: dict | None = None):
    """Run `build(tracer)` under a real tracer; the finished spans, in the order they ended."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests.otel"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _event(span, **options) -> dict:
    """The validated event a span becomes, with placeholder content references."""
    described = describe_span(span, **options)
    refs = {slot: content_reference(*payload) for slot, payload in described.payloads.items()}
    return _recorder().event(described.event_type, **described.fields, **refs)


def test_a_chat_span_maps_model_tokens_time_and_ids_and_keeps_content_out_of_the_event():
    def build(tracer):
        with tracer.start_as_current_span("chat gpt-x", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-x", "gen_ai.response.model": "gpt-x-2026-01",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 30,
                "gen_ai.response.finish_reasons": ("stop",), "gen_ai.conversation.id": "conv_42",
                "auditlog.context.case_id": "case-9",
                "gen_ai.system_instructions": "Be terse.",
                "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"SECRET PROMPT"}]}]',
                "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"ANSWER"}]}]'}):
            pass

    [span] = _spans(build)
    described = describe_span(span)
    event = _event(span)
    context = span.get_span_context()
    assert event["event_type"] == "model_call"
    assert event["event_id"] == event_id_for(context.trace_id, context.span_id)
    assert event["trace_id"] == event["run_id"] == f"{context.trace_id:032x}"
    assert "parent_event_id" not in event
    assert parse_timestamp_ms(event["timestamp"]) == span.start_time // 1_000_000
    assert event["snapshot"] == {"model_id": "gpt-x-2026-01"}
    assert event["metadata"]["input_tokens"] == 12 and event["metadata"]["output_tokens"] == 30
    assert event["metadata"]["latency_ms"] == (span.end_time - span.start_time) // 1_000_000
    assert event["outcome"] == {"status": "success"} and "error" not in event
    assert event["context"] == {"conversation_id": "conv_42", "case_id": "case-9"}
    otel = event["extensions"]["otel"]
    assert (otel["span_id"], otel["provider"], otel["request_model"], otel["finish_reasons"]) == (
        f"{context.span_id:016x}", "openai", "gpt-x", ["stop"])
    # Content only by reference: the event holds none of it, the payloads hold all of it.
    assert "SECRET PROMPT" not in json.dumps(event) and "Be terse" not in json.dumps(event)
    data, media_type = described.payloads["input"]
    assert media_type == "application/json"
    assert json.loads(data) == {"gen_ai.system_instructions": "Be terse.",
                                "gen_ai.input.messages": span.attributes["gen_ai.input.messages"]}
    assert json.loads(described.payloads["output"][0]) == {
        "gen_ai.output.messages": span.attributes["gen_ai.output.messages"]}
    assert "input" in event and "output" in event
    # capture_content=False: no payloads at all.
    assert describe_span(span, capture_content=False).payloads == {}


def test_spans_without_gen_ai_attributes_are_ignored_unless_configured():
    def build(tracer):
        with tracer.start_as_current_span("GET /cases", attributes={"http.request.method": "GET"}):
            pass
        with tracer.start_as_current_span("half", attributes={"gen_ai.request.model": "m"}):  # no operation
            pass

    plain, half = _spans(build)
    assert describe_span(plain) is None and describe_span(half) is None
    event = _event(plain, genai_only=False)
    assert event["event_type"] == "external_action" and event["extensions"]["otel"]["span_name"] == "GET /cases"
    assert _event(half, genai_only=False, default_event_type="retrieval")["snapshot"] == {"model_id": "m"}

    exporter = AuditlogSpanExporter(_recorder(retries=0))
    assert exporter.export([plain, half]) is SpanExportResult.SUCCESS  # nothing to log, nothing sent


def test_error_status_and_exceptions_become_a_failure_outcome():
    def build(tracer):
        with tracer.start_as_current_span("execute_tool lookup", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
                "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": '{"id": 7}'}) as span:
            span.set_status(Status(StatusCode.ERROR, "upstream said no"))
            span.set_attribute("error.type", "UpstreamError")
        with pytest.raises(TimeoutError):
            with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat"}):
                raise TimeoutError("model timed out")

    tool, chat = _spans(build)
    event = _event(tool)
    assert event["event_type"] == "tool_call"
    assert event["outcome"] == {"status": "failure"}
    assert event["error"] == {"code": "UpstreamError", "message": "upstream said no"}
    assert event["extensions"]["otel"]["tool_name"] == "lookup"
    assert json.loads(describe_span(tool).payloads["input"][0]) == {"gen_ai.tool.call.arguments": '{"id": 7}'}
    assert "output" not in describe_span(tool).payloads
    # An exception recorded by the SDK: status ERROR, the exception event gives the type.
    event = _event(chat)
    assert event["outcome"] == {"status": "failure"}
    assert event["error"]["code"] == "TimeoutError" and "model timed out" in event["error"]["message"]


def test_missing_or_odd_token_counts_are_left_out_and_older_names_are_read():
    def build(tracer):
        for attributes in ({}, {"gen_ai.usage.input_tokens": -1, "gen_ai.usage.output_tokens": 2.5},
                           {"gen_ai.usage.input_tokens": True, "gen_ai.usage.output_tokens": "9"},
                           {"gen_ai.usage.prompt_tokens": 4, "gen_ai.usage.completion_tokens": 5.0,
                            "gen_ai.system": "anthropic"}):
            with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat", **attributes}):
                pass

    none, negative, wrong_type, older = [_event(span) for span in _spans(build)]
    for event in (none, negative, wrong_type):
        assert set(event["metadata"]) == {"latency_ms"}
        assert "snapshot" not in event
    assert (older["metadata"]["input_tokens"], older["metadata"]["output_tokens"]) == (4, 5)
    assert older["extensions"]["otel"]["provider"] == "anthropic"


def test_parents_run_ids_and_operations():
    def build(tracer):
        with tracer.start_as_current_span("invoke_agent kyc", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "kyc"}):
            with tracer.start_as_current_span("embeddings", attributes={"gen_ai.operation.name": "embeddings",
                                                                         "auditlog.run_id": "run-from-span"}):
                pass
            with tracer.start_as_current_span("plan", attributes={"gen_ai.operation.name": "plan"}):
                pass

    embeddings, plan, agent = _spans(build, resource={"auditlog.run_id": "run-from-resource"})
    agent_event = _event(agent)
    assert agent_event["event_type"] == "outcome" and "parent_event_id" not in agent_event
    assert agent_event["run_id"] == "run-from-resource"
    child = _event(embeddings)
    assert child["event_type"] == "model_call" and child["run_id"] == "run-from-span"
    assert child["parent_event_id"] == agent_event["event_id"]
    assert child["extensions"]["otel"]["parent_span_id"] == agent_event["extensions"]["otel"]["span_id"]
    assert _event(plan)["event_type"] == "external_action"
    assert _event(plan, event_types={"plan": "policy_decision"})["event_type"] == "policy_decision"
    # The same span always makes the same event (a re-export is idempotent).
    assert _event(embeddings) == child


def test_export_fails_closed_when_the_log_is_unreachable_and_after_shutdown(unused_port, caplog):
    def build(tracer):
        with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat",
                                                               "gen_ai.input.messages": "[]"}):
            pass

        with tracer.start_as_current_span("chat", attributes={"gen_ai.operation.name": "chat",
                                                               "auditlog.run_id": "not a token"}):
            pass

    span, bad_run = _spans(build)
    exporter = AuditlogSpanExporter(_recorder(f"http://127.0.0.1:{unused_port}", retries=0, timeout=2))
    # A run id that is not a token makes no valid event: refused before anything is sent.
    assert exporter.export([bad_run]) is SpanExportResult.FAILURE
    assert isinstance(exporter.last_error, InvalidEvent)
    assert exporter.export([span]) is SpanExportResult.FAILURE
    assert isinstance(exporter.last_error, RecorderError) and "connection refused" in str(exporter.last_error)
    # One invalid span does not stop the batch; the log unreachable does (each span would wait out the retries).
    caplog.clear()
    assert exporter.export([bad_run, span, span, span]) is SpanExportResult.FAILURE
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "was not logged" in m]) == 2, messages
    assert "2 more span(s) of this batch not logged" in messages[-1]
    assert exporter.force_flush() is True
    exporter.shutdown()
    assert exporter.export([span]) is SpanExportResult.FAILURE


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_recorder_events_take_the_acts_time_and_default_to_now():
    recorder = _recorder()
    assert recorder.event("tool_call", run_id="r1", timestamp=1_796_000_000_123)["timestamp"] == \
        "2026-11-30T00:53:20.123Z"
    assert recorder.event("tool_call", run_id="r1", timestamp="2026-11-23T14:05:09.123Z")["timestamp"] == \
        "2026-11-23T14:05:09.123Z"
    before = time.time() * 1000
    now = parse_timestamp_ms(recorder.event("tool_call", run_id="r1")["timestamp"])
    assert before - 1 <= now <= time.time() * 1000 + 1
    with pytest.raises(InvalidEvent):
        recorder.event("tool_call", run_id="r1", timestamp="2026-02-30T00:00:00.000Z")
