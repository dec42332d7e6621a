"""One error hierarchy for the log. Each error carries a stable `code`; `api` maps codes to HTTP statuses.

Callers branch on the class (or the code), never on the message; the message names the bad value and the bound.
"""


class LogError(Exception):
    """Base of every error the log raises on purpose."""

    code = "log-error"


class InvalidInput(LogError):
    """A caller passed a malformed or out-of-range value (bad base64, index past the tree, oversized entry...)."""

    code = "invalid-input"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFound(LogError):
    """The thing asked for does not exist (yet): an index past the tree, a tile not yet complete, an unknown hash."""

    code = "not-found"


class Conflict(LogError):
    """The request contradicts what the log already holds (the same idempotency key with different content).
    `index` is the index of the entry that already holds the key, where there is one."""

    code = "conflict"

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class VerificationError(LogError):
    """A proof, signature, note or tile did not verify. The message says which check failed."""

    code = "verification-failed"


class ProofError(VerificationError):
    """An inclusion or consistency proof is malformed or does not lead to the expected root."""

    code = "invalid-proof"


class SignatureError(VerificationError):
    """A signed note or cosignature is malformed, from an unknown key, or does not verify."""

    code = "invalid-signature"


class Unavailable(LogError):
    """The log cannot take the request right now (back-pressure, shutting down); retry later."""

    code = "unavailable"


class StorageError(LogError):
    """The store failed or holds inconsistent state; the log fails closed rather than serve it."""

    code = "storage-error"


class StorageUnavailable(StorageError):
    """The store cannot take writes right now (disk full, an I/O error, the database unreachable, the writer lock
    lost): nothing of the refused request was acknowledged; retry later. `reason` names the condition
    (log.storage.faults); the log takes writes again by itself once it clears."""

    code = "storage-unavailable"

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class SequencerLockHeld(StorageError):
    """Another sequencer holds the database's writer lock."""

    code = "sequencer-locked"


class ForkRefused(StorageError):
    """Starting would let the log's key sign a second tree of its origin: the database is empty, behind, or holds
    another log than the one the key has signed (log/signed_history.py)."""

    code = "fork-refused"


class Unauthenticated(LogError):
    """No credential where one is needed, or one that is not valid: unknown, malformed, expired or revoked
    (HTTP 401 with `WWW-Authenticate: Bearer`). The message says which, never the credential. `field` is the
    request header to blame."""

    code = "unauthenticated"

    def __init__(self, message: str, field: str | None = "Authorization"):
        super().__init__(message)
        self.field = field


class Forbidden(LogError):
    """A valid credential whose role or tenants do not allow the request (HTTP 403)."""

    code = "forbidden"


class EntryPruned(LogError):
    """The contents of a log entry were deleted under a retention policy (HTTP 410 Gone): its leaf hash, the tiles
    and every checkpoint stay, so proofs still hold, but the bytes are gone for good. `pruned` maps each pruned
    index the request touched to the log entry that records its deletion (a retention run); `index` and
    `deletion_index` are the first of them. For an entry bundle, `present` is the bundle with every pruned entry
    written as zero bytes (log/bundles.py), so a verifier still re-hashes the entries that remain."""

    code = "entry-pruned"

    def __init__(self, message: str, pruned: dict[int, int], present: bytes | None = None):
        super().__init__(message)
        self.pruned = dict(sorted(pruned.items()))
        self.index, self.deletion_index = next(iter(self.pruned.items()))
        self.present = present
