#!/usr/bin/env python3
"""gRPC interop: Python grpcio calls examples/resource_server --grpc with DPoP metadata.

The script is its own authorization server: it generates an issuer key, writes it to jwks.json,
starts the example server on that JWK Set, mints a DPoP-bound access token (cnf.jkt) and signs
one DPoP proof per RPC (htm POST, htu = public URL + /grpc.health.v1.Health/Check). It asserts:
a nonce challenge (UNAUTHENTICATED + dpop-nonce metadata), success with the nonce, and
UNAUTHENTICATED for a replayed proof and for a call without credentials.

Usage: interop.py PATH/TO/resource_server     (exits non-zero on the first failed check)
       (interop/grpc/run PATH/TO/resource_server runs it)
"""

import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Process, finish, free_port, require, stop_on_sigterm  # noqa: E402

ISSUER = "https://issuer.interop.example"
AUDIENCE = "https://grpc.interop.example"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def metadata(error: grpc.RpcError) -> dict:
    """A trailers-only answer carries its headers as trailing metadata; look at both."""
    found = {}
    for items in (error.initial_metadata() or (), error.trailing_metadata() or ()):
        for key, value in items:
            found.setdefault(key, []).append(value)
    return found


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer_jwk = dict(public_jwk(issuer_key), kid="interop-1", alg="ES256", use="sig")
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="grpc-interop-") as workdir:
        jwks_path = os.path.join(workdir, "jwks.json")
        with open(jwks_path, "w") as f:
            json.dump({"keys": [issuer_jwk]}, f)
        server = Process("resource_server", [
            binary,
            "--grpc",
            "--listen", f"127.0.0.1:{port}",
            "--issuer", ISSUER,
            "--audience", AUDIENCE,
            "--jwks", jwks_path,
            "--dpop", "required",
            "--dpop-nonce",
            "--public-url", public_url,
        ], workdir)
        try:
            server.ready(server.wait_for_port, port)
            run(port, public_url, issuer_key)
        except BaseException:
            server.stop()
            server.print_log()
            raise
        server.stop()
    finish("gRPC interop")


def run(port: int, public_url: str, issuer_key: ec.EllipticCurvePrivateKey) -> None:
    dpop_key = ec.generate_private_key(ec.SECP256R1())
    dpop_jwk = public_jwk(dpop_key)
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": ISSUER,
            "sub": "interop-client",
            "aud": AUDIENCE,
            "client_id": "python-grpcio",
            "scope": "health",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
            "cnf": {"jkt": thumbprint(dpop_jwk)},
        },
        issuer_key,
        algorithm="ES256",
        headers={"kid": "interop-1", "typ": "at+jwt"},
    )
    ath = b64url(hashlib.sha256(token.encode()).digest())

    def proof(method_path: str, nonce=None) -> str:
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": "POST",
            "htu": public_url + method_path,
            "iat": int(time.time()),
            "ath": ath,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(
            claims, dpop_key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": dpop_jwk}
        )

    def auth(p: str):
        return (("authorization", f"DPoP {token}"), ("dpop", p))

    request = health_pb2.HealthCheckRequest(service="")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        # 1. No nonce yet: the server asks for one, in metadata.
        try:
            stub.Check(request, metadata=auth(proof(CHECK)), timeout=10)
            require(False, "a proof without nonce is refused")
        except grpc.RpcError as e:
            md = metadata(e)
            require(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"no nonce: UNAUTHENTICATED ({e.code()})")
            require(
                any('error="use_dpop_nonce"' in v for v in md.get("www-authenticate", [])),
                f"no nonce: www-authenticate says use_dpop_nonce ({md.get('www-authenticate')})",
            )
            require(bool(md.get("dpop-nonce")), "no nonce: dpop-nonce metadata present")
            nonce = md["dpop-nonce"][0]

        # 2. With the nonce: the call succeeds and the handler saw the token.
        good = proof(CHECK, nonce)
        response, call = stub.Check.with_call(request, metadata=auth(good), timeout=10)
        require(response.status == health_pb2.HealthCheckResponse.SERVING, "DPoP call answers SERVING")
        initial = dict(call.initial_metadata())
        require(initial.get("x-subject") == "interop-client", f"handler saw the subject ({initial})")
        require(initial.get("x-binding") == "dpop", "handler saw a DPoP-bound token")

        # 3. The same proof again: replay, refused.
        try:
            stub.Check(request, metadata=auth(good), timeout=10)
            require(False, "a replayed proof is refused")
        except grpc.RpcError as e:
            md = metadata(e)
            require(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"replay: UNAUTHENTICATED ({e.code()})")
            require(
                any('error="invalid_dpop_proof"' in v for v in md.get("www-authenticate", [])),
                f"replay: www-authenticate says invalid_dpop_proof ({md.get('www-authenticate')})",
            )

        # 4. A server stream: one proof for the whole call.
        updates = list(stub.Watch(request, metadata=auth(proof(WATCH, nonce)), timeout=10))
        require(
            len(updates) == 2 and all(u.status == health_pb2.HealthCheckResponse.SERVING for u in updates),
            "one proof authorizes a Watch stream",
        )

        # 5. No credentials at all.
        try:
            stub.Check(request, timeout=10)
            require(False, "a call without credentials is refused")
        except grpc.RpcError as e:
            md = metadata(e)
            require(e.code() == grpc.StatusCode.UNAUTHENTICATED, "no token: UNAUTHENTICATED")
            require(
                any(v.startswith("DPoP") for v in md.get("www-authenticate", [])),
                "no token: a DPoP challenge",
            )


if __name__ == "__main__":
    stop_on_sigterm()
    main()
