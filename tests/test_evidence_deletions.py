"""Evidence survives deletion (issue 20): a run whose event was pruned, whose blobs were deleted and whose data
subject was erased still gets a bundle that verifies offline (auditlog.evidence/v3), stating what was deleted, when
and under which policy, each statement checked against the proven log entry that records it; a run that lost
nothing still gets v2; a data subject's access bundle verifies; every mutation of a deletion claim fails the check
it names (checks 11 and 12 of log/audit/evidence.py).

The deletions are written here as the lifecycle code writes them (design20: the entry and its deletion_items rows in
one commit, then the pruning: empty entry bytes and a pruned_entries row in one transaction; the vault's erased
subject key row): this tests the bundle, not retention or erasure (their own tests and the e2e lifecycle test do).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json

import pytest
import sqlalchemy as sa

from api.cli.main import main as cli_main
from api.client.evidence import verify_evidence
from log.audit.canonical import canonicalize
from log.audit.errors import EvidenceError
from log.audit.evidence import FORMAT, FORMAT_V2, verify_bundle
from log.audit.lifecycle_names import deletion_list_sha256
from log.audit.schema import format_timestamp_ms
from log.audit.tables import (
    audit_event_tokens, deletion_items, pruned_entries, vault_subject_keys, vault_tokens,
)
from log.errors import StorageError
from log.storage import RowInsert
from log.storage.schema import entries
from tests.test_audit_blobs import Producer, _clock, _open, _close

ORIGIN = "example.com/evidence-deletions"
TENANT = "acme"
AT = format_timestamp_ms(int(_clock() * 1000))
TOKEN_A = "vt." + "a" * 26  # the customer id's token, carried by the first event
TOKEN_B = "vt." + "b" * 26  # another value's token, never erased
SUBJECT = "vt." + "s" * 26  # the data subject's token


def _event(n: int, parent: int | None = None, run: str = "run-1", **extra) -> dict:
    event = {"schema": "auditlog.event/v1", "event_id": f"ev-{n}", "trace_id": "tr-1", "run_id": run,
             "timestamp": AT, "tenant": TENANT, "actor": {"type": "agent", "id": "a-1"},
             "event_type": "model_call", **extra}
    if parent is not None:
        event["parent_event_id"] = f"ev-{parent}"
    return event


def _ref(content: bytes) -> dict:
    return {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "media_type": "text/plain"}


async def _submit(audit, producer, *events) -> list[int]:
    result = await audit.submit(json.dumps({"events": [producer.envelope(e) for e in events]}).encode())
    return [r.index for r in result.results]


async def _log_deletion(log, record: dict, items: list[tuple[str, str]], *, extra_rows=None) -> int:
    """A lifecycle entry as retention or erasure writes it: the record committing to its list, then the list."""
    record = {**record, "list_sha256": deletion_list_sha256(items)}
    rows = [RowInsert(deletion_items.name, ("kind", "item"), item, index_column="deletion_idx") for item in items]
    index = (await log.add_entries([canonicalize(record)], rows=[rows])).first_index
    if extra_rows:
        await log.write(lambda tx: extra_rows(tx, index))
    return index


async def _prune(log, index: int, deletion_index: int) -> None:
    def work(tx):
        tx.execute(sa.update(entries).where(entries.c.idx == index).values(data=b""))
        tx.execute(pruned_entries.insert().values(idx=index, deletion_idx=deletion_index, pruned_at=0))

    await log.write(work)


class World:
    """One run of three events (the first carries TOKEN_A and TOKEN_B and cites the prompt, the second cites the
    answer), then: the third pruned by a retention run under a policy, the prompt erased by an admin, and the
    subject of TOKEN_A erased (its key destroyed, the answer deleted with it)."""

    def __init__(self):
        self.producer = Producer()
        self.prompt, self.answer = b"the prompt", b"the answer"

    async def build(self, log, audit) -> None:
        await audit.register_producer(self.producer.name, [TENANT])
        await audit.add_key(self.producer.name, self.producer.public, not_before=0)
        for blob in (self.prompt, self.answer):
            await audit.put_blob(hashlib.sha256(blob).hexdigest(), blob)
        self.indices = await _submit(
            audit, self.producer,
            _event(1, context={"customer_id": TOKEN_A, "order_id": TOKEN_B}, input=_ref(self.prompt)),
            _event(2, parent=1, output=_ref(self.answer)), _event(3, parent=2))
        await _submit(audit, self.producer, _event(9, run="run-other"))
        self.intact = await audit.evidence("run-1")

        self.policy = (await log.add_entries([canonicalize({
            "type": "auditlog.retention-policy/v1", "tenant": TENANT, "record_class": "event",
            "selector": "model_call", "retain_days": 0, "reason": "raw calls kept 0 days", "at": AT})])).first_index
        pruned = self.indices[2]
        self.run = await _log_deletion(log, {
            "type": "auditlog.retention-run/v1", "tenant": TENANT, "at": AT, "policies": [self.policy],
            "deleted": {"entry": 1}, "skipped": {}}, [("entry", str(pruned))])
        await _prune(log, pruned, self.run)

        self.prompt_erasure = await audit.erase_blob(hashlib.sha256(self.prompt).hexdigest(), "leaked a secret")

        answer = hashlib.sha256(self.answer).hexdigest()

        def vault_rows(tx, index):
            tx.execute(vault_subject_keys.insert().values(
                tenant=TENANT, subject=SUBJECT, wrapped_key=None, master_key_id="k1", created_at=0, erased_at=1,
                erasure_idx=index))
            tx.execute(vault_tokens.insert().values(tenant=TENANT, token=TOKEN_A, subject=SUBJECT, sealed=b"x",
                                                    created_at=0))
            have = tx.execute(sa.select(audit_event_tokens.c.idx).where(audit_event_tokens.c.token == TOKEN_A))
            if not have:  # the vault's index of tokens in events (log/audit/service.py index_rows) may write it
                tx.execute(audit_event_tokens.insert().values(token=TOKEN_A, tenant=TENANT, idx=self.indices[0]))

        self.erasure = await _log_deletion(log, {
            "type": "auditlog.subject-erasure/v1", "tenant": TENANT, "subject": SUBJECT, "reason": "GDPR art. 17",
            "at": AT}, [("blob", answer), ("subject", f"{TENANT}/{SUBJECT}")], extra_rows=vault_rows)
        await audit._read(audit.blobs.delete, answer)
        self.bundle = await audit.evidence("run-1")
        self.subject_bundle = await audit.subject_evidence(TENANT, SUBJECT, [TOKEN_A])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[World, str]:
    from log.service import LogConfig

    tmp_path = tmp_path_factory.mktemp("evidence-deletions")
    config = LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002)
    world = World()

    async def main():
        log, audit = await _open(config, tmp_path)
        try:
            await world.build(log, audit)
            return log.verifier_key
        finally:
            await _close(log, audit)

    return world, asyncio.run(main())


def test_a_run_that_lost_nothing_gets_a_v2_bundle(world):
    w, log_key = world
    assert w.intact["format"] == FORMAT_V2
    assert verify_bundle(w.intact, log_key).events == 3


def test_a_run_with_a_pruned_event_deleted_blobs_and_an_erased_subject_still_verifies(world, tmp_path, capsys):
    w, log_key = world
    bundle = w.bundle
    assert bundle["format"] == FORMAT
    assert [e["index"] for e in bundle["events"]] == w.indices[:2]
    assert [(p["index"], p["deletion_index"]) for p in bundle["pruned_events"]] == [(w.indices[2], w.run)]
    prompt, answer = (hashlib.sha256(b).hexdigest() for b in (w.prompt, w.answer))
    assert {b["sha256"]: b["deletion_index"] for b in bundle["deleted_blobs"]} == {
        prompt: w.prompt_erasure, answer: w.erasure}
    assert bundle["erased_subjects"] == [
        {"tenant": TENANT, "subject": SUBJECT, "tokens": [TOKEN_A], "deletion_index": w.erasure}]
    assert [d["index"] for d in bundle["deletions"]] == [w.run, w.prompt_erasure, w.erasure]
    assert bundle["deletions"][1]["items"] is None  # a blob erasure names its blob itself
    assert [p["index"] for p in bundle["policies"]] == [w.policy]

    report = verify_evidence(bundle, log_key).evidence
    assert (report.events, report.pruned_events, report.warnings) == (2, 1, [])
    said = {(d.kind, d.item): (d.deletion.index, [p.index for p in d.policies]) for d in report.deleted}
    assert said == {("entry", str(w.indices[2])): (w.run, [w.policy]), ("blob", prompt): (w.prompt_erasure, []),
                    ("blob", answer): (w.erasure, []), ("subject", f"{TENANT}/{SUBJECT}"): (w.erasure, [])}
    texts = [d.describe() for d in report.deleted]
    assert any("pruned by retention-run/v1 entry" in t and "raw calls kept 0 days" in t for t in texts), texts
    assert any("GDPR art. 17" in t for t in texts) and any("leaked a secret" in t for t in texts), texts

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert cli_main(["verify-evidence", str(path), "--log-key", log_key]) == 0
    out = capsys.readouterr().out
    assert "2 events (and 1 pruned)" in out and out.count("deleted: ") == 4, out


def test_a_data_subjects_access_bundle_verifies_and_names_the_erasure(world):
    w, log_key = world
    bundle = w.subject_bundle
    assert bundle["format"] == FORMAT and "run_id" not in bundle
    assert bundle["subject"] == {"tenant": TENANT, "subject": SUBJECT, "tokens": [TOKEN_A]}
    assert [e["index"] for e in bundle["events"]] == [w.indices[0]]
    report = verify_bundle(bundle, log_key)
    assert report.subject == bundle["subject"] and report.run_id is None
    assert {d.kind for d in report.deleted} == {"blob", "subject"}

    other = copy.deepcopy(bundle)
    other["events"].append(copy.deepcopy(w.bundle["events"][1]))  # the run's second event carries no token of it
    with pytest.raises(EvidenceError, match=r"^check 5 \(events\).*carries none of the subject's tokens"):
        verify_bundle(other, log_key)


def _b64flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _deletion(bundle: dict, index: int) -> dict:
    return next(d for d in bundle["deletions"] if d["index"] == index)


# name -> (mutation of a copy of the bundle, given the world; the check that must fail)
MUTATIONS = {
    "v2 with deletion fields": (lambda b, w: b.update(format=FORMAT_V2), 1),
    "run and subject both": (lambda b, w: b.update(subject={"tenant": TENANT, "subject": SUBJECT, "tokens": []}), 1),
    "unknown field": (lambda b, w: b.update(restored=[]), 1),
    "no events at all": (lambda b, w: b.update(events=[], pruned_events=[]), 1),
    "deletion entry byte flipped": (lambda b, w: _deletion(b, w.run).update(entry=_b64flip(
        _deletion(b, w.run)["entry"])), 11),
    "deletion entry proof cut": (lambda b, w: _deletion(b, w.erasure)["inclusion_proof"].pop(), 11),
    "deletion list item dropped": (lambda b, w: _deletion(b, w.erasure)["items"].pop(), 11),
    "deletion list unsorted": (lambda b, w: _deletion(b, w.erasure)["items"].reverse(), 11),
    "deletions out of order": (lambda b, w: b["deletions"].reverse(), 11),
    "a blob erasure with a list": (lambda b, w: _deletion(b, w.prompt_erasure).update(items=[]), 11),
    "policy left out": (lambda b, w: b.update(policies=[]), 11),
    "a registry change as the policy": (lambda b, w: b["policies"].__setitem__(0, b["registry"][0]), 11),
    "not a deletion record": (lambda b, w: b["deletions"].__setitem__(0, {**b["registry"][0], "items": None}), 11),
    "pruned leaf hash flipped": (lambda b, w: b["pruned_events"][0].update(
        leaf_hash=_b64flip(b["pruned_events"][0]["leaf_hash"])), 12),
    "pruned index moved": (lambda b, w: b["pruned_events"][0].update(index=b["pruned_events"][0]["index"] + 1), 12),
    "pruned by a blob erasure": (lambda b, w: b["pruned_events"][0].update(deletion_index=w.prompt_erasure), 12),
    "pruned by an entry not carried": (lambda b, w: b["pruned_events"][0].update(deletion_index=w.policy), 12),
    "pruned event also present": (lambda b, w: b["pruned_events"][0].update(index=b["events"][0]["index"]), 12),
    "blob not cited": (lambda b, w: b["deleted_blobs"].append({"sha256": "f" * 64, "deletion_index": w.erasure}),
                       12),
    "blob deleted by a run that did not list it": (lambda b, w: b["deleted_blobs"][0].update(
        deletion_index=w.run), 12),
    "blob claimed deleted and missing": (lambda b, w: b.update(missing_blobs=[b["deleted_blobs"][0]["sha256"]]),
                                         12),
    "subject token not in the events": (lambda b, w: b["erased_subjects"][0].update(tokens=["vt." + "c" * 26]), 12),
    "another subject": (lambda b, w: b["erased_subjects"][0].update(subject="vt." + "z" * 26), 12),
    "subject erased by a blob erasure": (lambda b, w: b["erased_subjects"][0].update(
        deletion_index=w.prompt_erasure), 12),
    "claims dropped: a deletion backs nothing": (lambda b, w: b.update(erased_subjects=[], deleted_blobs=[
        x for x in b["deleted_blobs"] if x["deletion_index"] != w.erasure]), 12),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_mutation_of_a_deletion_claim_fails_its_check(world, name):
    w, log_key = world
    mutate, check = MUTATIONS[name]
    bundle = copy.deepcopy(w.bundle)
    mutate(bundle, w)
    with pytest.raises(EvidenceError) as failed:
        verify_bundle(bundle, log_key)
    assert failed.value.check == check, str(failed.value)


def test_a_list_too_long_to_carry_is_checked_against_its_entry_with_a_warning(world):
    w, log_key = world
    bundle = copy.deepcopy(w.bundle)
    _deletion(bundle, w.erasure)["items"] = None
    report = verify_bundle(bundle, log_key)
    assert [d.listed for d in report.deleted if d.deletion.index == w.erasure] == [False, False]
    assert any(f"GET /api/v1/deletions/{w.erasure}" in warning for warning in report.warnings), report.warnings


A, B, C = "vt." + "a" * 26, "vt." + "b" * 26, "vt." + "c" * 26


@pytest.mark.parametrize("text, whole, found", [
    (A, True, [A]),
    (f"id {B} and {C}", False, [B, C]),
    ("x" + A, False, []),  # the token would continue an id
    ("case:" + A, False, []),
    (A + "a", False, []),  # 27 characters
    ("vt." + "A" * 26, False, []),  # base32 here is lowercase
    ("vt." + "a" * 25, False, []),
    (A + ".x", False, [A]),  # a full stop ends a token in prose
    ("no token", False, []),
])
def test_vault_token_shapes_in_events(text, whole, found):
    """log/audit/lifecycle_names.py: what the index of tokens in events and the verifiers take for a vault token,
    anywhere in any string of an event, member names too."""
    from log.audit.lifecycle_names import is_vault_token, tokens_in_event

    assert is_vault_token(text) is whole
    assert tokens_in_event(json.dumps({"context": {"id": text}}).encode()) == found
    assert tokens_in_event(json.dumps({text: 1}).encode()) == found


def test_a_real_retention_runs_deletions_verify(tmp_path):
    """The same bundle from deletions log/audit/retention.py made itself (its records, lists and pruning); and none
    once an entry is empty without a prune record."""
    import time

    from log.audit.retention import Retention
    from log.service import LogConfig

    producer = Producer()
    answer = b"an answer kept 0 days"

    async def main():
        log, audit = await _open(LogConfig(data_dir=tmp_path / "data", origin=ORIGIN, batch_max_age=0.002), tmp_path)
        try:
            await audit.register_producer(producer.name, [TENANT])
            await audit.add_key(producer.name, producer.public, not_before=0)
            await audit.put_blob(hashlib.sha256(answer).hexdigest(), answer)
            # The intent cites the answer too: a payload only a pruned event cited leaves no reference to show.
            indices = await _submit(audit, producer, _event(1, event_type="intent", input=_ref(answer)),
                                    _event(2, parent=1, event_type="tool_call", output=_ref(answer)))
            retention = Retention(log, audit.blobs, clock=lambda: time.time() + 5)
            policies = [(await retention.set_policy(TENANT, cls, selector, 0, "kept 0 days")).index
                        for cls, selector in (("event", "tool_call"), ("blob", "*"))]
            (result,) = await retention.run(TENANT)
            bundle = await audit.evidence("run-1")
            # An entry emptied with no run that pruned it is damage: no bundle shows the run as if it were whole.
            await log.write(lambda tx: tx.execute(sa.update(entries).where(entries.c.idx == indices[0])
                                                  .values(data=b"")))
            with pytest.raises(StorageError, match=f"entry {indices[0]} is empty but no retention run pruned it"):
                await audit.evidence("run-1")
            return indices, policies, result.index, bundle, log.verifier_key
        finally:
            await _close(log, audit)

    indices, policies, run, bundle, log_key = asyncio.run(main())
    report = verify_bundle(bundle, log_key)
    assert (report.events, report.pruned_events, report.warnings) == (1, 1, [])
    assert {(d.kind, d.item, d.deletion.index, tuple(p.index for p in d.policies)) for d in report.deleted} == {
        ("entry", str(indices[1]), run, tuple(policies)),
        ("blob", hashlib.sha256(answer).hexdigest(), run, tuple(policies))}


def test_the_verifier_names_the_lifecycle_records_as_their_writers_do():
    """log/audit/evidence.py names the record types it checks without importing their writers (which need
    sqlalchemy, and a verifier does without): held to the writers' names here."""
    from log.audit import evidence, retention, subjects

    assert (evidence.RETENTION_RUN_TYPE, evidence.RETENTION_POLICY_TYPE, evidence.SUBJECT_ERASURE_TYPE) == (
        retention.RUN_TYPE, retention.POLICY_TYPE, subjects.SUBJECT_ERASURE_TYPE)
