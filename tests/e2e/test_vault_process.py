"""The token vault on a real server over PostgreSQL: a producer tokenises with the SDK and records an event carrying
the token; a vault-reader detokenises with the SDK and the CLI (each a log entry naming the tokens by hash, never
the values), refused without a purpose or the role; the database holds no value in clear; the same server started
again with another master key refuses to start."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import psycopg

from api.client.log_client import SyncLogClient
from log.audit.lifecycle_names import token_sha256
from log.audit.vault import VAULT_ACCESS_TYPE
from log.audit.vault_keys import LocalMasterKey
from tests.postgres import fresh_database
from tests.processes import REPO, ServerProcess
from tests.test_access_control import call, create_token, tenant_recorder


def test_tokenise_record_detokenise_on_a_real_server(tmp_path):
    key_file = tmp_path / "vault.key"
    key_file.write_text(LocalMasterKey.generate().encoded() + "\n")
    with fresh_database() as url:
        server = ServerProcess(tmp_path / "data", url, ["--vault-key-file", str(key_file), "--verify-processes", "0"])
        server.start()
        try:
            base, admin = server.url, server.admin_token
            vkey = (tmp_path / "data" / "log.vkey").read_text().strip()
            writer, _ = create_token(base, admin, "writer", ["acme"])
            reader, _ = create_token(base, admin, "vault-reader", ["acme"])

            # A producer tokenises at the boundary and records only tokens.
            recorder = tenant_recorder(base, admin, vkey, "acme", writer)
            customer = recorder.tokenize("cust-8f3a-secret", subject="cust-8f3a-secret")
            email, phone = recorder.tokenize(["alice.secret@example.com", "+44 20 7946 0999"],
                                             subject="cust-8f3a-secret")
            with recorder.action("run-vault", context={"customer_id": customer}) as action:
                action.record("tool_call", context={"customer_id": customer},
                              extensions={"contact": f"emailed {email}"})
            recorder.close()

            # A vault-reader detokenises with a purpose: logged first, then answered.
            with SyncLogClient(base, vkey, token=reader) as client:
                answer = client.detokenize("acme", [email, customer, "vt." + "a" * 26], "chargeback 2026-118")
            assert [(v["status"], v.get("value")) for v in answer["values"]] == [
                ("found", "alice.secret@example.com"), ("found", "cust-8f3a-secret"), ("unknown", None)]
            status, _, body = call(base, "GET", f"/api/v1/entries/{answer['index']}", admin)
            assert status == 200
            entry = base64.b64decode(json.loads(body)["data"])
            access = json.loads(entry)
            assert access["type"] == VAULT_ACCESS_TYPE and access["purpose"] == "chargeback 2026-118"
            assert access["role"] == "vault-reader" and access["credential"].startswith("token:")
            assert token_sha256(email) in access["token_sha256"] and b"alice" not in entry

            # The CLI, as an investigator runs it.
            cli = subprocess.run([sys.executable, "-m", "api.cli", "vault", "detokenize", "--tenant", "acme",
                                  "--purpose", "fraud review 7", phone, "--server", base, "--token", reader],
                                 cwd=REPO, capture_output=True, text=True, timeout=60)
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["values"][0]["value"] == "+44 20 7946 0999"

            # Refused: no purpose (400), the wrong role (403: a writer, even an admin), the wrong tenant (403).
            ask = {"tenant": "acme", "tokens": [email]}
            assert call(base, "POST", "/api/v1/vault/detokenize", reader, ask)[0] == 400
            for who in (writer, admin):
                assert call(base, "POST", "/api/v1/vault/detokenize", who, {**ask, "purpose": "p"})[0] == 403
            assert call(base, "POST", "/api/v1/vault/detokenize", reader,
                        {**ask, "tenant": "globex", "purpose": "p"})[0] == 403
            cli = subprocess.run([sys.executable, "-m", "api.cli", "vault", "detokenize", "--tenant", "acme",
                                  "--purpose", "curious", email, "--server", base, "--token", writer],
                                 cwd=REPO, capture_output=True, text=True, timeout=60)
            assert cli.returncode == 2 and "403" in cli.stderr and "alice" not in cli.stdout + cli.stderr

            # The event carries the tokens, and the index of tokens in events finds it.
            events = json.loads(call(base, "GET", f"/api/v1/events?customer_id={customer}", admin)[2])["events"]
            assert len(events) == 3  # intent, tool call, outcome
        finally:
            server.stop()

        # Nothing in the database holds a value or the subject reference in clear.
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            # Every vault row as raw bytes (bytea as stored, text as UTF-8: a bytea's text form is hex, which
            # would hide a value in clear), and every entry.
            dump = b"".join(bytes(row[0] or b"") for row in conn.execute(
                "SELECT sealed FROM vault_tokens UNION ALL SELECT convert_to(tenant || token || subject, 'UTF8') "
                "FROM vault_tokens UNION ALL SELECT wrapped_key FROM vault_subject_keys UNION ALL "
                "SELECT convert_to(tenant || subject, 'UTF8') FROM vault_subject_keys UNION ALL "
                "SELECT wrapped_key FROM vault_tenant_keys UNION ALL SELECT data FROM entries"))
        assert customer.encode() in dump and email.encode() in dump  # the tokens are there: the dump is real
        for secret in (b"alice.secret", b"cust-8f3a-secret", b"7946 0999"):
            assert secret not in dump

        # Another master key: the server refuses to start, saying why, in one line.
        wrong = tmp_path / "wrong.key"
        wrong.write_text(LocalMasterKey.generate().encoded() + "\n")
        refused = ServerProcess(tmp_path / "data", url, ["--vault-key-file", str(wrong)])
        code, output = refused.run_to_exit()
        assert code != 0 and "master key" in output and "Traceback" not in output, output
        env_key = {**os.environ, "AUDITLOG_VAULT_MASTER_KEY": "bm90IGEga2V5"}  # base64, but not of 32 bytes
        done = subprocess.run(ServerProcess(tmp_path / "data", url).command(), cwd=REPO, capture_output=True,
                              text=True, timeout=60, env=env_key)
        assert done.returncode == 2 and "AUDITLOG_VAULT_MASTER_KEY" in done.stderr, done.stderr
