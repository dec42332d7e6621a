"""The witness's durable state: its own tables (witness/schema.py) over SQLAlchemy Core, in its own database.

One row per log origin holds the latest checkpoint cosigned for it: the compare-and-swap cell of tlog-witness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from log.storage.engine import make_engine, normalize_database_url
from witness.errors import RootConflict
from witness.schema import witness_checkpoints, witness_logs, witness_refusals


@dataclass(frozen=True)
class WitnessState:
    """The latest checkpoint cosigned for one origin: its size, root and the full signed note."""

    size: int
    root_hash: bytes
    note: bytes


def _now_ms() -> int:
    return int(time.time() * 1000)


class WitnessStore:
    """The witness tables over SQLAlchemy Core. Blocking: call from a thread. Safe for concurrent callers.

    * `compare_and_swap` is one transaction: durable when it returns True (SQLite runs with synchronous=FULL),
      and it changes nothing when it returns False or raises.
    * Several processes may share one database: the swap is guarded in SQL by the (size, root) the caller read,
      so of two racing swaps from the same state exactly one returns True.
    """

    def __init__(self, url: str):
        self.url = normalize_database_url(url)
        self.engine = make_engine(self.url)

    def latest(self, origin: str) -> WitnessState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(witness_logs).where(witness_logs.c.origin == origin)).first()
        return None if row is None else WitnessState(row.size, bytes(row.root_hash), bytes(row.note))

    def compare_and_swap(self, origin: str, expected: WitnessState | None, new: WitnessState) -> bool:
        """Replace `expected` (None: no row yet) by `new` and record `new` among the cosigned checkpoints.

        Returns False if the stored state is no longer `expected`. Raises RootConflict, storing nothing, if a
        different root was ever cosigned at `new.size` (a second fence behind the caller's checks).
        """
        now = _now_ms()
        try:
            with self.engine.begin() as conn:
                if expected is None:
                    conn.execute(insert(witness_logs).values(
                        origin=origin, size=new.size, root_hash=new.root_hash, note=new.note, updated_at=now))
                else:
                    swapped = conn.execute(
                        update(witness_logs)
                        .where(witness_logs.c.origin == origin, witness_logs.c.size == expected.size,
                               witness_logs.c.root_hash == expected.root_hash)
                        .values(size=new.size, root_hash=new.root_hash, note=new.note, updated_at=now)
                    ).rowcount
                    if swapped != 1:
                        return False  # the context manager rolls back nothing written
                stored = conn.execute(
                    select(witness_checkpoints.c.root_hash)
                    .where(witness_checkpoints.c.origin == origin, witness_checkpoints.c.size == new.size)
                ).scalar()
                if stored is None:
                    conn.execute(insert(witness_checkpoints).values(
                        origin=origin, size=new.size, root_hash=new.root_hash, note=new.note, cosigned_at=now))
                elif bytes(stored) != new.root_hash:
                    raise RootConflict(f"{origin} already has another root cosigned at size {new.size}")
        except IntegrityError:
            return False  # a concurrent first insert (of either table) won
        return True

    def record_refusal(self, origin: str, size: int, root_hash: bytes, note: bytes, reason: str) -> None:
        """Keep a validly signed checkpoint that was refused; a repeat of the same (origin, size, root) is a no-op."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(witness_refusals).values(
                    origin=origin, size=size, root_hash=root_hash, note=note, reason=reason,
                    received_at=_now_ms()))
        except IntegrityError:
            pass

    def cosigned(self, origin: str, size: int) -> bytes | None:
        """The signed checkpoint cosigned at `size` for `origin`, as the log sent it."""
        with self.engine.connect() as conn:
            note = conn.execute(
                select(witness_checkpoints.c.note)
                .where(witness_checkpoints.c.origin == origin, witness_checkpoints.c.size == size)
            ).scalar()
        return None if note is None else bytes(note)

    def refusals(self, origin: str) -> list[tuple[int, bytes, bytes, str]]:
        """(size, root, note, reason) of every refused checkpoint of `origin`, by size."""
        query = (
            select(witness_refusals.c.size, witness_refusals.c.root_hash, witness_refusals.c.note,
                   witness_refusals.c.reason)
            .where(witness_refusals.c.origin == origin).order_by(witness_refusals.c.size)
        )
        with self.engine.connect() as conn:
            return [(size, bytes(root), bytes(note), reason) for size, root, note, reason in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()
