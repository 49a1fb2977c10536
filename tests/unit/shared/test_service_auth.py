"""Service tokens of the internal APIs (shared.service_auth): minting, caching, and the
verifier's answers to missing, expired, misdirected, forged and tampered credentials."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from shared.errors import Unauthenticated
from shared.runtime import install_error_handlers
from shared.service_auth import (
    InProcessSigningKeys,
    ServiceAuth,
    ServiceCredentials,
    ServiceVerifier,
    require_caller,
)
from shared.service_auth.tokens import assemble, signing_input

SERVICES = frozenset({"auth", "gateway", "provisioner", "fetcher", "trainer"})
NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> InProcessSigningKeys:
    keys = InProcessSigningKeys()  # this test's own, not the process's
    for service in SERVICES:
        keys.ensure(service)
    return keys


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _verifier(
    keys: InProcessSigningKeys, clock: Clock, service: str = "fetcher"
) -> ServiceVerifier:
    return ServiceVerifier(service, keys, known_callers=SERVICES, clock=clock)


def _token(keys: InProcessSigningKeys, caller: str, audience: str, clock: Clock) -> str:
    return ServiceCredentials(caller, keys, clock=clock).token_for(audience)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    signed = ".".join(_b64(json.dumps(p).encode()) for p in (header, claims)).encode()
    return assemble(signed, key.sign(signed))


def test_a_valid_token_names_its_caller(keys: InProcessSigningKeys, clock: Clock) -> None:
    claims = _verifier(keys, clock).verify(_token(keys, "gateway", "fetcher", clock))
    assert (claims.caller, claims.audience) == ("gateway", "fetcher")
    assert claims.expires_at - claims.issued_at == 300


def test_an_expired_token_is_refused(keys: InProcessSigningKeys, clock: Clock) -> None:
    token = _token(keys, "gateway", "fetcher", clock)
    clock.now += 300 + 31  # past expiry and the tolerated clock skew
    with pytest.raises(Unauthenticated, match="expired"):
        _verifier(keys, clock).verify(token)


def test_a_token_from_the_future_is_refused(keys: InProcessSigningKeys, clock: Clock) -> None:
    token = _token(keys, "gateway", "fetcher", clock)
    clock.now -= 120
    with pytest.raises(Unauthenticated, match="not valid yet"):
        _verifier(keys, clock).verify(token)


def test_a_token_for_another_service_is_refused(keys: InProcessSigningKeys, clock: Clock) -> None:
    token = _token(keys, "gateway", "trainer", clock)
    with pytest.raises(Unauthenticated, match="another service"):
        _verifier(keys, clock, "fetcher").verify(token)


def test_a_token_signed_with_another_services_key_is_refused(
    keys: InProcessSigningKeys, clock: Clock
) -> None:
    """The trainer signs with its own key but claims to be the gateway: either the key it
    names is not the gateway's (refused before any signature check), or the signature is
    not the gateway's."""
    trainer_key = keys._key("trainer")
    claims = {"iss": "aidp", "sub": "gateway", "aud": "fetcher", "iat": NOW, "exp": NOW + 60}
    claims["jti"] = "x"
    header = {"alg": "EdDSA", "typ": "aidp-service+jwt"}
    verifier = _verifier(keys, clock)
    with pytest.raises(Unauthenticated, match="another service's key"):
        verifier.verify(_forge({**header, "kid": "aidp-svc-trainer:1"}, claims, trainer_key))
    with pytest.raises(Unauthenticated, match="invalid signature"):
        verifier.verify(_forge({**header, "kid": "aidp-svc-gateway:1"}, claims, trainer_key))


def test_a_foreign_key_is_refused(keys: InProcessSigningKeys, clock: Clock) -> None:
    token = _token(InProcessSigningKeys(), "gateway", "fetcher", clock)
    with pytest.raises(Unauthenticated, match="invalid signature"):
        _verifier(keys, clock).verify(token)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_tampered_token_is_refused(keys: InProcessSigningKeys, clock: Clock, part: int) -> None:
    parts = _token(keys, "gateway", "fetcher", clock).split(".")
    if part == 1:  # a longer life, same signature
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        claims["exp"] += 200
        parts[1] = _b64(json.dumps(claims, separators=(",", ":")).encode())
    else:
        raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=="))
        raw[-2] ^= 1
        parts[part] = _b64(bytes(raw))
    with pytest.raises(Unauthenticated):
        _verifier(keys, clock).verify(".".join(parts))


def test_a_long_lived_or_unknown_callers_token_is_refused(
    keys: InProcessSigningKeys, clock: Clock
) -> None:
    key = keys._key("gateway")
    header = {"alg": "EdDSA", "typ": "aidp-service+jwt", "kid": "aidp-svc-gateway:1"}
    base = {"iss": "aidp", "sub": "gateway", "aud": "fetcher", "iat": NOW, "jti": "j"}
    verifier = _verifier(keys, clock)
    with pytest.raises(Unauthenticated, match="too long"):
        verifier.verify(_forge(header, {**base, "exp": NOW + 86_400}, key))
    with pytest.raises(Unauthenticated, match="validity"):
        verifier.verify(_forge(header, {**base, "exp": str(NOW + 60)}, key))
    with pytest.raises(Unauthenticated, match="issuer"):
        verifier.verify(_forge(header, {**base, "iss": "x", "exp": NOW + 60}, key))
    stranger = ServiceCredentials("tenant", keys, clock=clock).token_for("fetcher")
    with pytest.raises(Unauthenticated, match="unknown service"):
        verifier.verify(stranger)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.e30",
        "!!.!!.!!",
        "x" * 5000,
        _b64(b'{"alg":"none","typ":"aidp-service+jwt","kid":"aidp-svc-gateway:1"}') + ".e30.",
        _b64(b'{"alg":"EdDSA","typ":"aidp-service+jwt","kid":"aidp-svc-gateway:0"}') + ".e30.",
        _b64(b"[1]") + ".e30.e30",
    ],
)
def test_malformed_tokens_are_refused(keys: InProcessSigningKeys, clock: Clock, token: str) -> None:
    with pytest.raises(Unauthenticated):
        _verifier(keys, clock).verify(token)


class CountingKeys(InProcessSigningKeys):
    """In-process keys that can rotate and count public key lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, list[Ed25519PrivateKey]] = {}
        self.lookups = 0

    def ensure(self, service: str) -> bool:
        self.versions.setdefault(service, [Ed25519PrivateKey.generate()])
        return True

    def rotate(self, service: str) -> None:
        self.versions[service].append(Ed25519PrivateKey.generate())

    def sign(self, service: str, data: bytes) -> tuple[int, bytes]:
        return len(self.versions[service]), self.versions[service][-1].sign(data)

    def public_keys(self, service: str) -> dict[int, Any]:
        self.lookups += 1
        return {i + 1: k.public_key() for i, k in enumerate(self.versions.get(service, []))}


def test_tokens_are_reused_until_shortly_before_expiry(clock: Clock) -> None:
    keys = CountingKeys()
    keys.ensure("gateway")
    credentials = ServiceCredentials("gateway", keys, clock=clock)
    first = credentials.token_for("auth")
    assert credentials.token_for("auth") == first
    assert credentials.token_for("fetcher") != first  # one per audience
    clock.now += 239
    assert credentials.token_for("auth") == first
    clock.now += 2  # less than a minute left: a new one
    assert credentials.token_for("auth") != first


def test_a_rotated_key_signs_under_its_new_version(clock: Clock) -> None:
    keys = CountingKeys()
    for service in ("gateway", "fetcher"):
        keys.ensure(service)
    verifier = ServiceVerifier(
        "fetcher", keys, known_callers=SERVICES, clock=clock, refetch_seconds=0
    )
    old = ServiceCredentials("gateway", keys, clock=clock).token_for("fetcher")
    keys.rotate("gateway")
    new = ServiceCredentials("gateway", keys, clock=clock).token_for("fetcher")
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"].endswith(":2")
    assert verifier.verify(new).caller == "gateway"
    assert verifier.verify(old).caller == "gateway"  # tokens already out stay valid


def test_unknown_key_versions_do_not_flood_the_key_store(clock: Clock) -> None:
    keys = CountingKeys()
    keys.ensure("gateway")
    verifier = ServiceVerifier("fetcher", keys, known_callers=SERVICES, clock=clock)
    verifier.verify(ServiceCredentials("gateway", keys, clock=clock).token_for("fetcher"))
    signed = signing_input(caller="gateway", version=7, audience="fetcher", now=NOW, lifetime=60)
    made_up = assemble(signed, keys.versions["gateway"][0].sign(signed))
    for _ in range(20):
        with pytest.raises(Unauthenticated, match="unknown key"):
            verifier.verify(made_up)
    assert keys.lookups == 1


@pytest.fixture
def internal_app(keys: InProcessSigningKeys) -> Iterator[TestClient]:
    """A service ``fetcher`` with one gateway-only route and one trainer-only route."""
    app = FastAPI()
    service_auth = ServiceAuth("fetcher", known_callers=SERVICES)
    service_auth.bind(keys)
    app.state.runtime = SimpleNamespace(service_auth=service_auth)
    router = APIRouter(prefix="/internal", dependencies=[require_caller("gateway")])

    @router.get("/things")
    def things() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(router)

    @app.get("/internal/trainer-only", dependencies=[require_caller("trainer")])
    def trainer_only() -> dict[str, str]:
        return {"ok": "yes"}

    install_error_handlers(app)
    with TestClient(app) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_route_dependency_answers_401_403_and_200(
    internal_app: TestClient, keys: InProcessSigningKeys
) -> None:
    def token(caller: str, audience: str = "fetcher") -> str:
        return ServiceCredentials(caller, keys).token_for(audience)

    r = internal_app.get("/internal/things")
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "unauthenticated"
    assert (
        internal_app.get("/internal/things", headers={"Authorization": "Basic eDp5"}).status_code
        == 401
    )
    assert internal_app.get("/internal/things", headers=_bearer("x.y.z")).status_code == 401
    assert (
        internal_app.get("/internal/things", headers=_bearer(token("gateway", "auth"))).status_code
        == 401
    )
    r = internal_app.get("/internal/things", headers=_bearer(token("trainer")))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert internal_app.get("/internal/things", headers=_bearer(token("gateway"))).json() == {
        "ok": "yes"
    }
    assert (
        internal_app.get("/internal/trainer-only", headers=_bearer(token("gateway"))).status_code
        == 403
    )
    assert (
        internal_app.get("/internal/trainer-only", headers=_bearer(token("trainer"))).status_code
        == 200
    )
