"""The producer registry: who may submit audit events, for which tenants, with which Ed25519 keys and when.

The registry is a fold over registry-change records, and every record is an entry in the log (see
`log/audit/records.py`), so the registry at any tree size can be rebuilt from the log alone and an auditor can
prove which keys a producer had. The server keeps the fold in memory (`Registry`) and replays the records from
its index table on start.

Key validity. A key has a validity period `[not_before, not_after)` (`not_after` open-ended until the key is
retired) and may be revoked with an effective time `revoked_at` (by default the moment of revocation; it may be
set earlier, to when a compromise began). For an event with timestamp `t` submitted at time `now`:

1. the key must be valid at `t`: `not_before <= t < not_after` and `t < revoked_at`; and
2. the key must be usable now: `now < not_after + RETIREMENT_GRACE_MS` and the key not revoked at all.

Rule 2 is what makes revocation effective: a stolen key could sign events with any timestamp, so after a
revocation nothing new signed with the key is accepted, whatever its timestamp. Retirement (rotation) is not a
compromise, so events signed just before it may still arrive for a grace period (retries, queues). Verifying a
stored event later (timelines, evidence bundles, years after) applies rule 1 only: rotation and later revocation
never make an old event unverifiable, while events dated at or after a revocation's effective time never verify.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from log.audit.errors import (
    BadSignature, KeyExpired, KeyRevoked, RegistryConflict, TenantForbidden, UnknownKey, UnknownProducer,
)
from log.errors import InvalidInput

RETIREMENT_GRACE_MS = 5 * 60 * 1000
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def key_id_for(public_key: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its 32 raw Ed25519 public-key bytes."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidInput(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, not {len(public_key)}",
                           field="public_key")
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class ProducerKey:
    producer: str
    key_id: str
    public_key: bytes
    not_before: int  # Unix ms
    not_after: int | None = None  # Unix ms, exclusive; None while the key is current
    revoked_at: int | None = None  # Unix ms: events from this time on never verify
    verify_key: VerifyKey = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.verify_key is None:
            object.__setattr__(self, "verify_key", VerifyKey(self.public_key))

    def valid_at(self, t: int) -> bool:
        """Rule 1: the key may have signed an event dated `t`."""
        return (self.not_before <= t and (self.not_after is None or t < self.not_after)
                and (self.revoked_at is None or t < self.revoked_at))

    def check_usable(self, t: int, now: int) -> None:
        """Rules 1 and 2 of the module docstring; raises KeyRevoked or KeyExpired saying which bound failed."""
        where = f"key {self.key_id} of producer {self.producer}"
        if self.revoked_at is not None:
            raise KeyRevoked(f"{where} was revoked (effective {self.revoked_at} ms); it can sign nothing new",
                             "$.key_id")
        if t < self.not_before:
            raise KeyExpired(f"{where} is valid from {self.not_before} ms, after the event timestamp {t} ms",
                             "$.event.timestamp")
        if self.not_after is not None and t >= self.not_after:
            raise KeyExpired(f"{where} was retired at {self.not_after} ms, before the event timestamp {t} ms",
                             "$.event.timestamp")
        if self.not_after is not None and now >= self.not_after + RETIREMENT_GRACE_MS:
            raise KeyExpired(f"{where} was retired at {self.not_after} ms; its grace period is over", "$.key_id")

    def verify(self, message: bytes, signature: bytes) -> None:
        try:
            self.verify_key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError) as exc:
            raise self.bad_signature() from exc

    def bad_signature(self) -> BadSignature:
        """The refusal of a signature that does not verify with this key."""
        return BadSignature(f"the signature does not verify with key {self.key_id} of producer {self.producer}",
                            "$.signature")

    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


@dataclass(frozen=True)
class Producer:
    producer_id: str
    tenants: frozenset[str]
    registered_at: int
    keys: dict[str, ProducerKey] = field(default_factory=dict, compare=False)


class Registry:
    """The fold of registry-change records. Not thread-safe for writers: apply changes from one task at a time
    (`AuditService` holds a lock); lookups may run at any time and see either the old or the new state."""

    def __init__(self) -> None:
        self._producers: dict[str, Producer] = {}
        self.version = 0  # number of changes applied; bumps on every change

    def producers(self) -> list[Producer]:
        return sorted(self._producers.values(), key=lambda p: p.producer_id)

    def producer(self, producer_id: str) -> Producer:
        found = self._producers.get(producer_id)
        if found is None:
            raise UnknownProducer(f"no producer {producer_id!r} is registered", "$.producer")
        return found

    def key(self, producer_id: str, key_id: str) -> ProducerKey:
        key = self.producer(producer_id).keys.get(key_id)
        if key is None:
            raise UnknownKey(f"producer {producer_id!r} has no key {key_id!r}", "$.key_id")
        return key

    def check_tenant(self, producer_id: str, tenant: str) -> None:
        if tenant not in self.producer(producer_id).tenants:
            raise TenantForbidden(f"producer {producer_id!r} may not write for tenant {tenant!r}")

    def check(self, change: dict) -> None:
        """Raise RegistryConflict if `change` (a parsed record, see records.py) cannot apply to this state."""
        kind, producer_id = change["change"], change["producer"]
        existing = self._producers.get(producer_id)
        if kind == "producer-registered":
            if existing is not None:
                raise RegistryConflict(f"producer {producer_id!r} is already registered")
            return
        if existing is None:
            raise RegistryConflict(f"no producer {producer_id!r} is registered")
        key = existing.keys.get(change["key_id"])
        if kind == "key-added":
            if key is not None:
                raise RegistryConflict(f"producer {producer_id!r} already has key {change['key_id']}")
            return
        if key is None:
            raise RegistryConflict(f"producer {producer_id!r} has no key {change['key_id']!r}")
        if key.revoked_at is not None:
            raise RegistryConflict(f"key {key.key_id} is already revoked")
        if kind == "key-retired" and key.not_after is not None:
            raise RegistryConflict(f"key {key.key_id} is already retired")

    def apply(self, change: dict) -> None:
        """Apply one parsed registry-change record (checked with `check` first)."""
        self.check(change)
        kind, producer_id = change["change"], change["producer"]
        if kind == "producer-registered":
            self._producers[producer_id] = Producer(producer_id, frozenset(change["tenants"]), change["at"])
        else:
            keys = self._producers[producer_id].keys
            if kind == "key-added":
                keys[change["key_id"]] = ProducerKey(
                    producer_id, change["key_id"], change["public_key"], change["not_before"], change["not_after"]
                )
            elif kind == "key-retired":
                keys[change["key_id"]] = replace(keys[change["key_id"]], not_after=change["not_after"])
            elif kind == "key-revoked":
                keys[change["key_id"]] = replace(keys[change["key_id"]], revoked_at=change["revoked_at"])
        self.version += 1
