"""OIDC bearer tokens (api/server/oidc.py): keys generated here (RSA, EC P-256, Ed25519), JWTs minted with PyJWT, the
JWKS read from a file or fetched from a real local aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from api.server.oidc import OidcAuthenticator, OidcConfig
from log.access import Principal
from log.errors import InvalidInput, Unauthenticated, Unavailable
from tests.conftest import serve_app
from tests.processes import REPO

ISSUER = "https://idp.example/realms/acme"
AUDIENCE = "auditlog"


class Key:
    """A signing key with its kid, its JWK (public) and its JWS algorithm."""

    def __init__(self, kind: str, kid: str):
        self.kid = kid
        if kind == "rsa":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg, to_jwk = "RS256", RSAAlgorithm.to_jwk
        elif kind == "ec":
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg, to_jwk = "ES256", ECAlgorithm.to_jwk
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            self.alg, to_jwk = "EdDSA", OKPAlgorithm.to_jwk
        self.jwk = {**to_jwk(self.private.public_key(), as_dict=True), "kid": kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict | None = None, *, kid: str | None | bool = True, alg: str | None = None,
             drop: tuple[str, ...] = (), **overrides) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
                   "auditlog_role": "auditor", "auditlog_tenants": ["acme"], **(claims or {}), **overrides}
        for name in drop:
            payload.pop(name, None)
        headers = {}
        if kid is True:
            headers["kid"] = self.kid
        elif kid:
            headers["kid"] = kid
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=headers or None)


def jwks(*keys: Key, extra: list[dict] = ()) -> dict:
    return {"keys": [k.jwk for k in keys] + list(extra)}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict, header: dict) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {"rsa": Key("rsa", "r1"), "ec": Key("ec", "e1"), "ed": Key("ed", "d1"), "rsa2": Key("rsa", "r2")}


def file_authenticator(tmp_path, *keys: Key, clock=None, **config) -> OidcAuthenticator:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(*keys)))
    return OidcAuthenticator(OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=path, **config),
                             clock=clock or Clock())


def authenticate(authenticator: OidcAuthenticator, bearer: str):
    return asyncio.run(authenticator.authenticate(bearer))


def refused(authenticator: OidcAuthenticator, bearer: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        authenticate(authenticator, bearer)
    return str(caught.value)


# --- valid tokens ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
def test_a_valid_token_is_a_principal_with_role_tenants_and_expiry(tmp_path, keys, kind):
    auth = file_authenticator(tmp_path, keys["rsa"], keys["ec"], keys["ed"])
    exp = int(time.time()) + 600
    principal = authenticate(auth, keys[kind].sign(exp=exp, auditlog_tenants=["acme", "globex"]))
    assert principal == Principal(credential=f"oidc:{ISSUER}#alice", role="auditor",
                                  tenants=frozenset({"acme", "globex"}), expires_at=exp * 1000)
    assert principal.may_read_tenant("acme") and not principal.may_read_tenant("initech")


def test_an_audience_list_containing_ours_and_a_space_separated_tenants_string(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    principal = authenticate(auth, keys["rsa"].sign(aud=["account", AUDIENCE], auditlog_tenants="acme globex"))
    assert principal.tenants == frozenset({"acme", "globex"})


def test_admin_and_monitor_are_not_scoped_to_tenants(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    for role in ("admin", "monitor"):
        for token in (keys["rsa"].sign(auditlog_role=role, drop=("auditlog_tenants",)),
                      keys["rsa"].sign(auditlog_role=role)):  # a tenants claim the IdP sends everyone is not read
            principal = authenticate(auth, token)
            assert (principal.role, principal.tenants) == (role, None)


def test_clock_skew_within_the_leeway_is_accepted(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"], leeway=30)
    now = int(time.time())
    assert authenticate(auth, keys["rsa"].sign(exp=now - 10)).role == "auditor"
    assert authenticate(auth, keys["rsa"].sign(nbf=now + 10, iat=now + 10)).role == "auditor"


# --- claims mapping --------------------------------------------------------------------------------------------------


def test_a_role_list_takes_its_first_auditlog_role(tmp_path, keys):
    # Keycloak client roles / Entra app roles: `roles` holds the IdP's own roles beside ours
    auth = file_authenticator(tmp_path, keys["rsa"], role_claim="roles")
    token = keys["rsa"].sign(roles=["offline_access", "writer", "auditor"], drop=("auditlog_role",))
    assert authenticate(auth, token).role == "writer"


def test_a_dotted_claim_name_looks_into_nested_claims(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"], role_claim="realm_access.roles", tenants_claim="org.tenants")
    token = keys["rsa"].sign(realm_access={"roles": ["uma_authorization", "auditor"]}, org={"tenants": ["acme"]},
                             drop=("auditlog_role", "auditlog_tenants"))
    principal = authenticate(auth, token)
    assert (principal.role, principal.tenants) == ("auditor", frozenset({"acme"}))


def test_a_role_map_turns_idp_groups_into_roles_and_unmapped_names_grant_nothing(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"], role_claim="groups",
                              role_map=(("eu-auditors", "auditor"), ("log-ops", "admin")))
    token = keys["rsa"].sign(groups=["staff", "eu-auditors"], drop=("auditlog_role",))
    assert authenticate(auth, token).role == "auditor"
    # an IdP group that happens to be called "admin" is not mapped: no role
    reason = refused(auth, keys["rsa"].sign(groups=["admin"], drop=("auditlog_role",)))
    assert "unknown role" in reason and "'admin'" in reason


def test_missing_and_unknown_roles_and_tenants_are_refused_by_name(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    assert "missing role claim 'auditlog_role'" in refused(auth, keys["rsa"].sign(drop=("auditlog_role",)))
    assert "unknown role" in refused(auth, keys["rsa"].sign(auditlog_role="superuser"))
    assert "unknown role" in refused(auth, keys["rsa"].sign(auditlog_role=["viewer", "root"]))
    assert "neither a string nor a list" in refused(auth, keys["rsa"].sign(auditlog_role={"admin": True}))
    for no_tenants in (keys["rsa"].sign(drop=("auditlog_tenants",)), keys["rsa"].sign(auditlog_tenants=[]),
                       keys["rsa"].sign(auditlog_tenants=" ")):
        assert "names the tenants it may read" in refused(auth, no_tenants)
    # a writer without tenants writes for every tenant, as an API token of that kind does
    assert authenticate(auth, keys["rsa"].sign(auditlog_role="writer", drop=("auditlog_tenants",))).tenants is None
    assert "neither a list of strings" in refused(auth, keys["rsa"].sign(auditlog_tenants=[1, 2]))


# --- what is not a JWT, and what is a bad one ------------------------------------------------------------------------


def test_a_bearer_that_is_not_a_jwt_is_left_to_the_other_authenticators(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    for bearer in ("", "al_0123456789abcdef", "a.b", "a.b.c.d", "a+b.c.d", "a.b.c=", "a b.c.d", ".b.c"):
        assert authenticate(auth, bearer) is None, bearer


def test_a_malformed_jwt_is_refused(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    assert "malformed JWT" in refused(auth, "abc.def.ghi")
    assert "malformed JWT" in refused(auth, f"{b64(b'[1]')}.{b64(b'{}')}.sig")
    assert "malformed JWT" in refused(auth, f"{b64(b'{}')}.{b64(b'[' * 5000)}.sig")  # deeper than json parses
    assert "longer than" in refused(auth, keys["rsa"].sign(pad="x" * 20000))


@pytest.mark.parametrize("case, expected", [
    ("bad signature", "bad signature"),
    ("expired", "expired"),
    ("nbf in the future", "not yet valid (nbf"),
    ("iat in the future", "not yet valid (iat"),
    ("wrong issuer", "wrong issuer"),
    ("wrong audience", "wrong audience"),
    ("no audience", "missing claim 'aud'"),
    ("no exp", "missing claim 'exp'"),
    ("no sub", "missing claim 'sub'"),
    ("unknown kid", "unknown kid 'nope'"),
    ("alg not allowed", "alg 'RS384' is not allowed"),
    ("alg not the key's", "alg not allowed"),
])
def test_each_failure_is_unauthenticated_naming_the_reason(tmp_path, keys, case, expected):
    auth = file_authenticator(tmp_path, keys["rsa"], keys["ec"])
    rsa_key, now = keys["rsa"], int(time.time())
    token = {
        "bad signature": lambda: keys["rsa2"].sign(kid="r1"),  # another key's signature under r1's kid
        "expired": lambda: rsa_key.sign(exp=now - 120),
        "nbf in the future": lambda: rsa_key.sign(nbf=now + 120),
        "iat in the future": lambda: rsa_key.sign(iat=now + 120),
        "wrong issuer": lambda: rsa_key.sign(iss="https://evil.example"),
        "wrong audience": lambda: rsa_key.sign(aud="another-app"),
        "no audience": lambda: rsa_key.sign(drop=("aud",)),
        "no exp": lambda: rsa_key.sign(drop=("exp",)),
        "no sub": lambda: rsa_key.sign(drop=("sub",)),
        "unknown kid": lambda: rsa_key.sign(kid="nope"),
        "alg not allowed": lambda: rsa_key.sign(alg="RS384"),
        "alg not the key's": lambda: keys["ec"].sign(kid="r1"),  # ES256 under the RSA key's kid
    }[case]()
    reason = refused(auth, token)
    assert reason.startswith("OIDC token refused: ") and expected in reason, reason


def test_a_tampered_payload_is_a_bad_signature(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    head, _, sig = keys["rsa"].sign().split(".")
    forged = keys["rsa"].sign(auditlog_role="admin").split(".")[1]
    assert "bad signature" in refused(auth, f"{head}.{forged}.{sig}")


def test_alg_none_is_refused(tmp_path, keys):
    auth = file_authenticator(tmp_path, keys["rsa"])
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "auditlog_role": "admin"}
    for alg in ("none", "None", "NONE"):
        assert f"alg {alg!r} is not allowed" in refused(auth, unsigned(claims, {"alg": alg, "kid": "r1"}))
    assert "alg None is not allowed" in refused(auth, unsigned(claims, {"kid": "r1"}))


def test_hs256_signed_with_the_public_key_as_secret_is_refused(tmp_path, keys):
    """The classic confusion: an HMAC "signed" with the published public key. HS* is never allowed, and a symmetric
    JWK in the set (kid h1, the PEM as its secret) is skipped rather than used."""
    pem = keys["rsa"].public_pem()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(keys["rsa"], extra=[{"kty": "oct", "kid": "h1", "k": b64(pem)}])))
    auth = OidcAuthenticator(OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=path))
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "auditlog_role": "admin"}
    for kid in ("r1", "h1"):
        signing_input = unsigned(claims, {"alg": "HS256", "typ": "JWT", "kid": kid})[:-1]
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert "alg 'HS256' is not allowed" in refused(auth, f"{signing_input}.{b64(mac)}")
    assert set(auth._keys.by_kid) == {"r1"}
    # and no configuration lets HS* or none in
    for alg in ("HS256", "none"):
        with pytest.raises(InvalidInput, match="only asymmetric"):
            OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file=path, algorithms=(alg,)).check()


def test_a_token_without_kid_uses_the_only_key_of_its_alg(tmp_path, keys):
    assert authenticate(file_authenticator(tmp_path, keys["rsa"], keys["ec"]), keys["rsa"].sign(kid=False))
    auth = file_authenticator(tmp_path, keys["rsa"], keys["rsa2"])
    assert "names no kid" in refused(auth, keys["rsa"].sign(kid=False))


# --- the JWKS: a file, a URL, rotation, floods -----------------------------------------------------------------------


def test_the_jwks_file_is_read_again_for_an_unknown_kid_at_most_once_per_interval(tmp_path, keys):
    clock = Clock()
    auth = file_authenticator(tmp_path, keys["rsa"], clock=clock, jwks_refetch_min=30)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(keys["rsa"], keys["rsa2"])))  # rotation on disk
    clock.now += 5
    assert "unknown kid 'r2'" in refused(auth, keys["rsa2"].sign())  # too soon after the start's read
    clock.now += 30
    assert authenticate(auth, keys["rsa2"].sign()).role == "auditor"
    assert auth.loads == 1


class Idp:
    """A real local JWKS endpoint that counts its requests; `status` and `jwks` can change between requests."""

    def __init__(self, document: dict):
        self.document, self.status, self.hits = document, 200, 0

    def app(self) -> web.Application:
        async def handler(request):
            self.hits += 1
            if self.status != 200:
                return web.Response(status=self.status, text="down")
            return web.json_response(self.document)

        async def redirect(request):
            raise web.HTTPFound("/jwks")

        app = web.Application()
        app.router.add_get("/jwks", handler)
        app.router.add_get("/moved", redirect)
        return app


def url_authenticator(url: str, clock: Clock, path: str = "/jwks", **config) -> OidcAuthenticator:
    return OidcAuthenticator(OidcConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url + path, **config), clock=clock)


def test_jwks_from_a_url_rotation_and_a_flood_of_unknown_kids(keys):
    async def scenario():
        idp, clock = Idp(jwks(keys["rsa"])), Clock()
        async with serve_app(idp.app()) as url:
            auth = url_authenticator(url, clock, jwks_refresh=300, jwks_refetch_min=30)
            assert idp.hits == 0  # fetched when first needed, not at construction
            assert (await auth.authenticate(keys["rsa"].sign())).role == "auditor"
            assert (await auth.authenticate(keys["rsa"].sign())).role == "auditor"
            assert idp.hits == 1  # cached

            # a flood of made-up kids, concurrent and sequential: at most one fetch per interval
            clock.now += 31
            flood = [keys["rsa"].sign(kid=f"bogus-{i}") for i in range(50)]
            results = await asyncio.gather(*(auth.authenticate(t) for t in flood), return_exceptions=True)
            assert all(isinstance(r, Unauthenticated) and "unknown kid" in str(r) for r in results)
            for token in flood:
                with pytest.raises(Unauthenticated):
                    await auth.authenticate(token)
            assert idp.hits == 2

            # the IdP rotates to r2: picked up at the first r2 token once the interval has passed
            idp.document = jwks(keys["rsa"], keys["rsa2"])
            clock.now += 10
            with pytest.raises(Unauthenticated, match="unknown kid 'r2'"):
                await auth.authenticate(keys["rsa2"].sign())  # 10 s after the flood's fetch: not yet
            assert idp.hits == 2
            clock.now += 25
            assert (await auth.authenticate(keys["rsa2"].sign())).role == "auditor"
            assert idp.hits == 3

            # the refresh interval: r1 retired at the IdP stops working once the cache is refreshed
            idp.document = jwks(keys["rsa2"])
            clock.now += 301
            with pytest.raises(Unauthenticated, match="unknown kid 'r1'"):
                await auth.authenticate(keys["rsa"].sign())
            assert idp.hits == 4
            assert (await auth.authenticate(keys["rsa2"].sign())).role == "auditor"
            assert idp.hits == 4

    asyncio.run(scenario())


def test_an_idp_that_is_down_keeps_the_old_keys_or_is_unavailable(keys):
    async def scenario():
        idp, clock = Idp(jwks(keys["rsa"])), Clock()
        async with serve_app(idp.app()) as url:
            idp.status = 500
            auth = url_authenticator(url, clock, jwks_refetch_min=30)
            with pytest.raises(Unavailable, match="HTTP 500"):
                await auth.authenticate(keys["rsa"].sign())
            with pytest.raises(Unavailable):
                await auth.authenticate(keys["rsa"].sign())  # not asked again within the interval
            assert idp.hits == 1
            idp.status = 200
            clock.now += 30
            assert (await auth.authenticate(keys["rsa"].sign())).role == "auditor"
            idp.status = 503
            clock.now += 400  # stale: the refresh fails, the keys fetched before stay in use
            assert (await auth.authenticate(keys["rsa"].sign())).role == "auditor"
            assert idp.hits == 3

            moved = url_authenticator(url, clock, path="/moved")  # redirects are not followed
            with pytest.raises(Unavailable, match="HTTP 302"):
                await moved.authenticate(keys["rsa"].sign())

    asyncio.run(scenario())


# --- configuration ---------------------------------------------------------------------------------------------------


def test_options_are_checked_and_each_bad_one_named(tmp_path, keys):
    good = tmp_path / "jwks.json"
    good.write_text(json.dumps(jwks(keys["rsa"])))
    (tmp_path / "empty.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    assert OidcConfig.from_options(issuer=None, audience=None) is None
    config = OidcConfig.from_options(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(good),
                                     role_map=["eu auditors=auditor", "ops=admin"], algorithms="RS256,ES384")
    assert config.role_map == (("eu auditors", "auditor"), ("ops", "admin"))
    assert config.algorithms == ("RS256", "ES384")
    bad = [
        (dict(issuer=None, audience=AUDIENCE), "--oidc-audience needs --oidc-issuer"),
        (dict(issuer=ISSUER, audience=None, jwks_file=str(good)), "needs --oidc-audience"),
        (dict(issuer=ISSUER, audience=AUDIENCE), "exactly one of"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(good), jwks_url="https://idp/jwks"), "exactly one"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://idp.example/jwks"), "must come over https"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_url="ftp://idp.example/jwks"), "not an https:// URL"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(tmp_path / "missing.json")), "cannot read"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(tmp_path / "empty.json")), "no usable public"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(good), role_map=["auditors"]), "not GROUP=ROLE"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(good), role_map=["x=root"]), "'root' is not a role"),
        (dict(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(good), algorithms="RS256,HS256"), "'HS256' is not"),
    ]
    for options, message in bad:
        with pytest.raises(InvalidInput, match=message):
            OidcConfig.from_options(**options)
    assert OidcConfig.from_options(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:9/jwks")


def test_serve_refuses_a_bad_oidc_setting_in_one_line_before_starting(tmp_path, keys):
    from tests.processes import ServerProcess

    good = tmp_path / "jwks.json"
    good.write_text(json.dumps(jwks(keys["rsa"])))
    cases = [
        (["--oidc-audience", AUDIENCE], {}, "--oidc-audience needs --oidc-issuer"),
        (["--oidc-issuer", ISSUER, "--oidc-jwks-file", str(good)], {}, "needs --oidc-audience"),
        (["--oidc-issuer", ISSUER, "--oidc-audience", AUDIENCE, "--oidc-jwks-file", str(tmp_path / "nope")], {},
         "cannot read the OIDC JWKS file"),
        ([], {"AUDITLOG_OIDC_ISSUER": ISSUER, "AUDITLOG_OIDC_AUDIENCE": AUDIENCE, "AUDITLOG_OIDC_JWKS_FILE": str(good),
              "AUDITLOG_OIDC_ROLE_MAP": "ops=admin;eu=root"}, "'root' is not a role"),
    ]
    for argv, environ, message in cases:
        server = ServerProcess(tmp_path / "data", extra_args=argv)
        proc = subprocess.run(server.command(), cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={**os.environ, **environ})
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("auditlog serve: ") and message in lines[0], proc.stderr
        assert not (tmp_path / "data").exists()  # nothing started, nothing made


def test_a_read_worker_gets_the_writers_oidc_settings_as_flags(tmp_path):
    from api.cli.main import build_parser
    from api.cli.server import _oidc

    config = OidcConfig.from_options(issuer=ISSUER, audience=AUDIENCE, jwks_url="https://idp.example/jwks",
                                     role_claim="groups", tenants_claim="org.tenants",
                                     role_map=["eu auditors=auditor", "ops=admin"], algorithms="ES256,EdDSA")
    args = build_parser().parse_args(["serve-reads", "--host", "127.0.0.1", "--port", "1", "--data-dir",
                                      str(tmp_path), *config.as_flags()])
    assert _oidc(args) == config
