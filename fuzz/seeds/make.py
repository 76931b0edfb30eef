"""Writes the fuzz seed corpora under fuzz/seeds/<target>/ from the RFCs' examples and from
valid tokens and proofs signed here at the fuzz targets' fixed instant (NOW).

    python3 fuzz/seeds/make.py     (needs `cryptography`; scripts/test's venv has it)

The issuer key is generated afresh; its public half goes to issuer-jwks.json, which the
access_token target trusts, so run this once and commit the result.
"""
import base64
import hashlib
import json
import os
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

NOW = 1_767_225_600
HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "seed-access-token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key) -> dict:
    n = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}


def sign(key, header: dict, claims: dict) -> str:
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def write(target: str, name: str, data) -> None:
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


issuer = ec.generate_private_key(ec.SECP256R1())
client = ec.generate_private_key(ec.SECP256R1())
with open(os.path.join(HERE, "issuer-jwks.json"), "w") as f:
    json.dump({"keys": [dict(public_jwk(issuer), kid="seed", alg="ES256", use="sig")]}, f)

claims = {"iss": "https://issuer.example", "aud": "https://api.example", "sub": "alice",
          "client_id": "c1", "iat": NOW, "exp": NOW + 3600, "scope": "read write"}
jkt = b64(hashlib.sha256(json.dumps(
    {k: public_jwk(client)[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"),
    sort_keys=True).encode()).digest())
write("access_token", "bearer", sign(issuer, {"alg": "ES256", "kid": "seed", "typ": "at+jwt"}, claims))
write("access_token", "dpop-bound", sign(issuer, {"alg": "ES256", "kid": "seed", "typ": "at+jwt"},
                                         dict(claims, cnf={"jkt": jkt})))
write("access_token", "cert-bound", sign(issuer, {"alg": "ES256", "kid": "seed"},
                                         dict(claims, cnf={"x5t#S256": b64(b"\0" * 32)})))

proof = {"jti": str(uuid.uuid4()), "htm": "GET", "htu": "https://api.example/r", "iat": NOW,
         "ath": b64(hashlib.sha256(TOKEN.encode()).digest())}
header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(client)}
write("dpop_proof", "valid", sign(client, header, proof))
write("dpop_proof", "nonce", sign(client, header, dict(proof, nonce="eyJ7S_zG.eyJH0-Z.HX4w-7v")))
# RFC 9449 §4.1, the example proof.
write("dpop_proof", "rfc9449", "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg")

# RFC 6750 §2.1 and RFC 9449 §7.1; the selector byte picks the field (0 Authorization, 1 DPoP).
write("credentials", "bearer", b"\0Bearer mF_9.B5f-4.1JqM")
write("credentials", "dpop", b"\0DPoP Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU\n\x01" +
      open(os.path.join(HERE, "dpop_proof", "valid"), "rb").read())
write("credentials", "two", b"\0Bearer a\n\0Bearer b\n\x01x\n\x01y")

# RFC 9440 Appendix A (shortened DER), selector 0 Client-Cert, 1 Client-Cert-Chain.
write("client_cert", "leaf", b"\0:MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGU=:")
write("client_cert", "chain", b"\0:MIIB:\n\x01:MIIC:, :MIID:\n\x01:MIIE:;a=1")

# RFC 7239 §4 and §7 examples; first byte: 0 Forwarded, 1 X-Forwarded-*, 2 Host; then lines
# with the selector 0 Forwarded, 1 X-Forwarded-Proto, 2 -Host, 3 -Prefix, 4 Host.
write("forwarded", "rfc7239", b"\0\0for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com")
write("forwarded", "quoted", b"\0\0for=\"[2001:db8:cafe::17]:4711\";proto=https;host=\"api.example:8443\"")
write("forwarded", "x-forwarded", b"\x01\x01https\n\x02api.example\n\x03/v1")
write("forwarded", "host", b"\x02\x04api.example:8080")

# RFC 7517 Appendix A.1 (public keys) and A.3 (a symmetric key, refused).
write("jwk_set", "rfc7517-a1", json.dumps({"keys": [
    {"kty": "EC", "crv": "P-256", "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
     "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM", "use": "enc", "kid": "1"},
    {"kty": "RSA", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
     "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}]}))
write("jwk_set", "rfc7517-a3", json.dumps({"keys": [{"kty": "oct", "alg": "A128KW", "k": "GawgguFyGrWKav7AX4VKUg"}]}))
write("jwk_set", "issuer", open(os.path.join(HERE, "issuer-jwks.json")).read())
