"""RFC 8785 JSON Canonicalization Scheme (JCS): the bytes that producers sign and the log stores.

The definition is the `rfc8785` library (`canonicalize`). The ingest path uses a faster route for the JSON it
parses itself (`parse_json` then `canonicalize_parsed`): the standard library's encoder with sorted keys, no
whitespace and no ASCII escaping produces exactly the RFC 8785 bytes for any value that

* holds no floating-point number (RFC 8785 serializes those the ECMAScript way, which `repr` does not),
* holds no integer beyond +-(2^53 - 1) (RFC 8785 numbers are IEEE 754 doubles),
* holds no character outside the Basic Multilingual Plane (RFC 8785 sorts keys by UTF-16 code units, Python by
  code points; the orders differ only when a key holds such a character), and
* holds no lone surrogate (refused by both: UTF-8 cannot encode it).

`parse_json` notes while parsing whether the first two hold; the fast route checks the third on its own output
and falls back to the library whenever a condition fails. `tests/test_audit_canonical.py` holds the fast route
to the library with hypothesis, and both to the test vectors of RFC 8785's reference implementation.
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

from log.audit.errors import InvalidEvent

MAX_SAFE_INTEGER = 2**53 - 1
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value; raises InvalidEvent if it has no canonical form."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"the value has no RFC 8785 canonical form: {exc}", "$") from exc


class ParsedJson:
    """A JSON document parsed by `parse_json`: its value and whether the fast canonical route is exact for it."""

    __slots__ = ("value", "exact")

    def __init__(self, value: Any, exact: bool):
        self.value = value
        self.exact = exact


def parse_json(data: bytes | str) -> ParsedJson:
    """Parse a JSON document (RFC 8259; duplicate keys refused, NaN/Infinity refused).

    Raises InvalidEvent naming the position of the first syntax error.
    """
    flags = {"exact": True}

    def on_float(text: str) -> float:
        flags["exact"] = False
        return float(text)

    def on_int(text: str) -> int:
        number = int(text)
        if number > MAX_SAFE_INTEGER or number < -MAX_SAFE_INTEGER:
            flags["exact"] = False
        return number

    def on_constant(name: str):
        raise ValueError(f"{name} is not JSON")

    def on_pairs(pairs: list[tuple[str, Any]]) -> dict:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen = set()
            duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise ValueError(f"duplicate key {duplicate!r}")
        return result

    try:
        value = json.loads(data, parse_float=on_float, parse_int=on_int, parse_constant=on_constant,
                           object_pairs_hook=on_pairs)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"the body is not valid JSON: {exc}", "$") from exc
    except RecursionError:
        raise InvalidEvent("the body is not valid JSON for this log: it is nested too deeply", "$") from None
    return ParsedJson(value, flags["exact"])


MAX_DEPTH = 64  # objects and arrays inside each other in one value: far fewer than the encoder's ~1,000 frames


def check_depth(value: Any, field: str, limit: int = MAX_DEPTH) -> None:
    """Refuse (InvalidEvent naming `field`) a JSON value with more than `limit` objects and arrays inside each other.

    What the log stores it serves again, and the standard library's encoder and decoder are recursive (1,000 frames
    for the whole stack): a value nested just under the parser's limit would be accepted, then fail every read that
    encodes it. The walk recurses at most `limit` frames deep (~0.7 us for a small object; a level-by-level walk
    with lists took 2.3 us).
    """
    if isinstance(value, (dict, list)) and not _nests_within(value, limit):
        raise InvalidEvent(f"the value nests more than {limit} objects and arrays inside each other", field)


def _nests_within(container: dict | list, levels: int) -> bool:
    """True if `container` and what it holds are at most `levels` objects and arrays deep."""
    if levels == 0:
        return False
    for child in (container.values() if type(container) is dict else container):
        kind = type(child)
        if (kind is dict or kind is list) and not _nests_within(child, levels - 1):
            return False
    return True


_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def canonicalize_parsed(value: Any, exact: bool) -> bytes:
    """RFC 8785 bytes of `value`, a part of a document parsed by `parse_json` whose `exact` flag is given."""
    if exact:
        text = _dumps(value)
        if text.isascii() or not _ASTRAL.search(text):
            try:
                return text.encode()
            except UnicodeEncodeError as exc:  # a lone surrogate
                raise InvalidEvent(f"the value has no RFC 8785 canonical form: {exc}", "$") from exc
    return canonicalize(value)
