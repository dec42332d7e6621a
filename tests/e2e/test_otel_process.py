"""The OpenTelemetry exporter end to end: a real TracerProvider, the SDK's SimpleSpanProcessor and
BatchSpanProcessor, AuditlogSpanExporter and a real `auditlog serve` process (SQLite and PostgreSQL).

An agent run traced with the GenAI conventions (invoke_agent > chat, execute_tool, and a non-GenAI span) becomes
signed events whose receipts verify, whose timeline is the span tree, whose evidence bundle verifies offline,
which carry model and tokens, and whose prompt is in the event only as a hash and in the blob store in full.
Exporting the same spans again logs nothing new; examples/otel_agent.py runs; with the server gone, export fails.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid

import aiohttp
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.client.otel import AuditlogSpanExporter, event_id_for
from api.client.recorder import Recorder
from log.audit.evidence import verify_bundle
from log.audit.schema import parse_timestamp_ms
from tests.e2e.test_audit_process import Producer, _admin_headers, _admin_token, _call, _register, _size
from tests.processes import REPO

PROMPT = "Summarise the risk indicators for case 2026-0042."
INPUT_MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}])
OUTPUT_MESSAGES = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Two transfers."}]}])


def _agent_run(tracer) -> None:
    """A pretend agent: one model call and one tool call under an agent invocation, plus an HTTP span."""
    with tracer.start_as_current_span("invoke_agent kyc", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "kyc", "gen_ai.provider.name": "openai"}):
        with tracer.start_as_current_span("chat gpt-x", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-x", "gen_ai.response.model": "gpt-x-2026-01",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 14,
                "gen_ai.input.messages": INPUT_MESSAGES, "gen_ai.output.messages": OUTPUT_MESSAGES}):
            pass
        with tracer.start_as_current_span("execute_tool sanctions_lookup", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sanctions_lookup",
                "gen_ai.tool.call.id": "call_7", "gen_ai.tool.call.arguments": '{"customer":"cust_8f3a"}',
                "gen_ai.tool.call.result": '{"matches":0}'}):
            with tracer.start_as_current_span("GET /sanctions", attributes={"http.request.method": "GET"}):
                pass


def test_genai_spans_become_verified_events_whose_timeline_is_the_trace(server_factory, tmp_path):
    server = server_factory().start()
    url, data_dir = server.url, server.data_dir
    log_key = (data_dir / "log.vkey").read_text().strip()
    agent = Producer("otel-agent")
    run_id = f"otel-{uuid.uuid4().hex[:8]}"

    async def register():
        async with aiohttp.ClientSession() as session:
            await _register(session, url, _admin_headers(data_dir), agent)

    asyncio.run(register())

    receipts = {}
    recorder = Recorder(url, producer=agent.name, signing_key=bytes(agent.key), log_key=log_key, tenant="acme",
                        actor={"type": "agent", "id": agent.name}, retries=2, backoff=0.05, timeout=10,
                        token=_admin_token(data_dir))
    exporter = AuditlogSpanExporter(recorder, on_receipt=lambda span, ack: receipts.setdefault(span.name, ack))
    results = []

    class Recording(SpanExporter):  # keeps what export() answered, which the SDK's processors ignore
        def export(self, spans):
            results.append(exporter.export(spans))
            return results[-1]

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "kyc", "auditlog.run_id": run_id}))
    provider.add_span_processor(SimpleSpanProcessor(Recording()))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _agent_run(provider.get_tracer("tests.e2e.otel"))
    provider.force_flush()
    spans = {span.name: span for span in memory.get_finished_spans()}

    # Every span was exported with SUCCESS, and each GenAI span's receipt (verified by the Recorder) is new.
    assert results == [SpanExportResult.SUCCESS] * 4
    assert set(receipts) == {"invoke_agent kyc", "chat gpt-x", "execute_tool sanctions_lookup"}
    assert not any(ack.duplicate for ack in receipts.values())

    def event_id(name: str) -> str:
        context = spans[name].get_span_context()
        return event_id_for(context.trace_id, context.span_id)

    async def read_back():
        async with aiohttp.ClientSession(headers=_admin_headers(data_dir)) as session:
            status, _, timeline = await _call(session, "GET", f"{url}/api/v1/runs/{run_id}/timeline")
            assert status == 200, timeline
            status, _, bundle = await _call(session, "GET", f"{url}/api/v1/runs/{run_id}/evidence")
            assert status == 200, bundle
            chat = next(e["event"] for e in timeline["events"] if e["event"]["event_type"] == "model_call")
            status, _, blob = await _call(session, "GET", f"{url}/api/v1/blobs/{chat['input']['sha256']}")
            assert status == 200
            return timeline, bundle, blob, await _size(session, url)

    timeline, bundle, blob, size = asyncio.run(read_back())

    # The timeline is the span tree: the agent invocation first, its two GenAI children under it; the HTTP span
    # (not GenAI) is not logged. Indices are those of the verified receipts.
    events = [logged["event"] for logged in timeline["events"]]
    assert [e["event_id"] for e in events] == [event_id("invoke_agent kyc"), event_id("chat gpt-x"),
                                               event_id("execute_tool sanctions_lookup")]
    assert [e["event_type"] for e in events] == ["outcome", "model_call", "tool_call"]
    assert "parent_event_id" not in events[0]
    assert all(e["parent_event_id"] == events[0]["event_id"] for e in events[1:])
    assert timeline["external_parents"] in ({}, [], None)
    assert {logged["event"]["event_id"]: logged["index"] for logged in timeline["events"]} == {
        ack.event["event_id"]: ack.index for ack in receipts.values()}
    trace_id = f"{spans['chat gpt-x'].get_span_context().trace_id:032x}"
    assert {e["trace_id"] for e in events} == {trace_id} and {e["run_id"] for e in events} == {run_id}

    # Model and tokens; the span's time, not the export's.
    chat = next(e for e in events if e["event_type"] == "model_call")
    assert chat["snapshot"] == {"model_id": "gpt-x-2026-01"}
    assert (chat["metadata"]["input_tokens"], chat["metadata"]["output_tokens"]) == (12, 14)
    assert chat["extensions"]["otel"]["span_id"] == f"{spans['chat gpt-x'].get_span_context().span_id:016x}"
    assert receipts["chat gpt-x"].event == chat
    assert parse_timestamp_ms(chat["timestamp"]) == spans["chat gpt-x"].start_time // 1_000_000

    # The prompt: only its hash in the event, all of it in the blob store.
    assert PROMPT not in json.dumps(timeline)
    assert chat["input"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert json.loads(blob) == {"gen_ai.input.messages": INPUT_MESSAGES}
    tool = next(e for e in events if e["event_type"] == "tool_call")
    assert {"input", "output"} <= set(tool) and "cust_8f3a" not in json.dumps(tool)

    # The run's evidence bundle verifies offline with the log key alone.
    report = verify_bundle(bundle, log_key)
    assert report.events == 3 and report.producers == [agent.name] and not report.warnings

    # Re-exporting the same spans (a retry, a restarted exporter) logs nothing new: the same bytes under the
    # same event ids are duplicates with their original indices.
    again = {}
    rerun = AuditlogSpanExporter(recorder, on_receipt=lambda span, ack: again.setdefault(span.name, ack))
    assert rerun.export(list(spans.values())) is SpanExportResult.SUCCESS
    assert all(ack.duplicate for ack in again.values())
    assert {name: ack.index for name, ack in again.items()} == {name: ack.index for name, ack in receipts.items()}

    async def size_now():
        async with aiohttp.ClientSession() as session:
            return await _size(session, url)

    assert asyncio.run(size_now()) == size

    # The BatchSpanProcessor path: a second run, flushed, lands the same way.
    batch_run = f"otel-{uuid.uuid4().hex[:8]}"
    batch_receipts = []
    batched = TracerProvider(resource=Resource.create({"auditlog.run_id": batch_run}))
    batched.add_span_processor(BatchSpanProcessor(AuditlogSpanExporter(
        recorder, on_receipt=lambda span, ack: batch_receipts.append(ack))))
    _agent_run(batched.get_tracer("tests.e2e.otel"))
    assert batched.force_flush(30_000)
    assert len(batch_receipts) == 3 and {ack.event["run_id"] for ack in batch_receipts} == {batch_run}

    # examples/otel_agent.py, as a user runs it (AUDITLOG_SERVER), logs its three spans.
    seed_file = tmp_path / "agent.seed"
    seed_file.write_text(base64.b64encode(bytes(agent.key)).decode())
    example = subprocess.run([sys.executable, "examples/otel_agent.py", "--seed", str(seed_file), "--log-key",
                              log_key], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "AUDITLOG_SERVER": url, "AUDITLOG_TOKEN": _admin_token(data_dir)})
    assert example.returncode == 0, example.stderr
    assert [line.split(": ")[1].split()[0] for line in example.stdout.splitlines()[:3]] == [
        "model_call", "tool_call", "outcome"], example.stdout

    # Fail closed: with the log gone, export says FAILURE.
    server.stop()
    down = AuditlogSpanExporter(Recorder(url, producer=agent.name, signing_key=bytes(agent.key), log_key=log_key,
                                         tenant="acme", actor={"type": "agent", "id": agent.name}, retries=1,
                                         backoff=0.05, timeout=2))
    memory.clear()
    late = TracerProvider()
    late.add_span_processor(SimpleSpanProcessor(memory))
    _agent_run(late.get_tracer("tests.e2e.otel"))
    assert down.export(memory.get_finished_spans()) is SpanExportResult.FAILURE
    batched.shutdown()
    provider.shutdown()
