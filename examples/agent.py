"""An example AI agent that records what it does in auditlog, failing closed.

    ./scripts/serve &                                     # the log, with data in ./data
    .venv/bin/auditlog producer keygen --out agent.seed   # prints the public key
    .venv/bin/auditlog producer register --producer demo-agent --tenant acme --data-dir data
    .venv/bin/auditlog producer add-key --producer demo-agent --public-key <printed key> --data-dir data
    .venv/bin/python examples/agent.py --seed agent.seed --log-key "$(cat data/log.vkey)" --outbox spool
    .venv/bin/auditlog timeline --run <printed run id>

AUDITLOG_SERVER (or --server) may name several servers of one log, separated by commas
(`AUDITLOG_SERVER=http://a:8080,http://b:8080`): the Recorder asks the one that answered last and moves on to the
next on connection errors and 503s, so the agent keeps recording while one of them is down or being replaced.

The agent handles one case: it may only call its (pretend) model once the intent is acknowledged by the log with
a verified inclusion proof; the prompt and the answer go to the blob store, the events carry their hashes; the
customer id is tokenised in the log's vault (`recorder.tokenize`), and the events carry its token. With
`--outbox DIR` every event is spooled before it is sent; what a killed run left there goes first on the next run.

Exit codes: 0 recorded, 1 an acknowledgement did not verify, 2 bad input or an event the log refused,
3 the log unreachable (the message names it).
"""

import argparse
import base64
import os
import sys
import uuid
from pathlib import Path

from api.client.recorder import Recorder, RecorderError
from log.errors import LogError, Unavailable, VerificationError


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", "--url", default=os.environ.get("AUDITLOG_SERVER", "http://127.0.0.1:8080"),
                        help="the log's URL, or several servers of one log separated by commas (default: "
                             "$AUDITLOG_SERVER, else http://127.0.0.1:8080)")
    parser.add_argument("--seed", required=True, help="file with the base64 Ed25519 seed (auditlog producer keygen)")
    parser.add_argument("--log-key", required=True, help="the log's verifier key")
    parser.add_argument("--outbox", help="directory of the durable spool of events not yet acknowledged")
    parser.add_argument("--producer", default="demo-agent")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--token", default=os.environ.get("AUDITLOG_TOKEN"),
                        help="a writer token for the blob uploads and tokenising (auditlog token create --role writer "
                             "--tenant acme; default: $AUDITLOG_TOKEN); events need none, their signature "
                             "authenticates them")
    args = parser.parse_args()
    try:
        run(args)
    except (RecorderError, LogError, OSError, ValueError) as exc:  # the recorder's messages name the server
        print(f"agent: {(str(exc) or type(exc).__name__).splitlines()[0]}", file=sys.stderr)
        return 3 if isinstance(exc, Unavailable) else 1 if isinstance(exc, VerificationError) else 2
    return 0


def run(args: argparse.Namespace) -> None:
    try:
        seed = base64.b64decode(Path(args.seed).read_text().strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--seed {args.seed}: not a readable base64 seed: {exc}") from exc
    try:
        recorder = Recorder(args.server, producer=args.producer, signing_key=seed, log_key=args.log_key,
                            tenant=args.tenant, actor={"type": "agent", "id": args.producer},
                            on_behalf_of={"type": "user", "id": "analyst-17"}, outbox=args.outbox,
                            token=args.token)
    except (LogError, ValueError) as exc:
        raise ValueError(f"--seed or --log-key is not a key: {exc}") from exc
    run_id = f"run-{uuid.uuid4()}"
    customer_id = "cust_8f3a"  # the customer's id in the bank's own systems: it never reaches the log
    snapshot = {"model_id": "demo-model-1", "prompt_version": "kyc-review-v3"}

    with recorder.action(run_id, context={"case_id": "case-2026-0042"}, snapshot=snapshot) as action:
        # Tokenisation at the boundary: the events carry the customer's vault token, never the id (the same id always
        # gets the same token, so the customer's events are found by it; only a vault-reader with a stated purpose
        # turns it back, and that is logged). Done once the intent is acknowledged: the customer's identity is
        # handled only by a run the log knows of.
        context = {"case_id": "case-2026-0042", "customer_id": recorder.tokenize(customer_id, subject=customer_id)}
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
    sys.exit(main())
