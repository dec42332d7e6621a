"""A report's period bounds as people write them: RFC 3339 times or plain dates. Standard library only, so that
the `auditlog report` command checks its flags before it imports anything heavy or sends anything."""

from __future__ import annotations

import datetime

from log.errors import InvalidInput


def parse_day_or_time(text: str, name: str) -> int:
    """Unix ms of a bound: RFC 3339 (`2026-01-01T00:00:00Z`, an offset, fractions) or a date `YYYY-MM-DD` (its
    midnight UTC); InvalidInput naming `name` otherwise (no time zone on a time, before 1970, anything else)."""
    value = (text or "").strip()
    try:
        moment = datetime.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(f"{name} must be an RFC 3339 time or a date YYYY-MM-DD, not {text[:40]!r}",
                           field=name) from None
    if moment.tzinfo is None:
        if len(value) != 10:
            raise InvalidInput(f"{name} {text[:40]!r} has no time zone: end it with Z or an offset", field=name)
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise InvalidInput(f"{name} must not be before 1970", field=name)
    return ms
