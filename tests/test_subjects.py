"""Data-subject erasure (log/audit/subjects.py) over a real AuditService with its vault: what is destroyed, what a
legal hold or a retention obligation keeps and how the entry records it, the deletion list its hash commits to, and
an erasure interrupted after its entry finished by `resume`.

The retention obligation is given as the function the server passes (log/audit/retention.py blob_retention_until's
signature), here one that names a single blob: which blobs a policy keeps is retention's to test.

What each would catch:
- test_erasure_destroys_the_key_and_free_blobs_and_records_what_it_kept: a held or obliged blob deleted, a blob other
  records cite too deleted with the subject's, a skip not counted in the entry, a list hash over other items than
  those destroyed, a reference in the entry.
- test_a_held_subject_keeps_its_key: a key shredded while a hold covers the subject's events.
- test_an_erasure_interrupted_after_its_entry_is_finished_by_resume: destruction lost when the process fails
  between the entry and the end.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json

import pytest
from sqlalchemy import select

from log.access import Principal
from log.audit.service import AuditService
from log.audit.lifecycle_names import deletion_list_sha256
from log.audit.subjects import SubjectRequests, parse_subject_erasure
from log.audit.tables import deletion_items, subject_erasures
from log.audit.vault_keys import LocalMasterKey
from log.blobs import FileBlobStore
from log.errors import InvalidInput, StorageError
from log.service import Log, LogConfig
from tests.postgres import fresh_database
from tests.test_lifecycle_routes import Producer, event, ref

VAULT_READER = Principal("token:reader", "vault-reader", frozenset({"acme"}))
REFERENCE = "alice@example.com"


def _clock() -> float:
    return datetime.datetime(2026, 3, 2, tzinfo=datetime.timezone.utc).timestamp()


def _run(tmp_path, work, *, retained=(), database_url: str | None = None):
    """`retained`: sha256s a retention policy (entry index 42) still obliges the log to keep."""

    def retention_until(tx, tenant, sha256s, now_ms):
        return {sha: (now_ms + 86_400_000, 42) for sha in sha256s if sha in retained}

    async def main():
        log = await Log.open(LogConfig(data_dir=tmp_path / "data", origin="example.com/subjects",
                                       batch_max_age=0.002, database_url=database_url))
        audit = await AuditService.open(log, FileBlobStore(tmp_path / "blobs"), clock=_clock,
                                        vault_master_key=LocalMasterKey(b"k" * 32))
        try:
            return await work(log, audit, SubjectRequests(audit, retention_until, clock=_clock))
        finally:
            await audit.close()
            await log.close()

    return asyncio.run(main())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def world(audit, *blobs: bytes, events=()) -> None:
    producer = Producer()
    await audit.register_producer(producer.name, ["acme"])
    await audit.add_key(producer.name, producer.public, not_before=0)
    for data in blobs:
        await audit.put_blob(sha(data), data)
    result = await audit.submit(json.dumps({"events": [producer.envelope(e) for e in events]}).encode())
    assert all(type(r).__name__ == "Receipt" for r in result.results), result.results


async def erasure_rows(log, index: int):
    d, s = deletion_items.c, subject_erasures.c
    return await log.read(lambda tx: (
        sorted(tx.execute(select(d.kind, d.item).where(d.deletion_idx == index))),
        tx.execute(select(s.tenant, s.subject, s.finished_at).where(s.idx == index))))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_erasure_destroys_the_key_and_free_blobs_and_records_what_it_kept(tmp_path, backend):
    shared, obliged, free = b"prompt also in a held run", b"answer under retention", b"prompt of the subject"
    system = b"the system prompt every run sends"

    async def work(log, audit, subjects):
        tokens = await audit.vault.tokenize("acme", REFERENCE, [REFERENCE, "+44 20 7946 0000"])
        subject, email, phone = tokens.subject, tokens.tokens[0], tokens.tokens[1]
        assert subject == email  # the reference's token is the subject's name
        await world(audit, shared, obliged, free, system, events=[
            event(1, context={"customer_id": email}, input=ref(shared)),
            event(2, run_id="run-held", input=ref(shared)),           # no token of the subject: held, not hers
            event(3, context={"customer_id": email}, output=ref(obliged)),
            event(4, context={"phone": phone}, input=ref(free), output=ref(system)),
            event(5, run_id="run-other", input=ref(system)),          # another record cites it too: not hers alone
        ])
        hold = (await audit.holds.place({"tenant": "acme", "run_ids": ["run-held"]}, "litigation", "case 17")).hold

        with pytest.raises(InvalidInput) as caught:
            await subjects.erase("acme", REFERENCE, " ")
        assert caught.value.field == "reason"

        receipt = await subjects.erase("acme", REFERENCE, "GDPR art. 17 request 2026-031")
        record = parse_subject_erasure(json.loads((await log.entry(receipt.index)).data))
        assert REFERENCE.encode() not in (await log.entry(receipt.index)).data
        assert (record["tenant"], record["subject"], record["key_shredded"], record["blobs_deleted"]) == (
            "acme", subject, True, 1)
        assert record["skipped"] == {"subject_hold": None, "blobs_held": {hold.hold_id: 1},
                                     "blobs_retained": {"42": 1}, "blobs_shared": 1}
        assert not receipt.complete and receipt.to_json()["complete"] is False

        items, erasure = await erasure_rows(log, receipt.index)
        assert items == [("blob", sha(free)), ("subject", f"acme/{subject}")]
        assert record["list_sha256"] == deletion_list_sha256(items)
        assert erasure[0][:2] == ("acme", subject) and erasure[0][2] is not None  # finished

        assert not audit.blobs.exists(sha(free))
        assert all(audit.blobs.exists(sha(d)) for d in (shared, obliged, system))
        answer = await audit.vault.detokenize("acme", [email, phone], "check the erasure", VAULT_READER)
        assert [v.status for v in answer.values] == ["erased", "erased"]
        state = await audit.vault.subject_state("acme", subject)
        assert state["erasure_idx"] == receipt.index

        again = await subjects.erase("acme", REFERENCE, "asked again")  # allowed, logged, nothing left to destroy
        assert (again.record["blobs_deleted"], again.record["key_shredded"]) == (0, True)
        assert (await audit.vault.subject_state("acme", subject))["erasure_idx"] == receipt.index

    if backend == "sqlite":
        _run(tmp_path, work, retained={sha(obliged)})
    else:
        with fresh_database() as url:
            _run(tmp_path, work, retained={sha(obliged)}, database_url=url)


def test_a_held_subject_keeps_its_key(tmp_path):
    own = b"the subject's prompt"

    async def work(log, audit, subjects):
        tokens = await audit.vault.tokenize("acme", REFERENCE, [REFERENCE])
        await world(audit, own, events=[event(1, run_id="run-held", context={"customer_id": tokens.subject},
                                              input=ref(own))])
        hold = (await audit.holds.place({"tenant": "acme", "run_ids": ["run-held"]}, "litigation", "case 17")).hold
        receipt = await subjects.erase("acme", REFERENCE, "request 2026-032")
        assert receipt.record["key_shredded"] is False and receipt.record["blobs_deleted"] == 0
        assert receipt.record["skipped"]["subject_hold"] == hold.hold_id
        assert receipt.record["skipped"]["blobs_held"] == {hold.hold_id: 1}
        assert (await erasure_rows(log, receipt.index))[0] == []
        answer = await audit.vault.detokenize("acme", [tokens.subject], "still held", VAULT_READER)
        assert answer.values[0].value == REFERENCE and audit.blobs.exists(sha(own))

        await audit.holds.release(hold.hold_id, "case closed")
        receipt = await subjects.erase("acme", REFERENCE, "request 2026-032, after the hold")
        assert receipt.complete and receipt.record["blobs_deleted"] == 1
        answer = await audit.vault.detokenize("acme", [tokens.subject], "after", VAULT_READER)
        assert answer.values[0].status == "erased" and not audit.blobs.exists(sha(own))

    _run(tmp_path, work)


def test_an_erasure_interrupted_after_its_entry_is_finished_by_resume(tmp_path):
    first, second = b"first prompt", b"second prompt"

    async def work(log, audit, subjects):
        tokens = await audit.vault.tokenize("acme", REFERENCE, [REFERENCE])
        await world(audit, first, second, events=[event(1, context={"customer_id": tokens.subject},
                                                        input=ref(first), output=ref(second))])
        real_delete = audit.blobs.delete
        deleted: list[str] = []

        def failing_delete(digest):  # the process "dies" after the first unlink
            if deleted:
                raise StorageError("simulated crash while deleting")
            deleted.append(digest)
            return real_delete(digest)

        audit.blobs.delete = failing_delete
        with pytest.raises(StorageError):
            await subjects.erase("acme", REFERENCE, "request 2026-033")
        size = log.size
        index = size - 1
        items, erasure = await erasure_rows(log, index)
        assert erasure[0][2] is None and len(items) == 3  # logged with its list, not finished
        assert sum(audit.blobs.exists(sha(d)) for d in (first, second)) == 1

        audit.blobs.delete = real_delete
        assert await subjects.resume() == 1
        assert await subjects.resume() == 0
        assert (await erasure_rows(log, index))[1][0][2] is not None
        assert not audit.blobs.exists(sha(first)) and not audit.blobs.exists(sha(second))
        assert (await audit.vault.subject_state("acme", tokens.subject))["erasure_idx"] == index
        assert log.size == size  # resuming writes no second entry

    _run(tmp_path, work)
