"""Verifying an archive of a log period offline (log/archive.py) with the checks that need witness/: the witnesses'
cosignatures on its checkpoint (check 5) and its RFC 3161 timestamp tokens (check 6). No HTTP here.

`verify_archive(path, log_key, witnesses=, tsa_trusted=)` runs log/archive.py's checklist with those two checks
plugged in when asked for (witness keys given, a TSA certificate given), the way api/client/evidence.py does for
evidence bundles: a check asked for that the archive cannot satisfy (too few cosignatures, no token) fails.
"""

from __future__ import annotations

import os

from log import archive
from log.audit.archive import AUDIT_RECORDS
from log.errors import VerificationError
from witness.cosignatures import WitnessPolicy, check_cosignatures
from witness.rfc3161 import format_gen_time, verify_timestamp


def verify_archive(path: str | os.PathLike, log_key: str, *, witnesses: WitnessPolicy | None = None,
                   tsa_trusted: bytes | None = None, progress: archive.Progress | None = None) -> archive.ArchiveReport:
    """log.archive.verify_archive of an audit log's archive (log/audit/archive.py), with check 5 when `witnesses`
    is given and check 6's token verification when `tsa_trusted` (the PEM certificate(s) the tokens must chain to)
    is given."""

    def cosignatures(note: bytes) -> str:
        report = check_cosignatures(note, witnesses)  # SignatureError for a line of a given key that does not verify
        if not report.satisfied:
            raise VerificationError(report.describe())
        return f"{report.describe()}: {', '.join(report.cosigned_by)}"

    def timestamp(token: bytes, note: bytes) -> str:
        info = verify_timestamp(token, note, tsa_trusted)
        return f"genTime {format_gen_time(info.gen_time)} by {info.tsa_name}"

    return archive.verify_archive(path, log_key, records=AUDIT_RECORDS,
                                  cosignatures=cosignatures if witnesses is not None else None,
                                  timestamp=timestamp if tsa_trusted is not None else None, progress=progress)
