"""OIDC bearer tokens: JWTs from an identity provider the operator configures, so an enterprise's SSO works without
minting auditlog tokens (issue 18).

`OidcAuthenticator(config)` is one authenticator of the chain in api/server/auth.py:
`await authenticate(bearer)` is None for a bearer that is not a JWT (three base64url parts), a Principal for a JWT
that verifies, and raises Unauthenticated naming the reason for any other JWT.

Verification is PyJWT's (signature, alg, exp/nbf/iat with a leeway, iss, aud); this module picks the key and maps
the claims. The key comes from the JWKS by the token's `kid`; the JWKS is read from a file or fetched from a URL
(aiohttp), kept `jwks_refresh` seconds, and fetched again early when a token names a kid it does not hold, so a
key rotation at the IdP is picked up at once. Every load, whatever its cause, is at most one per
`jwks_refetch_min` seconds: a flood of tokens with made-up kids costs the IdP one request per interval, and an IdP
that is down is not asked on every request. Only asymmetric algorithms are accepted (RS*, PS*, ES*, EdDSA; never
`none`, never HS*: a symmetric JWK in the set is skipped, so no public key can be used as an HMAC secret).

Claims: the role claim (default `auditlog_role`) is a string or a list; its first value that is an auditlog role
wins; with a role map (IdP group or role name -> auditlog role), its first value the map names wins and unmapped
values count for nothing (an IdP group that happens to be called "admin" grants nothing). A claim name with dots
(`realm_access.roles`, Keycloak's realm roles) is looked up as a path when no top-level claim has that name. The
tenants claim (default `auditlog_tenants`) is a list or a space-separated string, read as for API tokens
(log/access.py check_tenants): an auditor needs at least one, a writer without any writes for every tenant, admin
and monitor cover every tenant (the claim is not read for them). The Principal's credential is
`oidc:<iss>#<sub>`, its expiry the token's `exp`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK

from log import defaults
from log.access import ROLES, TENANT_ROLES, Principal, check_tenants
from log.errors import InvalidInput, Unauthenticated, Unavailable

logger = logging.getLogger(__name__)

# Asymmetric JWS algorithms only: an operator may narrow the default list to these, never add HS* or none.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_JWT_LENGTH = 16 * 1024
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")  # an unsigned JWT has no third part


@dataclass(frozen=True)
class OidcConfig:
    """What `serve --oidc-*` configures (api/cli/server.py); `check()` refuses what could not work, naming it."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    role_claim: str = defaults.OIDC_ROLE_CLAIM
    tenants_claim: str = defaults.OIDC_TENANTS_CLAIM
    role_map: tuple[tuple[str, str], ...] = ()  # (IdP name, auditlog role), in the order given
    algorithms: tuple[str, ...] = defaults.OIDC_ALGORITHMS
    leeway: float = defaults.OIDC_LEEWAY
    jwks_refresh: float = defaults.OIDC_JWKS_REFRESH
    jwks_refetch_min: float = defaults.OIDC_JWKS_REFETCH_MIN
    jwks_timeout: float = defaults.OIDC_JWKS_TIMEOUT

    @classmethod
    def from_options(cls, *, issuer: str | None, audience: str | None, jwks_file: str | None = None,
                     jwks_url: str | None = None, role_claim: str | None = None, tenants_claim: str | None = None,
                     role_map: Iterable[str] = (), algorithms: str | Iterable[str] | None = None
                     ) -> OidcConfig | None:
        """From command-line style options (`role_map` as `GROUP=ROLE` strings, `algorithms` comma-separated or a
        list); None when nothing OIDC is configured. Checked: InvalidInput names the bad option."""
        role_map = list(role_map)
        given = {"--oidc-audience": audience, "--oidc-jwks-file": jwks_file, "--oidc-jwks-url": jwks_url,
                 "--oidc-role-claim": role_claim, "--oidc-tenants-claim": tenants_claim,
                 "--oidc-role-map": role_map, "--oidc-algorithms": algorithms}
        if not issuer:
            named = [name for name, value in given.items() if value]
            if named:
                raise InvalidInput(f"{named[0]} needs --oidc-issuer", field="oidc_issuer")
            return None
        pairs = []
        for item in role_map:
            group, sep, role = item.rpartition("=")
            if not sep or not group.strip() or not role.strip():
                raise InvalidInput(f"--oidc-role-map {item!r} is not GROUP=ROLE", field="oidc_role_map")
            pairs.append((group.strip(), role.strip()))
        if isinstance(algorithms, str):
            algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
        config = cls(
            issuer=issuer.strip(), audience=(audience or "").strip(),
            jwks_file=Path(jwks_file) if jwks_file else None, jwks_url=jwks_url.strip() if jwks_url else None,
            role_claim=(role_claim or defaults.OIDC_ROLE_CLAIM).strip(),
            tenants_claim=(tenants_claim or defaults.OIDC_TENANTS_CLAIM).strip(),
            role_map=tuple(pairs), algorithms=tuple(algorithms) if algorithms else defaults.OIDC_ALGORITHMS)
        config.check()
        return config

    def check(self) -> None:
        if not self.issuer or any(c.isspace() for c in self.issuer):
            raise InvalidInput(f"--oidc-issuer {self.issuer!r} is not an issuer (the IdP's `iss`, a URL)",
                               field="oidc_issuer")
        if not self.audience:
            raise InvalidInput("--oidc-issuer needs --oidc-audience (the `aud` tokens for this log carry)",
                               field="oidc_audience")
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise InvalidInput("--oidc-issuer needs exactly one of --oidc-jwks-file and --oidc-jwks-url",
                               field="oidc_jwks")
        if self.jwks_url is not None:
            _check_jwks_url(self.jwks_url)
        if not self.role_claim or not self.tenants_claim:
            raise InvalidInput("the OIDC role and tenants claims need names", field="oidc_role_claim")
        for group, role in self.role_map:
            if role not in ROLES:
                raise InvalidInput(f"--oidc-role-map {group}={role}: {role!r} is not a role ({', '.join(ROLES)})",
                                   field="oidc_role_map")
        if not self.algorithms:
            raise InvalidInput("--oidc-algorithms names no algorithm", field="oidc_algorithms")
        for alg in self.algorithms:
            if alg not in ASYMMETRIC_ALGORITHMS:
                raise InvalidInput(f"--oidc-algorithms: {alg!r} is not allowed; only asymmetric JWS algorithms "
                                   f"({', '.join(ASYMMETRIC_ALGORITHMS)})", field="oidc_algorithms")
        for name in ("leeway", "jwks_refresh", "jwks_refetch_min", "jwks_timeout"):
            if not getattr(self, name) >= 0:
                raise InvalidInput(f"OIDC {name} must not be negative", field=f"oidc_{name}")
        if self.jwks_file is not None:
            read_jwks_file(self.jwks_file)  # at start, so a missing or unusable file stops `serve` in one line

    def as_flags(self) -> list[str]:
        """The command-line flags that give this configuration (a read worker gets its writer's)."""
        flags = ["--oidc-issuer", self.issuer, "--oidc-audience", self.audience,
                 "--oidc-role-claim", self.role_claim, "--oidc-tenants-claim", self.tenants_claim,
                 "--oidc-algorithms", ",".join(self.algorithms)]
        flags += ["--oidc-jwks-url", self.jwks_url] if self.jwks_url else ["--oidc-jwks-file", str(self.jwks_file)]
        for group, role in self.role_map:
            flags += ["--oidc-role-map", f"{group}={role}"]
        return flags

    def mapped_role(self, name: str) -> str | None:
        for group, role in self.role_map:
            if group == name:
                return role
        return None


def _check_jwks_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidInput(f"--oidc-jwks-url {url!r} is not a URL: {exc}", field="oidc_jwks_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"--oidc-jwks-url {url!r} is not an https:// URL", field="oidc_jwks_url")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        # Whoever can change the JWKS in transit can sign any token: plain http only to this machine.
        raise InvalidInput(f"--oidc-jwks-url {url!r}: the IdP's keys must come over https (http only for a "
                           "loopback host)", field="oidc_jwks_url")


# --- the key set ---------------------------------------------------------------------------------------------------


class JwksError(Exception):
    """A JWKS that could not be had or holds no usable key; the message says which and where."""


@dataclass
class KeySet:
    by_kid: dict[str, PyJWK] = field(default_factory=dict)
    without_kid: list[PyJWK] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.without_kid)

    def all(self) -> list[PyJWK]:
        return [*self.by_kid.values(), *self.without_kid]


def parse_jwks(data: bytes | str, source: str) -> KeySet:
    """The public signing keys of a JWKS document. Symmetric (`oct`) keys, keys for encryption (`use` other than
    `sig`) and keys PyJWT cannot use are skipped; none left is a JwksError."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwksError(f"{source} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(f"{source} is not a JWKS (an object with a \"keys\" list)")
    keys = KeySet()
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct" or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(jwk)
        except jwt.PyJWTError as exc:
            logger.info("OIDC JWKS %s: skipping key %r: %s", source, jwk.get("kid"), exc)
            continue
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS:
            continue
        if isinstance(key.key_id, str) and key.key_id:
            keys.by_kid[key.key_id] = key
        else:
            keys.without_kid.append(key)
    if not keys:
        raise JwksError(f"{source} holds no usable public signing key")
    return keys


def read_jwks_file(path: Path) -> KeySet:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the OIDC JWKS file {path}: {exc.strerror or exc}",
                           field="oidc_jwks_file") from None
    try:
        return parse_jwks(data, f"the OIDC JWKS file {path}")
    except JwksError as exc:
        raise InvalidInput(str(exc), field="oidc_jwks_file") from None


async def fetch_jwks(url: str, timeout: float) -> KeySet:
    """GET the JWKS (no redirects: the configured URL is the one trusted), at most OIDC_JWKS_MAX_BYTES."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, allow_redirects=False, headers={"Accept": "application/json"}) as answer:
                if answer.status != 200:
                    raise JwksError(f"{url} answered HTTP {answer.status}")
                data = await answer.content.read(defaults.OIDC_JWKS_MAX_BYTES + 1)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise JwksError(f"cannot fetch {url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    if len(data) > defaults.OIDC_JWKS_MAX_BYTES:
        raise JwksError(f"{url} sent more than {defaults.OIDC_JWKS_MAX_BYTES} bytes")
    return parse_jwks(data, url)


# --- the authenticator ---------------------------------------------------------------------------------------------


def _refuse(reason: str) -> Unauthenticated:
    return Unauthenticated(f"OIDC token refused: {reason}")


def _b64_json(part: str) -> dict | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested past the parser
        return None
    return value if isinstance(value, dict) else None


def _claim(payload: dict, name: str):
    if name in payload:
        return payload[name]
    node = payload
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class OidcAuthenticator:
    """One authenticator of the chain (api/server/auth.py) for the IdP `config` names. `clock` (monotonic seconds)
    times the JWKS cache; token times (exp, nbf, iat) are wall-clock, checked by PyJWT."""

    def __init__(self, config: OidcConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._attempted_at: float | None = None
        self._last_failure: str | None = None
        self._lock = asyncio.Lock()
        self.loads = 0  # JWKS loads attempted (fetches, file reads): the tests count them
        if config.jwks_file is not None:
            self._keys = read_jwks_file(config.jwks_file)
            self._loaded_at = self._attempted_at = clock()

    async def authenticate(self, bearer: str) -> Principal | None:
        if not _JWT_SHAPE.fullmatch(bearer):
            return None
        if len(bearer) > MAX_JWT_LENGTH:
            raise _refuse(f"longer than {MAX_JWT_LENGTH} characters")
        head, body, _ = bearer.split(".")
        header, unverified = _b64_json(head), _b64_json(body)
        if header is None or unverified is None:
            raise _refuse("malformed JWT (its header or payload is not base64url JSON)")
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise _refuse(f"alg {alg!r} is not allowed (allowed: {', '.join(self.config.algorithms)})")
        # The issuer first, unverified: a token of another IdP is named as such and never makes us fetch keys.
        issuer = unverified.get("iss")
        if issuer != self.config.issuer:
            raise _refuse(f"wrong issuer {issuer!r} (expected {self.config.issuer!r})")
        key = await self._key(header.get("kid"), alg)
        payload = self._verify(bearer, key, alg)
        return self._principal(payload)

    # -- keys --

    async def _key(self, kid, alg: str) -> PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise _refuse("malformed JWT (its kid is not a string)")
        keys = await self._keyset(kid)
        if kid is not None:
            key = keys.by_kid.get(kid)
            if key is None:
                raise _refuse(f"unknown kid {kid!r} (not in the issuer's JWKS)")
            return key
        candidates = [k for k in keys.all() if k.algorithm_name == alg]
        if len(candidates) != 1:
            raise _refuse(f"the token names no kid and the JWKS holds {len(candidates)} {alg} keys")
        return candidates[0]

    async def _keyset(self, kid: str | None) -> KeySet:
        if not self._wants_load(kid):
            return self._keys
        async with self._lock:  # one load at a time; those who waited see its result
            now = self._clock()
            if self._wants_load(kid) and (self._attempted_at is None
                                          or now - self._attempted_at >= self.config.jwks_refetch_min):
                self._attempted_at = now
                self.loads += 1
                try:
                    self._keys = await self._load()
                    self._loaded_at, self._last_failure = now, None
                except (JwksError, InvalidInput) as exc:
                    self._last_failure = str(exc)
                    logger.warning("OIDC: %s%s", exc, "; keeping the keys fetched before" if self._keys else "")
            if self._keys is None:
                raise Unavailable(f"the OIDC issuer's keys are not available ({self._last_failure}); retry later")
            return self._keys

    def _wants_load(self, kid: str | None) -> bool:
        keys = self._keys
        if keys is None or self._clock() - self._loaded_at >= self.config.jwks_refresh:
            return True
        return kid is not None and kid not in keys.by_kid

    async def _load(self) -> KeySet:
        if self.config.jwks_url is not None:
            return await fetch_jwks(self.config.jwks_url, self.config.jwks_timeout)
        return read_jwks_file(self.config.jwks_file)

    # -- the token --

    def _verify(self, bearer: str, key: PyJWK, alg: str) -> dict:
        try:
            return jwt.decode(bearer, key, algorithms=[alg], audience=self.config.audience,
                              issuer=self.config.issuer, leeway=self.config.leeway,
                              options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.InvalidSignatureError:
            raise _refuse(f"bad signature (kid {key.key_id!r})") from None
        except jwt.ExpiredSignatureError:
            raise _refuse("expired (exp is past)") from None
        except jwt.ImmatureSignatureError as exc:
            which = "iat" if "iat" in str(exc) else "nbf"
            raise _refuse(f"not yet valid ({which} is in the future)") from None
        except jwt.InvalidAudienceError:
            raise _refuse(f"wrong audience (expected {self.config.audience!r} in aud)") from None
        except jwt.InvalidIssuerError:
            raise _refuse(f"wrong issuer (expected {self.config.issuer!r})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse(f"missing claim {exc.claim!r}") from None
        except jwt.InvalidAlgorithmError as exc:
            raise _refuse(f"alg not allowed: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise _refuse(f"{type(exc).__name__}: {exc}") from None

    def _principal(self, payload: dict) -> Principal:
        config = self.config
        sub = payload.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _refuse("missing claim 'sub'")
        role = self._role(payload)
        tenants = self._tenants(payload) if role in TENANT_ROLES else None  # admin, monitor: every tenant
        try:
            tenants = check_tenants(role, tenants)  # as for API tokens: an auditor names at least one
        except ValueError as exc:
            raise _refuse(f"{exc} (claim {config.tenants_claim!r})") from None
        exp = payload["exp"]
        return Principal(credential=f"oidc:{config.issuer}#{sub}", role=role, tenants=tenants,
                         expires_at=int(exp) * 1000)

    def _role(self, payload: dict) -> str:
        name = self.config.role_claim
        value = _claim(payload, name)
        if value is None:
            raise _refuse(f"missing role claim {name!r}")
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if values is None:
            raise _refuse(f"role claim {name!r} is neither a string nor a list")
        for item in values:
            if not isinstance(item, str):
                continue
            role = self.config.mapped_role(item) if self.config.role_map else item if item in ROLES else None
            if role is not None:
                return role
        shown = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        what = "maps to an auditlog role (--oidc-role-map)" if self.config.role_map else \
            f"is an auditlog role ({', '.join(ROLES)})"
        raise _refuse(f"unknown role: no value of claim {name!r} [{shown}] {what}")

    def _tenants(self, payload: dict) -> frozenset[str] | None:
        """The tenants the token names; None when it names none."""
        name = self.config.tenants_claim
        value = _claim(payload, name)
        if isinstance(value, str):
            values = value.split()
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            values = [v.strip() for v in value if v.strip()]
        elif value is None:
            values = []
        else:
            raise _refuse(f"tenants claim {name!r} is neither a list of strings nor a space-separated string")
        return frozenset(values) or None
