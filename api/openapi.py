"""The OpenAPI 3.1 description of every route in `api.routes.ROUTES`, written out by hand.

It is data, not generated from the route table, so that a test comparing the two catches a route added without its
documentation (or the reverse). Paths use the route templates; `{n}` in tile paths stands for the tlog-tiles
index encoding, which spans several path segments ("x001/x234/067", optionally followed by ".p/<W>").
"""

from __future__ import annotations

import json

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
                    **_errors(400, 404),
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
                "summary": "The latest checkpoint (c2sp.org/tlog-checkpoint) as a signed note (c2sp.org/signed-note)",
                "operationId": "checkpoint",
                "responses": {"200": _binary("the signed checkpoint; not cacheable", "text/plain; charset=utf-8")},
            },
        },
        "/tile/entries/{n}": {
            "get": {
                "summary": "An entry bundle (c2sp.org/tlog-tiles): uint16 length-prefixed entries",
                "operationId": "entryBundle",
                "parameters": [_TILE_N],
                "responses": {"200": _binary("full bundles are immutable; partial ones are not cached"),
                              **_errors(400, 404)},
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
                                                     "tree_size": _UINT}}}}}},
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
            "LogInfo": {
                "type": "object", "required": ["origin", "verifier_key", "tree_size", "root_hash", "checkpoint"],
                "properties": {"origin": {"type": "string"}, "verifier_key": {"type": "string"},
                               "tree_size": _UINT, "root_hash": _HASH, "checkpoint": {"type": "string"}},
            },
        },
    },
}


def document_bytes() -> bytes:
    return json.dumps(DOCUMENT, indent=1).encode()
