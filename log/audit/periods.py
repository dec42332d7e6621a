"""Time bounds as people write them: RFC 3339 times or plain dates. One reading for every command and route that
takes them (`auditlog report --from/--to`, `GET /api/v1/reports`, `auditlog events --since/--until`, a legal hold's
`--from/--to`). Standard library only, so that a command checks its flags before it imports anything heavy or sends
anything."""

from __future__ import annotations

import datetime
import re

from log.errors import InvalidInput

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_YEAR_10000_MS = 253402300800000  # 10000-01-01T00:00:00Z in Unix ms: RFC 3339 UTC times end before it


def parse_day_or_time(text: str, name: str) -> int:
    """Unix ms of a bound: RFC 3339 (`2026-01-01T00:00:00Z`, an offset, fractions) or a date `YYYY-MM-DD` (its
    midnight UTC); InvalidInput naming `name` otherwise (no time zone on a time, before 1970, from the year 10000 on,
    anything else)."""
    value = (text or "").strip()
    unreadable = InvalidInput(f"{text[:40]!r} is neither an RFC 3339 time (2026-12-07T18:00:00Z) nor a date "
                              f"YYYY-MM-DD", field=name)
    try:
        moment = datetime.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise unreadable from None
    if moment.tzinfo is None:
        if not _DATE.match(value):
            if "T" not in value.upper() and " " not in value:  # ISO week or ordinal dates, which RFC 3339 has not
                raise unreadable
            raise InvalidInput(f"{text[:40]!r} has no time zone: end it with Z (UTC) or an offset", field=name)
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise InvalidInput(f"{text[:40]!r} is before 1970", field=name)
    if ms >= _YEAR_10000_MS:
        raise InvalidInput(f"{text[:40]!r} is in the year 10000 UTC or later", field=name)
    return ms
