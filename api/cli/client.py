"""The client commands of `auditlog`: add, proof (and --evidence), verify (the monitor) and verify-evidence.

They talk to a log over HTTP through api/client, imported when a command runs; this module imports neither
aiohttp's server nor SQLAlchemy, so a producer's or an auditor's machine needs neither to run them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sys
from pathlib import Path

from api.cli import exits, inputs
from api.cli.exits import CommandFailed, say, status_for_http
from api.cli.options import ProgressBar
from log.errors import InvalidInput, VerificationError
from log.hashing import hash_leaf


def _out(document) -> None:
    print(json.dumps(document, indent=1), flush=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read_inputs(paths: list[str]) -> list[tuple[str, bytes]]:
    inputs = []
    for path in paths or ["-"]:
        if path == "-":
            inputs.append(("-", sys.stdin.buffer.read()))
        else:
            try:
                inputs.append((path, Path(path).read_bytes()))
            except OSError as exc:
                raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
    return inputs


def cmd_add(args) -> int:
    return asyncio.run(_add(args))


async def _add(args) -> int:

    sources = _read_inputs(args.files)
    if args.lines:
        entries = [(f"{name}:{n}", line) for name, data in sources
                   for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    else:
        entries = sources
    if not entries:
        raise InvalidInput("nothing to add: the input is empty" if not args.lines
                           else "nothing to add: no non-empty lines", field="file")
    empty = [name for name, entry in entries if not entry]
    if empty:
        raise InvalidInput(f"nothing to add from {empty[0]}: it is empty (an entry has at least one byte)",
                           field="file")
    key = inputs.log_key(args, required=False)
    if key is None:
        say("add", f"no log verifier key (--log-key, AUDITLOG_VERIFIER_KEY or {inputs.default_log_key_file()}): "
                   "inclusion will not be verified")
        return await _add_unverified(inputs.servers(args), entries, batch=args.lines, ca_cert=args.ca_cert,
                                     token=inputs.token(args))
    async with inputs.log_client(args, key) as client:
        data = [entry for _, entry in entries]
        receipts = await (client.add_many(data) if args.lines else _each(client.add, data))
        for (name, _), receipt in zip(entries, receipts):
            print(json.dumps({"source": name, "index": receipt.index, "leaf_hash": _b64(receipt.leaf_hash),
                              "tree_size": receipt.tree_size, "inclusion": "verified"}), flush=True)
    return 0


async def _each(fn, items):
    return [await fn(item) for item in items]


async def _add_unverified(servers, entries: list[tuple[str, bytes]], *, batch: bool,
                          ca_cert: str | None = None, token: str | None = None) -> int:
    """Without a verifier key: submit and report what the server answered (checking only the leaf hashes). Each
    POST moves on to the next of `servers` (a ServerList) only when nothing reached the first, as LogClient.add."""
    import aiohttp

    from api.client.servers import client_timeout
    from api.client.tls import client_context

    context = client_context(ca_cert)
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=client_timeout(60), connector=connector, headers=headers) as session:
        async def post(**kwargs) -> dict:
            answer = await servers.arequest(session, "POST", "/api/v1/entries", idempotent=False, timeout=60,
                                            **kwargs)
            try:
                body = json.loads(answer.body)
            except ValueError:
                body = None
            if answer.status != 200 or not isinstance(body, dict):
                detail = body.get("detail", body) if isinstance(body, dict) else "(not JSON)"
                raise CommandFailed(f"{answer.url} refused the entry: HTTP {answer.status}: {detail}",
                                    status_for_http(answer.status))
            return body

        results = []
        if batch:
            for start in range(0, len(entries), 4096):
                chunk = entries[start:start + 4096]
                body = await post(json={"entries": [_b64(e) for _, e in chunk]})
                results += [(name, entry, item, body["tree_size"]) for (name, entry), item in zip(chunk, body["entries"])]
        else:
            for name, entry in entries:
                body = await post(data=entry, headers={"Content-Type": "application/octet-stream"})
                results.append((name, entry, body, body["tree_size"]))
        for name, entry, item, tree_size in results:
            if item["leaf_hash"] != _b64(hash_leaf(entry)):
                raise VerificationError(f"{name}: the log's leaf hash is not the hash of the entry sent")
            print(json.dumps({"source": name, "index": item["index"], "leaf_hash": item["leaf_hash"],
                              "tree_size": tree_size, "inclusion": "not verified (no --key)"}), flush=True)
    return 0


def _parse_leaf_hash(text: str) -> bytes:
    normalized = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        value = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != 32:
        try:
            value = bytes.fromhex(text)
        except ValueError:
            value = b""
    if len(value) != 32:
        raise InvalidInput(f"--leaf-hash {text!r} is not a 32-byte hash in base64, base64url or hex",
                           field="leaf_hash")
    return value


def cmd_proof(args) -> int:
    return asyncio.run(_proof(args))


async def _proof(args) -> int:

    if args.evidence is not None:
        return await _proof_evidence(args)
    if args.out is not None:
        raise InvalidInput("--out goes with --evidence", field="out")
    if args.wait:
        raise InvalidInput("--wait goes with --evidence", field="wait")
    leaf_hash = _parse_leaf_hash(args.leaf_hash) if args.leaf_hash is not None else None
    async with inputs.log_client(args) as client:
        proof = await client.inclusion_proof(args.index, args.tree_size, leaf_hash=leaf_hash)
        checkpoint = client.latest
        _out({
            "index": proof.index,
            "tree_size": proof.tree_size,
            "leaf_hash": _b64(proof.leaf_hash),
            "root_hash": _b64(proof.root),
            "hashes": [_b64(h) for h in proof.hashes],
            "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size,
                           "root_hash": _b64(checkpoint.root_hash)},
            "verified": True,
        })
    return 0


async def _proof_evidence(args) -> int:
    """Write one entry's offline evidence bundle (api/client/evidence.py): the newest timestamped checkpoint that
    includes the entry, else the newest witnessed one, else the latest; with its cosignatures and token. With
    --wait, first wait (api/client/waiting.py) until a cosigned and a timestamped checkpoint cover the entry."""
    from api.client.waiting import wait_for_entry
    from log.errors import NotFound
    from log.note import parse_note
    from api.client.evidence import build_entry_bundle, verify_entry_bundle

    index = args.evidence
    inputs.output_file(args.out, "--out")
    async with inputs.log_client(args) as client:
        latest, note = await client.signed_checkpoint()
        if index >= latest.size:
            raise NotFound(f"entry {index} is not in the log: its latest checkpoint has size {latest.size}")
        if args.wait:
            await wait_for_entry(client, index, timeout=args.timeout)
            latest, note = await client.signed_checkpoint()
        token = None
        try:
            stamped, stamped_note, stamped_token = await client.latest_timestamp()
            if stamped.size > index:
                note, token = stamped_note, stamped_token
        except NotFound:
            pass
        if token is None:
            try:
                witnessed, witnessed_note = await client.witnessed_checkpoint()
                if witnessed.size > index:
                    note = witnessed_note
            except NotFound:
                pass
        checkpoint = client.believe(note)
        entry = await client.entry(index, verify=False)
        proof = await client.inclusion_proof(index, checkpoint.size, leaf_hash=hash_leaf(entry))
        log_key = client.verifier.verifier_key
    bundle = build_entry_bundle(origin=checkpoint.origin, log_key=log_key, index=index, entry=entry,
                                tree_size=checkpoint.size, inclusion_proof=proof.hashes, checkpoint_note=note,
                                timestamp=token)
    verify_entry_bundle(bundle, log_key)  # what we write holds, as far as the log's key can tell
    text = json.dumps(bundle, indent=1) + "\n"
    cosignatures = len(parse_note(note).signatures) - 1  # the lines after the log's own signature
    if args.out:
        Path(args.out).write_text(text)
        print(f"evidence for entry {index} in checkpoint {checkpoint.origin} size {checkpoint.size} "
              f"({cosignatures} cosignatures, {'a' if token else 'no'} timestamp) written to {args.out}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_verify(args) -> int:
    return asyncio.run(_verify(args))


async def _verify(args) -> int:
    """One monitoring run, or with --watch one every INTERVAL until a round fails (its status) or SIGTERM/SIGINT
    (0). Local inputs (keys, the state file, the TSA certificate, the limits) are checked before any request."""
    from api.client.monitor import Monitor

    state = Path(args.state) if args.state else None
    witnesses, tsa_trusted = inputs.witness_policy(args), inputs.tsa_certificate(args)
    async with inputs.log_client(args) as client:
        monitor = Monitor(client, state, concurrency=args.concurrency, witnesses=witnesses, tsa_trusted=tsa_trusted,
                          max_witness_lag=args.max_witness_lag, max_timestamp_age=args.max_timestamp_age)
        if args.watch is None:
            report = await monitor.run(None if args.quiet or args.json else ProgressBar())
            _print_round(args, report, watching=False)
            return _STATUS[report.status]
        return await _watch(args, monitor)


_STATUS = {"valid": exits.OK, "invalid": exits.FAILED, "unavailable": exits.UNREACHABLE}


def _print_round(args, report, *, watching: bool) -> None:
    import datetime

    if args.json:
        document = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "exit_status": _STATUS[report.status], **report.to_dict()}
        print(json.dumps(document), flush=True)
        return
    for problem in report.problems:
        say("verify", f"{'FAILED' if problem.kind == 'integrity' else 'UNAVAILABLE'}: {problem.message}")
    if watching:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        size = f"size {report.checkpoint.size:,} · " if report.checkpoint is not None else ""
        print(f"{now} {size}{report.summary()}", flush=True)
        return
    if report.checkpoint is not None:
        print(f"checkpoint: {report.checkpoint.origin} size {report.checkpoint.size} root "
              f"{_b64(report.checkpoint.root_hash)}")
    if report.previous_size is not None:
        print(f"consistent with the saved checkpoint of size {report.previous_size}: "
              f"{'yes' if report.valid else 'not established'}")
    print(report.summary(), flush=True)


async def _watch(args, monitor) -> int:
    """Rounds every args.watch seconds (from the start of one to the start of the next, or at once when a round
    took longer). SIGTERM and SIGINT end the watch with 0, also in the middle of a round (which is abandoned)."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        while True:
            started = loop.time()
            round_task = asyncio.ensure_future(monitor.run())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({round_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                round_task.cancel()
                await asyncio.gather(round_task, return_exceptions=True)
                return exits.OK
            stopping.cancel()
            report = round_task.result()  # InvalidInput (the URL names no log) ends the watch with 2
            _print_round(args, report, watching=True)
            if not report.valid:
                return _STATUS[report.status]
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, started + args.watch - loop.time()))
                return exits.OK
            except asyncio.TimeoutError:
                pass
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def read_bundle(path: str):
    """An evidence bundle's JSON from a local file; InvalidInput (exit 2) when it cannot be read or is not JSON."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the bundle {path}: {getattr(exc, 'strerror', None) or exc}",
                           field="file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"the bundle {path} is not JSON: {exc}", field="file") from None


def cmd_verify_evidence(args) -> int:
    """An entry's or a run's evidence bundle (api/client/evidence.py `verify_evidence`, by its `format`): the log's
    key always; the witnesses' cosignatures with --witness-key, the timestamp with --tsa-ca, for both kinds. The
    keys and the certificate are read and checked before the bundle."""
    from api.client.evidence import EntryEvidenceReport, verify_evidence
    from log.audit.evidence import FORMAT as RUN_EVIDENCE_FORMAT
    from log.audit.schema import format_timestamp_ms
    from witness.rfc3161 import format_gen_time

    log_key = inputs.log_key(args)
    witnesses, tsa_trusted = inputs.witness_policy(args), inputs.tsa_certificate(args)
    bundle = read_bundle(args.file)
    report = verify_evidence(bundle, log_key, witnesses=witnesses, tsa_trusted=tsa_trusted)
    checkpoint = report.checkpoint
    cosigned = None if report.cosignatures is None else list(report.cosignatures.cosigned_by)
    stamp = report.timestamp
    if isinstance(report, EntryEvidenceReport):
        kind, about = "entry", {"index": report.index}
        first = (f"OK: entry {report.index} is included in checkpoint {checkpoint.origin} size {checkpoint.size}, "
                 f"signed by the log")
        warnings: list[str] = []
    else:
        evidence = report.evidence
        kind, warnings = ("run" if evidence.subject is None else "subject"), evidence.warnings
        about = {"run_id": evidence.run_id, "events": evidence.events, "producers": evidence.producers,
                 "registry_entries": evidence.registry_entries}
        if evidence.subject is not None:
            about["subject"] = evidence.subject
        if evidence.format == RUN_EVIDENCE_FORMAT:
            about.update(pruned_events=evidence.pruned_events, missing_blobs=evidence.missing_blobs, deleted=[
                {"kind": d.kind, "item": d.item, "deletion_index": d.deletion.index, "type": d.deletion.type,
                 "at": format_timestamp_ms(d.deletion.at), "reason": d.deletion.reason,
                 "policies": [p.index for p in d.policies], "listed": d.listed} for d in evidence.deleted])
        what = (f"run {evidence.run_id}" if evidence.subject is None else
                f"subject {evidence.subject['subject']} of tenant {evidence.subject['tenant']}")
        pruned = f" (and {evidence.pruned_events} pruned)" if evidence.pruned_events else ""
        first = (f"OK: {what}: {evidence.events} events{pruned} from {', '.join(evidence.producers) or 'nobody'}, "
                 f"{evidence.registry_entries} registry entries, all included in checkpoint {checkpoint.origin} "
                 f"size {checkpoint.size}, signed by the log; signatures, keys and causal order hold")
        if evidence.deleted:
            first += f"; {len(evidence.deleted)} deletion{'s' if len(evidence.deleted) > 1 else ''} proven"
    if args.json:
        _out({"verified": True, "kind": kind, "format": bundle["format"], **about,
              "checkpoint": {"origin": checkpoint.origin, "size": checkpoint.size,
                             "root_hash": _b64(checkpoint.root_hash)},
              "cosigned_by": cosigned,
              "timestamp": None if stamp is None else {"gen_time": format_gen_time(stamp.gen_time),
                                                        "tsa": stamp.tsa_name},
              "timestamp_present": report.has_timestamp, "warnings": warnings})
        return 0
    parts = [first]
    if report.cosignatures is not None:
        parts.append(f"cosigned by {len(report.cosignatures.cosigned_by)} of {report.cosignatures.total} witnesses")
    if stamp is not None:
        parts.append(f"timestamp VALID (genTime {format_gen_time(stamp.gen_time)}, {stamp.tsa_name})")
    elif report.has_timestamp:
        parts.append("timestamp present, not checked (no --tsa-ca)")
    print(" · ".join(parts))
    if not isinstance(report, EntryEvidenceReport):
        for deletion in report.evidence.deleted:
            print(f"deleted: {deletion.describe()}")
    for warning in warnings:
        print(f"note: {warning}")
    return 0