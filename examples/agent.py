"""An example AI agent that records what it does in auditlog, failing closed.

    ./scripts/serve &                                     # the log, with data in ./data
    .venv/bin/auditlog producer keygen --out agent.seed   # prints the public key
    .venv/bin/auditlog producer register --producer demo-agent --tenant acme --data-dir data
    .venv/bin/auditlog producer add-key --producer demo-agent --public-key <printed key> --data-dir data
    .venv/bin/python examples/agent.py --seed agent.seed --log-key "$(cat data/log.vkey)"
    .venv/bin/auditlog timeline --run <printed run id>

The agent handles one case: it may only call its (pretend) model once the intent is acknowledged by the log with
a verified inclusion proof; the prompt and the answer go to the blob store, the events carry their hashes.
"""

import argparse
import base64
import uuid
from pathlib import Path

from api.client.recorder import Recorder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--seed", required=True, help="file with the base64 Ed25519 seed (auditlog producer keygen)")
    parser.add_argument("--log-key", required=True, help="the log's verifier key")
    parser.add_argument("--producer", default="demo-agent")
    parser.add_argument("--tenant", default="acme")
    args = parser.parse_args()

    recorder = Recorder(args.url, producer=args.producer, signing_key=base64.b64decode(Path(args.seed).read_text()),
                        log_key=args.log_key, tenant=args.tenant, actor={"type": "agent", "id": args.producer},
                        on_behalf_of={"type": "user", "id": "analyst-17"})
    run_id = f"run-{uuid.uuid4()}"
    context = {"case_id": "case-2026-0042", "customer_id": "cust_8f3a"}
    snapshot = {"model_id": "demo-model-1", "prompt_version": "kyc-review-v3"}

    with recorder.action(run_id, context=context, snapshot=snapshot) as action:
        prompt = b"Summarise the risk indicators for case 2026-0042."
        prompt_ref = recorder.put_blob(prompt, "text/plain")
        answer = b"No sanctions match; two unusual transfers need human review."  # the model call would go here
        action.record("model_call", context=context, snapshot=snapshot, input=prompt_ref,
                      output=recorder.put_blob(answer, "text/plain"),
                      metadata={"input_tokens": 12, "output_tokens": 14, "latency_ms": 850})
        action.record("escalation", context=context, policy={"decision": "review", "matched_rule": "aml-7"})
        action.output = recorder.put_blob(answer, "text/plain")
    print(f"run {run_id}: intent at index {action.intent.index}, outcome at index {action.outcome.index}")


if __name__ == "__main__":
    main()
