"""Errors of the audit personality. Each has a stable `code` (the problem type is `urn:auditlog:problem:<code>`)
and, where one field is to blame, `field` as a JSON path into the submitted envelope or event.

They extend the log's hierarchy, so code that handles `LogError` handles these too; `api/server/audit_routes.py` holds the one
table from code to HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass

from log.errors import Conflict, InvalidInput, LogError, VerificationError


@dataclass(frozen=True)
class FieldError:
    field: str  # JSON path, `$` being the event (or envelope, for envelope fields)
    message: str


class InvalidEvent(InvalidInput):
    """The event (or its envelope) is not well-formed. `errors` lists every field-level problem."""

    code = "invalid-event"

    def __init__(self, message: str, field: str | None = None, errors: tuple[FieldError, ...] = ()):
        super().__init__(message, field)
        self.errors = tuple(errors) or ((FieldError(field, message),) if field else ())

    @classmethod
    def from_fields(cls, errors: list[FieldError]) -> InvalidEvent:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return cls(f"{first.field}: {first.message}{more}", first.field, tuple(errors))


class AuthenticationFailed(VerificationError):
    """The envelope is not provably from a registered producer's valid key (HTTP 401). Subclasses say why."""

    code = "unauthenticated"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class UnknownProducer(AuthenticationFailed):
    code = "unknown-producer"


class UnknownKey(AuthenticationFailed):
    code = "unknown-key"


class BadSignature(AuthenticationFailed):
    code = "bad-signature"


class KeyRevoked(AuthenticationFailed):
    code = "key-revoked"


class KeyExpired(AuthenticationFailed):
    """The key is outside its validity period, at the event's timestamp or now."""

    code = "key-expired"


class TenantForbidden(LogError):
    """An authentic producer wrote for a tenant it is not registered for (HTTP 403)."""

    code = "tenant-forbidden"

    def __init__(self, message: str, field: str | None = "$.event.tenant"):
        super().__init__(message)
        self.field = field


class AdminUnauthorized(LogError):
    """A registry or blob administration request without the right admin bearer token (HTTP 401)."""

    code = "admin-unauthorized"

    def __init__(self, message: str, field: str | None = "Authorization"):
        super().__init__(message)
        self.field = field


class EventConflict(Conflict):
    """The producer already logged this event_id with different content (HTTP 409); `index` is where."""

    code = "event-conflict"

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message, index)
        self.field = "$.event.event_id"


class RegistryConflict(Conflict):
    """A registry change contradicts the registry (a producer or key that already exists)."""

    code = "registry-conflict"


class EvidenceError(VerificationError):
    """An evidence bundle does not verify. The message starts with the number and name of the first check that
    failed ("check 3 (checkpoint) failed: ..."), which `check` and `check_name` hold too."""

    code = "evidence-invalid"

    def __init__(self, check: int, name: str, detail: str):
        super().__init__(f"check {check} ({name}) failed: {detail}")
        self.check = check
        self.check_name = name
