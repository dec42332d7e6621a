"""The request parsers fuzzed directly with hypothesis strategies of our own (issue 16).

An OpenAPI-driven fuzzer sent 23,391 well-typed requests and found none of the 500s that deep JSON, a 2^63 cursor
or a non-UTF-8 bearer token caused: its inputs follow the schema. These strategies do not. They build JSON from
loose tokens (deep nesting, NaN, lone surrogates, duplicate members, huge numbers), raw bytes, header values
decoded the way aiohttp decodes them (UTF-8 with surrogate escapes), cursors, tile paths and query integers.

The property is the same for every parser: a clean parse, or the project's InvalidInput (a LogError that the
problem table turns into a 4xx), never any other exception. Unit level and bounded: each test takes seconds.
"""

from __future__ import annotations

import base64
import json

from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict

from api.server.audit_routes import CONTEXT_PARAMS, format_cursor, parse_admin_body, parse_cursor, parse_event_query
from api.server.problems import kind_of
from api.server.routes import (
    HASH_SIZE, MAX_QUERY_INT, _prefers_octet_stream, _query, _query_int, is_single_entry, parse_batch, parse_hash,
    parse_uint,
)
from log.audit.admin import check_bearer
from log.audit.canonical import MAX_DEPTH, check_depth
from log.audit.errors import AdminUnauthorized, InvalidEvent
from log.audit.intake import CheckedEnvelope, check_body
from log.errors import InvalidInput, LogError
from log.tiles import MAX_ENTRY_SIZE, MAX_TILE_INDEX, TILE_WIDTH, TileID

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_795_000_000_000

# --- strategies ---------------------------------------------------------------------------------------------

# Loose JSON tokens, joined in any order: most sequences are not JSON, some are, many are nearly.
_TOKENS = ["{", "}", "[", "]", ",", ":", '"a"', '"entries"', '"events"', '"AA=="', '"\\ud800"', '"\\udfff"', "1",
           "-0", "1e999999", "9" * 400, "NaN", "-Infinity", "Infinity", "true", "null", " ", '"\\u0000"',
           '"producer"', '"event"', '"extensions"', '"tenants"', '"t"', "1.5"]
loose_json = st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join).map(str.encode)


@st.composite
def deep_json(draw) -> bytes:
    """Nesting from a few levels to well past the parser's recursion limit, objects and arrays mixed."""
    depth = draw(st.one_of(st.integers(1, 80), st.integers(900, 1100), st.integers(1, 5000)))
    opens = draw(st.lists(st.sampled_from(["[", '{"a":', '{"entries":', '{"events":']), min_size=1, max_size=4))
    close = {"[": "]", '{"a":': "}", '{"entries":': "}", '{"events":': "}"}
    chain = [opens[i % len(opens)] for i in range(depth)]
    inner = draw(st.sampled_from(["1", "[]", "{}", '"AA=="', "NaN", ""]))
    return ("".join(chain) + inner + "".join(close[o] for o in reversed(chain))).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)
dumped_json = json_values.map(lambda v: json.dumps(v).encode())  # json.dumps writes NaN and Infinity as such
json_bodies = st.one_of(loose_json, deep_json(), dumped_json, st.binary(max_size=200))

batch_items = st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=10),
                        json_values)
batches = st.one_of(
    st.lists(batch_items, max_size=8).map(lambda items: json.dumps({"entries": items}).encode()),
    json_bodies,
)

_event_base = {"schema": "auditlog.event/v1", "event_id": "ev-1", "trace_id": "tr-1", "run_id": "run-1",
               "timestamp": "2026-11-18T07:06:40.123Z", "tenant": "acme", "actor": {"type": "agent", "id": "a-1"},
               "event_type": "tool_call"}


@st.composite
def envelopes(draw) -> bytes:
    """Envelope-shaped bodies: well-formed ones with a field replaced by anything, or extensions of any depth."""
    event = dict(_event_base)
    if draw(st.booleans()):
        event[draw(st.sampled_from(sorted(event) + ["extensions", "context", "x"]))] = draw(json_values)
    if draw(st.booleans()):
        depth = draw(st.one_of(st.integers(0, 70), st.integers(900, 1000)))
        event["extensions"] = "HOLE"
        text = json.dumps(event).replace('"HOLE"', "[" * depth + "1" + "]" * depth)
    else:
        text = json.dumps(event)
    envelope = ('{"producer":"gateway-1","key_id":"0123456789abcdef","signature":"%s","event":%s}'
                % (base64.b64encode(bytes(64)).decode(), text))
    return draw(st.sampled_from([envelope, '{"events":[%s,%s]}' % (envelope, envelope)])).encode()


# Header values as aiohttp hands them over: the bytes decoded as UTF-8 with surrogate escapes.
header_values = st.one_of(
    st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(max_size=60),
)
digits_text = st.one_of(st.integers(-2**70, 2**70).map(str), st.text("0123456789_ +-e\u0661\uff11", max_size=25))
cursors = st.one_of(
    digits_text.map(lambda t: base64.urlsafe_b64encode(t.encode()).decode()),
    digits_text.map(lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("=")),
    st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.text(max_size=30),
)
tile_paths = st.one_of(
    st.lists(st.sampled_from(["tile/", "entries", "/", "0", "1", "63", "64", "x", "000", "001", "999", "x999",
                              "x000", ".p/", "255", "256", "99999999999999999999", "\u0660", "-1", ""]),
             max_size=12).map("".join),
    st.text(max_size=40),
)


# --- JSON bodies ----------------------------------------------------------------------------------------------


@FUZZ
@given(batches)
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"entries":["AA=="],"entries":["AQ=="]}')
def test_a_batch_body_parses_or_is_invalid_input(body):
    try:
        entries = parse_batch(body)
    except InvalidInput as exc:
        assert kind_of(exc).status == 400 and exc.field is not None
        return
    assert entries and all(isinstance(e, bytes) and 1 <= len(e) <= MAX_ENTRY_SIZE for e in entries)


@FUZZ
@given(st.one_of(json_bodies, envelopes()))
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"events":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
def test_an_events_body_is_checked_or_refused_never_crashes(body):
    try:
        single, items = check_body(body, NOW)
    except InvalidEvent as exc:
        assert 400 <= kind_of(exc).status < 500 and exc.field is not None
        return
    assert isinstance(single, bool) and items
    for item in items:
        assert isinstance(item, (CheckedEnvelope, LogError))
        if isinstance(item, LogError):
            assert 400 <= kind_of(item).status < 500


@FUZZ
@given(json_bodies)
@example(b"[" * 100_000 + b"]" * 100_000)
def test_an_admin_body_is_an_object_or_invalid_input(body):
    try:
        document = parse_admin_body(body)
    except InvalidInput as exc:
        assert exc.field == "$"
        return
    assert isinstance(document, dict)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200))
def test_the_depth_limit_is_exact(depth):
    value: object = 1
    for _ in range(depth):
        value = [value]
    if depth <= MAX_DEPTH:
        check_depth(value, "$")
    else:
        try:
            check_depth(value, "$")
        except InvalidEvent as exc:
            assert exc.field == "$"
        else:
            raise AssertionError(f"depth {depth} passed")


# --- cursors, query parameters, integers, hashes --------------------------------------------------------------


@FUZZ
@given(cursors)
@example(base64.urlsafe_b64encode(str(2**63).encode()).decode())
def test_a_cursor_is_an_index_in_range_or_invalid_input(text):
    try:
        index = parse_cursor(text)
    except InvalidInput as exc:
        assert exc.field == "cursor"
        return
    assert 0 <= index <= MAX_QUERY_INT


@FUZZ
@given(st.integers(0, MAX_QUERY_INT))
def test_every_cursor_the_log_gives_reads_back(index):
    assert parse_cursor(format_cursor(index)) == index
    assert parse_cursor(format_cursor(index).rstrip("=")) == index


_QUERY_NAMES = ["tenant", "run_id", "trace_id", "actor_id", "actor_type", "event_type", "producer", "since", "until",
                "cursor", "limit", "context.x", "context.\x00", *CONTEXT_PARAMS]
query_values = st.one_of(st.text(max_size=30), digits_text, cursors,
                         st.sampled_from(["2026-11-18T07:06:40.123Z", "9999-12-31T23:59:59.999Z", "2026-02-30T00:00:00.000Z"]))


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.sampled_from(_QUERY_NAMES), st.text(max_size=10)), query_values), max_size=6))
def test_an_events_query_is_bounded_or_invalid_input(pairs):
    try:
        query = parse_event_query(MultiDict(pairs))
    except InvalidInput as exc:
        assert exc.field is not None
        return
    assert -1 <= query.after <= MAX_QUERY_INT and 0 <= query.limit <= MAX_QUERY_INT
    texts = [getattr(query, name) for name in ("tenant", "run_id", "trace_id", "actor_id", "actor_type",
                                                 "event_type", "producer")]
    texts += [part for pair in query.context for part in pair]
    assert not any("\x00" in text for text in texts if text is not None)


class _Stub:
    """What the proof handlers' parsing reads of a request."""

    def __init__(self, query=(), headers=None):
        self.query = MultiDict(query)
        self.headers = CIMultiDict(headers or {})


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["index", "tree_size", "leaf_hash", "first", "second", "x"]),
                          st.one_of(digits_text, st.text(max_size=50))), max_size=4))
def test_proof_query_parameters_are_integers_in_range_or_invalid_input(pairs):
    try:
        params = _query(_Stub(pairs), {"index", "tree_size", "leaf_hash", "first", "second"})
        values = [_query_int(params, name) for name in ("index", "tree_size", "first", "second")]
        leaf_hash = parse_hash(params["leaf_hash"], "leaf_hash") if "leaf_hash" in params else None
    except InvalidInput as exc:
        assert exc.field is not None
        return
    assert all(v is None or 0 <= v <= MAX_QUERY_INT for v in values)
    assert leaf_hash is None or len(leaf_hash) == HASH_SIZE


@FUZZ
@given(digits_text)
def test_parse_uint_takes_ascii_decimals_in_range_only(text):
    try:
        value = parse_uint(text, "n")
    except InvalidInput:
        assert not (text.isascii() and text.isdigit() and int(text) <= MAX_QUERY_INT and len(text) <= 19)
        return
    assert str(value) == text.lstrip("0").rjust(1, "0") and 0 <= value <= MAX_QUERY_INT


# --- headers --------------------------------------------------------------------------------------------------

TOKEN = "correct-horse-battery-staple-0123"


@FUZZ
@given(st.one_of(header_values, header_values.map(lambda v: "Bearer " + v),
                 header_values.map(lambda v: "Bearer " + TOKEN + v)))
@example("Bearer " + b"\xff\xfe".decode("utf-8", "surrogateescape"))
@example("Bearer " + TOKEN)
def test_a_bearer_header_passes_only_with_the_token_else_401(header):
    try:
        check_bearer(TOKEN, header)
    except AdminUnauthorized as exc:
        assert kind_of(exc).status == 401 and exc.field == "Authorization"
        return
    assert header[:7].lower() == "bearer " and header[7:].strip() == TOKEN


@FUZZ
@given(header_values)
def test_an_accept_header_of_any_bytes_is_read_without_error(value):
    assert isinstance(_prefers_octet_stream(_Stub(headers={"Accept": value})), bool)


@FUZZ
@given(st.one_of(st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=40),
                 st.sampled_from(["application/octet-stream", "APPLICATION/OCTET-STREAM; x=y", "text", "",
                                  "application/json", "application/octet-streamx"])))
@example("0;0*")  # aiohttp's request.content_type raises IndexError on it
@example(";0*")
def test_only_an_octet_stream_content_type_or_none_is_one_raw_entry(value):
    request = make_mocked_request("POST", "/api/v1/entries", headers={"Content-Type": value})
    single = is_single_entry(request)
    assert single == (value.split(";", 1)[0].strip().lower() == "application/octet-stream")
    assert is_single_entry(make_mocked_request("POST", "/api/v1/entries"))


# --- tile paths -----------------------------------------------------------------------------------------------


@FUZZ
@given(tile_paths)
@example("tile/0/x999/x999/x999/x999/x999/x999/x999/001")
@example("tile/99999999999999999999/000")
def test_a_tile_path_parses_to_a_tile_that_prints_it_back_or_is_invalid_input(path):
    try:
        tile = TileID.parse(path)
    except InvalidInput as exc:
        assert exc.field in ("path", "level", "index", "width")
        return
    assert tile.path() == path.removeprefix("/")


@FUZZ
@given(st.one_of(st.none(), st.integers(0, 63)), st.integers(0, MAX_TILE_INDEX), st.integers(1, TILE_WIDTH))
def test_every_tile_path_parses_back(level, index, width):
    tile = TileID(level, index, width)
    assert TileID.parse(tile.path()) == tile


@FUZZ
@given(st.dictionaries(st.sampled_from(["Authorization", "Accept", "Content-Type", "X-A"]), header_values, max_size=4))
def test_forwarding_passes_on_only_utf8_header_values_and_keeps_the_valid_ones(headers):
    from api.server.forwarding import utf8_headers

    passed = utf8_headers(dict(headers))
    assert passed.keys() == headers.keys()
    for name, value in passed.items():
        value.encode()  # aiohttp's header writer would silently drop what this refuses
        original = headers[name]
        try:
            original.encode()
        except UnicodeEncodeError:
            assert value != original and "\ufffd" in value
        else:
            assert value == original
