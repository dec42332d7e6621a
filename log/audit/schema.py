"""The audit event schema `auditlog.event/v1`, published as JSON Schema (draft 2020-12), and its validator.

The schema is data (`EVENT_SCHEMA`), served as is at /api/v1/schemas/auditlog.event/v1. Validation runs in two
gears that read the same schema: a compiled validator (fastjsonschema, a few microseconds per valid event) on the
hot path, and, only for an event that failed it, the reference validator (jsonschema) to list every field-level
error with its JSON path. A check the schema language cannot express (a timestamp that matches the pattern but
names no real instant, e.g. February 30th) runs after both, in `validate_event`.

Field rules worth knowing:

* identifiers (`event_id`, `run_id`, `trace_id`, `tenant`, actor and principal ids, `context` values) are tokens:
  1-128 characters of `A-Za-z0-9._:~-`, starting with a letter or digit. No spaces and no `@`, so an e-mail
  address or a name cannot be put where a token belongs; context ids are pseudonymous tokens, never raw
  personal data.
* `timestamp` and `approval.approved_at` are RFC 3339 in UTC with exactly millisecond precision:
  `2026-11-23T14:05:09.123Z`.
* `input`/`output` are content references (`{"sha256": <64 lowercase hex>, ...}`) to blobs, never the content
  (`CONTENT_REF_PATHS` lists every such place, `content_references` reads them from an event).
* integers are bounded to +-(2^53 - 1), so that every producer language reads them exactly and RFC 8785
  canonicalization never meets a number it would have to round. The schema has no floating-point field: costs
  are decimal strings.
* unknown top-level or nested fields are refused; producer-specific data goes in `extensions`.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import TYPE_CHECKING, Any

from log.audit.errors import FieldError, InvalidEvent

if TYPE_CHECKING:
    import jsonschema

SCHEMA_ID = "auditlog.event/v1"
SCHEMA_URL_PATH = "/api/v1/schemas/auditlog.event/v1"

EVENT_TYPES = (
    "intent", "model_call", "tool_call", "tool_result", "retrieval", "policy_decision", "approval",
    "human_review", "denial", "escalation", "external_action", "outcome", "retention", "erasure",
)
ACTOR_TYPES = ("agent", "user", "system")
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_SAFE_INTEGER = 2**53 - 1
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")
# Dates seen, to their day number: events arrive dated today, give or take, and datetime.date() was a third of
# parsing a timestamp. Bounded, and only real dates get in.
_days_since_epoch: dict[str, int] = {}
_DAYS_CACHED = 4096

_token = {"type": "string", "pattern": TOKEN_PATTERN}
_timestamp = {"type": "string", "pattern": TIMESTAMP_PATTERN}
_text = {"type": "string", "maxLength": 1024}
_count = {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}
_content_ref = {
    "type": "object",
    "description": "A reference to a blob in the content-addressed store.",
    "required": ["sha256"],
    "additionalProperties": False,
    "properties": {
        "sha256": {"type": "string", "pattern": SHA256_PATTERN},
        "media_type": {"type": "string", "maxLength": 255},
        "size": _count,
    },
}
_principal = {
    "type": "object",
    "required": ["type", "id"],
    "additionalProperties": False,
    "properties": {"type": {"enum": list(ACTOR_TYPES)}, "id": _token},
}


def _object(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "required": list(required), "additionalProperties": False,
            "properties": properties, **extra}


EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"urn:auditlog:schema:{SCHEMA_ID}",
    "title": "auditlog audit event, version 1",
    "description": "One thing an AI system, a person or a system did, as a producer signs and submits it. "
                   "Producers sign the RFC 8785 canonical form of this object with Ed25519.",
    **_object(
        {
            "schema": {"const": SCHEMA_ID},
            "event_id": _token,
            "trace_id": _token,
            "run_id": _token,
            "parent_event_id": {"anyOf": [_token, {"type": "null"}]},
            "timestamp": _timestamp,
            "tenant": _token,
            "actor": _object({"type": {"enum": list(ACTOR_TYPES)}, "id": _token, "run_id": _token},
                             ("type", "id")),
            "on_behalf_of": _principal,
            "event_type": {"enum": list(EVENT_TYPES)},
            "context": {
                "type": "object",
                "description": "Ids of the case, alert, customer... as pseudonymous tokens.",
                "maxProperties": 32,
                "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,63}$"},
                "properties": {"case_id": _token, "alert_id": _token, "customer_id": _token},
                "additionalProperties": _token,
            },
            "snapshot": _object({
                "model_id": _text,
                "prompt_version": _text,
                "tool_versions": {"type": "object", "maxProperties": 64, "additionalProperties": _text},
                "retrieval_index_version": _text,
                "policy_snapshot": _text,
            }),
            "policy": _object({"decision": {"enum": ["allow", "deny", "review", "escalate"]},
                               "matched_rule": _text, "snapshot": _text}),
            "approval": _object({"required": {"type": "boolean"}, "approver": _principal,
                                 "approved_at": _timestamp, "review_dwell_ms": _count}),
            "input": _content_ref,
            "output": _content_ref,
            "metadata": _object({
                "input_tokens": _count,
                "output_tokens": _count,
                "latency_ms": _count,
                "cost": {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$"},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            }),
            "outcome": _object({"status": {"enum": ["success", "failure", "cancelled", "partial"]},
                                "reason": _text}, ("status",)),
            "error": _object({"code": {"type": "string", "maxLength": 128}, "message": _text,
                              "retryable": {"type": "boolean"}}, ("code",)),
            "extensions": {"type": "object"},
        },
        ("schema", "event_id", "trace_id", "run_id", "timestamp", "tenant", "actor", "event_type"),
    ),
}


def _content_ref_paths(schema: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Where `schema` admits a content reference (an object with a `sha256` property), as paths of property names;
    "*" stands for any property name (a map's values), "[]" for any item of an array."""
    properties = schema.get("properties") or {}
    if "sha256" in properties:
        return [path]
    found = []
    for name, sub in properties.items():
        found += _content_ref_paths(sub, (*path, name))
    if isinstance(schema.get("additionalProperties"), dict):
        found += _content_ref_paths(schema["additionalProperties"], (*path, "*"))
    if isinstance(schema.get("items"), dict):
        found += _content_ref_paths(schema["items"], (*path, "[]"))
    for alternatives in ("anyOf", "oneOf"):
        for sub in schema.get(alternatives, ()):
            found += _content_ref_paths(sub, path)
    return list(dict.fromkeys(found))


# Every place of the schema where an event refers to a blob: (("input",), ("output",)) today. Read from the schema,
# so a reference field added to it is indexed (audit_event_blobs) without more code. `extensions` is free-form and
# holds no references the log knows of: a blob named only there stays the administrator's.
CONTENT_REF_PATHS: tuple[tuple[str, ...], ...] = tuple(_content_ref_paths(EVENT_SCHEMA))


def content_references(event: dict) -> tuple[str, ...]:
    """The SHA-256 (hex) of every blob a valid event refers to, each once, in the order of CONTENT_REF_PATHS."""
    found = [reference["sha256"] for reference in _reference_objects(event)]
    return tuple(dict.fromkeys(found)) if len(found) > 1 else tuple(found)


def content_media_types(event: dict) -> tuple[str | None, ...]:
    """Beside `content_references(event)`, in its order: each blob's media_type as the event's first reference to
    it gives one (None where none does). Blob retention policies may be set per media type."""
    types: dict[str, str | None] = {}
    for reference in _reference_objects(event):
        media_type = reference.get("media_type")
        if types.get(reference["sha256"]) is None:
            types[reference["sha256"]] = media_type if isinstance(media_type, str) else None
    return tuple(types.values())


def _reference_objects(event: dict) -> list[dict]:
    """Every content reference object (`{"sha256": ...}`) at the places CONTENT_REF_PATHS names, in their order."""
    found: list[dict] = []
    for path in CONTENT_REF_PATHS:
        values = [event]
        for step in path:
            deeper = []
            for value in values:
                if step == "[]":
                    if isinstance(value, list):
                        deeper += value
                elif isinstance(value, dict):
                    if step == "*":
                        deeper += value.values()
                    elif step in value:
                        deeper.append(value[step])
            values = deeper
        for value in values:
            if isinstance(value, dict) and isinstance(value.get("sha256"), str):
                found.append(value)
    return found


def python_regex(pattern: str) -> re.Pattern:
    """A JSON Schema `pattern` (ECMA-262) as a Python regex. They differ in one way that matters here: Python's `$`
    also matches before a final newline, so "ev-1\n" would pass `^...$`; ECMA's `$` is the end of the string."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def _ecma_pattern(validator, pattern, instance, schema):
    import jsonschema

    if validator.is_type(instance, "string") and not python_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _validators():
    """The compiled validator and the reference one, made at the first event validated: importing jsonschema and
    compiling the schema is 80 ms of CPU, which every `auditlog` command paid at start (the CLI imports this module
    for its timestamp helpers) and most never validate an event."""
    import fastjsonschema
    import jsonschema

    # fastjsonschema implements draft 7; everything EVENT_SCHEMA uses means the same in draft 7 and 2020-12.
    fast = fastjsonschema.compile({**EVENT_SCHEMA, "$schema": "http://json-schema.org/draft-07/schema#"})
    reference = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})(EVENT_SCHEMA)
    return fast, reference, fastjsonschema.JsonSchemaException


def _path(error: jsonschema.ValidationError) -> str:
    """The JSON path of a failing value, `$` for the event itself, e.g. `$.actor.type`, `$.extensions["a b"]`."""
    out = "$"
    for part in error.absolute_path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


def _describe(error: jsonschema.ValidationError) -> FieldError:
    """One field-level error; a missing required property is reported at the property, not at its parent."""
    if error.validator == "required":
        missing = re.match(r"'([^']*)' is a required property", error.message)
        parent = _path(error)
        name = missing.group(1) if missing else "?"
        return FieldError(f"{parent}.{name}", f"{name} is required")
    if error.validator == "additionalProperties" and error.validator_value is False:
        return FieldError(_path(error), f"unknown field(s): {error.message.split('(')[-1].rstrip(')')}; "
                                        f"put producer-specific data in extensions")
    if error.validator == "pattern" and error.schema.get("pattern") == TOKEN_PATTERN:
        return FieldError(_path(error), "must be a token: 1-128 characters of A-Za-z0-9._:~- starting with a "
                                        "letter or digit (pseudonymous ids, never names or addresses)")
    if error.validator == "pattern" and error.schema.get("pattern") == TIMESTAMP_PATTERN:
        return FieldError(_path(error), "must be an RFC 3339 UTC timestamp with milliseconds, "
                                        "like 2026-11-23T14:05:09.123Z")
    return FieldError(_path(error), error.message)


def field_errors(event: Any) -> list[FieldError]:
    """Every schema violation in `event`, in a stable order (by path), plus the semantic timestamp checks."""
    errors = [_describe(e) for e in _validators()[1].iter_errors(event)]
    if not errors:
        errors = _semantic_errors(event)
    return sorted(errors, key=lambda e: (e.field, e.message))


def _semantic_errors(event: dict) -> list[FieldError]:
    errors = []
    for field, value in (("$.timestamp", event.get("timestamp")),
                         ("$.approval.approved_at", (event.get("approval") or {}).get("approved_at"))):
        if value is not None and parse_timestamp_ms(value) is None:
            errors.append(FieldError(field, f"{value!r} is not a real date and time"))
    return errors


def validate_event(event: Any) -> dict:
    """Return `event` if it is a valid auditlog.event/v1 object; raise InvalidEvent listing every problem."""
    fast_validate, _, invalid = _validators()
    try:
        fast_validate(event)
    except invalid:
        pass
    else:
        if not _semantic_errors(event):
            return event
    # The two validators agree (tests hold them to it); should they ever not, the event is still refused.
    raise InvalidEvent.from_fields(field_errors(event) or [FieldError("$", "does not match auditlog.event/v1")])


def parse_timestamp_ms(value: str) -> int | None:
    """Unix milliseconds of an RFC 3339 `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamp, or None if it names no instant
    (a date that does not exist, hour 24, second 60: leap seconds are not representable in Unix time)."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    # The pattern admits ASCII digits only, at fixed places: the fields are slices.
    hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
    if hour > 23 or minute > 59 or second > 59:
        return None
    date = value[:10]
    days = _days_since_epoch.get(date)
    if days is None:
        year, month, day = int(value[:4]), int(value[5:7]), int(value[8:10])
        if year < 1970:
            return None
        try:
            days = datetime.date(year, month, day).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            return None
        if len(_days_since_epoch) < _DAYS_CACHED:
            _days_since_epoch[date] = days
    return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + int(value[20:23])


def format_timestamp_ms(ms: int) -> str:
    """The inverse of `parse_timestamp_ms`."""
    moment = _EPOCH + datetime.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
