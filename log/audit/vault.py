"""The token vault: values (customer ids, names, addresses) in, tokens out; tokens back to values only for a
vault-reader with a purpose, and only after that dereference is a log entry.

Tokens. A value's token in a tenant is `vt.` + the 26 lowercase base32 characters (RFC 4648, no padding) of the
first 16 bytes of HMAC-SHA-256(the tenant's tokenisation key, the value as UTF-8): the same value in the same tenant
always has the same token (joins and searches work on tokens), another tenant's token differs, and without the key
a token says nothing of its value. A token fits the event schema's token pattern, so it goes where ids go.

Data subjects. The caller names a data subject with a reference (a customer id); the subject's identity everywhere
is that reference's token (`subject`), and the reference itself is stored as one of the subject's mappings. Each
subject has its own AES-256 key; every mapping of the subject (vault_tokens: tenant, token, subject, sealed) holds
its value sealed with AES-256-GCM under that key, the associated data binding it to (tenant, token, subject), so a
sealed value moved to another row does not open. Subject keys and tenant keys are stored wrapped by the master key
(log/audit/vault_keys.py); unwrapped ones are cached in memory, bounded.

Erasure (crypto-shredding). `shred_subject` deletes the subject's wrapped key: the mappings stay as ciphertext
nobody can open, the tokens in the log's events stay, the identities are gone. The erasure's log entry is the
caller's (log/audit/holds.py writes `auditlog.subject-erasure/v1` first, then calls this).

Detokenising. `detokenize` commits an `auditlog.vault-access/v1` entry (tenant, who, role, purpose, the SHA-256 of
every token asked for, when) to the log BEFORE it reads a value: no entry, no answer. Unknown tokens and erased
subjects' tokens are answered as such, item by item.

Every write goes through `Log.write` (the log's single writer), every read through `Log.read` on the primary (an
erasure must hold at once, never lag on a replica). Nothing here ever puts a value or a subject reference into a
log entry.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import and_, select, update

from log import defaults
from log.access import Principal
from log.audit.canonical import canonicalize
from log.audit.lifecycle_names import is_vault_token, token_sha256
from log.audit.schema import TOKEN_PATTERN, format_timestamp_ms, python_regex
from log.audit.tables import vault_subject_keys, vault_tenant_keys, vault_tokens
from log.audit.vault_keys import MasterKey, MasterKeyMismatch
from log.errors import InvalidInput, LogError, StorageError, Unavailable

VAULT_ACCESS_TYPE = "auditlog.vault-access/v1"
DATA_KEY_SIZE = 32
NONCE_SIZE = 12

_TENANT = python_regex(TOKEN_PATTERN)
_AD_DOMAIN = "auditlog.vault-value/v1"
logger = logging.getLogger(__name__)
_IN_CHUNK = 500  # tokens per IN list: well under SQLite's variable limit, a few statements per 10,000 values


class SubjectErased(LogError):
    """The data subject was erased (its key destroyed): nothing more is mapped for it (HTTP 410). `index` is the
    log entry that records the erasure, where known."""

    code = "subject-erased"

    def __init__(self, message: str, index: int | None = None, field: str | None = "subject"):
        super().__init__(message)
        self.index = index
        self.field = field


class VaultIntegrityError(StorageError):
    """A sealed value does not authenticate under its subject's key (altered, or moved to another row): the vault
    refuses to answer rather than return what it cannot vouch for (HTTP 500)."""

    code = "vault-integrity"


_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase
_B32_PAIRS = [_B32[i >> 5] + _B32[i & 31] for i in range(1024)]  # 10 bits -> two characters
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def token_of(tenant_key: bytes, value: str) -> str:
    """The vault token of `value` under a tenant's tokenisation key (the module docstring).

    The 16 bytes are base32'd ten bits at a time: base64.b32encode (pure Python before 3.13) cost 30 us a token, a
    third of tokenising; this is base32 of the same bytes (held to b32encode by a test), 2 us."""
    bits = int.from_bytes(hmac.digest(tenant_key, value.encode(), "sha256")[:16], "big") << 2  # 130 bits: 26 chars
    return "vt." + "".join([_B32_PAIRS[(bits >> shift) & 1023] for shift in _PAIR_SHIFTS])


def token_of_reference(tenant_key: bytes, value: str) -> str:
    """`token_of` written the obvious way (base64.b32encode): the definition the fast one is tested against."""
    digest = hmac.new(tenant_key, value.encode(), hashlib.sha256).digest()[:16]
    return "vt." + base64.b32encode(digest).decode().rstrip("=").lower()


def format_vault_access(tenant: str, principal: Principal, purpose: str, tokens: Iterable[str], at: int) -> dict:
    """The `auditlog.vault-access/v1` record of one detokenisation (before any value is read)."""
    return {"type": VAULT_ACCESS_TYPE, "tenant": tenant, "credential": principal.credential, "role": principal.role,
            "purpose": purpose, "token_sha256": sorted({token_sha256(t) for t in tokens}),
            "at": format_timestamp_ms(at)}


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
_VAULT_ACCESS_FIELDS = frozenset({"type", "tenant", "credential", "role", "purpose", "token_sha256", "at"})


def parse_vault_access(obj: object) -> dict:
    """The fields of an `auditlog.vault-access/v1` record (`at` as Unix ms), or InvalidInput naming the first bad
    one: exactly the members format_vault_access writes, the hashes sorted and distinct."""
    from log.audit.schema import parse_timestamp_ms

    if not isinstance(obj, dict) or obj.get("type") != VAULT_ACCESS_TYPE:
        raise InvalidInput(f"not a {VAULT_ACCESS_TYPE} record", field="$.type")
    if set(obj) != _VAULT_ACCESS_FIELDS:
        raise InvalidInput(f"a vault access has exactly {', '.join(sorted(_VAULT_ACCESS_FIELDS))}", field="$")
    for name in ("tenant", "credential", "role", "purpose"):
        if not isinstance(obj[name], str) or not obj[name]:
            raise InvalidInput(f"{name} must be a non-empty string", field=f"$.{name}")
    hashes = obj["token_sha256"]
    if (not isinstance(hashes, list) or not hashes
            or not all(isinstance(h, str) and _SHA256_HEX.match(h) for h in hashes) or hashes != sorted(set(hashes))):
        raise InvalidInput("token_sha256 must be a sorted list of distinct SHA-256 hex digests", field="$.token_sha256")
    at = parse_timestamp_ms(obj["at"]) if isinstance(obj["at"], str) else None
    if at is None:
        raise InvalidInput("at must be an RFC 3339 UTC timestamp with milliseconds", field="$.at")
    return {"tenant": obj["tenant"], "credential": obj["credential"], "role": obj["role"], "purpose": obj["purpose"],
            "token_sha256": list(hashes), "at": at}


def _associated_data(tenant: str, token: str, subject: str) -> bytes:
    return json.dumps([_AD_DOMAIN, tenant, token, subject], separators=(",", ":")).encode()


@dataclass(frozen=True)
class Tokenized:
    """The answer to a tokenisation: the subject's token, the values' tokens in order, how many mappings are new."""

    subject: str
    tokens: list[str]
    created: int


@dataclass(frozen=True)
class Detokenized:
    """One token's answer: status "found" (with `value`), "unknown" (no mapping in this tenant) or "erased" (every
    subject it maps for was erased)."""

    token: str
    status: str
    value: str | None = None

    def to_json(self) -> dict:
        out = {"token": self.token, "status": self.status}
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class Detokenization:
    values: list[Detokenized]  # in the order the tokens were asked for
    index: int  # the vault-access entry, committed before any value was read


@dataclass(frozen=True)
class ShredOutcome:
    """`destroyed`: a key was deleted by this call (False: the subject was already erased, or had no key and is now
    marked erased). `erasure_idx`: the erasure entry on record (the first one, for a repeated call)."""

    subject: str
    destroyed: bool
    erased_at: int
    erasure_idx: int


class _Retry(Exception):
    """The subject's key row changed between reading it and writing its mappings: read it again."""


class _KeyCache:
    """Unwrapped keys by their wrapped bytes, least recently used dropped beyond `size`. Keyed by the wrapped bytes,
    not the subject: a key the database no longer holds is never looked up again (the vault always reads the row)."""

    def __init__(self, size: int):
        self._size = size
        self._items: collections.OrderedDict[bytes, AESGCM] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, wrapped: bytes) -> AESGCM | None:
        with self._lock:
            found = self._items.get(wrapped)
            if found is not None:
                self._items.move_to_end(wrapped)
            return found

    def put(self, wrapped: bytes, key: AESGCM) -> None:
        with self._lock:
            self._items[wrapped] = key
            self._items.move_to_end(wrapped)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def drop(self, wrapped: bytes | None) -> None:
        with self._lock:
            if wrapped is not None:
                self._items.pop(wrapped, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Vault:
    """The token vault over a `Log` (its tables in log/audit/tables.py). `master_key` None: a log without a
    configured vault, whose every vault call is Unavailable. Call `check_master_key()` once at start."""

    def __init__(self, log, master_key: MasterKey | None, *, clock: Callable[[], float] = time.time,
                 cache_size: int = defaults.VAULT_KEY_CACHE, max_values: int = defaults.VAULT_MAX_VALUES,
                 max_value_bytes: int = defaults.VAULT_MAX_VALUE_BYTES,
                 max_detokenize: int = defaults.VAULT_MAX_DETOKENIZE,
                 max_purpose: int = defaults.VAULT_MAX_PURPOSE):
        self.log = log
        self.master_key = master_key
        self._clock = clock
        self._tenant_keys: dict[str, bytes] = {}  # tenant -> HMAC key (tenant keys are never deleted)
        self._subject_keys = _KeyCache(cache_size)
        self.max_values = max_values
        self.max_value_bytes = max_value_bytes
        self.max_detokenize = max_detokenize
        self.max_purpose = max_purpose
        self._refused: MasterKeyMismatch | None = None  # set when a takeover found the vault under another key
        # Sealing and unwrapping run here, off the event loop (a KMS unwrap may block on the network).
        self._crypto = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="vault-crypto")

    def close(self) -> None:
        self._crypto.shutdown(wait=True)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget every unwrapped key (on taking over sequencing: another server may have changed the vault)."""
        self._subject_keys.clear()

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _master(self) -> MasterKey:
        if self.master_key is None:
            raise Unavailable("this server has no vault master key: the token vault is not available")
        if self._refused is not None:
            raise Unavailable(f"the token vault is not available on this server: {self._refused}")
        return self.master_key

    async def _crypto_call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._crypto, fn, *args)

    # -- start --------------------------------------------------------------------------------------------------
    async def check_master_key(self, *, refuse_calls: bool = False) -> None:
        """Refuse (MasterKeyMismatch) a master key other than the one the stored keys were wrapped with: by key id,
        then by unwrapping one stored key (RFC 3394's integrity check), so a wrong key fails here, loudly, and never
        decrypts garbage or wraps new keys beside old ones nobody could open together. With `refuse_calls` (a
        server taking over sequencing, which cannot stop by then), a mismatch is kept instead of raised, and every
        vault call is then Unavailable naming it."""
        if self.master_key is None:
            return
        try:
            await self._check_master_key()
        except MasterKeyMismatch as exc:
            if not refuse_calls:
                raise
            self._refused = exc
            logger.error("the token vault is refused on this server: %s", exc)
        else:
            self._refused = None

    async def _check_master_key(self) -> None:
        t, s = vault_tenant_keys.c, vault_subject_keys.c

        mine = self.master_key.key_id

        def read(tx):
            # One row wrapped by another key is enough to refuse (no DISTINCT over every subject's row at start).
            others = [row[0] for row in tx.execute(select(t.master_key_id).where(t.master_key_id != mine).limit(1))]
            others += [row[0] for row in tx.execute(select(s.master_key_id).where(
                s.wrapped_key.is_not(None), s.master_key_id != mine).limit(1))]
            sample = tx.execute(select(t.wrapped_key).where(t.master_key_id == mine).limit(1))
            return others, sample[0][0] if sample else None

        others, sample = await self.log.read(read, primary=True)
        if others:
            raise MasterKeyMismatch(f"the vault's keys are wrapped by master key {others[0]}, and this server's "
                                    f"master key is {mine}: start it with the vault's master key "
                                    "(--vault-key-file or AUDITLOG_VAULT_MASTER_KEY)")
        if sample is not None:
            await self._crypto_call(self.master_key.unwrap, bytes(sample))

    # -- keys ---------------------------------------------------------------------------------------------------
    async def tenant_key(self, tenant: str) -> bytes:
        """The tenant's tokenisation (HMAC) key, made and stored wrapped on first use."""
        _check_tenant(tenant)
        key = self._tenant_keys.get(tenant)
        if key is not None:
            return key
        master = self._master()
        t = vault_tenant_keys.c
        stored = await self.log.read(
            lambda tx: tx.execute(select(t.wrapped_key).where(t.tenant == tenant)), primary=True)
        if stored:
            wrapped = bytes(stored[0][0])
        else:
            mine = await self._crypto_call(master.wrap, secrets.token_bytes(DATA_KEY_SIZE))
            now = self._now()

            def create(tx) -> bytes:
                # On the single writer: of two first uses, the second finds the first's key.
                have = tx.execute(select(t.wrapped_key).where(t.tenant == tenant))
                if have:
                    return bytes(have[0][0])
                tx.execute(vault_tenant_keys.insert().values(tenant=tenant, wrapped_key=mine,
                                                             master_key_id=master.key_id, created_at=now))
                return mine

            wrapped = await self.log.write(create)
        key = await self._crypto_call(master.unwrap, wrapped)
        self._tenant_keys[tenant] = key
        return key

    async def subject_token(self, tenant: str, reference: str) -> str:
        """The token that names the data subject `reference` in `tenant` (as `tokenize` names it)."""
        _check_text(reference, "subject", self.max_value_bytes)
        return token_of(await self.tenant_key(tenant), reference)

    async def _subject_row(self, tenant: str, subject: str):
        s = vault_subject_keys.c
        rows = await self.log.read(lambda tx: tx.execute(
            select(s.wrapped_key, s.erased_at, s.erasure_idx).where(s.tenant == tenant, s.subject == subject)),
            primary=True)
        return rows[0] if rows else None

    async def _open_key(self, wrapped: bytes) -> AESGCM:
        cached = self._subject_keys.get(wrapped)
        if cached is None:
            cached = AESGCM(await self._crypto_call(self._master().unwrap, wrapped))
            self._subject_keys.put(wrapped, cached)
        return cached

    # -- tokenise -----------------------------------------------------------------------------------------------
    async def tokenize(self, tenant: str, reference: str, values: Sequence[str]) -> Tokenized:
        """Tokens for `values` (in order) of the data subject `reference` in `tenant`, each mapping stored sealed
        under the subject's key (made on the subject's first values) in one write with the batch. Refuses
        (InvalidInput naming the field) a batch over `max_values`, a value that is not a non-empty string of at
        most `max_value_bytes` UTF-8 bytes; SubjectErased for an erased subject. Durable when it returns."""
        master = self._master()
        _check_tenant(tenant)
        _check_text(reference, "subject", self.max_value_bytes)
        if not isinstance(values, (list, tuple)):
            raise InvalidInput("values must be a list of strings", field="values")
        if not values:
            raise InvalidInput("values must name at least one value", field="values")
        if len(values) > self.max_values:
            raise InvalidInput(f"at most {self.max_values} values per request, not {len(values)}", field="values")
        for position, value in enumerate(values):
            _check_text(value, f"values[{position}]", self.max_value_bytes)
        tenant_key = await self.tenant_key(tenant)
        subject = token_of(tenant_key, reference)
        tokens = [token_of(tenant_key, value) for value in values]
        wanted = {subject: reference}
        for token, value in zip(tokens, values):
            wanted.setdefault(token, value)
        for _ in range(3):
            try:
                created = await self._store_mappings(master, tenant, subject, wanted)
            except _Retry:
                continue
            return Tokenized(subject, tokens, created)
        raise Unavailable("the data subject's key kept changing while its values were stored; retry")

    async def _store_mappings(self, master: MasterKey, tenant: str, subject: str, wanted: dict[str, str]) -> int:
        row = await self._subject_row(tenant, subject)
        if row is not None and row[0] is None:
            raise SubjectErased(f"data subject {subject} of tenant {tenant!r} was erased: nothing more is mapped "
                                "for it", row[2])
        if row is None:
            raw = secrets.token_bytes(DATA_KEY_SIZE)
            wrapped = await self._crypto_call(master.wrap, raw)
            key, new = AESGCM(raw), True
        else:
            wrapped = bytes(row[0])
            key, new = await self._open_key(wrapped), False
        now = self._now()
        sealed = await self._crypto_call(_seal_all, key, tenant, subject, wanted)
        s, v = vault_subject_keys.c, vault_tokens.c
        tokens = sorted(sealed)

        def store(tx) -> int:
            # 1. The subject's key as read above must still be the stored one (an erasure or a first tokenisation
            #    of the same subject may have committed meanwhile): else nothing is written, and the caller rereads.
            have = tx.execute(select(s.wrapped_key).where(s.tenant == tenant, s.subject == subject))
            if new:
                if have:
                    raise _Retry()
                tx.execute(vault_subject_keys.insert().values(tenant=tenant, subject=subject, wrapped_key=wrapped,
                                                              master_key_id=master.key_id, created_at=now))
                existing: set[str] = set()
            else:
                if not have or have[0][0] is None or bytes(have[0][0]) != wrapped:
                    raise _Retry()
                # 2. The mappings already stored are kept (their sealed bytes differ only by nonce).
                existing = set()
                for start in range(0, len(tokens), _IN_CHUNK):
                    chunk = tokens[start:start + _IN_CHUNK]
                    existing.update(r[0] for r in tx.execute(select(v.token).where(
                        v.tenant == tenant, v.subject == subject, v.token.in_(chunk))))
            missing = [{"tenant": tenant, "token": token, "subject": subject, "sealed": sealed[token],
                        "created_at": now} for token in tokens if token not in existing]
            tx.execute_many(vault_tokens.insert(), missing)
            return len(missing)

        created = await self.log.write(store)
        if new:
            self._subject_keys.put(wrapped, key)
        return created

    # -- detokenise ---------------------------------------------------------------------------------------------
    def check_detokenize(self, tenant: str, tokens: Sequence[str], purpose: str) -> None:
        """InvalidInput naming the field for a request `detokenize` refuses before logging anything."""
        _check_tenant(tenant)
        if not isinstance(purpose, str) or not purpose.strip():
            raise InvalidInput("purpose is required: say why these tokens are detokenised", field="purpose")
        if len(purpose) > self.max_purpose:
            raise InvalidInput(f"purpose is at most {self.max_purpose} characters, not {len(purpose)}",
                               field="purpose")
        _check_encodable(purpose, "purpose")
        if not isinstance(tokens, (list, tuple)) or not tokens:
            raise InvalidInput("tokens must be a non-empty list of vault tokens", field="tokens")
        if len(tokens) > self.max_detokenize:
            raise InvalidInput(f"at most {self.max_detokenize} tokens per request, not {len(tokens)} (the request's "
                               "log entry names each one by its hash)", field="tokens")
        for position, token in enumerate(tokens):
            if not is_vault_token(token):
                # Not echoed: a value sent here by mistake must not travel on in a problem body.
                raise InvalidInput(f"tokens[{position}] is not a vault token (vt. and 26 lowercase base32 "
                                   "characters)", field=f"tokens[{position}]")

    async def detokenize(self, tenant: str, tokens: Sequence[str], purpose: str,
                         principal: Principal) -> Detokenization:
        """The values of `tokens` in `tenant`, for `principal` (its role and tenants checked by the caller), after
        the `auditlog.vault-access/v1` entry is committed: if the log does not take it, this raises and nothing is
        read. Each token answers found, unknown or erased. VaultIntegrityError if a sealed value does not open."""
        self._master()
        self.check_detokenize(tenant, tokens, purpose)
        record = canonicalize(format_vault_access(tenant, principal, purpose, tokens, self._now()))
        added = await self.log.add_entries([record])  # 1. the entry, durable; 2. only then the values
        wanted = sorted(set(tokens))
        v, s = vault_tokens.c, vault_subject_keys.c

        def read(tx) -> list[tuple]:
            rows = []
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start:start + _IN_CHUNK]
                rows.extend(tx.execute(
                    select(v.token, v.subject, v.sealed, s.wrapped_key)
                    .select_from(vault_tokens.join(vault_subject_keys, and_(s.tenant == v.tenant,
                                                                            s.subject == v.subject)))
                    .where(v.tenant == tenant, v.token.in_(chunk))))
            return rows

        rows = await self.log.read(read, primary=True)
        by_token: dict[str, list[tuple]] = {}
        for token, subject, sealed, wrapped in rows:
            by_token.setdefault(token, []).append((subject, bytes(sealed), None if wrapped is None else bytes(wrapped)))
        keys = {}
        for candidates in by_token.values():
            for _, _, wrapped in candidates:
                if wrapped is not None and wrapped not in keys:
                    keys[wrapped] = await self._open_key(wrapped)
        opened = await self._crypto_call(_open_all, tenant, by_token, keys)
        return Detokenization([opened.get(token) or Detokenized(token, "unknown") for token in tokens],
                              added.first_index)

    # -- data subjects (log/audit/holds.py) -----------------------------------------------------------------------
    async def tokens_of_subject(self, tenant: str, subject: str) -> list[str]:
        """Every token mapped for the data subject `subject` (its own token included, once it has values), sorted;
        an erased subject's too (its mappings stay, unreadable)."""
        _check_tenant(tenant)
        _check_subject(subject)
        v = vault_tokens.c
        rows = await self.log.read(lambda tx: tx.execute(
            select(v.token).where(v.tenant == tenant, v.subject == subject)), primary=True)
        return sorted({row[0] for row in rows})

    async def shred_subject(self, tenant: str, subject: str, erasure_idx: int) -> ShredOutcome:
        """Crypto-shred the data subject: its wrapped key deleted (set NULL), erased_at and erasure_idx set, in one
        write. Idempotent: an erased subject keeps its first erasure. A subject with no key yet is recorded as
        erased, so nothing is mapped for it later. Durable when it returns. Write the erasure's log entry first."""
        _check_tenant(tenant)
        _check_subject(subject)
        if not isinstance(erasure_idx, int) or erasure_idx < 0:
            raise InvalidInput(f"erasure_idx must be a log index, not {erasure_idx!r}", field="erasure_idx")
        master_id = self.master_key.key_id if self.master_key is not None else "none"
        now = self._now()
        s = vault_subject_keys.c

        def shred(tx) -> tuple[ShredOutcome, bytes | None]:
            have = tx.execute(select(s.wrapped_key, s.erased_at, s.erasure_idx)
                              .where(s.tenant == tenant, s.subject == subject))
            if not have:
                tx.execute(vault_subject_keys.insert().values(
                    tenant=tenant, subject=subject, wrapped_key=None, master_key_id=master_id, created_at=now,
                    erased_at=now, erasure_idx=erasure_idx))
                return ShredOutcome(subject, False, now, erasure_idx), None
            wrapped, erased_at, first_idx = have[0]
            if wrapped is None:
                return ShredOutcome(subject, False, erased_at, first_idx), None
            tx.execute(update(vault_subject_keys).where(s.tenant == tenant, s.subject == subject)
                       .values(wrapped_key=None, erased_at=now, erasure_idx=erasure_idx))
            return ShredOutcome(subject, True, now, erasure_idx), bytes(wrapped)

        outcome, wrapped = await self.log.write(shred)
        self._subject_keys.drop(wrapped)
        return outcome

    async def subject_state(self, tenant: str, subject: str) -> dict | None:
        """{"created_at", "erased_at", "erasure_idx"} of a data subject's key row, None when it has none."""
        _check_tenant(tenant)
        _check_subject(subject)
        s = vault_subject_keys.c
        rows = await self.log.read(lambda tx: tx.execute(
            select(s.created_at, s.erased_at, s.erasure_idx).where(s.tenant == tenant, s.subject == subject)),
            primary=True)
        if not rows:
            return None
        created_at, erased_at, erasure_idx = rows[0]
        return {"created_at": created_at, "erased_at": erased_at, "erasure_idx": erasure_idx}


def _seal_all(key: AESGCM, tenant: str, subject: str, wanted: dict[str, str]) -> dict[str, bytes]:
    """token -> nonce || AES-256-GCM(value) with the associated data of (tenant, token, subject). The associated
    data is `_associated_data`'s bytes, built around the token (which JSON never escapes): json.dumps per value
    was a third of the sealing."""
    head = _associated_data(tenant, "", subject)
    split = head.index(b',"",') + 2  # the token goes between these quotes
    before, after = head[:split], head[split:]
    nonces = secrets.token_bytes(NONCE_SIZE * len(wanted))
    encrypt = key.encrypt
    out = {}
    for position, (token, value) in enumerate(wanted.items()):
        nonce = nonces[position * NONCE_SIZE:(position + 1) * NONCE_SIZE]
        out[token] = nonce + encrypt(nonce, value.encode(), before + token.encode() + after)
    return out


def _open_all(tenant: str, by_token: dict[str, list[tuple]], keys: dict[bytes, AESGCM]) -> dict[str, Detokenized]:
    out = {}
    for token, candidates in by_token.items():
        answer = Detokenized(token, "erased")
        for subject, sealed, wrapped in candidates:
            if wrapped is None:
                continue
            try:
                plain = keys[wrapped].decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:],
                                              _associated_data(tenant, token, subject))
            except InvalidTag:
                raise VaultIntegrityError(f"the sealed value of token {token} (data subject {subject}) does not "
                                          "authenticate under its key: the vault's rows were altered") from None
            answer = Detokenized(token, "found", plain.decode())
            break
        out[token] = answer
    return out


def _check_tenant(tenant: object) -> None:
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidInput(f"tenant must be a tenant id (1-128 of A-Za-z0-9._:~-), not {str(tenant)[:40]!r}",
                           field="tenant")


def _check_subject(subject: object) -> None:
    if not is_vault_token(subject):
        raise InvalidInput(f"subject must be a data subject's vault token, not {str(subject)[:40]!r}",
                           field="subject")


def _check_encodable(text: str, field: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid Unicode text (a lone surrogate)", field=field) from None


def _check_text(value: object, field: str, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value:
        raise InvalidInput(f"{field} is empty: there is nothing to tokenise", field=field)
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} is not valid Unicode text (a lone surrogate)", field=field) from None
    if size > limit:
        raise InvalidInput(f"{field} is {size} bytes; a vault value is at most {limit} bytes (UTF-8)", field=field)


__all__ = ["VAULT_ACCESS_TYPE", "Detokenization", "Detokenized", "ShredOutcome", "SubjectErased", "Tokenized",
           "Vault", "VaultIntegrityError", "format_vault_access", "parse_vault_access", "token_of"]
