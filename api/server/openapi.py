"""The OpenAPI 3.1 description of every route the app serves, written out by hand.

It covers the log's routes and the audit personality's (api/server/audit_routes.py `AUDIT_ROUTES`). It is data, not generated
from the route table, so that a test comparing the two catches a route added without its
documentation (or the reverse). Paths use the route templates; `{n}` in tile paths stands for the tlog-tiles
index encoding, which spans several path segments ("x001/x234/067", optionally followed by ".p/<W>").
"""

from __future__ import annotations

import json

from log.audit.lifecycle_names import VAULT_TOKEN_PATTERN
from log.tiles import MAX_ENTRY_SIZE

_PROBLEM_REF = {"$ref": "#/components/responses/Problem"}
_B64 = {"type": "string", "contentEncoding": "base64"}
_HASH = {"type": "string", "contentEncoding": "base64", "description": "a 32-byte SHA-256 hash, standard base64"}
_UINT = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _query(name: str, description: str, *, required: bool = False, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string", "pattern": "^[0-9]{1,19}$"}}


def _path(name: str, description: str, pattern: str | None = None) -> dict:
    schema = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _json_ok(schema_ref: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _errors(*statuses: int) -> dict:
    return {str(status): _PROBLEM_REF for status in statuses}


def _binary(description: str, content_type: str = "application/octet-stream") -> dict:
    return {"description": description,
            "content": {content_type: {"schema": {"type": "string", "contentMediaType": content_type}}}}


_TOKEN = "^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$"
_SHA256_PATH = _path("sha256", "SHA-256 of the blob's bytes, 64 lowercase hex digits", "^[0-9a-f]{64}$")
_PRODUCER_PATH = _path("producer", "producer id", _TOKEN)
_KEY_ID_PATH = _path("key_id", "the key's id (as the registry lists it)")
_TENANT = _query("tenant", "only this tenant's events", schema={"type": "string", "pattern": _TOKEN})
_PROOFS = _query("proofs", "true or false", schema={"type": "string", "enum": ["true", "false", "1", "0"]})
_NUMBER_OR_NULL = {"type": ["number", "null"]}
# Where several servers share a PostgreSQL log: this one's role, and the URL of the server that sequences the log.
_ROLE_PROPERTIES = {
    "role": {"enum": ["sequencer", "standby"]},
    "sequencer": {"type": ["string", "null"], "description": "the sequencer's advertised URL; null while unknown"},
}
_READINESS = {
    "type": "object",
    "required": ["status", "origin", "tree_size"],
    "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "reason": {"type": "string", "description": "why writes cannot be taken: disk full, disk I/O error, "
                                                    "database unreachable: ..., shutting down, stopped: ..."},
        "origin": {"type": "string"},
        "tree_size": _UINT,
        "witness": {"type": "object", "description": "when witnesses are configured", "properties": {
            "k": _UINT, "latest_size": _UINT, "witnessed_size": {"type": ["integer", "null"]},
            "lag_entries": _UINT, "lag_seconds": {"type": "number"}}},
        "timestamp": {"type": "object", "description": "when a TSA is configured", "properties": {
            "timestamped_size": {"type": ["integer", "null"]}, "lag_entries": _UINT, "age_seconds": _NUMBER_OR_NULL}},
        "replica": {"type": "object", "description": "with --read-database-url: the read replica (README, A replica "
                                                     "for reads)", "properties": {
            "reachable": {"type": "boolean"}, "replayed_size": {"type": ["integer", "null"]},
            "primary_size": {"type": ["integer", "null"]}, "lag_entries": {"type": ["integer", "null"]},
            "lag_seconds": _NUMBER_OR_NULL, "replay_age_seconds": _NUMBER_OR_NULL,
            "replay_paused": {"type": ["boolean", "null"]}, "error": {"type": "string"}}},
        **_ROLE_PROPERTIES,
    },
}
_OBJECT = {"type": "object"}


def _json_object(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or _OBJECT}}}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_REGISTRY_RECEIPT = {"$ref": "#/components/schemas/RegistryReceipt"}

# The audit personality (api/server/audit_routes.py AUDIT_ROUTES): signed events, run timelines and evidence, blobs, producers.
_AUDIT_PATHS: dict = {
    "/api/v1/events": {
        "post": {
            "summary": "Submit one signed envelope {producer, key_id, signature, event}, or {\"events\": [...]} "
                       "(at most 1000); exactly once per (producer, event_id); answered after the commit",
            "operationId": "submitEvents",
            "parameters": [_query("proofs", "include each receipt's inclusion proof (default: only for a single "
                                            "envelope)", schema={"type": "string", "enum": ["true", "false", "1",
                                                                                            "0"]})],
            "requestBody": _json_body({"oneOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {"type": "object", "required": ["events"], "additionalProperties": False,
                 "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000,
                                           "items": {"$ref": "#/components/schemas/Envelope"}}}}]}),
            "responses": {
                "200": _json_object("a receipt {index, leaf_hash, event_id, producer, duplicate, inclusion_proof?} "
                                    "with the checkpoint; for a batch {accepted, refused, results} where each "
                                    "refused item is a problem object"),
                **_errors(400, 401, 403, 409, 413, 422, 503),
            },
        },
        "get": {
            "summary": "Logged events by filter, in log order, paged",
            "operationId": "listEvents",
            "parameters": [
                _TENANT,
                *[_query(name, f"only events with this {name}", schema={"type": "string"})
                  for name in ("run_id", "trace_id", "actor_id", "actor_type", "event_type", "producer", "case_id",
                               "alert_id", "customer_id")],
                _query("since", "RFC 3339 UTC timestamp with milliseconds (inclusive)", schema={"type": "string"}),
                _query("until", "RFC 3339 UTC timestamp with milliseconds", schema={"type": "string"}),
                _query("cursor", "next_cursor of the previous page", schema={"type": "string"}),
                _query("limit", "page size (default 100)"),
            ],
            "responses": {"200": _json_object("{events: [{index, entry, producer, key_id, signature, event}], "
                                              "next_cursor, pruned?: [{index, leaf_hash, deletion_index, event_id, "
                                              "run_id, tenant, event_type}]}; `context.<name>=<value>` parameters "
                                              "filter on context ids too; `pruned` lists the page's events whose "
                                              "contents a retention run deleted"),
                          **_errors(400)},
        },
    },
    "/api/v1/runs/{run_id}/timeline": {
        "get": {
            "summary": "One run's events in causal order, each with its inclusion proof in the latest checkpoint",
            "operationId": "runTimeline",
            "parameters": [_path("run_id", "the run id", _TOKEN), _TENANT, _PROOFS],
            "responses": {"200": _json_object("{run_id, origin, log_key, tree_size, checkpoint, events, "
                                              "external_parents, pruned?} (pruned: the run's events whose contents "
                                              "a retention run deleted, as in GET /api/v1/events)"),
                          **_errors(400, 404)},
        },
    },
    "/api/v1/runs/{run_id}/evidence": {
        "get": {
            "summary": "The run's evidence bundle (format auditlog.evidence/v2; v3 when something of the run was "
                       "deleted), checkable offline with the log key, the witnesses' keys and the TSA certificate",
            "operationId": "runEvidence",
            "parameters": [_path("run_id", "the run id", _TOKEN), _TENANT],
            "responses": {"200": _json_object("the evidence bundle: the newest timestamped (else witnessed, else "
                                              "latest) checkpoint covering the run, with its cosignatures and "
                                              "RFC 3161 token; events and registry entries with inclusion proofs, "
                                              "producer key summary; in v3, the pruned events (leaf hash and "
                                              "proof), deleted blobs and erased subjects with the proven log "
                                              "entries that deleted them and the policies they applied"),
                          **_errors(400, 404)},
        },
    },
    "/api/v1/reports": {
        "get": {
            "summary": "A compliance report over one tenant and period: the verification summary against the "
                       "witnessed (else latest) signed checkpoint, framework controls with their evidencing events, "
                       "completeness findings, per-producer gaps, human-review statistics, cost and tokens, charts. "
                       "Recorded in the access log",
            "operationId": "complianceReport",
            "parameters": [
                _query("tenant", "the tenant (in the credential's scope)", required=True,
                       schema={"type": "string", "pattern": _TOKEN}),
                _query("from", "start of the period, included: RFC 3339 or YYYY-MM-DD (midnight UTC)", required=True,
                       schema={"type": "string"}),
                _query("to", "end of the period, excluded: RFC 3339 or YYYY-MM-DD (midnight UTC)", required=True,
                       schema={"type": "string"}),
                _query("framework", "which controls (default all)", schema={
                    "type": "string", "enum": ["soc2", "hipaa", "sox", "iso27001", "eu-ai-act", "all"]}),
                _query("format", "json (default), html (one self-contained file) or pdf",
                       schema={"type": "string", "enum": ["json", "html", "pdf"]}),
            ],
            "responses": {"200": {
                "description": "the report (format auditlog.compliance-report/v1 as JSON); headers "
                               "Auditlog-Chain-Integrity (VALID or INVALID) and Auditlog-Summary (the summary line, "
                               "a JSON string)",
                "content": {"application/json": {"schema": _OBJECT},
                            "text/html": {"schema": {"type": "string"}},
                            "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}}}},
                **_errors(400, 401, 403)},
        },
    },
    "/api/v1/schemas/auditlog.event/v1": {
        "get": {
            "summary": "The JSON Schema (draft 2020-12) of audit events",
            "operationId": "eventSchema",
            "responses": {"200": {"description": "the schema", "content": {
                "application/schema+json": {"schema": _OBJECT}}}},
        },
    },
    "/api/v1/blobs/{sha256}": {
        "put": {
            "summary": "Store a blob under the SHA-256 of its bytes (idempotent)",
            "operationId": "putBlob",
            "parameters": [_SHA256_PATH],
            "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}},
            "responses": {
                "200": _json_object("already stored", {"type": "object", "properties": {
                    "sha256": {"type": "string"}, "created": {"const": False}}}),
                "201": _json_object("stored", {"type": "object", "properties": {
                    "sha256": {"type": "string"}, "created": {"const": True}}}),
                **_errors(400, 413, 422),
            },
        },
        "get": {
            "summary": "A blob's bytes",
            "operationId": "getBlob",
            "parameters": [_SHA256_PATH],
            "responses": {"200": _binary("the blob; immutable"), **_errors(400, 404)},
        },
        "delete": {
            "summary": "Erase a blob (admin) unless a legal hold covers it; the erasure is logged as an entry",
            "operationId": "deleteBlob",
            "parameters": [_SHA256_PATH, _query("reason", "why (logged)", schema={"type": "string"})],
            "description": "An active legal hold covering the blob (an event citing it is in its scope) refuses "
                           "the deletion: 409, the problem naming the hold (hold_id) and the entry that records the "
                           "refusal (index).",
            "responses": {"200": _json_object("{sha256, erased, erasure_index}"), **_errors(400, 401, 404, 409)},
        },
    },
    "/api/v1/producers": {
        "get": {
            "summary": "The producer registry: producers, tenants and keys",
            "operationId": "listProducers",
            "responses": {"200": _json_object("{producers: [{producer, tenants, keys}]}")},
        },
        "post": {
            "summary": "Register a producer (admin); the change is logged as an entry",
            "operationId": "registerProducer",
            "requestBody": _json_body({"type": "object", "required": ["producer", "tenants"], "properties": {
                "producer": {"type": "string", "pattern": _TOKEN},
                "tenants": {"type": "array", "items": {"type": "string"}}, "reason": {"type": "string"}}}),
            "responses": {"201": _json_object("the logged registry change", _REGISTRY_RECEIPT),
                          **_errors(400, 401, 409, 422)},
        },
    },
    "/api/v1/producers/{producer}/keys": {
        "post": {
            "summary": "Add an Ed25519 key to a producer (admin); logged",
            "operationId": "addProducerKey",
            "parameters": [_PRODUCER_PATH],
            "requestBody": _json_body({"type": "object", "required": ["public_key"], "properties": {
                "public_key": _B64, "not_before": {"type": "string"}, "not_after": {"type": "string"},
                "reason": {"type": "string"}}}),
            "responses": {"201": _json_object("the logged registry change", _REGISTRY_RECEIPT),
                          **_errors(400, 401, 404, 409, 422)},
        },
    },
    "/api/v1/producers/{producer}/keys/{key_id}/retire": {
        "post": {
            "summary": "Retire a key from `not_after` on (admin); logged",
            "operationId": "retireProducerKey",
            "parameters": [_PRODUCER_PATH, _KEY_ID_PATH],
            "requestBody": _json_body({"type": "object", "properties": {
                "not_after": {"type": "string"}, "reason": {"type": "string"}}}),
            "responses": {"200": _json_object("the logged registry change", _REGISTRY_RECEIPT),
                          **_errors(400, 401, 404, 409, 422)},
        },
    },
    "/api/v1/producers/{producer}/keys/{key_id}/revoke": {
        "post": {
            "summary": "Revoke a key from `revoked_at` on (admin); logged",
            "operationId": "revokeProducerKey",
            "parameters": [_PRODUCER_PATH, _KEY_ID_PATH],
            "requestBody": _json_body({"type": "object", "properties": {
                "revoked_at": {"type": "string"}, "reason": {"type": "string"}}}),
            "responses": {"200": _json_object("the logged registry change", _REGISTRY_RECEIPT),
                          **_errors(400, 401, 404, 409, 422)},
        },
    },
    "/api/v1/tokens": {
        "get": {
            "summary": "The API tokens: id, role, tenants, created, expires, revoked (admin; never a secret)",
            "operationId": "listTokens",
            "responses": {"200": _json_object("{tokens: [{token_id, role, tenants, created_at, expires_at, "
                                              "revoked_at, reason, index}]}"), **_errors(401, 403)},
        },
        "post": {
            "summary": "Create an API token (admin); logged as an entry (its SHA-256, never the token), the token "
                       "answered this once as `secret`",
            "operationId": "createToken",
            "requestBody": _json_body({"type": "object", "required": ["role"], "additionalProperties": False,
                                       "properties": {
                                           "role": {"type": "string", "enum": ["admin", "auditor", "writer",
                                                                               "monitor"]},
                                           "tenants": {"type": "array", "items": {"type": "string"}},
                                           "expires_at": {"type": "string", "format": "date-time"},
                                           "reason": {"type": "string"}}}),
            "responses": {"201": _json_object("{token, secret, index, tree_size, checkpoint}"),
                          **_errors(400, 401, 403)},
        },
    },
    "/api/v1/tokens/{token_id}/revoke": {
        "post": {
            "summary": "Revoke an API token at once (admin); logged",
            "operationId": "revokeToken",
            "parameters": [_path("token_id", "the token's id (16 hex digits)")],
            "requestBody": _json_body({"type": "object", "properties": {"reason": {"type": "string"}}}),
            "responses": {"200": _json_object("{token, index, tree_size, checkpoint}"),
                          **_errors(400, 401, 403, 404, 409)},
        },
    },
}

# The access log (api/server/access_log.py): who read which contents; admin only.
_ACCESS_LOG_PATHS: dict = {
    "/api/v1/access-log": {
        "get": {
            "summary": "Reads of contents made with a credential (admin): who, role, what, target, when, from where, "
                       "status; oldest first, paged",
            "operationId": "listAccessLog",
            "parameters": [
                _query("credential", "only reads by this credential (token:<id>, oidc:<issuer>#<sub>, admin-token)",
                       schema={"type": "string"}),
                _query("what", "only this kind of read: events, timeline, evidence, blob, entry, entry-bundle, "
                               "report",
                       schema={"type": "string"}),
                _query("target", "only reads of this target (run id, sha256, index, tile path, events query)",
                       schema={"type": "string"}),
                _query("since", "only reads at or after this time (RFC 3339 UTC with milliseconds)",
                       schema={"type": "string"}),
                _query("until", "only reads before this time (RFC 3339 UTC with milliseconds)",
                       schema={"type": "string"}),
                _query("cursor", "the next_cursor of the previous page", schema={"type": "string"}),
                _query("limit", "records per page, 1 to 1000 (default 100)"),
            ],
            "responses": {"200": _json_object("{records: [{id, at, at_ms, credential, role, what, target, remote, "
                                              "status}], next_cursor}"), **_errors(400, 401, 403)},
        },
    },
}

# Legal holds and data-subject requests (api/server/lifecycle_routes.py); admin only.
_HOLD_SCOPE = {"type": "object", "required": ["tenant"], "additionalProperties": False, "properties": {
    "tenant": {"type": "string", "pattern": _TOKEN},
    "run_ids": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": _TOKEN}},
    "context": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "value"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                       "value": {"type": "string", "pattern": _TOKEN}}}},
    "subjects": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^vt\\.[a-z2-7]{26}$"}},
    "actor_id": {"type": "string", "pattern": _TOKEN},
    "from": {"type": "string", "format": "date-time", "description": "events at or after (their timestamp)"},
    "to": {"type": "string", "format": "date-time", "description": "events at or before (their timestamp)"}}}
_HOLD_ANSWER = "{hold: {hold_id, tenant, scope, reason, reference, active, placed_index, placed_at, " \
               "released_index, released_at}, index}"
_SUBJECT_BODY = {"type": "object", "required": ["tenant", "subject"], "additionalProperties": False, "properties": {
    "tenant": {"type": "string", "pattern": _TOKEN},
    "subject": {"type": "string", "minLength": 1, "description": "the subject's reference (a customer id, an e-mail "
                                                                 "address): in the body, never in a URL"}}}
_LIFECYCLE_PATHS: dict = {
    "/api/v1/holds": {
        "get": {
            "summary": "The legal holds, active and released, in placement order (admin)",
            "operationId": "listHolds",
            "parameters": [_query("tenant", "only this tenant's holds", schema={"type": "string", "pattern": _TOKEN}),
                           _query("active", "true: only active holds; false: only released ones",
                                  schema={"type": "string", "enum": ["true", "false", "1", "0"]})],
            "responses": {"200": _json_object("{holds: [{hold_id, tenant, scope, reason, reference, active, "
                                              "placed_index, placed_at, released_index, released_at}]}"),
                          **_errors(400, 401, 403)},
        },
        "post": {
            "summary": "Place a legal hold (admin): nothing in its scope is deleted by retention, erasure or blob "
                       "DELETE until it is released; logged as an entry (auditlog.legal-hold/v1)",
            "operationId": "placeHold",
            "requestBody": _json_body({"type": "object", "required": ["scope", "reason", "reference"],
                                       "additionalProperties": False, "properties": {
                                           "scope": _HOLD_SCOPE, "reason": {"type": "string", "minLength": 1},
                                           "reference": {"type": "string", "minLength": 1}}}),
            "responses": {"201": _json_object(_HOLD_ANSWER), **_errors(400, 401, 403, 503)},
        },
    },
    "/api/v1/holds/{hold_id}/release": {
        "post": {
            "summary": "Release a legal hold (admin); logged as an entry",
            "operationId": "releaseHold",
            "parameters": [_path("hold_id", "the hold's id (16 hex digits)", "^[0-9a-f]{16}$")],
            "requestBody": _json_body({"type": "object", "required": ["reason"], "additionalProperties": False,
                                       "properties": {"reason": {"type": "string", "minLength": 1},
                                                      "reference": {"type": "string"}}}),
            "responses": {"200": _json_object(_HOLD_ANSWER), **_errors(400, 401, 403, 404, 409, 503)},
        },
    },
    "/api/v1/subjects/access": {
        "post": {
            "summary": "A data subject's access request (admin): every event of the tenant carrying any of the "
                       "subject's vault tokens, as an evidence bundle that verifies offline. Recorded in the access "
                       "log (what subject-access, target <tenant>/<subject token>)",
            "operationId": "subjectAccess",
            "requestBody": _json_body(_SUBJECT_BODY),
            "responses": {"200": _json_object("the evidence bundle (auditlog.evidence/v3, with `subject`)"),
                          **_errors(400, 401, 403, 404, 503)},
        },
    },
    "/api/v1/subjects/erase": {
        "post": {
            "summary": "Erase a data subject (admin): logged first (auditlog.subject-erasure/v1 with its deletion "
                       "list), then its vault key destroyed and its blobs deleted, except what a legal hold or a "
                       "retention policy keeps (complete: false, skipped says what and why)",
            "operationId": "subjectErase",
            "requestBody": _json_body({**_SUBJECT_BODY, "required": ["tenant", "subject", "reason"], "properties": {
                **_SUBJECT_BODY["properties"], "reason": {"type": "string", "minLength": 1}}}),
            "responses": {"200": _json_object("{tenant, subject (token), index, complete, key_shredded, "
                                              "blobs_deleted, list_sha256, skipped: {subject_hold, blobs_held, "
                                              "blobs_retained, blobs_shared}, at}"),
                          **_errors(400, 401, 403, 503)},
        },
    },
}

# Retention (api/server/retention_job.py): policies and runs are admin's; a deletion list is a reader's of entries.
_POLICY = {"type": "object", "required": ["tenant", "record_class", "selector", "retain_days", "reason"],
           "additionalProperties": False, "properties": {
               "tenant": {"type": "string", "pattern": _TOKEN},
               "record_class": {"type": "string", "enum": ["event", "blob", "subject"]},
               "selector": {"type": "string", "description": "event: an event type or *; blob: event_type:<t>, "
                                                             "media_type:<type/subtype> or *; subject: *"},
               "retain_days": {"type": ["integer", "null"], "minimum": 0, "maximum": 36500,
                               "description": "days kept; null removes the policy"},
               "reason": {"type": "string", "maxLength": 1024}}}
_RETENTION_PATHS: dict = {
    "/api/v1/retention/policies": {
        "get": {
            "summary": "The retention policies in force, per tenant, record class and selector (admin)",
            "operationId": "listRetentionPolicies",
            "parameters": [_query("tenant", "only this tenant's", schema={"type": "string", "pattern": _TOKEN})],
            "responses": {"200": _json_object("{policies: [{index, tenant, record_class, selector, retain_days, "
                                              "reason, at}]}"), **_errors(400, 401, 403)},
        },
        "post": {
            "summary": "Set, change or remove (retain_days null) a retention policy (admin); logged as an entry "
                       "(auditlog.retention-policy/v1). The most specific selector in force wins",
            "operationId": "setRetentionPolicy",
            "requestBody": _json_body(_POLICY),
            "responses": {"201": _json_object("{index, policy}"), **_errors(400, 401, 403, 503)},
        },
    },
    "/api/v1/retention/runs": {
        "get": {
            "summary": "The retention runs, oldest first (admin)",
            "operationId": "listRetentionRuns",
            "parameters": [_query("tenant", "only this tenant's", schema={"type": "string", "pattern": _TOKEN}),
                           _query("after", "cursor: runs with a larger entry index"),
                           _query("limit", "runs per page, 1 to 1000 (default 100)")],
            "responses": {"200": _json_object("{runs: [{index, tenant, list_sha256, started_at, finished_at, "
                                              "deleted, skipped, policies}], next_cursor}"),
                          **_errors(400, 401, 403)},
        },
        "post": {
            "summary": "Run retention now (admin), for one tenant or every tenant with a policy: each run that "
                       "deletes or is held back writes its entry (auditlog.retention-run/v1) before deleting",
            "operationId": "runRetention",
            "requestBody": _json_body({"type": "object", "additionalProperties": False,
                                       "properties": {"tenant": {"type": "string", "pattern": _TOKEN}}}),
            "responses": {"200": _json_object("{runs: [{tenant, index, deleted, skipped, list_sha256, policies}]}"),
                          **_errors(400, 401, 403, 503)},
        },
    },
    "/api/v1/deletions/{index}": {
        "get": {
            "summary": "The deletion list of a retention run or erasure entry: what it deleted, and the SHA-256 of "
                       "the list that its entry commits to, recomputed",
            "operationId": "getDeletion",
            "parameters": [_path("index", "the deletion entry's index", "^[0-9]{1,19}$")],
            "responses": {"200": _json_object("{index, type, items: [[kind, item]], list_sha256}"),
                          **_errors(400, 401, 403, 404)},
        },
    },
}

# The token vault (api/server/vault_routes.py): tokenise at the boundary, detokenise with a purpose, logged first.
_VAULT_TOKEN = {"type": "string", "pattern": VAULT_TOKEN_PATTERN,
                "description": "a vault token: vt. and 26 lowercase base32 characters"}
_VAULT_PATHS: dict = {
    "/api/v1/vault/tokenize": {
        "post": {
            "summary": "Tokenise values of one data subject in a tenant (a writer: its tenants); the same value in the "
                       "same tenant always gets the same token; the mappings are stored sealed under the subject's "
                       "key before the answer",
            "operationId": "vaultTokenize",
            "requestBody": _json_body({"type": "object", "required": ["tenant", "subject", "values"],
                                       "additionalProperties": False, "properties": {
                                           "tenant": {"type": "string", "pattern": _TOKEN},
                                           "subject": {"type": "string", "minLength": 1, "description":
                                                       "the data subject's reference (a customer id); answered as "
                                                       "its token, stored only sealed"},
                                           "values": {"type": "array", "minItems": 1, "maxItems": 10_000,
                                                      "items": {"type": "string", "minLength": 1, "description":
                                                                "at most 4,096 bytes of UTF-8"}}}}),
            "responses": {"200": _json_object("the tokens, in the order of the values", {
                "type": "object", "required": ["tenant", "subject", "tokens", "created"], "properties": {
                    "tenant": {"type": "string"}, "subject": _VAULT_TOKEN,
                    "tokens": {"type": "array", "items": _VAULT_TOKEN},
                    "created": {"type": "integer", "minimum": 0, "description": "mappings new in this request"}}}),
                          **_errors(400, 401, 403, 410, 413, 503)},
        },
    },
    "/api/v1/vault/detokenize": {
        "post": {
            "summary": "The values of vault tokens (a vault-reader: its tenants), for a stated purpose; the "
                       "auditlog.vault-access/v1 entry (who, role, purpose, the SHA-256 of each token, when) is "
                       "committed in the log before any value is read; unknown and erased tokens are answered as such",
            "operationId": "vaultDetokenize",
            "requestBody": _json_body({"type": "object", "required": ["tenant", "tokens", "purpose"],
                                       "additionalProperties": False, "properties": {
                                           "tenant": {"type": "string", "pattern": _TOKEN},
                                           "tokens": {"type": "array", "minItems": 1, "maxItems": 500,
                                                      "items": _VAULT_TOKEN},
                                           "purpose": {"type": "string", "minLength": 1, "maxLength": 1000}}}),
            "responses": {"200": _json_object("each token's answer, in the order asked, and the vault-access entry", {
                "type": "object", "required": ["tenant", "values", "index"], "properties": {
                    "tenant": {"type": "string"}, "index": _UINT,
                    "values": {"type": "array", "items": {"type": "object", "required": ["token", "status"],
                                                          "properties": {
                                                              "token": _VAULT_TOKEN,
                                                              "status": {"enum": ["found", "unknown", "erased"]},
                                                              "value": {"type": "string"}}}}}}),
                          **_errors(400, 401, 403, 413, 500, 503)},
        },
    },
}

# Audit drills (api/server/drills_routes.py, log/audit/drills.py): an auditor's drill result, logged; listed.
_NULLABLE_UINT = {"type": ["integer", "null"], "minimum": 0}
_DRILL_RUN = {"type": "object", "additionalProperties": False,
              "required": ["run_id", "events", "evidence", "failed_check", "findings", "findings_total",
                           "time_to_evidence_ms"],
              "properties": {
                  "run_id": {"type": "string", "pattern": _TOKEN}, "events": _UINT,
                  "evidence": {"enum": ["valid", "invalid", "unavailable"]},
                  "failed_check": {"type": ["string", "null"], "maxLength": 1000,
                                   "description": "why the evidence did not verify (the check that failed); null "
                                                  "exactly when it did"},
                  "findings": {"type": "array", "maxItems": 20, "items": {
                      "type": "object", "additionalProperties": False, "required": ["check", "index", "event_id"],
                      "properties": {"check": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"},
                                     "index": _NULLABLE_UINT,
                                     "event_id": {"type": ["string", "null"], "pattern": _TOKEN}}}},
                  "findings_total": _UINT,
                  "time_to_evidence_ms": {**_NULLABLE_UINT, "description": "from asking for the evidence bundle to "
                                                                           "its offline verification passing"}}}
_DRILL_BODY = {"type": "object", "additionalProperties": False,
               "required": ["tenant", "seed", "scenario", "period", "runs", "checks"],
               "properties": {
                   "tenant": {"type": "string", "pattern": _TOKEN},
                   "seed": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
                   "scenario": {"enum": ["random", "denied-action", "approval-trace", "incident-replay", "scope",
                                         "retention"]},
                   "period": {"type": "object", "additionalProperties": False, "required": ["since", "until"],
                              "description": "the window of event timestamps the runs were picked from",
                              "properties": {"since": {"type": ["string", "null"], "format": "date-time"},
                                             "until": {"type": ["string", "null"], "format": "date-time"}}},
                   "runs": {"type": "array", "maxItems": 100, "items": _DRILL_RUN},
                   "checks": {"type": "array", "maxItems": 2, "items": {
                       "type": "object", "additionalProperties": False, "required": ["check", "status", "detail"],
                       "properties": {"check": {"enum": ["scope", "retention"]},
                                      "status": {"enum": ["passed", "failed", "not-checked"]},
                                      "detail": {"type": "string", "maxLength": 1000}}}},
                   "summary": {"type": "object", "description": "optional: computed by the server from runs and "
                                                                "checks; one that disagrees is refused"}}}
_DRILL_PATHS: dict = {
    "/api/v1/drills": {
        "get": {
            "summary": "Audit drills, newest first (an auditor: its tenants'), each its logged record "
                       "(auditlog.audit-drill/v1) with its entry index",
            "operationId": "listDrills",
            "parameters": [_query("tenant", "only this tenant's", schema={"type": "string", "pattern": _TOKEN}),
                           _query("after", "cursor: a previous page's next_cursor (drills logged before it)"),
                           _query("limit", "drills per page, 1 to 1000 (default 100)")],
            "responses": {"200": _json_object("{drills: [{index, type, tenant, at, by, seed, scenario, period, runs, "
                                              "checks, summary}], next_cursor}"), **_errors(400, 401, 403)},
        },
        "post": {
            "summary": "Log an audit drill's result (an auditor: of its tenants): the server sets at (its clock) "
                       "and by (the credential) and computes the summary; 201 once the entry is committed",
            "operationId": "recordDrill",
            "requestBody": _json_body(_DRILL_BODY),
            "responses": {"201": _json_object("{index, drill: the record as logged}"),
                          **_errors(400, 401, 403, 413, 503)},
        },
    },
}

_TILE_N = _path("n", "tile index in tlog-tiles encoding (groups of 3 digits, all but the last prefixed 'x'), "
                     "then '.p/<W>' for a partial tile of width W (1-255)")

DOCUMENT: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "auditlog",
        "version": "1",
        "description": "A verifiable transparency log (RFC 6962/9162 Merkle tree; C2SP tlog-tiles, "
                       "tlog-checkpoint and signed-note). Errors are RFC 9457 problem details.",
    },
    "paths": {
        "/api/v1/entries": {
            "post": {
                "summary": "Append one entry (raw body) or a batch (JSON); answers once durably committed",
                "operationId": "addEntries",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": {
                            "type": "string", "minLength": 1, "maxLength": MAX_ENTRY_SIZE,
                            "description": f"one entry, 1 to {MAX_ENTRY_SIZE} bytes"}},
                        "application/json": {"schema": {"$ref": "#/components/schemas/EntryBatch"}},
                    },
                },
                "responses": {
                    "200": {"description": "the entries' indices and leaf hashes and the checkpoint including them",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/AddReceipt"},
                                {"$ref": "#/components/schemas/AddBatchReceipt"}]}}}},
                    **_errors(400, 413, 415, 500, 503),
                },
            },
        },
        "/api/v1/entries/{index}": {
            "get": {
                "summary": "One entry: JSON, or the raw bytes with Accept: application/octet-stream",
                "operationId": "getEntry",
                "parameters": [_path("index", "entry index", "^[0-9]{1,19}$")],
                "responses": {
                    "200": {"description": "the entry", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Entry"}},
                        "application/octet-stream": {"schema": {"type": "string"}}}},
                    **_errors(400, 404, 410),
                },
            },
        },
        "/api/v1/proof/inclusion": {
            "get": {
                "summary": "Inclusion proof (RFC 9162 2.1.3) of an entry, by index or by leaf hash",
                "operationId": "inclusionProof",
                "parameters": [
                    _query("index", "entry index (or give leaf_hash)"),
                    _query("leaf_hash", "leaf hash, base64url or base64, padded or not (instead of index)",
                           schema={"type": "string"}),
                    _query("tree_size", "tree size the proof is for; default: the latest checkpoint's"),
                ],
                "responses": {"200": _json_ok("InclusionProof", "the audit path, leaf-most hash first"),
                              **_errors(400, 404)},
            },
        },
        "/api/v1/proof/consistency": {
            "get": {
                "summary": "Consistency proof (RFC 9162 2.1.4) between two tree sizes",
                "operationId": "consistencyProof",
                "parameters": [
                    _query("first", "the older tree size (at least 1)", required=True),
                    _query("second", "the newer tree size; default: the latest checkpoint's"),
                ],
                "responses": {"200": _json_ok("ConsistencyProof", "the consistency proof"), **_errors(400)},
            },
        },
        "/api/v1/log": {
            "get": {
                "summary": "The log's origin, verifier key, and latest checkpoint",
                "operationId": "logInfo",
                "responses": {"200": _json_ok("LogInfo", "log parameters and state")},
            },
        },
        "/api/v1/witnesses": {
            "get": {
                "summary": "The log's witnesses: each one's name, verifier keys and the largest checkpoint size it has "
                           "cosigned (null: none yet), and k, the cosignatures a checkpoint needs to count as "
                           "witnessed; an empty list and k null without witnesses",
                "operationId": "witnesses",
                "responses": {"200": _json_object("the witnesses", {
                    "type": "object", "required": ["witnesses", "k"],
                    "properties": {
                        "witnesses": {"type": "array", "items": {
                            "type": "object", "required": ["name", "keys", "latest_cosigned_size"],
                            "properties": {"name": {"type": "string"},
                                           "keys": {"type": "array", "items": {"type": "string"}},
                                           "latest_cosigned_size": {"type": ["integer", "null"], "minimum": 0}}}},
                        "k": {"type": ["integer", "null"], "minimum": 1}}})},
            },
        },
        "/": {
            "get": {
                "summary": "The web explorer (HTML): the log's state, event search, run timelines, events and entries, "
                           "verified in the browser; its data comes from the API with the user's credential",
                "operationId": "explorer",
                "responses": {"200": _binary("the explorer's page", "text/html; charset=utf-8")},
            },
        },
        "/explorer/{file}": {
            "get": {
                "summary": "One of the explorer's static files (app.js, verify.js, style.css)",
                "operationId": "explorerFile",
                "parameters": [_path("file", "the file's name", "^[A-Za-z0-9._-]+$")],
                "responses": {"200": _binary("the file (text/javascript, text/css)", "text/javascript; charset=utf-8"),
                              **_errors(404)},
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
        "/checkpoint": {
            "get": {
                "summary": "The latest checkpoint (c2sp.org/tlog-checkpoint) as a signed note (c2sp.org/signed-note), "
                           "followed by the witness cosignatures gathered for it so far when witnesses are configured",
                "operationId": "checkpoint",
                "responses": {"200": _binary("the signed checkpoint; not cacheable", "text/plain; charset=utf-8")},
            },
        },
        "/checkpoint.witnessed": {
            "get": {
                "summary": "The latest checkpoint cosigned by k of the n configured witnesses (c2sp.org/tlog-witness),"
                           " with their cosignatures (c2sp.org/tlog-cosignature); 404 without witnesses or before",
                "operationId": "witnessedCheckpoint",
                "responses": {"200": _binary("the signed checkpoint, then one cosignature line per witness key",
                                             "text/plain; charset=utf-8"),
                              **_errors(400, 404)},
            },
        },
        "/api/v1/timestamps/latest": {
            "get": {
                "summary": "The newest RFC 3161 timestamp of a checkpoint (the latest witnessed one when witnesses "
                           "are configured); 404 without a TSA or before the first token",
                "operationId": "latestTimestamp",
                "responses": {"200": _json_ok("Timestamp", "the stamped checkpoint and its TimeStampResp"),
                              **_errors(400, 404)},
            },
        },
        "/api/v1/timestamps/{size}": {
            "get": {
                "summary": "The newest RFC 3161 TimeStampResp (DER) for the checkpoint of tree size `size`",
                "operationId": "timestampForSize",
                "parameters": [_path("size", "tree size of the stamped checkpoint", "^[0-9]{1,19}$")],
                "responses": {"200": _binary("DER TimeStampResp (RFC 3161 2.4.2)", "application/timestamp-reply"),
                              **_errors(400, 404)},
            },
        },
        **_AUDIT_PATHS,
        **_ACCESS_LOG_PATHS,
        **_LIFECYCLE_PATHS,
        **_RETENTION_PATHS,
        **_VAULT_PATHS,
        **_DRILL_PATHS,
        "/tile/entries/{n}": {
            "get": {
                "summary": "An entry bundle (c2sp.org/tlog-tiles): uint16 length-prefixed entries",
                "operationId": "entryBundle",
                "parameters": [_TILE_N],
                "responses": {"200": _binary("full bundles are immutable; partial ones are not cached"),
                              **_errors(400, 404, 410)},
            },
        },
        "/tile/{level}/{n}": {
            "get": {
                "summary": "A Merkle tree hash tile (c2sp.org/tlog-tiles), height 8",
                "operationId": "hashTile",
                "parameters": [_path("level", "tile level, 0-63 without leading zeroes", "^(0|[1-9][0-9]?)$"),
                               _TILE_N],
                "responses": {"200": _binary("full tiles are immutable; partial ones are not cached"),
                              **_errors(400, 404)},
            },
        },
        "/healthz": {
            "get": {
                "summary": "Health: 200 while the log is serving",
                "operationId": "healthz",
                "responses": {"200": {"description": "serving", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"const": "ok"}, "origin": {"type": "string"},
                                                     "tree_size": _UINT, **_ROLE_PROPERTIES}}}}}},
            },
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: 200 while the log can take writes, 503 with the reason while it cannot; "
                           "witness and timestamp lag where those jobs run",
                "operationId": "readyz",
                "responses": {
                    "200": {"description": "ready", "content": {"application/json": {"schema": _READINESS}}},
                    "503": {"description": "writes cannot be taken now (Retry-After): disk full, disk I/O error, "
                                           "database unreachable, writer lock lost, shutting down, stopped",
                            "content": {"application/json": {"schema": _READINESS}}},
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "operationId": "metrics",
                "responses": {"200": _binary("metrics", "text/plain; version=0.0.4; charset=utf-8")},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "an API token (auditlog token create), an OIDC access token from the identity provider "
                           "the log trusts (a JWT), or the admin token (AUDITLOG_ADMIN_TOKEN or "
                           "<data-dir>/admin.token)"}},
        "responses": {
            "Problem": {
                "description": "an RFC 9457 problem",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string", "format": "uri", "description": "urn:auditlog:problem:<code>"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "field": {"type": "string", "description": "the request field to blame, where known"},
                    "index": {**_UINT, "description": "event-conflict (409): the index of the event already logged "
                                                       "under that event_id"},
                },
            },
            "EntryBatch": {
                "type": "object", "required": ["entries"], "additionalProperties": False,
                "properties": {"entries": {"type": "array", "minItems": 1, "maxItems": 4096, "items": _B64}},
            },
            "AddReceipt": {
                "type": "object", "required": ["index", "leaf_hash", "tree_size", "checkpoint"],
                "properties": {"index": _UINT, "leaf_hash": _HASH, "tree_size": _UINT,
                               "checkpoint": {"type": "string", "description": "signed checkpoint note text"}},
            },
            "AddBatchReceipt": {
                "type": "object", "required": ["entries", "tree_size", "checkpoint"],
                "properties": {
                    "entries": {"type": "array", "items": {
                        "type": "object", "required": ["index", "leaf_hash"],
                        "properties": {"index": _UINT, "leaf_hash": _HASH}}},
                    "tree_size": _UINT,
                    "checkpoint": {"type": "string"},
                },
            },
            "Entry": {
                "type": "object", "required": ["index", "data", "leaf_hash", "received_at"],
                "properties": {"index": _UINT, "data": _B64, "leaf_hash": _HASH,
                               "received_at": {"type": "string", "format": "date-time"}},
            },
            "InclusionProof": {
                "type": "object", "required": ["index", "tree_size", "hashes"],
                "properties": {"index": _UINT, "tree_size": _UINT, "hashes": {"type": "array", "items": _HASH}},
            },
            "ConsistencyProof": {
                "type": "object", "required": ["first", "second", "hashes"],
                "properties": {"first": _UINT, "second": _UINT, "hashes": {"type": "array", "items": _HASH}},
            },
            "Timestamp": {
                "type": "object", "required": ["tree_size", "checkpoint", "timestamp"],
                "properties": {"tree_size": _UINT,
                               "checkpoint": {"type": "string", "description": "the stamped note, byte for byte"},
                               "timestamp": {**_B64, "description": "DER TimeStampResp; its imprint is SHA-256 of "
                                                                    "the checkpoint's UTF-8 bytes"}},
            },
            "Envelope": {
                "type": "object", "required": ["producer", "key_id", "signature", "event"],
                "additionalProperties": False,
                "properties": {"producer": {"type": "string"}, "key_id": {"type": "string"},
                               "signature": {**_B64, "description": "Ed25519 over the RFC 8785 form of event"},
                               "event": {"$ref": "/api/v1/schemas/auditlog.event/v1"}},
            },
            "RegistryReceipt": {
                "type": "object", "required": ["index", "change", "tree_size", "checkpoint"],
                "properties": {"index": _UINT, "change": {"type": "object"}, "tree_size": _UINT,
                               "checkpoint": {"type": "string"}},
            },
            "LogInfo": {
                "type": "object", "required": ["origin", "verifier_key", "tree_size", "root_hash", "checkpoint"],
                "properties": {"origin": {"type": "string"}, "verifier_key": {"type": "string"},
                               "tree_size": _UINT, "root_hash": _HASH, "checkpoint": {"type": "string"}},
            },
        },
    },
}


def _declare_security(document: dict) -> dict:
    """Each operation's `security`, from the one route-policy table (api/server/auth.py ROUTE_POLICY), so the two
    cannot disagree: `[]` for a public route; else the bearer scheme, the permission the route needs in
    `x-auditlog-permission` and the roles that hold it (log/access.py) in the description. With `serve --public`
    entries:read and entries:append are public as well (the document describes the default)."""
    from api.server.auth import PUBLIC, ROUTE_POLICY
    from log.access import PERMISSIONS

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete"):
                continue
            rule = ROUTE_POLICY[(method.upper(), path)]  # a KeyError here: a route without an access rule
            if rule == PUBLIC:
                operation["security"] = []
                continue
            roles = " or ".join(sorted(PERMISSIONS[rule]))
            operation["security"] = [{"bearerAuth": []}]
            operation["x-auditlog-permission"] = rule
            operation["description"] = (operation.get("description", "") + f" Needs a credential of role {roles} "
                                        f"(permission {rule}).").strip()
    return document


_declare_security(DOCUMENT)  # once, at import


def document_bytes() -> bytes:
    return json.dumps(DOCUMENT, indent=1).encode()
