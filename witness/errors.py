"""The witness's refusals of an add-checkpoint request (c2sp.org/tlog-witness), one class per outcome.

Each carries a stable code; witness/server.py holds the one table turning codes into the statuses the spec
prescribes (400, 403, 404, 409, 422; a same-size other root is 422, as C2SP/C2SP#280 has it).
"""

from __future__ import annotations

from log.errors import LogError


class WitnessError(LogError):
    """Base of the add-checkpoint refusals."""

    code = "witness-error"


class MalformedRequest(WitnessError):
    """The body is not `old` line, proof lines, blank line, signed checkpoint; or `old` exceeds the size."""

    code = "witness-malformed-request"


class UnknownLog(WitnessError):
    """The checkpoint's origin is not one this witness is configured for."""

    code = "witness-unknown-log"


class BadLogSignature(WitnessError):
    """No signature on the checkpoint verifies against the keys configured for its origin."""

    code = "witness-bad-log-signature"


class OldSizeConflict(WitnessError):
    """`old` is not the size of the latest checkpoint cosigned for this origin; `latest_size` is that size."""

    code = "witness-old-size-conflict"

    def __init__(self, message: str, latest_size: int):
        super().__init__(message)
        self.latest_size = latest_size


class RootConflict(WitnessError):
    """The checkpoint has the size of the one last cosigned but another root: the log has forked (HTTP 422)."""

    code = "witness-root-conflict"


class InconsistentProof(WitnessError):
    """The consistency proof from `old` to the checkpoint's size does not verify (or must have been empty)."""

    code = "witness-inconsistent-proof"
