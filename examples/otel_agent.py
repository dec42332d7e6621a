"""An agent traced with OpenTelemetry's GenAI conventions, its spans logged as signed audit events.

    pip install 'auditlog[otel]'                          # or: .venv/bin/pip install -e '.[otel]'
    (producer keygen/register/add-key as for examples/agent.py, with --producer otel-agent)
    AUDITLOG_SERVER=http://127.0.0.1:8080 .venv/bin/python examples/otel_agent.py --seed agent.seed \\
        --log-key "$(cat data/log.vkey)"
    .venv/bin/auditlog timeline --run <printed run id>

The tracer is set up once; the agent code only makes spans, as its instrumentation already does. A pretend model
call and a tool call run under an agent invocation; each span becomes one event (model_call, tool_call, outcome)
whose prompt and tool arguments are in the blob store by hash.
"""

import argparse
import base64
import json
import os
import sys
import uuid
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from api.client.otel import AuditlogSpanExporter
from api.client.recorder import Recorder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=os.environ.get("AUDITLOG_SERVER", "http://127.0.0.1:8080"))
    parser.add_argument("--seed", required=True, help="file with the base64 Ed25519 seed (auditlog producer keygen)")
    parser.add_argument("--log-key", required=True, help="the log's verifier key")
    parser.add_argument("--producer", default="otel-agent")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--token", default=os.environ.get("AUDITLOG_TOKEN"),
                        help="a writer token for the blob uploads (auditlog token create --role writer; default: "
                             "$AUDITLOG_TOKEN); events need none, their signature authenticates them")
    args = parser.parse_args()

    recorder = Recorder(args.server, producer=args.producer, signing_key=base64.b64decode(Path(args.seed).read_text()),
                        log_key=args.log_key, tenant=args.tenant, actor={"type": "agent", "id": args.producer},
                        token=args.token)
    run_id = f"run-{uuid.uuid4()}"
    logged = []
    exporter = AuditlogSpanExporter(recorder, on_receipt=lambda span, ack: logged.append(print(
        f"{span.name}: {ack.event['event_type']} {ack.event['event_id']} at index {ack.index}")))
    provider = TracerProvider(resource=Resource.create({"service.name": args.producer, "auditlog.run_id": run_id}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("examples.otel_agent")

    with tracer.start_as_current_span("invoke_agent kyc", attributes={"gen_ai.operation.name": "invoke_agent",
                                                                      "gen_ai.agent.name": "kyc"}):
        prompt = [{"role": "user", "parts": [{"type": "text", "content": "Any sanctions hits for cust_8f3a?"}]}]
        with tracer.start_as_current_span("chat demo-model-1") as span:  # the model call would go here
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                 "gen_ai.request.model": "demo-model-1", "gen_ai.input.messages": json.dumps(prompt),
                                 "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 9})
        with tracer.start_as_current_span("execute_tool sanctions_lookup") as span:
            span.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "sanctions_lookup",
                                 "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.result": '{"matches":0}',
                                 "gen_ai.tool.call.arguments": '{"customer":"cust_8f3a"}'})
    provider.shutdown()  # flushes the batch: every span exported (or its failure logged) before exit
    if len(logged) < 3:
        sys.exit(f"run {run_id}: {3 - len(logged)} of 3 spans were not logged (the exporter said why above)")
    print(f"run {run_id}")


if __name__ == "__main__":
    main()
