"""What the audit personality writes into the log: these kinds of entry, each the RFC 8785 canonical JSON of an
object whose `type` says which.

* `auditlog.envelope/v1`: a producer's signed event, exactly as accepted:
  `{"event": {...}, "key_id": "...", "producer": "...", "signature": "<base64, 64 bytes>", "type": ...}`.
  The signature is Ed25519 over the canonical bytes of `event` (which carries `"schema": "auditlog.event/v1"`).
* `auditlog.registry-change/v1`: one change to the producer registry (`change` is producer-registered,
  key-added, key-retired or key-revoked), with the admin's reason and the time it took effect (`at`).
* `auditlog.blob-erasure/v1`: an administrator deleted a blob (the sha256 and the reason), so that an auditor
  who finds a payload missing finds why, in the log.
* `auditlog.token-change/v1`: an administrator created an API token (its id, role, tenants, expiry and the
  SHA-256 of its secret, never the secret) or revoked one (log/audit/tokens.py).
* `auditlog.retention-policy/v1`, `auditlog.retention-run/v1`: a retention policy set, changed or removed, and a
  retention run with the hash of what it deletes (log/audit/retention.py formats and parses them).
* `auditlog.legal-hold/v1`, `auditlog.subject-erasure/v1`: a legal hold placed or released, a data subject erased
  (log/audit/holds.py, log/audit/subjects.py).
* `auditlog.audit-drill/v1`: an auditor's drill of a tenant: the runs picked with its seed, whether each one's
  evidence verified offline, the completeness findings, time-to-evidence (log/audit/drills.py formats and parses it).

Times are RFC 3339 UTC with milliseconds on the wire and Unix milliseconds in memory; public keys are standard
base64 on the wire and raw bytes in memory. Every formatter here has its parser, held together by round-trip
tests.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from log.access import ROLES, check_tenants
from log.audit.canonical import canonicalize, canonicalize_parsed, parse_json
from log.audit.errors import InvalidEvent
from log.audit.registry import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, key_id_for
from log.audit.schema import TOKEN_PATTERN, format_timestamp_ms, parse_timestamp_ms, python_regex, validate_event

ENVELOPE_TYPE = "auditlog.envelope/v1"
REGISTRY_CHANGE_TYPE = "auditlog.registry-change/v1"
BLOB_ERASURE_TYPE = "auditlog.blob-erasure/v1"
TOKEN_CHANGE_TYPE = "auditlog.token-change/v1"
RETENTION_POLICY_TYPE = "auditlog.retention-policy/v1"  # log/audit/retention.py
RETENTION_RUN_TYPE = "auditlog.retention-run/v1"
AUDIT_DRILL_TYPE = "auditlog.audit-drill/v1"  # log/audit/drills.py
TOKEN_CHANGES = ("token-created", "token-revoked")
REGISTRY_CHANGES = ("producer-registered", "key-added", "key-retired", "key-revoked")
ENVELOPE_FIELDS = frozenset({"producer", "key_id", "signature", "event"})

_TOKEN = python_regex(TOKEN_PATTERN)
_json_string = json.encoder.encode_basestring_ascii  # what json.dumps(str) returns, without its three calls
_KEY_ID = re.compile(r"^[0-9a-f]{16}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


def _token(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidEvent(f"{field} must be a token (1-128 of A-Za-z0-9._:~-), not {value!r}"[:300], field)
    return value


def _b64(value: Any, size: int, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidEvent(f"{field} must be a base64 string", field)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEvent(f"{field} is not valid base64: {exc}", field) from exc
    if len(raw) != size:
        raise InvalidEvent(f"{field} must decode to {size} bytes, not {len(raw)}", field)
    return raw


def _time(value: Any, field: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    ms = parse_timestamp_ms(value) if isinstance(value, str) else None
    if ms is None:
        raise InvalidEvent(f"{field} must be an RFC 3339 UTC timestamp with milliseconds, not {value!r}", field)
    return ms


def _time_text(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp_ms(ms)


@dataclass(frozen=True)
class Envelope:
    """A producer's signed event. `event_bytes` are the canonical bytes the signature covers."""

    producer: str
    key_id: str
    signature: bytes
    event: dict
    event_bytes: bytes

    def entry_bytes(self) -> bytes:
        """The log entry: the canonical JSON of the whole envelope (keys in RFC 8785 order, all ASCII but event)."""
        return b"".join((
            b'{"event":', self.event_bytes,
            b',"key_id":', _json_string(self.key_id).encode(),
            b',"producer":', _json_string(self.producer).encode(),
            b',"signature":"', base64.b64encode(self.signature),
            b'","type":"', ENVELOPE_TYPE.encode(), b'"}',
        ))

    def to_json(self) -> dict:
        return {"producer": self.producer, "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode(), "event": self.event}


def parse_envelope(obj: Any, *, exact: bool = False, validate: bool = True) -> Envelope:
    """An Envelope from its JSON object (as submitted, or as stored with `type`); fields as JSON paths.

    `exact` is `ParsedJson.exact` of the document `obj` came from (it allows the fast canonical route).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("an envelope must be a JSON object with producer, key_id, signature and event", "$")
    unknown = set(obj) - ENVELOPE_FIELDS - {"type"}
    if unknown:
        raise InvalidEvent(f"unknown envelope field(s): {', '.join(sorted(unknown))}", f"$.{sorted(unknown)[0]}")
    if "type" in obj and obj["type"] != ENVELOPE_TYPE:
        raise InvalidEvent(f"type must be {ENVELOPE_TYPE!r}", "$.type")
    for name in ("producer", "key_id", "signature", "event"):
        if name not in obj:
            raise InvalidEvent(f"{name} is required", f"$.{name}")
    producer = _token(obj["producer"], "$.producer")
    key_id = obj["key_id"]
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise InvalidEvent("key_id must be 16 lowercase hex digits (the start of SHA-256 of the public key)",
                           "$.key_id")
    signature = _b64(obj["signature"], SIGNATURE_SIZE, "$.signature")
    event = obj["event"]
    if validate:
        try:
            validate_event(event)
        except InvalidEvent as exc:
            raise InvalidEvent(exc.args[0].replace("$", "$.event", 1), (exc.field or "$").replace("$", "$.event", 1),
                               tuple(type(e)(e.field.replace("$", "$.event", 1), e.message) for e in exc.errors))
    return Envelope(producer, key_id, signature, event, canonicalize_parsed(event, exact))


# -- registry changes ------------------------------------------------------------------------------------------

def registry_change(change: str, producer: str, at: int, **fields) -> dict:
    """A registry change in memory (times in ms, public key raw), checked as `parse_registry_change` would."""
    record = {"change": change, "producer": producer, "at": at, **fields}
    return parse_registry_change(format_registry_change(record, check=False))


def format_registry_change(change: dict, *, check: bool = True) -> dict:
    """The wire object of an in-memory change (the log entry is its canonical bytes)."""
    out: dict[str, Any] = {"type": REGISTRY_CHANGE_TYPE, "change": change["change"], "producer": change["producer"],
                           "at": _time_text(change["at"]), "reason": change.get("reason") or ""}
    kind = change["change"]
    if kind == "producer-registered":
        out["tenants"] = sorted(change["tenants"])
    else:
        out["key_id"] = change["key_id"]
    if kind == "key-added":
        out["public_key"] = base64.b64encode(change["public_key"]).decode()
        out["not_before"] = _time_text(change["not_before"])
        out["not_after"] = _time_text(change.get("not_after"))
    elif kind == "key-retired":
        out["not_after"] = _time_text(change["not_after"])
    elif kind == "key-revoked":
        out["revoked_at"] = _time_text(change["revoked_at"])
    if check:
        parse_registry_change(out)
    return out


def parse_registry_change(obj: Any) -> dict:
    """The in-memory form of a registry-change wire object; raises InvalidEvent naming the bad field."""
    if not isinstance(obj, dict) or obj.get("type") != REGISTRY_CHANGE_TYPE:
        raise InvalidEvent(f"not a {REGISTRY_CHANGE_TYPE} record", "$.type")
    kind = obj.get("change")
    if kind not in REGISTRY_CHANGES:
        raise InvalidEvent(f"change must be one of {', '.join(REGISTRY_CHANGES)}, not {kind!r}", "$.change")
    allowed = {"type", "change", "producer", "at", "reason"}
    out: dict[str, Any] = {"change": kind, "producer": _token(obj.get("producer"), "$.producer"),
                           "at": _time(obj.get("at"), "$.at")}
    reason = obj.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1024:
        raise InvalidEvent("reason must be a string of at most 1024 characters", "$.reason")
    out["reason"] = reason
    if kind == "producer-registered":
        allowed |= {"tenants"}
        tenants = obj.get("tenants")
        if not isinstance(tenants, list) or not tenants:
            raise InvalidEvent("tenants must be a non-empty list of tokens", "$.tenants")
        out["tenants"] = tuple(_token(t, f"$.tenants[{i}]") for i, t in enumerate(tenants))
    else:
        allowed |= {"key_id"}
        key_id = obj.get("key_id")
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise InvalidEvent("key_id must be 16 lowercase hex digits", "$.key_id")
        out["key_id"] = key_id
    if kind == "key-added":
        allowed |= {"public_key", "not_before", "not_after"}
        out["public_key"] = _b64(obj.get("public_key"), PUBLIC_KEY_SIZE, "$.public_key")
        if key_id_for(out["public_key"]) != out["key_id"]:
            raise InvalidEvent(f"key_id must be {key_id_for(out['public_key'])} for this public key", "$.key_id")
        out["not_before"] = _time(obj.get("not_before"), "$.not_before")
        out["not_after"] = _time(obj.get("not_after"), "$.not_after", optional=True)
        if out["not_after"] is not None and out["not_after"] <= out["not_before"]:
            raise InvalidEvent("not_after must be later than not_before", "$.not_after")
    elif kind == "key-retired":
        allowed |= {"not_after"}
        out["not_after"] = _time(obj.get("not_after"), "$.not_after")
    elif kind == "key-revoked":
        allowed |= {"revoked_at"}
        out["revoked_at"] = _time(obj.get("revoked_at"), "$.revoked_at")
    unknown = set(obj) - allowed
    if unknown:
        raise InvalidEvent(f"unknown field(s) in a {kind} record: {', '.join(sorted(unknown))}",
                           f"$.{sorted(unknown)[0]}")
    return out


# -- blob erasures ---------------------------------------------------------------------------------------------

def format_blob_erasure(sha256_hex: str, at: int, reason: str) -> dict:
    return {"type": BLOB_ERASURE_TYPE, "sha256": sha256_hex, "at": format_timestamp_ms(at), "reason": reason}


def parse_blob_erasure(obj: Any) -> dict:
    if not isinstance(obj, dict) or obj.get("type") != BLOB_ERASURE_TYPE:
        raise InvalidEvent(f"not a {BLOB_ERASURE_TYPE} record", "$.type")
    if set(obj) != {"type", "sha256", "at", "reason"}:
        raise InvalidEvent("a blob erasure has exactly type, sha256, at and reason", "$")
    if not isinstance(obj["sha256"], str) or not _SHA256.match(obj["sha256"]):
        raise InvalidEvent("sha256 must be 64 lowercase hex digits", "$.sha256")
    if not isinstance(obj["reason"], str):
        raise InvalidEvent("reason must be a string", "$.reason")
    return {"sha256": obj["sha256"], "at": _time(obj["at"], "$.at"), "reason": obj["reason"]}


# -- API token changes ----------------------------------------------------------------------------------------

_TOKEN_ID = re.compile(r"^[0-9a-f]{16}\Z")


def token_change(change: str, token_id: str, at: int, **fields) -> dict:
    """A token change in memory (times in ms, sha256 as 32 raw bytes), checked as `parse_token_change` would."""
    return parse_token_change(format_token_change({"change": change, "token_id": token_id, "at": at, **fields}))


def format_token_change(change: dict) -> dict:
    """The wire object of an in-memory token change (the log entry is its canonical bytes)."""
    out: dict[str, Any] = {"type": TOKEN_CHANGE_TYPE, "change": change["change"], "token_id": change["token_id"],
                           "at": _time_text(change["at"]), "reason": change.get("reason") or ""}
    if change["change"] == "token-created":
        tenants = change.get("tenants")
        out["role"] = change["role"]
        out["tenants"] = None if tenants is None else sorted(tenants)
        out["expires_at"] = _time_text(change.get("expires_at"))
        out["sha256"] = change["sha256"].hex() if isinstance(change["sha256"], bytes) else change["sha256"]
    return out


def parse_token_change(obj: Any) -> dict:
    """The in-memory form of a token-change wire object; raises InvalidEvent naming the bad field."""
    if not isinstance(obj, dict) or obj.get("type") != TOKEN_CHANGE_TYPE:
        raise InvalidEvent(f"not a {TOKEN_CHANGE_TYPE} record", "$.type")
    kind = obj.get("change")
    if kind not in TOKEN_CHANGES:
        raise InvalidEvent(f"change must be one of {', '.join(TOKEN_CHANGES)}, not {kind!r}", "$.change")
    token_id = obj.get("token_id")
    if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
        raise InvalidEvent("token_id must be 16 lowercase hex digits", "$.token_id")
    reason = obj.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 1024:
        raise InvalidEvent("reason must be a string of at most 1024 characters", "$.reason")
    out: dict[str, Any] = {"change": kind, "token_id": token_id, "at": _time(obj.get("at"), "$.at"),
                           "reason": reason}
    allowed = {"type", "change", "token_id", "at", "reason"}
    if kind == "token-created":
        allowed |= {"role", "tenants", "expires_at", "sha256"}
        role = obj.get("role")
        if role not in ROLES:
            raise InvalidEvent(f"role must be one of {', '.join(ROLES)}, not {role!r}"[:200], "$.role")
        tenants = obj.get("tenants")
        if tenants is not None and not isinstance(tenants, list):
            raise InvalidEvent("tenants must be a list of tokens or null", "$.tenants")
        if tenants is not None:
            tenants = tuple(_token(t, f"$.tenants[{i}]") for i, t in enumerate(tenants))
        try:
            out["tenants"] = check_tenants(role, tenants)
        except ValueError as exc:
            raise InvalidEvent(str(exc), "$.tenants") from None
        out["role"] = role
        out["expires_at"] = _time(obj.get("expires_at"), "$.expires_at", optional=True)
        digest = obj.get("sha256")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise InvalidEvent("sha256 must be 64 lowercase hex digits", "$.sha256")
        out["sha256"] = bytes.fromhex(digest)
    unknown = set(obj) - allowed
    if unknown:
        raise InvalidEvent(f"unknown field(s) in a {kind} record: {', '.join(sorted(unknown))}",
                           f"$.{sorted(unknown)[0]}")
    return out


# -- any entry -------------------------------------------------------------------------------------------------

def parse_entry(data: bytes) -> tuple[str, Any]:
    """Classify and parse a stored log entry: ("envelope", Envelope), ("registry-change", dict),
    ("blob-erasure", dict), ("token-change", dict), ("retention-policy", dict), ("retention-run", dict),
    ("audit-drill", dict). Raises InvalidEvent if it is none of these or is not in canonical form."""
    parsed = parse_json(data)
    obj = parsed.value
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == ENVELOPE_TYPE:
        value: Any = parse_envelope(obj, exact=parsed.exact)
        canonical = value.entry_bytes()
    elif kind == REGISTRY_CHANGE_TYPE:
        value = parse_registry_change(obj)
        canonical = canonicalize(obj)
    elif kind == BLOB_ERASURE_TYPE:
        value = parse_blob_erasure(obj)
        canonical = canonicalize(obj)
    elif kind == TOKEN_CHANGE_TYPE:
        value = parse_token_change(obj)
        canonical = canonicalize(obj)
    elif kind in (RETENTION_POLICY_TYPE, RETENTION_RUN_TYPE):
        from log.audit import retention  # its records are its own (log/audit/retention.py)
        value = retention.parse_policy(obj) if kind == RETENTION_POLICY_TYPE else retention.parse_run(obj)
        canonical = canonicalize(obj)
    elif kind == AUDIT_DRILL_TYPE:
        from log.audit import drills  # its record is its own (log/audit/drills.py)
        value = drills.parse_drill(obj)
        canonical = canonicalize(obj)
    else:
        raise InvalidEvent(f"not an audit record (type {kind!r})", "$.type")
    if canonical != data:
        raise InvalidEvent("the entry is not in RFC 8785 canonical form", "$")
    return kind.split("/")[0].removeprefix("auditlog."), value
